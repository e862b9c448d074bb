"""Every registered layer survives tf.keras.layers.serialize -> deserialize
(the same class and config; with its weights copied, the same outputs), and a
user's plain Keras model of EGIN's layers saves and reloads as a SavedModel."""

import math

from data_pipeline.tf_env import tf
import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from egin_tf import layers
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.id_collisions import IdCollisionRate


def _feature_embeddings():
  return FeatureEmbeddings(FeatureConfig(item_buckets=50, query_buckets=20,
                                         user_buckets=10, category_buckets=8,
                                         embedding_dim=4, cat_features=["position"]))


LAYERS = {
    "MLP": lambda: layers.MLP(hidden_units=(8, 4), dropout=0.1, use_batch_norm=True),
    "NegativeQueue": lambda: layers.NegativeQueue(capacity=30, num_negatives=5,
                                                  seed=2, logq_buckets=64),
    "MaskedPooling": lambda: layers.MaskedPooling(mode="mean"),
    "QueryItemGraph": lambda: layers.QueryItemGraph(window=3, q2q_timespan=60,
                                                    q2i_timespan=120, seed=4),
    "SimExtract": lambda: layers.SimExtract(k=3, num_bins=5, embedding_dim=4,
                                            max_positions=10),
    "TargetAttention": lambda: layers.TargetAttention(hidden_units=(6,),
                                                      activation="prelu"),
    "TransformerBlock": lambda: layers.TransformerBlock(num_heads=1, ffn_units=8),
    "BehaviorSequenceTransformer": lambda: layers.BehaviorSequenceTransformer(),
    "FeatureEmbeddings": _feature_embeddings,
    "IdEmbedding": lambda: layers.IdEmbedding(12, 3, regularizer="l2"),
    "OutOfFoldEmbedding": lambda: layers.OutOfFoldEmbedding(12, 3, num_folds=2),
    "OutOfFoldEmbedding wrapping a table": lambda: layers.OutOfFoldEmbedding(
        table=layers.IdEmbedding(12, 3, name="shared")),
    "GraphSoftmaxLoss": lambda: layers.GraphSoftmaxLoss(),
    # Item table nested two deep (wrapped as one fold), query table one deep.
    "GraphLearning": lambda: layers.GraphLearning(
        layers.OutOfFoldEmbedding(table=layers.IdEmbedding(20, 4, name="item_ids"),
                                  name="items"),
        layers.IdEmbedding(10, 4, name="queries"),
        window=3, q2q_timespan=50, seeds_fraction=0.25, num_negatives=3,
        queue_capacity=8, logq_buckets=16, seed=1),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_serialize_deserialize_round_trip(name):
  layer = LAYERS[name]()
  serialized = tf.keras.layers.serialize(layer)
  assert name.startswith(type(layer).__name__)
  assert serialized["registered_name"] == f"egin_tf>{type(layer).__name__}"
  again = tf.keras.layers.deserialize(serialized)
  assert type(again) is type(layer)
  assert again.get_config() == layer.get_config()


def _round_trip(layer):
  return tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))


def test_graph_learning_config_nests_its_tables():
  layer = LAYERS["GraphLearning"]()
  again = _round_trip(layer)
  assert type(again.items.table) is layers.IdEmbedding
  assert again.items.table.get_config() == layer.items.table.get_config()
  assert again.items.table is not layer.items.table  # a config holds no identity
  assert (again.queries.num_buckets, again.queries.dim) == (10, 4)
  assert again.item_queue.logq_buckets == 16 and again.graph.seeds_fraction == 0.25


def _id_table_outputs(layer):
  ids = tf.constant([[1, 0, 11], [25, 3, 0]], tf.int64)
  if isinstance(layer, layers.OutOfFoldEmbedding) and layer.num_folds > 1:
    return layer(ids, tf.constant([0, 1], tf.int32))
  return layer(ids)


@pytest.mark.parametrize("name", ["IdEmbedding", "OutOfFoldEmbedding",
                                  "OutOfFoldEmbedding wrapping a table"])
def test_id_tables_give_the_same_vectors_after_copying_weights(name):
  layer = LAYERS[name]()
  expected = _id_table_outputs(layer).numpy()
  again = _round_trip(layer)
  _id_table_outputs(again)  # builds its weights
  again.set_weights(layer.get_weights())
  np.testing.assert_array_equal(_id_table_outputs(again).numpy(), expected)
  assert (expected[0, 1] == 0).all()  # padding embeds to zero


