"""TensorFlow for the whole project, and Keras 2 (tf-keras) for the trainer only.

``tf`` is TensorFlow as the process has it. Importing it never changes which
Keras ``tf.keras`` is: since TF 2.16 ``tf.keras`` is a lazy loader that binds to
Keras 3, or to Keras 2 (the tf-keras package) when ``TF_USE_LEGACY_KERAS`` is
set, at its first use. So `data_pipeline` and `egin_tf.layers` work in a user's
Keras 3 process as in a tf-keras one: the layers subclass whatever ``tf.keras``
is there.

The trainer needs Keras 2, because tensorflow-recommenders 0.7.7 refuses Keras
3: its packages (`egin_tf.models`, `egin_tf.eges`, `egin_tf.serve`,
`egin_tf.train`, `egin_tf.cli`) call `ensure_legacy_keras` before anything uses
``tf.keras``.
"""

import os

import tensorflow as tf

_MESSAGE = (
    "{module} needs TensorFlow's Keras 2 (the tf-keras package: tensorflow-recommenders "
    "0.7.7 refuses Keras 3), but this process already uses tf.keras as {bound} (Keras 3); "
    "import {module} before anything uses tf.keras or keras, or set TF_USE_LEGACY_KERAS=1 "
    "before starting Python (egin_tf.layers alone works with Keras 3)"
)


def keras_is_bound() -> bool:
  """Whether ``tf.keras`` has already chosen its Keras (it does at its first use)."""
  # The lazy loader's own flag, read without triggering the binding.
  return bool(getattr(tf.keras, "_tfll_initialized", True))


def ensure_legacy_keras(needed_by: str):
  """Binds ``tf.keras`` to Keras 2 unless it is bound already, and checks it is.

  Sets ``TF_USE_LEGACY_KERAS=1`` only while ``tf.keras`` is still unbound, so a
  process that already uses Keras 3 is told, not changed.

  Args:
    needed_by: the module that needs Keras 2, named in the error.

  Returns:
    TensorFlow, with ``tf.keras`` bound to tf-keras.

  Raises:
    ImportError: ``tf.keras`` is already Keras 3 in this process (one line).
  """
  if not keras_is_bound():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
  bound = getattr(tf.keras, "__name__", "")
  if not bound.startswith("tf_keras"):
    raise ImportError(_MESSAGE.format(module=needed_by, bound=bound or "unknown"))
  return tf
