"""Training: the run's settings (`config`), its input (`data_split`), offline fit
(`offline`), stream training (`stream`) with its periodic actions (`actions`),
evaluation, the model directory (`model_dir`), optimizers and distribution.

Sits above `egin_tf.models` and `egin_tf.serve` (stream exports), below the CLI.
"""
