"""The optimizer of a training run: one Adam, or a graph optimizer beside it.

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
                   graph_optimizer: str = "adagrad") -> tf.keras.optimizers.Optimizer:
  """Adam(``learning_rate``) for everything, or with ``graph_learning_rate`` set,
  ``graph_optimizer`` at that rate for the model's graph variables and Adam for
  the rest (a model without graph variables gets plain Adam)."""
  if graph_learning_rate is None or not model.has_graph_variables:
    return tf.keras.optimizers.Adam(learning_rate)

  def graph_variables():
    return model.graph_variables()

  def other_variables():
    graph = {v.ref() for v in model.graph_variables()}
    return [v for v in model.trainable_variables if v.ref() not in graph]

  return tfrs.experimental.optimizers.CompositeOptimizer([
      (_legacy(graph_optimizer, graph_learning_rate), graph_variables),
      (tf.keras.optimizers.legacy.Adam(learning_rate), other_variables),
  ])
