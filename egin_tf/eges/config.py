"""`EgesConfig`: how EGES stage 1 builds its graph and trains its item vectors."""

import dataclasses
from typing import Optional

from data_pipeline.arg_checks import check_int

# How stage 1 keeps a training row's own label out of the vectors the row reads
# (`egin_tf.eges` says how each works): K sets of vectors from disjoint users'
# folds, one set of vectors from the clicks before a cut time, or no guard.
OUT_OF_FOLD, TIME_CUT, NO_GUARD = "out_of_fold", "time_cut", "none"
LEAK_GUARDS = (OUT_OF_FOLD, TIME_CUT, NO_GUARD)

# The fields that must be ints >= 1.
_POSITIVE_INTS = ("dim", "graph_window", "walk_length", "walks_per_node",
                  "skip_window", "num_negatives", "batch_size", "epochs",
                  "max_clicks", "read_batch_size", "walk_chunk")


@dataclasses.dataclass(frozen=True)
class EgesConfig:
  """How EGES embeddings are built and trained.

  Attributes:
    dim: size of the item vectors (the paper uses 10).
    graph_window: a click links to the next ``graph_window`` clicks of its session.
    session_gap: seconds between consecutive clicks that start a new session
      (None: a user's clicks are one session).
    positive_targets: add the targets of positive impressions to the clicks
      (leaks training labels into the graph; see `egin_tf.eges.sessions`).
    walk_length: nodes per random walk.
    walks_per_node: walks started from every node.
    skip_window: context positions on each side of a walk's center node.
    num_negatives: negatives sampled per training batch.
    batch_size: skip-gram pairs per training step.
    epochs: passes over the walks' pairs.
    learning_rate: Adam's learning rate.
    max_clicks: click history read per impression (most recent kept).
    read_batch_size: impressions per batch while reading the TFRecords.
    walk_chunk: walks whose pairs are shuffled and trained together.
    seed: seeds walks, shuffling, initialization and negative sampling.
    leak_guard: one of `LEAK_GUARDS`: ``out_of_fold`` trains one set of vectors
      per fold of users (`egin_tf.layers.out_of_fold.user_folds`), ``time_cut``
      reads only the clicks before the cut time, ``none`` reads everything.
    folds: sets of vectors (users' folds) of ``out_of_fold``, >= 2.
    time_cut: ``time_cut``'s share of the training impressions at or after the
      cut (`egin_tf.eges.sessions.cut_time`), in (0, 1).
  """
  dim: int = 10
  graph_window: int = 1
  session_gap: Optional[int] = None
  positive_targets: bool = False
  walk_length: int = 10
  walks_per_node: int = 10
  skip_window: int = 2
  num_negatives: int = 20
  batch_size: int = 256
  epochs: int = 1
  learning_rate: float = 0.01
  max_clicks: int = 100
  read_batch_size: int = 1024
  walk_chunk: int = 10_000
  seed: int = 0
  leak_guard: str = TIME_CUT
  folds: int = 2
  time_cut: float = 0.5

  def __post_init__(self):
    for name in _POSITIVE_INTS:
      check_int(name, getattr(self, name), owner="EgesConfig")
    check_int("folds", self.folds, minimum=2, owner="EgesConfig")
    if self.leak_guard not in LEAK_GUARDS:
      raise ValueError(f"EgesConfig: leak_guard must be one of "
                       f"{', '.join(LEAK_GUARDS)}, got {self.leak_guard!r}")
    if not 0.0 < self.time_cut < 1.0:
      raise ValueError(
          f"EgesConfig: time_cut must be in (0, 1), got {self.time_cut}")
    if self.session_gap is not None and self.session_gap < 0:
      raise ValueError(
          f"EgesConfig: session_gap must be >= 0 or None, got {self.session_gap}")
    if not self.learning_rate > 0:
      raise ValueError(
          f"EgesConfig: learning_rate must be > 0, got {self.learning_rate}")
