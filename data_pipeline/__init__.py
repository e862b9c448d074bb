"""Impression logs: schema, converters to TFRecords, the tf.data reader, simulator."""

from data_pipeline import tf_env  # first: sets TF_USE_LEGACY_KERAS before TF loads
