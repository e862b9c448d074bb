"""Training: the run's settings (`config`), its input (`model_input`, over
`data_pipeline.data_split`), offline fit (`offline`), stream training (`stream`)
with the periodic actions both use (`actions`), evaluation, the model directory
(`model_dir`), optimizers and distribution.

Sits above `egin_tf.models` and `egin_tf.serve` (stream exports), below the CLI.
"""

from data_pipeline.tf_env import ensure_legacy_keras

ensure_legacy_keras(__name__)  # first: Keras 2 (tf-keras) before anything uses tf.keras
