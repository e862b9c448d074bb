"""DNN-cross: the DNN baseline plus sum-pooled (history item, target item) crosses.

Paper section 4.2: "the cartesian product between historical and target items is
adopted to represent the i2i relationships. Then this 2-order feature is fed into
the sum-pooling layer". The cross feature, exactly:

* for every click ``h`` of the history and the target item ``t`` (raw int64 ids,
  read as unsigned 64-bit patterns), the pair's bucket is
  ``1 + splitmix64(splitmix64(h) XOR t) mod (cross_buckets - 1)``, where
  ``splitmix64`` is the standard 64-bit finalizer (`splitmix64` below) in
  wrap-around uint64 arithmetic, so a pair maps to the same bucket on every
  machine; the order matters: (h, t) is not (t, h);
* the bucket indexes a learned ``cross_buckets x embedding_dim`` table (row 0 is
  padding); a padded click (id 0) or a missing target gives bucket 0 and is masked;
* the pair vectors of a history are sum-pooled into one [B, d] vector that is
  concatenated to the DNN's inputs (f_o and the pooled histories).

Only clicks are crossed (the paper's i2i relationship); the query history is
sum-pooled as in the DNN.
"""

from typing import Optional

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.layers.id_embedding import IdEmbedding
from egin_tf.models.configs import DNNCrossConfig
from egin_tf.models.dnn import DNN, dnn_inputs

_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB


def splitmix64(x: tf.Tensor) -> tf.Tensor:
  """The splitmix64 finalizer of uint64 values (any shape), wrapping mod 2**64."""

  def shift_xor(z, bits):
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(
        z, tf.constant(bits, tf.uint64)))

  z = x + tf.constant(_GOLDEN, tf.uint64)
  z = shift_xor(z, 30) * tf.constant(_MIX_1, tf.uint64)
  z = shift_xor(z, 27) * tf.constant(_MIX_2, tf.uint64)
  return shift_xor(z, 31)


def pair_buckets(history_ids: tf.Tensor, target_ids: tf.Tensor,
                 num_buckets: int) -> tf.Tensor:
  """Cross buckets of (history item, target item) pairs (module docstring).

  Args:
    history_ids: int64 [B, L], 0 = padding.
    target_ids: int64 [B].
    num_buckets: the cross table's size (>= 2).

  Returns:
    int64 [B, L] in [1, num_buckets), 0 where the history or target id is 0.
  """
  h = tf.bitcast(tf.cast(history_ids, tf.int64), tf.uint64)
  t = tf.bitcast(tf.cast(target_ids, tf.int64), tf.uint64)[:, tf.newaxis]
  mixed = splitmix64(tf.bitwise.bitwise_xor(splitmix64(h), t))
  bucket = 1 + tf.math.floormod(mixed, tf.constant(num_buckets - 1, tf.uint64))
  bucket = tf.cast(bucket, tf.int64)  # < num_buckets, so the cast is exact
  valid = (history_ids > 0) & (target_ids > 0)[:, tf.newaxis]
  return tf.where(valid, bucket, tf.zeros_like(bucket))


class DNNCross(DNN):
  """DNN plus the sum-pooled i2i cross feature. Input: the reader's batch dict;
  output pctr [B].

  Args:
    features, hidden_units, pooling, dropout: as in `DNN` (``pooling`` also
      pools the cross vectors).
    cross_buckets: rows of the cross table; distinct pairs beyond it share rows.
  """

  CONFIG = DNNCrossConfig

  def __init__(self, features: FeatureConfig,
               config: Optional[DNNCrossConfig] = None, **kwargs):
    super().__init__(features, config, **kwargs)
    self.cross_buckets = self.model_config.cross_buckets
    self.cross = IdEmbedding(self.cross_buckets, self.features.config.embedding_dim,
                             name="cross")

  def pooled_cross(self, history_ids: tf.Tensor,
                   target_ids: tf.Tensor) -> tf.Tensor:
    """The cross feature: int64 [B, L], [B] -> float [B, d]."""
    buckets = pair_buckets(history_ids, target_ids, self.cross_buckets)
    return self.pool(self.cross(buckets), buckets > 0)

  def forward(self, batch, training=None):
    parts = dnn_inputs(self.features, self.pool, batch, training)
    parts.append(self.pooled_cross(batch[schema_lib.CLICKS.ids],
                                   batch[schema_lib.ITEM_ID]))
    logits = self.mlp(self.head_input(parts, batch), training=training)
    return logits, {}
