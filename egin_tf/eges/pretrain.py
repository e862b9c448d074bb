"""EGES stage 1 end to end: sessions -> graph -> walks -> trained item vectors.

`train_eges` reads the data, builds the graph, trains `EgesSkipGram` on the
walks' pairs and writes ``ids`` and ``vectors`` (H_v) to an ``.npz`` that
`egin_tf.models.eges.EGES` consumes, frozen. With ``leak_guard="out_of_fold"``
it does so once per fold of users, on that fold's sessions only, and the file
holds the K sets. An optional ``progress`` (`StageProgress`) reports the
impressions read, the walk steps and the training steps, each stage through its
own callback (the walk and training stages once per set, labelled
``set k/K <stage>`` when there are several).

Pairs are made and trained one chunk of ``walk_chunk`` walks at a time, so memory
grows with the walks (nodes * walks_per_node * walk_length ids), not with the
pairs.
"""

from typing import Callable, List, Optional, Tuple

import numpy as np

from data_pipeline.stream import RecordProgress
from data_pipeline.text_input import ProgressCallback
from data_pipeline.tf_env import tf
from egin_tf.eges.config import OUT_OF_FOLD, TIME_CUT, EgesPretrainConfig
from egin_tf.eges.graph import ItemGraph, graph_from_sessions, side_index
from egin_tf.eges.sessions import Sessions, fold_sessions, read_sessions
from egin_tf.eges.skipgram import EgesSkipGram
from egin_tf.eges.vectors_file import EgesVectors, write_vectors
from egin_tf.eges.walks import random_walks, skipgram_pairs

# progress(stage) -> that stage's `text_input.ProgressCallback`, asked for as the
# stage starts (so a printer's rate and ETA count from there), e.g.
# `egin_tf.cli.common.progress_printer`. Stages, named by what they count:
READ_STAGE = "records"             # impressions read (`read_sessions`)
WALK_STAGE = "walk steps"          # nodes placed in walks (`random_walks`)
TRAIN_STAGE = "training steps"     # skip-gram batches trained (`train_embeddings`)
StageProgress = Callable[[str], ProgressCallback]
TrainStep = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _stage(progress: Optional[StageProgress], stage: str
           ) -> Optional[ProgressCallback]:
  return None if progress is None else progress(stage)


def train_embeddings(graph: ItemGraph, node_side: np.ndarray,
                     num_side_values: int, config: EgesPretrainConfig,
                     progress: Optional[StageProgress] = None
                     ) -> Tuple[EgesSkipGram, List[float]]:
  """Trains EGES on the graph's random walks.

  ``progress`` (`StageProgress`) is asked for the `WALK_STAGE` and the
  `TRAIN_STAGE` callbacks; the training steps' total is exact (every chunk's
  pairs are counted before training).

  Returns:
    The trained `EgesSkipGram` and the mean sampled loss of every epoch.
  """
  if graph.num_nodes < 2:
    raise ValueError(
        f"the item graph has {graph.num_nodes} node(s); EGES needs clicks on at "
        "least two different items in one session")
  walks = random_walks(graph, config.walk_length, config.walks_per_node,
                       config.seed, _stage(progress, WALK_STAGE))
  unigram = np.bincount(np.searchsorted(graph.ids, walks[walks > 0]),
                        minlength=graph.num_nodes).astype(np.float64)
  model = EgesSkipGram(node_side, num_side_values, unigram, config.dim,
                       config.num_negatives, seed=config.seed, name="eges")
  step = _adam_step(model, config.learning_rate)
  rng = np.random.default_rng(config.seed)
  counter = RecordProgress(_stage(progress, TRAIN_STAGE),
                           config.epochs * training_steps(walks, config))
  history = [_train_epoch(step, walks, graph.ids, config, rng, counter)
             for _ in range(config.epochs)]
  counter.end()
  return model, history


def _adam_step(model: EgesSkipGram, learning_rate: float) -> TrainStep:
  """One compiled Adam step on a batch of (centers, contexts): its loss."""
  optimizer = tf.keras.optimizers.Adam(learning_rate)

  @tf.function
  def step(centers, contexts):
    with tf.GradientTape() as tape:
      loss = model(centers, contexts)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  return step


