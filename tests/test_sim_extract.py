"""Tests of SimExtract against hand-computed cosines, bins and embeddings."""

from data_pipeline.tf_env import tf
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from egin_tf.layers.sim_extract import SimExtract

SQRT3 = np.sqrt(3.0)
EMPTY = [-7.0, -7.0]


def _layer(num_bins: int = 5, max_positions: int = 10, **kwargs) -> SimExtract:
  """A layer with D=2 and recognisable weights.

  Bin j embeds to [100 * (j + 1), 0], position p to [0, p + 1], empty slots to
  [-7, -7]: every output slot reads back as (bin + 1) * 100 and position + 1.
  """
  layer = SimExtract(num_bins=num_bins, embedding_dim=2, max_positions=max_positions,
                     **kwargs)
  layer.build(None)
  weights = [np.array([[100.0 * (j + 1), 0.0] for j in range(num_bins)])]
  if layer.positional:
    weights.append(np.array([[0.0, p + 1.0] for p in range(max_positions)]))
  weights.append(np.array(EMPTY))
  layer.set_weights(weights)
  return layer


def _np(details):
  return {name: value.numpy() for name, value in details.items()}


# Target (1, 0) against elements at known angles; element 5 is padding that would
# win (cosine 1) if the mask were ignored.
TARGET = np.array([[1.0, 0.0]], np.float32)
SEQUENCE = np.array([[[0, 1],          # 0: 90 deg, cos 0      -> bin 2 of 5
                      [1, SQRT3],      # 1: 60 deg, cos 0.5    -> bin 3
                      [-2, 0],         # 2: 180 deg, cos -1    -> bin 0
                      [3, 0],          # 3: 0 deg, cos 1       -> bin 4
                      [1, 1],          # 4: 45 deg, cos 0.7071 -> bin 4
                      [5, 0]]],        # 5: padding
                    np.float32)
MASK = np.array([[True, True, True, True, True, False]])


@pytest.mark.parametrize("position, positions", [
    ("recency", [1, 0, 3]),  # 5 valid elements: recency of raw index i is 4 - i
    ("index", [3, 4, 1]),
])
def test_hand_computed_top_k_bins_and_output(position, positions):
  layer = _layer(k=3, position=position)
  output, details = layer(TARGET, SEQUENCE, MASK, return_details=True)
  details = _np(details)
  np.testing.assert_array_equal(details["index"], [[3, 4, 1]])
  np.testing.assert_allclose(details["similarity"], [[1.0, np.sqrt(0.5), 0.5]],
                             atol=1e-6)
  np.testing.assert_array_equal(details["bin"], [[4, 4, 3]])
  np.testing.assert_array_equal(details["position"], [positions])
  np.testing.assert_array_equal(details["valid"], [[True, True, True]])
  expected = [500, positions[0] + 1, 500, positions[1] + 1, 400, positions[2] + 1]
  np.testing.assert_allclose(output.numpy(), [expected])
  assert output.shape == (1, 6)


def test_without_positional_embedding_only_bins():
  layer = _layer(k=3, positional=False)
  assert len(layer.get_weights()) == 2
  output, details = layer(TARGET, SEQUENCE, MASK, return_details=True)
  np.testing.assert_allclose(output.numpy(), [[500, 0, 500, 0, 400, 0]])
  np.testing.assert_array_equal(details["position"].numpy(), [[-1, -1, -1]])


def test_fewer_valid_than_k_and_a_hole_in_the_mask():
  # L = 3 < k = 4; element 1 (cos 1) is masked out in the middle of the row.
  sequence = np.array([[[0, 1], [1, 0], [-1, 1]]], np.float32)
  mask = np.array([[True, False, True]])
  layer = _layer(k=4)
  output, details = layer(TARGET, sequence, mask, return_details=True)
  details = _np(details)
  np.testing.assert_array_equal(details["index"], [[0, 2, -1, -1]])
  np.testing.assert_array_equal(details["valid"], [[True, True, False, False]])
  np.testing.assert_array_equal(details["bin"], [[2, 0, -1, -1]])  # cos 0, -0.71
  np.testing.assert_array_equal(details["position"], [[1, 0, -1, -1]])
  np.testing.assert_allclose(details["similarity"], [[0, -np.sqrt(0.5), 0, 0]],
                             atol=1e-6)
  np.testing.assert_allclose(output.numpy(), [[300, 2, 100, 1] + EMPTY + EMPTY])


