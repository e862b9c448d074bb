"""EGES: item graph, walks, skip-gram pairs, embedding training, frozen CTR model."""

import collections
import json

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter
from egin_tf import eges
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from egin_tf.configs import ConfigError
from egin_tf.eges import FrozenIdEmbedding
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
from egin_tf.models import streamable
from egin_tf.models.base import CTRModel
from egin_tf.models.configs import EGESConfig
from egin_tf.models.eges import EGES, stage1_config


def _write(imps, tmp_path, name="data", num_cats=2):
  out = str(tmp_path / name)
  with DatasetWriter(out, num_cats=num_cats) as w:
    for imp in imps:
      w.write("train", imp)
    w.commit(source="test")
  return out + "/*.tfrecord"


# --- graph -------------------------------------------------------------------


def test_graph_edges_and_weights_from_click_sequences():
  graph = eges.build_graph([[1, 2, 3], [1, 2], [2, 2, 3]], window=1)
  # 1->2 twice, 2->3 in the first and third session; the repeat 2, 2 is no edge.
  assert graph.edges() == {(1, 2): 2.0, (2, 3): 2.0}
  np.testing.assert_array_equal(graph.ids, [1, 2, 3])
  np.testing.assert_array_equal(graph.indptr, [0, 1, 2, 2])

  graph = eges.build_graph([[7, 5, 9], [9, 7]], window=2)
  assert graph.edges() == {(7, 5): 1.0, (7, 9): 1.0, (5, 9): 1.0, (9, 7): 1.0}


def test_sessions_from_tfrecords_dedupe_histories_and_split_users_and_gaps(
    tmp_path):
  a, b, c, d = 11, 22, 33, 44
  imps = [
      # user 1 clicked a, b, then c (a positive target), seen again in history.
      Impression(label=1, user_id=1, time=100, item_id=c, item_cats=[7],
                 clicks=[Event(a, 10, [5]), Event(b, 20, [5, 6])]),
      Impression(label=0, user_id=1, time=200, item_id=d, item_cats=[8],
                 clicks=[Event(a, 10, [5]), Event(b, 20, [5, 6]),
                         Event(c, 100, [7])]),
      # user 2: d, a, then b (a positive target found in no history). User 1's
      # last click c must not link to user 2's first click d.
      Impression(label=1, user_id=2, time=50, item_id=b, item_cats=[5, 6],
                 clicks=[Event(d, 5, [8]), Event(a, 6, [5])]),
  ]
  pattern = _write(imps, tmp_path)
  # No leak guard: every event is read.
  sessions = eges.read_sessions(pattern, eges.EgesPretrainConfig(positive_targets=True,
                                                                 leak_guard="none"))
  graph = eges.graph_from_sessions(sessions.items, sessions.session, 1)
  # Each history counted once, not once per impression.
  assert graph.edges() == {(a, b): 2.0, (b, c): 1.0, (d, a): 1.0}
  np.testing.assert_array_equal(sessions.item_ids, [a, b, c, d])
  np.testing.assert_array_equal(sessions.item_cats, [[5, 0], [5, 6], [7, 0],
                                                     [8, 0]])

  # c comes 80 s after b: a gap of 50 s cuts user 1 into [a, b] and [c].
  gap = eges.read_sessions(pattern, eges.EgesPretrainConfig(
      session_gap=50, positive_targets=True, leak_guard="none"))
  graph = eges.graph_from_sessions(gap.items, gap.session, 1)
  assert graph.edges() == {(a, b): 2.0, (d, a): 1.0}

  # By default (no positive targets) c is still known from user 1's second
  # history, and user 1's first impression adds nothing.
  no_pos = eges.read_sessions(pattern, eges.EgesPretrainConfig(leak_guard="none"))
  np.testing.assert_array_equal(no_pos.items, [a, b, c, d, a])
  np.testing.assert_array_equal(no_pos.session, [0, 0, 0, 1, 1])

  # Categories become side-table indices: 5 -> 1, 6 -> 2, 7 -> 3, 8 -> 4.
  graph = eges.graph_from_sessions(sessions.items, sessions.session, 1)
  side, size = eges.side_index(graph, sessions.item_ids, sessions.item_cats)
  np.testing.assert_array_equal(side, [[1, 0], [1, 2], [3, 0], [4, 0]])
  assert size == 5


# --- walks and pairs ---------------------------------------------------------


