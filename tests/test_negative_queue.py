"""Tests of NegativeQueue: ring-buffer contents, sampling support, logQ, checkpoints."""

import collections
import math

from data_pipeline.tf_env import tf
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from egin_tf.layers.negative_queue import NegativeQueue


def _ids(values):
  return tf.constant(values, tf.int64)


def _state(queue):
  """(contents, next slot, size)."""
  return (queue.ids.numpy().tolist(),
          int(queue.write_position.numpy()) % queue.capacity,
          int(queue.size().numpy()))


def _draws(queue, steps):
  """All ids drawn by ``steps`` sample() calls, as one Python list."""
  return [i for _ in range(steps) for i in queue.sample().ids.numpy().tolist()]


def test_wrap_around_overwrites_oldest_slots():
  queue = NegativeQueue(capacity=5, num_negatives=3)
  queue.enqueue(_ids([1, 2, 3]))
  assert _state(queue) == ([1, 2, 3, 0, 0], 3, 3)
  queue.enqueue(_ids([4, 5, 6, 7]))
  # 4, 5 fill slots 3, 4; 6, 7 wrap onto slots 0, 1 (the oldest ids 1, 2).
  assert _state(queue) == ([6, 7, 3, 4, 5], 2, 5)


def test_batch_larger_than_capacity_keeps_its_last_ids():
  queue = NegativeQueue(capacity=3, num_negatives=2)
  queue.enqueue(_ids([9]))
  queue.enqueue(_ids([1, 2, 3, 4, 5]))
  # As if written one at a time from slot 1: 1, 2 are overwritten by 4, 5 and 3
  # lands on slot 0; the next write goes to slot (1 + 5) mod 3 = 0.
  assert _state(queue) == ([3, 4, 5], 0, 3)


def test_padding_ids_and_masked_entries_are_not_enqueued():
  queue = NegativeQueue(capacity=6, num_negatives=2)
  queue.enqueue(_ids([[1, 0, 2], [0, 3, 0]]))
  assert _state(queue) == ([1, 2, 3, 0, 0, 0], 3, 3)
  queue.enqueue(_ids([[4, 5], [6, 0]]), mask=tf.constant([[True, False], [True, True]]))
  assert _state(queue) == ([1, 2, 3, 4, 6, 0], 5, 5)


