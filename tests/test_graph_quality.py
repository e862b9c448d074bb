"""Held-out edge recall@k: hand-made tables and edges, and edges from real files."""

import numpy as np

from data_pipeline import reader
from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter
from experiments import graph_quality
from egin_tf.layers.query_item_graph import QueryItemGraph

# Item id -> vector; ids 1..5.
VECTORS = {1: [1.0, 0.0], 2: [0.9, 0.1], 3: [0.0, 1.0], 4: [0.7, 0.7],
           5: [-1.0, 0.0]}


def _lookup(ids, folds):
  del folds
  table = np.zeros([6, 2], np.float32)
  for i, v in VECTORS.items():
    table[i] = v
  return tf.gather(table, ids)


def test_recall_by_hand():
  # From anchor 1 (cosines: 2 -> 0.994, 4 -> 0.707, 3 -> 0, 5 -> -1; itself
  # excluded): positive 2 ranks 1st, 4 2nd, 3 3rd.
  edges = graph_quality.EdgeSet(anchors=np.array([1, 1, 1]),
                                positives=np.array([2, 4, 3]),
                                users=np.array([7, 7, 7]))
  candidates = np.arange(1, 6)
  recall = [graph_quality.recall_at_k(_lookup, _lookup, edges, candidates, k)
            for k in (1, 2, 3)]
  np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 1.0])
  # Without excluding the anchor, the anchor itself (cosine 1) takes slot 1.
  assert graph_quality.recall_at_k(_lookup, _lookup, edges, candidates, 1,
                                   exclude_anchor=False) == 0.0


def test_ties_count_against_the_edge():
  zero = lambda ids, folds: tf.zeros(tf.concat([tf.shape(ids), [2]], 0))  # noqa: E731
  edges = graph_quality.EdgeSet(np.array([1]), np.array([2]), np.array([1]))
  assert graph_quality.recall_at_k(zero, zero, edges, np.arange(1, 6), 1,
                                   exclude_anchor=False) == 0.0


def _write(directory, impressions):
  with DatasetWriter(str(directory), num_cats=1) as w:
    for split, imp in impressions:
      w.write(split, imp)
    w.commit(source="test")


def test_held_out_edges_are_new_test_period_pairs(tmp_path):
  def clicks(pairs):
    return [Event(i, t, [1]) for i, t in pairs]
  train = Impression(label=1, user_id=1, time=100, item_id=9, item_cats=[1],
                     clicks=clicks([(1, 10), (2, 20)]))
  # Test history: (1, 2) again (a known pair), then 3 and 4 in the test period.
  test = Impression(label=1, user_id=2, time=500, item_id=9, item_cats=[1],
                    clicks=clicks([(1, 30), (2, 40), (3, 400), (4, 410)]))
  later = Impression(label=0, user_id=2, time=300, item_id=9, item_cats=[1])
  _write(tmp_path / "d", [("train", train), ("test", test), ("test", later)])
  lengths = reader.SequenceLengths(10, 10, 10)
  edges = graph_quality.held_out_edges(
      str(tmp_path / "d" / "train-*"), str(tmp_path / "d" / "test-*"),
      QueryItemGraph(window=1), lengths)
  # The test period starts at 300 (the earliest test impression); only (3, 4)
  # has both events after it, in both directions.
  pairs = sorted(zip(edges["i2i"].anchors.tolist(), edges["i2i"].positives.tolist()))
  assert pairs == [(3, 4), (4, 3)]
  assert set(edges["i2i"].users.tolist()) == {2}
  assert edges["q2i"].anchors.size == 0
