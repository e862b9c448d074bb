"""Tests of QueryItemGraph: hand-computed edge sets, Algorithms 1-2 in Python, and
the edge lists against the dense oracle (`graph_oracle`) edge for edge."""

import itertools
from typing import Dict, List, Optional, Sequence, Set, Tuple

from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import EdgeList, Edges
from egin_tf.layers.graph_edges import edge_list
from egin_tf.layers.query_item_graph import QueryItemGraph, window_edge_list
import graph_oracle
import hypothesis
from hypothesis import strategies as st
import numpy as np
import pytest

# One history entry: (id, time, categories).
Entry = Tuple[int, int, Sequence[int]]
EdgeSet = Set[Tuple[int, int]]


def _pad(rows: Sequence[Sequence[Entry]], length: int, num_cats: int):
  """Right-pads rows of entries to ids [B, length], times, cats [B, length, C]."""
  ids = np.zeros([len(rows), length], np.int64)
  times = np.zeros([len(rows), length], np.int64)
  cats = np.zeros([len(rows), length, num_cats], np.int64)
  for b, row in enumerate(rows):
    for j, (item, time, entry_cats) in enumerate(row):
      ids[b, j], times[b, j] = item, time
      cats[b, j, :len(entry_cats)] = entry_cats
  return ids, times, cats


def make_batch(clicks: Sequence[Sequence[Entry]],
               queries: Optional[Sequence[Sequence[Entry]]] = None,
               seeds: Optional[Sequence[Sequence[Entry]]] = None,
               click_len: Optional[int] = None, query_len: Optional[int] = None,
               seed_len: Optional[int] = None,
               num_cats: int = 2) -> Dict[str, tf.Tensor]:
  """A reader-like batch of int64 tensors from per-row lists of entries."""
  if queries is None:
    queries = [[] for _ in clicks]
  batch = {}
  sequences = [("click", clicks, click_len), ("query_hist", queries, query_len)]
  if seeds is not None:
    sequences.append(("seed", seeds, seed_len))
  for prefix, rows, length in sequences:
    length = max(1, max(len(r) for r in rows)) if length is None else length
    ids, times, cats = _pad(rows, length, num_cats)
    batch[f"{prefix}_ids"] = tf.constant(ids)
    batch[f"{prefix}_times"] = tf.constant(times)
    batch[f"{prefix}_cats"] = tf.constant(cats)
  return batch


def edge_sets(edges: EdgeList, num_rows: int) -> List[EdgeSet]:
  """The set of (src, dst) of the edges, per row."""
  sets = [set() for _ in range(num_rows)]
  for row, src, dst in zip(edges.rows.numpy(), edges.src.numpy(),
                           edges.dst.numpy()):
    sets[row].add((int(src), int(dst)))
  return sets


def dense_edge_sets(edges: Edges) -> List[EdgeSet]:
  """The set of (src, dst) of the masked-in slots of the dense oracle, per row."""
  src, dst, mask = edges.src.numpy(), edges.dst.numpy(), edges.mask.numpy()
  return [{(int(s), int(d)) for s, d, m in zip(*row) if m}
          for row in zip(src, dst, mask)]


def clicks_of(ids: Sequence[int], cat: int = 1) -> List[Entry]:
  """Clicks with the given ids at times 1, 2, ... all in one category."""
  return [(item, t + 1, [cat]) for t, item in enumerate(ids)]


# ----------------------------------------------------------------------------- i2i


def test_i2i_window_one():
  batch = make_batch([clicks_of([1, 2, 3, 4])])
  edges = QueryItemGraph(window=1)(batch)["i2i"]
  assert edge_sets(edges, 1) == [{(1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)}]
  assert graph_oracle.window_edges(batch["click_ids"], 1).src.shape == [1, 4 * 2]


def test_i2i_window_two():
  batch = make_batch([clicks_of([1, 2, 3, 4])])
  edges = QueryItemGraph(window=2)(batch)["i2i"]
  assert edge_sets(edges, 1) == [{(1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3),
                                  (1, 3), (3, 1), (2, 4), (4, 2)}]
  assert graph_oracle.window_edges(batch["click_ids"], 2).src.shape == [1, 4 * 4]


