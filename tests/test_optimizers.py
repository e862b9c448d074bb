"""A graph optimizer beside Adam: routing, sparse rows, checkpoints."""

import numpy as np
import pytest

from data_pipeline.tf_env import tf
from egin_tf.train import optimizers
from egin_tf.models import DNN
import test_egin


def test_plain_adam_without_a_graph_rate_or_graph():
  egin = test_egin._egin()
  assert isinstance(optimizers.make_optimizer(egin, 1e-3),
                    tf.keras.optimizers.Adam)
  dnn = DNN(test_egin._features())
  assert isinstance(optimizers.make_optimizer(dnn, 1e-3, 0.1),
                    tf.keras.optimizers.Adam)


def test_graph_tables_get_adagrad_on_their_touched_rows_only(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  model = test_egin._egin()
  model.compile(optimizer=optimizers.make_optimizer(model, 1e-2, 0.5, "adagrad"))
  model.train_step(batch)
  adagrad, adam = model.optimizer.optimizers
  table = model.graph_items.embeddings
  accumulator = adagrad.get_slot(table, "accumulator").numpy()
  initial = adagrad.get_config()["initial_accumulator_value"]
  touched = np.any(accumulator != initial, axis=1)
  # Only buckets of ids in the batch (items are small ids: bucket = id).
  ids = set(batch["click_ids"].numpy().ravel()) | set(batch["item_id"].numpy())
  assert set(np.nonzero(touched)[0]) <= ids - {0}
  assert touched.sum() > 0
  graph_refs = {v.ref() for v in model.graph_variables()}
  assert all(v.ref() not in graph_refs for v in adam.weights if "iter" not in v.name)
  assert not any("graph_item" in w.name for w in adam.weights)


def test_both_optimizers_are_checkpointed(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)

  def trained():
    model = test_egin._egin()
    model.compile(optimizer=optimizers.make_optimizer(model, 1e-2, 0.5))
    model.train_step(batch)
    return model

  model = trained()
  path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
      str(tmp_path / "ckpt"))
  model.train_step(batch)
  expected = [w.numpy() for w in model.optimizer.weights]
  restored = trained()
  tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(path)
  restored.train_step(batch)
  for a, b in zip(expected, [w.numpy() for w in restored.optimizer.weights]):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_lazy_adam_equals_adam_on_touched_rows_and_leaves_the_rest():
  rng = np.random.default_rng(0)
  start = rng.normal(size=(6, 3)).astype(np.float32)
  grads = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3)]
  rows = tf.constant([1, 4])
  lazy_var, dense_var = tf.Variable(start), tf.Variable(start[[1, 4]])
  lazy, dense = optimizers.LazyAdam(0.1), tf.keras.optimizers.Adam(0.1)
  for g in grads:
    lazy.apply_gradients([(tf.IndexedSlices(tf.constant(g), rows, [6, 3]),
                           lazy_var)])
    dense.apply_gradients([(tf.constant(g), dense_var)])
  # Rows seen at every step follow Adam exactly; the others never moved.
  np.testing.assert_allclose(lazy_var.numpy()[[1, 4]], dense_var.numpy(),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(lazy_var.numpy()[[0, 2, 3, 5]],
                                start[[0, 2, 3, 5]])
  # Dense gradients: plain Adam.
  a, b = tf.Variable(start), tf.Variable(start)
  optimizers.LazyAdam(0.1).apply_gradients([(tf.constant(start), a)])
  tf.keras.optimizers.Adam(0.1).apply_gradients([(tf.constant(start), b)])
  # TF's fused kernel rounds in its own order: equal to float32 rounding.
  np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_lazy_adam_equals_adam_over_steps_on_dense_and_sparse_variables():
  rng = np.random.default_rng(1)
  start = rng.normal(size=(5, 4)).astype(np.float32)
  lazy_vars = [tf.Variable(start), tf.Variable(start)]
  adam_vars = [tf.Variable(start), tf.Variable(start)]
  lazy, adam = optimizers.LazyAdam(0.05), tf.keras.optimizers.Adam(0.05)
  every_row = tf.range(5)
  for _ in range(4):
    grad = tf.constant(rng.normal(size=(5, 4)).astype(np.float32))
    sparse = tf.IndexedSlices(grad, every_row, [5, 4])  # every row: no laziness
    lazy.apply_gradients(zip([grad, sparse], lazy_vars))
    adam.apply_gradients(zip([grad, grad], adam_vars))
  for got, want in zip(lazy_vars, adam_vars):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_lazy_adam_applies_a_dense_variable_with_few_ops():
  # The executor's cost per op dominates small steps: Adam spends ~40 ops per
  # variable, LazyAdam one fused kernel plus the step's shared bias correction.
  variables = [tf.Variable(tf.ones([3, 2])) for _ in range(10)]

  def ops_per_variable(optimizer):
    optimizer.build(variables)
    apply = tf.function(lambda: optimizer.apply_gradients(
        [(tf.ones([3, 2]), v) for v in variables]))
    graph = apply.get_concrete_function().graph
    return len(graph.as_graph_def().node) / len(variables)

  assert ops_per_variable(tf.keras.optimizers.Adam(0.1)) > 30
  assert ops_per_variable(optimizers.LazyAdam(0.1)) < 12


def test_tf_keras_adam_moves_every_row_of_a_table():
  # Why LazyAdam: tf-keras' sparse Adam path updates rows outside the batch too.
  var = tf.Variable(np.ones((4, 2), np.float32))
  opt = tf.keras.optimizers.Adam(0.1)
  grad = lambda: tf.IndexedSlices(tf.ones((1, 2)), tf.constant([0]), [4, 2])  # noqa: E731
  opt.apply_gradients([(grad(), var)])
  opt.apply_gradients([(tf.IndexedSlices(tf.ones((1, 2)), tf.constant([1]), [4, 2]),
                        var)])
  assert not np.allclose(var.numpy()[0], 1.0 - 0.1)  # row 0 moved again at step 2


def test_unknown_optimizer_is_refused():
  with pytest.raises(ValueError, match="optimizer must be one of"):
    optimizers.make_optimizer(DNN(test_egin._features()), 1e-3, optimizer="sgdx")


def test_training_forward_scores_are_the_pre_update_inference_scores(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  model = DNN(test_egin._features())
  model.compile(optimizer=optimizers.make_optimizer(model, 0.1))
  model.train_step(batch)
  assert model.training_scores_are_inference_scores
  before = model(batch, training=False).numpy()
  _, scores = model.train_step_with_scores(batch)
  np.testing.assert_allclose(scores.numpy(), before, rtol=1e-6)
  assert not np.allclose(model(batch, training=False).numpy(), before)
  # Batch normalization (dense features) or dropout make the two differ.
  import dataclasses  # pylint: disable=g-import-not-at-top
  dense = DNN(dataclasses.replace(test_egin._features(), dense_features=["price"]))
  assert not dense.training_scores_are_inference_scores
  assert not DNN(test_egin._features(), dropout=0.1).training_scores_are_inference_scores
