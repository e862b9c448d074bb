"""EGIN's optional interest features: similarity-weighted pooling, categories."""

import numpy as np
import pytest

from data_pipeline.tf_env import tf
from egin_tf.layers.sim_extract import SimExtract
from egin_tf.models import egin as egin_module
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
    ({"interest_pooling": True}, []),
    ({"graph_vector_features": True}, []),
    ({"category_graph": True}, ["sim_c2c", "category_graph_learning"]),
])
def test_options_add_their_features(tmp_path, options, extracts):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  off = {"category_graph": False}
  plain = test_egin._egin(**off)
  model = test_egin._egin(**{**off, **options})
  widths = [sum(int(p.shape[-1]) for p in m.interest_features(batch))
            for m in (plain, model)]
  extra = {"interest_pooling": 2 * 10,  # f_i2i and f_q2i
           "graph_vector_features": 2 * 10,  # target and query
           "category_graph": 3 * 10,  # one more k=3 SimExtract
           }[next(iter(options))]
  assert widths[1] - widths[0] == extra
  names = {layer.name for layer in model.submodules}
  assert all(name in names for name in extracts)
  logs = model.train_step(batch)
  assert np.isfinite(float(logs["loss"]))
  assert model.get_config()[next(iter(options))] is True


def test_category_graph_is_a_match_feature_and_needs_the_block(tmp_path):
  # Equal categories read one row of the category graph (cosine 1 untrained), so
  # without match_features EGIN has no category graph, nor its loss.
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  model = test_egin._egin(category_graph=True, match_features=False)
  assert not model.category_graph
  assert "c2c" not in model.aux_loss_weights
  names = {layer.name for layer in model.submodules}
  assert "sim_c2c" not in names and "category_graph_learning" not in names
  assert "c2c_loss" not in model.train_step(batch)


def test_category_graph_edges_join_the_categories_of_neighbouring_clicks(tmp_path):
  from data_pipeline import schema as schema_lib  # pylint: disable=g-import-not-at-top
  from example_io import batch_of  # pylint: disable=g-import-not-at-top
  # Clicks of categories 1, 1, 2, 3: window 1 gives c2c edges 1-2 and 2-3 (both
  # directions); the repeated 1 makes no edge.
  imp = schema_lib.Impression(
      label=1, user_id=1, time=100, item_id=9, item_cats=(2,),
      clicks=[schema_lib.Event(10 + j, 10 + j, (c,)) for j, c in
              enumerate((1, 1, 2, 3))])
  batch = batch_of([imp], tmp_path / "c2c", max_clicks=4, max_queries=2)
  model = test_egin._egin(category_graph=True, window=1,
                          features=test_egin._features(with_queries=False))
  logs = model.train_step(batch)
  assert "c2c_loss" in logs
  edges = model.category_learning.graph.edge_lists(
      egin_module._first_category_batch(batch))["i2i"]
  assert sorted(zip(edges.src.numpy(), edges.dst.numpy())) == [(1, 2), (2, 1),
                                                               (2, 3), (3, 2)]
  names = {v.name.split("/")[0] for v in model.graph_variables()}
  assert "graph_category" in names