def test_i2i_padding_and_repeated_ids():
  # Row 0: the 9s are equal (no edge) but each 9 still links to its other
  # neighbours. Row 1 is shorter, so the rest of it is padding; row 2 is empty.
  batch = make_batch([clicks_of([5, 9, 9, 6]), clicks_of([7]), []], click_len=4)
  edges = QueryItemGraph(window=1)(batch)["i2i"]
  assert edge_sets(edges, 3) == [{(5, 9), (9, 5), (9, 6), (6, 9)}, set(), set()]


def test_i2i_uses_no_times_or_categories():
  # Algorithm 1 links neighbours in the click sequence whatever their times and
  # categories.
  batch = make_batch([[(1, 100, [3]), (2, 100, [4]), (3, 5, [])]])
  edges = QueryItemGraph(window=1)(batch)["i2i"]
  assert edge_sets(edges, 1) == [{(1, 2), (2, 1), (2, 3), (3, 2)}]


def test_positions_index_the_sequences():
  clicks = [clicks_of([11, 12, 13]), clicks_of([21, 22])]
  queries = [[(31, 0, [1]), (32, 1, [1])], [(41, 0, [1])]]
  batch = make_batch(clicks, queries)
  out = QueryItemGraph(window=2)(batch)
  sequences = {"i2i": (out["i2i_items"], out["i2i_items"]),
               "q2q": (batch["query_hist_ids"], batch["query_hist_ids"]),
               "q2i": (batch["query_hist_ids"], batch["click_ids"])}
  for name, (src_seq, dst_seq) in sequences.items():
    edges = out[name]
    assert edges.rows.shape[0] > 0, name
    for ids, seq, pos in ((edges.src, src_seq, edges.src_pos),
                          (edges.dst, dst_seq, edges.dst_pos)):
      np.testing.assert_array_equal(
          tf.gather_nd(seq, tf.stack([edges.rows, pos], axis=1)).numpy(), ids.numpy())
    assert all(x.dtype == tf.int64 for x in edges)


def test_oracle_positions_index_the_sequences():
  clicks = [clicks_of([11, 12, 13]), clicks_of([21, 22])]
  queries = [[(31, 0, [1]), (32, 1, [1])], [(41, 0, [1])]]
  batch = make_batch(clicks, queries)
  out = graph_oracle.dense_graph(QueryItemGraph(window=2), batch)
  sequences = {"i2i": (out["i2i_items"], out["i2i_items"]),
               "q2q": (batch["query_hist_ids"], batch["query_hist_ids"]),
               "q2i": (batch["query_hist_ids"], batch["click_ids"])}
  for name, (src_seq, dst_seq) in sequences.items():
    edges = out[name]
    mask = edges.mask.numpy()
    assert mask.any(), name
    src = tf.gather(src_seq, edges.src_pos, axis=1).numpy()
    dst = tf.gather(dst_seq, edges.dst_pos, axis=1).numpy()
    np.testing.assert_array_equal(np.where(mask, src, 0), edges.src.numpy())
    np.testing.assert_array_equal(np.where(mask, dst, 0), edges.dst.numpy())
    assert edges.src_pos.dtype == tf.int32 and edges.dst_pos.dtype == tf.int32


# ----------------------------------------------------------------------------- q2q


def test_q2q_time_bounds():
  # Timespan 10: equal times (1, 2) -> no edge; a gap of exactly 10 (1, 3) ->
  # no edge; a gap of 9 (1, 4) -> edge; (2, 4) and (3, 4) gaps 9 and -1 -> edges.
  queries = [[(1, 100, [5]), (2, 100, [5]), (3, 110, [5]), (4, 109, [5])]]
  batch = make_batch([[]], queries)
  edges = QueryItemGraph(q2q_timespan=10)(batch)["q2q"]
  assert edge_sets(edges, 1) == [{(1, 4), (4, 1), (2, 4), (4, 2), (3, 4), (4, 3)}]
  dense = graph_oracle.dense_graph(QueryItemGraph(q2q_timespan=10), batch)["q2q"]
  assert dense.src.shape == [1, 16]


