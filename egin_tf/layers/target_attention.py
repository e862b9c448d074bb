"""DIN's target attention: a history weighted by its relevance to a target.

The activation unit of DIN (Zhou et al., 2018) scores each history entry k against
the target q with a small MLP on ``[q, k, q - k, q * k]`` and outputs ONE weight per
entry. As in the DIN paper the weights are not normalized by a softmax, so the
pooled vector keeps the intensity of the user's interest (more relevant clicks give
a longer vector). Padded entries get weight 0.
"""

from typing import Sequence

from data_pipeline.tf_env import tf


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class TargetAttention(tf.keras.layers.Layer):
  """Attention pooling of a padded history by a target (DIN's activation unit).

  Inputs:
    target: float [B, d], the target item (or current query).
    history: float [B, L, d], the history entries, right-padded.
    mask: bool [B, L], True for real entries.
  Output: float [B, d], ``sum_l w[b, l] * history[b, l]`` with
  ``w[b, l] = unit([q, k, q - k, q * k]) * mask[b, l]``; with
  ``return_weights=True`` the tuple (pooled [B, d], weights [B, L]).

  Args:
    hidden_units: widths of the activation unit's hidden layers (DIN uses 36).
    activation: their activation, a Keras activation name or ``"prelu"``.
    return_weights: also return the attention weights, for inspection.

  Example:

  ```python
  attention = TargetAttention(hidden_units=(8,))
  target = tf.random.normal([2, 4])      # the target item's vector [B, d]
  clicks = tf.random.normal([2, 3, 4])   # the click history [B, L, d]
  mask = tf.constant([[True, True, False], [True, False, False]])
  interest = attention(target, clicks, mask)  # float32 [2, 4]
  ```
  """

  def __init__(self, hidden_units: Sequence[int] = (36,),
               activation: str = "sigmoid", return_weights: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    self.hidden_units = list(hidden_units)
    self.activation = activation
    self.return_weights = return_weights
    self._hidden = []
    for i, units in enumerate(self.hidden_units):
      # PReLU has a learned slope, so it is a layer rather than a function.
      if activation == "prelu":
        self._hidden.append(tf.keras.layers.Dense(units, name=f"hidden_{i}"))
        self._hidden.append(tf.keras.layers.PReLU(name=f"prelu_{i}"))
      else:
        self._hidden.append(tf.keras.layers.Dense(units, activation=activation,
                                                  name=f"hidden_{i}"))
    self._score = tf.keras.layers.Dense(1, name="score")

  def attention_weights(self, target: tf.Tensor, history: tf.Tensor,
                        mask: tf.Tensor) -> tf.Tensor:
    """The weights w: [B, d], [B, L, d], [B, L] -> float [B, L] (0 on padding)."""
    query = tf.broadcast_to(target[:, tf.newaxis, :], tf.shape(history))
    x = tf.concat([query, history, query - history, query * history], axis=-1)
    for layer in self._hidden:
      x = layer(x)
    weights = tf.squeeze(self._score(x), axis=-1)
    return weights * tf.cast(mask, weights.dtype)

  def build(self, target_shape, history_shape=None, mask_shape=None):
    """Builds the activation unit, whose input is [B, L, 4d]; building here, not
    on first call, lets Keras 3 load saved weights into it. (tf-keras passes
    only the target's shape; without L, the unit builds on first call.)"""
    if history_shape is not None:
      shape = tf.TensorShape(list(history_shape)[:-1] + [4 * int(target_shape[-1])])
      for layer in self._hidden + [self._score]:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    super().build(target_shape)

  def call(self, target: tf.Tensor, history: tf.Tensor, mask: tf.Tensor):
    weights = self.attention_weights(target, history, mask)
    pooled = tf.reduce_sum(weights[..., tf.newaxis] * history, axis=-2)
    if self.return_weights:
      return pooled, weights
    return pooled

  def get_config(self):
    config = super().get_config()
    config.update({
        "hidden_units": self.hidden_units,
        "activation": self.activation,
        "return_weights": self.return_weights,
    })
    return config
