"""The dense `Edges` layout of a batch's graph: the oracle of `QueryItemGraph`.

The library builds only the compact `EdgeList`s (the real edges). This module keeps
the earlier, simpler build, where every candidate pair of sequence positions owns a
fixed slot and a mask says whether it is an edge: a few broadcast comparisons with
no search or sort, so it is easy to check by eye. The tests compare the library's
edge lists against ``edge_list`` of it, edge for edge and in order.

Layouts (E slots per row):

* **i2i** over the i2i items [B, L]: slot ``e = j * 2w + o`` pairs position ``j``
  with ``k = j + d``, ``d = (-w, ..., -1, 1, ..., w)[o]``, so E = 2wL. Slots whose
  ``k`` falls outside [0, L) are masked (their ``dst_pos`` is clipped so it stays a
  valid index).
* **q2q** over the query history [B, M]: slot ``e = i * M + k`` pairs query i with
  query k, E = M * M.
* **q2i** over queries [B, M] and clicks [B, L]: slot ``e = i * L + k``, E = M * L.

Flattened row-major, the slots are sorted by (row, source position, destination
position): the order of the library's edge lists.
"""

from typing import Any, Dict, Optional, Tuple

from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import Edges
from egin_tf.layers.query_item_graph import QueryItemGraph


def _share_category(src_cats: tf.Tensor, dst_cats: tf.Tensor) -> tf.Tensor:
  """bool [B, N1, N2]: entries of [B, N1, C1] and [B, N2, C2] share an id > 0."""
  src = tf.where(src_cats > 0, src_cats, -1)  # padding equals nothing
  equal = src[:, :, None, :, None] == dst_cats[:, None, :, None, :]
  return tf.reduce_any(equal, axis=[3, 4])


def _masked_edges(src: tf.Tensor, dst: tf.Tensor, pair_mask: tf.Tensor,
                  src_pos: tf.Tensor, dst_pos: tf.Tensor) -> Edges:
  """Masks padding and equal ids out of candidate slots and flattens them to [B, E]."""
  mask = pair_mask & (src != 0) & (dst != 0) & (src != dst)
  shape = tf.stack([tf.shape(mask)[0], tf.size(src_pos)])
  zero = tf.zeros([], tf.int64)
  return Edges(src=tf.reshape(tf.where(mask, src, zero), shape),
               dst=tf.reshape(tf.where(mask, dst, zero), shape),
               mask=tf.reshape(mask, shape), src_pos=src_pos, dst_pos=dst_pos)


def _dim(x: tf.Tensor, axis: int):
  static = x.shape[axis]
  return static if static is not None else tf.shape(x, out_type=tf.int32)[axis]


def window_edges(items: tf.Tensor, window: int,
                 keep: Optional[tf.Tensor] = None) -> Edges:
  """i2i: items at distinct positions at most ``window`` apart; E = 2wL.

  An occurrence where ``keep`` is False makes no edge but holds its position.
  """
  length = _dim(items, 1)
  offsets = tf.constant([d for d in range(-window, window + 1) if d != 0], tf.int32)
  positions = tf.range(length, dtype=tf.int32)
  neighbours = positions[:, None] + offsets[None, :]  # [L, 2w]
  in_range = tf.reshape((neighbours >= 0) & (neighbours < length), [-1])
  src_pos = tf.reshape(tf.broadcast_to(positions[:, None], tf.shape(neighbours)),
                       [-1])
  dst_pos = tf.reshape(
      tf.clip_by_value(neighbours, 0, tf.maximum(length - 1, 0)), [-1])
  pair_mask = in_range[None, :]
  if keep is not None:
    pair_mask = (pair_mask & tf.gather(keep, src_pos, axis=1)
                 & tf.gather(keep, dst_pos, axis=1))
  return _masked_edges(tf.gather(items, src_pos, axis=1),
                       tf.gather(items, dst_pos, axis=1), pair_mask, src_pos,
                       dst_pos)


def time_category_edges(src: Tuple[tf.Tensor, tf.Tensor, tf.Tensor],
                        dst: Tuple[tf.Tensor, tf.Tensor, tf.Tensor],
                        timespan: int, either_order: bool) -> Edges:
  """BuildEdge(S1, S2) of Algorithm 2 on the [B, N1, N2] grid; E = N1 * N2."""
  src_ids, src_times, src_cats = src
  dst_ids, dst_times, dst_cats = dst
  n_src, n_dst = _dim(src_ids, 1), _dim(dst_ids, 1)
  gap = dst_times[:, None, :] - src_times[:, :, None]
  if either_order:
    gap = tf.abs(gap)
  pair_mask = (gap > 0) & (gap < timespan) & _share_category(src_cats, dst_cats)
  src_pos = tf.repeat(tf.range(n_src, dtype=tf.int32), n_dst)
  dst_pos = tf.tile(tf.range(n_dst, dtype=tf.int32), [n_src])
  return _masked_edges(src_ids[:, :, None], dst_ids[:, None, :], pair_mask,
                       src_pos, dst_pos)


def dense_graph(layer: QueryItemGraph, batch: Dict[str, tf.Tensor],
                training=None) -> Dict[str, Any]:
  """What the layer's call returned before the edge lists: dense `Edges` per type.

  Runs the layer's own preparation (seeds mix, subsampling), so it advances the
  layer's step counter like a call.
  """
  if not layer.built:
    layer.build(None)
  items, keep, queries, clicks = layer._prepare(batch, training)  # pylint: disable=protected-access
  return {
      "i2i": window_edges(items, layer.window, keep),
      "q2q": time_category_edges(queries, queries, layer.q2q_timespan,
                                 either_order=True),
      "q2i": time_category_edges(queries, clicks, layer.q2i_timespan,
                                 either_order=False),
      "i2i_items": items,
  }