def test_a_list_of_tensors_is_enqueued_part_after_part():
  queue = NegativeQueue(capacity=8, num_negatives=2)
  # Clicks [B, L] then targets [B]: all valid clicks row by row, then the targets.
  queue.enqueue([_ids([[1, 0, 2], [3, 4, 0]]), _ids([7, 8])])
  assert _state(queue) == ([1, 2, 3, 4, 7, 8, 0, 0], 6, 6)
  with pytest.raises(ValueError, match="a mask goes with a single ids tensor"):
    queue.enqueue([_ids([1]), _ids([2])], mask=tf.constant([True]))


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="capacity"):
    NegativeQueue(capacity=0)
  with pytest.raises(ValueError, match="logq_buckets"):
    NegativeQueue(logq_buckets=1)
  queue = NegativeQueue(capacity=4, num_negatives=2)
  with pytest.raises(TypeError, match="ids must be integers"):
    queue.enqueue(tf.constant([1.0, 2.0]))
  with pytest.raises(TypeError, match="mask must be bool"):
    queue.enqueue(_ids([1, 2]), mask=tf.constant([1, 0]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
    queue.enqueue(_ids([1, 2]), mask=tf.constant([True, False, True]))


def test_empty_queue_samples_nothing_valid():
  queue = NegativeQueue(capacity=4, num_negatives=3, logq_buckets=8)
  sample = queue.sample()
  assert sample.ids.numpy().tolist() == [0, 0, 0]
  assert sample.valid.numpy().tolist() == [False] * 3
  assert sample.log_q.numpy().tolist() == [0.0] * 3


def test_first_draws_are_in_batch_ids_only():
  queue = NegativeQueue(capacity=1000, num_negatives=50)
  sample = queue(_ids([[11, 12, 0], [13, 0, 0]]), training=True)  # enqueue, then sample
  assert sample.valid.numpy().all()
  drawn = set(sample.ids.numpy().tolist()) | set(_draws(queue, 3))
  assert drawn == {11, 12, 13}  # never an empty slot (id 0), and all three reachable


def test_draws_are_roughly_uniform_over_filled_slots():
  queue = NegativeQueue(capacity=20, num_negatives=1000, seed=3)
  queue.enqueue(_ids(list(range(1, 11))))  # 10 of 20 slots filled
  counts = collections.Counter(_draws(queue, 20))  # 20,000 draws, 2,000 expected each
  assert set(counts) == set(range(1, 11))
  # Binomial sd is ~42; 300 is 7 sd, while drawing an unfilled slot or a skewed
  # slot range would move counts by thousands.
  assert all(abs(c - 2000) < 300 for c in counts.values()), counts


def test_duplicates_are_drawn_in_proportion_to_their_frequency():
  queue = NegativeQueue(capacity=8, num_negatives=1000, seed=1)
  queue.enqueue(_ids([7, 7, 7, 8]))
  draws = _draws(queue, 8)
  assert abs(draws.count(7) / len(draws) - 0.75) < 0.02


def test_samples_are_deterministic_given_seed_and_step():
  def run(seed):
    queue = NegativeQueue(capacity=50, num_negatives=20, seed=seed)
    queue.enqueue(_ids(list(range(1, 41))))
    return [queue.sample().ids.numpy().tolist() for _ in range(3)]

  first = run(seed=5)
  assert first == run(seed=5)
  assert first[0] != first[1]  # the step counter moves the draw on
  assert first != run(seed=6)


def test_works_inside_tf_function_like_eager():
  eager = NegativeQueue(capacity=6, num_negatives=4, seed=2, logq_buckets=32)
  graph = NegativeQueue(capacity=6, num_negatives=4, seed=2, logq_buckets=32)

  @tf.function
  def step(ids, mask):
    return graph(ids, mask=mask)

  for batch in ([[1, 2, 0], [3, 4, 5]], [[6, 7, 8], [0, 0, 9]]):
    ids = _ids(batch)
    mask = ids != 4
    expected, got = eager(ids, mask=mask), step(ids, mask)
    for e, g in zip(expected, got):
      np.testing.assert_array_equal(e.numpy(), g.numpy())
  assert _state(graph) == _state(eager)
  np.testing.assert_array_equal(graph.logq_counts.numpy(), eager.logq_counts.numpy())


def test_checkpoint_restores_contents_and_next_samples(tmp_path):
  original = NegativeQueue(capacity=7, num_negatives=5, seed=4, logq_buckets=16)
  original.enqueue(_ids([3, 1, 4, 1, 5, 9, 2, 6, 5]))
  original.sample()
  path = tf.train.Checkpoint(queue=original).save(str(tmp_path / "queue"))

  restored = NegativeQueue(capacity=7, num_negatives=5, seed=4, logq_buckets=16)
  restored.build(None)
  tf.train.Checkpoint(queue=restored).restore(path).assert_consumed()
  assert _state(restored) == _state(original)
  assert int(restored.sample_step.numpy()) == 1
  np.testing.assert_array_equal(restored.logq_counts.numpy(),
                                original.logq_counts.numpy())
  for _ in range(3):
    a, b = original.sample(), restored.sample()
    np.testing.assert_array_equal(a.ids.numpy(), b.ids.numpy())
    np.testing.assert_array_equal(a.log_q.numpy(), b.log_q.numpy())


def test_log_q_on_a_hand_case():
  queue = NegativeQueue(capacity=4, num_negatives=200, logq_buckets=64)
  queue.enqueue(_ids([5, 5, 7]))  # q(5) = 2/3, q(7) = 1/3
  _check_log_q(queue.sample(), {5: math.log(2 / 3), 7: math.log(1 / 3)})
  queue.enqueue(_ids([7, 9]))  # 7 -> slot 3, 9 -> slot 0 evicting a 5: [9, 5, 7, 7]
  assert _state(queue)[0] == [9, 5, 7, 7]
  _check_log_q(queue.sample(), {5: math.log(1 / 4), 7: math.log(2 / 4),
                                9: math.log(1 / 4)})
  counts = queue.logq_counts.numpy()
  # bucketize_ids maps small ids to themselves.
  assert (counts[5], counts[7], counts[9]) == (1, 2, 1)
  assert counts.sum() == 4


def _check_log_q(sample, expected):
  ids, log_q = sample.ids.numpy(), sample.log_q.numpy()
  assert set(ids.tolist()) == set(expected)
  for i, lq in zip(ids, log_q):
    assert lq == pytest.approx(expected[int(i)], abs=1e-6)


def test_log_q_is_none_from_sample_and_zeros_from_a_call_without_buckets():
  queue = NegativeQueue(capacity=4, num_negatives=2)
  assert queue.sample().log_q is None
  # A layer's outputs are all tensors (as a Keras 3 functional model needs).
  log_q = queue(_ids([1])).log_q
  assert log_q.dtype == tf.float32 and log_q.numpy().tolist() == [0.0, 0.0]


def test_config_round_trip():
  queue = NegativeQueue(capacity=9, num_negatives=3, seed=2, logq_buckets=10)
  config = NegativeQueue.from_config(queue.get_config()).get_config()
  assert config == queue.get_config()
  assert (config["capacity"], config["num_negatives"], config["seed"],
          config["logq_buckets"]) == (9, 3, 2, 10)


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(1, 6),
       batches=st.lists(st.lists(st.integers(0, 9), max_size=9), max_size=5))
def test_matches_a_one_id_at_a_time_reference(capacity, batches):
  """A batch enqueue equals writing its non-zero ids one by one into a ring."""
  queue = NegativeQueue(capacity=capacity, num_negatives=2, logq_buckets=16)
  queue.build(None)  # no batch may come
  ring, position, filled = [0] * capacity, 0, 0
  for batch in batches:
    queue.enqueue(tf.constant(batch, tf.int64, shape=[len(batch)]))
    for i in batch:
      if i:
        ring[position] = i
        position = (position + 1) % capacity
        filled = min(filled + 1, capacity)
  assert _state(queue) == (ring, position, filled)
  expected_counts = np.zeros(16, np.int64)
  for i in ring:
    if i:
      expected_counts[i] += 1
  np.testing.assert_array_equal(queue.logq_counts.numpy(), expected_counts)


def _run_ps_cluster():
  """tests/ps_queue_run.py on chief + 2 workers + 2 ps processes: its RESULT."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from egin_tf.train import cluster_local  # pylint: disable=g-import-not-at-top
  lines = []
  job = cluster_local.LocalCluster(
      [sys.executable, os.path.join(os.path.dirname(__file__), "ps_queue_run.py")],
      cluster_local.cluster_spec(workers=2, ps=2), print_fn=lines.append)
  assert job.run() == 0, "\n".join(lines[-40:])
  result = [line for line in lines if line.startswith("chief 0 | RESULT ")]
  assert result, "\n".join(lines[-40:])
  return json.loads(result[-1][len("chief 0 | RESULT "):])


def test_under_parameter_servers_all_workers_share_one_queue():
  r = _run_ps_cluster()
  batches, size = 24, 50  # ps_queue_run.BATCHES, BATCH: batch k is ids k*1000+1..+50
  owner = {k * 1000 + i: r["workers"][k] for k in range(batches) for i in range(1, size + 1)}
  assert set(r["workers"]) == {0, 1}  # both workers ran steps
  # The ids table is split over both ps tasks: one queue, no per-worker copy.
  assert len(r["id_devices"]) == 2
  assert {d.split("/task:")[0] for d in r["id_devices"]} == {"/job:ps/replica:0"}
  # assign_add never loses an increment, whatever the interleaving.
  assert r["write_position"] == r["filled"] == batches * size
  assert r["sample_step"] == batches + 1
  # Every slot holds an enqueued id or, where two reservations overlapped, was
  # never written (0); no slot past the ids enqueued was touched.
  held = r["ids"][:batches * size]
  assert set(held) - {0} <= set(owner)
  assert not any(r["ids"][batches * size:])
  # A draw after all steps sees the ids both workers enqueued.
  drawn = {owner[i] for i in r["final_draw"] if i}
  assert drawn == {0, 1}
  # What a step draws while others write: enqueued ids, or 0 (not yet written).
  for draw in r["draws"]:
    assert set(draw) - {0} <= set(owner)


def test_per_edge_draws_are_independent_sets_of_queued_ids():
  queue = NegativeQueue(capacity=100, num_negatives=3, seed=1, logq_buckets=16)
  queue.enqueue(_ids(list(range(1, 41))))
  sample = queue.sample(count=tf.constant(5))
  ids = sample.ids.numpy()
  assert ids.shape == (5, 3) and sample.valid.numpy().all()
  assert sample.log_q.shape == (5, 3)
  assert set(ids.ravel()) <= set(range(1, 41))
  assert len({tuple(row) for row in ids}) > 1  # not one set repeated per edge
  assert queue.sample(count=0).ids.shape == (0, 3)
