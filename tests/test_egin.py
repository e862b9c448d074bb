"""The EGIN model: joint objective, queues, ablations, and a real win over DNN."""

import json
import os

import numpy as np
import pytest

from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import EGIN, build_model
from example_io import batch_of


def _tiny_batch(with_queries=True, size=4):
  rng = np.random.default_rng(0)
  imps = []
  for u in range(size):
    clicks = [Event(int(i), 100 + 10 * j, [int(i) % 3 + 1])
              for j, i in enumerate(rng.integers(1, 30, 6))]
    queries = ([Event(int(q), 95 + 10 * j, [int(q) % 3 + 1])
                for j, q in enumerate(rng.integers(1, 9, 4))]
               if with_queries else [])
    imps.append(Impression(
        label=u % 2, user_id=u + 1, time=1000, item_id=int(rng.integers(1, 30)),
        item_cats=[1], query_id=int(rng.integers(1, 9)) if with_queries else 0,
        query_cats=[1] if with_queries else [], clicks=clicks, queries=queries))
  return imps


def _features(with_queries=True):
  return FeatureConfig(item_buckets=32, query_buckets=16, user_buckets=8,
                       category_buckets=8, has_queries=with_queries)


def _batch(imps, tmp_path, name="d"):
  return batch_of(imps, tmp_path / name, max_clicks=6, max_queries=4)


def _egin(**kwargs):
  kwargs.setdefault("num_negatives", 8)
  kwargs.setdefault("queue_capacity", 50)
  kwargs.setdefault("max_positions", 8)
  kwargs.setdefault("top_k", 3)
  # One graph table: these tests count one queue's ids and one table's gradients
  # (out-of-fold tables are tested in test_out_of_fold.py).
  kwargs.setdefault("graph_folds", 1)
  model = EGIN(kwargs.pop("features", _features()), **kwargs)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
  return model


def test_train_step_reports_every_loss_and_fills_the_queues(tmp_path):
  batch = _batch(_tiny_batch(), tmp_path)
  model = _egin(alpha=1.0, beta=0.5, gamma=2.0)
  logs = model.train_step(batch)
  for name in ("loss", "ctr_loss", "i2i_loss", "c2c_loss", "q2q_loss", "q2i_loss",
               "auc"):
    assert name in logs
  # alpha weighs L_i2i and the category graph's L_c2c.
  total = logs["ctr_loss"] + 1.0 * (logs["i2i_loss"] + logs["c2c_loss"]) + (
      0.5 * logs["q2q_loss"] + 2.0 * logs["q2i_loss"])
  np.testing.assert_allclose(logs["loss"].numpy(), total.numpy(), rtol=1e-5)
  # clicks (non-zero) and targets went into the item queue; queries likewise.
  n_items = int(np.sum(batch["click_ids"].numpy() > 0)) + 4
  n_queries = int(np.sum(batch["query_hist_ids"].numpy() > 0)) + 4
  assert int(model.item_queue.size().numpy()) == min(n_items, 50)
  assert int(model.query_queue.size().numpy()) == n_queries
  pctr = model(batch, training=False).numpy()
  assert pctr.shape == (4,) and np.all((pctr > 0) & (pctr < 1))
  # Scoring does not touch the queues.
  assert int(model.query_queue.size().numpy()) == n_queries


def test_graph_tables_are_shared_by_graph_loss_and_ctr_network(tmp_path):
  batch = _batch(_tiny_batch(), tmp_path)
  model = _egin()
  model(batch, training=False)
  with tf.GradientTape() as tape:
    losses = model.graph_losses(batch)
  grads = tape.gradient(losses["i2i"], model.graph_items.trainable_variables)
  assert float(tf.norm(tf.convert_to_tensor(grads[0]))) > 0
  # The same table feeds SimExtract (soft binning lets the CTR gradient reach it).
  soft = _egin(binning="soft")
  with tf.GradientTape() as tape:
    logits, _ = soft.forward(batch, training=False)
  grads = tape.gradient(logits, soft.graph_items.trainable_variables)
  assert float(tf.norm(tf.convert_to_tensor(grads[0]))) > 0