@pytest.mark.parametrize("length", [0, 3])
def test_all_masked_rows_give_the_constant_empty_output(length):
  rng = np.random.default_rng(0)
  target = rng.normal(size=[2, 2]).astype(np.float32)
  sequence = rng.normal(size=[2, length, 2]).astype(np.float32)
  output, details = _layer(k=3)(target, sequence, np.zeros([2, length], bool),
                                return_details=True)
  np.testing.assert_allclose(output.numpy(), [EMPTY * 3, EMPTY * 3])
  np.testing.assert_array_equal(details["index"].numpy(), -np.ones([2, 3]))


def test_ties_put_the_more_recent_element_first():
  sequence = np.array([[[1, 0], [2, 0], [0, 1], [3, 0]]], np.float32)
  _, details = _layer(k=4)(TARGET, sequence, return_details=True)
  np.testing.assert_array_equal(details["index"].numpy(), [[3, 1, 0, 2]])


def test_zero_vectors_have_similarity_zero_and_finite_zero_gradients():
  target = tf.constant([[0.0, 0.0], [1.0, 0.0]])
  sequence = tf.constant([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]],
                          [[0.0, 0.0], [1.0, 0.0], [-1.0, 1.0]]])
  layer = _layer(k=3, binning="soft")
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([target, sequence])
    output, details = layer(target, sequence, return_details=True)
    loss = tf.reduce_sum(output * tf.range(1.0, 7.0))
  details = _np(details)
  # Row 0: every cosine is 0 (zero target), so recency order breaks the tie.
  np.testing.assert_array_equal(details["index"], [[2, 1, 0], [1, 0, 2]])
  np.testing.assert_allclose(details["similarity"], [[0, 0, 0], [1, 0, -np.sqrt(0.5)]],
                             atol=1e-6)
  assert np.all(np.isfinite(output.numpy()))
  target_grad, sequence_grad = tape.gradient(loss, [target, sequence])
  assert np.all(np.isfinite(target_grad.numpy()))
  assert np.all(np.isfinite(sequence_grad.numpy()))
  np.testing.assert_array_equal(target_grad.numpy()[0], [0, 0])
  np.testing.assert_array_equal(sequence_grad.numpy()[0], np.zeros([3, 2]))
  np.testing.assert_array_equal(sequence_grad.numpy()[1, 0], [0, 0])
  # The valid non-zero pair (row 1, element 2, cos -0.71) does pass a gradient.
  assert np.any(sequence_grad.numpy()[1, 2] != 0)


def test_hard_binning_sends_no_gradient_to_the_inputs():
  target = tf.constant(TARGET)
  sequence = tf.constant(SEQUENCE)
  layer = _layer(k=3, binning="hard")
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([target, sequence])
    loss = tf.reduce_sum(layer(target, sequence, MASK) * tf.range(1.0, 7.0))
  assert tape.gradient(loss, target) is None
  assert tape.gradient(loss, sequence) is None
  # ... while its bin embeddings are trained: bins 4 (twice) and 3 are used.
  bin_grad = tf.convert_to_tensor(tape.gradient(loss, layer.bin_embeddings))
  np.testing.assert_allclose(bin_grad.numpy(),
                             [[0, 0], [0, 0], [0, 0], [5, 6], [1 + 3, 2 + 4]])


