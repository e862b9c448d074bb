"""EGIN's layers in your own Keras 3 model: SimExtract and the graph losses, fit,
saved as ``.keras`` and reloaded.

Run from the repository root::

    python examples/keras3_pipeline.py [OUT_DIR]

It uses ``tf.keras``, the process's Keras (no ``import keras``): Keras 3 by
default with TensorFlow 2.21; with ``TF_USE_LEGACY_KERAS=1`` the same code runs
under tf-keras (Keras 2). ``egin_tf.layers`` never changes which Keras that is.

What it shows, on one small batch of the reader's keys (``data_pipeline.schema``):

* ``UserCtrModel``, a plain subclassed ``tf.keras.Model``: one item and one query
  `IdEmbedding` table, shared by the CTR part and the graph part; `SimExtract`
  (target item vs its clicks) feeding a sigmoid head; `GraphLearning`, whose
  i2i, q2q and q2i losses are added with ``add_loss`` in training calls only
  (in inference it returns zeros and changes no state).
* ``compile`` + ``fit`` (the compiled BCE plus the graph losses), ``predict``,
  ``evaluate``; then ``model.save(OUT_DIR/user_model.keras)`` and
  ``tf.keras.models.load_model``. The query table is built in the constructor:
  only the graph reads it, and Keras builds a loaded model by an inference call.

It prints one JSON line (tests/test_keras_layers.py runs it under Keras 3 and
tf-keras and checks it): ``keras`` (the Keras module), ``layer_base`` (the
module of SimExtract's base class), ``weights`` (how many the model has),
``unchanged_by_fit`` (trainable weights fit left as they were),
``state_after_fit`` (the sum of each non-trainable weight: the graph's step,
both queues' ids, write position, filled, sample step),
``state_changed_by_inference`` (whether predict/evaluate changed any of them),
``reloaded_prediction_gap`` (max |difference| of the reloaded model's
predictions) and ``reloaded_state_equal`` (every weight equal after reloading).
OUT_DIR defaults to a new temporary directory.
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


@tf.keras.utils.register_keras_serializable(package="keras3_pipeline")
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
  os.makedirs(out_dir, exist_ok=True)  # Keras 3 makes it; tf-keras does not
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
