"""Test helpers: read written TFRecords back; check a failed run left nothing."""

import os

from data_pipeline.tf_env import tf


def read_examples(path):
  """[{feature name: list of values}] of one TFRecord file, in order."""
  examples = []
  for record in tf.data.TFRecordDataset(str(path)):
    example = tf.train.Example.FromString(record.numpy())
    features = {}
    for name, feature in example.features.feature.items():
      kind = feature.WhichOneof("kind")
      features[name] = list(getattr(feature, kind).value)
    examples.append(features)
  return examples


def assert_nothing_left(directory, names):
  """``directory`` holds exactly ``names``: no output, no temporary folder."""
  assert sorted(os.listdir(directory)) == sorted(names)
