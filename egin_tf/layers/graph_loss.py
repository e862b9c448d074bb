"""The sampled-softmax graph loss of EGIN (paper, section 3.2), per edge type.

For each real edge (anchor a, positive p) and the shared sampled negatives N of the
positive's type (items for i2i and query->item, queries for q2q and item->query):

  L_G = -log(exp(a.p) / (exp(a.p) + sum_{n in N, id(n) != id(p)} exp(a.n - log q_n)))

averaged over the real edges. A sampled negative with the positive's id is not a
negative and is left out of that edge's sum (an "accidental hit"); ``log q_n`` is
the optional logQ correction (0 when not given).

Cost. The loss scores only the K real edges, in the compact `EdgeList` form
(`QueryItemGraph.edge_lists` builds it from the histories' valid positions; the
dense `Edges` layout is turned into it by `edge_list`), so the work follows K and
the number A of distinct anchor positions, never the B * E padded slots:

* positive logits are K dot products of the edges' anchor and positive vectors;
* negative logits are one matmul [A, d] x [N, d] -> [A, N], exponentiated and
  summed once per anchor (an i2i anchor sits in up to 2 * window edges that share
  its negatives);
* accidental hits are removed by id, with no [K, N] tensor: one matmul of the
  masses [A, N] with the 0/1 matrix keep[n, u] = (id of negative n != u), over the
  U <= N distinct negative ids u plus one all-ones column, gives for every anchor
  the mass of all negatives except those with id u [A, U + 1]. Each edge gathers
  the entry at (its anchor, the rank of its positive's id among the distinct ids,
  found by binary search, or the all-ones column if its positive was not drawn).

`edge_list_loss` embeds only the anchors and positives it scores, so the tables'
gradients are sparse rows too.

This exclusion is exact whatever the negatives' embeddings are (it does not assume
a negative with the positive's id has the positive's embedding), and it adds up
only non-negative terms: subtracting the hits' mass from the total instead would
cancel catastrophically when, with logQ, a rare positive drawn as a negative
carries most of the mass (its weight 1/q can reach the queue size). The largest
intermediates are [A, N] and [A, U + 1].

Why not TFRS. `tfrs.tasks.Retrieval` scores every row against one shared candidate
matrix with one positive per row ([rows, candidates] logits). Edges as rows would
build [K, N] logits and recompute each anchor's negatives once per edge instead of
once per anchor position. `tfrs.layers.loss.RemoveAccidentalHits` works on those [rows, candidates]
logits too (and only approximates removal with a very negative logit), and
`SamplingProbablityCorrection` takes probabilities and clips them at 1e-6, which
biases ids rarer than one in a million; the queue gives log q directly, so it is
subtracted as is.
"""

from typing import Callable, Optional, Tuple, Union

from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import EdgeList, Edges, edge_list, restore_edges


def reverse_edges(edges: Union[Edges, EdgeList]) -> Union[Edges, EdgeList]:
  """The same edges read from destination to source (e.g. q2i as item -> query).

  Either form; it only swaps fields, so in a functional model it adds no layer.

  Score the reversed edges with the destination sequence as anchors and the
  source sequence as positives, and negatives of the source's type.
  """
  return edges._replace(src=edges.dst, dst=edges.src,
                        src_pos=edges.dst_pos, dst_pos=edges.src_pos)


