"""EGES step 1: every user's click sessions, rebuilt from impression TFRecords.

Every user's click sequence is rebuilt from the training TFRecords as the distinct
(time, item) events of all the user's click histories (each impression repeats its
user's history, so events are deduplicated, not counted once per impression),
optionally plus the targets of positive impressions. That option is off by default
because it leaks labels: it links exactly the clicked targets to their histories,
so the CTR model learns "EGES similarity to the clicks => click" on training data,
which does not hold on test data (on simulated data it raised test logloss from
0.66 to 0.85). A sequence is cut into sessions where two consecutive clicks are
more than ``session_gap`` seconds apart (EGES uses one hour; None = never cut).

The leak guards (`egin_tf.eges` says why) act here: ``time_cut`` keeps only the
click events before `cut_time` of the impressions' times; ``out_of_fold``
keeps every event and `fold_sessions` splits them by the user's fold.
"""

import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.stream import RecordProgress, records_in_files
from data_pipeline.text_input import ProgressCallback
from data_pipeline.tf_env import tf
from egin_tf.eges.config import TIME_CUT, EgesPretrainConfig
from egin_tf.layers.out_of_fold import user_folds


class Sessions(NamedTuple):
  """Click sessions, flat: ``items[i]`` is in session ``session[i]``.

  Sessions are contiguous and oldest first inside, grouped by user (``users[i]``
  clicked ``items[i]``); ``item_ids``/``item_cats`` give the categories first
  seen with every item (int64 [n], sorted, and [n, C]). ``cut_time``: with
  ``time_cut``, the cut (every event is before it), else None.
  """
  items: np.ndarray     # int64 [N]
  session: np.ndarray   # int64 [N], non-decreasing
  item_ids: np.ndarray  # int64 [n]
  item_cats: np.ndarray  # int64 [n, C]
  users: np.ndarray     # int64 [N]
  cut_time: Optional[int] = None


class _Collected(NamedTuple):
  """What `read_sessions` gathers batch by batch."""
  events: List[np.ndarray]    # (user, time, item) rows
  cat_ids: List[np.ndarray]   # item ids ...
  cat_rows: List[np.ndarray]  # ... and their category rows
  times: List[np.ndarray]     # impression times


def cut_time(times: Sequence[int], share: float) -> int:
  """The earliest time of the latest ``share`` of ``times`` (impressions at
  that same second are after it too): ``time_cut``'s cut.

  Raises:
    ValueError: no times, or share outside (0, 1).
  """
  if not 0.0 < share < 1.0:
    raise ValueError(f"EgesPretrainConfig: time_cut must be in (0, 1), got {share}")
  ordered = np.sort(np.asarray(times, np.int64))
  if not ordered.size:
    raise ValueError("no impression times to place the time cut among")
  return int(ordered[ordered.size - max(1, math.ceil(share * ordered.size))])


def fold_sessions(sessions: Sessions, num_folds: int) -> List[Sessions]:
  """The sessions of the users of each fold (`user_folds`, as EGIN's), fold
  0 first; every fold keeps the item categories of all the data."""
  unique, inverse = np.unique(sessions.users, return_inverse=True)
  folds = user_folds(tf.constant(unique, tf.int64), num_folds).numpy()[inverse]
  return [Sessions(sessions.items[keep], sessions.session[keep],
                   sessions.item_ids, sessions.item_cats, sessions.users[keep],
                   sessions.cut_time)
          for keep in (folds == k for k in range(num_folds))]


def _first_cats(ids: np.ndarray, cats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  keep = ids > 0
  unique, first = np.unique(ids[keep], return_index=True)
  return unique, cats[keep][first]


def _collect_batch(batch: Dict[str, np.ndarray], config: EgesPretrainConfig,
                   out: _Collected) -> None:
  """Adds one batch's click events (and item categories) to ``out``."""
  click_ids = batch[schema_lib.CLICKS.ids]
  users = np.broadcast_to(batch[schema_lib.USER_ID][:, None], click_ids.shape)
  valid = click_ids > 0
  out.events.append(np.stack([users[valid], batch[schema_lib.CLICKS.times][valid],
                              click_ids[valid]], axis=1))
  num_cats = batch[schema_lib.ITEM_CATS].shape[-1]
  out.cat_ids.extend([click_ids[valid], batch[schema_lib.ITEM_ID]])
  out.cat_rows.extend([batch[schema_lib.CLICKS.cats][valid].reshape(-1, num_cats),
                       batch[schema_lib.ITEM_CATS]])
  out.times.append(batch[schema_lib.TIME])
  if config.positive_targets:
    pos = batch[schema_lib.LABEL] == 1
    out.events.append(np.stack([batch[schema_lib.USER_ID][pos],
                                batch[schema_lib.TIME][pos],
                                batch[schema_lib.ITEM_ID][pos]], axis=1))


def _session_index(rows: np.ndarray, session_gap: Optional[int]) -> np.ndarray:
  """The session of every (user, time, item) row, rows sorted by user then time."""
  new_session = np.ones(len(rows), bool)
  if len(rows) > 1:
    new_session[1:] = rows[1:, 0] != rows[:-1, 0]
    if session_gap is not None:
      new_session[1:] |= (rows[1:, 1] - rows[:-1, 1]) > session_gap
  return np.cumsum(new_session) - 1


def read_sessions(train_pattern: str, config: EgesPretrainConfig,
                  progress: Optional[ProgressCallback] = None) -> Sessions:
  """Every user's click sessions, rebuilt from impression TFRecords (see module).

  ``progress(count, total, share)`` gets the impressions read after every batch
  (total from ``schema.json``'s split counts, None if unknown). With
  ``config.leak_guard == "time_cut"`` the events at or after the `cut_time` of
  the impressions' times are left out.
  """
  collected = _Collected([], [], [], [])
  ds = reader.make_dataset(train_pattern, config.read_batch_size,
                           max_clicks=config.max_clicks, max_queries=1,
                           max_seeds=1)
  counter = RecordProgress(progress,
                           records_in_files(reader.match_files(train_pattern)))
  for batch in ds.as_numpy_iterator():
    counter.add(len(batch[schema_lib.LABEL]))
    _collect_batch(batch, config, collected)
  counter.end()
  if not collected.events:
    raise ValueError(f"{train_pattern}: no impressions to build an EGES graph from")
  # np.unique sorts rows: by user, then time, then item (ties in time by id).
  rows = np.unique(np.concatenate(collected.events).astype(np.int64), axis=0)
  cut = None
  if config.leak_guard == TIME_CUT:
    cut = cut_time(np.concatenate(collected.times), config.time_cut)
    rows = rows[rows[:, 1] < cut]
  item_ids, item_cats = _first_cats(np.concatenate(collected.cat_ids),
                                    np.concatenate(collected.cat_rows))
  return Sessions(rows[:, 2], _session_index(rows, config.session_gap), item_ids,
                  item_cats, rows[:, 0], cut)
