"""Trains a small model with and without MirroredStrategy; prints JSON results.

Run as a subprocess by test_strategy.py: the two logical CPU devices that
MirroredStrategy needs must be configured before TensorFlow initializes, which
a pytest process that already ran other tests cannot do.

    python tests/strategy_run.py <data_dir> <model> <learning_rate>
"""

import json
import sys

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
import numpy as np

from data_pipeline import reader
from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter
from egin_tf import models
from egin_tf.train import optimizers
from egin_tf.layers.feature_embeddings import FeatureConfig

GLOBAL_BATCH = 16
STEPS = 8
FEATURES = FeatureConfig(item_buckets=64, query_buckets=32, user_buckets=32,
                         category_buckets=8, embedding_dim=4, has_queries=True)


def write_impressions(directory: str, count: int = GLOBAL_BATCH * STEPS) -> str:
  rng = np.random.default_rng(0)
  with DatasetWriter(directory, num_cats=1) as writer:
    for u in range(count):
      clicks = [Event(int(i), 100 + 10 * j, [int(i) % 5 + 1])
                for j, i in enumerate(rng.integers(1, 50, u % 6))]
      queries = [Event(int(q), 95 + 10 * j, [int(q) % 5 + 1])
                 for j, q in enumerate(rng.integers(1, 20, u % 3 + 1))]
      item = int(rng.integers(1, 50))
      writer.write("train", Impression(
          label=int(item % 3 == 0), user_id=u % 20 + 1, time=1000 + u,
          item_id=item, item_cats=[item % 5 + 1], query_id=int(rng.integers(1, 20)),
          query_cats=[1], clicks=clicks, queries=queries))
    writer.commit(source="strategy test")
  return directory + "/*.tfrecord"


def dataset(pattern: str) -> tf.data.Dataset:
  return reader.make_dataset(pattern, GLOBAL_BATCH, max_clicks=6, max_queries=3,
                             max_seeds=1, shuffle=False, drop_remainder=True)


def build(model_name: str, learning_rate: float, pattern: str, weights=None):
  model = models.build_model(model_name, FEATURES, hidden_units=[8])
  model(next(iter(dataset(pattern))))
  if weights is not None:
    model.set_weights(weights)
  model.compile(optimizer=optimizers.make_optimizer(model, learning_rate))
  return model


class StepLosses(tf.keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.ctr_losses = []

  def on_train_batch_end(self, batch, logs=None):
    self.ctr_losses.append(float(logs["ctr_loss"]))


def train(model, pattern: str):
  losses = StepLosses()
  history = model.fit(dataset(pattern), epochs=2, verbose=0, callbacks=[losses])
  return {"ctr_losses": losses.ctr_losses,
          "history": history.history,  # every loss term, per epoch
          "weights_finite": all(bool(np.isfinite(v.numpy()).all())
                                for v in model.trainable_variables),
          "weights": [v.numpy().tolist() for v in model.trainable_variables],
          # Step counters and queue positions (EGIN's graph and queues).
          "counters": [int(v.numpy()) for v in model.non_trainable_variables
                       if v.dtype == tf.int64 and v.shape.rank == 0]}


def main(directory: str, model_name: str, learning_rate: float) -> None:
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  pattern = write_impressions(directory)
  single = build(model_name, learning_rate, pattern)
  start = single.get_weights()
  results = {"none": train(single, pattern)}
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    mirrored = build(model_name, learning_rate, pattern, weights=start)
  results["mirrored"] = train(mirrored, pattern)
  results["replicas"] = strategy.num_replicas_in_sync
  print("RESULT " + json.dumps(results))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
