"""Out-of-fold graph tables: no row's features read edges built from its own user.

Why. EGIN trains its graph on the very impressions whose labels the CTR task
predicts. A clicked target at time t sits in the click history of the same user's
later impressions, right after the clicks that preceded it, so the i2i edges of
those later rows teach the graph exactly the pair (recent clicks, target) that
row t's label is about. Under shuffled, multi-epoch offline training,
f_i2i = SimExtract(target, clicks) then reads row t's label from the graph: on the
Taobao sample the top-1 graph cosine alone separates train clicks from negatives
with AUC 0.93, but only 0.62 on held-out days, and EGIN falls below DNN
(experiments/RESULTS.md, "Why EGIN fell below DNN on Taobao"). One time-ordered
pass (stream training) has no such leak: later rows are trained after row t.

Cross-fitting, as in out-of-fold target encoding: users are hashed into K folds;
the edges of fold k's rows train ``tables[k]`` and the rows of fold k read
``tables[(k + 1) % K]``, which only other users' edges trained. Serving reads the
same way, so training and serving features have the same distribution. What a
user's own past adds is in the row's own history, which SimExtract reads anyway.
K = 1 is the paper's single table (no cross-fitting).
"""

from typing import Sequence

from data_pipeline.tf_env import tf
from egin_tf.layers.id_embedding import IdEmbedding


def user_folds(user_ids: tf.Tensor, num_folds: int) -> tf.Tensor:
  """The fold of each user id: int32 [B] in [0, num_folds), a stable hash.

  FarmHash of the decimal id, so contiguous (simulated) and hashed (real) ids
  both spread evenly; the same id gets the same fold in every process.
  """
  if num_folds == 1:
    return tf.zeros(tf.shape(user_ids), tf.int32)
  text = tf.strings.as_string(tf.cast(user_ids, tf.int64))
  return tf.cast(tf.strings.to_hash_bucket_fast(text, num_folds), tf.int32)


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class OutOfFoldEmbedding(tf.keras.layers.Layer):
  """K id tables of one node type; a row of fold k reads table (k + 1) mod K.

  Call: ``layer(ids [B, ...], folds int32 [B])`` -> float [B, ..., dim], each row
  looked up in the table its fold READS. ``layer.tables[k]`` is the table that
  fold k's edges TRAIN (hand it to the graph loss of fold k's rows). One table
  (K = 1) is the paper's setting: every row reads and trains it.

  Build it with `create` (new `IdEmbedding` tables) or around existing layers
  (e.g. a CTR network's own table, or frozen vectors), each ids [...] -> [..., d].
  """

  def __init__(self, tables: Sequence[tf.keras.layers.Layer], **kwargs):
    super().__init__(**kwargs)
    if not tables:
      raise ValueError("OutOfFoldEmbedding needs at least one table")
    self.tables = list(tables)

  @classmethod
  def create(cls, num_buckets: int, dim: int, num_folds: int = 1,
             name: str = "graph") -> "OutOfFoldEmbedding":
    """``num_folds`` new tables: ``name`` (fold 0), ``name_fold1``, ..."""
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 1:
      raise ValueError(f"graph_folds must be an int >= 1, got {num_folds!r}")
    return cls([IdEmbedding(num_buckets, dim,
                            name=name if k == 0 else f"{name}_fold{k}")
                for k in range(num_folds)], name=f"{name}_folds")

  @property
  def num_folds(self) -> int:
    return len(self.tables)

  def read_folds(self, folds: tf.Tensor) -> tf.Tensor:
    """The table each row reads: (fold + 1) mod K (0 when K = 1)."""
    return tf.math.floormod(folds + 1, self.num_folds)

  def call(self, ids: tf.Tensor, folds: tf.Tensor = None) -> tf.Tensor:
    if self.num_folds == 1:
      return self.tables[0](ids)
    read = self.read_folds(folds)
    rank = ids.shape.rank
    out = None
    for k, table in enumerate(self.tables):
      chosen = tf.cast(tf.equal(read, k), self.compute_dtype)
      part = tf.reshape(chosen, [-1] + [1] * rank) * table(ids)  # rows of table k
      out = part if out is None else out + part
    return out

  def get_config(self):
    config = super().get_config()
    config["tables"] = [tf.keras.layers.serialize(t) for t in self.tables]
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["tables"] = [tf.keras.layers.deserialize(t) for t in config["tables"]]
    return cls(**config)
