"""Progressive validation: every example is scored before the model trains on it.

On a stream each batch is first predicted by the current model, then learned from,
so the scores are honest out-of-sample predictions of the model as it was served at
that moment. The running metrics over the whole stream are the standard online
learning measure; the window metrics show the recent level.

All state is in variables (checkpointed with the model, so a resumed run continues
the same curves):

* running AUC: `tf.keras.metrics.AUC` with ``num_thresholds`` buckets (an
  approximation good to about 1/num_thresholds; exact over a stream would need
  every score kept forever);
* running logloss: float64 sums;
* window: a ring buffer of the last ``window`` labels and scores, from which the
  window AUC and logloss are computed exactly (`data_pipeline.ranking_metrics`).
"""

from typing import Dict

from data_pipeline.tf_env import tf
from data_pipeline import ranking_metrics as metrics

_EPS = 1e-7


class ProgressiveMetrics(tf.Module):
  """Running and windowed AUC and logloss of scores made before training.

  Args:
    window: examples in the window (the most recent ones).
    num_thresholds: buckets of the running AUC.
  """

  def __init__(self, window: int = 10_000, num_thresholds: int = 10_000,
               name: str = "progressive"):
    super().__init__(name=name)
    if window < 1:
      raise ValueError(f"window must be >= 1, got {window}")
    self.window = window
    self.running_auc = tf.keras.metrics.AUC(num_thresholds=num_thresholds,
                                            name="running_auc")
    self.logloss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
    self.count = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.window_labels = tf.Variable(tf.zeros([window], tf.float32), trainable=False)
    self.window_scores = tf.Variable(tf.zeros([window], tf.float32), trainable=False)

  def reset(self) -> None:
    """Forgets every example (a new stream)."""
    self.running_auc.reset_state()
    self.logloss_sum.assign(0.0)
    self.count.assign(0)
    self.window_labels.assign(tf.zeros_like(self.window_labels))
    self.window_scores.assign(tf.zeros_like(self.window_scores))

  def update(self, labels: tf.Tensor, scores: tf.Tensor) -> None:
    """Adds a batch: labels [B] in {0, 1}, scores [B] probabilities."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    scores = tf.cast(tf.reshape(scores, [-1]), tf.float32)
    self.running_auc.update_state(labels, scores)
    p = tf.clip_by_value(tf.cast(scores, tf.float64), _EPS, 1 - _EPS)
    y = tf.cast(labels, tf.float64)
    self.logloss_sum.assign_add(
        -tf.reduce_sum(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p)))
    n = tf.size(labels, out_type=tf.int64)
    # Ring buffer: slot of the k-th example ever seen is k mod window. A batch
    # larger than the window only keeps its last `window` examples.
    keep = tf.minimum(n, self.window)
    first = self.count + n - keep
    slots = tf.math.floormod(first + tf.range(keep, dtype=tf.int64), self.window)
    self.window_labels.scatter_nd_update(slots[:, None], labels[n - keep:])
    self.window_scores.scatter_nd_update(slots[:, None], scores[n - keep:])
    self.count.assign_add(n)

  def result(self) -> Dict[str, float]:
    """``examples``, ``running_auc``, ``running_logloss``, ``window_auc``,
    ``window_logloss`` (NaN until defined)."""
    count = int(self.count.numpy())
    filled = min(count, self.window)
    labels = self.window_labels.numpy()[:filled]
    scores = self.window_scores.numpy()[:filled]
    nan = float("nan")
    return {
        "examples": count,
        "running_auc": float(self.running_auc.result().numpy()) if count else nan,
        "running_logloss": float(self.logloss_sum.numpy()) / count if count else nan,
        "window_auc": metrics.auc(labels, scores) if filled else nan,
        "window_logloss": metrics.logloss(labels, scores, _EPS) if filled else nan,
    }