def _graph_batch():
  """Two rows: clicks 1, 2, 3 and 4, 5 in time; queries 1, 2 and 3; category 1."""
  batch = reader.zeros_batch(schema_lib.DatasetSchema(num_cats=1),
                             reader.SequenceLengths(4, 3, 2), batch_size=2)
  click_ids = tf.constant([[1, 2, 3, 0], [4, 5, 0, 0]], tf.int64)
  query_ids = tf.constant([[1, 2, 0], [3, 0, 0]], tf.int64)
  batch.update(
      item_id=tf.constant([6, 7], tf.int64), query_id=tf.constant([2, 3], tf.int64),
      time=tf.constant([40, 40], tf.int64),
      click_ids=click_ids, click_times=tf.constant([[10, 20, 30, 0], [10, 20, 0, 0]],
                                                   tf.int64),
      click_cats=tf.cast(click_ids > 0, tf.int64)[..., tf.newaxis],
      query_hist_ids=query_ids,
      query_hist_times=tf.constant([[5, 15, 0], [5, 0, 0]], tf.int64),
      query_hist_cats=tf.cast(query_ids > 0, tf.int64)[..., tf.newaxis],
      seed_ids=tf.constant([[1, 2], [4, 0]], tf.int64),
      seed_times=tf.constant([[10, 20], [10, 0]], tf.int64))
  return batch


def test_graph_learning_gives_the_same_losses_after_copying_weights():
  layer = LAYERS["GraphLearning"]()
  batch = _graph_batch()
  layer(batch, training=True)  # fills the queues: the next call has negatives
  again = _round_trip(layer)
  again(batch, training=True)  # builds its weights
  # Tables, queues, the graph's step: everything a loss depends on is a weight.
  again.set_weights(layer.get_weights())
  expected = {k: v.numpy() for k, v in layer(batch, training=True).items()}
  got = {k: v.numpy() for k, v in again(batch, training=True).items()}
  assert got == expected
  assert all(loss > 0 for loss in expected.values()), expected


def test_graph_softmax_loss_round_trips_and_scores_by_hand():
  layer = _round_trip(layers.GraphSoftmaxLoss())
  edges = layers.Edges(src=tf.constant([[3]], tf.int64), dst=tf.constant([[5]], tf.int64),
                       mask=tf.constant([[True]]), src_pos=tf.constant([0], tf.int32),
                       dst_pos=tf.constant([0], tf.int32))
  loss = layer(tf.constant([[[1.0, 0.0]]]), tf.constant([[[2.0, 0.0]]]), edges,
               tf.constant([[0.0, 1.0]]), tf.constant([7], tf.int64))
  # Logits: positive 1 * 2 = 2, negative 0; -log(e^2 / (e^2 + e^0)).
  assert loss.numpy() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_id_collision_rate_round_trips_with_its_owners():
  metric = IdCollisionRate(num_buckets=4)
  metric.update_state(tf.constant([4], tf.int64))  # bucket 1 of 4 ids: 1 + (4-1) % 3
  again = tf.keras.metrics.deserialize(tf.keras.metrics.serialize(metric))
  assert type(again) is IdCollisionRate and again.get_config() == metric.get_config()
  again.set_weights(metric.get_weights())
  for m in (metric, again):
    m.update_state(tf.constant([1, 2], tf.int64))  # 1 hits id 4's row, 2 is new
    assert m.result().numpy() == pytest.approx(1 / 3)


def _users_din() -> tf.keras.Model:
  """A user's own functional model of EGIN's layers over ONE item table."""
  item_id = tf.keras.Input([], dtype=tf.int64, name="item_id")
  click_ids = tf.keras.Input([4], dtype=tf.int64, name="click_ids")
  items = layers.IdEmbedding(20, 4, name="items")
  target, clicks = items(item_id), items(click_ids)
  mask = click_ids > 0
  attended = layers.TargetAttention(hidden_units=(6,), name="attention")(
      target, clicks, mask)
  pooled = layers.MaskedPooling(mode="mean", name="pooling")(clicks, mask)
  interest = layers.SimExtract(k=2, num_bins=3, embedding_dim=2, max_positions=4,
                               name="sim_i2i")(target, clicks, mask)
  features = tf.keras.layers.Concatenate()([target, attended, pooled, interest])
  logit = layers.MLP(hidden_units=(8,), name="mlp")(features)
  pctr = tf.keras.layers.Activation("sigmoid")(logit)
  return tf.keras.Model({"item_id": item_id, "click_ids": click_ids}, pctr)


def test_a_users_model_of_egin_layers_reloads_as_a_saved_model(tmp_path):
  model = _users_din()
  rows = {"item_id": np.array([3, 7, 19], np.int64),
          "click_ids": np.array([[1, 3, 5, 0], [7, 0, 0, 0], [2, 4, 6, 8]], np.int64)}
  # A few steps, so the weights are not the initializer's.
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="binary_crossentropy")
  model.fit(rows, np.array([1.0, 0.0, 1.0]), epochs=3, verbose=0)
  expected = model.predict(rows, verbose=0)
  path = str(tmp_path / "users_din")
  model.save(path)  # a folder: the SavedModel format
  assert tf.saved_model.contains_saved_model(path)
  loaded = tf.keras.models.load_model(path)
  # Rebuilt from the registered classes' configs, not generic revived layers.
  for name, cls in (("items", layers.IdEmbedding), ("attention", layers.TargetAttention),
                    ("pooling", layers.MaskedPooling), ("sim_i2i", layers.SimExtract),
                    ("mlp", layers.MLP)):
    assert type(loaded.get_layer(name)) is cls
  np.testing.assert_allclose(loaded.predict(rows, verbose=0), expected, rtol=1e-6)
  assert not np.allclose(expected, expected[0])  # the rows do differ
