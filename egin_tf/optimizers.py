"""The optimizer of a training run: (lazy) Adam, or a graph optimizer beside it.

Id tables get sparse gradients (the rows of a batch). tf-keras' Adam applies
them by decaying both moments of EVERY row and then updating every row of the
table, three passes over the table per step, so its step grows with the table
(10M rows: see experiments/RESULTS.md, "Performance"). `LazyAdam` (the
TF Addons idea) updates only the rows in the batch, moments included; dense
variables get Adam's usual update. A row's moments then decay only when it is
seen, which is the usual choice for embedding tables.

EGIN's graph tables are sparse embeddings trained by a sampled softmax; its CTR
network is a small dense MLP. One Adam rate does not suit both (at the rate the
graph needs, the CTR part overfits: experiments/RESULTS.md), so a run can give
the graph tables (`CTRModel.graph_variables`) their own optimizer and rate.
`tfrs.experimental.optimizers.CompositeOptimizer` routes each variable to its
optimizer; it is one optimizer object, so `CTRModel.train_step` stays unchanged
and a checkpoint of ``model.optimizer`` carries both optimizers' slots.

Adagrad's sparse update touches only the rows of the batch (its accumulator
rows too), which large graph tables need; (legacy) Adam's sparse path decays
every row's moments at every step.
"""

from typing import Optional

import tensorflow_recommenders as tfrs

from data_pipeline.tf_env import tf

GRAPH_OPTIMIZERS = ("adagrad", "adam", "sgd")
OPTIMIZERS = ("lazy_adam", "adam")


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class LazyAdam(tf.keras.optimizers.Adam):
  """Adam whose sparse updates touch only the rows of the gradient."""

  def update_step(self, gradient, variable):
    if not isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    # The base optimizer has summed duplicate indices already.
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    lr = tf.cast(self.learning_rate, dtype)
    alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
    key = self._var_key(variable)
    m = self._momentums[self._index_dict[key]]
    v = self._velocities[self._index_dict[key]]
    rows, values = gradient.indices, tf.cast(gradient.values, dtype)
    m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
    v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
    m.scatter_update(tf.IndexedSlices(m_rows, rows))
    v.scatter_update(tf.IndexedSlices(v_rows, rows))
    variable.scatter_sub(tf.IndexedSlices(
        alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


def _legacy(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
  legacy = tf.keras.optimizers.legacy
  if name == "adagrad":
    return legacy.Adagrad(learning_rate)
  if name == "adam":
    return legacy.Adam(learning_rate)
  if name == "sgd":
    return legacy.SGD(learning_rate)
  raise ValueError(f"graph_optimizer must be one of {GRAPH_OPTIMIZERS}, got {name!r}")


def make_optimizer(model, learning_rate: float,
                   graph_learning_rate: Optional[float] = None,
                   graph_optimizer: str = "adagrad",
                   optimizer: str = "lazy_adam") -> tf.keras.optimizers.Optimizer:
  """``optimizer`` ("lazy_adam" or "adam") at ``learning_rate`` for everything,
  or with ``graph_learning_rate`` set, ``graph_optimizer`` at that rate for the
  model's graph variables and (legacy) Adam for the rest; a model without graph
  variables ignores the graph rate."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  if graph_learning_rate is None or not model.has_graph_variables:
    if optimizer == "adam":
      return tf.keras.optimizers.Adam(learning_rate)
    return LazyAdam(learning_rate)

  def graph_variables():
    return model.graph_variables()

  def other_variables():
    graph = {v.ref() for v in model.graph_variables()}
    return [v for v in model.trainable_variables if v.ref() not in graph]

  return tfrs.experimental.optimizers.CompositeOptimizer([
      (_legacy(graph_optimizer, graph_learning_rate), graph_variables),
      (tf.keras.optimizers.legacy.Adam(learning_rate), other_variables),
  ])
