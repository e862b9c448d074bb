"""`FrozenIdEmbedding`: fixed id -> vector tables (EGES's pretrained item vectors)."""

from typing import Optional

import numpy as np

from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.eges.vectors_file import EgesVectors, read_vectors
from egin_tf.layers.out_of_fold import fold_rows


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class FrozenIdEmbedding(tf.keras.layers.Layer):
  """``num_sets`` fixed id -> vector tables over one id list; never trained.

  Call: ids int64 of any shape [...] -> float32 [..., dim], looked up in set 0.
  `lookup` reads set ``table_index[r]`` for row r (the layout and row routing of
  `egin_tf.layers.out_of_fold.OutOfFoldEmbedding`, which wraps a table of K
  sets as K folds: a row of fold k reads set (k + 1) mod K). Padding (0) and ids
  not in the table give the zero vector. Ids are arbitrary int64 (hashed), so
  they are found by binary search in the sorted ``ids`` rather than by bucket;
  unlike `IdEmbedding`, different ids never share a row.

  Args:
    num_ids: ids of the table.
    dim: size of the vectors.
    ids: int64 [num_ids], positive, sorted, distinct (None: zeros, to be
      restored from a checkpoint or `set_weights`; a config holds no table).
    vectors: float [num_sets, num_ids, dim] (or [num_ids, dim] for one set).
    num_sets: sets of vectors (K).

  Weights (non-trainable, in ``get_weights`` order): ``ids`` int64 [num_ids],
  ``embeddings`` float32 [num_sets * num_ids, dim], set k's vector of
  ``ids[i]`` at row ``k * num_ids + i``.
  """

  def __init__(self, num_ids: int, dim: int, ids: Optional[np.ndarray] = None,
               vectors: Optional[np.ndarray] = None, num_sets: int = 1,
               **kwargs):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    self.num_ids = check_int("num_ids", num_ids, owner="FrozenIdEmbedding")
    self.dim = check_int("dim", dim, owner="FrozenIdEmbedding")
    self.num_sets = check_int("num_sets", num_sets, owner="FrozenIdEmbedding")
    if (ids is None) != (vectors is None):
      raise ValueError("FrozenIdEmbedding: give both ids and vectors, or neither")
    if vectors is not None and np.ndim(vectors) == 2:
      vectors = np.asarray(vectors)[np.newaxis]
    if ids is not None and (np.shape(ids) != (num_ids,) or
                            np.shape(vectors) != (num_sets, num_ids, dim)):
      raise ValueError(
          f"FrozenIdEmbedding: ids {np.shape(ids)} and vectors "
          f"{np.shape(vectors)} do not match num_sets={num_sets}, "
          f"num_ids={num_ids}, dim={dim}")
    self._initial = (ids, None if vectors is None else
                     np.reshape(vectors, [num_sets * num_ids, dim]))

  @classmethod
  def from_vectors(cls, table: EgesVectors, **kwargs) -> "FrozenIdEmbedding":
    """The tables of an `EgesVectors` (all its sets)."""
    return cls(table.ids.size, table.dim, ids=table.ids, vectors=table.vectors,
               num_sets=table.num_sets, **kwargs)

  @classmethod
  def from_file(cls, path: str, **kwargs) -> "FrozenIdEmbedding":
    """The tables of an EGES ``.npz`` (see `egin_tf.eges.read_vectors`)."""
    return cls.from_vectors(read_vectors(path), **kwargs)

  def build(self, input_shape):
    ids, vectors = self._initial
    self.ids = self.add_weight(
        name="ids", shape=[self.num_ids], dtype=tf.int64, trainable=False,
        initializer=(tf.keras.initializers.Constant(ids) if ids is not None
                     else "zeros"))
    self.embeddings = self.add_weight(
        name="embeddings", shape=[self.num_sets * self.num_ids, self.dim],
        trainable=False,
        initializer=(tf.keras.initializers.Constant(vectors)
                     if vectors is not None else "zeros"))
    self._initial = (None, None)
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    return self.lookup(ids, None)

  def lookup(self, ids: tf.Tensor, table_index) -> tf.Tensor:
    """Row r of ``ids`` [R, ...] looked up in set ``table_index[r]`` (an int
    [R], an int, or None for set 0)."""
    if not self.built:
      self.build(None)
    ids = tf.cast(ids, tf.int64)
    flat = tf.reshape(ids, [-1])
    row = tf.minimum(tf.searchsorted(self.ids, flat, side="left"),
                     self.num_ids - 1)
    found = (tf.gather(self.ids, row) == flat) & (flat > 0)
    rows = fold_rows(tf.reshape(row, tf.shape(ids)), table_index, self.num_ids)
    vectors = tf.gather(self.embeddings, rows)
    return vectors * tf.cast(tf.reshape(found, tf.shape(ids)),
                             vectors.dtype)[..., tf.newaxis]

  def get_config(self):
    config = super().get_config()
    config.update(num_ids=self.num_ids, dim=self.dim, num_sets=self.num_sets)
    return config
