"""The ``.npz`` file of EGES item vectors that stage 1 writes and the CTR model reads.

Format 2 (`write_vectors`, `read_vectors`; the leak guards of `egin_tf.eges`):

* ``format``: 2;
* ``ids``: int64 [n], positive, distinct, sorted: every id of any set;
* ``vectors``: float32 [K, n, d], K sets of vectors (one unless
  ``out_of_fold``); set k's row of an id that set k never saw is 0, so it
  looks up like an unknown id;
* ``leak_guard``: the stage-1 guard (`config.LEAK_GUARDS`);
* ``cut_time``: ``time_cut``'s cut (seconds; -1 for the other guards);
* ``time_cut``: ``time_cut``'s share of impressions after the cut (0 otherwise).

Format 1 (the files written before the guards: ``ids`` [n] and ``vectors``
[n, d], no ``format``) still loads, as one set with guard ``none``.
"""

import dataclasses
import os
import uuid
from typing import Optional, Sequence, Tuple

import numpy as np

from data_pipeline import paths
from data_pipeline.tf_env import tf
from egin_tf.eges.config import LEAK_GUARDS, NO_GUARD, OUT_OF_FOLD, TIME_CUT

FORMAT = 2


@dataclasses.dataclass(frozen=True)
class EgesVectors:
  """K sets of item vectors over one id list (see the module docstring).

  Attributes:
    ids: int64 [n], sorted.
    vectors: float32 [K, n, d].
    leak_guard: how stage 1 made them (`config.LEAK_GUARDS`).
    cut_time: ``time_cut``'s cut time, else None.
    time_cut: ``time_cut``'s share of impressions after the cut, else None.
  """
  ids: np.ndarray
  vectors: np.ndarray
  leak_guard: str = NO_GUARD
  cut_time: Optional[int] = None
  time_cut: Optional[float] = None

  @property
  def num_sets(self) -> int:
    return int(self.vectors.shape[0])

  @property
  def dim(self) -> int:
    return int(self.vectors.shape[2])

  def set_ids(self, k: int) -> np.ndarray:
    """The ids set ``k`` has a vector of (its non-zero rows)."""
    return self.ids[np.any(self.vectors[k] != 0, axis=-1)]

  @classmethod
  def from_sets(cls, sets: Sequence[Tuple[np.ndarray, np.ndarray]],
                **guard) -> "EgesVectors":
    """One table of K (ids [n_k] sorted, vectors [n_k, d]) sets: the union of
    their ids, each set's vectors in its rows and 0 elsewhere."""
    ids = np.unique(np.concatenate([np.asarray(i, np.int64) for i, _ in sets]))
    vectors = np.zeros([len(sets), ids.size, np.shape(sets[0][1])[1]], np.float32)
    for k, (set_ids, set_vectors) in enumerate(sets):
      vectors[k, np.searchsorted(ids, set_ids)] = set_vectors
    return cls(ids, vectors, **guard)


def write_vectors(path: str, table: EgesVectors) -> str:
  """Writes ``table`` to ``path`` (.npz, format 2) atomically; returns ``path``.

  Raises:
    ValueError: naming ``path``, for a table `read_vectors` would refuse.
  """
  _check_table(path, table)
  directory = os.path.dirname(paths.abspath(path))
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".eges-{uuid.uuid4().hex[:12]}.npz")
  try:
    paths.save_npz(
        tmp, format=np.int64(FORMAT), ids=np.asarray(table.ids, np.int64),
        vectors=np.asarray(table.vectors, np.float32),
        leak_guard=np.str_(table.leak_guard),
        cut_time=np.int64(-1 if table.cut_time is None else table.cut_time),
        time_cut=np.float64(table.time_cut or 0.0))
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


