"""The ``egin-tf`` command line (absl flags live only here)."""

import os

# Quiet TensorFlow's C++ logs on the command line (set before TensorFlow loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from data_pipeline.tf_env import ensure_legacy_keras  # noqa: E402

ensure_legacy_keras(__name__)  # first: Keras 2 before anything uses tf.keras
