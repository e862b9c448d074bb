"""EGIN's graph layers inside a user's functional DIN (examples/), trained by fit.

One module-scoped run traces the training step once (the graph layers make that
trace cost seconds): a first `train_on_batch` on a known batch, then plain `fit`.
Values that later tests could disturb (queue fill, step counters) are recorded
by the fixture when they are produced.
"""

import importlib.util
import json
import os
import sys
import types

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline.tf_env import tf
from egin_tf.layers import FeatureConfig
from egin_tf.layers import bucketize_ids

_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "din_with_egin_graph_layers.py")


def _load_example():
  spec = importlib.util.spec_from_file_location("din_with_egin_graph_layers",
                                                _EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  # AutoGraph looks functions up through sys.modules.
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


example = _load_example()

MAX_HISTORY = 20
BATCH = 32
FIT_STEPS = 2 * 12


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("reuse") / "data")
  simulator.generate(simulator.SimulatorConfig(num_users=80, seed=4), out)
  return out


def _build(data_dir):
  schema = schema_lib.DatasetSchema.load(data_dir)
  features = FeatureConfig.from_schema(schema, embedding_dim=10)
  tf.keras.utils.set_random_seed(0)
  model = example.build_din(features, MAX_HISTORY, MAX_HISTORY, schema.num_cats,
                            use_graph=True, hidden_units=(16,))
  example.compile_model(model, learning_rate=1e-2)
  return model


def _queue_counters(head):
  return {"item_filled": int(head.item_queue.size().numpy()),
          "query_filled": int(head.query_queue.size().numpy()),
          "item_samples": int(head.item_queue.sample_step.numpy()),
          "query_samples": int(head.query_queue.sample_step.numpy()),
          "graph_step": int(head.graph.step.numpy())}


