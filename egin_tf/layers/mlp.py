"""The multi-layer perceptron that every CTR model ends in."""

from typing import Optional, Sequence

from data_pipeline.tf_env import tf


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class MLP(tf.keras.layers.Layer):
  """Dense layers ending in one logit.

  Input float [B, F]. Output float [B] (logits; apply a sigmoid for pctr).
  """

  def __init__(self, hidden_units: Sequence[int] = (200, 80),
               activation: str = "relu", dropout: float = 0.0,
               use_batch_norm: bool = False,
               kernel_regularizer: Optional[tf.keras.regularizers.Regularizer] = None,
               **kwargs):
    super().__init__(**kwargs)
    self.hidden_units = list(hidden_units)
    self.activation = activation
    self.dropout = dropout
    self.use_batch_norm = use_batch_norm
    self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)
    self._layers = []
    for units in self.hidden_units:
      if use_batch_norm:
        self._layers.append(tf.keras.layers.BatchNormalization())
      self._layers.append(tf.keras.layers.Dense(
          units, activation=activation,
          kernel_regularizer=self.kernel_regularizer))
      if dropout:
        self._layers.append(tf.keras.layers.Dropout(dropout))
    self._logit = tf.keras.layers.Dense(1, kernel_regularizer=self.kernel_regularizer)

  def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
    x = inputs
    for layer in self._layers:
      x = layer(x, training=training)
    return tf.squeeze(self._logit(x), axis=-1)

  def get_config(self):
    config = super().get_config()
    config.update({
        "hidden_units": self.hidden_units,
        "activation": self.activation,
        "dropout": self.dropout,
        "use_batch_norm": self.use_batch_norm,
        "kernel_regularizer": (tf.keras.regularizers.serialize(self.kernel_regularizer)
                               if self.kernel_regularizer else None),
    })
    return config
