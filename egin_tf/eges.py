"""EGES, stage 1: item graph, random walks, skip-gram pairs, embedding training.

EGES (Wang et al., 2018; paper section 4.2) is the two-stage "construct and sample"
baseline that EGIN's end-to-end graph learning replaces:

1. `read_sessions`: every user's click sequence is rebuilt from the training
   TFRecords as the distinct (time, item) events of all the user's click histories
   (each impression repeats its user's history, so events are deduplicated, not
   counted once per impression), optionally plus the targets of positive
   impressions. That option is off by default because it leaks labels: it links
   exactly the clicked targets to their histories, so the CTR model learns "EGES
   similarity to the clicks => click" on training data, which does not hold on
   test data (on simulated data it raised test logloss from 0.66 to 0.85). A
   sequence is cut into sessions where two consecutive clicks are more than
   ``session_gap`` seconds apart (EGES uses one hour; None = never cut).
2. `build_graph`: a weighted directed item graph. Within a session, click s_i gets
   an edge to each of the next ``window`` clicks s_{i+1}, ..., s_{i+window}; the
   weight of u -> v is the number of such (u, v) occurrences. Repeated clicks on one
   item (u -> u) make no edge. Nodes are the items with at least one edge.
3. `random_walks`: DeepWalk on the weighted graph: from every node,
   ``walks_per_node`` walks of ``walk_length`` nodes, each step to an out-neighbor
   with probability proportional to the edge weight. A walk that reaches a node
   without out-edges stops there (the rest of its row is 0, padding).
4. `skipgram_pairs`: (center, context) pairs of nodes at most ``window`` apart in
   a walk.
5. `EgesEmbedding` / `EgesSkipGram`: per item an id embedding W_v0 and per side
   information j (here: the item's category slots, in the shared category space)
   an embedding W_vj, combined by learned per-item attention weights a_vj:
   H_v = sum_j e^{a_vj} W_vj / sum_j e^{a_vj} (padding categories left out). H_v is
   trained to predict the context items' output embeddings with a sampled softmax
   against negatives drawn from the context frequencies ** 0.75 (word2vec).
6. `train_eges`: all of the above; writes ``ids`` int64 [n] (sorted) and
   ``vectors`` float32 [n, dim] (H_v) to an ``.npz`` file that `load_embeddings`
   reads back and `egin_tf.models.eges.EGES` consumes, frozen. An optional
   ``progress`` (`StageProgress`) reports the impressions read, the walk steps
   and the training steps, each stage through its own callback.

The graph, walks and pairs live in memory (numpy); pairs are made and trained one
chunk of ``walk_chunk`` walks at a time, so memory grows with the walks
(nodes * walks_per_node * walk_length ids), not with the pairs.
"""

import dataclasses
import os
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.stream import RecordProgress, records_in_files
from data_pipeline.text_input import ProgressCallback
from data_pipeline import paths
from data_pipeline.tf_env import tf
from egin_tf import gfile_io

# word2vec's distortion of the negative-sampling distribution.
_UNIGRAM_POWER = 0.75

# progress(stage) -> that stage's `text_input.ProgressCallback`, asked for as the
# stage starts (so a printer's rate and ETA count from there), e.g.
# `egin_tf.cli.common.progress_printer`. Stages, named by what they count:
READ_STAGE = "records"             # impressions read (`read_sessions`)
WALK_STAGE = "walk steps"          # nodes placed in walks (`random_walks`)
TRAIN_STAGE = "training steps"     # skip-gram batches trained (`train_embeddings`)
StageProgress = Callable[[str], ProgressCallback]


def _stage(progress: Optional[StageProgress], stage: str
           ) -> Optional[ProgressCallback]:
  return None if progress is None else progress(stage)


