"""TargetMatch: the explicit target-match block every model can take (hand-computed)."""

import math

import numpy as np
import pytest

from data_pipeline.tf_env import tf
from egin_tf.layers import TargetMatch
from egin_tf.layers.target_match import recency_ranks, shares_category
from egin_tf.models import MODELS, build_model
from egin_tf.models import base as base_module
import test_egin


def _match(use_query=True, **inputs):
  layer = TargetMatch(use_query=use_query)
  return layer(**{k: tf.constant(v, tf.int64) for k, v in inputs.items()}).numpy()


def test_repeats_categories_and_recency_by_hand():
  # Row 0: target 7 of category 3; clicks (oldest first) 7/c3, 5/c4, 7/c3, pad.
  #   item 7 twice: log 3; most recent repeat is the last valid click: rank 0 -> 1.
  #   category 3 twice of 3 valid clicks: log 3, share 2/3, rank 0 -> 1.
  # Row 1: target 9 of categories (4, 2); clicks 6/c(4,0), 8/c(1,0), pad, pad.
  #   no repeat: 0, 0; one click shares category 4 (rank 1 of 2): log 2, 1/2, 1/2.
  # Row 2: empty history: every column 0.
  out = _match(use_query=False,
               target_ids=[7, 9, 5], target_cats=[[3, 0], [4, 2], [1, 0]],
               click_ids=[[7, 5, 7, 0], [6, 8, 0, 0], [0, 0, 0, 0]],
               click_cats=[[[3, 0], [4, 0], [3, 0], [0, 0]],
                           [[4, 0], [1, 0], [0, 0], [0, 0]],
                           [[0, 0]] * 4])
  log2, log3 = math.log(2), math.log(3)
  np.testing.assert_allclose(out, [[log3, 1.0, log3, 2 / 3, 1.0],
                                   [0.0, 0.0, log2, 0.5, 0.5],
                                   [0.0] * 5], rtol=1e-6)


def test_padding_categories_never_match_and_gaps_in_the_history_are_skipped():
  # Target category 0 is padding: no match though the clicks have category 0 too.
  # Clicks 3, pad, 4: the repeat of 3 is the older of two valid clicks: rank 1.
  out = _match(use_query=False, target_ids=[3], target_cats=[[0]],
               click_ids=[[3, 0, 4]], click_cats=[[[0], [0], [0]]])
  np.testing.assert_allclose(out, [[math.log(2), 0.5, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_query_target_category_needs_a_query_sharing_a_category():
  kwargs = dict(target_ids=[1, 1, 1], target_cats=[[5, 6], [5, 6], [5, 6]],
                click_ids=[[0], [0], [0]], click_cats=[[[0, 0]], [[0, 0]], [[0, 0]]])
  out = _match(query_cats=[[6], [7], [6]], query_ids=[2, 2, 0], **kwargs)
  # Shares 6 / shares nothing / no query (id 0).
  np.testing.assert_array_equal(out[:, 5], [1.0, 0.0, 0.0])
  assert TargetMatch(use_query=True).output_dim == 6
  with pytest.raises(ValueError, match="needs query_cats and query_ids"):
    _match(use_query=True, **kwargs)


def test_helpers_by_hand():
  np.testing.assert_array_equal(
      recency_ranks(tf.constant([[True, False, True, True]])).numpy(),
      [[2, 2, 1, 0]])
  np.testing.assert_array_equal(
      shares_category(tf.constant([[1, 2], [0, 3]]),
                      tf.constant([[2, 9], [0, 4]])).numpy(), [True, False])


def test_config_round_trip_and_no_weights():
  layer = TargetMatch(use_query=False, name="m")
  clone = TargetMatch.from_config(layer.get_config())
  assert clone.use_query is False and clone.name == "m"
  assert tf.keras.layers.deserialize(
      tf.keras.layers.serialize(layer)).feature_names == layer.feature_names
  _match(use_query=False, target_ids=[1], target_cats=[[1]], click_ids=[[1]],
         click_cats=[[[1]]])
  assert layer.weights == []


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"eges"}))
def test_every_model_takes_the_block_through_match_features(name, tmp_path):
  """The same switch adds the same columns to every model's MLP input."""
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  extra = {"num_negatives": 8, "queue_capacity": 50} if name == "egin" else {}
  widths = {}
  for on in (False, True):
    model = build_model(name, test_egin._features(), match_features=on, **extra)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    seen = []
    original = model.head_input
    model.head_input = lambda parts, b, f=original: seen.append(f(parts, b)) or seen[-1]
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"]))
    widths[on] = int(seen[-1].shape[-1])
    assert (model.target_match is not None) == on
  # EGIN also drops its category graph's SimExtract (top_k 10 slots of graph_dim
  # 10) without the block.
  category_graph = 10 * 10 if name == "egin" else 0
  assert widths[True] - widths[False] == 6 + category_graph


def test_block_reads_the_reader_batch(tmp_path):
  batch = test_egin._batch(test_egin._tiny_batch(), tmp_path)
  layer = TargetMatch(use_query=True)
  out = base_module.match_features(layer, batch).numpy()
  clicks, cats = batch["click_ids"].numpy(), batch["click_cats"].numpy()
  for row in range(out.shape[0]):
    repeats = np.sum((clicks[row] == batch["item_id"].numpy()[row]) & (clicks[row] > 0))
    assert out[row, 0] == pytest.approx(math.log1p(repeats))
    same_cat = np.sum((cats[row, :, 0] == batch["item_cats"].numpy()[row, 0]) &
                      (clicks[row] > 0))
    assert out[row, 2] == pytest.approx(math.log1p(same_cat))


def test_eges_follows_the_same_switch(tmp_path):
  """EGES's network is EGIN's without graph: the block is its only category match."""
  from egin_tf import eges  # pylint: disable=g-import-not-at-top
  ids = np.arange(1, 30)
  vectors = np.random.default_rng(1).normal(size=[ids.size, 4]).astype(np.float32)
  path = eges.save_embeddings(str(tmp_path / "eges.npz"), ids, vectors)
  for on in (False, True):
    model = build_model("eges", test_egin._features(), eges_embeddings_path=path,
                        eges_leak_guard="none", slot_dim=4, match_features=on)
    assert (model.target_match is not None) == on
    assert not model.category_graph
    assert model.get_config()["match_features"] is on