def test_q2q_categories():
  # 1 and 2 share category 7; 1 and 3 only have the padding 0 in common; 2 and
  # 4 are disjoint; 4 has no category at all.
  queries = [[(1, 0, [7, 0]), (2, 1, [8, 7]), (3, 2, [9, 0]), (4, 3, [])]]
  batch = make_batch([[]], queries)
  edges = QueryItemGraph()(batch)["q2q"]
  assert edge_sets(edges, 1) == [{(1, 2), (2, 1)}]


def test_q2q_repeated_ids_and_padding():
  # The same query twice: no self edge, but both occurrences link to query 3.
  queries = [[(1, 0, [7]), (1, 5, [7]), (3, 7, [7])], [(4, 0, [7])]]
  batch = make_batch([[], []], queries, query_len=4)
  edges = QueryItemGraph()(batch)["q2q"]
  assert edge_sets(edges, 2) == [{(1, 3), (3, 1)}, set()]
  # One edge per occurrence of query 1, and none in row 1.
  slots = set(zip(edges.rows.numpy(), edges.src_pos.numpy(), edges.dst_pos.numpy()))
  assert {(0, 0, 2), (0, 1, 2)} <= slots
  assert not any(row == 1 for row, _, _ in slots)
  mask = graph_oracle.dense_graph(QueryItemGraph(), batch)["q2q"].mask.numpy()
  mask = mask.reshape([2, 4, 4])
  assert mask[0, 0, 2] and mask[0, 1, 2]  # one slot per occurrence of query 1
  assert not mask[1].any()


# ----------------------------------------------------------------------------- q2i


def test_q2i_direction_and_time_bounds():
  # Query 1 at t=100, timespan 10. Click 11 before it, 12 at the same time, 13
  # exactly 10 later: no edges. Click 14 at +9 and 15 at +1: edges.
  clicks = [[(11, 99, [5]), (12, 100, [5]), (13, 110, [5]), (14, 109, [5]),
             (15, 101, [5])]]
  queries = [[(1, 100, [5])]]
  batch = make_batch(clicks, queries)
  edges = QueryItemGraph(q2i_timespan=10)(batch)["q2i"]
  assert edge_sets(edges, 1) == [{(1, 14), (1, 15)}]
  dense = graph_oracle.dense_graph(QueryItemGraph(q2i_timespan=10), batch)["q2i"]
  assert dense.src.shape == [1, 5]


def test_q2i_categories_padding_and_equal_ids():
  # Query 1 (cats 3, 4): click 2 shares 4; click 5 only shares padding; click 6
  # is disjoint; click 1 has the query's own id (no edge); click 7 shares 3.
  # Row 1 has no query, row 2 has no clicks.
  clicks = [[(2, 1, [4, 0]), (5, 2, [0, 0]), (6, 3, [8, 9]), (1, 4, [3]),
             (7, 5, [0, 3])], [(8, 1, [3])], []]
  queries = [[(1, 0, [3, 4])], [], [(9, 0, [3])]]
  batch = make_batch(clicks, queries)
  edges = QueryItemGraph()(batch)["q2i"]
  assert edge_sets(edges, 3) == [{(1, 2), (1, 7)}, set(), set()]


# ----------------------------------------------------- graph modes and serialization


def _small_batch(seeds: Optional[Sequence[Sequence[Entry]]] = None
                 ) -> Dict[str, tf.Tensor]:
  clicks = [clicks_of([1, 2, 3, 2]), clicks_of([4, 5])]
  queries = [[(31, 0, [1]), (32, 1, [1]), (33, 2, [2])], [(34, 0, [1])]]
  return make_batch(clicks, queries, seeds=seeds)


def _all_edge_sets(out) -> Dict[str, List[EdgeSet]]:
  num_rows = int(out["i2i_items"].shape[0])
  return {name: edge_sets(out[name], num_rows) for name in ("i2i", "q2q", "q2i")}


_EXPECTED_SMALL = {
    "i2i": [{(1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1)}, {(4, 5), (5, 4)}],
    "q2q": [{(31, 32), (32, 31)}, set()],
    "q2i": [{(31, 1), (31, 2), (31, 3), (32, 2), (32, 3)}, {(34, 4), (34, 5)}],
}


def test_small_batch_expectation():
  assert _all_edge_sets(QueryItemGraph()(_small_batch())) == _EXPECTED_SMALL


