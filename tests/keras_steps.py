"""What a user's Keras model code needs to run under Keras 3 and tf-keras alike,
for the layer tests that run under both (test_layer_saving.py,
test_layer_training_state.py; see conftest.py)."""

from data_pipeline.tf_env import tf

# Which Keras ``tf.keras`` is in this process (conftest.py bound it, or left it
# to Keras 3 under EGIN_TF_TEST_KERAS=3).
KERAS3 = not tf.keras.__name__.startswith("tf_keras")


@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class AddLosses(tf.keras.layers.Layer):
  """Returns its first input unchanged; in training, adds the sum of the others
  with ``add_loss`` (a Keras 3 functional model has no ``Model.add_loss`` on
  its symbolic tensors; a layer's own ``add_loss`` works in both Kerases)."""

  def call(self, output, losses, training=None):
    if training:
      self.add_loss(tf.add_n(list(losses)))
    return output


def optimizer_variables(optimizer) -> list:
  """The optimizer's variables (a method in tf-keras, a property in Keras 3)."""
  variables = optimizer.variables
  return list(variables() if callable(variables) else variables)


def scaled(optimizer, loss):
  """``loss`` as the gradients are taken of (inside the tape): Keras 3's
  LossScaleOptimizer needs it scaled; tf-keras's ``minimize`` scales itself."""
  return optimizer.scale_loss(loss) if KERAS3 else loss


def minimize(optimizer, tape, loss, variables):
  """One step on ``loss`` (from `scaled`) over ``variables``, in either Keras."""
  if KERAS3:  # apply_gradients unscales a LossScaleOptimizer's gradients
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
  else:
    optimizer.minimize(loss, variables, tape=tape)
