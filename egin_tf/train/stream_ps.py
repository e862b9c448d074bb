"""Stream steps on parameter-server workers (``--stream --strategy parameter_server``).

Who does what:

* the **chief** reads the stream (one `data_pipeline.stream.ShardStream`, in
  shard-name order, as one process does), cuts the batches and schedules each
  batch's step with ``ClusterCoordinator.schedule``, the batch as the step's
  argument; it keeps the stream position, the progressive metrics and the
  audit log, and writes every checkpoint and export;
* a free **worker** runs the step: scores the batch with the model before the
  update, then trains on it (the model's own ``train_step``) and returns the
  scores and the step's logs;
* the **ps** tasks hold the model, its negative queues and the optimizer
  state, tables sharded row-wise (`egin_tf.train.distribute`).

Steps complete in the order the chief submitted them (it fetches their
results in that order), and only a completed step moves the position and
feeds the progressive metrics. At most ``max_in_flight`` steps run at once
(twice the workers: each has one running and one queued). A checkpoint is
written only after ``drain()`` (``ClusterCoordinator.join()``): no step in
flight, so the checkpoint's model, position and metrics hold exactly the
batches before its position.

The guarantee (measured: experiments/stream_delivery.py):

* across restarts of the **chief** (the whole job restarts from the latest
  checkpoint): exactly once, as in one process;
* a **worker** that dies mid-step may leave that step's update partly applied
  on the ps; the coordinator runs the step again on a worker that is up
  (the launcher restarts the dead one), so that batch is trained up to twice:
  at-least-once, at most one batch per worker death.

The audit log sees the second run: each run of a step (an *attempt*) writes
its batch's ids to ``trained_examples/attempts/`` before it updates anything,
and a checkpoint's segment is made of the attempts before it. So a retried
step shows as its records trained twice: an upper bound (an attempt that died
before its update counts too).

Not built: workers reading their own shards (the chief reads and sends the
batches; at this scale the step, not the read, is the cost), and steps that
continue while a checkpoint is written (the drain stops the workers for it).
"""

import collections
from typing import Deque, Tuple

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.train import audit_log
from egin_tf.train import config as train_config
from egin_tf.train import distribute
from egin_tf.train.stream_model import Completed, StreamModel, scoring_step


class ParameterServerStreamModel(StreamModel):
  """`StreamModel` whose steps run on the workers of a parameter-server cluster."""

  DISTRIBUTED = True

  def __init__(self, config: train_config.TrainConfig, features: FeatureConfig,
               stream: train_config.StreamConfig, model_dir: str,
               strategy: tf.distribute.Strategy):
    self.coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    self.max_in_flight = 2 * distribute.current_task().num_workers
    self._pending: Deque[Tuple[stream_lib.StreamBatch, object]] = collections.deque()
    self._submitted = 0
    super().__init__(config, features, stream, model_dir, strategy)

  def _make_step_fn(self):
    strategy = self.strategy
    score_batch = scoring_step(self.model)
    audited = self.log is not None

    @tf.function(reduce_retracing=True)
    def worker_step(batch, audit_lines, attempt_path):
      if audited:
        # Before any update: a tf.function runs its stateful ops in program order.
        audit_log.write_attempt(audit_lines, attempt_path)
      return strategy.run(score_batch, args=(batch,))
    return worker_step

  def submit(self, batch: stream_lib.StreamBatch) -> Completed:
    """Schedules ``batch``'s step; completes the oldest while too many run."""
    self._pending.append((batch, self._schedule(batch.features, batch)))
    done = []
    while len(self._pending) > self.max_in_flight:
      done.append(self._complete(*self._pending.popleft()))
    return done

  def _schedule(self, features, batch=None):
    self._submitted += 1
    lines, path = tf.constant([], tf.string), tf.constant("")
    if self.log is not None and batch is not None:
      lines = tf.constant([f"{s}\t{int(o)}\t{int(f)}\n" for s, o, f in
                           zip(batch.shards, batch.offsets, batch.fingerprints)])
      path = tf.constant(self.log.attempt_prefix(self._submitted))
    return self.coordinator.schedule(self.step_fn, args=(features, lines, path))

  def _complete(self, batch: stream_lib.StreamBatch, result) -> Tuple:
    logs, scores = result.fetch()
    self.progressive.update(batch.features[schema_lib.LABEL], scores)
    self.state.passed(batch)
    return batch, logs

  def drain(self) -> Completed:
    """Waits for every step in flight (``join``); they are the steps completed."""
    self.coordinator.join()
    done = [self._complete(*pending) for pending in self._pending]
    self._pending.clear()
    return done

  def create_variables(self, schema: schema_lib.DatasetSchema,
                       lengths: reader.SequenceLengths) -> None:
    """One step on a throwaway batch creates every variable on the ps (and
    changes them: the checkpoint restored next overwrites them all)."""
    self._schedule(reader.zeros_batch(schema, lengths, batch_size=2))
    self.coordinator.join()