def _signature(batch, dynamic_length: bool):
  return [{name: tf.TensorSpec([None, None if dynamic_length else t.shape[1]]
                               + t.shape[2:], tf.int64)
           for name, t in batch.items()}]


def test_tf_function_with_unknown_batch_size():
  batch = _small_batch()
  layer = QueryItemGraph()
  build = tf.function(layer, input_signature=_signature(batch, False))
  graph_out = build.get_concrete_function().structured_outputs
  assert graph_out["i2i"].src.shape.as_list() == [None]
  assert graph_out["q2i"].rows.shape.as_list() == [None]
  assert _all_edge_sets(build(batch)) == _EXPECTED_SMALL


def test_oracle_layout_is_static_with_unknown_batch_size():
  batch = _small_batch()
  layer = QueryItemGraph()
  layer.build(None)
  build = tf.function(lambda b: graph_oracle.dense_graph(layer, b),
                      input_signature=_signature(batch, False))
  graph_out = build.get_concrete_function().structured_outputs
  assert graph_out["i2i"].src.shape.as_list() == [None, 4 * 4]
  assert graph_out["q2i"].mask.shape.as_list() == [None, 3 * 4]
  assert graph_out["q2q"].src_pos.shape.as_list() == [9]
  sets = {name: dense_edge_sets(build(batch)[name]) for name in _EXPECTED_SMALL}
  assert sets == _EXPECTED_SMALL


def test_tf_function_with_unknown_lengths_and_seeds():
  batch = _small_batch(seeds=[clicks_of([7, 8, 9]), clicks_of([6])])
  layer = QueryItemGraph(window=1, seeds_fraction=1.0)
  build = tf.function(layer, input_signature=_signature(batch, True))
  out = build(batch)
  assert edge_sets(out["i2i"], 2) == [{(7, 8), (8, 7), (8, 9), (9, 8)}, set()]
  assert out["i2i_items"].numpy().tolist() == [[7, 8, 9, 0], [6, 0, 0, 0]]
  assert _all_edge_sets(out)["q2i"] == _EXPECTED_SMALL["q2i"]


def test_functional_model():
  batch = _small_batch()
  inputs = {name: tf.keras.Input(shape=t.shape[1:], dtype=tf.int64, name=name)
            for name, t in batch.items()}
  model = tf.keras.Model(inputs, QueryItemGraph()(inputs))
  assert _all_edge_sets(model(batch)) == _EXPECTED_SMALL


def test_get_config_round_trip():
  layer = QueryItemGraph(window=3, q2q_timespan=60, q2i_timespan=120,
                         seeds_fraction=0.25, subsample_threshold=1e-4,
                         subsample_buckets=64, seed=9, name="graph")
  config = layer.get_config()
  clone = QueryItemGraph.from_config(config)
  assert clone.get_config() == config
  assert (config["window"], config["q2q_timespan"], config["q2i_timespan"],
          config["seeds_fraction"], config["subsample_threshold"],
          config["subsample_buckets"], config["seed"]) == (
              3, 60, 120, 0.25, 1e-4, 64, 9)


@pytest.mark.parametrize("kwargs", [
    {"window": 0}, {"window": 1.5}, {"q2q_timespan": 0}, {"q2i_timespan": -1},
    {"seeds_fraction": 1.5}, {"seeds_fraction": -0.1},
    {"subsample_threshold": 0.0}, {"subsample_buckets": 1}, {"seed": -1},
])
def test_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    QueryItemGraph(**kwargs)


def test_bad_batches_name_the_feature():
  batch = _small_batch()
  missing = dict(batch)
  del missing["click_times"]
  with pytest.raises(ValueError, match="'click_times'"):
    QueryItemGraph()(missing)
  with pytest.raises(ValueError, match="'seed_ids'.*seeds_fraction"):
    QueryItemGraph(seeds_fraction=0.5)(batch)
  floats = dict(batch, query_hist_ids=tf.cast(batch["query_hist_ids"], tf.float32))
  with pytest.raises(TypeError, match="'query_hist_ids'.*float32"):
    QueryItemGraph()(floats)
  short = dict(batch, click_times=batch["click_times"][:, :2])
  with pytest.raises(ValueError, match="'click_ids'.*'click_times'"):
    QueryItemGraph()(short)


# ------------------------------------------------------------------- seeds mixture


