"""Tests of the graph softmax loss against an edge-by-edge numpy reference."""

import math

from data_pipeline.tf_env import tf
import numpy as np
import pytest

from egin_tf.layers.graph_edges import Edges, edge_list
from egin_tf.layers.graph_loss import (GraphSoftmaxLoss, edge_softmax_losses,
                                       per_edge_list_loss,
                                       mean_edge_loss, reverse_edges)

# Sequences of ids: anchors [B=2, Ls=3], positives [B=2, Ld=4] (0 = padding).
ANCHOR_IDS = np.array([[11, 12, 13], [14, 15, 0]], np.int64)
POSITIVE_IDS = np.array([[21, 22, 23, 24], [25, 21, 26, 0]], np.int64)
# Edge slots (src_pos, dst_pos), the same in every row; anchor 0 sits in 3 slots.
SRC_POS = np.array([0, 0, 0, 1, 1, 2, 2], np.int32)
DST_POS = np.array([0, 1, 3, 2, 0, 1, 3], np.int32)
MASK = np.array([[True, True, False, True, True, True, True],
                 [True, True, False, True, False, True, False]])
# 21 is drawn twice, 23 and 26 once: row 0 slot 0 and row 1 slot 1 (positive 21)
# have two accidental hits, row 0 slot 3 (23) and row 1 slot 3 (26) one.
NEGATIVE_IDS = np.array([21, 31, 23, 21, 32, 26], np.int64)
LOG_Q = np.log(np.array([0.3, 0.1, 0.05, 0.3, 0.2, 0.01]))


def _edges(mask=MASK, src_pos=SRC_POS, dst_pos=DST_POS,
           src_ids=ANCHOR_IDS, dst_ids=POSITIVE_IDS):
  return Edges(src=tf.constant(np.where(mask, src_ids[:, src_pos], 0)),
               dst=tf.constant(np.where(mask, dst_ids[:, dst_pos], 0)),
               mask=tf.constant(mask),
               src_pos=tf.constant(src_pos), dst_pos=tf.constant(dst_pos))


def _random(seed, scale=1.0, d=5):
  rng = np.random.default_rng(seed)
  anchors = scale * rng.normal(size=(2, 3, d))
  positives = scale * rng.normal(size=(2, 4, d))
  negatives = scale * rng.normal(size=(len(NEGATIVE_IDS), d))
  return anchors, positives, negatives


def _reference(anchors, positives, edges, negatives, negative_ids,
               log_q=None, valid=None):
  """Edge-by-edge float64 loss with explicit negatives and hit removal, [B, E]."""
  mask, dst = edges.mask.numpy(), edges.dst.numpy()
  src_pos, dst_pos = edges.src_pos.numpy(), edges.dst_pos.numpy()
  losses = np.zeros(mask.shape)
  for b in range(mask.shape[0]):
    for e in range(mask.shape[1]):
      if not mask[b, e]:
        continue
      a = anchors[b, src_pos[e]]
      logit = a @ positives[b, dst_pos[e]]
      denominator = math.exp(logit)
      for n, negative_id in enumerate(negative_ids):
        if negative_id == dst[b, e] or (valid is not None and not valid[n]):
          continue
        correction = 0.0 if log_q is None else log_q[n]
        denominator += math.exp(a @ negatives[n] - correction)
      losses[b, e] = -logit + math.log(denominator)
  return losses


def _naive_tf_mean(anchors, positives, edges, negatives, negative_ids, log_q=None):
  """The loss built the obvious way, with [B, E, d] and [B, E, N] tensors."""
  a = tf.gather(anchors, edges.src_pos, axis=1)
  p = tf.gather(positives, edges.dst_pos, axis=1)
  positive_logits = tf.reduce_sum(a * p, -1, keepdims=True)
  negative_logits = tf.einsum("bed,nd->ben", a, negatives)
  if log_q is not None:
    negative_logits -= log_q
  hit = edges.dst[:, :, tf.newaxis] == negative_ids
  negative_logits = tf.where(hit, -1e9, negative_logits)
  losses = -positive_logits[..., 0] + tf.reduce_logsumexp(
      tf.concat([positive_logits, negative_logits], -1), -1)
  mask = tf.cast(edges.mask, losses.dtype)
  return tf.reduce_sum(losses * mask) / tf.reduce_sum(mask)


def _tf(*arrays):
  return [tf.constant(x, tf.float32) for x in arrays]


