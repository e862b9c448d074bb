"""Out-of-fold graph tables: which table a row reads, which one its edges train."""

import numpy as np

from data_pipeline.tf_env import tf
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
import test_egin


def test_user_folds_are_stable_and_balanced():
  ids = tf.range(1, 3001, dtype=tf.int64)
  folds = user_folds(ids, 3).numpy()
  assert set(folds.tolist()) == {0, 1, 2}
  # Contiguous ids spread evenly (a hash, not the parity of the id).
  assert all(900 < np.sum(folds == k) < 1100 for k in range(3))
  np.testing.assert_array_equal(folds, user_folds(ids, 3).numpy())
  assert np.all(user_folds(ids, 1).numpy() == 0)


def _constant_tables(layer, num_buckets):
  """Table k holds the value k + 1 everywhere, so a lookup shows its table."""
  layer(tf.constant([[1]], tf.int64), tf.constant([0], tf.int32))
  for k, table in enumerate(layer.tables):
    table.embeddings.assign(np.full([num_buckets, 2], k + 1.0, np.float32))


def test_row_of_fold_k_reads_table_k_plus_one():
  layer = OutOfFoldEmbedding.create(num_buckets=8, dim=2, num_folds=3, name="g")
  _constant_tables(layer, 8)
  ids = tf.constant([[1, 2], [3, 0], [4, 5]], tf.int64)
  out = layer(ids, tf.constant([0, 1, 2], tf.int32)).numpy()
  # fold 0 reads table 1 (value 2), fold 1 table 2 (3), fold 2 table 0 (1);
  # padding stays zero.
  np.testing.assert_array_equal(out[:, :, 0], [[2, 2], [3, 0], [1, 1]])
  assert [t.name for t in layer.tables] == ["g", "g_fold1", "g_fold2"]


def test_serialize_round_trip():
  layer = OutOfFoldEmbedding.create(num_buckets=8, dim=2, num_folds=2, name="g")
  again = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
  assert isinstance(again, OutOfFoldEmbedding)
  assert again.num_folds == 2 and again.tables[1].num_buckets == 8
  assert again.get_config()["tables"] == layer.get_config()["tables"]


def _fold_of(user_id, num_folds=2):
  return int(user_folds(tf.constant([user_id], tf.int64), num_folds).numpy()[0])


def test_egin_fold_rows_train_their_table_and_read_the_other(tmp_path):
  imps = test_egin._tiny_batch(size=8)
  fold0 = [imp for imp in imps if _fold_of(imp.user_id) == 0]
  assert fold0, "the tiny batch needs a user of fold 0"
  batch = test_egin._batch(fold0, tmp_path)
  model = test_egin._egin(graph_folds=2)
  model.train_step(batch)
  tables = model.graph_items.tables
  with tf.GradientTape() as tape:
    losses = model.graph_losses(batch)
  grads = tape.gradient(losses["i2i"], [t.embeddings for t in tables])
  assert float(tf.norm(tf.convert_to_tensor(grads[0]))) > 0
  assert grads[1] is None or float(tf.norm(tf.convert_to_tensor(grads[1]))) == 0
  # Their CTR features read table 1 only: changing table 0 changes no score.
  before = model(batch, training=False).numpy()
  tables[0].embeddings.assign(tables[0].embeddings * -3.0 + 0.5)
  np.testing.assert_allclose(model(batch, training=False).numpy(), before)
  tables[1].embeddings.assign(tables[1].embeddings * -3.0 + 0.5)
  assert not np.allclose(model(batch, training=False).numpy(), before)


def test_share_tables_trains_the_ctr_tables_with_the_graph_loss(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  model = test_egin._egin(share_tables=True)
  model.train_step(batch)
  assert model.graph_items.tables == [model.features.items]
  with tf.GradientTape() as tape:
    losses = model.graph_losses(batch)
  grad = tape.gradient(losses["i2i"], model.features.items.embeddings)
  assert float(tf.norm(tf.convert_to_tensor(grad))) > 0