def _mixture_batch(rows: int = 64) -> Dict[str, tf.Tensor]:
  # Clicks (length 2) and seeds (length 3) never share ids, so every i2i row
  # shows which sequence it came from.
  clicks = [clicks_of([1000 + 2 * r, 1001 + 2 * r]) for r in range(rows)]
  seeds = [clicks_of([5000 + 3 * r, 5001 + 3 * r, 5002 + 3 * r])
           for r in range(rows)]
  return make_batch(clicks, seeds=seeds)


def _uses_seeds(items: tf.Tensor) -> List[bool]:
  return [bool(row[0] >= 5000) for row in items.numpy()]


def test_seeds_fraction_zero_is_exactly_the_clicks():
  batch = _mixture_batch()
  out = QueryItemGraph(window=1, seeds_fraction=0.0)(batch, training=True)
  np.testing.assert_array_equal(out["i2i_items"], batch["click_ids"])
  assert edge_sets(out["i2i"], 64)[5] == {(1010, 1011), (1011, 1010)}


def test_seeds_fraction_one_is_exactly_the_seeds():
  batch = _mixture_batch()
  out = QueryItemGraph(window=1, seeds_fraction=1.0)(batch, training=True)
  np.testing.assert_array_equal(out["i2i_items"], batch["seed_ids"])
  assert edge_sets(out["i2i"], 64)[5] == {(5015, 5016), (5016, 5015), (5016, 5017),
                                          (5017, 5016)}
  assert graph_oracle.window_edges(out["i2i_items"], 1).src.shape == [64, 3 * 2]


def test_seeds_mixture_is_deterministic_by_seed_and_step():
  batch = _mixture_batch()
  layer = QueryItemGraph(seeds_fraction=0.5, seed=3)
  first = _uses_seeds(layer(batch, training=True)["i2i_items"])
  second = _uses_seeds(layer(batch, training=True)["i2i_items"])
  assert 0 < sum(first) < len(first)
  assert first != second  # the step counter advanced
  assert int(layer.step.numpy()) == 2

  # A fresh layer with the same seed replays the sequence; its inference calls
  # do not advance the step.
  replay = QueryItemGraph(seeds_fraction=0.5, seed=3)
  assert _uses_seeds(replay(batch)["i2i_items"]) == first
  assert _uses_seeds(replay(batch, training=False)["i2i_items"]) == first
  assert int(replay.step.numpy()) == 0

  # Resuming from a saved step continues the sequence.
  resumed = QueryItemGraph(seeds_fraction=0.5, seed=3)
  resumed(batch)
  resumed.step.assign(1)
  assert _uses_seeds(resumed(batch, training=True)["i2i_items"]) == second

  other = QueryItemGraph(seeds_fraction=0.5, seed=4)
  assert _uses_seeds(other(batch, training=True)["i2i_items"]) != first


def test_seeds_pad_the_shorter_sequence():
  clicks = [clicks_of([1, 2, 3]), clicks_of([4])]
  seeds = [clicks_of([7]), clicks_of([8, 9])]
  batch = make_batch(clicks, seeds=seeds)
  for fraction, expected in ((0.0, [[1, 2, 3], [4, 0, 0]]),
                             (1.0, [[7, 0, 0], [8, 9, 0]])):
    out = QueryItemGraph(seeds_fraction=fraction)(batch)
    assert out["i2i_items"].numpy().tolist() == expected
  longer_seeds = make_batch(clicks, seeds=seeds, seed_len=5)
  out = QueryItemGraph(seeds_fraction=1.0)(longer_seeds)
  assert out["i2i_items"].numpy().tolist() == [[7, 0, 0, 0, 0], [8, 9, 0, 0, 0]]
  assert graph_oracle.window_edges(out["i2i_items"], 2).src.shape == [2, 5 * 4]


# -------------------------------------------------------------------- subsampling


def _frequent_batch(rows: int = 100) -> Dict[str, tf.Tensor]:
  # Each row: two ids seen nowhere else, then eight occurrences of item 7, so
  # f(7) = 0.8 and f(rare) = 0.001 over the 1000 occurrences.
  return make_batch([clicks_of([10 + 2 * r, 11 + 2 * r] + [7] * 8)
                     for r in range(rows)])


