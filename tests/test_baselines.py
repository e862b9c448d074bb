"""The baselines DNN-cross, DIN and BST: hand-computed layers, training, configs."""

import json
import os

import numpy as np
import pytest

from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from egin_tf import models
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.layers.target_attention import TargetAttention
from egin_tf.layers.transformer import (BehaviorSequenceTransformer,
                                        TransformerBlock)
from egin_tf.models.bst import BST
from egin_tf.models.din import DIN
from egin_tf.models.dnn_cross import DNNCross, pair_buckets, splitmix64
from example_io import batch_of

BASELINES = {"dnn_cross": DNNCross, "din": DIN, "bst": BST}
_SMALL = {"dnn_cross": {"cross_buckets": 64, "hidden_units": [8]},
          "din": {"attention_units": [4], "hidden_units": [8]},
          "bst": {"ffn_units": 8, "max_positions": 8, "hidden_units": [8]}}
_M64 = (1 << 64) - 1


def _impressions(with_queries=True, size=4):
  """Histories of 0 to 5 clicks, so every batch has padded positions."""
  rng = np.random.default_rng(1)
  imps = []
  for u in range(size):
    n_clicks = [5, 2, 0, 3][u % 4]
    clicks = [Event(int(i), 100 + 10 * j, [int(i) % 3 + 1])
              for j, i in enumerate(rng.integers(1, 30, n_clicks))]
    queries = ([Event(int(q), 95 + 10 * j, [int(q) % 3 + 1])
                for j, q in enumerate(rng.integers(1, 9, u % 3 + 1))]
               if with_queries else [])
    imps.append(Impression(
        label=u % 2, user_id=u + 1, time=1000, item_id=int(rng.integers(1, 30)),
        item_cats=[1], query_id=int(rng.integers(1, 9)) if with_queries else 0,
        query_cats=[1] if with_queries else [], clicks=clicks, queries=queries))
  return imps


def _features(with_queries=True):
  return FeatureConfig(item_buckets=32, query_buckets=16, user_buckets=8,
                       category_buckets=8, embedding_dim=4,
                       has_queries=with_queries)


def _batch(tmp_path, with_queries=True):
  return batch_of(_impressions(with_queries), tmp_path / "data", max_clicks=5,
                  max_queries=3)


def _model(name, with_queries=True):
  model = BASELINES[name](_features(with_queries), **_SMALL[name])
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
  return model


# --- DIN's target attention -------------------------------------------------


def _attention_inputs():
  target = np.array([[1.0, 0.5], [-1.0, 2.0]], np.float32)
  history = np.array([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]],
                      [[0.5, -1.0], [7.0, 7.0], [7.0, 7.0]]], np.float32)
  mask = np.array([[True, True, False], [True, False, False]])
  return target, history, mask


def test_target_attention_with_constant_unit_scales_the_real_entries():
  # Zero hidden kernels and biases: each of 3 sigmoid units outputs 0.5, and
  # the score kernel [1, 1, 1] with bias 0.5 gives every entry weight 2.
  target, history, mask = _attention_inputs()
  layer = TargetAttention(hidden_units=[3], return_weights=True)
  layer(target, history, mask)
  layer.set_weights([np.zeros([8, 3]), np.zeros([3]), np.ones([3, 1]),
                     np.array([0.5])])
  pooled, weights = layer(target, history, mask)
  np.testing.assert_allclose(weights.numpy(), [[2, 2, 0], [2, 0, 0]])
  np.testing.assert_allclose(pooled.numpy(), [[8.0, 12.0], [1.0, -2.0]])


def test_target_attention_matches_numpy_and_ignores_padding():
  target, history, mask = _attention_inputs()
  layer = TargetAttention(hidden_units=[3], return_weights=True)
  layer(target, history, mask)
  rng = np.random.default_rng(0)
  w1, b1 = rng.normal(size=[8, 3]), rng.normal(size=[3])
  w2, b2 = rng.normal(size=[3, 1]), rng.normal(size=[1])
  layer.set_weights([w1, b1, w2, b2])

  q = np.broadcast_to(target[:, None, :], history.shape)
  x = np.concatenate([q, history, q - history, q * history], axis=-1)
  hidden = 1 / (1 + np.exp(-(x @ w1 + b1)))
  expected_weights = (hidden @ w2 + b2)[..., 0] * mask
  expected = np.sum(expected_weights[..., None] * history, axis=1)

  pooled, weights = layer(target, history, mask)
  np.testing.assert_allclose(weights.numpy(), expected_weights, rtol=1e-5)
  np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5, atol=1e-6)
  assert np.all(weights.numpy()[~mask] == 0)
  # Whatever sits at the padded positions contributes nothing.
  noisy = history.copy()
  noisy[~mask] = rng.normal(size=[int(np.sum(~mask)), 2]) * 100
  np.testing.assert_array_equal(layer(target, noisy, mask)[0].numpy(),
                                pooled.numpy())


def test_target_attention_prelu_variant_builds_and_round_trips():
  target, history, mask = _attention_inputs()
  layer = TargetAttention(hidden_units=[4, 2], activation="prelu")
  assert layer(target, history, mask).shape == (2, 2)
  clone = TargetAttention.from_config(json.loads(json.dumps(layer.get_config())))
  assert clone.get_config() == layer.get_config()
  names = [v.name for v in layer.trainable_variables]
  assert any("prelu" in n for n in names)


# --- DNN-cross's pair buckets -------------------------------------------------


def _splitmix64(x):
  z = (x + 0x9E3779B97F4A7C15) & _M64
  z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
  z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
  return z ^ (z >> 31)