@pytest.fixture(scope="module")
def run(data_dir):
  """A graph DIN: one train_on_batch on a known batch, then FIT_STEPS of fit."""
  model = _build(data_dir)
  head = model.get_layer("graph_loss_head")
  dataset = example.keras_dataset(
      os.path.join(data_dir, "train-*"), list(model.input.keys()), BATCH,
      MAX_HISTORY, MAX_HISTORY, training=True, seed=1)
  features, labels = next(iter(dataset))
  before_first = _queue_counters(head)
  pctr_before = model(features, training=False)
  first_logs = model.train_on_batch(features, labels, return_dict=True)
  after_first = _queue_counters(head)
  first_item_ids = head.item_queue.ids.numpy().copy()
  history = model.fit(dataset, steps_per_epoch=FIT_STEPS // 2, epochs=2, verbose=0)
  return types.SimpleNamespace(
      model=model, head=head, features=features, labels=labels,
      pctr_before=pctr_before, first_logs=first_logs, before_first=before_first,
      after_first=after_first, first_item_ids=first_item_ids,
      logs=history.history, after_fit=_queue_counters(head))


def _parent_layers(model, name):
  """Names of the layers whose outputs feed any call of layer ``name``."""
  return {parent.layer.name for node in model.get_layer(name).inbound_nodes
          for parent in node.parent_nodes}


def test_one_item_table_is_shared_by_din_simextract_and_the_graph_loss(run):
  model = run.model
  items = model.get_layer("item_ids")
  assert run.head.items is items
  tables = [v for v in model.trainable_variables if "item_ids" in v.name]
  assert len(tables) == 1 and tables[0] is items.embeddings
  # SimExtract's i2i unit reads the table directly; DIN's click attention reads
  # it through the item vectors (id ++ categories), a concat of its output.
  assert "item_ids" in _parent_layers(model, "sim_i2i")
  item_vectors = {layer.name for layer in model.layers
                  if "concat" in layer.name
                  and "item_ids" in _parent_layers(model, layer.name)}
  assert item_vectors & _parent_layers(model, "click_attention")


def test_first_step_loss_is_bce_plus_the_added_graph_loss(run):
  # Inference output equals the training output (no dropout or batch norm), so
  # the BCE of the pre-step weights is the CTR part of train_on_batch's loss.
  bce = float(tf.keras.losses.BinaryCrossentropy()(
      tf.cast(run.labels, tf.float32)[:, None], run.pctr_before))
  graph_loss = run.first_logs["graph_loss"]
  # Near log(1 + negatives) = log(101) = 4.6 per type at initialization.
  assert 3 * 4.0 < graph_loss < 3 * 5.0
  assert run.first_logs["loss"] == pytest.approx(bce + graph_loss, rel=1e-5)


def test_first_step_enqueues_exactly_the_batch_ids(run):
  assert run.before_first["item_filled"] == run.before_first["query_filled"] == 0
  # Hand count: every non-padding click and target item id, every non-padding
  # query history and current query id (capacity 100,000 is never reached).
  items = np.concatenate([run.features["click_ids"].numpy().ravel(),
                          run.features["item_id"].numpy()])
  queries = np.concatenate([run.features["query_hist_ids"].numpy().ravel(),
                            run.features["query_id"].numpy()])
  assert run.after_first["item_filled"] == np.count_nonzero(items)
  assert run.after_first["query_filled"] == np.count_nonzero(queries)
  # In call order: the clicks row by row, then the target items.
  np.testing.assert_array_equal(
      run.first_item_ids[:np.count_nonzero(items)], items[items > 0])
  assert run.after_first["item_samples"] == run.after_first["graph_step"] == 1


def test_fit_reports_the_graph_losses_in_its_total(run):
  for epoch in range(2):
    parts = [run.logs[f"{name}_loss"][epoch] for name in ("i2i", "q2q", "q2i")]
    assert all(p > 0 for p in parts)
    # alpha = beta = gamma = 1: the head's total is the sum of its three terms.
    assert run.logs["graph_loss"][epoch] == pytest.approx(sum(parts), rel=1e-5)
    # fit's loss = BCE + graph loss; the BCE of a ~25% CTR is well below 1.
    bce = run.logs["loss"][epoch] - run.logs["graph_loss"][epoch]
    assert 0.2 < bce < 1.0


def test_queues_grow_during_fit(run):
  grown = run.after_fit
  steps = 1 + FIT_STEPS
  # Every step enqueues at least its BATCH target items.
  assert grown["item_filled"] >= run.after_first["item_filled"] + FIT_STEPS * BATCH
  assert grown["query_filled"] > run.after_first["query_filled"]
  assert grown["item_samples"] == grown["query_samples"] == steps
  assert grown["graph_step"] == steps


def test_the_graph_loss_alone_trains_the_shared_item_table(run):
  table = run.model.get_layer("item_ids").embeddings
  with tf.GradientTape() as tape:
    run.model(run.features, training=True)
    assert len(run.model.losses) == 1
    graph_loss = tf.add_n(run.model.losses)
  gradient = tf.convert_to_tensor(tape.gradient(graph_loss, table)).numpy()
  touched = np.flatnonzero(np.abs(gradient).sum(axis=1))
  assert touched.size > 0
  # Only rows of ids the loss saw move: the batch's clicks (anchors and
  # positives) and queued ids (negatives); target items only feed the queue.
  seen = np.concatenate([run.features["click_ids"].numpy().ravel(),
                         run.head.item_queue.ids.numpy()])
  allowed = set(bucketize_ids(seen, table.shape[0]).numpy().tolist()) - {0}
  assert set(touched.tolist()) <= allowed


def test_predictions_are_probabilities(run):
  pctr = run.model(run.features, training=False).numpy()
  assert pctr.shape == (BATCH, 1)
  assert np.all(np.isfinite(pctr)) and np.all((pctr > 0) & (pctr < 1))


def test_inference_changes_no_queue_and_adds_no_loss(run):
  head = run.head

  def state():
    return [v.numpy().copy() for v in head.item_queue.variables
            + head.query_queue.variables + head.graph.variables]

  before = state()
  run.model(run.features, training=False)
  assert run.model.losses == []
  run.model(run.features)  # training unset means inference
  run.model.predict(run.features, verbose=0)
  logs = run.model.evaluate(run.features, run.labels, verbose=0, return_dict=True)
  assert logs["graph_loss"] == 0.0
  for old, new in zip(before, state()):
    np.testing.assert_array_equal(old, new)


def test_din_attention_is_a_masked_weighted_sum():
  attention = example.DinAttention(hidden_units=(3,))
  query = tf.constant([[1.0, 2.0]])
  keys = tf.constant([[[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]]])
  mask = tf.constant([[True, True, False]])
  attention(query, keys, mask)
  # Zero hidden weights: each of the 3 hidden units is sigmoid(0) = 0.5, and the
  # output unit sums them with weight 4/3, so every key gets weight 2 and the
  # output is 2 * (1 + 0, 0 + 3); the masked third key (5, 5) must not count.
  hidden, output = attention.activation_unit
  hidden.set_weights([np.zeros([8, 3]), np.zeros([3])])
  output.set_weights([np.full([3, 1], 4.0 / 3.0), np.array([0.0])])
  np.testing.assert_allclose(attention(query, keys, mask).numpy(), [[2.0, 6.0]])


def test_head_refuses_from_config_with_a_reason(run):
  config = run.head.get_config()
  assert (config["alpha"], config["beta"], config["gamma"]) == (1.0, 1.0, 1.0)
  with pytest.raises(NotImplementedError, match="build_din"):
    example.GraphLossHead.from_config(config)


def test_compare_reports_both_models_beside_the_oracle(data_dir):
  lines = []
  results = example.compare(data_dir, steps=2, batch_size=BATCH,
                            max_history=MAX_HISTORY, seed=2, run_eagerly=True,
                            print_fn=lines.append)
  with open(os.path.join(data_dir, simulator.ORACLE_FILE), encoding="utf-8") as f:
    oracle = json.load(f)
  assert set(results) == {"din", "din_with_egin_graph", "oracle"}
  assert 0.0 <= results["din"] <= 1.0
  assert 0.0 <= results["din_with_egin_graph"] <= 1.0
  assert results["oracle"] == oracle["test_auc"]
  assert [line.split()[0] for line in lines] == ["din", "din_with_egin_graph",
                                                 "oracle"]
  assert "graph_loss" in lines[1] and "graph_loss" not in lines[0]


def test_weights_restore_tables_and_queues_into_a_rebuilt_model(run, data_dir,
                                                                tmp_path):
  path = str(tmp_path / "weights" / "ckpt")
  run.model.save_weights(path)
  rebuilt = _build(data_dir)
  rebuilt.load_weights(path).expect_partial()  # no optimizer slots in `rebuilt`
  head = rebuilt.get_layer("graph_loss_head")
  assert _queue_counters(head) == _queue_counters(run.head)
  assert _queue_counters(head)["item_filled"] > 0
  np.testing.assert_array_equal(head.item_queue.ids.numpy(),
                                run.head.item_queue.ids.numpy())
  np.testing.assert_array_equal(rebuilt(run.features, training=False).numpy(),
                                run.model(run.features, training=False).numpy())