def test_soft_binning_interpolates_between_bin_centers():
  # 4 bins, centers -0.75, -0.25, 0.25, 0.75.
  layer = SimExtract(k=4, num_bins=4, embedding_dim=2, positional=False,
                     binning="soft")
  layer.build(None)
  bins = np.array([[1, 0], [0, 1], [2, 2], [4, -4]], np.float32)
  layer.set_weights([bins, np.array(EMPTY)])
  sequence = np.array([[[0, 1],           # cos 0:   halfway bins 1 and 2
                        [-1, 0],          # cos -1:  below the first center -> bin 0
                        [1, SQRT3],       # cos 0.5: halfway bins 2 and 3
                        [0.6, 0.8]]],     # cos 0.6: 0.3 * bin 2 + 0.7 * bin 3
                      np.float32)
  output = layer(TARGET, sequence)
  expected = [0.3 * bins[2] + 0.7 * bins[3], 0.5 * bins[2] + 0.5 * bins[3],
              0.5 * bins[1] + 0.5 * bins[2], bins[0]]
  np.testing.assert_allclose(output.numpy(), [np.concatenate(expected)], atol=1e-5)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_bin_edges(binning):
  # cos 1 -> last bin, cos -1 -> first bin; cos 0 sits on the edge between bins
  # 1 and 2 of 4 and belongs to the upper one (bins are [low, high)).
  sequence = np.array([[[2, 0], [-3, 0], [0, 4]]], np.float32)
  layer = _layer(num_bins=4, k=3, binning=binning, positional=False)
  output, details = layer(TARGET, sequence, return_details=True)
  np.testing.assert_array_equal(details["index"].numpy(), [[0, 2, 1]])
  np.testing.assert_array_equal(details["bin"].numpy(), [[3, 2, 0]])
  middle = 300 if binning == "hard" else 250  # soft: halfway centers 1 and 2
  np.testing.assert_allclose(output.numpy(), [[400, 0, middle, 0, 100, 0]])


def test_soft_binning_gradient_matches_finite_differences():
  # float64 so that central differences are precise. Element 3 is padding; k = 2
  # of the 3 valid elements are chosen (elements 0 and 2, cosines ~0.68 and ~0.66 in
  # row 0, ~0.72 and ~0.69 in row 1): all between the outermost bin centers and
  # away from every center, where the interpolation has kinks.
  layer = SimExtract(k=2, num_bins=6, embedding_dim=3, max_positions=4,
                     binning="soft", dtype="float64")
  layer.build(None)
  rng = np.random.default_rng(7)
  layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
  target = np.array([[1.0, 0.2, -0.3], [0.1, -1.0, 0.5]])
  sequence = np.array([[[0.6, 0.8, 0.1], [-0.2, 1.0, 0.3], [0.8, -0.6, -0.9],
                        [1.0, 0.2, -0.3]],
                       [[0.6, -0.5, 1.2], [1.0, 0.4, 0.2], [-0.5, -0.9, -0.1],
                        [0.0, 0.0, 1.0]]])
  mask = np.array([[True, True, True, False], [True, True, True, False]])
  weights = rng.normal(size=[2, 6])

  def loss(t, s):
    return tf.reduce_sum(layer(t, s, mask) * weights)

  _, details = layer(target, sequence, mask, return_details=True)
  similarity = details["similarity"].numpy()
  np.testing.assert_array_equal(details["index"].numpy(), [[0, 2], [0, 2]])
  centers = -1 + (np.arange(6) + 0.5) / 3
  assert np.min(np.abs(similarity[..., None] - centers)) > 0.1
  assert np.all(np.abs(similarity) < centers[-1])
  t, s = tf.constant(target), tf.constant(sequence)
  with tf.GradientTape() as tape:
    tape.watch([t, s])
    value = loss(t, s)
  target_grad, sequence_grad = [g.numpy() for g in tape.gradient(value, [t, s])]

  def numeric_gradient(array, other_first):
    grad = np.zeros_like(array)
    h = 1e-6
    for i in np.ndindex(array.shape):
      plus, minus = array.copy(), array.copy()
      plus[i] += h
      minus[i] -= h
      if other_first:
        up, down = loss(target, plus), loss(target, minus)
      else:
        up, down = loss(plus, sequence), loss(minus, sequence)
      grad[i] = (up.numpy() - down.numpy()) / (2 * h)
    return grad

  np.testing.assert_allclose(target_grad, numeric_gradient(target, False),
                             atol=1e-6)
  np.testing.assert_allclose(sequence_grad, numeric_gradient(sequence, True),
                             atol=1e-6)
  assert np.abs(target_grad).min() > 0
  np.testing.assert_array_equal(sequence_grad[:, 3], 0)  # padding
  assert np.abs(sequence_grad[:, :3]).sum() > 0.1