def _check_positive(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"EgesConfig: {name} must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class EgesConfig:
  """How EGES embeddings are built and trained.

  Attributes:
    dim: size of the item vectors (the paper uses 10).
    graph_window: a click links to the next ``graph_window`` clicks of its session.
    session_gap: seconds between consecutive clicks that start a new session
      (None: a user's clicks are one session).
    positive_targets: add the targets of positive impressions to the clicks
      (leaks training labels into the graph; see the module docstring).
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

  def __post_init__(self):
    for name in ("dim", "graph_window", "walk_length", "walks_per_node",
                 "skip_window", "num_negatives", "batch_size", "epochs",
                 "max_clicks", "read_batch_size", "walk_chunk"):
      _check_positive(name, getattr(self, name))
    if self.session_gap is not None and self.session_gap < 0:
      raise ValueError(
          f"EgesConfig: session_gap must be >= 0 or None, got {self.session_gap}")
    if not self.learning_rate > 0:
      raise ValueError(
          f"EgesConfig: learning_rate must be > 0, got {self.learning_rate}")


class Sessions(NamedTuple):
  """Click sessions, flat: ``items[i]`` is in session ``session[i]``.

  Sessions are contiguous and oldest first inside; ``item_ids``/``item_cats`` give
  the categories first seen with every item (int64 [n], sorted, and [n, C]).
  """
  items: np.ndarray     # int64 [N]
  session: np.ndarray   # int64 [N], non-decreasing
  item_ids: np.ndarray  # int64 [n]
  item_cats: np.ndarray  # int64 [n, C]


def _first_cats(ids: np.ndarray, cats: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  keep = ids > 0
  unique, first = np.unique(ids[keep], return_index=True)
  return unique, cats[keep][first]


def read_sessions(train_pattern: str, config: EgesConfig,
                  progress: Optional[ProgressCallback] = None) -> Sessions:
  """Every user's click sessions, rebuilt from impression TFRecords (see module).

  ``progress(count, total, share)`` gets the impressions read after every batch
  (total from ``schema.json``'s split counts, None if unknown).
  """
  events = []  # (user, time, item) rows
  cat_ids, cat_rows = [], []
  ds = reader.make_dataset(train_pattern, config.read_batch_size,
                           max_clicks=config.max_clicks, max_queries=1,
                           max_seeds=1)
  counter = RecordProgress(progress,
                           records_in_files(reader.match_files(train_pattern)))
  for batch in ds.as_numpy_iterator():
    counter.add(len(batch[schema_lib.LABEL]))
    click_ids = batch[schema_lib.CLICKS.ids]
    users = np.broadcast_to(batch[schema_lib.USER_ID][:, None], click_ids.shape)
    valid = click_ids > 0
    events.append(np.stack([users[valid], batch[schema_lib.CLICKS.times][valid],
                            click_ids[valid]], axis=1))
    num_cats = batch[schema_lib.ITEM_CATS].shape[-1]
    cat_ids += [click_ids[valid], batch[schema_lib.ITEM_ID]]
    cat_rows += [batch[schema_lib.CLICKS.cats][valid].reshape(-1, num_cats),
                 batch[schema_lib.ITEM_CATS]]
    if config.positive_targets:
      pos = batch[schema_lib.LABEL] == 1
      events.append(np.stack([batch[schema_lib.USER_ID][pos],
                              batch[schema_lib.TIME][pos],
                              batch[schema_lib.ITEM_ID][pos]], axis=1))
  counter.end()
  if not events:
    raise ValueError(f"{train_pattern}: no impressions to build an EGES graph from")
  # np.unique sorts rows: by user, then time, then item (ties in time by id).
  rows = np.unique(np.concatenate(events).astype(np.int64), axis=0)
  new_session = np.ones(len(rows), bool)
  if len(rows) > 1:
    new_session[1:] = rows[1:, 0] != rows[:-1, 0]
    if config.session_gap is not None:
      new_session[1:] |= (rows[1:, 1] - rows[:-1, 1]) > config.session_gap
  item_ids, item_cats = _first_cats(np.concatenate(cat_ids),
                                    np.concatenate(cat_rows))
  return Sessions(rows[:, 2], np.cumsum(new_session) - 1, item_ids, item_cats)


@dataclasses.dataclass(frozen=True)
class ItemGraph:
  """A weighted directed item graph in CSR form.

  Attributes:
    ids: int64 [n], the node ids, sorted; node index i is item ``ids[i]``.
    indptr: int64 [n + 1]; node i's out-edges are ``indptr[i]:indptr[i + 1]``.
    neighbors: int64 [E], destination node index of each edge (sorted per node).
    weights: float64 [E], edge weights (> 0).
  """
  ids: np.ndarray
  indptr: np.ndarray
  neighbors: np.ndarray
  weights: np.ndarray

  @property
  def num_nodes(self) -> int:
    return int(self.ids.size)

  def edges(self) -> Dict[Tuple[int, int], float]:
    """{(source id, destination id): weight}, for inspection."""
    sources = np.repeat(self.ids, np.diff(self.indptr))
    return {(int(s), int(self.ids[d])): float(w)
            for s, d, w in zip(sources, self.neighbors, self.weights)}


def graph_from_sessions(items: np.ndarray, session: np.ndarray,
                        window: int = 1) -> ItemGraph:
  """The item graph of flat sessions (see `Sessions` and the module docstring)."""
  _check_positive("graph_window", window)
  items = np.asarray(items, np.int64)
  session = np.asarray(session, np.int64)
  pairs = []
  for offset in range(1, window + 1):
    src, dst = items[:-offset], items[offset:]
    keep = (session[:-offset] == session[offset:]) & (src != dst)
    keep &= (src > 0) & (dst > 0)
    pairs.append(np.stack([src[keep], dst[keep]], axis=1))
  pairs = np.concatenate(pairs) if pairs else np.zeros([0, 2], np.int64)
  edges, counts = np.unique(pairs, axis=0, return_counts=True)
  ids = np.unique(edges)
  # np.unique sorts edges by source then destination: CSR order.
  src = np.searchsorted(ids, edges[:, 0])
  dst = np.searchsorted(ids, edges[:, 1])
  indptr = np.zeros(ids.size + 1, np.int64)
  np.cumsum(np.bincount(src, minlength=ids.size), out=indptr[1:])
  return ItemGraph(ids.astype(np.int64), indptr, dst.astype(np.int64),
                   counts.astype(np.float64))


def build_graph(sequences: Sequence[Sequence[int]], window: int = 1) -> ItemGraph:
  """The item graph of click sessions given as id lists (oldest first)."""
  items = np.asarray([i for seq in sequences for i in seq], np.int64)
  session = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
  return graph_from_sessions(items, session, window)


def random_walks(graph: ItemGraph, walk_length: int, walks_per_node: int,
                 seed: int = 0, progress: Optional[ProgressCallback] = None
                 ) -> np.ndarray:
  """DeepWalk walks over a weighted graph: int64 [n * walks_per_node, walk_length].

  Round r holds one walk from every node, in a seeded random node order (as in
  DeepWalk); each step goes to out-neighbor v of u with probability
  w(u, v) / sum_v' w(u, v'). Rows hold item ids; a walk stuck at a node without
  out-edges is padded with 0. Equal seeds give equal walks.

  All walks advance together, so ``progress(count, total, share)`` counts walk
  steps (the walks' positions filled, padding too) of walks * walk_length.
  """
  _check_positive("walk_length", walk_length)
  _check_positive("walks_per_node", walks_per_node)
  rng = np.random.default_rng(seed)
  n = graph.num_nodes
  current = np.concatenate([rng.permutation(n) for _ in range(walks_per_node)])
  walks = np.zeros([current.size, walk_length], np.int64)
  counter = RecordProgress(progress, walks.size)
  if n:
    walks[:, 0] = graph.ids[current]
    counter.add(current.size)
  if n and graph.neighbors.size:
    _walk_on(graph, walks, current, rng, counter)
  counter.end()
  return walks


def _walk_on(graph: ItemGraph, walks: np.ndarray, current: np.ndarray,
             rng: np.random.Generator, counter: RecordProgress) -> None:
  """Fills ``walks[:, 1:]`` from the start nodes ``current`` (node indices)."""
  alive = np.ones(current.size, bool)
  cumulative = np.concatenate([[0.0], np.cumsum(graph.weights)])
  for step in range(1, walks.shape[1]):
    start, end = graph.indptr[current], graph.indptr[current + 1]
    alive &= end > start
    # Inverse CDF over the node's slice of the global cumulative weights.
    target = cumulative[start] + rng.random(current.size) * (
        cumulative[end] - cumulative[start])
    edge = np.searchsorted(cumulative, target, side="right") - 1
    # Rounding can land a hair outside the slice; clip back into it. Stopped
    # walks read edge 0 and keep their node.
    edge = np.where(alive, np.clip(edge, start, end - 1), 0)
    current = np.where(alive, graph.neighbors[edge], current)
    walks[:, step] = np.where(alive, graph.ids[current], 0)
    counter.add(current.size)


def skipgram_pairs(walks: np.ndarray, window: int) -> np.ndarray:
  """(center, context) pairs at most ``window`` apart: int64 [P, 2].

  Ordered by walk, then center position, then context position; pairs with a
  padding (0) end are left out.
  """
  _check_positive("skip_window", window)
  walks = np.asarray(walks, np.int64)
  num_walks, length = walks.shape
  parts = []  # (walk, center position, context position)
  for offset in list(range(-window, 0)) + list(range(1, window + 1)):
    centers = np.arange(max(0, -offset), min(length, length - offset))
    w, c = np.meshgrid(np.arange(num_walks), centers, indexing="ij")
    parts.append(np.stack([w.ravel(), c.ravel(), c.ravel() + offset], axis=1))
  index = np.concatenate(parts) if parts else np.zeros([0, 3], np.int64)
  index = index[np.lexsort((index[:, 2], index[:, 1], index[:, 0]))]
  pairs = np.stack([walks[index[:, 0], index[:, 1]],
                    walks[index[:, 0], index[:, 2]]], axis=1)
  return pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]


class EgesEmbedding(tf.keras.layers.Layer):
  """EGES's item vector H_v: id and side-information embeddings, attention-mixed.

  Inputs:
    nodes: int [...], node indices in [0, num_nodes).
    side: int [..., num_side_slots], side-information values in
      [0, num_side_values); 0 is padding and takes no part in the mix.

  Output: float32 [..., dim], H_v = sum_j m_vj e^{a_vj} W_vj / sum_j m_vj e^{a_vj},
  where j = 0 is the node's own id embedding (always present), j >= 1 the side
  slots' embeddings (from one shared side table), m_vj = 0 for padding and a_v the
  node's row of the attention table [num_nodes, 1 + num_side_slots] (zeros at
  start: a plain average).
  """

  def __init__(self, num_nodes: int, num_side_values: int, num_side_slots: int,
               dim: int, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.num_nodes = num_nodes
    self.num_side_values = num_side_values
    self.num_side_slots = num_side_slots
    self.dim = dim
    self.seed = seed

  def build(self, input_shape):
    scale = 0.5 / self.dim  # word2vec's input initialization
    self.node_embeddings = self.add_weight(
        name="node_embeddings", shape=[self.num_nodes, self.dim],
        initializer=tf.keras.initializers.RandomUniform(-scale, scale, self.seed))
    self.side_embeddings = self.add_weight(
        name="side_embeddings", shape=[self.num_side_values, self.dim],
        initializer=tf.keras.initializers.RandomUniform(-scale, scale,
                                                        self.seed + 1))
    self.attention = self.add_weight(
        name="attention", shape=[self.num_nodes, 1 + self.num_side_slots],
        initializer="zeros")
    super().build(input_shape)

  def call(self, nodes: tf.Tensor, side: tf.Tensor) -> tf.Tensor:
    own = tf.gather(self.node_embeddings, nodes)[..., tf.newaxis, :]
    vectors = tf.concat([own, tf.gather(self.side_embeddings, side)], axis=-2)
    present = tf.concat([tf.ones_like(side[..., :1], tf.bool), side > 0], axis=-1)
    logits = tf.gather(self.attention, nodes)
    # softmax over the present slots = e^{a_vj} / sum_j e^{a_vj} of the formula.
    logits = tf.where(present, logits, tf.fill(tf.shape(logits), -1e9))
    weights = tf.nn.softmax(logits, axis=-1)
    return tf.reduce_sum(weights[..., tf.newaxis] * vectors, axis=-2)

  def get_config(self):
    config = super().get_config()
    config.update(num_nodes=self.num_nodes, num_side_values=self.num_side_values,
                  num_side_slots=self.num_side_slots, dim=self.dim, seed=self.seed)
    return config


class EgesSkipGram(tf.keras.layers.Layer):
  """Skip-gram over walk pairs with EGES item vectors as the center embedding.

  Input: centers, contexts int [B] node indices. Output: the mean sampled-softmax
  loss (float32 scalar) of predicting each context from its center's H_v, with
  ``num_negatives`` negatives per batch drawn from ``unigram ** 0.75`` (the
  sampling probability is corrected for, accidental hits removed).

  Args:
    node_side: int [num_nodes, C] side-information values of every node (0 pad).
    num_side_values: size of the side table (values are < this).
    unigram: float [num_nodes], how often every node appears as a context.
    dim, num_negatives, seed: see `EgesConfig`.
  """

  def __init__(self, node_side: np.ndarray, num_side_values: int,
               unigram: np.ndarray, dim: int, num_negatives: int, seed: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    node_side = np.asarray(node_side, np.int64)
    self.num_nodes = int(node_side.shape[0])
    self.num_negatives = num_negatives
    self.node_side = tf.constant(node_side)
    probs = np.asarray(unigram, np.float64) ** _UNIGRAM_POWER
    probs = probs / probs.sum()
    self.log_probs = tf.constant(np.log(np.maximum(probs, 1e-30)), tf.float32)
    self.cdf = tf.constant(np.cumsum(probs), tf.float64)
    self.items = EgesEmbedding(self.num_nodes, num_side_values,
                               node_side.shape[1], dim, seed=seed, name="items")
    self.context_embeddings = self.add_weight(
        name="context_embeddings", shape=[self.num_nodes, dim],
        initializer="zeros")
    self.context_biases = self.add_weight(
        name="context_biases", shape=[self.num_nodes], initializer="zeros")
    self.sampler = tf.random.Generator.from_seed(seed)

  def vectors(self, nodes: tf.Tensor) -> tf.Tensor:
    """H_v of node indices [...] -> [..., dim]."""
    return self.items(nodes, tf.gather(self.node_side, nodes))

  def _sample(self) -> tf.Tensor:
    u = self.sampler.uniform([self.num_negatives], dtype=tf.float64)
    sampled = tf.searchsorted(self.cdf, u, side="right")
    return tf.minimum(sampled, self.num_nodes - 1)

  def call(self, centers: tf.Tensor, contexts: tf.Tensor) -> tf.Tensor:
    contexts = tf.cast(contexts, tf.int64)
    sampled = tf.cast(self._sample(), tf.int64)
    # Sampling with replacement: expected count = num_negatives * probability.
    log_n = tf.math.log(float(self.num_negatives))
    true_expected = tf.exp(tf.gather(self.log_probs, contexts) + log_n)
    sampled_expected = tf.exp(tf.gather(self.log_probs, sampled) + log_n)
    loss = tf.nn.sampled_softmax_loss(
        weights=self.context_embeddings, biases=self.context_biases,
        labels=contexts[:, tf.newaxis], inputs=self.vectors(centers),
        num_sampled=self.num_negatives, num_classes=self.num_nodes,
        sampled_values=(sampled, true_expected[:, tf.newaxis], sampled_expected),
        remove_accidental_hits=True)
    return tf.reduce_mean(loss)

  def full_softmax_loss(self, centers: tf.Tensor, contexts: tf.Tensor) -> tf.Tensor:
    """The exact softmax loss over all nodes (no sampling), for evaluation."""
    logits = tf.matmul(self.vectors(centers), self.context_embeddings,
                       transpose_b=True) + self.context_biases
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=contexts, logits=logits))

  def get_config(self):
    config = super().get_config()
    config.update(num_nodes=self.num_nodes, num_negatives=self.num_negatives)
    return config


def side_index(graph: ItemGraph, item_ids: np.ndarray,
               item_cats: np.ndarray) -> Tuple[np.ndarray, int]:
  """Category slots of every node as indices into a side table (0 = padding).

  Args:
    graph: the item graph.
    item_ids: int64 [m], sorted; items of unknown categories may be missing.
    item_cats: int64 [m, C], their categories (0 = padding).

  Returns:
    int64 [n, C] indices (category -> 1 + its rank among the distinct
    categories) and the side table size (distinct categories + 1).
  """
  item_ids = np.asarray(item_ids, np.int64)
  item_cats = np.asarray(item_cats, np.int64)
  cats = np.zeros([graph.num_nodes, item_cats.shape[-1]], np.int64)
  if item_ids.size:
    rows = np.minimum(np.searchsorted(item_ids, graph.ids), item_ids.size - 1)
    known = item_ids[rows] == graph.ids
    cats[known] = item_cats[rows[known]]
  values = np.unique(cats[cats > 0])
  index = np.where(cats > 0, np.searchsorted(values, cats) + 1, 0)
  return index.astype(np.int64), int(values.size) + 1


def train_embeddings(graph: ItemGraph, node_side: np.ndarray,
                     num_side_values: int, config: EgesConfig,
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
  optimizer = tf.keras.optimizers.Adam(config.learning_rate)

  @tf.function
  def step(centers, contexts):
    with tf.GradientTape() as tape:
      loss = model(centers, contexts)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  rng = np.random.default_rng(config.seed)
  counter = RecordProgress(_stage(progress, TRAIN_STAGE),
                           config.epochs * training_steps(walks, config))
  history = [_train_epoch(step, walks, graph.ids, config, rng, counter)
             for _ in range(config.epochs)]
  counter.end()
  return model, history


def _train_epoch(step: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                 walks: np.ndarray, ids: np.ndarray, config: EgesConfig,
                 rng: np.random.Generator, counter: RecordProgress) -> float:
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


def training_steps(walks: np.ndarray, config: EgesConfig) -> int:
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


def save_embeddings(path: str, ids: np.ndarray, vectors: np.ndarray) -> str:
  """Writes ``ids`` [n] and ``vectors`` [n, d] to ``path`` (.npz) atomically."""
  directory = os.path.dirname(paths.abspath(path))
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".eges-{uuid.uuid4().hex[:12]}.npz")
  try:
    gfile_io.save_npz(tmp, ids=np.asarray(ids, np.int64),
                      vectors=np.asarray(vectors, np.float32))
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


def load_embeddings(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads and checks an EGES ``.npz``: ids int64 [n] sorted, vectors float32 [n, d].

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no EGES embeddings file (made by train_eges)")
  with gfile_io.load_npz(path) as saved:
    missing = sorted({"ids", "vectors"} - set(saved.files))
    if missing:
      raise ValueError(f"{path}: not an EGES embeddings file, missing {missing}")
    ids, vectors = saved["ids"], saved["vectors"]
  if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{path}: ids must be a 1-D integer array, got "
                     f"{ids.dtype} {ids.shape}")
  if vectors.ndim != 2 or vectors.shape[0] != ids.size:
    raise ValueError(f"{path}: vectors must be [{ids.size}, d] like ids, got "
                     f"{vectors.shape}")
  if ids.size == 0:
    raise ValueError(f"{path}: the table is empty")
  if np.any(ids <= 0) or np.any(np.diff(ids) <= 0):
    raise ValueError(f"{path}: ids must be positive, distinct and sorted")
  if not np.all(np.isfinite(vectors)):
    raise ValueError(f"{path}: vectors hold NaN or infinity")
  return ids.astype(np.int64), vectors.astype(np.float32)


def train_eges(train_pattern: str, out_path: str, config: EgesConfig,
               progress: Optional[StageProgress] = None) -> str:
  """Stage 1 of EGES: reads the data, trains, writes ids and vectors to ``out_path``.

  ``progress(stage)`` (`StageProgress`, e.g. ``common.progress_printer``) is
  asked for one callback per stage as it starts: `READ_STAGE` ("records": the
  impressions read, total from ``schema.json``), `WALK_STAGE` ("walk steps",
  exact total) and `TRAIN_STAGE` ("training steps", exact total); each is called
  as ``(count, total, share)`` like the converters' progress. None: quiet.

  Returns:
    ``out_path``.
  """
  sessions = read_sessions(train_pattern, config, _stage(progress, READ_STAGE))
  graph = graph_from_sessions(sessions.items, sessions.session,
                              config.graph_window)
  node_side, num_side_values = side_index(graph, sessions.item_ids,
                                          sessions.item_cats)
  try:
    model, _ = train_embeddings(graph, node_side, num_side_values, config,
                                progress)
  except ValueError as e:
    raise ValueError(f"{train_pattern}: {e}") from None
  vectors = model.vectors(tf.range(graph.num_nodes, dtype=tf.int64)).numpy()
  return save_embeddings(out_path, graph.ids, vectors)