def edge_softmax_losses(anchor_embeddings: tf.Tensor,
                        positive_embeddings: tf.Tensor,
                        edges: Edges,
                        negative_embeddings: tf.Tensor,
                        negative_ids: tf.Tensor,
                        negative_log_q: Optional[tf.Tensor] = None,
                        negative_valid: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The sampled-softmax loss of every edge slot (or listed edge).

  Args:
    anchor_embeddings: float [B, Ls, d], the source sequence's embeddings
      (``edges.src_pos`` indexes its positions).
    positive_embeddings: float [B, Ld, d], the destination sequence's embeddings
      (``edges.dst_pos`` indexes its positions).
    edges: an `Edges` of one type; uses ``dst`` (int64 [B, E], the positives'
      ids), ``mask``, ``src_pos`` and ``dst_pos``. Or an `EdgeList` (what
      `QueryItemGraph` builds): its ``rows`` and positions index the sequences.
    negative_embeddings: float [N, d], the sampled negatives of the positive's
      type, embedded with the current table.
    negative_ids: int64 [N], their ids (to recognize accidental hits).
    negative_log_q: optional float [N], log of each negative's sampling
      probability; subtracted from its logit (logQ correction).
    negative_valid: optional bool [N]; False negatives are ignored (e.g. drawn
      from a still-empty queue). With no valid negative the loss is 0.

  Returns:
    float32 [B, E]: each real edge's loss, 0 for masked slots; for an
    `EdgeList`, float32 [K]: each listed edge's loss, in its order.
  """
  anchors, positives, negatives = _check_embeddings(
      anchor_embeddings, positive_embeddings, negative_embeddings)
  anchor_length = tf.shape(anchors, out_type=tf.int64)[1]
  positive_length = tf.shape(positives, out_type=tf.int64)[1]
  src_pos, dst_pos = _checked_positions(edges, anchor_length, positive_length)
  checked = edges._replace(src_pos=src_pos, dst_pos=dst_pos)
  negative_args = (negatives, negative_ids, negative_log_q, negative_valid)
  if isinstance(edges, EdgeList):
    return _listed_edge_losses(anchors, positives, checked, *negative_args)
  # Only the real edges are scored: they are often a small part of the E slots
  # (q2i keeps the pairs that match in time and category), and every per-edge op
  # and its gradient then costs [K] instead of [B, E].
  losses = _listed_edge_losses(anchors, positives, edge_list(checked),
                               *negative_args)
  index = tf.where(tf.cast(edges.mask, tf.bool))
  return tf.scatter_nd(index, losses, tf.shape(edges.mask, out_type=tf.int64))


def _listed_edge_losses(anchors: tf.Tensor, positives: tf.Tensor, edges: EdgeList,
                        negative_embeddings: tf.Tensor, negative_ids: tf.Tensor,
                        negative_log_q: Optional[tf.Tensor],
                        negative_valid: Optional[tf.Tensor]) -> tf.Tensor:
  """The loss [K] of each listed edge between anchors [B, Ls, d] and positives
  [B, Ld, d] (positions checked), each distinct anchor position scored once."""
  anchor_length = tf.shape(anchors, out_type=tf.int64)[1]
  positive_length = tf.shape(positives, out_type=tf.int64)[1]
  rows = tf.cast(edges.rows, tf.int64)
  anchor_keys = rows * anchor_length + edges.src_pos  # into [B * Ls]
  distinct_anchors, edge_anchor = tf.unique(anchor_keys, out_idx=tf.int64)
  width = tf.shape(anchors)[-1]
  anchor_vectors = tf.gather(tf.reshape(anchors, [-1, width]), distinct_anchors)
  positive_vectors = tf.gather(tf.reshape(positives, [-1, width]),
                               rows * positive_length + edges.dst_pos)
  return sampled_softmax_losses(anchor_vectors, edge_anchor, positive_vectors,
                                edges.dst, negative_embeddings, negative_ids,
                                negative_log_q, negative_valid)


def sampled_softmax_losses(anchor_vectors: tf.Tensor,
                           edge_anchor: tf.Tensor,
                           positive_vectors: tf.Tensor,
                           positive_ids: tf.Tensor,
                           negative_embeddings: tf.Tensor,
                           negative_ids: tf.Tensor,
                           negative_log_q: Optional[tf.Tensor] = None,
                           negative_valid: Optional[tf.Tensor] = None,
                           anchor_folds: Optional[tf.Tensor] = None
                           ) -> tf.Tensor:
  """The loss of K edges whose anchors are A distinct vectors: float32 [K].

  Args:
    anchor_vectors: float [A, d], one per distinct anchor (an anchor position
      shared by several edges shares its negatives' mass).
    edge_anchor: int [K], the anchor of each edge (index into ``anchor_vectors``).
    positive_vectors: float [K, d]; positive_ids: int64 [K].
    negative_embeddings, negative_ids, negative_log_q, negative_valid: as in
      `edge_softmax_losses`.
    anchor_folds: optional int [A]; then ``negative_embeddings`` is [F, N, d] and
      each anchor scores the negatives of its fold's view.
  """
  # float32 whatever the tables' compute dtype (mixed_float16 gives float16
  # vectors): a log-sum-exp over 100+ negatives is not safe in float16.
  anchor_vectors, positive_vectors, negative_embeddings = (
      tf.cast(x, tf.float32)
      for x in (anchor_vectors, positive_vectors, negative_embeddings))
  num_negatives = tf.shape(negative_ids)[0]
  negative_ids = tf.cast(negative_ids, tf.int64)
  positive_ids = tf.cast(positive_ids, tf.int64)
  edge_anchor = tf.cast(edge_anchor, tf.int64)
  if negative_valid is None:
    negative_valid = tf.ones([num_negatives], tf.bool)
  edge_anchors = tf.gather(anchor_vectors, edge_anchor)
  positive_logits = tf.reduce_sum(edge_anchors * positive_vectors, axis=-1)  # [K]
  negative_masses, shift = _negative_masses(
      anchor_vectors, negative_embeddings, negative_log_q, negative_valid,
      anchor_folds)
  negative_mass = _mass_without_positive(negative_masses, negative_ids,
                                         positive_ids, edge_anchor)
  edge_shift = tf.gather(shift, edge_anchor)  # [K]
  return _softmax_loss(positive_logits, negative_mass, edge_shift)


def _negative_masses(anchor_vectors: tf.Tensor, negative_embeddings: tf.Tensor,
                     negative_log_q: Optional[tf.Tensor], negative_valid: tf.Tensor,
                     anchor_folds: Optional[tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
  """Negative masses per anchor, shifted by their max for stability.

  Returns ``exp(a.n - log q_n - shift)`` float32 [A, N] (0 for invalid
  negatives) and ``shift`` [A] (0 for an anchor without a valid negative).
  """
  if anchor_folds is None:
    negative_logits = tf.matmul(anchor_vectors, negative_embeddings,
                                transpose_b=True)
  else:
    every_fold = tf.einsum("ad,fnd->afn", anchor_vectors, negative_embeddings)
    negative_logits = tf.gather(every_fold, tf.cast(anchor_folds, tf.int32),
                                axis=1, batch_dims=1)
  return _shifted_masses(negative_logits, negative_log_q, negative_valid)


def _shifted_masses(negative_logits: tf.Tensor, negative_log_q: Optional[tf.Tensor],
                    negative_valid: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """``exp(logit - log q - shift)`` float32 [..., N] (0 where not valid) and the
  shift [...], the max over the valid negatives (0 for a row without one)."""
  negative_logits = tf.cast(negative_logits, tf.float32)
  if negative_log_q is not None:
    negative_logits -= tf.cast(negative_log_q, tf.float32)
  negative_logits = tf.where(negative_valid, negative_logits, -float("inf"))
  shift = tf.stop_gradient(tf.reduce_max(negative_logits, axis=-1))
  shift = tf.where(tf.math.is_finite(shift), shift, tf.zeros_like(shift))
  return tf.exp(negative_logits - shift[..., tf.newaxis]), shift


def _mass_without_positive(negative_masses: tf.Tensor, negative_ids: tf.Tensor,
                           positive_ids: tf.Tensor, edge_anchor: tf.Tensor) -> tf.Tensor:
  """Each edge's mass of its anchor's negatives, accidental hits left out: [K].

  The mass of all negatives except those with one id, for every (anchor,
  distinct id u) [A, U + 1], is one matmul with the 0/1 matrix keep[n, u] =
  (id of n != u); the extra column U keeps every negative, for edges whose
  positive was not drawn.
  """
  num_negatives = tf.shape(negative_ids)[0]
  distinct_ids = tf.unique(tf.sort(negative_ids)).y  # [U], sorted
  num_distinct = tf.size(distinct_ids, out_type=tf.int64)
  keep = tf.concat([
      tf.cast(negative_ids[:, tf.newaxis] != distinct_ids, tf.float32),
      tf.ones([num_negatives, 1], tf.float32)], axis=1)  # [N, U + 1]
  mass_without_id = tf.matmul(negative_masses, keep)

  # Column of each edge's positive id: its rank among the distinct ids, or U.
  hit_rank = tf.cast(tf.searchsorted(distinct_ids[tf.newaxis],
                                     positive_ids[tf.newaxis])[0], tf.int64)
  is_hit = tf.gather(tf.concat([distinct_ids, [0]], 0), hit_rank) == positive_ids
  hit_rank = tf.where(is_hit & (hit_rank < num_distinct), hit_rank, num_distinct)
  return tf.gather_nd(mass_without_id, tf.stack([edge_anchor, hit_rank], axis=1))


def _softmax_loss(positive_logits: tf.Tensor, negative_mass: tf.Tensor,
                  edge_shift: tf.Tensor) -> tf.Tensor:
  """-log(e^p / (e^p + M e^s)) of each edge, computed without overflow: [K].

  As t - p + log(e^(p-t) + M e^(s-t)), t = max(p, s): every exponent is <= 0
  and the sum is >= 1 whenever t = p. The sum can only underflow if hits
  outscore the positive and every true negative by ~87 nats, which the floor
  keeps finite. t is a constant for the gradient: the value does not depend on
  it.
  """
  top = tf.stop_gradient(tf.maximum(positive_logits, edge_shift))
  total = (tf.exp(positive_logits - top)
           + negative_mass * tf.exp(edge_shift - top))
  return top - positive_logits + tf.math.log(
      tf.maximum(total, tf.constant(1e-30, tf.float32)))


def edge_list_loss(anchor_table: Callable[[tf.Tensor], tf.Tensor],
                   positive_table: Callable[[tf.Tensor], tf.Tensor],
                   edges: EdgeList,
                   negative_embeddings: tf.Tensor,
                   negative_ids: tf.Tensor,
                   negative_log_q: Optional[tf.Tensor] = None,
                   negative_valid: Optional[tf.Tensor] = None,
                   edge_folds: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Mean loss of an `EdgeList` (0 without edges), embedding only what it scores.

  Anchors are the distinct (row, source position) pairs, embedded once each with
  ``anchor_table``; positives are embedded per edge with ``positive_table``. So
  the work and the tables' (sparse) gradients follow the number of real edges.

  With ``edge_folds`` (int [K]), the tables take ``(ids, folds)`` of the edges
  (here: of the anchors' first edge, the same row) and ``negative_embeddings`` is
  [F, N, d], fold f's view of the negatives.
  """
  # Positions and rows are far below 2**31, so the key (row, position) is exact.
  anchor_keys = edges.rows * (2 ** 32) + edges.src_pos
  distinct_anchors, edge_anchor = tf.unique(anchor_keys, out_idx=tf.int64)
  num_anchors = tf.size(distinct_anchors, out_type=tf.int64)
  anchor_ids = tf.math.unsorted_segment_max(edges.src, edge_anchor, num_anchors)
  anchor_folds = None
  if edge_folds is None:
    anchor_vectors = anchor_table(anchor_ids)
    positive_vectors = positive_table(edges.dst)
  else:
    anchor_folds = tf.math.unsorted_segment_max(edge_folds, edge_anchor, num_anchors)
    anchor_vectors = anchor_table(anchor_ids, anchor_folds)
    positive_vectors = positive_table(edges.dst, edge_folds)
  losses = sampled_softmax_losses(
      anchor_vectors, edge_anchor, positive_vectors, edges.dst,
      negative_embeddings, negative_ids, negative_log_q, negative_valid,
      anchor_folds=anchor_folds)
  return global_mean(tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype))


def per_edge_list_loss(anchor_table: Callable[[tf.Tensor], tf.Tensor],
                       positive_table: Callable[[tf.Tensor], tf.Tensor],
                       edges: EdgeList,
                       negative_ids: tf.Tensor,
                       negative_log_q: Optional[tf.Tensor] = None,
                       negative_valid: Optional[tf.Tensor] = None,
                       edge_folds: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Mean loss of an `EdgeList` whose every edge has its own negatives (the
  paper's Algorithm 1: NegSample inside the loop over edges); 0 without edges.

  ``negative_ids`` int [K, n] (``negative_log_q``, ``negative_valid`` the same
  shape) are edge k's negatives, embedded with ``positive_table``; with
  ``edge_folds`` (int [K]) every lookup of edge k reads fold ``edge_folds[k]``.
  """
  lookups = (() if edge_folds is None else (edge_folds,))
  anchors = anchor_table(edges.src, *lookups)
  positives = positive_table(edges.dst, *lookups)
  negatives = positive_table(negative_ids, *lookups)
  if negative_valid is None:
    negative_valid = tf.ones_like(negative_ids, tf.bool)
  losses = per_edge_softmax_losses(anchors, positives, edges.dst, negatives,
                                   negative_ids, negative_log_q, negative_valid)
  return global_mean(tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype))


def per_edge_softmax_losses(anchor_vectors: tf.Tensor, positive_vectors: tf.Tensor,
                            positive_ids: tf.Tensor, negative_vectors: tf.Tensor,
                            negative_ids: tf.Tensor,
                            negative_log_q: Optional[tf.Tensor],
                            negative_valid: tf.Tensor) -> tf.Tensor:
  """The loss of K edges, each with n negatives of its own: float32 [K].

  anchor_vectors, positive_vectors [K, d]; negative_vectors [K, n, d]. A
  negative with the edge's positive id (an accidental hit) is left out.
  """
  # float32 under any policy, as in `sampled_softmax_losses`.
  anchor_vectors, positive_vectors, negative_vectors = (
      tf.cast(x, tf.float32)
      for x in (anchor_vectors, positive_vectors, negative_vectors))
  positive_logits = tf.reduce_sum(anchor_vectors * positive_vectors, axis=-1)
  negative_logits = tf.einsum("kd,knd->kn", anchor_vectors, negative_vectors)
  positive_ids = tf.cast(positive_ids, tf.int64)[:, tf.newaxis]
  keep = negative_valid & (tf.cast(negative_ids, tf.int64) != positive_ids)
  masses, shift = _shifted_masses(negative_logits, negative_log_q, keep)
  return _softmax_loss(positive_logits, tf.reduce_sum(masses, axis=-1), shift)


def mean_edge_loss(losses: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Mean of ``losses`` [B, E] over the True slots of ``mask``; 0 if there are none."""
  mask = tf.cast(mask, losses.dtype)
  return global_mean(tf.reduce_sum(losses * mask), tf.reduce_sum(mask))


def global_mean(total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """``total / count`` over the edges of the whole global batch (0 without edges).

  Under a synchronous strategy with R replicas the count is summed over replicas
  and this replica returns R * its total / that count: the replicas' values then
  average to the global mean, which is what `CTRModel`'s objective (mean terms /
  R per replica) and Keras' metric aggregation expect. A replica whose share
  of the batch has no edges of a type must not pull that type's mean to 0.
  """
  context = tf.distribute.get_replica_context()
  if context is not None and context.num_replicas_in_sync > 1:
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    total = total * context.num_replicas_in_sync
  return tf.math.divide_no_nan(total, count)


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class GraphSoftmaxLoss(tf.keras.layers.Layer):
  """EGIN's graph loss L_G for one edge type, as a Keras layer.

  Call with the arguments of `edge_softmax_losses`; returns the mean loss over the
  real edges (float32 scalar, 0 when there are none), or with
  ``return_per_edge=True`` the pair (mean, per-edge losses [B, E], or [K] for
  an `EdgeList`). The edges are the dense `Edges` or the `EdgeList`s
  `QueryItemGraph` returns, so in a functional model its output feeds this
  layer directly: ``GraphSoftmaxLoss()(clicks, clicks, graph["i2i"], ...)``.
  A loaded functional model passes the edges as a plain list (a model config
  keeps no NamedTuple type); this layer rebuilds them (`restore_edges`).

  For q2i in both directions call it twice: (queries, clicks, q2i edges, item
  negatives) and (clicks, queries, `reverse_edges`(q2i edges), query negatives).

  ``training`` is accepted as Keras passes it; the layer has no state, so the
  loss is the same in training and inference (it is the caller's choice to add
  it only when training).

  Mixed precision: the loss is float32 under any policy; the embeddings (float16
  under ``mixed_float16``) are cast to float32 before the softmax, which is not
  safe in float16 over many negatives. Under ``mixed_float16`` make the CTR
  network's output float32 too (e.g. ``tf.keras.layers.Dense(1,
  dtype="float32")`` or ``tf.keras.layers.Activation("linear",
  dtype="float32")`` as its last layer), so a ``train_step`` that adds this loss
  to its CTR loss adds two float32 tensors.

  Example (``batch``, ``edges`` as in the `QueryItemGraph` example):

  ```python
  items, queries = IdEmbedding(1000, 8), IdEmbedding(100, 8)
  clicks = items(batch["click_ids"])              # [1, 3, 8]
  history = queries(batch["query_hist_ids"])      # [1, 2, 8]
  item_neg = NegativeQueue(100, 4, seed=0)(batch["click_ids"], training=True)
  query_neg = NegativeQueue(100, 4, seed=1)(batch["query_hist_ids"],
                                            training=True)
  loss = GraphSoftmaxLoss()
  # i2i: anchors and positives are clicks; negatives are items.
  l_i2i = loss(clicks, clicks, edges["i2i"], items(item_neg.ids), item_neg.ids,
               negative_valid=item_neg.valid)  # float32 scalar
  # q2i both ways: query -> item with item negatives, then item -> query.
  l_q2i = 0.5 * (
      loss(history, clicks, edges["q2i"], items(item_neg.ids), item_neg.ids,
           negative_valid=item_neg.valid)
      + loss(clicks, history, reverse_edges(edges["q2i"]),
             queries(query_neg.ids), query_neg.ids,
             negative_valid=query_neg.valid))
  ```
  """

  def __call__(self, *args, **kwargs):
    # Before Keras' __call__, so `call` always sees typed edges: a functional
    # model's config stores them as a list of their fields.
    args = list(args)
    if len(args) > 2:
      args[2] = restore_edges(args[2])
    elif "edges" in kwargs:
      kwargs["edges"] = restore_edges(kwargs["edges"])
    return super().__call__(*args, **kwargs)

  def call(self,
           anchor_embeddings: tf.Tensor,
           positive_embeddings: tf.Tensor,
           edges: Edges,
           negative_embeddings: tf.Tensor,
           negative_ids: tf.Tensor,
           negative_log_q: Optional[tf.Tensor] = None,
           negative_valid: Optional[tf.Tensor] = None,
           return_per_edge: bool = False,
           training=None
           ) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
    del training  # no state: the same loss in both modes (see the class doc)
    losses = edge_softmax_losses(anchor_embeddings, positive_embeddings, edges,
                                 negative_embeddings, negative_ids,
                                 negative_log_q, negative_valid)
    mean = mean_edge_loss(losses, edges.mask)
    return (mean, losses) if return_per_edge else mean


def _check_embeddings(anchors, positives, negatives):
  """Converts the three embedding inputs and checks their static ranks and width."""
  anchors = tf.convert_to_tensor(anchors)
  positives = tf.convert_to_tensor(positives)
  negatives = tf.convert_to_tensor(negatives)
  for name, value, rank, layout in (
      ("anchor_embeddings", anchors, 3, "[B, Ls, d]"),
      ("positive_embeddings", positives, 3, "[B, Ld, d]"),
      ("negative_embeddings", negatives, 2, "[N, d]")):
    if value.shape.rank is not None and value.shape.rank != rank:
      raise ValueError(f"graph loss: {name} must be {layout}, got shape {value.shape}")
    if not value.dtype.is_floating:
      raise TypeError(f"graph loss: {name} must be floating point, got {value.dtype}")
  widths = {anchors.shape[-1], positives.shape[-1], negatives.shape[-1]} - {None}
  if len(widths) > 1:
    raise ValueError(
        "graph loss: anchor, positive and negative embeddings must have the same "
        f"width d, got {anchors.shape}, {positives.shape} and {negatives.shape}")
  return anchors, positives, negatives


def _checked_positions(edges: Edges, anchor_length: tf.Tensor,
                       positive_length: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """``src_pos`` and ``dst_pos`` as int64 [E], checked against the sequence lengths."""
  src_pos = tf.cast(edges.src_pos, tf.int64)
  dst_pos = tf.cast(edges.dst_pos, tf.int64)
  checks = [
      tf.debugging.assert_less(
          src_pos, anchor_length,
          message="graph loss: edges.src_pos points past the anchor sequence "
                  "(are anchors and positives swapped? see reverse_edges)"),
      tf.debugging.assert_less(
          dst_pos, positive_length,
          message="graph loss: edges.dst_pos points past the positive sequence"),
      tf.debugging.assert_non_negative(src_pos, message="graph loss: negative src_pos"),
      tf.debugging.assert_non_negative(dst_pos, message="graph loss: negative dst_pos"),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(src_pos), tf.identity(dst_pos)