@pytest.mark.parametrize("use_log_q", [False, True])
def test_matches_edge_by_edge_reference(use_log_q):
  anchors, positives, negatives = _random(seed=0)
  edges = _edges()
  log_q = LOG_Q if use_log_q else None
  got = edge_softmax_losses(*_tf(anchors, positives), edges, *_tf(negatives),
                            tf.constant(NEGATIVE_IDS),
                            None if log_q is None else tf.constant(log_q, tf.float32))
  expected = _reference(anchors, positives, edges, negatives, NEGATIVE_IDS, log_q)
  np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
  assert (got.numpy()[~MASK] == 0).all()
  # The hit removal matters here: the reference without it differs.
  no_removal = _reference(anchors, positives, edges, negatives,
                          np.array([-1] * len(NEGATIVE_IDS)), log_q)
  assert np.abs(no_removal - expected)[0, 0] > 0.01


def test_edges_with_one_and_two_hits_lose_exactly_those_negatives():
  # All embeddings equal 1-d ones: every logit is 1, so an edge's loss is
  # log(1 + number of negatives that are not its positive).
  got = edge_softmax_losses(tf.ones([2, 3, 1]), tf.ones([2, 4, 1]), _edges(),
                            tf.ones([6, 1]), tf.constant(NEGATIVE_IDS)).numpy()
  assert got[0, 0] == pytest.approx(math.log(1 + 4))  # positive 21, drawn twice
  assert got[0, 3] == pytest.approx(math.log(1 + 5))  # positive 23, drawn once
  assert got[0, 1] == pytest.approx(math.log(1 + 6))  # positive 22, never drawn
  assert got[1, 1] == pytest.approx(math.log(1 + 4))  # positive 21 in row 1
  assert got[1, 3] == pytest.approx(math.log(1 + 5))  # positive 26
  assert got[0, 2] == 0.0  # masked


def test_invalid_negatives_are_ignored():
  anchors, positives, negatives = _random(seed=1)
  valid = np.array([True, False, True, True, False, True])
  edges = _edges()
  got = edge_softmax_losses(*_tf(anchors, positives), edges, *_tf(negatives),
                            tf.constant(NEGATIVE_IDS),
                            negative_valid=tf.constant(valid))
  expected = _reference(anchors, positives, edges, negatives, NEGATIVE_IDS,
                        valid=valid)
  np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
  none_valid = edge_softmax_losses(*_tf(anchors, positives), edges, *_tf(negatives),
                                   tf.constant(NEGATIVE_IDS),
                                   negative_valid=tf.zeros([6], tf.bool))
  # -log(e^p / e^p) = 0, up to float32 rounding.
  np.testing.assert_allclose(none_valid.numpy(), np.zeros(MASK.shape), atol=1e-6)


def test_large_logits_stay_exact():
  anchors, positives, negatives = _random(seed=2, scale=12.0)  # logits in the 100s
  edges = _edges()
  got = edge_softmax_losses(*_tf(anchors, positives), edges, *_tf(negatives),
                            tf.constant(NEGATIVE_IDS), tf.constant(LOG_Q, tf.float32))
  expected = _reference_log_space(anchors, positives, edges, negatives, LOG_Q)
  assert np.isfinite(got.numpy()).all()
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-3)


def _reference_log_space(anchors, positives, edges, negatives, log_q):
  """`_reference` with log-sum-exp, for logits whose exp overflows float64."""
  mask, dst = edges.mask.numpy(), edges.dst.numpy()
  losses = np.zeros(mask.shape)
  for b, e in zip(*np.nonzero(mask)):
    a = anchors[b, edges.src_pos.numpy()[e]]
    logit = a @ positives[b, edges.dst_pos.numpy()[e]]
    logits = [logit] + [a @ negatives[n] - log_q[n]
                        for n in range(len(NEGATIVE_IDS)) if NEGATIVE_IDS[n] != dst[b, e]]
    top = max(logits)
    losses[b, e] = top - logit + math.log(sum(math.exp(x - top) for x in logits))
  return losses


def test_rare_hit_with_log_q_does_not_swamp_the_true_negatives():
  # The positive (id 5) is drawn with q = 1e-6, so its corrected mass is ~1e6 times
  # that of the only true negative; a loss that subtracted the hit's mass from the
  # total would lose the true negative to float32 rounding.
  anchors = np.array([[[1.0, 0.0]]])
  positives = np.array([[[0.5, 0.0]]])
  negatives = np.array([[0.5, 0.0], [-1.0, 0.0]])
  ids = np.array([5, 6], np.int64)
  log_q = np.log([1e-6, 0.5])
  edges = Edges(src=tf.constant([[1]], tf.int64), dst=tf.constant([[5]], tf.int64),
                mask=tf.constant([[True]]), src_pos=tf.constant([0], tf.int32),
                dst_pos=tf.constant([0], tf.int32))
  got = edge_softmax_losses(*_tf(anchors, positives), edges, *_tf(negatives),
                            tf.constant(ids), tf.constant(log_q, tf.float32))
  expected = -0.5 + math.log(math.exp(0.5) + math.exp(-1.0 - math.log(0.5)))
  assert got.numpy()[0, 0] == pytest.approx(expected, abs=1e-6)


