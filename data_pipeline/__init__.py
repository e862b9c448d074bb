"""Impression logs: schema, converters to TFRecords, the tf.data reader, simulator.

Nothing here uses Keras, so importing it leaves ``tf.keras`` as the process has it
(`data_pipeline.tf_env`).
"""
