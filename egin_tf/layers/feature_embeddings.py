"""The embedding tables of the impression schema, shared by every CTR model.

`FeatureConfig` sizes the tables (from a dataset's ``schema.json`` by default);
`FeatureEmbeddings` owns them and turns a reader batch into vectors:

* an item (target or history entry) is its id embedding concatenated with the sum
  of its categories' embeddings: [..., 2 * dim];
* a query likewise, in the SAME category table (one shared category space);
* `context` gives the paper's "other features" f_o that do not depend on histories:
  user, target item, current query, ``cat/<name>`` embeddings and ``dense/<name>``
  values (batch-normalized).
"""

import dataclasses
from typing import Dict, List, NamedTuple

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.id_embedding import IdEmbedding


def _buckets_for(count: int, max_id: int, minimum: int = 1000) -> int:
  """Identity buckets for small contiguous ids, else 2x the distinct count.

  Ids below ``num_buckets`` map to themselves (see `bucketize_ids`), so data
  whose ids are already small (simulated, re-indexed) gets a collision-free
  table; hashed 63-bit ids get a table twice their distinct count.
  """
  if max_id < 4 * count + minimum:
    return max(max_id + 1, 2)
  return max(2 * count, minimum)


@dataclasses.dataclass
class FeatureConfig:
  """Table sizes and feature names of a dataset.

  Attributes:
    embedding_dim: d of every table (the paper uses 10).
    item_buckets, query_buckets, user_buckets, category_buckets: table sizes.
    feature_buckets: table size of each ``cat/<name>`` feature.
    dense_features: names of ``dense/<name>`` features.
    cat_features: names of ``cat/<name>`` features.
    has_queries: the data has queries (else query features are left out).
    use_user_id: embed the user id (off for data whose test users are unseen).
    track_collisions: report the item and query tables' collision rates in
      training (`IdCollisionRate`: one int64 per row, beside the model).
  """
  item_buckets: int
  query_buckets: int
  user_buckets: int
  category_buckets: int
  embedding_dim: int = 10
  feature_buckets: int = 1000
  dense_features: List[str] = dataclasses.field(default_factory=list)
  cat_features: List[str] = dataclasses.field(default_factory=list)
  has_queries: bool = True
  use_user_id: bool = True
  track_collisions: bool = True

  @classmethod
  def from_schema(cls, schema: schema_lib.DatasetSchema, embedding_dim: int = 10,
                  **overrides) -> "FeatureConfig":
    v = schema.vocab
    config = cls(
        item_buckets=_buckets_for(v.get("items", 0), v.get("max_items", 0)),
        query_buckets=_buckets_for(v.get("queries", 0), v.get("max_queries", 0)),
        user_buckets=_buckets_for(v.get("users", 0), v.get("max_users", 0)),
        category_buckets=_buckets_for(v.get("categories", 0),
                                      v.get("max_categories", 0)),
        embedding_dim=embedding_dim,
        dense_features=list(schema.dense_features),
        cat_features=list(schema.cat_features),
        has_queries=schema.has_queries)
    return dataclasses.replace(config, **overrides)


