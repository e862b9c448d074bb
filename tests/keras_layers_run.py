"""A user's subclassed Keras model holding SimExtract and GraphLearning, in whatever
Keras ``tf.keras`` is in this process (run by tests/test_keras_layers.py, once
without TF_USE_LEGACY_KERAS: Keras 3, once with it: tf-keras).

It trains the model with ``fit``, predicts and evaluates, saves it as ``.keras``
and loads it back, and prints one JSON line of what it saw: which Keras, which
weights ``fit`` changed, whether inference changed any state, and how far the
reloaded model's predictions and state are from the original's.
"""

import json
import os
import sys
import tempfile

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers import GraphLearning, IdEmbedding, SimExtract

B, L = 4, 5


def _batch(rng: np.random.Generator) -> dict:
  """A batch of the reader's keys: 4 rows of 5 clicks and 5 queries, category 1."""
  times = np.sort(rng.integers(1, 1000, (B, L)), axis=1).astype(np.int64)
  ones = np.ones((B, L, 1), np.int64)
  return {
      schema_lib.ITEM_ID: rng.integers(1, 50, B).astype(np.int64),
      schema_lib.QUERY_ID: rng.integers(1, 20, B).astype(np.int64),
      schema_lib.CLICKS.ids: rng.integers(1, 50, (B, L)).astype(np.int64),
      schema_lib.CLICKS.times: times, schema_lib.CLICKS.cats: ones,
      schema_lib.QUERIES.ids: rng.integers(1, 20, (B, L)).astype(np.int64),
      schema_lib.QUERIES.times: times, schema_lib.QUERIES.cats: ones,
  }


@tf.keras.utils.register_keras_serializable(package="keras_layers_run")
class UserCtrModel(tf.keras.Model):
  """Target item vs its clicks through SimExtract; GraphLearning's losses added."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.items = IdEmbedding(64, 4, name="items")
    self.queries = IdEmbedding(32, 4, name="queries")
    # Built here: the graph reads the query table, the CTR part never does.
    self.items.build(None)
    self.queries.build(None)
    self.sim = SimExtract(k=2, embedding_dim=3, name="sim")
    self.graph = GraphLearning(self.items, self.queries, num_negatives=3,
                               queue_capacity=32, name="graph")
    self.head = tf.keras.layers.Dense(1, activation="sigmoid", name="head")
    self.join = tf.keras.layers.Concatenate()

  def call(self, batch, training=None):
    target = self.items(batch[schema_lib.ITEM_ID])
    clicks = self.items(batch[schema_lib.CLICKS.ids])
    interest = self.sim(target, clicks, batch[schema_lib.CLICKS.ids] > 0)
    # Zeros and no state change unless training (GraphLearning's contract), so
    # only a training call adds them (tf-keras refuses a constant loss).
    losses = self.graph(batch, training=training)
    if training:
      self.add_loss(tf.add_n(list(losses.values())))
    return self.head(self.join([interest, target]))


def _values(variables) -> list:
  return [np.array(v) for v in variables]


def main(out_dir: str) -> dict:
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  labels = rng.integers(0, 2, (B, 1)).astype(np.float32)
  data = tf.data.Dataset.from_tensors((batch, labels)).repeat(3)
  model = UserCtrModel()
  model(batch)
  model.compile(optimizer="adam", loss="binary_crossentropy")
  before = _values(model.trainable_weights)
  model.fit(data, verbose=0)
  trained = _values(model.trainable_weights)
  state = _values(model.non_trainable_weights)
  predictions = model.predict(data, verbose=0)
  model.evaluate(data, verbose=0)
  path = os.path.join(out_dir, "user_model.keras")
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  return {
      "keras": tf.keras.__name__,
      "layer_base": SimExtract.__mro__[1].__module__,
      "weights": len(model.weights),
      "unchanged_by_fit": [w.name for w, a, b in zip(model.trainable_weights, before, trained)
                           if np.array_equal(a, b)],
      "state_after_fit": [int(np.sum(v)) for v in state],
      "state_changed_by_inference": not all(
          np.array_equal(a, b) for a, b in zip(state, _values(model.non_trainable_weights))),
      "reloaded_prediction_gap": float(np.max(np.abs(
          loaded.predict(data, verbose=0) - predictions))),
      "reloaded_state_equal": all(np.array_equal(a, b) for a, b in zip(
          _values(model.weights), _values(loaded.weights))),
  }


if __name__ == "__main__":
  print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())))
