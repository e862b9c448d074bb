"""TargetMatch: explicit target-vs-history match features, the same for every model.

Some signals need no learning to be read: whether the target item was already
clicked (a repeat) and how recently, whether it shares a category with the clicks,
and whether the current query's categories name the target's. A model that sees
them gets them for free; a model that must learn them through attention or an
untrained graph table does not. Fair model comparisons therefore give this block
to every model or to none (``match_features`` of every model config).

Features, one column each, float [B, F] (F = `TargetMatch.output_dim`):

0. ``item_repeats``: log(1 + n), n = valid clicks whose id equals the target's.
1. ``item_recency``: 1 / (1 + r), r = recency rank of the most recent such click
   (0 = the most recent valid click of the row); 0 when there is none.
2. ``category_matches``: log(1 + m), m = valid clicks sharing at least one
   category id (> 0) with the target.
3. ``category_share``: m / (valid clicks), 0 for an empty history.
4. ``category_recency``: 1 / (1 + r) of the most recent category-matching click;
   0 when there is none.
5. ``query_target_category`` (only with ``use_query``): 1 when the current query
   shares a category id (> 0) with the target, else 0 (also without a query).

The layer has no weights: the model's MLP learns what each feature is worth.

Example:

```python
match = TargetMatch(use_query=False)
features = match(
    target_ids=tf.constant([7]), target_cats=tf.constant([[3]]),
    click_ids=tf.constant([[7, 5, 0]]),
    click_cats=tf.constant([[[3], [4], [0]]]))
# item 7 clicked once, 1 click back (rank 1); one click of category 3, also rank 1:
# [[log 2, 0.5, log 2, 0.5, 0.5]]
```
"""

from typing import List, Optional

from data_pipeline.tf_env import tf

FEATURE_NAMES = ("item_repeats", "item_recency", "category_matches",
                 "category_share", "category_recency")
QUERY_FEATURE_NAMES = ("query_target_category",)


def recency_ranks(valid: tf.Tensor) -> tf.Tensor:
  """Valid elements after each element of a bool [B, L] mask: 0 = most recent."""
  return tf.cumsum(tf.cast(valid, tf.int32), axis=1, exclusive=True, reverse=True)


def shares_category(cats_a: tf.Tensor, cats_b: tf.Tensor) -> tf.Tensor:
  """Whether two category sets share an id > 0: int [..., C], [..., C'] -> bool [...].

  The one category check of the library: TargetMatch's features and
  `QueryItemGraph`'s q2q / q2i edges. Ids <= 0 are padding (as in `bucketize_ids`).
  """
  equal = cats_a[..., :, tf.newaxis] == cats_b[..., tf.newaxis, :]
  real = (cats_a > 0)[..., :, tf.newaxis]
  return tf.reduce_any(equal & real, axis=[-2, -1])


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class TargetMatch(tf.keras.layers.Layer):
  """Explicit target-vs-history match features (module docstring), no weights.

  Call arguments:
    target_ids: int [B], the target item (0 = none).
    target_cats: int [B, C], its categories (0 = padding).
    click_ids: int [B, L], the click history (0 = padding; need not be contiguous).
    click_cats: int [B, L, C], the clicks' categories.
    query_cats: int [B, Cq], the current query's categories (with ``use_query``).
    query_ids: int [B], the current query (0 = none; with ``use_query``).

  Output: float [B, output_dim] in the layer's compute dtype.

  Example:

  ```python
  match = TargetMatch()
  features = match(
      tf.constant([5, 6], tf.int64),                  # target items [B]
      tf.constant([[1], [2]], tf.int64),              # their categories [B, C]
      tf.constant([[5, 3, 0], [4, 0, 0]], tf.int64),  # click history [B, L]
      tf.constant([[[1], [1], [0]], [[3], [0], [0]]], tf.int64),  # [B, L, C]
      tf.constant([[1], [0]], tf.int64),              # query categories [B, Cq]
      tf.constant([8, 0], tf.int64))                  # queries [B]
  # float32 [2, 6]; row 0 clicked item 5 before: item_repeats = log(2)
  ```
  """

  def __init__(self, use_query: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.use_query = bool(use_query)

  @property
  def feature_names(self) -> tuple:
    return FEATURE_NAMES + (QUERY_FEATURE_NAMES if self.use_query else ())

  @property
  def output_dim(self) -> int:
    return len(self.feature_names)

  def call(self, target_ids, target_cats, click_ids, click_cats,
           query_cats: Optional[tf.Tensor] = None,
           query_ids: Optional[tf.Tensor] = None) -> tf.Tensor:
    valid = click_ids > 0
    ranks = recency_ranks(valid)
    same_item = valid & (click_ids == target_ids[:, tf.newaxis])
    same_category = valid & shares_category(target_cats[:, tf.newaxis], click_cats)
    count = tf.cast(tf.reduce_sum(tf.cast(valid, tf.int32), axis=1), tf.float32)
    matches = tf.cast(tf.reduce_sum(tf.cast(same_category, tf.int32), axis=1),
                      tf.float32)
    columns = [_log_count(same_item), _recency(same_item, ranks),
               tf.math.log1p(matches), tf.math.divide_no_nan(matches, count),
               _recency(same_category, ranks)]
    columns += self._query_columns(target_cats, query_cats, query_ids)
    return tf.cast(tf.stack(columns, axis=-1), self.compute_dtype)

  def _query_columns(self, target_cats, query_cats, query_ids) -> List[tf.Tensor]:
    if not self.use_query:
      return []
    if query_cats is None or query_ids is None:
      raise ValueError(f"TargetMatch {self.name!r}: use_query=True needs "
                       "query_cats and query_ids")
    shared = shares_category(target_cats, query_cats) & (query_ids > 0)
    return [tf.cast(shared, tf.float32)]

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([None, self.output_dim])

  def get_config(self):
    config = super().get_config()
    config["use_query"] = self.use_query
    return config


def _log_count(match: tf.Tensor) -> tf.Tensor:
  return tf.math.log1p(tf.cast(tf.reduce_sum(tf.cast(match, tf.int32), axis=1),
                               tf.float32))


def _recency(match: tf.Tensor, ranks: tf.Tensor) -> tf.Tensor:
  """1 / (1 + rank) of the most recent matching element, 0 without one: [B]."""
  scores = 1.0 / (1.0 + tf.cast(ranks, tf.float32))
  best = tf.reduce_max(tf.where(match, scores, tf.zeros_like(scores)), axis=1)
  return tf.maximum(best, 0.0)  # an empty history (L = 0) reduces to -inf
