"""`QueryItemGraph`: builds a batch's query-item graph edges inside the TF graph.

EGIN never stores a graph (paper, section 3.2): each training batch's own click and
query sequences are a sample of the implicit query-item graph, so this layer turns
the reader's batch into the three edge types of Algorithms 1 and 2 with plain tensor
ops, and the graph loss scores them in the same step as the CTR loss.

The algorithms grow an edge set (``E = E ∪ {...}``). Here each edge type is an
`EdgeList` (`egin_tf.layers.graph_edges`): the batch's K real edges as (row, source
position, destination position, source id, destination id), built from the
histories' real entries only, so the cost follows the edges, not B times every pair
of positions. Edges come sorted by row, then source position, then destination
position (the graph loss's per-edge results follow that order):

* **i2i** (Algorithm 1, lines 2-6) over the i2i items [B, L]: positions j and k
  with ``0 < |k - j| <= w`` (``window_edge_list``). Both (c_j, c_k) and (c_k, c_j)
  appear, as each position is a source in turn.
* **q2q** = BuildEdge(Q, Q) (Algorithm 2) over ``query_hist_*`` [B, M]: queries i
  and k with ``0 < |t_k - t_i| < q2q_timespan`` (Algorithm 2 adds (q1, q2) and
  (q2, q1) for the earlier q1, so both orders are edges) that share a category
  (`shares_category`: an id > 0). A query never pairs with itself (zero time gap).
* **q2i** = BuildEdge(Q, C) over queries [B, M] and clicks [B, L]: query i
  (``src``) and click k (``dst``) with ``0 < t_k - t_i < q2i_timespan`` (the click
  follows the query) that share a category. Only query -> item is stored; the loss
  uses each edge in both directions.

Every type also drops padding (id 0) and pairs of equal ids. The edges are a
multiset: an id repeated in a sequence is one source per occurrence, so a pair that
co-occurs twice weighs twice in the loss, as in skip-gram over a corpus (the
algorithms' set union would count it once).

The dense layout (every candidate pair of positions owns a fixed slot of a [B, E]
grid and a mask says which are edges) is the tests' oracle (``tests/graph_oracle.py``):
these builders must equal ``edge_list`` of it edge for edge, order included.
"""

from typing import Any, Dict, Optional, Tuple, Union

from data_pipeline import schema
from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import EdgeList
from egin_tf.layers.id_embedding import bucketize_ids
from egin_tf.layers.state import add_state, variable_of
from egin_tf.layers.target_match import shares_category

Dim = Union[int, tf.Tensor]

# Stream ids folded into the per-step seed, so the two random options never share
# random numbers.
_MIXTURE_STREAM = 0
_SUBSAMPLE_STREAM = 1


def _dim(x: tf.Tensor, axis: int) -> Dim:
  """The static size of ``x`` along ``axis`` if known, else the dynamic one."""
  static = x.shape[axis]
  return static if static is not None else tf.shape(x, out_type=tf.int32)[axis]


def window_edge_list(items: tf.Tensor, window: int,
                     keep: Optional[tf.Tensor] = None) -> EdgeList:
  """i2i edges: items at distinct positions at most ``window`` apart (Algorithm 1).

  Each real occurrence (id != 0, and ``keep``) is a source; its candidates are
  the 2w positions around it, so the work follows the real entries, not B * L.

  Args:
    items: int64 [B, L]; 0 is padding (holes allowed).
    window: w >= 1.
    keep: optional bool [B, L]; an occurrence where it is False makes no edge.
      It still holds its position: the window counts positions, so it does not
      reach past a dropped occurrence (subsampling masks, it does not remove).

  Returns:
    `EdgeList` sorted by (row, source position, destination position).
  """
  real = items != 0
  if keep is not None:
    real &= keep
  sources = tf.where(real)  # [V, 2] (row, position), row-major
  offsets = tf.constant([d for d in range(-window, window + 1) if d != 0], tf.int64)
  dst_pos = sources[:, 1:] + offsets[None, :]  # [V, 2w], increasing per source
  length = tf.shape(items, out_type=tf.int64)[1]
  in_range = (dst_pos >= 0) & (dst_pos < length)
  dst_index = tf.stack([tf.broadcast_to(sources[:, :1], tf.shape(dst_pos)),
                        tf.clip_by_value(dst_pos, 0, tf.maximum(length - 1, 0))],
                       axis=-1)  # [V, 2w, 2], a valid index even out of range
  src_id = tf.gather_nd(items, sources)
  dst_id = tf.gather_nd(items, dst_index)
  edge = in_range & tf.gather_nd(real, dst_index) & (dst_id != src_id[:, None])
  kept = tf.where(edge)  # [K, 2] (source, offset), row-major: the edges' order
  source = kept[:, 0]
  return EdgeList(rows=tf.gather(sources[:, 0], source),
                  src_pos=tf.gather(sources[:, 1], source),
                  dst_pos=tf.gather_nd(dst_pos, kept),
                  src=tf.gather(src_id, source), dst=tf.gather_nd(dst_id, kept))