def _branching_graph():
  # 1 -> 2 (w 1), 1 -> 3 (w 3), 2 -> 1, 3 -> 1, 3 -> 4; 4 has no out-edges.
  return eges.build_graph([[1, 3]] * 3 + [[1, 2], [2, 1], [3, 1], [3, 4]])


def test_walks_are_deterministic_by_seed_and_follow_edges():
  graph = _branching_graph()
  walks = eges.random_walks(graph, walk_length=8, walks_per_node=5, seed=4)
  assert walks.shape == (4 * 5, 8)
  np.testing.assert_array_equal(
      walks, eges.random_walks(graph, walk_length=8, walks_per_node=5, seed=4))
  assert not np.array_equal(
      walks, eges.random_walks(graph, walk_length=8, walks_per_node=5, seed=5))
  # Every node starts walks_per_node walks.
  assert collections.Counter(walks[:, 0].tolist()) == {1: 5, 2: 5, 3: 5, 4: 5}
  edges = graph.edges()
  for walk in walks.tolist():
    length = next((i for i, v in enumerate(walk) if v == 0), len(walk))
    assert all(v == 0 for v in walk[length:])
    for u, v in zip(walk[:length - 1], walk[1:length]):
      assert (u, v) in edges
    if length < len(walk):  # stopped early: only at the dead end 4.
      assert walk[length - 1] == 4


def test_walk_transitions_are_proportional_to_edge_weights():
  graph = eges.build_graph([[1, 3]] * 3 + [[1, 2], [2, 1], [3, 1]])
  walks = eges.random_walks(graph, walk_length=40, walks_per_node=100, seed=0)
  steps = collections.Counter(
      zip(walks[:, :-1].ravel().tolist(), walks[:, 1:].ravel().tolist()))
  from_1 = steps[(1, 2)] + steps[(1, 3)]
  assert from_1 > 1000
  assert abs(steps[(1, 3)] / from_1 - 0.75) < 0.03
  assert steps[(2, 3)] == 0 and steps[(3, 2)] == 0


def test_skipgram_pairs_of_a_walk_match_hand_pairs():
  walks = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
  np.testing.assert_array_equal(
      eges.skipgram_pairs(walks, window=1),
      [[1, 2], [2, 1], [2, 3], [3, 2], [4, 5], [5, 4]])
  np.testing.assert_array_equal(
      eges.skipgram_pairs(np.array([[1, 2, 3, 4]]), window=2),
      [[1, 2], [1, 3], [2, 1], [2, 3], [2, 4], [3, 1], [3, 2], [3, 4],
       [4, 2], [4, 3]])


# --- embeddings --------------------------------------------------------------


def test_attention_combination_equals_the_hand_formula():
  layer = eges.EgesEmbedding(num_nodes=2, num_side_values=3, num_side_slots=2,
                             dim=2)
  node_side = tf.constant([[1, 2], [2, 0]])
  layer(tf.constant([0, 1]), node_side)
  w_node = np.array([[1.0, 0.0], [0.0, 1.0]])
  w_side = np.array([[9.0, 9.0], [2.0, 4.0], [-1.0, 3.0]])  # row 0: padding
  a = np.array([[0.0, np.log(2.0), np.log(3.0)], [np.log(4.0), 5.0, 7.0]])
  layer.set_weights([w_node, w_side, a])
  out = layer(tf.constant([0, 1]), node_side).numpy()
  # node 0: (1 * [1, 0] + 2 * [2, 4] + 3 * [-1, 3]) / 6.
  # node 1: slot 2 is padding: (4 * [0, 1] + e^5 * [-1, 3]) / (4 + e^5).
  e5 = np.exp(5.0)
  np.testing.assert_allclose(
      out, [[2.0 / 6, 17.0 / 6], [-e5 / (4 + e5), (4 + 3 * e5) / (4 + e5)]],
      rtol=1e-5)