class TargetAndHistory(NamedTuple):
  """One history with the target it is read against (embedded, width 2d).

  target: [B, 2d]; history: [B, L, 2d] (zeros on padding); mask: bool [B, L];
  ids: int64 [B], the target ids; history_ids: int64 [B, L].
  """
  target: tf.Tensor
  history: tf.Tensor
  mask: tf.Tensor
  ids: tf.Tensor
  history_ids: tf.Tensor


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class FeatureEmbeddings(tf.keras.layers.Layer):
  """All embedding tables of the schema; see the module docstring.

  Example:

  ```python
  features = FeatureEmbeddings(FeatureConfig(
      item_buckets=100, query_buckets=50, user_buckets=10, category_buckets=20,
      embedding_dim=4, use_user_id=False))
  batch = {"item_id": tf.constant([3, 4], tf.int64),
           "item_cats": tf.constant([[1], [2]], tf.int64),
           "query_id": tf.constant([7, 0], tf.int64),
           "query_cats": tf.constant([[1], [0]], tf.int64)}
  context = features(batch)  # f_o: float32 [2, 16] (item and query, 2d each)
  ```
  """

  def __init__(self, config: FeatureConfig, **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, dict):
      config = FeatureConfig(**config)
    self.config = config
    d = config.embedding_dim
    self.items = IdEmbedding(config.item_buckets, d, name="item")
    self.categories = IdEmbedding(config.category_buckets, d, name="category")
    self.queries = IdEmbedding(config.query_buckets, d, name="query")
    self.users = IdEmbedding(config.user_buckets, d, name="user")
    self.cat_features = {
        name: IdEmbedding(config.feature_buckets, d, name=f"cat_{name}")
        for name in config.cat_features
    }
    self.dense_norm = (tf.keras.layers.BatchNormalization(name="dense_norm")
                       if config.dense_features else None)
    # A container: its tables build on first use through the methods below,
    # never through __call__, so Keras must not wait for a build.
    self.built = True

  @property
  def item_dim(self) -> int:
    """Width of `embed_items` / `embed_queries` vectors: 2 * embedding_dim."""
    return 2 * self.config.embedding_dim

  def embed_categories(self, cats: tf.Tensor) -> tf.Tensor:
    """int64 [..., C] -> float [..., d], the sum over non-padding categories."""
    return tf.reduce_sum(self.categories(cats), axis=-2)

  def embed_items(self, ids: tf.Tensor, cats: tf.Tensor) -> tf.Tensor:
    """ids [...], cats [..., C] -> [..., 2d] (zeros where ids is padding)."""
    vectors = tf.concat([self.items(ids), self.embed_categories(cats)], axis=-1)
    return vectors * tf.cast(ids > 0, vectors.dtype)[..., tf.newaxis]

  def embed_queries(self, ids: tf.Tensor, cats: tf.Tensor) -> tf.Tensor:
    """ids [...], cats [..., C] -> [..., 2d] (zeros where ids is padding)."""
    vectors = tf.concat([self.queries(ids), self.embed_categories(cats)], axis=-1)
    return vectors * tf.cast(ids > 0, vectors.dtype)[..., tf.newaxis]

  def targets_and_histories(self, batch: Dict[str, tf.Tensor]
                            ) -> List[TargetAndHistory]:
    """The clicks against the target item, then (with queries) the query history
    against the current query: the pairs every sequence model reads."""
    pairs = [(self.embed_items, schema_lib.ITEM_ID, schema_lib.ITEM_CATS,
              schema_lib.CLICKS)]
    if self.config.has_queries:
      pairs.append((self.embed_queries, schema_lib.QUERY_ID,
                    schema_lib.QUERY_CATS, schema_lib.QUERIES))
    out = []
    for embed, target_id, target_cats, seq in pairs:
      history_ids = batch[seq.ids]
      out.append(TargetAndHistory(
          target=embed(batch[target_id], batch[target_cats]),
          history=embed(history_ids, batch[seq.cats]),
          mask=history_ids > 0, ids=batch[target_id], history_ids=history_ids))
    return out

  def call(self, batch: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    """`context`: calling the layer on a batch gives f_o, so a functional model
    (where only layers may touch its inputs) can use the tables too."""
    return self.context(batch, training=training)

  def context(self, batch: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    """f_o: [B, F] from user, target item, query and other features."""
    parts = [self.embed_items(batch[schema_lib.ITEM_ID],
                              batch[schema_lib.ITEM_CATS])]
    if self.config.use_user_id:
      parts.append(self.users(batch[schema_lib.USER_ID]))
    if self.config.has_queries:
      parts.append(self.embed_queries(batch[schema_lib.QUERY_ID],
                                      batch[schema_lib.QUERY_CATS]))
    for name, table in self.cat_features.items():
      parts.append(table(batch[schema_lib.CAT_PREFIX + name]))
    if self.dense_norm is not None:
      dense = tf.stack([tf.cast(batch[schema_lib.DENSE_PREFIX + n], tf.float32)
                        for n in self.config.dense_features], axis=-1)
      parts.append(self.dense_norm(dense, training=training))
    return tf.concat(parts, axis=-1)

  def get_config(self):
    config = super().get_config()
    config["config"] = dataclasses.asdict(self.config)
    return config
