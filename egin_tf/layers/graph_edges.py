"""The two forms of one edge type of a batch: `EdgeList` and the dense `Edges`.

`EdgeList` is the library's form: the K real edges, what `QueryItemGraph` builds and
what the graph loss (`edge_list_loss`) scores, so the cost follows K.

`Edges` is the dense layout: every row has the same E edge slots, slot e always
pairs the same two sequence positions (``src_pos[e]``, ``dst_pos[e]``) and holds a
real edge only where ``mask`` is True. The public dense loss `GraphSoftmaxLoss`
takes it (positions that do not depend on the row let a user score edges of
sequence embeddings [B, L, d] with one gather per side); `edge_list` turns it into
the compact form. The tests build it as the oracle of `QueryItemGraph`'s edges
(``tests/graph_oracle.py``).

In a functional Keras model both travel between layers as what they are, but a
model's config keeps no NamedTuple type: once saved and loaded (``.keras`` or
SavedModel; Keras 3 alike), a layer given edges receives a plain list of their
five fields. `restore_edges` turns that (or a tuple, or a dict of the fields)
back into the `Edges` or `EdgeList`; `GraphSoftmaxLoss` does so itself, and a
layer of your own that takes edges should too.
"""

from typing import Mapping, NamedTuple, Union

from data_pipeline.tf_env import tf


class Edges(NamedTuple):
  """One edge type of a batch, in a fixed dense layout [B, E] with a validity mask."""
  src: tf.Tensor      # int64 [B, E] ids of the source nodes (0 where masked)
  dst: tf.Tensor      # int64 [B, E] ids of the destination nodes (0 where masked)
  mask: tf.Tensor     # bool  [B, E] True for a real edge
  src_pos: tf.Tensor  # int32 [E]   position of src in its source sequence
  dst_pos: tf.Tensor  # int32 [E]   position of dst in its destination sequence


class EdgeList(NamedTuple):
  """The real edges of one type, K of them, by row, source and destination position.

  The compact form the graph loss scores: its cost follows K, not B * E.
  `QueryItemGraph` builds it from the valid history positions only; `edge_list`
  turns the dense `Edges` layout into it (same edges, same order).
  """
  rows: tf.Tensor     # int64 [K] batch row of each edge
  src_pos: tf.Tensor  # int64 [K] position of src in its source sequence
  dst_pos: tf.Tensor  # int64 [K] position of dst in its destination sequence
  src: tf.Tensor      # int64 [K] source ids
  dst: tf.Tensor      # int64 [K] destination ids

  @property
  def mask(self) -> tf.Tensor:
    """bool [K], all True: every listed edge is real.

    The dense layout's ``mask`` for code that takes either form (per-edge
    losses and this mask average the same way; `GraphSoftmaxLoss`).
    """
    return tf.ones_like(self.rows, dtype=tf.bool)


def edge_list(edges: Edges) -> EdgeList:
  """The real edges (mask True) of a dense layout, in row-major slot order."""
  index = tf.where(tf.cast(edges.mask, tf.bool))  # [K, 2] (row, slot)
  slots = index[:, 1]
  return EdgeList(rows=index[:, 0],
                  src_pos=tf.gather(tf.cast(edges.src_pos, tf.int64), slots),
                  dst_pos=tf.gather(tf.cast(edges.dst_pos, tf.int64), slots),
                  src=tf.gather_nd(tf.cast(edges.src, tf.int64), index),
                  dst=tf.gather_nd(tf.cast(edges.dst, tf.int64), index))


def reverse_list(edges: EdgeList) -> EdgeList:
  """The same edges read from destination to source."""
  return edges._replace(src=edges.dst, dst=edges.src,
                        src_pos=edges.dst_pos, dst_pos=edges.src_pos)


def restore_edges(edges) -> Union[Edges, EdgeList]:
  """The `Edges` or `EdgeList` of a plain list, tuple or dict of its fields.

  What a loaded functional model passes a layer for edges (see the module
  docstring). A list or tuple holds the five fields in order; which form it is
  follows from the first field's rank: 2 for the dense ``src`` [B, E], 1 for
  the list's ``rows`` [K]. A dict names its fields. Edges already typed are
  returned as they are.
  """
  if isinstance(edges, (Edges, EdgeList)):
    return edges
  if isinstance(edges, Mapping):
    return (Edges if "mask" in edges else EdgeList)(**edges)
  fields = tuple(edges)
  if len(fields) != len(Edges._fields):
    raise ValueError(f"edges: expected the {len(Edges._fields)} fields of Edges "
                     f"or EdgeList, got {len(fields)} values")
  # TensorShape() also reads a Keras 3 symbolic tensor's shape (a tuple).
  shape = tf.TensorShape(fields[0].shape)
  if shape.rank not in (1, 2):
    raise ValueError("edges: cannot tell Edges (src [B, E]) from EdgeList (rows "
                     f"[K]) by a first field of shape {shape}")
  return Edges(*fields) if shape.rank == 2 else EdgeList(*fields)
