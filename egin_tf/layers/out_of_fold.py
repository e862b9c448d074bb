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


from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.layers.id_embedding import bucketize_ids


def user_folds(user_ids: tf.Tensor, num_folds: int) -> tf.Tensor:
  """The fold of each user id: int32 [B] in [0, num_folds), a stable hash.

  FarmHash of the decimal id, so contiguous (simulated) and hashed (real) ids
  both spread evenly; the same id gets the same fold in every process.
  """
  if num_folds == 1:
    return tf.zeros(tf.shape(user_ids), tf.int32)
  text = tf.strings.as_string(tf.cast(user_ids, tf.int64))
  return tf.cast(tf.strings.to_hash_bucket_fast(text, num_folds), tf.int32)


def fold_rows(rows: tf.Tensor, table_index, rows_per_table: int) -> tf.Tensor:
  """Rows [R, ...] of K stacked tables: row r of ``rows`` moved into table
  ``table_index[r]`` (an int [R], an int, or None for table 0), whose rows start
  at ``table_index * rows_per_table``."""
  if table_index is None:
    return rows
  offset = tf.cast(table_index, rows.dtype) * rows_per_table
  if isinstance(table_index, tf.Tensor) and table_index.shape.rank:
    offset = tf.reshape(offset, [-1] + [1] * (rows.shape.rank - 1))
  return rows + offset


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class OutOfFoldEmbedding(tf.keras.layers.Layer):
  """K id tables of one node type; a row of fold k reads table (k + 1) mod K.

  Call: ``layer(ids [B, ...], folds int32 [B])`` -> float [B, ..., dim], each row
  looked up in the table its fold READS (the CTR features); `train_lookup` looks
  each row up in the table its fold TRAINS (the graph losses). The K tables are
  one variable ``embeddings`` [K * num_buckets, dim], fold k's rows at
  ``k * num_buckets + bucket``, so a lookup is one gather whatever K is. One
  table (K = 1) is the paper's setting: every row reads and trains it.

  ``OutOfFoldEmbedding(table=layer)`` wraps an existing layer (ids [...] ->
  [..., d], e.g. a CTR network's own table or frozen vectors) as one fold, or
  as K folds when the layer has ``num_sets`` K > 1 and ``lookup(ids,
  table_index)`` like this layer's (EGES's out-of-fold frozen vectors).

  Example:

  ```python
  table = OutOfFoldEmbedding(num_buckets=100, dim=4, num_folds=2)
  folds = user_folds(tf.constant([11, 12], tf.int64), 2)  # int32 [B]
  clicks = tf.constant([[5, 7, 0], [9, 0, 0]], tf.int64)  # ids [B, L]
  vectors = table(clicks, folds)  # float32 [2, 3, 4], each row's read table
  trained = table.train_lookup(clicks, folds)  # what the row's graph loss trains
  ```
  """

  def __init__(self, num_buckets: int = None, dim: int = None,
               num_folds: int = None, table: tf.keras.layers.Layer = None,
               **kwargs):
    super().__init__(**kwargs)
    if (table is None) == (num_buckets is None):
      raise ValueError("OutOfFoldEmbedding takes num_buckets and dim, or a table")
    table_folds = 1 if table is None else getattr(table, "num_sets", 1)
    num_folds = table_folds if num_folds is None else num_folds
    # Named after the user-facing flag/config field, not this argument.
    check_int("graph_folds", num_folds, minimum=1)
    if table is not None and num_folds != table_folds:
      raise ValueError(f"the wrapped table has {table_folds} fold(s); num_folds "
                       f"must be {table_folds}, got {num_folds}")
    self.num_buckets = num_buckets
    self.dim = dim
    self.num_folds = num_folds
    self.table = table

  def build(self, input_shape):
    if self.table is None:
      self.embeddings = self.add_weight(
          name="embeddings", shape=[self.num_folds * self.num_buckets, self.dim],
          initializer="uniform", trainable=True)
    super().build(input_shape)

  def read_folds(self, folds: tf.Tensor) -> tf.Tensor:
    """The table each row reads: (fold + 1) mod K (0 when K = 1)."""
    return tf.math.floormod(folds + 1, self.num_folds)

  def call(self, ids: tf.Tensor, folds: tf.Tensor = None) -> tf.Tensor:
    """Each row's lookup in the table its fold READS (CTR features)."""
    if self.num_folds == 1:
      return self.lookup(ids, None)
    return self.lookup(ids, self.read_folds(folds))

  def train_lookup(self, ids: tf.Tensor, folds: tf.Tensor = None) -> tf.Tensor:
    """Each row's lookup in the table its fold TRAINS (graph losses)."""
    return self.lookup(ids, None if self.num_folds == 1 else folds)

  def lookup(self, ids: tf.Tensor, table_index) -> tf.Tensor:
    """Row r of ``ids`` [R, ...] looked up in table ``table_index[r]`` (an int
    [R], an int, or None for table 0); padding ids give zero vectors."""
    if self.table is not None:
      if self.num_folds == 1:
        return self.table(ids)
      return self.table.lookup(ids, table_index)
    if not self.built:
      self.build(None)
    buckets = fold_rows(bucketize_ids(ids, self.num_buckets), table_index,
                        self.num_buckets)
    vectors = tf.nn.embedding_lookup(self.embeddings, buckets)
    return vectors * tf.cast(ids > 0, vectors.dtype)[..., tf.newaxis]

  def fold_views(self, ids: tf.Tensor) -> tf.Tensor:
    """Every fold's vectors of ``ids`` [...]: [K, ..., dim]."""
    return tf.stack([self.lookup(ids, k) for k in range(self.num_folds)])

  def fold_table(self, fold: int = 0):
    """A callable ids -> vectors of one fold's table (exports, `neighbors`)."""
    return lambda ids: self.lookup(tf.convert_to_tensor(ids, tf.int64), fold)

  def get_config(self):
    config = super().get_config()
    config.update(num_buckets=self.num_buckets, dim=self.dim,
                  num_folds=self.num_folds)
    if self.table is not None:
      config["table"] = tf.keras.layers.serialize(self.table)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if config.get("table") is not None:
      config["table"] = tf.keras.layers.deserialize(config["table"])
    return cls(**config)
