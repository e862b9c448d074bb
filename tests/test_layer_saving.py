"""EGIN's public layers in a user's own Keras models, saved as `.keras` (issue 27).

Every public layer sits in a functional and in a subclassed model
(layer_models.py; the graph losses on the `QueryItemGraph`'s edge lists and on
a user layer's dense edges), and two more subclassed models call a
`NegativeQueue` or a `GraphLearning` only in ``train_step``. Each is fit a few
steps (which must change every trainable weight), saved, loaded, and must give
the same predictions and hold the same variables (tables, queues, graph step,
batch-norm statistics, optimizer: exactly); predict changes no non-trainable
variable; one more training step then moves the state of both alike.

The same code runs under tf-keras (the suite) and Keras 3
(test_layers_under_keras3.py): graph losses go in through a layer's
``add_loss`` (`keras_steps.AddLosses`), the ``train_step`` uses
``compute_loss`` and `keras_steps.minimize`; only the SavedModel-format test is
tf-keras's alone.
"""

import functools
import inspect

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf import layers
from egin_tf.layers.graph_edges import EdgeList, Edges, restore_edges
from egin_tf.layers.query_item_graph import window_edge_list
import graph_oracle
from keras_steps import KERAS3
from keras_steps import minimize
from keras_steps import optimizer_variables
from keras_steps import scaled
import layer_batch
import layer_models

CLICKS = schema_lib.CLICKS
FIT_STEPS = 3
LABELS = np.array([[1.0], [0.0]], np.float32)


def _batch():
  return layer_batch.two_rows()