def test_item_only_mode_for_data_without_queries(tmp_path):
  batch = _batch(_tiny_batch(with_queries=False), tmp_path)
  model = _egin(features=_features(with_queries=False))
  logs = model.train_step(batch)
  assert "i2i_loss" in logs
  assert "q2q_loss" not in logs and "q2i_loss" not in logs
  assert not hasattr(model, "q2q_extract")


@pytest.mark.parametrize("ablation,present,absent", [
    ({"use_graph": False}, [], ["i2i_loss", "q2q_loss", "q2i_loss"]),
    ({"use_query": False}, ["i2i_loss"], ["q2q_loss", "q2i_loss"]),
    ({"positional": False}, ["i2i_loss", "q2q_loss", "q2i_loss"], []),
])
def test_ablations(tmp_path, ablation, present, absent):
  batch = _batch(_tiny_batch(), tmp_path)
  model = _egin(**ablation)
  logs = model.train_step(batch)
  assert all(name in logs for name in present)
  assert not any(name in logs for name in absent)
  names = [v.name for v in model.trainable_variables]
  if ablation.get("use_graph") is False:
    assert not any("graph_item" in n for n in names)
    assert model.graph_items.table is model.features.items
  if ablation.get("positional") is False:
    assert not any("position" in n for n in names)


def test_queues_and_graph_state_are_checkpointed(tmp_path):
  batch = _batch(_tiny_batch(), tmp_path)
  model = _egin()
  model.train_step(batch)
  model.train_step(batch)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  restored = _egin()
  restored.train_step(batch)  # builds the variables, then overwritten by restore
  tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
  for a, b in ((model.item_queue, restored.item_queue),
               (model.query_queue, restored.query_queue)):
    np.testing.assert_array_equal(a.ids.numpy(), b.ids.numpy())
    assert int(a.size().numpy()) == int(b.size().numpy())
    assert int(a.sample_step.numpy()) == int(b.sample_step.numpy())
  np.testing.assert_array_equal(model.item_queue.sample().ids.numpy(),
                                restored.item_queue.sample().ids.numpy())


def test_config_round_trip():
  model = _egin(window=3, alpha=0.3, binning="soft")
  config = model.get_config()
  assert json.loads(json.dumps(config)) == config
  again = build_model("egin", **{k: v for k, v in config.items()})
  assert again.get_config() == config


def test_egin_graph_losses_fall_and_it_beats_dnn_on_the_same_steps(sim_data,
                                                                   tmp_path):
  data, oracle = sim_data
  results = {}
  for model in ("dnn", "egin"):
    config = train_config.TrainConfig(model=model, batch_size=128, epochs=2,
                                      log_every=100, max_clicks=50, max_queries=50,
                                      seed=1)
    results[model] = offline.train(
        os.path.join(data, "train-*"), str(tmp_path / model), config,
        eval_pattern=os.path.join(data, "test-*"), verbose=0,
        print_fn=lambda _: None)
  assert results["dnn"]["steps"] == results["egin"]["steps"]
  dnn_auc = results["dnn"]["eval"]["auc"]
  egin_auc = results["egin"]["eval"]["auc"]
  assert dnn_auc < egin_auc < oracle["test_auc"]
  history = results["egin"]["history"]
  for name in ("i2i_loss", "q2q_loss", "q2i_loss"):
    assert history[name][-1] < history[name][0] - 0.05, (name, history[name])


def test_per_edge_negatives_train_the_graph_like_shared_ones(tmp_path):
  """Every edge draws its own negatives; the queues fill as with one shared draw."""
  batch = _batch(_tiny_batch(), tmp_path)
  shared, per_edge = _egin(), _egin(per_edge_negatives=True, graph_folds=2)
  shared.train_step(batch)
  logs = per_edge.train_step(batch)
  for name in ("i2i_loss", "q2q_loss", "q2i_loss", "c2c_loss"):
    assert np.isfinite(logs[name].numpy()) and logs[name].numpy() > 0
  assert int(per_edge.item_queue.size()) == int(shared.item_queue.size())
  # One draw per edge type and direction instead of one per node type.
  assert int(per_edge.item_queue.sample_step) == 2  # i2i, q2i
  assert int(shared.item_queue.sample_step) == 1
  config = json.loads(json.dumps(per_edge.get_config()))
  assert config["per_edge_negatives"] is True
