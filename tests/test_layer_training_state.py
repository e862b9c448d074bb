"""Inference never changes training state, and graph losses are float32 (issue 27).

Only a training call of `GraphLearning` or `NegativeQueue` enqueues, draws or
advances the graph; `predict`, `evaluate` and calls with ``training`` False or
unset change none of their variables. Under ``mixed_float16`` the graph losses
stay float32, so a ``train_step`` adds them to a float32 CTR loss. Runs under
tf-keras and Keras 3 alike (test_layers_under_keras3.py).
"""

import math

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers import Edges
from egin_tf.layers import GraphLearning
from egin_tf.layers import GraphSoftmaxLoss
from egin_tf.layers import IdEmbedding
from egin_tf.layers import NegativeQueue
from keras_steps import AddLosses
from keras_steps import minimize
from keras_steps import scaled
import layer_batch

CLICKS = schema_lib.CLICKS
QUERIES = schema_lib.QUERIES
FIT_STEPS = 3
# Per training step, by hand from `_batch`: 5 clicks + 2 targets, 3 history
# queries + 2 current queries (padding is never enqueued).
ITEMS_PER_STEP = 7
QUERIES_PER_STEP = 5
CLICKS_PER_STEP = 5  # the items the subsampling counts (the i2i sequence)


def _batch():
  return layer_batch.two_rows()


LABELS = np.array([1.0, 0.0], np.float32)


def _graph_learning(**kwargs):
  """Tiny tables and queues; logQ counts and subsampling on, so every kind of
  state the layer owns exists and is checked."""
  kwargs.setdefault("num_negatives", 3)
  return GraphLearning(IdEmbedding(10, 4, name="items"),
                       IdEmbedding(6, 4, name="queries"), queue_capacity=64,
                       logq_buckets=16, subsample_threshold=0.5, **kwargs)


def _state(layer):
  """Every non-trainable variable (queues, graph step and counts) as numpy, in
  order (a list: the two queues' variables may share a name)."""
  return [(v.name, v.numpy().copy()) for v in layer.non_trainable_variables]


def _assert_same_state(before, after):
  assert [name for name, _ in before] == [name for name, _ in after]
  for (name, old), (_, new) in zip(before, after):
    np.testing.assert_array_equal(new, old, err_msg=name)