def test_all_masked_batch_gives_zero_loss_and_finite_gradients():
  anchors, positives, negatives = _tf(*_random(seed=3))
  edges = _edges(mask=np.zeros_like(MASK))
  with tf.GradientTape() as tape:
    tape.watch([anchors, positives, negatives])
    loss = GraphSoftmaxLoss()(anchors, positives, edges, negatives,
                              tf.constant(NEGATIVE_IDS))
  grads = tape.gradient(loss, [anchors, positives, negatives])
  assert loss.numpy() == 0.0
  for grad in grads:
    grad = tf.convert_to_tensor(grad).numpy()
    assert np.isfinite(grad).all() and (grad == 0).all()


@pytest.mark.parametrize("use_log_q", [False, True])
def test_gradients_match_a_naive_implementation(use_log_q):
  anchors, positives, negatives = _tf(*_random(seed=4))
  edges = _edges()
  ids = tf.constant(NEGATIVE_IDS)
  log_q = tf.constant(LOG_Q, tf.float32) if use_log_q else None
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([anchors, positives, negatives])
    loss = GraphSoftmaxLoss()(anchors, positives, edges, negatives, ids, log_q)
    naive = _naive_tf_mean(anchors, positives, edges, negatives, ids, log_q)
  np.testing.assert_allclose(loss.numpy(), naive.numpy(), atol=1e-5)
  for variable in (anchors, positives, negatives):
    got = tf.convert_to_tensor(tape.gradient(loss, variable)).numpy()
    expected = tape.gradient(naive, variable).numpy()
    assert np.abs(got).max() > 1e-3  # every input receives a gradient
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_mean_is_over_real_edges_and_per_edge_losses_are_returned():
  anchors, positives, negatives = _random(seed=5)
  edges = _edges()
  mean, per_edge = GraphSoftmaxLoss()(*_tf(anchors, positives), edges, *_tf(negatives),
                                      tf.constant(NEGATIVE_IDS), return_per_edge=True)
  expected = _reference(anchors, positives, edges, negatives, NEGATIVE_IDS)
  assert mean.shape == []
  assert mean.numpy() == pytest.approx(expected[MASK].mean(), abs=1e-5)
  np.testing.assert_allclose(per_edge.numpy(), expected, atol=1e-5)
  assert mean_edge_loss(tf.ones([2, 3]), tf.zeros([2, 3], tf.bool)).numpy() == 0.0


def test_reversed_edges_score_the_other_direction():
  # item -> query: anchors are the positive sequence, positives the anchor ids.
  anchors, positives, negatives = _random(seed=6)
  reversed_edges = reverse_edges(_edges())
  assert reversed_edges.src_pos.numpy().tolist() == DST_POS.tolist()
  negative_ids = np.array([11, 41, 15, 15, 13, 42], np.int64)  # hits on sources
  got = edge_softmax_losses(*_tf(positives, anchors), reversed_edges, *_tf(negatives),
                            tf.constant(negative_ids))
  expected = _reference(positives, anchors, reversed_edges, negatives, negative_ids)
  np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_i2i_window_layout_inside_tf_function():
  # The i2i layout: slot j * 2w + o pairs j with j + d, d in (-1, 1); slots that
  # fall off the sequence are masked and their dst_pos is clipped.
  ids = np.array([[31, 32, 33, 0], [34, 35, 36, 37]], np.int64)
  src_pos = np.repeat(np.arange(4), 2).astype(np.int32)
  raw_dst = src_pos + np.tile([-1, 1], 4)
  dst_pos = np.clip(raw_dst, 0, 3).astype(np.int32)
  mask = ((raw_dst >= 0) & (raw_dst < 4))[np.newaxis] & (ids[:, src_pos] != 0) & (
      ids[:, dst_pos] != 0)
  edges = _edges(mask=mask, src_pos=src_pos, dst_pos=dst_pos, src_ids=ids,
                 dst_ids=ids)
  rng = np.random.default_rng(7)
  sequence = rng.normal(size=(2, 4, 3))
  negatives = rng.normal(size=(4, 3))
  negative_ids = np.array([32, 40, 36, 36], np.int64)
  loss = tf.function(GraphSoftmaxLoss())(
      *_tf(sequence, sequence), edges, *_tf(negatives), tf.constant(negative_ids))
  expected = _reference(sequence, sequence, edges, negatives, negative_ids)
  assert loss.numpy() == pytest.approx(expected[mask].mean(), abs=1e-5)