# Each layer: (a factory, its outputs on fixed inputs; the first call builds it).
_NODES = tf.constant([0, 2, 1, 3], tf.int64)
_SIDE = tf.constant([[1, 2], [2, 0], [0, 0], [3, 1]], tf.int64)
SERIALIZABLE_LAYERS = {
    "EgesEmbedding": (
        lambda: eges.EgesEmbedding(num_nodes=4, num_side_values=4,
                                   num_side_slots=2, dim=3, seed=5),
        lambda layer: layer(_NODES, _SIDE)),
    # Its sampled loss (the n-th call of both draws the same negatives), exact
    # loss and vectors.
    "EgesSkipGram": (
        lambda: eges.EgesSkipGram(_SIDE.numpy(), 4, np.array([1.0, 3.0, 2.0, 5.0]),
                                  dim=3, num_negatives=2, seed=7),
        lambda layer: tf.concat([
            [layer(_NODES, tf.reverse(_NODES, [0])),
             layer.full_softmax_loss(_NODES, _NODES)],
            tf.reshape(layer.vectors(_NODES), [-1])], axis=0)),
    "FrozenIdEmbedding": (
        lambda: FrozenIdEmbedding(3, 2, ids=np.array([5, 9, 1 << 40]),
                                  vectors=np.arange(6.0).reshape(3, 2)),
        lambda layer: layer(tf.constant([[9, 0], [1 << 40, 7]], tf.int64))),
    # Two sets: row r reads set [1, 0][r].
    "FrozenIdEmbedding of 2 sets": (
        lambda: FrozenIdEmbedding(3, 2, ids=np.array([5, 9, 1 << 40]),
                                  vectors=np.arange(12.0).reshape(2, 3, 2),
                                  num_sets=2),
        lambda layer: layer.lookup(tf.constant([[9, 0], [1 << 40, 7]], tf.int64),
                                   tf.constant([1, 0]))),
}


@pytest.mark.parametrize("name", sorted(SERIALIZABLE_LAYERS))
def test_layer_serialize_deserialize_round_trip(name):
  make, outputs = SERIALIZABLE_LAYERS[name]
  layer = make()
  outputs(layer)  # builds its weights
  # Random float weights (zero tables at start would hide a lost weight).
  rng = np.random.default_rng(3)
  layer.set_weights([rng.normal(size=w.shape) if w.dtype.kind == "f" else w
                     for w in layer.get_weights()])
  expected = outputs(layer).numpy()
  serialized = tf.keras.layers.serialize(layer)
  assert serialized["registered_name"] == f"egin_tf>{type(layer).__name__}"
  again = tf.keras.layers.deserialize(serialized)
  assert type(again) is type(layer) and again.get_config() == layer.get_config()
  outputs(again)  # builds its weights
  again.set_weights(layer.get_weights())
  np.testing.assert_allclose(outputs(again).numpy(), expected, rtol=1e-6)


def test_training_lowers_the_loss_and_groups_co_clicked_items():
  # Two clusters of co-clicked items, {1, 2, 3} and {4, 5, 6}.
  sequences = [[1, 2, 3, 1, 3, 2, 1], [4, 5, 6, 4, 6, 5, 4]] * 3
  graph = eges.build_graph(sequences)
  side = np.array([[1], [1], [1], [2], [2], [2]])
  config = eges.EgesPretrainConfig(dim=8, walk_length=10, walks_per_node=10,
                                   skip_window=2, num_negatives=4, batch_size=64,
                                   epochs=8, learning_rate=0.05)
  model, history = eges.train_embeddings(graph, side, 3, config)
  assert len(history) == 8 and history[-1] < history[0]
  pairs = np.searchsorted(graph.ids, eges.skipgram_pairs(
      eges.random_walks(graph, 10, 10, seed=1), 2))
  loss = float(model.full_softmax_loss(pairs[:, 0], pairs[:, 1]))
  # Before training the context table is zero: a uniform softmax, log(6).
  assert loss < 0.8 * np.log(6)
  v = model.vectors(tf.range(6)).numpy()
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  cos = v @ v.T
  same = (cos[:3, :3].sum() - 3 + cos[3:, 3:].sum() - 3) / 12
  assert same > cos[:3, 3:].mean() + 0.3


