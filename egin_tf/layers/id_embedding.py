"""Embedding of int64 ids (raw or hashed) through a fixed number of buckets."""

from typing import Optional

from data_pipeline.tf_env import tf


def bucketize_ids(ids: tf.Tensor, num_buckets: int) -> tf.Tensor:
  """Maps int64 ids to [0, num_buckets): 0 (padding) -> 0, id > 0 -> [1, n).

  Ids 1..num_buckets-1 map to themselves, so small contiguous ids (the
  simulator's, or ids re-indexed by a user) never collide; larger (hashed) ids
  share buckets by ``1 + (id - 1) mod (num_buckets - 1)``.
  """
  ids = tf.cast(ids, tf.int64)
  bucket = 1 + tf.math.floormod(ids - 1, num_buckets - 1)
  return tf.where(ids > 0, bucket, tf.zeros_like(bucket))


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class IdEmbedding(tf.keras.layers.Layer):
  """An embedding table for one id space (items, queries, categories, ...).

  Input: int64 ids of any shape [...]; 0 is padding. Output: float32 [..., dim];
  padding ids embed to the zero vector, so sums over padded sequences are exact.

  Example:

  ```python
  items = IdEmbedding(num_buckets=1000, dim=8)
  vectors = items(tf.constant([[3, 7, 0]], tf.int64))  # float32 [1, 3, 8]
  # vectors[0, 2] is zeros (padding); ids >= 1000 share buckets (bucketize_ids)
  ```
  """

  def __init__(self, num_buckets: int, dim: int,
               initializer: str = "uniform",
               regularizer: Optional[tf.keras.regularizers.Regularizer] = None,
               **kwargs):
    super().__init__(**kwargs)
    if num_buckets < 2:
      raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    self.num_buckets = num_buckets
    self.dim = dim
    self.initializer = tf.keras.initializers.get(initializer)
    self.regularizer = tf.keras.regularizers.get(regularizer)

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        name="embeddings", shape=[self.num_buckets, self.dim],
        initializer=self.initializer, regularizer=self.regularizer,
        trainable=True)
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    buckets = bucketize_ids(ids, self.num_buckets)
    vectors = tf.nn.embedding_lookup(self.embeddings, buckets)
    return vectors * tf.cast(buckets > 0, vectors.dtype)[..., tf.newaxis]

  def get_config(self):
    config = super().get_config()
    config.update({
        "num_buckets": self.num_buckets,
        "dim": self.dim,
        "initializer": tf.keras.initializers.serialize(self.initializer),
        "regularizer": (tf.keras.regularizers.serialize(self.regularizer)
                        if self.regularizer else None),
    })
    return config