def _count_edges(sets: List[EdgeSet], touching_7: bool) -> int:
  return sum(sum((7 in e) == touching_7 for e in row) for row in sets)


def test_subsampling_drops_a_frequent_id_and_keeps_rare_ones():
  batch = _frequent_batch()
  layer = QueryItemGraph(window=1, subsample_threshold=0.002)
  sets = edge_sets(layer(batch, training=True)["i2i"], 100)
  # The rare pair's keep probability is min(1, sqrt(0.002 / 0.001)) = 1.
  assert _count_edges(sets, touching_7=False) == 2 * 100
  # Item 7's is sqrt(0.002 / 0.8) = 0.05: about 5 of its 100 (11+2r, 7) pairs
  # survive, each in both directions.
  assert 0 < _count_edges(sets, touching_7=True) <= 2 * 20
  assert int(layer.item_total.numpy()) == 1000
  assert int(layer.item_counts.numpy()[7]) == 800


def test_subsampling_is_off_by_default_and_outside_training():
  batch = _frequent_batch()
  default = QueryItemGraph(window=1)
  sets = edge_sets(default(batch, training=True)["i2i"], 100)
  assert _count_edges(sets, touching_7=True) == 2 * 100
  assert not hasattr(default, "item_counts")

  layer = QueryItemGraph(window=1, subsample_threshold=0.002)
  sets = edge_sets(layer(batch, training=False)["i2i"], 100)
  assert _count_edges(sets, touching_7=True) == 2 * 100
  assert int(layer.item_total.numpy()) == 0


# ------------------------------------------------- property: Algorithms 1 and 2


def reference_edges(clicks: Sequence[Entry], queries: Sequence[Entry], window: int,
                    q2q_timespan: int, q2i_timespan: int) -> Dict[str, EdgeSet]:
  """Algorithms 1 and 2 of the paper, written directly, for one row."""
  def build_edge(s1, s2, timespan, both_directions):  # Algorithm 2
    edges = set()
    for (id1, t1, cats1), (id2, t2, cats2) in itertools.product(s1, s2):
      if 0 < t2 - t1 < timespan and (set(cats1) & set(cats2)) - {0}:
        edges.add((id1, id2))
        if both_directions:
          edges.add((id2, id1))
    return edges

  i2i = set()  # Algorithm 1, lines 2-6
  for j, (c_j, _, _) in enumerate(clicks):
    for c_k, _, _ in clicks[max(0, j - window):j + window + 1]:
      i2i |= {(c_j, c_k), (c_k, c_j)}
  out = {"i2i": i2i,
         "q2q": build_edge(queries, queries, q2q_timespan, both_directions=True),
         "q2i": build_edge(queries, clicks, q2i_timespan, both_directions=False)}
  # A pair of equal ids is no edge.
  return {name: {(a, b) for a, b in edges if a != b} for name, edges in out.items()}


_entries = st.lists(
    st.tuples(st.integers(1, 6), st.integers(0, 12),
              st.lists(st.integers(0, 3), max_size=2)),
    max_size=6)


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    rows=st.lists(st.tuples(_entries, _entries), min_size=1, max_size=3),
    window=st.integers(1, 3), q2q_timespan=st.integers(1, 8),
    q2i_timespan=st.integers(1, 8))
def test_matches_algorithms_1_and_2(rows, window, q2q_timespan, q2i_timespan):
  clicks = [c for c, _ in rows]
  queries = [q for _, q in rows]
  layer = QueryItemGraph(window=window, q2q_timespan=q2q_timespan,
                         q2i_timespan=q2i_timespan)
  out = _all_edge_sets(layer(make_batch(clicks, queries)))
  for b, (row_clicks, row_queries) in enumerate(rows):
    expected = reference_edges(row_clicks, row_queries, window, q2q_timespan,
                               q2i_timespan)
    assert {name: sets[b] for name, sets in out.items()} == expected


def assert_same_edges(compact: EdgeList, dense: Edges, name: str) -> None:
  """The edge list equals the dense oracle's real edges: fields, values, order."""
  expected = edge_list(dense)
  for field, value in zip(expected._fields, compact):
    np.testing.assert_array_equal(value.numpy(), getattr(expected, field).numpy(),
                                  err_msg=f"{name}.{field}")


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    rows=st.lists(st.tuples(_entries, _entries, _entries), min_size=1, max_size=4),
    window=st.integers(1, 3), q2q_timespan=st.integers(1, 8),
    q2i_timespan=st.integers(1, 8), seeds_fraction=st.sampled_from([0.0, 0.5]),
    subsample_threshold=st.sampled_from([None, 0.05]), seed=st.integers(0, 3))
