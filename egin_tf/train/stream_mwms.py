"""Stream steps on synchronous workers (``--stream --strategy multi_worker_mirrored``).

Every worker runs the stream loop on the same stream: it reads the stream
folder in shard-name order and cuts the same global batches (the cut depends
only on the shards and ``--batch_size``), and trains on its share of each
batch: worker i of N takes the i-th of N contiguous slices
(``numpy.array_split``'s; a batch with fewer rows than workers goes whole
to each, its loss scaled so the step is the batch's mean once). The gradients
are summed over the workers (all-reduce), so a step trains the global batch
once, as one process does. The scores of the shares are all-gathered, and
every worker adds the whole batch to its progressive metrics. The position,
the same on every worker, is checkpointed with the model; the chief
(worker 0) writes the model directory, the audit log (from the batches it
read) and the exports, the others write their checkpoints to a scratch
folder (every worker must save: the metrics' variables are all-reduced) and
restore from the chief's.

Decisions that differ per process are agreed at every step (an all-reduce of
flags: a checkpoint or export due by the clock, a stop signal), so every
worker checkpoints and stops at the same step.

The guarantee: exactly once, as in one process. A worker that dies stops the
job (synchronous steps cannot go on without it; `egin-tf cluster-local`
stops every task); a restart resumes every worker from the chief's latest
checkpoint, model and position together.

Not supported: ``--follow`` (two workers listing a folder while shards land
can see different shards and cut different batches), refused by the command
line. Each worker reads every record (the records of one step are parsed N
times): enough while the tables fit one machine and the read is cheap next to
the step; workers owning their own shards need batches that may be empty,
which `egin_tf.models.base.CTRModel`'s step cannot take yet (its loss
trackers average nothing to NaN).
"""

import os
from typing import List, Optional, Sequence

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.train import config as train_config
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train.stream_model import Completed, StreamModel, scoring_step


class MirroredStreamModel(StreamModel):
  """`StreamModel` of one of N synchronous workers (one replica each)."""

  DISTRIBUTED = True

  def __init__(self, config: train_config.TrainConfig, features: FeatureConfig,
               stream: train_config.StreamConfig, out_dir: str,
               strategy: tf.distribute.Strategy, index: int, chief_dir: str):
    self.index, self.chief_dir = index, chief_dir
    self.num_workers = strategy.num_replicas_in_sync
    self._config, self._features = config, features
    self._export_copy, self._last_features = None, None
    super().__init__(config, features, stream, out_dir, strategy)
    self._agree_fn = self._make_agree_fn()

  def _make_step_fn(self):
    strategy = self.strategy
    score_batch = scoring_step(self.model)

    def replica_step(share):
      logs, scores = score_batch(share)
      context = tf.distribute.get_replica_context()
      labels = tf.cast(share[schema_lib.LABEL], tf.float32)
      return logs, context.all_gather(labels, 0), context.all_gather(scores, 0)

    @tf.function(reduce_retracing=True)
    def step_fn(share):
      results = strategy.run(replica_step, args=(share,))
      return tf.nest.map_structure(
          lambda v: strategy.experimental_local_results(v)[0], results)
    return step_fn

  def _make_agree_fn(self):
    strategy = self.strategy

    @tf.function
    def agree_fn(flags):
      counts = strategy.run(tf.identity, args=(flags,))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)
    return agree_fn

  def share(self, features):
    """This worker's contiguous slice of a global batch; the whole batch when
    it has fewer rows than workers (see `submit`)."""
    size = int(features[schema_lib.LABEL].shape[0])
    if size < self.num_workers:
      return features
    rows = np.array_split(np.arange(size), self.num_workers)[self.index]
    return {name: value[int(rows[0]):int(rows[-1]) + 1]
            for name, value in features.items()}

  def submit(self, batch: stream_lib.StreamBatch) -> Completed:
    """Trains this worker's share of ``batch`` with the others (synchronously)."""
    self._last_features = batch.features
    logs, labels, scores = self.step_fn(self.share(batch.features))
    # A batch with fewer rows than workers (a stream's last) goes whole to
    # every worker, since an empty share has no loss to average: each replica's
    # loss is its sum over (rows x workers), so the summed gradients are the
    # batch's mean, once. Its scores are then gathered N times: keep one copy.
    self.progressive.update(labels[:batch.size], scores[:batch.size])
    self.state.passed(batch)
    if self.log is not None:
      self.log.add(batch.shards, batch.offsets, batch.fingerprints)
    return [(batch, logs)]

  def agree(self, flags: Sequence[bool]) -> List[bool]:
    """Each flag true on some worker (every worker calls this at the same step)."""
    counts = self._agree_fn(tf.constant([int(f) for f in flags], tf.int32))
    return [int(c) > 0 for c in counts.numpy()]

  def export_model(self):
    """A copy of the model outside the strategy with its current weights: a
    SavedModel cannot hold functions over mirrored variables. Every worker
    makes it at the same step (reading some weights may all-reduce)."""
    if self._export_copy is None:
      self._export_copy = self._config.build_model(self._features)
      # Built by an inference call on the last batch (changes no state).
      self._export_copy({k: v[:2] for k, v in self._last_features.items()})
    self._export_copy.set_weights(self.model.get_weights())
    return self._export_copy

  def latest_checkpoint(self) -> Optional[str]:
    """The chief's latest checkpoint: every worker resumes from it."""
    return tf.train.latest_checkpoint(
        os.path.join(self.chief_dir, model_dir_lib.CHECKPOINT_DIR))

  def create_variables(self, schema: schema_lib.DatasetSchema,
                       lengths: reader.SequenceLengths) -> None:
    # Ids 1, not 0: an all-padding batch gives the queues nothing to all-gather,
    # and collectives over empty tensors crash the process (EGIN, 2 workers).
    batch = reader.zeros_batch(schema, lengths, batch_size=self.num_workers)
    self.step_fn(self.share({name: value + 1 if value.dtype.is_integer else value
                             for name, value in batch.items()}))