def test_bad_inputs_raise_clear_errors():
  anchors, positives, negatives = _tf(*_random(seed=8))
  ids = tf.constant(NEGATIVE_IDS)
  with pytest.raises(ValueError, match="same width"):
    edge_softmax_losses(anchors, positives, _edges(), negatives[:, :3], ids)
  with pytest.raises(ValueError, match=r"anchor_embeddings must be \[B, Ls, d\]"):
    edge_softmax_losses(anchors[0], positives, _edges(), negatives, ids)
  # Swapped roles without reverse_edges: dst_pos 3 is past the 3-long "positives".
  with pytest.raises(tf.errors.InvalidArgumentError, match="dst_pos points past"):
    edge_softmax_losses(positives, anchors, _edges(), negatives, ids)


@pytest.mark.parametrize("use_log_q", [False, True])
def test_edge_list_loss_equals_the_dense_mean_and_its_gradient(use_log_q):
  from egin_tf.layers.graph_edges import edge_list  # pylint: disable=g-import-not-at-top
  from egin_tf.layers.graph_loss import edge_list_loss  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  table = tf.Variable(rng.normal(size=(40, 5)).astype(np.float32))
  lookup = lambda ids: tf.gather(table, ids)  # noqa: E731
  edges = _edges()
  log_q = tf.constant(LOG_Q, tf.float32) if use_log_q else None
  negatives = tf.constant(NEGATIVE_IDS)
  with tf.GradientTape(persistent=True) as tape:
    dense = GraphSoftmaxLoss()(lookup(ANCHOR_IDS), lookup(POSITIVE_IDS), edges,
                               lookup(negatives), negatives, log_q)
    compact = edge_list_loss(lookup, lookup, edge_list(edges), lookup(negatives),
                             negatives, log_q)
  np.testing.assert_allclose(compact.numpy(), dense.numpy(), rtol=1e-5)
  np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(compact, table)),
                             tf.convert_to_tensor(tape.gradient(dense, table)),
                             rtol=1e-4, atol=1e-6)


def test_per_edge_negatives_on_a_hand_case():
  """Two edges, each with its own two negatives; an accidental hit is dropped."""
  # d = 1 so every logit is a product of scalars.
  vectors = tf.constant([[0.0], [1.0], [2.0], [0.5], [-1.0], [3.0]])  # ids 0..5

  def lookup(ids):
    return tf.gather(vectors, ids)

  edges = edge_list(Edges(src=tf.constant([[1, 2]], tf.int64),
                          dst=tf.constant([[3, 5]], tf.int64),
                          mask=tf.constant([[True, True]]),
                          src_pos=tf.constant([0, 1]), dst_pos=tf.constant([0, 1])))
  # Edge (1 -> 3): negatives 4 and 2; edge (2 -> 5): negatives 5 (a hit) and 4.
  negative_ids = tf.constant([[4, 2], [5, 4]], tf.int64)
  loss = per_edge_list_loss(lookup, lookup, edges, negative_ids)
  # Edge 1: logits 0.5 | -1, 2; edge 2: logit 6 | -2 (5 left out).
  first = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(-1) + math.exp(2)))
  second = -math.log(math.exp(6) / (math.exp(6) + math.exp(-2)))
  np.testing.assert_allclose(loss.numpy(), (first + second) / 2, rtol=1e-6)
  # An invalid negative counts for nothing: edge 1 without its negative 2.
  valid = tf.constant([[True, False], [True, True]])
  loss = per_edge_list_loss(lookup, lookup, edges, negative_ids,
                            negative_valid=valid)
  first = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(-1)))
  np.testing.assert_allclose(loss.numpy(), (first + second) / 2, rtol=1e-6)


def test_per_edge_loss_without_edges_is_zero():
  def lookup(ids):
    return tf.ones(tf.concat([tf.shape(ids), [3]], 0))

  edges = edge_list(Edges(src=tf.zeros([1, 2], tf.int64), dst=tf.zeros([1, 2], tf.int64),
                          mask=tf.zeros([1, 2], tf.bool),
                          src_pos=tf.constant([0, 1]), dst_pos=tf.constant([0, 1])))
  loss = per_edge_list_loss(lookup, lookup, edges, tf.zeros([0, 4], tf.int64))
  assert float(loss) == 0.0