def _functional_model():
  """CTR over the target item and query, plus the graph losses via add_loss."""
  inputs = {key: tf.keras.Input(shape=value.shape[1:], dtype=tf.int64, name=key)
            for key, value in _batch().items()}
  graph = _graph_learning(name="graph_learning")
  features = tf.keras.layers.Concatenate()(
      [graph.items(inputs[schema_lib.ITEM_ID]),
       graph.queries(inputs[schema_lib.QUERY_ID])])
  pctr = tf.keras.layers.Dense(1, activation="sigmoid")(features)
  model = tf.keras.Model(inputs, AddLosses()(pctr, list(graph(inputs).values())))
  model.compile(tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
  return model, graph


@pytest.fixture(scope="module")
def fitted():
  """The functional model after FIT_STEPS of fit on `_batch`, and its state."""
  tf.keras.utils.set_random_seed(0)
  model, graph = _functional_model()
  data = tf.data.Dataset.from_tensors((_batch(), LABELS)).repeat(FIT_STEPS)
  model.fit(data, epochs=1, verbose=0)
  return model, graph, _state(graph)


def test_fit_fills_the_queues_and_advances_the_graph(fitted):
  _, graph, after_fit = fitted
  # ids, write_position, filled, sample_step, logq_counts per queue; the
  # graph's step, item_counts and item_total.
  assert len(after_fit) == 2 * 5 + 3
  for queue, per_step in ((graph.item_queue, ITEMS_PER_STEP),
                          (graph.query_queue, QUERIES_PER_STEP)):
    assert int(queue.filled.numpy()) == FIT_STEPS * per_step
    assert int(queue.write_position.numpy()) == FIT_STEPS * per_step
    assert int(queue.sample_step.numpy()) == FIT_STEPS  # one shared draw a step
  assert int(graph.graph.step.numpy()) == FIT_STEPS
  assert int(graph.graph.item_total.numpy()) == FIT_STEPS * CLICKS_PER_STEP
  # Every step enqueues clicks row by row, then the targets.
  np.testing.assert_array_equal(graph.item_queue.ids.numpy()[:ITEMS_PER_STEP],
                                [1, 2, 3, 4, 5, 6, 7])


def test_predict_and_evaluate_change_no_graph_or_queue_variable(fitted):
  model, graph, after_fit = fitted
  batch = _batch()
  pctr = model.predict(batch, verbose=0)
  loss = model.evaluate(batch, LABELS, verbose=0)
  model(batch)  # training unset means inference
  model(batch, training=False)
  _assert_same_state(after_fit, _state(graph))
  # The graph losses are 0 in inference: evaluate's loss is the BCE alone.
  bce = -np.mean(LABELS * np.log(pctr[:, 0]) + (1 - LABELS) * np.log(1 - pctr[:, 0]))
  assert loss == pytest.approx(bce, rel=1e-5)


@pytest.mark.parametrize("training", [False, None])
def test_graph_learning_in_inference_returns_zeros_and_keeps_its_state(training):
  layer = _graph_learning()
  layer(_batch(), training=True)  # a training step first: non-zero state
  before = _state(layer)
  losses = layer(_batch(), training=training)
  assert {k: (v.dtype, float(v)) for k, v in losses.items()} == {
      name: (tf.float32, 0.0) for name in ("i2i", "q2q", "q2i")}
  _assert_same_state(before, _state(layer))


def test_graph_learning_resolves_a_training_tensor_when_the_graph_runs():
  layer = _graph_learning(use_query=False)
  layer(_batch(), training=True)
  step = tf.function(lambda training: layer(_batch(), training=training))
  before = _state(layer)
  assert {k: float(v) for k, v in step(tf.constant(False)).items()} == {"i2i": 0.0}
  _assert_same_state(before, _state(layer))
  assert float(step(tf.constant(True))["i2i"]) > 0
  assert int(layer.item_queue.filled.numpy()) == 2 * ITEMS_PER_STEP
  assert int(layer.graph.step.numpy()) == 2


def _queue_state(queue):
  return [(name, getattr(queue, name).numpy().copy())
          for name in ("ids", "write_position", "filled", "sample_step", "logq_counts")]


@pytest.mark.parametrize("training", [False, None])
def test_negative_queue_as_a_layer_enqueues_only_when_training(training):
  queue = NegativeQueue(capacity=4, num_negatives=2, logq_buckets=8)
  ids = tf.constant([[3, 0], [5, 7]], tf.int64)
  sample = queue(ids, training=training)  # builds the queue, enqueues nothing
  assert int(queue.filled.numpy()) == int(queue.write_position.numpy()) == 0
  assert int(queue.sample_step.numpy()) == 0  # and draws without moving the step
  assert queue.ids.numpy().tolist() == [0, 0, 0, 0]
  assert not queue.logq_counts.numpy().any() and not sample.valid.numpy().any()
  sample = queue(ids, training=True)
  assert int(queue.filled.numpy()) == 3 and sample.valid.numpy().all()
  assert queue.ids.numpy().tolist() == [3, 5, 7, 0]
  assert int(queue.sample_step.numpy()) == 1
  before = _queue_state(queue)
  queue(ids, training=False)
  _assert_same_state(before, _queue_state(queue))


def test_negative_queue_resolves_a_training_tensor_when_the_graph_runs():
  queue = NegativeQueue(capacity=4, num_negatives=2)
  call = tf.function(lambda training: queue(tf.constant([3, 5], tf.int64),
                                            training=training))
  call(tf.constant(False))
  assert int(queue.filled.numpy()) == int(queue.sample_step.numpy()) == 0
  sample = call(tf.constant(True))
  assert int(queue.filled.numpy()) == 2 and sample.valid.numpy().all()
  assert int(queue.sample_step.numpy()) == 1


@pytest.fixture
def mixed_float16():
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    yield
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")


def test_graph_softmax_loss_is_float32_and_overflow_free_under_mixed_float16(
    mixed_float16):
  layer = GraphSoftmaxLoss()
  assert layer.compute_dtype == "float16"
  edges = Edges(src=tf.constant([[3]], tf.int64), dst=tf.constant([[5]], tf.int64),
                mask=tf.constant([[True]]), src_pos=tf.constant([0], tf.int32),
                dst_pos=tf.constant([0], tf.int32))
  vector = tf.constant([[[300.0, 0.0]]], tf.float16)
  # Logits 300 * 300 = 90,000, past float16's 65,504: the positive's and the
  # negative's (another id, the same vector) are equal, so -log(1/2) = log 2.
  loss = layer(vector, vector, edges, vector[0], tf.constant([7], tf.int64),
               training=True)
  assert loss.dtype == tf.float32
  assert float(loss) == pytest.approx(math.log(2.0), rel=1e-6)


@pytest.mark.parametrize("per_edge_negatives", [False, True])
def test_graph_learning_losses_are_float32_under_mixed_float16(mixed_float16,
                                                               per_edge_negatives):
  layer = _graph_learning(per_edge_negatives=per_edge_negatives)
  losses = layer(_batch(), training=True)
  assert layer.items(tf.constant([1], tf.int64)).dtype == tf.float16
  for name, loss in losses.items():
    assert loss.dtype == tf.float32, name
    assert np.isfinite(float(loss)) and float(loss) > 0, name


class _MixedPrecisionCtr(tf.keras.Model):
  """A user's subclassed CTR model under mixed_float16 with EGIN's graph loss.

  The tables and the hidden layer compute in float16; the output layer is
  float32 (the documented fix), so ``ctr + graph`` adds two float32 scalars.
  """

  def __init__(self):
    # Keras 3 refuses the default name ("__mixed_precision_ctr").
    super().__init__(name="mixed_precision_ctr")
    self.graph = _graph_learning()
    self.hidden = tf.keras.layers.Dense(4, activation="relu")
    self.logit = tf.keras.layers.Dense(1, dtype="float32")
    self.join = tf.keras.layers.Concatenate()

  def call(self, batch, training=None):
    x = self.join([self.graph.items(batch[schema_lib.ITEM_ID]),
                   self.graph.queries(batch[schema_lib.QUERY_ID])])
    return self.logit(self.hidden(x))[:, 0]

  def train_step(self, data):
    batch, labels = data
    with tf.GradientTape() as tape:
      ctr = tf.keras.losses.BinaryCrossentropy(from_logits=True)(
          labels, self(batch, training=True))
      graph = tf.add_n(list(self.graph(batch, training=True).values()))
      loss = ctr + graph
      scaled_loss = scaled(self.optimizer, loss)
    # The LossScaleOptimizer compile wraps in scales the loss and unscales the
    # gradients (Keras 3: scale_loss and apply_gradients; tf-keras: minimize).
    minimize(self.optimizer, tape, scaled_loss, self.trainable_variables)
    return {"loss": loss, "ctr_loss": ctr, "graph_loss": graph}


def test_a_custom_train_step_adds_the_graph_loss_under_mixed_float16(mixed_float16):
  tf.keras.utils.set_random_seed(0)
  model = _MixedPrecisionCtr()
  model.compile(tf.keras.optimizers.Adam(0.01))
  assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
  data = tf.data.Dataset.from_tensors((_batch(), LABELS)).repeat(2)
  logs = model.fit(data, epochs=1, verbose=0).history
  for name in ("loss", "ctr_loss", "graph_loss"):
    assert np.isfinite(logs[name][-1]), (name, logs)
  assert logs["graph_loss"][-1] > 0
  assert int(model.graph.graph.step.numpy()) == 2
