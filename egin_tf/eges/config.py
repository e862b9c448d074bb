"""`EgesPretrainConfig`: how EGES stage 1 builds its graph and trains its item vectors.

Named for what it configures, the pretraining of the vectors (`pretrain`), so it
is not mistaken for the CTR model's `egin_tf.models.configs.EGESConfig`, whose
`egin_tf.models.eges.stage1_config` derives one of these.
"""

import dataclasses
from typing import Optional

from egin_tf.configs import Config, param

# How stage 1 keeps a training row's own label out of the vectors the row reads
# (`egin_tf.eges` says how each works): K sets of vectors from disjoint users'
# folds, one set of vectors from the clicks before a cut time, or no guard.
OUT_OF_FOLD, TIME_CUT, NO_GUARD = "out_of_fold", "time_cut", "none"
LEAK_GUARDS = (OUT_OF_FOLD, TIME_CUT, NO_GUARD)


@dataclasses.dataclass(frozen=True)
class EgesPretrainConfig(Config):
  """How EGES embeddings are built and trained (a `Config`: every field is
  checked on construction and `ConfigError` names the bad one)."""
  dim: int = param(10, "Size of the item vectors (the paper uses 10).", min=1)
  graph_window: int = param(
      1, "A click links to the next graph_window clicks of its session.", min=1)
  session_gap: Optional[int] = param(
      None, "Seconds between consecutive clicks that start a new session "
      "(unset: a user's clicks are one session).", min=0)
  positive_targets: bool = param(
      False, "Add the targets of positive impressions to the clicks (leaks "
      "training labels into the graph; see egin_tf.eges.sessions).")
  walk_length: int = param(10, "Nodes per random walk.", min=1)
  walks_per_node: int = param(10, "Walks started from every node.", min=1)
  skip_window: int = param(
      2, "Context positions on each side of a walk's center node.", min=1)
  num_negatives: int = param(20, "Negatives sampled per training batch.", min=1)
  batch_size: int = param(256, "Skip-gram pairs per training step.", min=1)
  epochs: int = param(1, "Passes over the walks' pairs.", min=1)
  learning_rate: float = param(0.01, "Adam's learning rate.", above=0.0)
  max_clicks: int = param(
      100, "Click history read per impression (most recent kept).", min=1)
  read_batch_size: int = param(
      1024, "Impressions per batch while reading the TFRecords.", min=1)
  walk_chunk: int = param(
      10_000, "Walks whose pairs are shuffled and trained together.", min=1)
  seed: int = param(
      0, "Seeds walks, shuffling, initialization and negative sampling.")
  leak_guard: str = param(
      TIME_CUT, "out_of_fold trains one set of vectors per fold of users "
      "(egin_tf.layers.out_of_fold.user_folds), time_cut reads only the clicks "
      "before the cut time, none reads everything.", choices=LEAK_GUARDS)
  folds: int = param(2, "out_of_fold: sets of vectors (users' folds).", min=2)
  time_cut: float = param(
      0.5, "time_cut: share of the training impressions at or after the cut "
      "(egin_tf.eges.sessions.cut_time).", above=0.0, below=1.0)
