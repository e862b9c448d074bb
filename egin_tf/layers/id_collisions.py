"""`IdCollisionRate`: how often a lookup lands on a row another id used last.

An id table of fixed size (`IdEmbedding`) shares a row between every id of the
same bucket (`bucketize_ids`). On a stream that never ends new ids keep coming,
so what a user needs to watch is the rate of the CURRENT traffic: of the ids
looked up since the last reset, the fraction whose row was last looked up by a
different id. That is the fraction of lookups that read (and then train)
another id's vector. 0 while the table has a row per id; it rises as the
catalog outgrows the table, which says when to give it more buckets.

The metric remembers the last id of every bucket (int64 [num_buckets], one
eighth of a dimension-10 float table; no optimizer slots), so the rate is exact
for the traffic seen, not an estimate from counts. Two different ids of the
same bucket in one batch are compared with the owner before the batch.
"""

from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.layers.id_embedding import bucketize_ids


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class IdCollisionRate(tf.keras.metrics.Metric):
  """Fraction of looked-up ids whose bucket was last used by another id."""

  def __init__(self, num_buckets: int, name: str = "id_collisions", **kwargs):
    super().__init__(name=name, **kwargs)
    check_int("num_buckets", num_buckets, minimum=2, owner="IdCollisionRate")
    self.num_buckets = num_buckets
    self.owners = self.add_weight("owners", shape=[num_buckets], dtype=tf.int64,
                                  initializer="zeros")
    self.collisions = self.add_weight("collisions", shape=[], initializer="zeros")
    self.lookups = self.add_weight("lookups", shape=[], initializer="zeros")

  def update_state(self, ids, sample_weight=None):
    """Counts the non-zero ids of ``ids`` (any shape) and makes them owners."""
    del sample_weight
    ids = tf.reshape(tf.cast(ids, tf.int64), [-1])
    ids = tf.boolean_mask(ids, ids != 0)
    buckets = bucketize_ids(ids, self.num_buckets)
    owners = tf.nn.embedding_lookup(self.owners, buckets)
    collided = (owners != 0) & (owners != ids)
    self.collisions.assign_add(tf.reduce_sum(tf.cast(collided, tf.float32)))
    self.lookups.assign_add(tf.cast(tf.size(ids), tf.float32))
    self.owners.scatter_update(tf.IndexedSlices(ids, buckets))

  def result(self):
    return tf.math.divide_no_nan(self.collisions, self.lookups)

  def reset_state(self):
    # The owners are the table's history, not this period's counts: a reset
    # (each progress chunk) starts a new rate over the same table.
    self.collisions.assign(0.0)
    self.lookups.assign(0.0)

  def get_config(self):
    return {**super().get_config(), "num_buckets": self.num_buckets}