def read_vectors(path: str) -> EgesVectors:
  """Reads and checks an EGES ``.npz`` of format 2 or 1.

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no EGES embeddings file (made by train_eges)")
  with paths.load_npz(path) as saved:
    missing = sorted({"ids", "vectors"} - set(saved.files))
    if missing:
      raise ValueError(f"{path}: not an EGES embeddings file, missing {missing}")
    fields = {name: saved[name] for name in saved.files}
  table = _table_of(path, fields)
  _check_table(path, table)
  return dataclasses.replace(table, ids=table.ids.astype(np.int64),
                             vectors=table.vectors.astype(np.float32))


def _table_of(path: str, fields) -> EgesVectors:
  """The `EgesVectors` of a file's arrays (format 1 or 2)."""
  ids, vectors = fields["ids"], fields["vectors"]
  if "format" not in fields:  # format 1: one set [n, d], no guard
    return EgesVectors(ids, vectors[np.newaxis] if vectors.ndim == 2 else vectors)
  missing = sorted({"leak_guard", "cut_time", "time_cut"} - set(fields))
  if int(fields["format"]) != FORMAT or missing:
    raise ValueError(f"{path}: EGES embeddings file of format "
                     f"{fields['format']} with {sorted(fields)}; this version "
                     f"reads formats 1 and {FORMAT}")
  cut_time = int(fields["cut_time"])
  return EgesVectors(ids, vectors, str(fields["leak_guard"]),
                     None if cut_time < 0 else cut_time,
                     float(fields["time_cut"]) or None)


def _check_table(path: str, table: EgesVectors) -> None:
  """Raises ValueError naming ``path`` unless ``table`` is consistent."""
  ids, vectors = table.ids, table.vectors
  if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{path}: ids must be a 1-D integer array, got "
                     f"{ids.dtype} {ids.shape}")
  if (vectors.ndim != 3 or vectors.shape[1] != ids.size or
      vectors.shape[0] < 1):
    raise ValueError(f"{path}: vectors must be [K, {ids.size}, d] like ids, got "
                     f"{vectors.shape}")
  if ids.size == 0:
    raise ValueError(f"{path}: the table is empty")
  if np.any(ids <= 0) or np.any(np.diff(ids) <= 0):
    raise ValueError(f"{path}: ids must be positive, distinct and sorted")
  if not np.all(np.isfinite(vectors)):
    raise ValueError(f"{path}: vectors hold NaN or infinity")
  problem = _guard_problem(table)
  if problem:
    raise ValueError(f"{path}: {problem}")


def _guard_problem(table: EgesVectors) -> Optional[str]:
  """What is inconsistent between the guard and the sets, if anything."""
  if table.leak_guard not in LEAK_GUARDS:
    return (f"leak_guard {table.leak_guard!r} is not one of "
            f"{', '.join(LEAK_GUARDS)}")
  if (table.leak_guard == OUT_OF_FOLD) != (table.num_sets > 1):
    return (f"leak_guard {table.leak_guard} with {table.num_sets} set(s) of "
            f"vectors ({OUT_OF_FOLD} has 2 or more, the others 1)")
  if (table.leak_guard == TIME_CUT) != (table.cut_time is not None):
    return (f"leak_guard {table.leak_guard} with cut_time {table.cut_time} "
            f"({TIME_CUT} has a cut time, the others none)")
  return None


def save_embeddings(path: str, ids: np.ndarray, vectors: np.ndarray) -> str:
  """Writes one set, ``ids`` [n] and ``vectors`` [n, d] (guard ``none``)."""
  return write_vectors(path, EgesVectors(np.asarray(ids), np.asarray(vectors)[
      np.newaxis]))


def load_embeddings(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a one-set EGES ``.npz``: ids int64 [n] sorted, vectors float32 [n, d].

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong (also a
      file of several sets: read those with `read_vectors`).
  """
  table = read_vectors(path)
  if table.num_sets != 1:
    raise ValueError(f"{path}: holds {table.num_sets} sets of vectors "
                     f"({table.leak_guard}); read it with read_vectors")
  return table.ids.astype(np.int64), table.vectors[0].astype(np.float32)
