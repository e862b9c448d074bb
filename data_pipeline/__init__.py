"""Impression logs: schema, converters to TFRecords, the tf.data reader, simulator."""

from data_pipeline import tf_env  # noqa: F401  first: sets TF_USE_LEGACY_KERAS before TF loads
