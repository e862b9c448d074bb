"""`Edges`: the dense, masked layout of one edge type of a batch.

This is the contract between `QueryItemGraph` (which builds edges from a batch) and
the graph loss (which scores them). Every row of a batch has the same number E of
edge slots, and slot e always pairs the same two sequence positions
(``src_pos[e]``, ``dst_pos[e]``); a slot holds a real edge only where ``mask`` is
True. Because positions do not depend on the row, the loss can score edges from
sequence embeddings [B, L, d] with one gather per side (or an einsum) instead of
materializing [B, E, d], and compute each anchor position's negatives once.
"""

from typing import NamedTuple

from data_pipeline.tf_env import tf


class Edges(NamedTuple):
  """One edge type of a batch, in a fixed dense layout [B, E] with a validity mask."""
  src: tf.Tensor      # int64 [B, E] ids of the source nodes (0 where masked)
  dst: tf.Tensor      # int64 [B, E] ids of the destination nodes (0 where masked)
  mask: tf.Tensor     # bool  [B, E] True for a real edge
  src_pos: tf.Tensor  # int32 [E]   position of src in its source sequence
  dst_pos: tf.Tensor  # int32 [E]   position of dst in its destination sequence
