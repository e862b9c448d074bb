"""The multi-layer perceptron that every CTR model ends in."""

from typing import Optional, Sequence

from data_pipeline.tf_env import tf


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class MLP(tf.keras.layers.Layer):
  """Dense layers ending in one logit.

  Input float [B, F]. Output float [B] (logits; apply a sigmoid for pctr).

  Example:

  ```python
  mlp = MLP(hidden_units=(16, 8), dropout=0.1)
  features = tf.random.normal([2, 12])  # e.g. concatenated embeddings [B, F]
  logits = mlp(features, training=True)  # float32 [2]
  pctr = tf.sigmoid(logits)
  ```
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
    # Not ``_layers``: that is Keras 3's own list of a layer's sublayers, and
    # replacing it loses these layers from `.keras` saving.
    self.hidden = []
    for units in self.hidden_units:
      if use_batch_norm:
        self.hidden.append(tf.keras.layers.BatchNormalization())
      self.hidden.append(tf.keras.layers.Dense(
          units, activation=activation,
          kernel_regularizer=self.kernel_regularizer))
      if dropout:
        self.hidden.append(tf.keras.layers.Dropout(dropout))
    self._logit = tf.keras.layers.Dense(1, kernel_regularizer=self.kernel_regularizer)

  def build(self, input_shape):
    # Every sublayer built here, not on first call, so Keras 3 can load saved
    # weights into them.
    shape = tf.TensorShape(input_shape)
    for layer in self.hidden + [self._logit]:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
    x = inputs
    for layer in self.hidden:
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
