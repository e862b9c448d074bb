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
  layer.embeddings.assign(np.repeat(
      np.arange(1.0, layer.num_folds + 1, dtype=np.float32), num_buckets)[:, None]
      * np.ones([1, 2], np.float32))


def test_row_of_fold_k_reads_table_k_plus_one_and_trains_table_k():
  layer = OutOfFoldEmbedding(num_buckets=8, dim=2, num_folds=3, name="g")
  _constant_tables(layer, 8)
  ids = tf.constant([[1, 2], [3, 0], [4, 5]], tf.int64)
  folds = tf.constant([0, 1, 2], tf.int32)
  # fold 0 reads table 1 (value 2), fold 1 table 2 (3), fold 2 table 0 (1);
  # padding stays zero.
  np.testing.assert_array_equal(layer(ids, folds).numpy()[:, :, 0],
                                [[2, 2], [3, 0], [1, 1]])
  np.testing.assert_array_equal(layer.train_lookup(ids, folds).numpy()[:, :, 0],
                                [[1, 1], [2, 0], [3, 3]])
  np.testing.assert_array_equal(layer.fold_views(tf.constant([7], tf.int64))
                                .numpy()[:, 0, 0], [1, 2, 3])
  np.testing.assert_array_equal(layer.fold_table(2)([7, 0]).numpy()[:, 0], [3, 0])
  assert layer.embeddings.shape == (24, 2)


def test_serialize_round_trip():
  layer = OutOfFoldEmbedding(num_buckets=8, dim=2, num_folds=2, name="g")
  again = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
  assert isinstance(again, OutOfFoldEmbedding)
  assert again.get_config() == layer.get_config()
  assert again(tf.constant([[1]], tf.int64), tf.constant([0])).shape == (1, 1, 2)


def _fold_of(user_id, num_folds=2):
  return int(user_folds(tf.constant([user_id], tf.int64), num_folds).numpy()[0])


def test_egin_fold_rows_train_their_table_and_read_the_other(tmp_path):
  imps = test_egin._tiny_batch(size=8)
  fold0 = [imp for imp in imps if _fold_of(imp.user_id) == 0]
  assert fold0, "the tiny batch needs a user of fold 0"
  batch = test_egin._batch(fold0, tmp_path)
  model = test_egin._egin(graph_folds=2)
  model.train_step(batch)
  table = model.graph_items.embeddings
  n = model.graph_items.num_buckets
  with tf.GradientTape() as tape:
    losses = model.graph_losses(batch)
  grad = tf.convert_to_tensor(tape.gradient(losses["i2i"], table)).numpy()
  assert np.abs(grad[:n]).sum() > 0 and np.abs(grad[n:]).sum() == 0
  # Their CTR features read table 1 only: changing table 0 changes no score.
  before = model(batch, training=False).numpy()
  values = table.numpy()
  table.assign(np.concatenate([values[:n] * -3.0 + 0.5, values[n:]]))
  np.testing.assert_allclose(model(batch, training=False).numpy(), before)
  table.assign(np.concatenate([values[:n], values[n:] * -3.0 + 0.5]))
  assert not np.allclose(model(batch, training=False).numpy(), before)


def test_share_tables_trains_the_ctr_tables_with_the_graph_loss(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  model = test_egin._egin(share_tables=True)
  model.train_step(batch)
  assert model.graph_items.table is model.features.items
  with tf.GradientTape() as tape:
    losses = model.graph_losses(batch)
  grad = tape.gradient(losses["i2i"], model.features.items.embeddings)
  assert float(tf.norm(tf.convert_to_tensor(grad))) > 0