def test_edge_lists_equal_the_dense_layouts_real_edges(
    rows, window, q2q_timespan, q2i_timespan, seeds_fraction, subsample_threshold,
    seed):
  batch = make_batch([c for c, _, _ in rows], [q for _, q, _ in rows],
                     seeds=[s for _, _, s in rows])
  options = dict(window=window, q2q_timespan=q2q_timespan,
                 q2i_timespan=q2i_timespan, seeds_fraction=seeds_fraction,
                 subsample_threshold=subsample_threshold, seed=seed)
  # Same seed and step: the same seeds mix and subsampling draws in all three.
  dense = graph_oracle.dense_graph(QueryItemGraph(**options), batch, training=True)
  called = QueryItemGraph(**options)(batch, training=True)
  compact = QueryItemGraph(**options).edge_lists(batch, training=True)
  for out in (called, compact):
    np.testing.assert_array_equal(out["i2i_items"], dense["i2i_items"])
    for name in ("i2i", "q2q", "q2i"):
      assert_same_edges(out[name], dense[name], name)


_item_rows = st.integers(1, 4).flatmap(lambda length: st.lists(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=length,
             max_size=length), min_size=1, max_size=4))


@hypothesis.settings(max_examples=80, deadline=None)
@hypothesis.given(rows=_item_rows, window=st.integers(1, 4),
                  use_keep=st.booleans())
def test_window_edge_list_equals_the_oracle(rows, window, use_keep):
  # Ids 0..4: padding holes anywhere and repeated ids; keep drops occurrences,
  # which still hold their positions (the window does not reach past them).
  items = tf.constant([[item for item, _ in row] for row in rows], tf.int64)
  keep = (tf.constant([[kept for _, kept in row] for row in rows])
          if use_keep else None)
  assert_same_edges(window_edge_list(items, window, keep),
                    graph_oracle.window_edges(items, window, keep), "i2i")


def test_window_edge_list_with_a_dropped_occurrence_by_hand():
  # Window 1 over 1, 2, 3 with 2 dropped: 1 and 3 are two positions apart, so
  # the dropped 2 leaves no edge at all.
  items = tf.constant([[1, 2, 3], [4, 5, 0]], tf.int64)
  keep = tf.constant([[True, False, True], [True, True, True]])
  edges = window_edge_list(items, 1, keep)
  assert edge_sets(edges, 2) == [set(), {(4, 5), (5, 4)}]
  edges = window_edge_list(items, 2, keep)
  assert edge_sets(edges, 2) == [{(1, 3), (3, 1)}, {(4, 5), (5, 4)}]
  empty = window_edge_list(tf.zeros([2, 0], tf.int64), 2)
  assert [x.shape.as_list() for x in empty] == [[0]] * 5


def test_edge_lists_skip_padding_gaps_and_empty_rows():
  # Row 0 has a padding hole between its queries; row 1 has no history at all.
  batch = make_batch([[(1, 10, [1]), (2, 20, [1])], []],
                     [[(5, 5, [1]), (6, 8, [1])], []])
  batch["query_hist_ids"] = tf.constant([[5, 0, 6], [0, 0, 0]], tf.int64)
  batch["query_hist_times"] = tf.constant([[5, 0, 8], [0, 0, 0]], tf.int64)
  batch["query_hist_cats"] = tf.constant([[[1], [0], [1]], [[0], [0], [0]]],
                                         tf.int64)
  compact = QueryItemGraph().edge_lists(batch)
  q2q = compact["q2q"]
  assert q2q.rows.numpy().tolist() == [0, 0]
  assert list(zip(q2q.src_pos.numpy(), q2q.dst_pos.numpy())) == [(0, 2), (2, 0)]
  q2i = compact["q2i"]
  assert sorted(zip(q2i.src.numpy(), q2i.dst.numpy())) == [(5, 1), (5, 2), (6, 1),
                                                           (6, 2)]