class _SubclassedCtr(layer_models.BuiltOnIds):
  """What both subclassed models share: the tables, the CTR head, the seed;
  each adds its graph part and the ``train_step`` that uses it."""

  def __init__(self, seed: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.items, self.queries = layer_models.tables()
    self.head = tf.keras.layers.Dense(1, activation="sigmoid")
    self.join = tf.keras.layers.Concatenate()

  def call(self, batch, training=None):
    return self.head(self.join([self.items(batch[schema_lib.ITEM_ID]),
                                self.queries(batch[schema_lib.QUERY_ID])]))

  def get_config(self):
    return {**super().get_config(), "seed": self.seed}


@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class QueueModel(_SubclassedCtr):
  """A subclassed model that enqueues and draws only in ``train_step``."""

  def __init__(self, seed: int = 1, **kwargs):
    super().__init__(seed, **kwargs)
    self.queue = layers.NegativeQueue(16, 4, seed=seed, logq_buckets=8, name="queue")

  def train_step(self, data):
    batch, labels = data
    self.queue.enqueue(batch[CLICKS.ids])
    draw = self.queue.sample()
    with tf.GradientTape() as tape:
      targets = self.items(batch[schema_lib.ITEM_ID])
      # A toy negatives term, so the draw reaches the tables.
      loss = (self.compute_loss(x=batch, y=labels, y_pred=self(batch, training=True))
              + 0.01 * tf.reduce_mean(tf.matmul(targets, self.items(draw.ids),
                                                transpose_b=True)))
      scaled_loss = scaled(self.optimizer, loss)
    minimize(self.optimizer, tape, scaled_loss, self.trainable_variables)
    return {"loss": loss}


@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class GraphModel(_SubclassedCtr):
  """A subclassed CTR model that adds GraphLearning's losses in ``train_step``."""

  def __init__(self, seed: int = 1, **kwargs):
    super().__init__(seed, **kwargs)
    self.graph_learning = layers.GraphLearning(
        self.items, self.queries, num_negatives=3, queue_capacity=16, logq_buckets=8,
        subsample_threshold=0.5, seed=seed, name="graph_learning")

  def train_step(self, data):
    batch, labels = data
    with tf.GradientTape() as tape:
      losses = self.graph_learning(batch, training=True)
      loss = (self.compute_loss(x=batch, y=labels, y_pred=self(batch, training=True))
              + tf.add_n(list(losses.values())))
      scaled_loss = scaled(self.optimizer, loss)
    minimize(self.optimizer, tape, scaled_loss, self.trainable_variables)
    return {"loss": loss}


# Each public layer in a functional and a subclassed model (layer_models.py),
# and models that call a queue or GraphLearning only in their train_step.
MODELS = {
    **{name: functools.partial(layer_models.functional, name, _batch())
       for name in layer_models.RECIPES},
    **{f"{name}, subclassed": functools.partial(layer_models.Subclassed, name)
       for name in layer_models.RECIPES},
    "NegativeQueue, in train_step": QueueModel,
    "GraphLearning, in train_step": GraphModel,
}
STATEFUL = {name for name, recipe in layer_models.RECIPES.items() if recipe.stateful}
STATEFUL |= {f"{name}, subclassed" for name in STATEFUL} | {
    "NegativeQueue, in train_step", "GraphLearning, in train_step"}
# Keras 3 warns of a layer it marks built with sublayers unbuilt (their saved
# weights would not load): none of egin_tf's may. (The train_step-only models
# are the user's: Keras cannot see the layers their call never uses.)
NO_UNBUILT_STATE = pytest.mark.filterwarnings("error:.*unbuilt state:UserWarning")
CASES = [pytest.param(name, marks=() if "train_step" in name else NO_UNBUILT_STATE)
         for name in sorted(MODELS)]
# Only the CTR output has a label (the queue model's draw has none).
LOSSES = {name: {"pctr": "binary_crossentropy"}
          for name in ("NegativeQueue", "NegativeQueue, subclassed")}


def _fit(model, steps: int):
  data = tf.data.Dataset.from_tensors((_batch(), LABELS)).repeat(steps)
  model.fit(data, epochs=1, verbose=0, shuffle=False)


def _compiled(model, loss="binary_crossentropy"):
  # Eager steps: tracing the graph layers' training step would cost seconds
  # per model, and saving and loading do not depend on it.
  model.compile(tf.keras.optimizers.Adam(0.05), loss=loss, run_eagerly=True)
  return model


def _values(variables):
  return [v.numpy().copy() for v in variables]


def _assert_equal_values(expected, got):
  assert [v.shape for v in got] == [v.shape for v in expected]
  for old, new in zip(expected, got):
    np.testing.assert_array_equal(new, old)


def _state(model):
  """The queues' and the graph's variables (every non-trainable one)."""
  return _values(model.non_trainable_variables)


def _fitted(name: str):
  tf.keras.utils.set_random_seed(0)
  model = _compiled(MODELS[name](), LOSSES.get(name, "binary_crossentropy"))
  if not model.built:  # a subclassed model's call reads no queue or graph
    model(_batch())
  before = _values(model.trainable_variables)
  _fit(model, FIT_STEPS)
  # fit trains every weight (of every layer, the tables and the head).
  assert before and not [v.path if KERAS3 else v.name for v, old in zip(
      model.trainable_variables, before) if np.array_equal(v.numpy(), old)]
  return model


def _saved_and_loaded(model, path: str):
  """The model saved to ``path`` and loaded back, its variables (tables,
  queues, graph) and predictions checked against the original's."""
  saved = _values(model.variables)
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  assert type(loaded) is type(model)
  _assert_equal_values(saved, _values(loaded.variables))
  batch = _batch()
  before = [_state(m) for m in (model, loaded)]
  expected, got = model.predict(batch, verbose=0), loaded.predict(batch, verbose=0)
  # predict enqueues nothing, moves no graph and no queue's sample_step.
  for m, state in zip((model, loaded), before):
    _assert_equal_values(state, _state(m))
  tf.nest.map_structure(lambda e, g: np.testing.assert_allclose(g, e, atol=1e-6),
                        expected, got)
  return loaded


@pytest.mark.parametrize("name", CASES)
def test_a_model_loads_back_with_its_predictions_and_state(name, tmp_path):
  model = _fitted(name)
  assert any(v.any() for v in _state(model)) == (name in STATEFUL)
  optimizer = _values(optimizer_variables(model.optimizer))
  loaded = _saved_and_loaded(model, str(tmp_path / "model.keras"))
  _assert_equal_values(optimizer, _values(optimizer_variables(loaded.optimizer)))
  if name in STATEFUL:
    # Training resumes where it stopped: one more step moves both models'
    # non-trainable state (queues, graph counts, batch-norm statistics) alike.
    _fit(model, 1)
    _fit(loaded, 1)
    _assert_equal_values(_state(model), _state(loaded))


@pytest.mark.skipif(KERAS3, reason="Keras 3 saves only .keras files")
@pytest.mark.parametrize("name", ["QueryItemGraph + GraphSoftmaxLoss",
                                  "GraphLearning, in train_step"])
def test_the_saved_model_format_loads_edges_and_queues_back_too(name, tmp_path):
  _saved_and_loaded(_fitted(name), str(tmp_path / "saved_model"))


def test_a_loaded_graph_learning_still_shares_the_ctr_tables(tmp_path):
  model = _compiled(layer_models.functional("GraphLearning", _batch()))
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = tf.keras.models.load_model(path)
  learning = loaded.get_layer("graph_learning")
  assert learning.items is loaded.get_layer("items")
  assert learning.queries is loaded.get_layer("queries")


def test_graph_softmax_loss_scores_an_edge_list_as_its_dense_layout():
  click_ids = tf.constant(_batch()[CLICKS.ids])
  vectors = tf.random.stateless_normal([2, 4, 3], seed=[1, 2])
  negatives = tf.random.stateless_normal([5, 3], seed=[3, 4])
  negative_ids = tf.constant([1, 2, 9, 9, 4], tf.int64)
  loss = layers.GraphSoftmaxLoss()
  dense = graph_oracle.window_edges(click_ids, window=2)
  dense_mean, dense_losses = loss(vectors, vectors, dense, negatives, negative_ids,
                                  return_per_edge=True)
  listed = window_edge_list(click_ids, window=2)
  list_mean, list_losses = loss(vectors, vectors, listed, negatives, negative_ids,
                                return_per_edge=True)
  assert list_losses.shape == [int(tf.size(listed.rows))] == [6 + 2]
  # The list is the dense layout's real slots, in row-major order.
  np.testing.assert_allclose(list_losses.numpy(),
                             tf.boolean_mask(dense_losses, dense.mask).numpy(), rtol=1e-6)
  assert float(list_mean) == pytest.approx(float(dense_mean), rel=1e-6)
  # A plain list of the fields, as a loaded functional model passes them.
  assert float(loss(vectors, vectors, list(listed), negatives,
                    negative_ids)) == pytest.approx(float(list_mean), rel=1e-6)


def test_restore_edges_rebuilds_either_form_from_its_fields():
  click_ids = tf.constant(_batch()[CLICKS.ids])
  dense = graph_oracle.window_edges(click_ids, window=2)
  listed = window_edge_list(click_ids, window=2)
  for edges, cls in ((dense, Edges), (listed, EdgeList)):
    for plain in (list(edges), tuple(edges), edges._asdict(), edges):
      again = restore_edges(plain)
      assert type(again) is cls
      for old, new in zip(edges, again):
        assert new is old
  assert listed.mask.numpy().all() and listed.mask.shape == listed.rows.shape
  with pytest.raises(ValueError, match="5 fields"):
    restore_edges(list(listed)[:4])
  with pytest.raises(ValueError, match="cannot tell"):
    restore_edges([tf.zeros([1, 1, 1], tf.int64)] * 5)


def _configured():
  """Each layer with every constructor argument set away from its default."""
  items, queries = layer_models.tables()
  return {
      layers.SimExtract: dict(
          k=3, num_bins=7, positional=False, embedding_dim=5, max_positions=9,
          binning="soft", position="index",
          embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.3)),
      layers.QueryItemGraph: dict(
          window=3, q2q_timespan=61, q2i_timespan=121, seeds_fraction=0.5,
          subsample_threshold=0.25, subsample_buckets=64, seed=5),
      layers.NegativeQueue: dict(capacity=9, num_negatives=3, seed=2, logq_buckets=10),
      layers.GraphSoftmaxLoss: {},
      layers.GraphLearning: dict(
          items=items, queries=queries, use_query=False, window=3, q2q_timespan=61,
          q2i_timespan=121, seeds_fraction=0.5, subsample_threshold=0.25,
          num_negatives=4, queue_capacity=12, logq_buckets=16,
          per_edge_negatives=True, seed=3),
  }


def _serialized(value):
  if isinstance(value, tf.keras.layers.Layer):
    return tf.keras.layers.serialize(value)
  if isinstance(value, tf.keras.initializers.Initializer):
    return tf.keras.initializers.serialize(value)
  return value


@pytest.mark.parametrize("cls", sorted(_configured(), key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_every_constructor_argument_round_trips_through_the_config(cls):
  kwargs = _configured()[cls]
  signature = inspect.signature(cls.__init__).parameters
  base = inspect.signature(tf.keras.layers.Layer.__init__).parameters
  assert set(kwargs) == set(signature) - set(base)
  for name, value in kwargs.items():
    assert value is not signature[name].default and value != signature[name].default
  assert tf.keras.utils.get_registered_name(cls) == f"egin_tf>{cls.__name__}"
  config = cls(**kwargs, name="configured").get_config()
  assert {name: config[name] for name in kwargs} == {
      name: _serialized(value) for name, value in kwargs.items()}
  assert cls.from_config(config).get_config() == config
