"""egin-tf: EGIN (Light-weight End-to-End Graph Interest Network) in TF2 / Keras 2.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow loads, because
tensorflow-recommenders 0.7.7 needs Keras 2; it fails with a clear ImportError if
TensorFlow was already bound to Keras 3.
"""

from data_pipeline import tf_env  # noqa: F401  first: before anything imports tensorflow

__version__ = "0.1.0"
