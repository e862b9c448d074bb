"""EGIN's graph learning added to your own DIN: a functional Keras model, plain `fit`.

The paper (section 1) says EGIN's graph learning "can be effortlessly integrated into
other CTR prediction networks". This file is that integration, done the way a user
would do it in their own pipeline, without our model classes:

1. A plain DIN written with the functional API over `tf.keras.Input` dict inputs:
   target attention (an activation unit over [q, k, q - k, q * k], padding masked,
   weighted SUM of the history as in the DIN paper), an MLP and a sigmoid. It
   attends the clicks with the target item and the query history with the current
   query.
2. Four layers lifted from `egin_tf.layers`, all reading ONE item table and ONE query
   table that DIN also uses (`IdEmbedding` instances shared by object):

   * `SimExtract` (i2i: target item vs clicks, q2q: query vs query history, q2i:
     query vs clicks) adds 3 * k * d interest features to the MLP input;
   * `GraphLearning` (which owns `QueryItemGraph` and two `NegativeQueue`s and
     scores the edges with `edge_list_loss`) is extended into `GraphLossHead`, a
     small layer that, in training calls only, builds the batch's i2i/q2q/q2i
     edges, draws negatives from cross-batch queues and adds
     ``alpha L_i2i + beta L_q2q + gamma L_q2i`` with ``self.add_loss``. It returns
     its first input unchanged: that is what keeps it on the path from the inputs to
     the output, so Keras keeps it (and its losses) in the model.

3. Training is ``model.compile(optimizer, loss="binary_crossentropy",
   metrics=[AUC])`` and ``model.fit(dataset)``. Keras adds ``model.losses`` (the
   graph losses of the step) to the binary cross-entropy, so the graph gradients
   reach the shared tables in the same step as the CTR gradients. The head also
   reports ``graph_loss`` (the weighted sum) and ``i2i_loss``, ``q2q_loss``,
   ``q2i_loss`` in fit's logs (they read 0 in `evaluate`: graph losses are
   training-only).

The dataset is our reader's, mapped to ``(features, label)`` with only the keys the
model has inputs for (`keras_dataset`).

Run as a script, it simulates a search log (or reuses one in ``--out``), trains the
DIN with and without the graph layers for the same steps from the same seed, and
prints each model's exact test AUC next to the oracle AUC from ``oracle.json``::

  python examples/din_with_egin_graph_layers.py --users 2000 --steps 1500 \
      --out /tmp/din_egin

Saving: the layers are tracked, so ``model.save_weights`` / ``tf.train.Checkpoint``
save and restore everything (tables, queues, graph step). `GraphLossHead` shares
tables with DIN by object, which a config cannot express, so rebuild the model with
`build_din` before loading weights instead of `from_config`.
"""

import json
import os
from typing import Dict, List, Mapping, Sequence

from data_pipeline.tf_env import ensure_legacy_keras

# tf-keras: this DIN applies TF ops (tf.concat, tf.math.log1p) to the functional
# API's symbolic inputs, which tf-keras allows and Keras 3 does not. The layers
# themselves work under either Keras (egin_tf/layers/state.py).
tf = ensure_legacy_keras("examples/din_with_egin_graph_layers.py")

from absl import app
from absl import flags
import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import ranking_metrics as metrics
from egin_tf.layers import FeatureConfig
from egin_tf.layers import GraphLearning
from egin_tf.layers import IdEmbedding
from egin_tf.layers import SimExtract

CLICKS = schema_lib.CLICKS
QUERIES = schema_lib.QUERIES
POSITION = schema_lib.CAT_PREFIX + simulator.POSITION
PRICE = schema_lib.DENSE_PREFIX + simulator.PRICE

# The reader keys each model reads (besides these it ignores the batch).
DIN_FEATURES = (
    schema_lib.USER_ID, schema_lib.ITEM_ID, schema_lib.ITEM_CATS,
    schema_lib.QUERY_ID, schema_lib.QUERY_CATS,
    CLICKS.ids, CLICKS.cats, QUERIES.ids, QUERIES.cats, POSITION, PRICE)
