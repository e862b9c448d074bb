"""Makes sure TensorFlow is imported with Keras 2 (tf_keras).

TensorFlow Recommenders 0.7.7 only works with Keras 2. Since TF 2.16, ``tf.keras``
resolves to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first
imported, so every package entry point imports this module before ``tensorflow``.
"""

import os

_MESSAGE = (
    "egin-tf needs TensorFlow with Keras 2 (the tf-keras package), because "
    "tensorflow-recommenders 0.7.7 refuses Keras 3. TensorFlow was already imported "
    "with tf.keras bound to {module} (Keras 3) before egin_tf/data_pipeline was imported. "
    "Import egin_tf (or data_pipeline) before tensorflow, or set the environment "
    "variable TF_USE_LEGACY_KERAS=1 before starting Python."
)


def ensure_legacy_keras():
  """Sets TF_USE_LEGACY_KERAS=1 and checks that ``tf.keras`` is Keras 2.

  Raises:
    ImportError: TensorFlow was imported earlier with ``tf.keras`` bound to Keras 3.
  """
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  # tf.keras is a lazy loader that binds to Keras 2 or 3 on first use, by the variable.
  bound_to = getattr(tf.keras, "__name__", "")
  if not bound_to.startswith("tf_keras"):
    raise ImportError(_MESSAGE.format(module=bound_to or "unknown"))
  return tf


tf = ensure_legacy_keras()
