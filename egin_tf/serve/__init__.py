"""Serving: SavedModel exports for TF Serving (`export`), the requests they answer
(`requests`), and trained embeddings read back by id (`embeddings`).

Sits above `egin_tf.models`, below `egin_tf.train` (whose stream trainer exports).
"""
