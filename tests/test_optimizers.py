"""A graph optimizer beside Adam: routing, sparse rows, checkpoints."""

import numpy as np

from data_pipeline.tf_env import tf
from egin_tf import optimizers
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
  table = model.graph_items.tables[0].embeddings
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
