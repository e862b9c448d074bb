"""Loss reduction and a guarded gradient update that hold under any tf.distribute strategy.

Under a strategy each replica sees its share of the global batch and the
optimizer sums the replicas' gradients, so a replica's objective must be its
part of the global mean: per-example losses summed over the replica's examples
and divided by the GLOBAL batch size (`tf.nn.compute_average_loss`), and every
scalar that is already a mean (graph losses, regularization) divided by the
number of replicas. Without a strategy both reduce to the plain mean.

The non-finite guard skips the whole update when the loss or any gradient on
any replica is NaN or infinite: such an update would poison the weights (ReLUs
can hide NaN activations so the loss itself stays finite); the caller reports a
NaN loss, on which `TerminateOnNaN` and the stream trainer stop with the
previous step's state intact. `apply_gradients` itself calls `merge_call`,
which a `tf.cond` in replica context does not allow (MirroredStrategy raises),
so the decision is taken in cross-replica context and the update re-enters the
replicas through `call_for_each_replica` (the pattern of Keras'
LossScaleOptimizer, which skips non-finite steps the same way).
"""

from typing import Sequence

from data_pipeline.tf_env import tf


def num_replicas() -> int:
  return tf.distribute.get_strategy().num_replicas_in_sync


def replica_objective(per_example_loss: tf.Tensor, mean_terms: tf.Tensor) -> tf.Tensor:
  """This replica's share of ``mean(per_example_loss over the global batch) +
  mean_terms``; its gradients summed over replicas are the global ones."""
  return (tf.nn.compute_average_loss(per_example_loss) +
          mean_terms / tf.cast(num_replicas(), mean_terms.dtype))


def is_finite(loss: tf.Tensor, grads: Sequence) -> tf.Tensor:
  """Whether the loss and every gradient (dense or IndexedSlices) are finite."""
  finite = tf.reduce_all(tf.math.is_finite(loss))
  for grad in grads:
    if grad is not None:
      values = grad.values if isinstance(grad, tf.IndexedSlices) else grad
      finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(values)))
  return finite


def apply_if_finite(optimizer, loss: tf.Tensor, grads: Sequence,
                    variables: Sequence[tf.Variable]) -> tf.Tensor:
  """Applies ``grads`` unless the loss or a gradient is non-finite on some
  replica; returns that decision (bool scalar, the same on every replica)."""
  # ReduceOp has SUM and MEAN only: count the replicas that are not finite.
  local_failures = 1.0 - tf.cast(is_finite(loss, grads), tf.float32)

  def decide_and_apply(strategy, failures, replica_grads):
    finite = strategy.reduce(tf.distribute.ReduceOp.SUM, failures, axis=None) == 0.0

    def apply():
      strategy.extended.call_for_each_replica(
          lambda g: optimizer.apply_gradients(zip(g, variables)),
          args=(replica_grads,))
      return tf.constant(True)

    tf.cond(finite, apply, lambda: tf.constant(False))
    return finite

  return tf.distribute.get_replica_context().merge_call(
      decide_and_apply, args=(local_failures, list(grads)))
