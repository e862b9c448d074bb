"""`GraphLearning`: EGIN's graph half as one layer (paper, section 3.2).

It owns the `QueryItemGraph` and an item and a query `NegativeQueue`, and scores
the batch's real edges (`QueryItemGraph.edge_lists`, `edge_list_loss`: the work
follows the edges, not the padded slots) with item and query embedding
tables it is GIVEN: the same tables the CTR network reads, which is what makes the
training end to end. `EGIN` uses it; so can any other Keras CTR model (see
``examples/din_with_egin_graph_layers.py``).
"""

from typing import Dict, Mapping, Optional

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import reverse_list
from egin_tf.layers.graph_loss import edge_list_loss, per_edge_list_loss
from egin_tf.layers.negative_queue import NegativeQueue, NegativeSample
from egin_tf.layers.query_item_graph import QueryItemGraph
from egin_tf.layers.state import training_mode


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class GraphLearning(tf.keras.layers.Layer):
  """Unweighted graph losses L_i2i, L_q2q, L_q2i of a training batch.

  Call: ``layer(batch, training=True)`` with the reader's batch dict (it uses
  ``item_id``, ``query_id`` [B], ``click_ids``/``_times`` [B, L], ``click_cats`` [B, L, C],
  ``query_hist_ids``/``_times`` [B, M], ``query_hist_cats`` [B, M, C], and
  ``seed_ids`` [B, S] with ``seeds_fraction`` > 0). Returns float32 scalars
  ``{"i2i": ..., "q2q": ..., "q2i": ...}`` (only "i2i" with ``use_query=False``);
  L_q2i averages the query -> item direction (item negatives) and the item ->
  query direction (query negatives).

  With ``folds`` (int32 [B], `egin_tf.layers.out_of_fold`), the tables must be
  `OutOfFoldEmbedding`s: each row's edges and their negatives are scored with
  the tables of the row's fold (``train_lookup``), so fold k's rows train only
  fold k's tables; the queues are shared (they hold ids only).

  Only a training call (``training=True``) is a training step: it advances the
  graph's step counter (and, with ``subsample_threshold``, the item counts),
  enqueues the batch's item ids (clicks and targets) and query ids (history and
  current query), and draws negatives, embedded with the current tables. A call
  with ``training`` False or None (Keras' inference: `predict` and `evaluate`
  pass False) returns the same dict of float32 zeros and changes no variable, so
  a model that adds these losses with ``add_loss`` can predict and evaluate
  without touching its queues or graph. Keras passes a Python bool (``fit``,
  ``predict``, ``evaluate``, ``model(x, training=...)``); a bool tensor works
  too, through `tf.cond`, at the cost of tracing both branches. A caller that
  is not itself a Keras call with ``training`` (e.g. a model's own
  ``train_step``) must pass ``training=True``: the default is inference.

  Mixed precision: the losses are float32 under any policy (they are computed
  in float32 from the tables' vectors; a softmax over 100+ negatives is not safe
  in float16). Under ``mixed_float16`` make the CTR network's output float32 too
  (e.g. ``tf.keras.layers.Dense(1, dtype="float32")`` or
  ``tf.keras.layers.Activation("linear", dtype="float32")`` as its last layer),
  as the Keras mixed-precision guide advises, so a ``train_step`` that adds
  these losses to its CTR loss adds two float32 tensors.

  State: the graph's step counter (and subsampling counts) and both queues,
  made by their constructors, so they exist from this layer's construction on,
  in the caller's strategy scope, and a model saved with them (``.keras``,
  SavedModel, checkpoints) loads them back even if it calls this layer only in
  its ``train_step``. The tables are the caller's: the CTR network that reads
  them builds them. A table that only this layer reads, in a subclassed model
  that calls this layer only in ``train_step``, is not built when Keras loads
  the model (it builds a loaded model by calling it in inference): build it
  in the model's constructor (e.g. ``table.build(None)`` for an `IdEmbedding`).

  Args:
    items: the item id-embedding layer (ids [...] -> [..., d]) shared with the
      CTR network.
    queries: the query id-embedding layer, same dimension d.
    use_query: build q2q and q2i edges (False: item-only graph).
    window, q2q_timespan, q2i_timespan, seeds_fraction, subsample_threshold:
      see `QueryItemGraph`.
    num_negatives, queue_capacity, logq_buckets: see `NegativeQueue`.
    per_edge_negatives: False (default): one draw of ``num_negatives`` per batch
      and node type, shared by all edges; True: every edge draws its own
      ``num_negatives`` (the paper's Algorithm 1), so the edges see many more
      distinct negatives at n times the lookups (use a small n).
    seed: seeds the graph's random options and both queues.

  Example (``batch`` as in the `QueryItemGraph` example, plus the targets):

  ```python
  items, queries = IdEmbedding(1000, 8), IdEmbedding(100, 8)
  graph = GraphLearning(items, queries, num_negatives=4, queue_capacity=100)
  batch = dict(batch, item_id=tf.constant([14], tf.int64),
               query_id=tf.constant([23], tf.int64))
  losses = graph(batch, training=True)  # {"i2i", "q2q", "q2i"}: float32 []
  graph(batch)                           # inference: zeros, no state change
  # In a model's call: if training: self.add_loss(tf.add_n(list(losses.values())))
  ```
  """

  def __init__(self, items: tf.keras.layers.Layer, queries: tf.keras.layers.Layer,
               use_query: bool = True,
               window: int = 2,
               q2q_timespan: int = 30 * 60,
               q2i_timespan: int = 60 * 60,
               seeds_fraction: float = 0.0,
               subsample_threshold: Optional[float] = None,
               num_negatives: int = 100,
               queue_capacity: int = 1_000_000,
               logq_buckets: Optional[int] = None,
               per_edge_negatives: bool = False,
               seed: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    self.items = items
    self.per_edge_negatives = per_edge_negatives
    self.queries = queries
    self.use_query = use_query
    self.graph = QueryItemGraph(window=window, q2q_timespan=q2q_timespan,
                                q2i_timespan=q2i_timespan,
                                seeds_fraction=seeds_fraction,
                                subsample_threshold=subsample_threshold,
                                seed=seed, name="query_item_graph")
    # Different seeds: equal seeds would draw the same slots in both queues.
    self.item_queue = NegativeQueue(queue_capacity, num_negatives, seed=2 * seed,
                                    logq_buckets=logq_buckets, name="item_queue")
    self.query_queue = NegativeQueue(queue_capacity, num_negatives,
                                     seed=2 * seed + 1, logq_buckets=logq_buckets,
                                     name="query_queue")

  def build(self, batch_shape=None):
    """Builds the tables if the CTR part has not yet (the graph and queues are
    built in the constructor), so Keras 3 can load their saved weights."""
    for table, key in ((self.items, schema_lib.ITEM_ID),
                       (self.queries, schema_lib.QUERY_ID)):
      if not table.built:
        table.build(None if batch_shape is None else batch_shape.get(key))
    super().build(batch_shape)

  def _loss(self, anchor_table, positive_table, edges, queue: NegativeQueue,
            folds: Optional[tf.Tensor],
            negatives: Optional[NegativeSample] = None) -> tf.Tensor:
    """One edge type's loss; ``negatives``: the batch's shared draw (else each
    edge draws its own from ``queue``)."""
    if negatives is None:
      return self._per_edge_loss(anchor_table, positive_table, edges, queue, folds)
    if folds is None:
      return edge_list_loss(anchor_table, positive_table, edges,
                            positive_table(negatives.ids), negatives.ids,
                            negatives.log_q, negatives.valid)
    # Every fold's view of the negatives [F, N, d]; each anchor reads its own.
    negative_vectors = positive_table.fold_views(negatives.ids)
    return edge_list_loss(
        anchor_table.train_lookup, positive_table.train_lookup, edges,
        negative_vectors, negatives.ids, negatives.log_q, negatives.valid,
        edge_folds=tf.gather(folds, edges.rows))

  def _per_edge_loss(self, anchor_table, positive_table, edges,
                     queue: NegativeQueue, folds: Optional[tf.Tensor]) -> tf.Tensor:
    negatives = queue.sample(tf.size(edges.dst))
    if folds is not None:
      anchor_table, positive_table = (anchor_table.train_lookup,
                                      positive_table.train_lookup)
      folds = tf.gather(folds, edges.rows)
    return per_edge_list_loss(anchor_table, positive_table, edges, negatives.ids,
                              negatives.log_q, negatives.valid, edge_folds=folds)

  def _shared_draw(self, queue: NegativeQueue, ids) -> Optional[NegativeSample]:
    """Enqueues the batch's ids; the batch's shared negatives, or None when
    every edge draws its own."""
    queue.enqueue(ids)
    return None if self.per_edge_negatives else queue.sample()

  def call(self, batch: Mapping[str, tf.Tensor],
           folds: Optional[tf.Tensor] = None,
           training=None) -> Dict[str, tf.Tensor]:
    """A training call's losses; in inference float32 zeros and no state change.

    Args:
      batch: the reader's batch dict (keys in the class doc).
      folds: optional int32 [B], each row's fold (see the class doc).
      training: True for a training step; False or None (inference) gives
        zeros. A Python bool or a bool tensor (then `tf.cond`).

    Returns:
      ``{"i2i": ..., "q2q": ..., "q2i": ...}`` float32 scalars (only "i2i"
      with ``use_query=False``).
    """
    mode = training_mode(training)
    if mode is None:  # only known when the graph runs: both branches traced
      return tf.cond(tf.cast(training, tf.bool),
                     lambda: self._training_losses(batch, folds),
                     self._zero_losses)
    return self._training_losses(batch, folds) if mode else self._zero_losses()

  def _zero_losses(self) -> Dict[str, tf.Tensor]:
    """The inference result: the training call's keys, every loss 0."""
    names = ("i2i", "q2q", "q2i") if self.use_query else ("i2i",)
    return {name: tf.zeros([], tf.float32) for name in names}

  def _training_losses(self, batch: Mapping[str, tf.Tensor],
                       folds: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
    """One training step's losses; advances the graph, fills and draws the queues."""
    # Compact edges: the work follows the real edges, not the padded slots.
    edges = self.graph.edge_lists(batch, training=True,
                                  with_queries=self.use_query)
    click_ids = batch[schema_lib.CLICKS.ids]
    # Parts, not one concatenated tensor: under a strategy the queue gathers
    # each part over the replicas, keeping one process's order (all clicks,
    # then all targets, of the global batch).
    items, queries = self.item_queue, self.query_queue
    item_draw = self._shared_draw(items, [click_ids, batch[schema_lib.ITEM_ID]])
    losses = {"i2i": self._loss(self.items, self.items, edges["i2i"], items,
                                folds, item_draw)}
    if self.use_query:
      query_draw = self._shared_draw(
          queries, [batch[schema_lib.QUERIES.ids], batch[schema_lib.QUERY_ID]])
      losses["q2q"] = self._loss(self.queries, self.queries, edges["q2q"],
                                 queries, folds, query_draw)
      losses["q2i"] = 0.5 * (
          self._loss(self.queries, self.items, edges["q2i"], items, folds,
                     item_draw)
          + self._loss(self.items, self.queries, reverse_list(edges["q2i"]),
                       queries, folds, query_draw))
    return losses

  def get_config(self):
    """The options and the two tables' configs (nested layer configs).

    A config holds no object identity: `from_config` builds NEW tables of the
    same configs, no longer the ones the CTR network reads. A model that shares
    its tables builds its GraphLearning from them in its own constructor (as
    `EGIN` does) and restores weights; its config need not hold this layer's.
    """
    config = super().get_config()
    graph = self.graph.get_config()
    config.update({key: graph[key] for key in (
        "window", "q2q_timespan", "q2i_timespan", "seeds_fraction",
        "subsample_threshold", "seed")})
    config.update(items=tf.keras.layers.serialize(self.items),
                  queries=tf.keras.layers.serialize(self.queries),
                  use_query=self.use_query,
                  num_negatives=self.item_queue.num_negatives,
                  queue_capacity=self.item_queue.capacity,
                  logq_buckets=self.item_queue.logq_buckets,
                  per_edge_negatives=self.per_edge_negatives)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for table in ("items", "queries"):
      config[table] = tf.keras.layers.deserialize(config[table])
    return cls(**config)