def test_splitmix64_is_the_standard_finalizer():
  # The first output of the reference splitmix64 generator seeded with 0.
  values = splitmix64(tf.constant([0, 1], tf.uint64)).numpy()
  assert int(values[0]) == 0xE220A8397B1DCDAF
  assert int(values[1]) == _splitmix64(1)


def test_dnn_cross_pools_the_table_rows_of_the_expected_pair_buckets():
  buckets = 50
  targets = [7, 2**62 + 5, 0]
  histories = [[3, 9, 0], [11, 0, 0], [4, 5, 0]]

  def expected_bucket(h, t):
    if h == 0 or t == 0:
      return 0
    return 1 + _splitmix64(_splitmix64(h) ^ t) % (buckets - 1)

  expected = [[expected_bucket(h, t) for h in row]
              for row, t in zip(histories, targets)]
  got = pair_buckets(tf.constant(histories, tf.int64),
                     tf.constant(targets, tf.int64), buckets).numpy()
  np.testing.assert_array_equal(got, expected)
  assert all(b > 0 for b in expected[0][:2] + expected[1][:1])
  # The pair is ordered: (h, t) and (t, h) are different features.
  assert expected_bucket(3, 7) != expected_bucket(7, 3)

  model = DNNCross(_features(), cross_buckets=buckets)
  pooled = model.pooled_cross(tf.constant(histories, tf.int64),
                              tf.constant(targets, tf.int64)).numpy()
  table = model.cross.embeddings.numpy()
  np.testing.assert_allclose(pooled[0], table[expected[0][0]] + table[expected[0][1]],
                             rtol=1e-6)
  np.testing.assert_allclose(pooled[1], table[expected[1][0]], rtol=1e-6)
  np.testing.assert_array_equal(pooled[2], np.zeros(4))  # no target: no cross


# --- BST's transformer --------------------------------------------------------


def test_recency_positions_count_back_from_the_target():
  layer = BehaviorSequenceTransformer(max_positions=3)
  mask = tf.constant([[True, True, True, False], [True, False, False, False]])
  np.testing.assert_array_equal(layer.recency(mask).numpy(),
                                [[2, 2, 1, 0, 0], [1, 0, 0, 0, 0]])


@pytest.mark.parametrize("pooling", [["target"], ["mean"], ["target", "mean"]])
def test_bst_padding_never_changes_the_output(pooling):
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  target = rng.normal(size=[2, 6]).astype(np.float32)
  history = rng.normal(size=[2, 4, 6]).astype(np.float32)
  mask = np.array([[True, True, False, False], [True, True, True, False]])
  layer = BehaviorSequenceTransformer(num_blocks=2, num_heads=2, ffn_units=8,
                                      pooling=pooling)
  out = layer(target, history, mask).numpy()
  assert out.shape == (2, 6 * len(pooling))
  noisy = history.copy()
  noisy[~mask] = rng.normal(size=[int(np.sum(~mask)), 6]) * 100
  np.testing.assert_allclose(layer(target, noisy, mask).numpy(), out,
                             rtol=1e-5, atol=1e-6)
  # A real entry does change it (so the check above can fail).
  changed = history.copy()
  changed[0, 1] += 1.0
  assert not np.allclose(layer(target, changed, mask).numpy()[0], out[0])


def test_transformer_layers_round_trip_their_configs():
  block = TransformerBlock(num_heads=3, ffn_units=5, dropout=0.1)
  encoder = BehaviorSequenceTransformer(num_blocks=2, pooling=["mean"])
  for layer in (block, encoder):
    config = json.loads(json.dumps(layer.get_config()))
    assert type(layer).from_config(config).get_config() == layer.get_config()
  with pytest.raises(ValueError, match="pooling"):
    BehaviorSequenceTransformer(pooling=["max"])


# --- The models ---------------------------------------------------------------


@pytest.mark.parametrize("with_queries", [True, False])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_model_trains_and_scores_in_zero_one(tmp_path, name, with_queries):
  batch = _batch(tmp_path, with_queries)
  model = _model(name, with_queries)
  before = model(batch, training=False).numpy()
  for _ in range(3):
    logs = model.train_step(batch)
  assert np.isfinite(float(logs["loss"]))
  pctr = model(batch, training=False).numpy()
  assert pctr.shape == (4,) and np.all((pctr > 0) & (pctr < 1))
  assert not np.allclose(pctr, before)  # the steps changed the model


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_config_is_json_and_rebuilds_the_same_model(tmp_path, name):
  batch = _batch(tmp_path)
  model = _model(name)
  model(batch, training=False)
  config = model.get_config()
  rebuilt = BASELINES[name](**json.loads(json.dumps(config)))
  assert rebuilt.get_config() == config
  rebuilt(batch, training=False)
  rebuilt.set_weights(model.get_weights())
  np.testing.assert_allclose(rebuilt(batch, training=False).numpy(),
                             model(batch, training=False).numpy(), rtol=1e-6)


@pytest.fixture
def registered_baselines():
  saved = dict(models.MODELS)
  models.MODELS.update(BASELINES)
  yield
  models.MODELS.clear()
  models.MODELS.update(saved)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_runs_inside_training_train(sim_data, tmp_path, name,
                                             registered_baselines):
  data, _ = sim_data
  config = train_config.TrainConfig(model=name, model_kwargs=_SMALL[name],
                                    batch_size=32, steps=4, log_every=4,
                                    max_clicks=10, max_queries=10, max_seeds=1)
  model_dir = str(tmp_path / "m")
  result = offline.train(os.path.join(data, "train-*"), model_dir, config,
                         eval_pattern=os.path.join(data, "test-*"), verbose=0,
                         print_fn=lambda _: None)
  assert result["steps"] == 4
  assert 0 < result["eval"]["auc"] < 1
  assert np.isfinite(result["eval"]["logloss"])
  trained = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  assert isinstance(trained.model, BASELINES[name])
