"""The layers' non-trainable state, under Keras 3 and tf-keras alike.

The layers subclass whatever ``tf.keras`` is in the process (`data_pipeline.tf_env`).
Their state (queues, counters) is made with ``add_weight``, so either Keras tracks,
checkpoints and saves it; but the two hand back different objects:

* tf-keras: a ``tf.Variable`` (under a strategy, a distributed one);
* Keras 3: its own ``keras.Variable``, which wraps a ``tf.Variable`` (``.value``)
  and has no ``scatter_update``/``scatter_add``/``read_value``, and takes the
  aggregation as a string.

`add_state` makes a zero-initialized state weight in either, and `variable_of`
gives the ``tf.Variable`` the update ops need. `training_mode` reads Keras'
``training`` argument, which decides whether a call may change that state.

Example:

```python
class Counter(tf.keras.layers.Layer):
  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.counts = add_state(self, "counts", [8], aggregation="sum")

  def call(self, ids):
    variable_of(self.counts).scatter_add(
        tf.IndexedSlices(tf.ones_like(ids, tf.int64), ids))
    return ids
```
"""

from typing import Optional, Sequence

from data_pipeline.tf_env import tf

_AGGREGATIONS = {"none": tf.VariableAggregation.NONE, "sum": tf.VariableAggregation.SUM}
# Keras 3 takes the aggregation by name, tf-keras as the enum. Read at import,
# when the layers' own class definitions have bound tf.keras already.
_KERAS3 = not getattr(tf.keras, "__name__", "").startswith("tf_keras")


def add_state(layer, name: str, shape: Sequence[int], dtype=tf.int64,
              aggregation: str = "none"):
  """A zero-initialized, non-trainable weight of ``layer`` (``aggregation``:
  "none" or "sum", how a synchronous strategy combines the replicas' updates)."""
  if aggregation not in _AGGREGATIONS:
    raise ValueError(f"aggregation must be one of {sorted(_AGGREGATIONS)}, got "
                     f"{aggregation!r}")
  return layer.add_weight(
      name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False,
      aggregation=aggregation if _KERAS3 else _AGGREGATIONS[aggregation])


def variable_of(weight) -> tf.Variable:
  """The ``tf.Variable`` of a weight: itself under tf-keras, ``.value`` under Keras 3.

  Under tf-keras the weight is returned as it is, whatever its class: a
  strategy's variables (e.g. a parameter server's aggregating one) are not
  ``tf.Variable`` subclasses but have its update methods.
  """
  if _KERAS3 and not isinstance(weight, tf.Variable):
    return weight.value
  return weight


def training_mode(training) -> Optional[bool]:
  """Keras' ``training`` as a Python bool (None means inference), or None for
  a bool tensor whose value is only known when the graph runs."""
  if training is None:
    return False
  value = tf.get_static_value(training)
  return None if value is None else bool(value)