# Sorts after every real time; padding sorts last and is never within a window.
_PADDING_TIME = 2 ** 62


def _time_window_pairs(src: Tuple[tf.Tensor, tf.Tensor], dst: Tuple[tf.Tensor, tf.Tensor],
                       timespan: int, either_order: bool
                       ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The (source, destination) position pairs of each row whose time gap can pass.

  Candidates are the non-padding destinations with ``0 < t_dst - t_src < T`` (or
  ``|t_dst - t_src| < T`` with ``either_order``, the zero gap removed later):
  each source's destinations sorted by time, the window found by binary search,
  so the work follows the pairs close in time, not n_src * n_dst. Histories need
  not be sorted (they are sorted here per row).

  Returns (rows, src_pos, dst_pos), int64 [T], in no particular order.
  """
  src_ids, src_times = src
  dst_ids, dst_times = dst
  dst_times = tf.where(dst_ids != 0, dst_times, tf.constant(_PADDING_TIME, tf.int64))
  order = tf.argsort(dst_times, axis=1, stable=True)  # [B, N2]
  sorted_times = tf.gather(dst_times, order, batch_dims=1)
  low = src_times - timespan + 1 if either_order else src_times + 1
  first = tf.searchsorted(sorted_times, low, side="left")
  end = tf.searchsorted(sorted_times, src_times + timespan, side="left")
  counts = tf.reshape(tf.where(src_ids != 0, end - first, tf.zeros_like(first)), [-1])
  counts = tf.cast(counts, tf.int64)
  n_src = tf.shape(src_ids, out_type=tf.int64)[1]
  # Pair t belongs to the first source whose running count passes t: the same
  # as tf.repeat(sources, counts) in a few ops instead of about twenty.
  ends = tf.cumsum(counts)
  pairs = tf.range(tf.reduce_sum(counts))
  flat_source = tf.searchsorted(ends, pairs, side="right", out_type=tf.int64)
  within = pairs - tf.gather(ends - counts, flat_source)
  rows, src_pos = flat_source // n_src, flat_source % n_src
  sorted_pos = tf.gather(tf.cast(tf.reshape(first, [-1]), tf.int64), flat_source) + within
  dst_pos = tf.cast(tf.gather_nd(order, tf.stack([rows, sorted_pos], axis=1)), tf.int64)
  return rows, src_pos, dst_pos


def time_category_edge_list(src: Tuple[tf.Tensor, tf.Tensor, tf.Tensor],
                            dst: Tuple[tf.Tensor, tf.Tensor, tf.Tensor],
                            timespan: int, either_order: bool) -> EdgeList:
  """BuildEdge(S1, S2) of Algorithm 2: close in time and sharing a category.

  The candidate pairs are each row's real entries within the time window
  (`_time_window_pairs`), not B * N1 * N2 pairs, so the cost follows the edges.

  Args:
    src: (ids int64 [B, N1], times int64 [B, N1], cats int64 [B, N1, C]).
    dst: (ids int64 [B, N2], times int64 [B, N2], cats int64 [B, N2, C]).
    timespan: T; a pair needs ``0 < t_dst - t_src < T``.
    either_order: also accept ``0 < t_src - t_dst < T``. For S1 = S2 this is
      Algorithm 2's adding of both (i1, i2) and (i2, i1).

  Returns:
    `EdgeList` sorted by (row, source position, destination position).
  """
  src_ids, src_times, src_cats = src
  dst_ids, dst_times, dst_cats = dst
  rows, src_pos, dst_pos = _time_window_pairs((src_ids, src_times),
                                              (dst_ids, dst_times), timespan,
                                              either_order)
  src_index = tf.stack([rows, src_pos], axis=1)
  dst_index = tf.stack([rows, dst_pos], axis=1)
  src_id = tf.gather_nd(src_ids, src_index)
  dst_id = tf.gather_nd(dst_ids, dst_index)
  gap = tf.gather_nd(dst_times, dst_index) - tf.gather_nd(src_times, src_index)
  if either_order:
    gap = tf.abs(gap)
  keep = ((gap > 0) & (gap < timespan) & (src_id != dst_id) &
          shares_category(tf.gather_nd(src_cats, src_index),
                          tf.gather_nd(dst_cats, dst_index)))
  # Sorted by row, then source position, then destination position;
  # one index of the kept pairs in that order, then one gather per field (five
  # boolean_masks would cost about twenty ops each).
  n_src = tf.shape(src_ids, out_type=tf.int64)[1]
  n_dst = tf.shape(dst_ids, out_type=tf.int64)[1]
  kept = tf.where(keep)[:, 0]
  slot = tf.gather((rows * n_src + src_pos) * n_dst + dst_pos, kept)
  kept = tf.gather(kept, tf.argsort(slot, stable=True))
  return EdgeList(*(tf.gather(x, kept)
                    for x in (rows, src_pos, dst_pos, src_id, dst_id)))


def _pad_to(ids: tf.Tensor, length: Dim) -> tf.Tensor:
  """Right-pads int64 [B, n] with 0 to [B, length] (length >= n)."""
  return tf.pad(ids, [[0, 0], [0, length - _dim(ids, 1)]])


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class QueryItemGraph(tf.keras.layers.Layer):
  """Builds the i2i, q2q and q2i edges of a batch (paper, Algorithms 1 and 2).

  Input: the reader's batch dict; it uses ``click_ids``, ``click_times`` int64
  [B, L], ``click_cats`` int64 [B, L, C], ``query_hist_ids``, ``query_hist_times``
  int64 [B, M], ``query_hist_cats`` int64 [B, M, C] and, when ``seeds_fraction`` >
  0, ``seed_ids`` int64 [B, S]. Other features are ignored.

  Output: ``{"i2i": EdgeList, "q2q": EdgeList, "q2i": EdgeList, "i2i_items":
  int64 [B, L']}`` (see the module docstring for the edges and their order; with
  ``with_queries=False`` only "i2i" and "i2i_items"). ``i2i_items`` is the sequence
  the i2i positions index: per row the clicks or the seeds, right-padded to
  L' = max(L, S) (L' = L when ``seeds_fraction`` is 0).

  In a functional model the edge lists feed `GraphSoftmaxLoss` as they are
  (``reverse_edges`` turns q2i around without a layer). A model config keeps no
  NamedTuple type, so a loaded model hands a layer its edges as a plain list:
  `GraphSoftmaxLoss` rebuilds them, a layer of your own should call
  `egin_tf.layers.graph_edges.restore_edges`.

  State: the step counter (and the subsampling counts), non-trainable
  variables made by the constructor, so a model saved with them (``.keras``,
  SavedModel, checkpoints) loads them back whether or not its inference calls
  this layer.

  Defaults: ``window=2`` as in the paper. ``q2q_timespan`` is 30 minutes, the
  session gap of DSIN [5] that the paper follows to cut query sessions: queries
  more than 30 minutes apart are usually separate search intents.
  ``q2i_timespan`` is 1 hour: a shopper keeps clicking results of one search for
  tens of minutes, and the category check already rejects unrelated clicks.

  Options (section 4.6), both off by default:

  * ``seeds_fraction`` p in [0, 1]: each row builds its i2i edges from its seeds
    sequence (category-filtered clicks) instead of its clicks with probability p
    (the paper's best mix is p = 0.2). The draw is a stateless function of
    ``seed`` and a step counter (a non-trainable variable that training calls
    advance and checkpoints save), so runs are deterministic and resumable.
  * ``subsample_threshold`` t: word2vec-style subsampling of frequent items. Each
    occurrence of id x in ``i2i_items`` is dropped from the i2i edges with
    probability ``1 - min(1, sqrt(t / f(x)))``, where f(x) is x's share of all
    item occurrences seen so far, counted in a table of ``subsample_buckets``
    buckets (ids hashed as by `bucketize_ids`; colliding ids share a count).
    Like dropout it acts only when ``training`` is true, and only training calls
    add the batch's occurrences to the counts (before the drop is drawn, so every
    item in the batch has a non-zero frequency). Dropped occurrences are masked,
    not removed: the window does not reach past them.

  Example (times in seconds; one row, categories in the last axis):

  ```python
  batch = {
      "click_ids": tf.constant([[11, 12, 13]], tf.int64),
      "click_times": tf.constant([[100, 200, 300]], tf.int64),
      "click_cats": tf.constant([[[1], [1], [2]]], tf.int64),
      "query_hist_ids": tf.constant([[21, 22]], tf.int64),
      "query_hist_times": tf.constant([[50, 150]], tf.int64),
      "query_hist_cats": tf.constant([[[1], [1]]], tf.int64),
  }
  edges = QueryItemGraph(window=1)(batch, training=True)
  # i2i (src -> dst ids): 11->12, 12->11, 12->13, 13->12 (positions 1 apart)
  # q2q: 21->22, 22->21 (100 s apart, category 1 shared)
  # q2i: 21->11, 21->12, 22->12 (click after the query, category 1 shared);
  #      no edge to 13: its category 2 is not the queries'
  edges["q2i"].src, edges["q2i"].dst  # int64 [3] each
  ```
  """

  def __init__(self,
               window: int = 2,
               q2q_timespan: int = 30 * 60,
               q2i_timespan: int = 60 * 60,
               seeds_fraction: float = 0.0,
               subsample_threshold: Optional[float] = None,
               subsample_buckets: int = 2**20,
               seed: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    check_int("window", window, minimum=1)
    check_int("q2q_timespan", q2q_timespan, minimum=1)
    check_int("q2i_timespan", q2i_timespan, minimum=1)
    check_int("subsample_buckets", subsample_buckets, minimum=2)
    check_int("seed", seed, minimum=0)
    if not 0.0 <= seeds_fraction <= 1.0:
      raise ValueError(f"seeds_fraction must be in [0, 1], got {seeds_fraction}")
    if subsample_threshold is not None and not subsample_threshold > 0:
      raise ValueError("subsample_threshold must be > 0 (or None for no "
                       f"subsampling), got {subsample_threshold}")
    self.window = window
    self.q2q_timespan = q2q_timespan
    self.q2i_timespan = q2i_timespan
    self.seeds_fraction = float(seeds_fraction)
    self.subsample_threshold = (None if subsample_threshold is None
                                else float(subsample_threshold))
    self.subsample_buckets = subsample_buckets
    self.seed = seed
    # The state depends on no input, so it exists from construction (in the
    # caller's strategy scope): a model that builds edges only in its
    # train_step still has every variable when `load_model` assigns the
    # saved values (Keras builds a loaded model by calling it in inference).
    self.build(None)

  def build(self, input_shape):
    if self.built:  # the constructor built it; a second build would duplicate
      return

    # Under a synchronous strategy every replica advances its copy of the step
    # once per global step; the counts add up over replicas. (The subsampling
    # and seeds draws are per replica there: each replica draws what row 0..
    # of one process would, so those options do not match one process exactly.)
    self.step = add_state(self, "step", [], aggregation="none")
    if self.subsample_threshold is not None:
      self.item_counts = add_state(self, "item_counts", [self.subsample_buckets],
                                   aggregation="sum")
      self.item_total = add_state(self, "item_total", [], aggregation="sum")
    super().build(input_shape)

  def call(self, batch: Dict[str, tf.Tensor], training=None,
           with_queries: bool = True) -> Dict[str, Any]:
    items, keep, queries, clicks = self._prepare(batch, training)
    out = {"i2i": window_edge_list(items, self.window, keep), "i2i_items": items}
    if with_queries:
      out["q2q"] = time_category_edge_list(queries, queries, self.q2q_timespan,
                                           either_order=True)
      out["q2i"] = time_category_edge_list(queries, clicks, self.q2i_timespan,
                                           either_order=False)
    return out

  def edge_lists(self, batch: Dict[str, tf.Tensor], training=None,
                 with_queries: bool = True) -> Dict[str, Any]:
    """`call` for a caller inside another layer's call (`GraphLearning`).

    Skips Keras' ``__call__`` (no input casting or name scope of its own).
    Advances the step counter like a call (call once per training step).
    """
    return self.call(batch, training=training, with_queries=with_queries)

  def _prepare(self, batch: Dict[str, tf.Tensor], training):
    """(i2i items, kept occurrences or None, queries, clicks); advances the step."""
    clicks = _sequence(batch, schema.CLICKS)
    queries = _sequence(batch, schema.QUERIES)
    training = tf.cast(False if training is None else training, tf.bool)
    step_seed = tf.stack([tf.constant(self.seed, tf.int64), variable_of(self.step).read_value()])
    items = self._i2i_items(batch, clicks[0], step_seed)
    keep = None
    if self.subsample_threshold is not None:
      keep = self._subsample_keep(items, training, step_seed)
    # Tied to the batch: see NegativeQueue.sample (no count without a batch).
    with tf.control_dependencies([items]):
      variable_of(self.step).assign_add(tf.cast(training, tf.int64))
    return items, keep, queries, clicks

  def _i2i_items(self, batch: Dict[str, tf.Tensor], click_ids: tf.Tensor,
                 step_seed: tf.Tensor) -> tf.Tensor:
    """Per row the clicks or (with probability seeds_fraction) the seeds [B, L']."""
    if self.seeds_fraction == 0.0:
      return click_ids
    seed_ids = _feature(batch, schema.SEEDS.ids, rank=2,
                        why=f"seeds_fraction={self.seeds_fraction} > 0")
    n_clicks, n_seeds = _dim(click_ids, 1), _dim(seed_ids, 1)
    if isinstance(n_clicks, int) and isinstance(n_seeds, int):
      length = max(n_clicks, n_seeds)
    else:
      length = tf.maximum(n_clicks, n_seeds)
    draw = tf.random.stateless_uniform(
        tf.shape(click_ids)[:1],
        seed=tf.random.experimental.stateless_fold_in(step_seed, _MIXTURE_STREAM))
    use_seeds = draw < self.seeds_fraction
    return tf.where(use_seeds[:, None], _pad_to(seed_ids, length),
                    _pad_to(click_ids, length))

  def _subsample_keep(self, items: tf.Tensor, training: tf.Tensor,
                      step_seed: tf.Tensor) -> tf.Tensor:
    """Counts the batch's items (when training); bool [B, L'] of kept occurrences."""
    buckets = bucketize_ids(items, self.subsample_buckets)  # padding -> bucket 0
    added = tf.cast((items != 0) & training, tf.int64)
    variable_of(self.item_counts).scatter_add(
        tf.IndexedSlices(tf.reshape(added, [-1]), tf.reshape(buckets, [-1])))
    variable_of(self.item_total).assign_add(tf.reduce_sum(added))

    counts = tf.cast(tf.nn.embedding_lookup(self.item_counts, buckets), tf.float64)
    total = tf.cast(variable_of(self.item_total).read_value(), tf.float64)
    frequency = tf.math.divide_no_nan(counts, total)
    # An id never counted (only possible outside training) is kept.
    ratio = tf.math.divide_no_nan(
        tf.constant(self.subsample_threshold, tf.float64), frequency)
    keep_probability = tf.where(frequency > 0, tf.minimum(tf.sqrt(ratio), 1.0),
                                tf.ones_like(frequency))
    draw = tf.random.stateless_uniform(
        tf.shape(items), dtype=tf.float64,
        seed=tf.random.experimental.stateless_fold_in(step_seed, _SUBSAMPLE_STREAM))
    return (draw < keep_probability) | tf.logical_not(training)

  def get_config(self):
    config = super().get_config()
    config.update({
        "window": self.window,
        "q2q_timespan": self.q2q_timespan,
        "q2i_timespan": self.q2i_timespan,
        "seeds_fraction": self.seeds_fraction,
        "subsample_threshold": self.subsample_threshold,
        "subsample_buckets": self.subsample_buckets,
        "seed": self.seed,
    })
    return config


def _feature(batch: Dict[str, tf.Tensor], name: str, rank: int,
             why: str = "") -> tf.Tensor:
  """``batch[name]`` as int64 of the given rank, or a clear error naming it."""
  if name not in batch:
    raise ValueError(
        f"QueryItemGraph needs the batch feature {name!r}"
        f"{' (' + why + ')' if why else ''}; the batch has {sorted(batch)}")
  value = batch[name]
  if not value.dtype.is_integer:
    raise TypeError(
        f"batch feature {name!r} must be int64, got {value.dtype.name} (declare "
        "it as tf.keras.Input(..., dtype=tf.int64) in a functional model)")
  if value.shape.rank is not None and value.shape.rank != rank:
    raise ValueError(f"batch feature {name!r} must have rank {rank}, got shape "
                     f"{value.shape}")
  return tf.cast(value, tf.int64)


def _sequence(batch: Dict[str, tf.Tensor], seq: schema.SequenceFeatures
              ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(ids [B, N], times [B, N], cats [B, N, C]) of one history, shapes checked."""
  ids = _feature(batch, seq.ids, rank=2)
  times = _feature(batch, seq.times, rank=2)
  cats = _feature(batch, seq.cats, rank=3)
  for name, other in ((seq.times, times), (seq.cats, cats)):
    if not ids.shape.is_compatible_with(other.shape[:2]):
      raise ValueError(f"batch features {seq.ids!r} {ids.shape} and {name!r} "
                       f"{other.shape} disagree on [B, N]")
  return ids, times, cats
