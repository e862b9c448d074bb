"""IdCollisionRate on hand cases; table sizes from TrainConfig; the rates in training."""

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
import pytest

from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.layers.id_collisions import IdCollisionRate


def _ids(values):
  return tf.constant(values, tf.int64)


def test_rate_counts_lookups_of_rows_another_id_used_last():
  rate = IdCollisionRate(num_buckets=5)  # ids 1..4 own rows 1..4; 5 -> 1, 9 -> 1
  rate.update_state(_ids([[1, 2, 0], [3, 1, 0]]))  # padding is not a lookup
  assert float(rate.result()) == 0.0
  rate.update_state(_ids([5, 2]))  # 5 lands on 1's row: 1 of 2
  assert float(rate.result()) == pytest.approx(1 / 6)
  rate.update_state(_ids([1, 9]))  # both find 5 (the owner before the batch)
  assert float(rate.result()) == pytest.approx(3 / 8)
  assert rate.owners.numpy().tolist()[2:4] == [2, 3]


def test_reset_starts_a_new_period_over_the_same_owners():
  rate = IdCollisionRate(num_buckets=3)  # 1 and 3 share row 1
  rate.update_state(_ids([1]))
  rate.reset_state()
  assert float(rate.result()) == 0.0
  rate.update_state(_ids([3]))
  assert float(rate.result()) == 1.0


def test_bad_bucket_counts_and_config_round_trip():
  with pytest.raises(ValueError, match="num_buckets must be an int >= 2"):
    IdCollisionRate(num_buckets=1)
  rate = IdCollisionRate(num_buckets=7, name="item_collisions")
  copy = tf.keras.metrics.deserialize(tf.keras.metrics.serialize(rate))
  assert isinstance(copy, IdCollisionRate)
  assert (copy.num_buckets, copy.name) == (7, "item_collisions")


def test_table_sizes_override_the_schema_sizes(sim_data):
  schema = schema_lib.schema_for_files([sim_data[0] + "/train-00000-of-00002.tfrecord"])
  default = train_config.feature_config(schema, train_config.TrainConfig())
  sized = train_config.feature_config(schema, train_config.TrainConfig(
      table_sizes={"item": 64, "query": 32}))
  assert (sized.item_buckets, sized.query_buckets) == (64, 32)
  assert (sized.user_buckets, sized.category_buckets) == (
      default.user_buckets, default.category_buckets)
  for sizes, message in [({"items": 64}, "unknown table 'items'"),
                         ({"item": 1}, "needs an int >= 2 rows")]:
    with pytest.raises(ValueError, match=message):
      train_config.feature_config(schema, train_config.TrainConfig(table_sizes=sizes))


def test_a_small_item_table_shows_collisions_in_training(sim_data, tmp_path):
  data, _ = sim_data
  config = train_config.TrainConfig(model="dnn", steps=20, log_every=10, batch_size=64,
                                    max_clicks=10, max_queries=10, max_seeds=10,
                                    table_sizes={"item": 50})
  result = offline.train(data + "/train-*", str(tmp_path), config, verbose=0)
  # 50 rows for the simulator's thousands of items: most lookups collide.
  assert min(result["history"]["item_collisions"]) > 0.5
  # Queries keep their row-per-id table: no collisions at all.
  assert max(result["history"]["query_collisions"]) == 0.0