def test_train_eges_writes_a_table_of_every_graph_node(tmp_path):
  rng = np.random.default_rng(0)
  imps = []
  for u in range(1, 21):
    items = rng.integers(1, 13, 5) if u % 2 else rng.integers(101, 113, 5)
    imps.append(Impression(
        label=int(u % 3 == 0), user_id=u, time=1000, item_id=int(items[0]),
        item_cats=[int(items[0]) // 100 + 1],
        clicks=[Event(int(i), 10 * j, [int(i) // 100 + 1])
                for j, i in enumerate(items)]))
  pattern = _write(imps, tmp_path)
  config = eges.EgesPretrainConfig(dim=4, walks_per_node=2, walk_length=5, epochs=1,
                                   leak_guard="none")
  path = eges.train_eges(pattern, str(tmp_path / "m" / "eges.npz"), config)
  ids, vectors = eges.load_embeddings(path)
  sessions = eges.read_sessions(pattern, config)
  graph = eges.graph_from_sessions(sessions.items, sessions.session, 1)
  np.testing.assert_array_equal(ids, graph.ids)
  assert vectors.shape == (graph.num_nodes, 4) and np.all(np.isfinite(vectors))
  assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["eges.npz"]


def test_train_eges_reports_every_stage_up_to_its_total(tmp_path):
  a, b, c = 11, 22, 33
  imps = [Impression(label=0, user_id=1, time=10, item_id=a, item_cats=[1],
                     clicks=[Event(a, 1, [1]), Event(b, 2, [1]), Event(c, 3, [2])]),
          Impression(label=1, user_id=2, time=10, item_id=b, item_cats=[1],
                     clicks=[Event(c, 1, [2]), Event(a, 2, [1])])]
  pattern = _write(imps, tmp_path)
  calls = collections.defaultdict(list)

  def progress(stage):
    return lambda *state: calls[stage].append(state)

  # Edges a -> b, b -> c, c -> a: no walk stops. 3 walks of 3 nodes; each walk
  # has 2 * 2 pairs at skip_window 1; walk_chunk 2 makes chunks of 8 and 4 pairs,
  # 2 + 1 batches of 5, twice (epochs).
  config = eges.EgesPretrainConfig(dim=2, walk_length=3, walks_per_node=1,
                                   skip_window=1, batch_size=5, walk_chunk=2, epochs=2,
                                   num_negatives=2, read_batch_size=1, leak_guard="none")
  eges.train_eges(pattern, str(tmp_path / "eges.npz"), config, progress=progress)
  assert list(calls) == [eges.READ_STAGE, eges.WALK_STAGE, eges.TRAIN_STAGE]
  assert calls["records"] == [(1, 2, 0.5), (2, 2, 1.0)]
  assert calls["walk steps"] == [(3, 9, pytest.approx(1 / 3)),
                                 (6, 9, pytest.approx(2 / 3)), (9, 9, 1.0)]
  assert calls["training steps"] == [(k, 6, pytest.approx(k / 6))
                                     for k in range(1, 7)]


def test_training_steps_count_the_pairs_of_walks_that_stopped():
  walks = np.array([[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 0]])
  config = eges.EgesPretrainConfig(skip_window=1, batch_size=3, walk_chunk=2)
  # Chunk [1, 2, 3], [4, 5]: 4 + 2 pairs, 2 batches; chunk [6]: no pairs.
  assert eges.training_steps(walks, config) == 2
  assert len(eges.skipgram_pairs(walks[:2], 1)) == 6
  whole = eges.EgesPretrainConfig(skip_window=2, batch_size=4)
  # 10 pairs (see test_skipgram_pairs_of_a_walk_match_hand_pairs): 3 batches.
  assert eges.training_steps(np.array([[1, 2, 3, 4]]), whole) == 3


def test_bad_inputs_name_what_is_wrong(tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, ids=np.array([3, 2]), vectors=np.zeros([2, 4]))
  with pytest.raises(ValueError, match=r"bad\.npz: ids must be .*sorted"):
    eges.load_embeddings(str(bad))
  np.savez(bad, ids=np.array([2, 3]))
  with pytest.raises(ValueError, match=r"bad\.npz: .*missing \['vectors'\]"):
    eges.load_embeddings(str(bad))
  with pytest.raises(FileNotFoundError, match="nothing.npz"):
    eges.load_embeddings(str(tmp_path / "nothing.npz"))
  with pytest.raises(ConfigError,
                     match="EgesPretrainConfig.walk_length=0: must be >= 1"):
    eges.EgesPretrainConfig(walk_length=0)
  # Every user clicked a single item: no edges, nothing to train.
  pattern = _write([Impression(label=0, user_id=u, time=9, item_id=1,
                               clicks=[Event(u, 1)]) for u in (1, 2)], tmp_path)
  with pytest.raises(ValueError, match=r"data/\*\.tfrecord: the item graph has 0"):
    eges.train_eges(pattern, str(tmp_path / "out.npz"),
                    eges.EgesPretrainConfig(leak_guard="none"))
  # With a time cut (at 9: no click is before it) the message names it; out of
  # fold, it names the set (users 1 and 2 are both of fold 1).
  with pytest.raises(ValueError, match=r"tfrecord: the clicks before the time "
                     r"cut 9: the item graph has 0"):
    eges.train_eges(pattern, str(tmp_path / "out.npz"), eges.EgesPretrainConfig())
  with pytest.raises(ValueError, match=r"tfrecord: vector set 1/2 \(users of "
                     r"fold 0\): the item graph has 0"):
    eges.train_eges(pattern, str(tmp_path / "out.npz"),
                    eges.EgesPretrainConfig(leak_guard="out_of_fold"))


# --- leak guards -------------------------------------------------------------


def _history_impressions(users, items):
  """One impression per user, whose history clicked ``items`` in this order."""
  return [Impression(label=0, user_id=u, time=1000, item_id=items[0],
                     item_cats=[1],
                     clicks=[Event(i, 10 + j, [1]) for j, i in enumerate(items)])
          for u in users]


def _recorder(calls):
  return lambda stage: lambda *state: calls[stage].append(state)


def test_out_of_fold_rows_read_vectors_no_session_of_their_user_trained(
    tmp_path):
  # Two folds (EGIN's hashing): users 7 and 10 are in fold 0, users 1 and 2 in 1.
  np.testing.assert_array_equal(
      user_folds(tf.constant([7, 10, 1, 2], tf.int64), 2).numpy(), [0, 0, 1, 1])
  # Fold 0 clicks 11, 12, 13; fold 1 clicks 21, 22, 23 and then 11 too.
  pattern = _write(_history_impressions((7, 10), [11, 12, 13]) +
                   _history_impressions((1, 2), [21, 22, 23, 11]), tmp_path)
  calls = collections.defaultdict(list)
  config = eges.EgesPretrainConfig(dim=2, walk_length=3, walks_per_node=1,
                                   num_negatives=2, leak_guard="out_of_fold")
  assert config.folds == 2
  path = eges.train_eges(pattern, str(tmp_path / "eges.npz"), config,
                         _recorder(calls))
  assert list(calls) == ["records", "set 1/2 walk steps", "set 1/2 training steps",
                         "set 2/2 walk steps", "set 2/2 training steps"]
  table = eges.read_vectors(path)
  assert (table.leak_guard, table.num_sets, table.cut_time) == ("out_of_fold",
                                                                2, None)
  np.testing.assert_array_equal(table.ids, [11, 12, 13, 21, 22, 23])
  # Set k holds the items of fold k's sessions only.
  np.testing.assert_array_equal(table.set_ids(0), [11, 12, 13])
  np.testing.assert_array_equal(table.set_ids(1), [11, 21, 22, 23])

  # EGES's routing (EGIN's OutOfFoldEmbedding over the K frozen sets): user 7
  # (fold 0) reads set 1, user 1 (fold 1) set 0.
  items = OutOfFoldEmbedding(table=FrozenIdEmbedding.from_vectors(table))
  assert items.num_folds == 2
  read = items(tf.constant([[11, 12, 21]] * 2, tf.int64),
               user_folds(tf.constant([7, 1], tf.int64), 2)).numpy()
  v = table.vectors
  # Row 0 never sees fold 0's vector of 11, nor 12, which only fold 0 clicked.
  np.testing.assert_array_equal(read[0], [v[1, 0], [0, 0], v[1, 3]])
  np.testing.assert_array_equal(read[1], [v[0, 0], v[0, 1], [0, 0]])


def test_time_cut_keeps_only_the_clicks_before_the_cut(tmp_path):
  # The earliest time of the latest share; impressions at that second are after.
  assert eges.cut_time([100, 400, 200, 300], 0.5) == 300
  assert eges.cut_time([2, 1, 2, 2], 0.25) == 2
  a, b, c, d, e = 11, 22, 33, 44, 55
  imps = [
      Impression(label=1, user_id=1, time=100, item_id=a, clicks=[Event(e, 50)]),
      Impression(label=1, user_id=1, time=200, item_id=b,
                 clicks=[Event(e, 50), Event(a, 100)]),
      # The positive c at the cut comes back in the next history at 300.
      Impression(label=1, user_id=1, time=300, item_id=c,
                 clicks=[Event(e, 50), Event(a, 100), Event(b, 200),
                         Event(d, 299)]),
      Impression(label=0, user_id=1, time=400, item_id=e,
                 clicks=[Event(a, 100), Event(b, 200), Event(d, 299),
                         Event(c, 300), Event(a, 350)]),
      Impression(label=0, user_id=2, time=400, item_id=b,
                 clicks=[Event(a, 10), Event(b, 300)]),
  ]
  pattern = _write(imps, tmp_path)
  # Times 100, 200, 300, 400, 400: the latest half (3 of 5) starts at 300.
  for positive_targets in (False, True):
    sessions = eges.read_sessions(pattern, eges.EgesPretrainConfig(
        leak_guard="time_cut", time_cut=0.5, positive_targets=positive_targets))
    assert sessions.cut_time == 300
    np.testing.assert_array_equal(sessions.items, [e, a, b, d, a])
    np.testing.assert_array_equal(sessions.users, [1, 1, 1, 1, 2])
    np.testing.assert_array_equal(sessions.session, [0, 0, 0, 0, 1])
  config = eges.EgesPretrainConfig(dim=2, walk_length=3, walks_per_node=1,
                                   num_negatives=2, leak_guard="time_cut", time_cut=0.5)
  table = eges.read_vectors(eges.train_eges(pattern, str(tmp_path / "c.npz"),
                                            config))
  assert (table.leak_guard, table.num_sets, table.cut_time, table.time_cut) == (
      "time_cut", 1, 300, 0.5)
  np.testing.assert_array_equal(table.ids, [a, b, d, e])  # no c


def test_leak_guard_settings_are_checked_and_agree_between_the_stages():
  for field, value in (("eges_leak_guard", "bogus"), ("eges_folds", 1),
                       ("eges_time_cut", 0.0), ("eges_time_cut", 1.0)):
    with pytest.raises(ConfigError, match=f"EGESConfig.{field}="):
      EGESConfig(**{field: value})
  with pytest.raises(ConfigError, match="EgesPretrainConfig.leak_guard='bogus': "
                     "must be one of out_of_fold, time_cut, none"):
    eges.EgesPretrainConfig(leak_guard="bogus")
  with pytest.raises(ConfigError, match="EgesPretrainConfig.folds=1: must be >= 2"):
    eges.EgesPretrainConfig(folds=1)
  with pytest.raises(ConfigError, match="EgesPretrainConfig.time_cut=1.0: must be < 1"):
    eges.EgesPretrainConfig(time_cut=1.0)
  for field, value in (("session_gap", -1), ("learning_rate", 0.0), ("dim", True)):
    with pytest.raises(ConfigError, match=f"EgesPretrainConfig.{field}="):
      eges.EgesPretrainConfig(**{field: value})
  model, stage1 = EGESConfig(), eges.EgesPretrainConfig()
  assert (model.eges_leak_guard, model.eges_folds, model.eges_time_cut) == (
      stage1.leak_guard, stage1.folds, stage1.time_cut)
  assert stage1_config(EGESConfig(slot_dim=4, eges_leak_guard="time_cut",
                                  eges_time_cut=0.25), seed=3) == eges.EgesPretrainConfig(
      dim=4, seed=3, leak_guard="time_cut", time_cut=0.25)


def test_vectors_file_of_several_sets_round_trips_and_old_files_load(tmp_path):
  table = eges.EgesVectors.from_sets(
      [(np.array([2, 5]), np.array([[1.0, 2.0], [3.0, 4.0]])),
       (np.array([5, 9]), np.array([[5.0, 6.0], [7.0, 8.0]]))],
      leak_guard="out_of_fold")
  np.testing.assert_array_equal(table.ids, [2, 5, 9])
  np.testing.assert_array_equal(table.vectors, [[[1, 2], [3, 4], [0, 0]],
                                                [[0, 0], [5, 6], [7, 8]]])
  path = eges.write_vectors(str(tmp_path / "v.npz"), table)
  again = eges.read_vectors(path)
  assert (again.leak_guard, again.cut_time, again.time_cut) == ("out_of_fold",
                                                                None, None)
  np.testing.assert_array_equal(again.ids, table.ids)
  np.testing.assert_array_equal(again.vectors, table.vectors)
  with pytest.raises(ValueError, match=r"v\.npz: holds 2 sets of vectors "
                     r"\(out_of_fold\); read it with read_vectors"):
    eges.load_embeddings(path)
  cut = eges.EgesVectors(np.array([3]), np.ones([1, 1, 2]), "time_cut",
                         cut_time=77, time_cut=0.25)
  again = eges.read_vectors(eges.write_vectors(str(tmp_path / "c.npz"), cut))
  assert (again.leak_guard, again.cut_time, again.time_cut) == ("time_cut", 77,
                                                                0.25)
  # Format 1 (before the guards): one set, guard none.
  np.savez(tmp_path / "old.npz", ids=np.array([4, 8]), vectors=np.ones([2, 3]))
  old = eges.read_vectors(str(tmp_path / "old.npz"))
  assert old.leak_guard == "none" and old.vectors.shape == (1, 2, 3)
  # A guard its sets contradict, on writing and on reading.
  with pytest.raises(ValueError, match=r"w\.npz: leak_guard out_of_fold with 1 "
                     r"set\(s\)"):
    eges.write_vectors(str(tmp_path / "w.npz"), eges.EgesVectors(
        np.array([3]), np.ones([1, 1, 2]), "out_of_fold"))
  np.savez(tmp_path / "bad.npz", format=2, ids=np.array([3]),
           vectors=np.ones([2, 1, 2]), leak_guard="none", cut_time=-1,
           time_cut=0.0)
  with pytest.raises(ValueError, match=r"bad\.npz: leak_guard none with 2 set"):
    eges.read_vectors(str(tmp_path / "bad.npz"))


# --- the CTR model -----------------------------------------------------------


def test_frozen_table_looks_up_arbitrary_ids_and_zeros_the_unknown():
  big = (1 << 62) + 3
  table = FrozenIdEmbedding(3, 2, ids=np.array([5, 9, big]),
                            vectors=np.array([[1.0, 2.0], [3.0, 4.0],
                                              [5.0, 6.0]]))
  out = table(tf.constant([[9, 0, 7], [big, 5, 10]], tf.int64)).numpy()
  np.testing.assert_array_equal(out, [[[3, 4], [0, 0], [0, 0]],
                                      [[5, 6], [1, 2], [0, 0]]])
  assert not table.trainable_weights and len(table.non_trainable_weights) == 2
  with pytest.raises(ValueError, match="do not match"):
    FrozenIdEmbedding(2, 2, ids=np.array([1, 2, 3]), vectors=np.zeros([3, 2]))


def _ctr_batch(tmp_path):
  rng = np.random.default_rng(0)
  imps = []
  for u in range(8):
    clicks = [Event(int(i), 100 + 10 * j, [int(i) % 3 + 1])
              for j, i in enumerate(rng.integers(1, 30, 6))]
    imps.append(Impression(
        label=u % 2, user_id=u + 1, time=1000, item_id=int(rng.integers(1, 30)),
        item_cats=[1], query_id=int(rng.integers(1, 9)), query_cats=[2],
        clicks=clicks, queries=[Event(3, 90, [2])]))
  pattern = _write(imps, tmp_path, "ctr", num_cats=1)
  return next(iter(reader.make_dataset(pattern, batch_size=8, max_clicks=6,
                                       max_queries=2, max_seeds=1)))


def test_eges_ctr_model_keeps_its_table_frozen_and_trains(tmp_path):
  batch = _ctr_batch(tmp_path)
  ids = np.arange(1, 30, 2)  # odd items known, even items unseen
  vectors = np.random.default_rng(1).normal(size=[ids.size, 4]).astype(np.float32)
  path = eges.save_embeddings(str(tmp_path / "eges.npz"), ids, vectors)
  features = FeatureConfig(item_buckets=32, query_buckets=16, user_buckets=16,
                           category_buckets=8)
  model = EGES(features, eges_embeddings_path=path, top_k=3, max_positions=8,
               hidden_units=(16,), eges_leak_guard="none")
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
  model(batch)
  frozen = model.graph_items.table
  assert frozen.weights and not any(
      w is v for w in frozen.weights for v in model.trainable_variables)
  np.testing.assert_array_equal(frozen(tf.constant([3, 4], tf.int64)).numpy(),
                                [vectors[1], np.zeros(4)])
  # Item-only SimExtract: EGES has no query vectors; no graph losses.
  assert not hasattr(model, "q2q_extract") and not model.aux_loss_weights
  mlp_before = [w.numpy().copy() for w in model.mlp.weights]
  losses = [float(model.train_step(batch)["loss"]) for _ in range(5)]
  assert losses[-1] < losses[0]
  assert any(not np.array_equal(a, w.numpy())
             for a, w in zip(mlp_before, model.mlp.weights))
  np.testing.assert_array_equal(frozen.embeddings.numpy(), vectors)
  pctr = model(batch, training=False).numpy()
  assert pctr.shape == (8,) and np.all((pctr > 0) & (pctr < 1))

  config = model.get_config()
  assert config["eges_embeddings_path"] == path
  rebuilt = EGES(**json.loads(json.dumps(config)))
  assert rebuilt(batch).shape == (8,)


_FEATURES = FeatureConfig(item_buckets=32, query_buckets=16, user_buckets=16,
                          category_buckets=8)


def test_eges_out_of_fold_rows_read_the_next_folds_set(tmp_path):
  batch = _ctr_batch(tmp_path)  # users 1-8, items in 1-29
  ids = np.arange(1, 30)
  vectors = np.random.default_rng(1).normal(size=[2, ids.size, 4])
  path = eges.write_vectors(str(tmp_path / "oof.npz"),
                            eges.EgesVectors(ids, vectors, "out_of_fold"))
  model = EGES(_FEATURES, eges_embeddings_path=path, top_k=3, max_positions=8,
               hidden_units=(16,), eges_leak_guard="out_of_fold")
  assert model.graph_folds == 2
  folds = user_folds(batch[schema_lib.USER_ID], 2)
  items = batch[schema_lib.ITEM_ID].numpy()
  np.testing.assert_allclose(model.graph_items(batch[schema_lib.ITEM_ID], folds),
                             vectors[(folds.numpy() + 1) % 2, items - 1],
                             rtol=1e-6)
  assert model(batch).shape == (8,)
  config = model.get_config()
  rebuilt = EGES(**json.loads(json.dumps(config)))
  assert rebuilt.get_config() == config and rebuilt.graph_folds == 2
  for wrong, asked in (({"eges_folds": 3}, r"out_of_fold \(3 sets\)"),
                       ({"eges_leak_guard": "none"}, "none")):
    with pytest.raises(ValueError, match=r"oof\.npz: EGES vectors made with leak "
                       rf"guard out_of_fold \(2 sets\), but the model asks for "
                       rf"{asked} "):
      EGES(_FEATURES, eges_embeddings_path=path,
           **{"eges_leak_guard": "out_of_fold", **wrong})


def test_eges_time_cut_rows_before_the_cut_read_no_target_vector(tmp_path):
  batch = _ctr_batch(tmp_path)  # every row at time 1000
  ids = np.arange(1, 30)
  vectors = np.random.default_rng(1).normal(size=[1, ids.size, 4])
  path = eges.write_vectors(str(tmp_path / "cut.npz"), eges.EgesVectors(
      ids, vectors, "time_cut", cut_time=1000, time_cut=0.5))
  model = EGES(_FEATURES, eges_embeddings_path=path, eges_leak_guard="time_cut",
               top_k=3, max_positions=8, hidden_units=(16,))
  assert model.cut_time == 1000 and model.graph_folds == 1
  # Rows 0, 2, 4, 6 come before the cut; row 7's time is unknown (0), as in a
  # serving request without one: it counts as after the cut.
  batch[schema_lib.TIME] = tf.constant([999, 1000] * 3 + [999, 0], tf.int64)
  features = tf.concat(model.interest_features(batch), -1).numpy()
  unknown = dict(batch)
  unknown[schema_lib.ITEM_ID] = tf.zeros_like(batch[schema_lib.ITEM_ID])
  no_target = tf.concat(model.interest_features(unknown), -1).numpy()
  np.testing.assert_array_equal(features[0::2], no_target[0::2])
  assert all(not np.array_equal(features[r], no_target[r]) for r in (1, 3, 5, 7))
  with pytest.raises(ValueError, match=r"made with leak guard time_cut \(share "
                     r"0\.5 after the cut\), but the model asks for time_cut "
                     r"\(share 0\.25 after the cut\)"):
    EGES(_FEATURES, eges_embeddings_path=path, eges_leak_guard="time_cut",
         eges_time_cut=0.25)


def test_stream_training_refuses_eges_by_its_streamable_attribute(tmp_path):
  # The refusal is the model's class attribute, not its name in streaming/cli.
  assert CTRModel.STREAMABLE and not EGES.STREAMABLE
  assert streamable("egin") and not streamable("eges")
  with pytest.raises(ValueError, match="eges cannot train on a stream: it needs "
                     "the whole training data before its first step"):
    streaming.train_stream(str(tmp_path), str(tmp_path / "model"),
                           train_config.TrainConfig(model="eges"))
