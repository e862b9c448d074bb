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
  """Adam whose sparse updates touch only the rows of the gradient.

  It is also Adam with fewer ops per step, the same numbers: tf-keras' Adam
  recomputes the step's bias correction (two `pow`s, a `sqrt`, casts: ~15 ops)
  for every variable and updates a dense variable with ~10 more. Here the
  correction is computed once per step, and a dense variable takes TF's fused
  ``ResourceApplyAdam`` kernel (the legacy Adam's), which computes the same
  update in one op: ~40 -> ~10 ops per variable (EGIN has 30). Measured on
  trivago (experiments/RESULTS.md, issue 25's second round): DNN's step 6%
  faster at B = 1024, level at B = 256 and for EGIN.
  """

  def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
    # One bias correction for the whole step, read by every `update_step` below.
    self._step_scalars = self._bias_correction()
    try:
      return super()._distributed_apply_gradients_fn(distribution, grads_and_vars,
                                                     **kwargs)
    finally:
      self._step_scalars = None

  def _bias_correction(self) -> dict:
    """The step's scalars (float32): beta powers and Adam's corrected rate."""
    step = tf.cast(self.iterations + 1, tf.float32)
    beta_1 = tf.cast(self.beta_1, tf.float32)
    beta_2 = tf.cast(self.beta_2, tf.float32)
    beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
    lr = tf.cast(self.learning_rate, tf.float32)
    return {"lr": lr, "beta_1": beta_1, "beta_2": beta_2,
            "beta_1_power": beta_1_power, "beta_2_power": beta_2_power,
            "alpha": lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power),
            "epsilon": tf.constant(self.epsilon, tf.float32)}

  def update_step(self, gradient, variable):
    scalars = getattr(self, "_step_scalars", None)
    if self.amsgrad or scalars is None:
      # Called outside apply_gradients, or AMSGrad: Adam's own (per-variable) path.
      return self._adam_update_step(gradient, variable)
    if variable.dtype != tf.float32:
      scalars = {k: tf.cast(v, variable.dtype) for k, v in scalars.items()}
    key = self._var_key(variable)
    m = self._momentums[self._index_dict[key]]
    v = self._velocities[self._index_dict[key]]
    if isinstance(gradient, tf.IndexedSlices):
      return self._sparse_update(gradient, variable, m, v, scalars)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle,
        beta1_power=scalars["beta_1_power"], beta2_power=scalars["beta_2_power"],
        lr=scalars["lr"], beta1=scalars["beta_1"], beta2=scalars["beta_2"],
        epsilon=scalars["epsilon"], grad=tf.cast(gradient, variable.dtype))

  def _adam_update_step(self, gradient, variable):
    if isinstance(gradient, tf.IndexedSlices) and not self.amsgrad:
      with tf.name_scope("bias_correction"):
        scalars = self._bias_correction()
      key = self._var_key(variable)
      return self._sparse_update(gradient, variable,
                                 self._momentums[self._index_dict[key]],
                                 self._velocities[self._index_dict[key]], scalars)
    return super().update_step(gradient, variable)

  @staticmethod
  def _sparse_update(gradient, variable, m, v, scalars):
    """The lazy update: only the gradient's rows, moments included. The base
    optimizer has summed duplicate indices already."""
    beta_1, beta_2 = scalars["beta_1"], scalars["beta_2"]
    rows, values = gradient.indices, tf.cast(gradient.values, variable.dtype)
    m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
    v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
    m.scatter_update(tf.IndexedSlices(m_rows, rows))
    v.scatter_update(tf.IndexedSlices(v_rows, rows))
    variable.scatter_sub(tf.IndexedSlices(
        scalars["alpha"] * m_rows / (tf.sqrt(v_rows) + scalars["epsilon"]), rows))


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
