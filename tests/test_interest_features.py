"""EGIN's optional interest features: similarity-weighted pooling, categories."""

import numpy as np
import pytest

from data_pipeline.tf_env import tf
from egin_tf.layers.sim_extract import SimExtract
from egin_tf.models.egin import similarity_weighted_pool
import test_egin


def test_similarity_weighted_pool_by_hand():
  # Target (1, 0); elements (1, 0) cos 1, (0, 1) cos 0, (-1, 1) cos -0.707,
  # padding last. Top-2: (1, 0) then (0, 1): 1 * (1, 0) + 0 * (0, 1) = (1, 0).
  target = tf.constant([[1.0, 0.0]])
  seq = tf.constant([[[0.0, 1.0], [1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]])
  mask = tf.constant([[True, True, True, False]])
  layer = SimExtract(k=2, embedding_dim=3)
  _, details = layer(target, seq, mask, return_details=True)
  np.testing.assert_allclose(similarity_weighted_pool(seq, details).numpy(),
                             [[1.0, 0.0]], atol=1e-6)
  # k = 3 adds the third element with weight -0.707, and k = 5 leaves two
  # empty slots that weigh nothing.
  layer = SimExtract(k=5, embedding_dim=3)
  _, details = layer(target, seq, mask, return_details=True)
  w = -1 / np.sqrt(2)
  np.testing.assert_allclose(similarity_weighted_pool(seq, details).numpy(),
                             [[1.0 - w, w]], atol=1e-6)


@pytest.mark.parametrize("options,extracts", [
    ({"category_interest": True}, ["sim_cat_i2i", "sim_cat_q2t"]),
    ({"query_target_interest": True}, ["sim_graph_q2t"]),
    ({"interest_pooling": True}, []),
])
def test_options_add_their_features(tmp_path, options, extracts):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  plain = test_egin._egin()
  model = test_egin._egin(**options)
  widths = [sum(int(p.shape[-1]) for p in m.interest_features(batch))
            for m in (plain, model)]
  extra = {"category_interest": 3 * 10 + 1 * 10,  # k=3 slots + one k=1 slot
           "query_target_interest": 10,
           "interest_pooling": 2 * 10}[next(iter(options))]  # f_i2i and f_q2i
  assert widths[1] - widths[0] == extra
  names = {layer.name for layer in model.submodules}
  assert all(name in names for name in extracts)
  logs = model.train_step(batch)
  assert np.isfinite(float(logs["loss"]))
  assert model.get_config()[next(iter(options))] is True
