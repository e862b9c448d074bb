"""`FrozenIdEmbedding`: a fixed id -> vector table (EGES's pretrained item vectors)."""

from typing import Optional

import numpy as np

from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.eges.vectors_file import load_embeddings


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class FrozenIdEmbedding(tf.keras.layers.Layer):
  """A fixed id -> vector table, looked up like `IdEmbedding`; never trained.

  Input: int64 ids of any shape [...]. Output: float32 [..., dim]; padding (0) and
  ids not in the table give the zero vector. Ids are arbitrary int64 (hashed), so
  they are found by binary search in the sorted ``ids`` rather than by bucket;
  unlike `IdEmbedding`, different ids never share a row.

  Args:
    num_ids: rows of the table.
    dim: size of the vectors.
    ids: int64 [num_ids], positive, sorted, distinct (None: zeros, to be
      restored from a checkpoint or `set_weights`; a config holds no table).
    vectors: float [num_ids, dim].

  Weights (non-trainable, in ``get_weights`` order): ``ids`` int64 [num_ids],
  ``embeddings`` float32 [num_ids, dim].
  """

  def __init__(self, num_ids: int, dim: int, ids: Optional[np.ndarray] = None,
               vectors: Optional[np.ndarray] = None, **kwargs):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    self.num_ids = check_int("num_ids", num_ids, owner="FrozenIdEmbedding")
    self.dim = check_int("dim", dim, owner="FrozenIdEmbedding")
    if (ids is None) != (vectors is None):
      raise ValueError("FrozenIdEmbedding: give both ids and vectors, or neither")
    if ids is not None and (np.shape(ids) != (num_ids,) or
                            np.shape(vectors) != (num_ids, dim)):
      raise ValueError(
          f"FrozenIdEmbedding: ids {np.shape(ids)} and vectors "
          f"{np.shape(vectors)} do not match num_ids={num_ids}, dim={dim}")
    self._initial = (ids, vectors)

  @classmethod
  def from_file(cls, path: str, **kwargs) -> "FrozenIdEmbedding":
    """The table of an EGES ``.npz`` (see `egin_tf.eges.load_embeddings`)."""
    ids, vectors = load_embeddings(path)
    return cls(ids.size, vectors.shape[1], ids=ids, vectors=vectors, **kwargs)

  def build(self, input_shape):
    ids, vectors = self._initial
    self.ids = self.add_weight(
        name="ids", shape=[self.num_ids], dtype=tf.int64, trainable=False,
        initializer=(tf.keras.initializers.Constant(ids) if ids is not None
                     else "zeros"))
    self.embeddings = self.add_weight(
        name="embeddings", shape=[self.num_ids, self.dim], trainable=False,
        initializer=(tf.keras.initializers.Constant(vectors)
                     if vectors is not None else "zeros"))
    self._initial = (None, None)
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.cast(ids, tf.int64)
    flat = tf.reshape(ids, [-1])
    row = tf.minimum(tf.searchsorted(self.ids, flat, side="left"),
                     self.num_ids - 1)
    found = (tf.gather(self.ids, row) == flat) & (flat > 0)
    vectors = tf.gather(self.embeddings, row) * tf.cast(
        found, self.embeddings.dtype)[:, tf.newaxis]
    return tf.reshape(vectors, tf.concat([tf.shape(ids), [self.dim]], axis=0))

  def get_config(self):
    config = super().get_config()
    config.update(num_ids=self.num_ids, dim=self.dim)
    return config
