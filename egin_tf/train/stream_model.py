"""What a stream run trains and checkpoints, and how its steps run.

`StreamModel` holds the model and everything checkpointed with it (optimizer,
`StreamState`, `ProgressiveMetrics`) and runs the one-batch step in this
process: score, train and move the position in one ``tf.function`` call.
`egin_tf.train.stream_ps.ParameterServerStreamModel` runs the same steps on
parameter-server workers, `egin_tf.train.stream_mwms.MirroredStreamModel` on
synchronous ones. The stream loop (`egin_tf.train.stream`) talks to
either through three calls:

* ``submit(batch)``: starts the batch's step; returns the steps completed by
  now, each ``(batch, logs)``, in the order they were submitted;
* ``drain()``: waits until no step is in flight; returns the rest;
* ``agree(flags)``: per flag, whether any process of the run raised it
  (synchronous workers must checkpoint and stop at the same step);
* ``iterations()``: the optimizer's step count.

After ``drain()`` the model, the position and the progressive metrics hold
exactly the submitted batches: that is when a checkpoint may be written.
"""

import contextlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.train import audit_log
from egin_tf.train import config as train_config
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train.progressive import ProgressiveMetrics

AUDIT_DIR = "trained_examples"

Completed = List[Tuple[stream_lib.StreamBatch, Dict[str, Any]]]


class StreamState(tf.Module):
  """Where the stream stands (`data_pipeline.stream.StreamPosition`), as variables."""

  def __init__(self):
    super().__init__(name="stream_state")
    self.shard = tf.Variable("", dtype=tf.string, trainable=False)
    self.offset = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.examples = tf.Variable(0, dtype=tf.int64, trainable=False)
    # `StreamBatch.shards_before_end` of the position.
    self.shards_before = tf.Variable(0, dtype=tf.int64, trainable=False)

  def reset(self) -> None:
    self.shard.assign("")
    self.offset.assign(0)
    self.examples.assign(0)
    self.shards_before.assign(0)

  def passed(self, batch: stream_lib.StreamBatch) -> None:
    """Moves the position to the end of ``batch``, a batch trained on."""
    self.shard.assign(batch.end.shard)
    self.offset.assign(batch.end.offset)
    self.shards_before.assign(batch.shards_before_end)
    self.examples.assign_add(batch.size)

  def position(self) -> stream_lib.StreamPosition:
    return stream_lib.StreamPosition(self.shard.numpy().decode("utf-8"),
                                     int(self.offset.numpy()))


def checkpoint_position(checkpoint: str) -> stream_lib.StreamPosition:
  """The stream position a stream checkpoint holds (read without a model)."""
  state = StreamState()
  status = tf.train.Checkpoint(stream=state).restore(checkpoint)
  status.expect_partial()  # the model, optimizer and metrics are not wanted here
  try:
    status.assert_existing_objects_matched()
  except AssertionError:
    raise ValueError(f"{checkpoint}: not a stream run's checkpoint (no stream "
                     "position)") from None
  return state.position()


class StreamModel:
  """The model and everything checkpointed with it, and the one-batch step."""

  DISTRIBUTED = False  # the model lives in this process only

  def __init__(self, config: train_config.TrainConfig, features: FeatureConfig,
               stream: train_config.StreamConfig, model_dir: str,
               strategy: Optional[tf.distribute.Strategy] = None):
    tf.keras.utils.set_random_seed(config.seed)
    self.strategy = strategy
    with strategy.scope() if strategy else contextlib.nullcontext():
      self.model = config.build_model(features)
    # The position and the progressive metrics live with the process that
    # runs the loop (under parameter servers: the chief), not on the ps.
    self.state = StreamState()
    self.progressive = ProgressiveMetrics(window=stream.progressive_window)
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.model.optimizer, stream=self.state,
        progressive=self.progressive)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(model_dir, model_dir_lib.CHECKPOINT_DIR),
        max_to_keep=stream.keep_checkpoints)
    self.log = (audit_log.TrainedExamplesLog(os.path.join(model_dir, AUDIT_DIR))
                if stream.audit_log else None)
    self.step_fn = self._make_step_fn()

  def _make_step_fn(self):
    model, state, progressive = self.model, self.state, self.progressive
    score_batch = scoring_step(model)

    @tf.function(reduce_retracing=True)
    def step_fn(batch, shard, end_offset, shards_before):
      logs, scores = score_batch(batch)
      progressive.update(batch[schema_lib.LABEL], scores)
      state.shard.assign(shard)
      state.offset.assign(end_offset)
      state.shards_before.assign(shards_before)
      state.examples.assign_add(tf.size(scores, out_type=tf.int64))
      return logs
    return step_fn

  def submit(self, batch: stream_lib.StreamBatch) -> Completed:
    """Scores, trains on and passes ``batch`` now; it is the step completed."""
    logs = self.step_fn(batch.features, tf.constant(batch.end.shard),
                        tf.constant(batch.end.offset, tf.int64),
                        tf.constant(batch.shards_before_end, tf.int64))
    if self.log is not None:
      self.log.add(batch.shards, batch.offsets, batch.fingerprints)
    return [(batch, logs)]

  def drain(self) -> Completed:
    """Nothing is ever in flight here."""
    return []

  def agree(self, flags: Sequence[bool]) -> List[bool]:
    """``flags`` as every process of the run sees them (true on any): here,
    one process, as they are."""
    return list(flags)

  def export_model(self):
    """The Keras model an export writes."""
    return self.model

  def latest_checkpoint(self) -> Optional[str]:
    """The checkpoint a run resumes from."""
    return self.manager.latest_checkpoint

  def iterations(self) -> int:
    return int(self.model.optimizer.iterations.numpy())

  def create_variables(self, schema: schema_lib.DatasetSchema,
                       lengths: reader.SequenceLengths) -> None:
    """Creates every variable (model, queues, optimizer slots) with one traced
    step on a throwaway batch, for a checkpoint to overwrite them all."""
    self.step_fn(reader.zeros_batch(schema, lengths, batch_size=2), tf.constant(""),
                 tf.constant(0, tf.int64), tf.constant(0, tf.int64))


def scoring_step(model):
  """``batch -> (logs, scores)``: the model's scores BEFORE the update
  (progressive validation), then its ``train_step`` on the batch.

  Without batch-dependent layers the training forward gives the scores;
  otherwise (batch statistics, dropout) an inference forward runs first.
  """
  if model.training_scores_are_inference_scores:
    return model.train_step_with_scores

  def score_then_train(batch):
    scores = model(batch, training=False)
    return model.train_step(batch), scores
  return score_then_train
