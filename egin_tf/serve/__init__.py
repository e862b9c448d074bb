"""Serving: SavedModel exports for TF Serving (`export`), the requests they answer
(`requests`), and trained embeddings read back by id (`embeddings`).

Sits above `egin_tf.models`, below `egin_tf.train` (whose stream trainer exports).
"""

from data_pipeline.tf_env import ensure_legacy_keras

ensure_legacy_keras(__name__)  # first: Keras 2 (tf-keras) before anything uses tf.keras