# QueryItemGraph also needs the histories' times (edges need closeness in time).
GRAPH_FEATURES = DIN_FEATURES + (CLICKS.times, QUERIES.times)


class DinAttention(tf.keras.layers.Layer):
  """DIN's target attention: a weighted sum of a history.

  Inputs: ``query`` float [B, D] (the target), ``keys`` float [B, L, D] (the
  history), ``mask`` bool [B, L] (True for real entries). Output float [B, D]:
  ``sum_l mask_l * a(query, keys_l) * keys_l``, where the activation unit ``a`` is an
  MLP over [q, k, q - k, q * k] ending in one unbounded weight. As in the DIN paper
  the weights are not softmax-normalized, so the output keeps how MUCH of the
  history relates to the target, not only which part.
  """

  def __init__(self, hidden_units: Sequence[int] = (36,),
               activation: str = "sigmoid", **kwargs):
    super().__init__(**kwargs)
    self.hidden_units = list(hidden_units)
    self.activation = activation
    self.activation_unit = [
        tf.keras.layers.Dense(units, activation=activation)
        for units in self.hidden_units
    ] + [tf.keras.layers.Dense(1)]

  def call(self, query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    queries = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
    x = tf.concat([queries, keys, queries - keys, queries * keys], axis=-1)
    for layer in self.activation_unit:
      x = layer(x)  # [B, L, units]
    weights = tf.squeeze(x, axis=-1) * tf.cast(mask, x.dtype)  # [B, L]
    return tf.einsum("bl,bld->bd", weights, keys)

  def compute_mask(self, inputs, mask=None):
    # The history is consumed here; the pooled vector needs no mask.
    return None

  def get_config(self):
    config = super().get_config()
    config.update({"hidden_units": self.hidden_units,
                   "activation": self.activation})
    return config


def _static_bool(training) -> bool:
  """Keras' ``training`` argument as a Python bool (None means inference)."""
  if training is None:
    return False
  value = tf.get_static_value(training)
  if value is None:
    raise ValueError(
        "GraphLossHead needs a Python bool `training` (Keras passes one in fit, "
        "evaluate, predict and model(x, training=...)); got a symbolic tensor")
  return bool(value)


class GraphLossHead(GraphLearning):
  """EGIN's graph losses (`GraphLearning`) as a pass-through layer of a functional model.

  Call: ``head(passthrough, batch)``. ``passthrough`` is any tensor on the way to
  the output (e.g. the MLP input [B, F]); it is returned unchanged, which is what
  keeps this layer, its queues and its losses in the functional model. ``batch``
  is a dict of int64 inputs: ``item_id``, ``query_id`` [B], ``click_ids``,
  ``click_times`` [B, L], ``click_cats`` [B, L, C], ``query_hist_ids``,
  ``query_hist_times`` [B, M], ``query_hist_cats`` [B, M, C].

  In training calls only (``training=True``, as in ``fit``) it computes the
  batch's graph losses with the SHARED ``items`` and ``queries`` tables (edges by
  `QueryItemGraph`, negatives from the `NegativeQueue`s, `edge_list_loss`) and
  adds ``alpha L_i2i + beta L_q2q + gamma L_q2i`` with ``self.add_loss``.
  Inference calls do nothing: no loss, and the queues and the graph's step counter
  do not change.

  Args:
    items: the item id table the CTR network also reads.
    queries: the query id table the CTR network also reads.
    alpha, beta, gamma: weights of L_i2i, L_q2q, L_q2i.
    **kwargs: options of `GraphLearning` (window, num_negatives, queue_capacity,
      seed, ...).
  """

  def __init__(self, items: IdEmbedding, queries: IdEmbedding,
               alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
               queue_capacity: int = 100_000, **kwargs):
    super().__init__(items, queries, queue_capacity=queue_capacity, **kwargs)
    self.weights_by_type = {"i2i": float(alpha), "q2q": float(beta),
                            "q2i": float(gamma)}
    # Metrics assigned to a layer are collected by Model.metrics, so fit logs them.
    self.total_tracker = tf.keras.metrics.Mean(name="graph_loss")
    self.trackers = {name: tf.keras.metrics.Mean(name=f"{name}_loss")
                     for name in self.weights_by_type}

  def call(self, passthrough: tf.Tensor, batch: Mapping[str, tf.Tensor],
           training=None) -> tf.Tensor:
    if _static_bool(training):
      losses = self.graph_losses(batch)
      total = tf.add_n([self.weights_by_type[name] * loss
                        for name, loss in losses.items()])
      self.add_loss(total)
      self.total_tracker.update_state(total)
      for name, loss in losses.items():
        self.trackers[name].update_state(loss)
    return tf.identity(passthrough)

  def graph_losses(self, batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Unweighted L_i2i, L_q2q, L_q2i (float32 scalars); updates the queues."""
    # Reached from training calls only (see `call`), so a training step.
    return super().call(batch, training=True)

  def get_config(self):
    config = super().get_config()
    config.update({
        "alpha": self.weights_by_type["i2i"],
        "beta": self.weights_by_type["q2q"],
        "gamma": self.weights_by_type["q2i"],
    })
    return config

  @classmethod
  def from_config(cls, config):
    raise NotImplementedError(
        "GraphLossHead shares its item and query tables with the CTR network by "
        "object, which a config cannot express: rebuild the model with build_din() "
        "and restore weights (model.load_weights / tf.train.Checkpoint)")


def model_inputs(keys: Sequence[str], num_cats: int, max_clicks: int,
                 max_queries: int) -> Dict[str, tf.Tensor]:
  """One `tf.keras.Input` per reader key, with the reader's dtype and shape."""
  shapes = {
      schema_lib.ITEM_CATS: [num_cats], schema_lib.QUERY_CATS: [num_cats],
      CLICKS.ids: [max_clicks], CLICKS.times: [max_clicks],
      CLICKS.cats: [max_clicks, num_cats],
      QUERIES.ids: [max_queries], QUERIES.times: [max_queries],
      QUERIES.cats: [max_queries, num_cats],
  }
  inputs = {}
  for key in keys:
    dtype = tf.float32 if key.startswith(schema_lib.DENSE_PREFIX) else tf.int64
    # Layer names may not contain "/"; the dict key (what fit matches) keeps it.
    inputs[key] = tf.keras.Input(shape=shapes.get(key, []), dtype=dtype,
                                 name=key.replace("/", "_"))
  return inputs


def build_din(features: FeatureConfig, max_clicks: int, max_queries: int,
              num_cats: int, use_graph: bool = True,
              alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
              top_k: int = 10, num_bins: int = 20, num_negatives: int = 100,
              queue_capacity: int = 100_000,
              hidden_units: Sequence[int] = (200, 80),
              seed: int = 0) -> tf.keras.Model:
  """The user's DIN as a functional model, with or without EGIN's graph layers.

  Args:
    features: table sizes (`FeatureConfig.from_schema`); d = embedding_dim.
    max_clicks, max_queries: L and M of the reader's batches.
    num_cats: C, categories per entry (``schema.json``).
    use_graph: add SimExtract features and the graph losses (`GraphLossHead`).
    alpha, beta, gamma: weights of L_i2i, L_q2q, L_q2i.
    top_k, num_bins: SimExtract's k and similarity bins.
    num_negatives, queue_capacity: the negative queues.
    hidden_units: the CTR MLP.
    seed: seeds the queues' sampling.

  Returns:
    A `tf.keras.Model` from a dict of inputs (`DIN_FEATURES`, plus
    `GRAPH_FEATURES` with ``use_graph``) to pctr float32 [B, 1]. Its layer
    ``item_ids`` is the one item table read by DIN, SimExtract and the graph loss;
    with ``use_graph`` its layer ``graph_loss_head`` is the `GraphLossHead`.
  """
  d = features.embedding_dim
  inputs = model_inputs(GRAPH_FEATURES if use_graph else DIN_FEATURES, num_cats,
                        max_clicks, max_queries)
  items = IdEmbedding(features.item_buckets, d, name="item_ids")
  queries = IdEmbedding(features.query_buckets, d, name="query_ids")
  categories = IdEmbedding(features.category_buckets, d, name="categories")
  users = IdEmbedding(features.user_buckets, d, name="users")
  positions = IdEmbedding(features.feature_buckets, d, name="positions")

  def embed(table, ids, cats):
    """An item or query: its id vector ++ the sum of its category vectors [.., 2d]."""
    return tf.concat([table(ids), tf.reduce_sum(categories(cats), axis=-2)],
                     axis=-1)

  click_mask = inputs[CLICKS.ids] > 0
  query_hist_mask = inputs[QUERIES.ids] > 0
  target = embed(items, inputs[schema_lib.ITEM_ID], inputs[schema_lib.ITEM_CATS])
  query = embed(queries, inputs[schema_lib.QUERY_ID],
                inputs[schema_lib.QUERY_CATS])
  clicks = embed(items, inputs[CLICKS.ids], inputs[CLICKS.cats])
  query_hist = embed(queries, inputs[QUERIES.ids], inputs[QUERIES.cats])
  parts = [
      target, query, users(inputs[schema_lib.USER_ID]),
      positions(inputs[POSITION]),
      tf.math.log1p(tf.maximum(inputs[PRICE], 0.0))[:, tf.newaxis],
      DinAttention(name="click_attention")(target, clicks, click_mask),
      DinAttention(name="query_attention")(query, query_hist, query_hist_mask),
  ]

  if use_graph:
    def sim_extract(name):
      return SimExtract(k=top_k, num_bins=num_bins, embedding_dim=d,
                        max_positions=max(max_clicks, max_queries), name=name)

    # The id vectors of the SAME tables DIN reads: graph learning shapes them.
    click_vectors = items(inputs[CLICKS.ids])
    query_vector = queries(inputs[schema_lib.QUERY_ID])
    parts += [
        sim_extract("sim_i2i")(items(inputs[schema_lib.ITEM_ID]), click_vectors,
                               click_mask),
        sim_extract("sim_q2q")(query_vector, queries(inputs[QUERIES.ids]),
                               query_hist_mask),
        sim_extract("sim_q2i")(query_vector, click_vectors, click_mask),
    ]

  x = tf.keras.layers.Concatenate(name="mlp_input")(parts)
  if use_graph:
    head = GraphLossHead(items, queries, alpha=alpha, beta=beta, gamma=gamma,
                         num_negatives=num_negatives,
                         queue_capacity=queue_capacity, seed=seed,
                         name="graph_loss_head")
    x = head(x, {key: inputs[key] for key in (
        schema_lib.ITEM_ID, schema_lib.QUERY_ID, CLICKS.ids, CLICKS.times,
        CLICKS.cats, QUERIES.ids, QUERIES.times, QUERIES.cats)})
  for units in hidden_units:
    x = tf.keras.layers.Dense(units, activation="relu")(x)
  pctr = tf.keras.layers.Dense(1, activation="sigmoid", name="pctr")(x)
  name = "din_with_egin_graph" if use_graph else "din"
  return tf.keras.Model(inputs=inputs, outputs=pctr, name=name)


def keras_dataset(file_pattern: str, keys: Sequence[str], batch_size: int,
                  max_clicks: int, max_queries: int, training: bool,
                  seed: int = 0) -> tf.data.Dataset:
  """Our reader's batches as ``(features, label)`` with only ``keys`` kept.

  Training repeats and shuffles (seeded) with full batches; evaluation reads
  every impression once, in file order.
  """
  batches = reader.make_dataset(
      file_pattern, batch_size, max_clicks=max_clicks, max_queries=max_queries,
      max_seeds=1, shuffle=training, num_epochs=None if training else 1,
      seed=seed, drop_remainder=training)
  return batches.map(lambda b: ({k: b[k] for k in keys}, b[schema_lib.LABEL]))


def compile_model(model: tf.keras.Model, learning_rate: float = 1e-3,
                  run_eagerly: bool = False) -> None:
  """Plain Keras compile: BCE on the sigmoid output; Keras adds model.losses.

  ``run_eagerly`` skips tracing (seconds for the graph layers), which only pays
  off for a handful of steps, as in a smoke test.
  """
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                loss="binary_crossentropy",
                metrics=[tf.keras.metrics.AUC(name="auc")],
                run_eagerly=run_eagerly)


def exact_test_auc(model: tf.keras.Model, dataset: tf.data.Dataset) -> float:
  """Exact rank AUC (`data_pipeline.ranking_metrics.auc`) of a finite ``(features, label)``
  set."""
  pctr = model.predict(dataset.map(lambda x, y: x), verbose=0).reshape(-1)
  labels = np.concatenate([y.numpy() for _, y in dataset])
  return metrics.auc(labels, pctr)


def load_or_generate(out_dir: str, users: int, seed: int = 0) -> Dict:
  """The oracle of the simulated dataset in ``out_dir``, generating it if needed.

  An existing dataset is reused when it was simulated with the same users and
  seed; otherwise it is regenerated in place.
  """
  path = os.path.join(out_dir, simulator.ORACLE_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      oracle = json.load(f)
    if (oracle["config"]["num_users"], oracle["config"]["seed"]) == (users, seed):
      return oracle
  config = simulator.SimulatorConfig(num_users=users, seed=seed)
  return simulator.generate(config, out_dir, overwrite=True)


def compare(data_dir: str, steps: int, batch_size: int = 256,
            max_history: int = 50, seed: int = 0, verbose: int = 0,
            run_eagerly: bool = False, print_fn=print) -> Dict[str, float]:
  """Trains DIN with and without the graph layers for ``steps``; exact test AUCs.

  Returns:
    ``{"din": auc, "din_with_egin_graph": auc, "oracle": oracle test auc}``.
  """
  train_pattern = os.path.join(data_dir, "train-*")
  test_pattern = os.path.join(data_dir, "test-*")
  schema = schema_lib.DatasetSchema.load(data_dir)
  with open(os.path.join(data_dir, simulator.ORACLE_FILE), encoding="utf-8") as f:
    oracle = json.load(f)
  features = FeatureConfig.from_schema(schema, embedding_dim=10)
  results = {}
  for use_graph in (False, True):
    tf.keras.utils.set_random_seed(seed)  # same initial tables for both models
    model = build_din(features, max_history, max_history, schema.num_cats,
                      use_graph=use_graph, seed=seed)
    compile_model(model, run_eagerly=run_eagerly)
    keys = list(model.input.keys())
    history = model.fit(
        keras_dataset(train_pattern, keys, batch_size, max_history, max_history,
                      training=True, seed=seed),
        steps_per_epoch=steps, epochs=1, verbose=verbose)
    auc = exact_test_auc(model, keras_dataset(
        test_pattern, keys, batch_size, max_history, max_history, training=False))
    results[model.name] = auc
    logs = ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.history.items())
    print_fn(f"{model.name:22s} test AUC {auc:.4f}   (last training logs: {logs})")
  results["oracle"] = oracle["test_auc"]
  print_fn(f"{'oracle (true p)':22s} test AUC {oracle['test_auc']:.4f}")
  return results


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags; defined only when run as a script, so importing this
  module (tests, your own code) never collides with other absl flags."""
  flags.DEFINE_integer("users", 2000, "Users to simulate.")
  flags.DEFINE_integer("steps", 1500, "Training steps of each model.")
  flags.DEFINE_string("out", "/tmp/din_with_egin_graph_layers",
                      "Folder of the simulated dataset (reused if it matches).")
  flags.DEFINE_integer("batch_size", 256, "Impressions per step.")
  flags.DEFINE_integer("max_history", 50, "Most recent clicks and queries kept.")
  flags.DEFINE_integer("seed", 0, "Seeds the simulator, initialization and order.")


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  load_or_generate(FLAGS.out, FLAGS.users, FLAGS.seed)
  compare(FLAGS.out, FLAGS.steps, FLAGS.batch_size, FLAGS.max_history, FLAGS.seed,
          verbose=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