def _train_epoch(step: TrainStep, walks: np.ndarray, ids: np.ndarray,
                 config: EgesPretrainConfig, rng: np.random.Generator,
                 counter: RecordProgress) -> float:
  """One pass over the walks' pairs, a chunk of walks at a time: the mean loss."""
  total, count = 0.0, 0
  for start in range(0, len(walks), config.walk_chunk):
    pairs = skipgram_pairs(walks[start:start + config.walk_chunk],
                           config.skip_window)
    nodes = np.searchsorted(ids, pairs)[rng.permutation(len(pairs))]
    for b in range(0, len(nodes), config.batch_size):
      chunk = nodes[b:b + config.batch_size]
      loss = step(tf.constant(chunk[:, 0]), tf.constant(chunk[:, 1]))
      total += float(loss) * len(chunk)
      count += len(chunk)
      counter.add(1)
  return total / max(count, 1)


def training_steps(walks: np.ndarray, config: EgesPretrainConfig) -> int:
  """Skip-gram batches of one epoch over ``walks``, counted without the pairs.

  A walk has as many pairs as `skipgram_pairs` makes of it: two per pair of
  positions at most ``skip_window`` apart with both nodes present (not 0).
  """
  present = np.asarray(walks) > 0
  pairs = np.zeros(len(present), np.int64)
  for offset in range(1, config.skip_window + 1):
    pairs += 2 * (present[:, :-offset] & present[:, offset:]).sum(axis=1)
  if not pairs.size:
    return 0
  per_chunk = np.add.reduceat(pairs, np.arange(0, pairs.size, config.walk_chunk))
  return int(np.sum(-(-per_chunk // config.batch_size)))


def train_eges(train_pattern: str, out_path: str, config: EgesPretrainConfig,
               progress: Optional[StageProgress] = None) -> str:
  """Stage 1 of EGES: reads the data, trains, writes ids and vectors to ``out_path``.

  ``progress(stage)`` (`StageProgress`, e.g. ``common.progress_printer``) is
  asked for one callback per stage as it starts: `READ_STAGE` ("records": the
  impressions read, total from ``schema.json``), `WALK_STAGE` ("walk steps",
  exact total) and `TRAIN_STAGE` ("training steps", exact total), the last two
  per set of vectors (`set_stage`); each is called as ``(count, total, share)``
  like the converters' progress. None: quiet.

  Returns:
    ``out_path``, an `EgesVectors` file of ``config.folds`` sets with
    ``out_of_fold``, else of one set.
  """
  sessions = read_sessions(train_pattern, config, _stage(progress, READ_STAGE))
  parts = ([sessions] if config.leak_guard != OUT_OF_FOLD
           else fold_sessions(sessions, config.folds))
  sets = [_train_set(_set_name(train_pattern, k, len(parts), sessions.cut_time),
                     part, config, set_stage(progress, k, len(parts)))
          for k, part in enumerate(parts)]
  cut = config.leak_guard == TIME_CUT
  table = EgesVectors.from_sets(
      sets, leak_guard=config.leak_guard, cut_time=sessions.cut_time,
      time_cut=config.time_cut if cut else None)
  return write_vectors(out_path, table)


def set_stage(progress: Optional[StageProgress], k: int, num_sets: int
              ) -> Optional[StageProgress]:
  """``progress`` for set ``k`` of ``num_sets``: stages labelled ``set k/K``
  (1-based) when there are several sets, unchanged otherwise."""
  if progress is None or num_sets == 1:
    return progress
  return lambda stage: progress(f"set {k + 1}/{num_sets} {stage}")


def _set_name(train_pattern: str, k: int, num_sets: int,
              cut: Optional[int]) -> str:
  """The prefix of set ``k``'s error messages (with the cut of ``time_cut``)."""
  if cut is not None:
    return f"{train_pattern}: the clicks before the time cut {cut}: "
  if num_sets == 1:
    return f"{train_pattern}: "
  return f"{train_pattern}: vector set {k + 1}/{num_sets} (users of fold {k}): "


def _train_set(where: str, sessions: Sessions, config: EgesPretrainConfig,
               progress: Optional[StageProgress]
               ) -> Tuple[np.ndarray, np.ndarray]:
  """One set of vectors from ``sessions``: (ids [n], vectors [n, dim]).

  Raises:
    ValueError: prefixed by ``where`` (the data, and the set if several).
  """
  graph = graph_from_sessions(sessions.items, sessions.session,
                              config.graph_window)
  node_side, num_side_values = side_index(graph, sessions.item_ids,
                                          sessions.item_cats)
  try:
    model, _ = train_embeddings(graph, node_side, num_side_values, config,
                                progress)
  except ValueError as e:
    raise ValueError(f"{where}{e}") from None
  return graph.ids, model.vectors(tf.range(graph.num_nodes,
                                           dtype=tf.int64)).numpy()
