"""Masked pooling of padded sequences."""

from data_pipeline.tf_env import tf

_MODES = ("sum", "mean")


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class MaskedPooling(tf.keras.layers.Layer):
  """Pools [B, L, d] over L, ignoring padded positions.

  Inputs: ``values`` float [B, L, d] and ``mask`` bool [B, L]. Output [B, d].
  ``mode="sum"`` is the paper's DNN sum-pooling; ``"mean"`` divides by the number
  of valid positions (an empty row gives zeros).

  Example:

  ```python
  pool = MaskedPooling(mode="mean")
  values = tf.constant([[[1.0], [3.0], [9.0]]])  # [B, L, d]
  mask = tf.constant([[True, True, False]])      # the 9 is padding
  pooled = pool(values, mask)  # [[2.0]]
  ```
  """

  def __init__(self, mode: str = "sum", **kwargs):
    super().__init__(**kwargs)
    if mode not in _MODES:
      raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    self.mode = mode

  def call(self, values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    weights = tf.cast(mask, values.dtype)[..., tf.newaxis]
    pooled = tf.reduce_sum(values * weights, axis=-2)
    if self.mode == "mean":
      pooled = tf.math.divide_no_nan(pooled, tf.reduce_sum(weights, axis=-2))
    return pooled

  def get_config(self):
    config = super().get_config()
    config["mode"] = self.mode
    return config