@pytest.mark.parametrize("position, expected_positions", [
    ("recency", [[0], [0]]),
    ("index", [[1], [2]]),  # raw indices 1 and 4; max_positions = 3 clips 4 to 2
])
def test_recency_and_index_positions_on_right_padded_rows(position,
                                                          expected_positions):
  # The most recent click is the most similar in both rows; row 0 has 2 valid
  # clicks, row 1 has 5, so only the recency position is the same for both.
  up, right = [0.0, 1.0], [1.0, 0.1]
  sequence = np.array([[up, right, [0, 0], [0, 0], [0, 0]],
                       [up, up, up, up, right]], np.float32)
  mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])  # int masks are accepted
  layer = _layer(k=1, position=position, max_positions=3)
  output, details = layer(np.array([[1, 0], [1, 0]], np.float32), sequence, mask,
                          return_details=True)
  np.testing.assert_array_equal(details["index"].numpy(), [[1], [4]])
  np.testing.assert_array_equal(details["position"].numpy(), expected_positions)
  np.testing.assert_allclose(
      output.numpy(), [[500, p[0] + 1] for p in expected_positions])


def test_keras_mask_of_the_sequence_is_used_when_no_mask_is_given():
  embedding = tf.keras.layers.Embedding(4, 2, mask_zero=True)
  embedding.build(None)
  embedding.set_weights([np.array([[1, 0], [0, 1], [-1, 0], [1, 1]], np.float32)])
  sequence = embedding(tf.constant([[1, 3, 0]]))  # id 0 (padding) matches target
  _, details = _layer(k=3)(TARGET, sequence, return_details=True)
  np.testing.assert_array_equal(details["index"].numpy(), [[1, 0, -1]])


def test_config_round_trip_and_same_outputs():
  layer = _layer(k=2, binning="soft", position="index", max_positions=7)
  config = layer.get_config()
  clone = SimExtract.from_config(config)
  assert clone.get_config() == config
  assert (clone.k, clone.binning, clone.position, clone.max_positions) == (
      2, "soft", "index", 7)
  clone.build(None)
  clone.set_weights(layer.get_weights())
  np.testing.assert_allclose(clone(TARGET, SEQUENCE, MASK).numpy(),
                             layer(TARGET, SEQUENCE, MASK).numpy())


def test_tf_function_with_unknown_batch_and_length():
  layer = _layer(k=3)
  traced = tf.function(
      lambda t, s, m: layer(t, s, m),
      input_signature=[tf.TensorSpec([None, 2], tf.float32),
                       tf.TensorSpec([None, None, 2], tf.float32),
                       tf.TensorSpec([None, None], tf.bool)])
  short = np.array([[[0, 1], [1, 0]]], np.float32)  # L = 2 < k
  np.testing.assert_allclose(traced(TARGET, short, np.ones([1, 2], bool)).numpy(),
                             [[500, 1, 300, 2] + EMPTY])
  batch = np.concatenate([TARGET] * 3), np.concatenate([SEQUENCE] * 3)
  output = traced(*batch, np.concatenate([MASK] * 3))
  np.testing.assert_allclose(output.numpy(), [[500, 2, 500, 1, 400, 4]] * 3)


def test_functional_keras_model():
  target = tf.keras.Input([2])
  sequence = tf.keras.Input([None, 2])
  mask = tf.keras.Input([None], dtype=tf.bool)
  layer = SimExtract(k=3, num_bins=5, embedding_dim=2)
  model = tf.keras.Model([target, sequence, mask], layer(target, sequence, mask=mask))
  assert model.output_shape == (None, 6)
  np.testing.assert_allclose(model.predict([TARGET, SEQUENCE, MASK], verbose=0),
                             layer(TARGET, SEQUENCE, MASK).numpy(), rtol=1e-6)
  rebuilt = tf.keras.Model.from_config(model.get_config(),
                                       custom_objects={"SimExtract": SimExtract})
  rebuilt.set_weights(model.get_weights())
  np.testing.assert_allclose(rebuilt([TARGET, SEQUENCE, MASK]).numpy(),
                             model([TARGET, SEQUENCE, MASK]).numpy())


