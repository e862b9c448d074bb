"""SimExtract: the multi-interest unit of EGIN (paper section 3.3).

``f = SimExtract(target, sequence)`` measures how a target (item or query) relates to
a history: the cosine similarity of the target against every history element, the
top-k most similar elements, each similarity binned into equal-width bins over
[-1, 1] and embedded, plus a positional embedding of the chosen element, the k
representations concatenated. EGIN uses it three times: target item vs clicks (i2i),
query vs query history (q2q) and query vs clicks (q2i).
"""

from typing import Callable, Dict, Optional, Tuple, Union

from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf

_BINNINGS = ("hard", "soft")
_POSITIONS = ("recency", "index")
# A vector whose squared norm is at or below this is treated as the zero vector: its
# cosine with anything is 0 and no gradient flows through it (never NaN).
_SQUARED_NORM_EPSILON = 1e-12
# Top-k score of masked elements: below every cosine, so padding is never preferred
# to a valid element.
_MASKED_SCORE = -3.0


def _check_choice(name: str, value, choices: Tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"SimExtract: {name} must be one of {choices}, got {value!r}")


def _masked_top_k(similarity: tf.Tensor, mask: tf.Tensor, k: int
                  ) -> Tuple[Callable[[tf.Tensor, object], tf.Tensor], tf.Tensor]:
  """The k most similar valid elements of each row of [B, L] ``similarity``.

  Returns ``(choose, raw_index)``: ``choose(values, fill)`` gathers [B, k] of a
  [B, L] tensor at the chosen elements (``fill`` in slots beyond L), and
  ``raw_index`` is each slot's int32 index into the sequence (meaningless where
  the slot is not valid, ``choose(mask, False)``).
  """
  # top_k puts the lower index first among equal scores; on the reversed sequence
  # that is the more recent element. Padding to at least k columns lets k exceed L.
  seq_len = tf.shape(similarity)[1]
  pad = [[0, 0], [0, tf.maximum(k - seq_len, 0)]]

  def reverse_and_pad(values, fill):
    return tf.pad(tf.reverse(values, axis=[1]), pad, constant_values=fill)

  scores = tf.where(mask, similarity, tf.cast(_MASKED_SCORE, similarity.dtype))
  _, reversed_index = tf.math.top_k(
      reverse_and_pad(scores, _MASKED_SCORE), k=k, sorted=True)  # [B, k]

  def choose(values, fill):
    return tf.gather(reverse_and_pad(values, fill), reversed_index, batch_dims=1)

  return choose, seq_len - 1 - reversed_index


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class SimExtract(tf.keras.layers.Layer):
  """Top-k cosine similarities of a target against a sequence, binned and embedded.

  Inputs:
    target: float [B, d].
    sequence: float [B, L, d]; L may be smaller than k (even 0).
    mask: bool [B, L], True for valid elements. When None, the Keras mask of
      ``sequence`` (e.g. from ``Embedding(mask_zero=True)``) is used, else every
      element is valid. Valid elements need not be contiguous.

  Output: float [B, k * embedding_dim], slot j (``[j * D, (j + 1) * D)``) describing
  the j-th most similar valid element. With ``return_details=True`` the call returns
  ``(output, details)``, ``details`` holding [B, k] tensors for inspection:
  ``similarity`` (the chosen cosines; 0 for empty slots), ``index`` (int32 raw
  index into the sequence; -1 for empty slots), ``position`` (int32 row of the
  positional table used, after clipping; -1 for empty slots or without
  ``positional``), ``bin`` (int32 equal-width bin of the similarity; -1 for empty
  slots) and ``valid`` (bool).

  Steps:
    1. cosine similarity of the target against each element. A zero vector (squared
       norm <= 1e-12) has similarity 0 with everything, with a finite (zero)
       gradient.
    2. masked top-k: padding is never chosen. Slots are ordered by similarity,
       descending; equal similarities put the more recent element (higher raw
       index) first. When fewer than k elements are valid, the remaining slots are
       "empty" and get a dedicated LEARNED ``empty_embedding`` (no positional
       term), so the model can tell a short history from a dissimilar one; a row
       without any valid element therefore gives the constant output
       ``tile(empty_embedding, k)``.
    3. binning: [-1, 1] is cut into ``num_bins`` equal-width bins (bin i is
       ``[-1 + i * w, -1 + (i + 1) * w)``, w = 2 / num_bins; similarity 1.0 falls in
       the last bin, -1.0 in the first), each with an embedding of
       ``embedding_dim``.
       * ``binning="hard"`` (the paper): the slot takes its bin's embedding. The
         bin index is an integer, so the CTR loss trains the bin (and positional)
         embeddings but sends NO gradient into ``target`` and ``sequence``: the
         embeddings that produced the similarities are not trained by this unit.
       * ``binning="soft"``: the embedding is interpolated linearly between the two
         nearest bin centers (``-1 + (i + 0.5) * w``) by the similarity's distance to
         them, so the gradient flows through the similarity into ``target`` and
         ``sequence``. Beyond the outermost centers (within w / 2 of +-1) the first
         or last bin embedding is used unchanged (zero gradient there).
       The choice of the top-k elements itself is never differentiable.
    4. positional embedding (``positional=True``) of each chosen element, added to
       its bin embedding. ``position="recency"`` (default) numbers the valid
       elements from the most recent: 0 is the last valid element of the row,
       whatever the row's history length (the reader pads on the right, oldest
       first, so raw indices of recent clicks vary with history length).
       ``position="index"`` uses the raw index into the sequence, literally as in
       the paper. Positions >= ``max_positions`` share the table's last row.

  Weights (in ``get_weights`` order): ``bin_embeddings`` [num_bins, D],
  ``position_embeddings`` [max_positions, D] (only with ``positional``),
  ``empty_embedding`` [D].

  Example:

  ```python
  sim = SimExtract(k=2, embedding_dim=4)
  target = tf.random.normal([2, 8])     # e.g. the target item's vector [B, d]
  clicks = tf.random.normal([2, 5, 8])  # the click history's vectors [B, L, d]
  mask = tf.constant([[True] * 5, [True, True, False, False, False]])
  features = sim(target, clicks, mask)  # float32 [2, 2 * 4]
  ```
  """

  def __init__(self,
               k: int = 10,
               num_bins: int = 20,
               positional: bool = True,
               embedding_dim: int = 8,
               max_positions: int = 100,
               binning: str = "hard",
               position: str = "recency",
               embeddings_initializer: Union[
                   str, tf.keras.initializers.Initializer] = "uniform",
               **kwargs):
    """Creates the layer.

    Args:
      k: number of most similar elements kept.
      num_bins: equal-width bins over [-1, 1].
      positional: add a positional embedding of each chosen element.
      embedding_dim: D, the size of each slot.
      max_positions: rows of the positional table; larger positions use the last.
      binning: "hard" (integer bins, the paper) or "soft" (linear interpolation
        between bin centers, differentiable in the inputs).
      position: "recency" (0 = most recent valid element) or "index" (raw index).
      embeddings_initializer: initializer of all three embedding weights.
      **kwargs: passed to `tf.keras.layers.Layer`.
    """
    super().__init__(**kwargs)
    check_int("k", k, owner="SimExtract")
    check_int("num_bins", num_bins, owner="SimExtract")
    check_int("embedding_dim", embedding_dim, owner="SimExtract")
    check_int("max_positions", max_positions, owner="SimExtract")
    _check_choice("binning", binning, _BINNINGS)
    _check_choice("position", position, _POSITIONS)
    self.k = k
    self.num_bins = num_bins
    self.positional = bool(positional)
    self.embedding_dim = embedding_dim
    self.max_positions = max_positions
    self.binning = binning
    self.position = position
    self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)

  def _new_initializer(self) -> tf.keras.initializers.Initializer:
    # An unseeded Keras initializer instance returns the same values on every call;
    # one instance per weight keeps the three tables from starting out identical.
    initializer = self.embeddings_initializer
    return initializer.__class__.from_config(initializer.get_config())

  def build(self, input_shape):
    self.bin_embeddings = self.add_weight(
        name="bin_embeddings", shape=[self.num_bins, self.embedding_dim],
        initializer=self._new_initializer(), trainable=True)
    self.position_embeddings = None
    if self.positional:
      self.position_embeddings = self.add_weight(
          name="position_embeddings", shape=[self.max_positions, self.embedding_dim],
          initializer=self._new_initializer(), trainable=True)
    self.empty_embedding = self.add_weight(
        name="empty_embedding", shape=[self.embedding_dim],
        initializer=self._new_initializer(), trainable=True)
    super().build(input_shape)

  def call(self,
           target: tf.Tensor,
           sequence: tf.Tensor,
           mask: Optional[tf.Tensor] = None,
           return_details: bool = False
           ) -> Union[tf.Tensor, Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
    target, sequence, mask = self._checked_inputs(target, sequence, mask)
    similarity = self._cosine(target, sequence)  # [B, L]
    if self.binning == "hard":
      # Integer bins carry no gradient anyway; cutting here makes that explicit and
      # spares the backward pass through the cosine.
      similarity = tf.stop_gradient(similarity)
    choose, raw_index = _masked_top_k(similarity, mask, self.k)
    valid = choose(mask, False)
    chosen_similarity = tf.where(valid, choose(similarity, 0.0),
                                 tf.zeros([], similarity.dtype))
    empty = -tf.ones_like(raw_index)
    bin_index, slots = self._bin_slots(chosen_similarity)
    position_index = empty
    if self.positional:
      position_index = tf.minimum(
          choose(self._positions(mask), 0), self.max_positions - 1)
      slots += tf.gather(self.position_embeddings, position_index)
    slots = tf.where(valid[..., tf.newaxis], slots, self.empty_embedding)
    output = tf.reshape(slots, [-1, self.k * self.embedding_dim])
    if not return_details:
      return output
    details = {
        "similarity": chosen_similarity,
        "index": tf.where(valid, raw_index, empty),
        "position": tf.where(valid, position_index, empty),
        "bin": tf.where(valid, bin_index, empty),
        "valid": valid,
    }
    return output, details

  def _checked_inputs(self, target, sequence, mask
                      ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """target and sequence in the compute dtype, and a bool [B, L] mask (the Keras
    mask of ``sequence`` when none is given, else all valid); shapes checked."""
    if mask is None:
      mask = getattr(sequence, "_keras_mask", None)
    target = tf.cast(tf.convert_to_tensor(target), self.compute_dtype)
    sequence = tf.cast(tf.convert_to_tensor(sequence), self.compute_dtype)
    if mask is None:
      mask = tf.ones(tf.shape(sequence)[:2], dtype=tf.bool)
    else:
      mask = tf.convert_to_tensor(mask)
      if mask.dtype != tf.bool:
        mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
    self._check_shapes(target, sequence, mask)
    return target, sequence, mask

  def _bin_slots(self, similarity: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """[B, k] similarities -> (int32 hard bin [B, k], bin embeddings [B, k, D])."""
    scaled = (similarity + 1.0) * (self.num_bins / 2.0)  # in [0, num_bins]
    bin_index = tf.clip_by_value(
        tf.cast(tf.floor(scaled), tf.int32), 0, self.num_bins - 1)
    if self.binning == "hard":
      return bin_index, tf.gather(self.bin_embeddings, bin_index)
    return bin_index, self._interpolate_bins(scaled)

  def _check_shapes(self, target, sequence, mask) -> None:
    prefix = f"SimExtract {self.name!r}:"
    if target.shape.rank is not None and target.shape.rank != 2:
      raise ValueError(f"{prefix} target must be [B, d], got shape {target.shape}")
    if sequence.shape.rank is not None and sequence.shape.rank != 3:
      raise ValueError(
          f"{prefix} sequence must be [B, L, d], got shape {sequence.shape}")
    if not target.shape[-1:].is_compatible_with(sequence.shape[-1:]):
      raise ValueError(
          f"{prefix} target and sequence embeddings differ in size: target "
          f"{target.shape}, sequence {sequence.shape}")
    if mask.shape.rank is not None and (
        mask.shape.rank != 2 or not mask.shape.is_compatible_with(sequence.shape[:2])):
      raise ValueError(
          f"{prefix} mask must be bool [B, L] matching sequence {sequence.shape}, got "
          f"shape {mask.shape} (without mask=, Keras passes the Keras mask of target, "
          "e.g. from Embedding(mask_zero=True); pass mask= explicitly)")

  def _cosine(self, target: tf.Tensor, sequence: tf.Tensor) -> tf.Tensor:
    """Cosine of target [B, d] with each element of sequence [B, L, d]: [B, L]."""
    dot = tf.einsum("bd,bld->bl", target, sequence)
    target_sq = tf.reduce_sum(tf.square(target), axis=-1, keepdims=True)  # [B, 1]
    sequence_sq = tf.reduce_sum(tf.square(sequence), axis=-1)  # [B, L]
    target_ok = target_sq > _SQUARED_NORM_EPSILON
    sequence_ok = sequence_sq > _SQUARED_NORM_EPSILON
    one = tf.ones([], dot.dtype)
    # The rsqrt of a zero norm is never evaluated, so neither the value nor the
    # gradient of the unused branch of the outer where can be inf or NaN.
    inverse_norms = (tf.math.rsqrt(tf.where(target_ok, target_sq, one)) *
                     tf.math.rsqrt(tf.where(sequence_ok, sequence_sq, one)))
    similarity = tf.where(target_ok & sequence_ok, dot * inverse_norms,
                          tf.zeros([], dot.dtype))
    # Rounding can overshoot |cos| = 1 by an ulp; the bins expect [-1, 1].
    return tf.clip_by_value(similarity, -1.0, 1.0)

  def _interpolate_bins(self, scaled: tf.Tensor) -> tf.Tensor:
    """Soft binning: [B, k] similarities scaled to [0, num_bins] -> [B, k, D]."""
    # Coordinate in units of bins, 0 at the first bin center.
    center_coordinate = tf.clip_by_value(scaled - 0.5, 0.0, self.num_bins - 1.0)
    lower = tf.floor(center_coordinate)
    upper_weight = (center_coordinate - lower)[..., tf.newaxis]
    lower_index = tf.cast(lower, tf.int32)
    upper_index = tf.minimum(lower_index + 1, self.num_bins - 1)
    return ((1.0 - upper_weight) * tf.gather(self.bin_embeddings, lower_index) +
            upper_weight * tf.gather(self.bin_embeddings, upper_index))

  def _positions(self, mask: tf.Tensor) -> tf.Tensor:
    """Position of every element of a [B, L] mask (before clipping): int32 [B, L]."""
    if self.position == "recency":
      # Number of valid elements after this one: 0 for the most recent.
      return tf.cumsum(tf.cast(mask, tf.int32), axis=1, exclusive=True, reverse=True)
    return tf.broadcast_to(tf.range(tf.shape(mask)[1])[tf.newaxis], tf.shape(mask))

  def compute_mask(self, inputs, mask=None):
    # The output is one dense vector per row; the sequence mask is consumed here.
    return None

  def compute_output_shape(self, input_shape):
    batch = tf.TensorShape(input_shape)[0]
    return tf.TensorShape([batch, self.k * self.embedding_dim])

  def get_config(self):
    config = super().get_config()
    config.update({
        "k": self.k,
        "num_bins": self.num_bins,
        "positional": self.positional,
        "embedding_dim": self.embedding_dim,
        "max_positions": self.max_positions,
        "binning": self.binning,
        "position": self.position,
        "embeddings_initializer": tf.keras.initializers.serialize(
            self.embeddings_initializer),
    })
    return config