@pytest.mark.parametrize("kwargs, message", [
    ({"binning": "linear"}, "binning must be one of"),
    ({"position": "time"}, "position must be one of"),
    ({"k": 0}, "SimExtract: k must be an int >= 1, got 0"),
    ({"num_bins": 2.5}, "SimExtract: num_bins must be an int >= 1, got 2.5"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SimExtract(**kwargs)


@pytest.mark.parametrize("target, sequence, mask, message", [
    (np.zeros([1, 3]), np.zeros([1, 4, 2]), None, "differ in size"),
    (np.zeros([1, 1, 2]), np.zeros([1, 4, 2]), None, r"target must be \[B, d\]"),
    (np.zeros([1, 2]), np.zeros([1, 2]), None, r"sequence must be \[B, L, d\]"),
    (np.zeros([1, 2]), np.zeros([1, 4, 2]), np.ones([1, 3], bool),
     r"mask must be bool \[B, L\]"),
])
def test_bad_input_shapes(target, sequence, mask, message):
  with pytest.raises(ValueError, match=message):
    SimExtract(k=2, name="i2i")(target.astype(np.float32),
                                sequence.astype(np.float32), mask)


def _reference(layer, target, sequence, mask):
  """A loop-by-loop numpy SimExtract, written from the docstring."""
  weights = layer.get_weights()
  bins, empty = weights[0], weights[-1]
  num_bins, k = layer.num_bins, layer.k
  rows = []
  for b in range(target.shape[0]):
    t = target[b]
    cosines = []
    for s in sequence[b]:
      norms = np.linalg.norm(t) * np.linalg.norm(s)
      cosines.append(t @ s / norms if norms > 0 else 0.0)
    valid = [i for i in range(len(cosines)) if mask[b, i]]
    chosen = sorted(valid, key=lambda i: (-cosines[i], -i))[:k]
    slots = []
    for i in chosen:
      scaled = (cosines[i] + 1) * num_bins / 2
      if layer.binning == "hard":
        slot = bins[min(int(np.floor(scaled)), num_bins - 1)].copy()
      else:
        u = np.clip(scaled - 0.5, 0, num_bins - 1)
        low = int(np.floor(u))
        high = min(low + 1, num_bins - 1)
        slot = (1 - (u - low)) * bins[low] + (u - low) * bins[high]
      if layer.positional:
        position = sum(mask[b, i + 1:]) if layer.position == "recency" else i
        slot = slot + weights[1][min(position, layer.max_positions - 1)]
      slots.append(slot)
    slots += [empty] * (k - len(chosen))
    rows.append(np.concatenate(slots))
  return np.array(rows)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       length=st.integers(0, 7),
       k=st.integers(1, 5),
       num_bins=st.integers(1, 9),
       binning=st.sampled_from(["hard", "soft"]),
       position=st.sampled_from(["recency", "index"]),
       positional=st.booleans())
def test_matches_a_numpy_reference(seed, length, k, num_bins, binning, position,
                                   positional):
  rng = np.random.default_rng(seed)
  batch, dim = 3, 3
  target = rng.normal(size=[batch, dim])
  sequence = rng.normal(size=[batch, length, dim])
  target[0] = 0  # zero vectors are part of the contract
  sequence[1, :1] = 0
  mask = rng.random([batch, length]) < 0.7
  layer = SimExtract(k=k, num_bins=num_bins, embedding_dim=2, max_positions=3,
                     binning=binning, position=position, positional=positional,
                     dtype="float64")
  layer.build(None)
  layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
  np.testing.assert_allclose(layer(target, sequence, mask).numpy(),
                             _reference(layer, target, sequence, mask), atol=1e-9)
