"""Stream training: one pass over log shards as they land, resumable exactly once.

`train_stream` reads a stream folder (`data_pipeline.stream`) in shard-name order
and, for every batch,

1. scores it with the current model (progressive validation, `ProgressiveMetrics`),
2. trains on it (the model's own ``train_step``: L_CTR plus the graph losses),
3. moves the stream position to the end of the batch,

all in one ``tf.function`` call, so the model, its negative queues, the optimizer,
the progressive metrics and the position always change together. Checkpoints
(``tf.train.CheckpointManager``) hold all of them, so a run killed at any moment
(even ``kill -9``) restarts from its latest checkpoint at exactly the record after
the last batch that checkpoint's model was trained on: no example is trained twice
into the model, none is skipped. With ``audit_log`` the ids of the trained examples
are written in segments committed with the checkpoints (`egin_tf.train.audit_log`),
which makes that checkable.

Periodic exports (every N steps and/or M minutes) write SavedModel versions
``export_dir/<version>/`` for TF Serving (`egin_tf.serve.export`: written under a
temporary name and renamed), with warm-up requests made of the latest trained
records and ``assets.extra/export_info.json`` (step, examples, stream position),
and keep the newest K.

Faults:

* a non-finite loss or gradient stops the run: ``CTRModel.train_step`` does not
  apply such an update, and nothing is checkpointed or exported after it
  (`NonFiniteLossError` names the step, the batch's records and the last good
  checkpoint); NaN or infinite dense features are rejected by the reader;
* a checkpoint (or audit segment) that cannot be written, e.g. on a full disk,
  stops the run (`CheckpointWriteError`); ``tf.train.CheckpointManager`` updates
  its index only after a complete save, so the previous checkpoint stays the
  latest and usable; an export that cannot be written stops it too
  (`ExportWriteError`), leaving earlier versions as they were;
* bad records are reported by the stream (shard and record), or skipped and
  listed under ``on_bad="skip"``;
* SIGTERM or SIGINT finish the current step, checkpoint and stop cleanly.
"""

import dataclasses
import json
import os
import signal
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.prefetch import Prefetcher
from data_pipeline.tf_env import tf
from egin_tf.train import audit_log
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from egin_tf.train import evaluation
from egin_tf.train import actions as train_actions
from egin_tf.train.actions import (  # noqa: F401  (public here since before)
    CheckpointWriteError, ExportWriteError, EXPORT_INFO_FILE)
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import streamable
from egin_tf.train.progressive import ProgressiveMetrics

AUDIT_DIR = "trained_examples"
LOG_DIR = os.path.join("logs", "stream")


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the model state after that step is not saved."""


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

  def position(self) -> stream_lib.StreamPosition:
    return stream_lib.StreamPosition(self.shard.numpy().decode("utf-8"),
                                     int(self.offset.numpy()))


def _model_config(model_dir: str, stream_dir: str, config: train_config.TrainConfig,
                  schema: schema_lib.DatasetSchema, pattern: str) -> FeatureConfig:
  """Writes (first run) or checks (resume) the model directory's config."""
  if model_dir_lib.exists(model_dir):
    saved = model_dir_lib.read_config(model_dir)
    before = model_dir_lib.train_config(saved, train_config.TrainConfig)
    model_dir_lib.check_resume(model_dir, (before, train_config.model_config(before)),
                               (config, train_config.model_config(config)))
    return saved.features
  features = train_config.feature_config(schema, config)
  model_dir_lib.write_config(model_dir, config, train_config.model_config(config), features,
                             schema, os.path.join(stream_dir, pattern))
  return features


def _format_progress(step: int, position: stream_lib.StreamPosition,
                     progressive: Dict[str, float], logs: Dict[str, float],
                     examples_per_second: float, window: int) -> str:
  losses = "  ".join(f"{k} {v:.4f}" for k, v in logs.items()
                     if k.endswith("loss") and k != "loss")
  losses += "".join(f"  {k} {v:.2%}" for k, v in logs.items()
                    if k.endswith("_collisions"))
  return (f"step {step:,}  at {position}  progressive AUC "
          f"{progressive['running_auc']:.4f} (last {min(window, progressive['examples']):,}: "
          f"{progressive['window_auc']:.4f})  logloss "
          f"{progressive['running_logloss']:.4f} ({progressive['window_logloss']:.4f})"
          f"  {losses}  {examples_per_second:,.0f} ex/s")


class _StopFlag:
  """Set by SIGTERM/SIGINT; the loop checkpoints and stops after the current step."""

  def __init__(self):
    self.signal = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._set)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _set(self, signum, frame):
    del frame
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _sleep_unless(stop: _StopFlag, seconds: float) -> None:
  """Waits ``seconds`` in short naps, returning early once a stop signal came."""
  end = time.monotonic() + seconds
  while stop.signal is None and time.monotonic() < end:
    time.sleep(min(0.5, max(0.0, end - time.monotonic())))


class _StreamModel:
  """The model and everything checkpointed with it, and the one-batch step."""

  def __init__(self, config: train_config.TrainConfig, features: FeatureConfig,
               stream: train_config.StreamConfig, model_dir: str):
    tf.keras.utils.set_random_seed(config.seed)
    self.model = train_config.build_from_config(config, features)
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
    # Progressive scores are the model's before the update. Without batch-dependent
    # layers the training forward gives them; otherwise (batch statistics,
    # dropout) an inference forward runs first.
    score_separately = not model.training_scores_are_inference_scores

    @tf.function(reduce_retracing=True)
    def step_fn(batch, shard, end_offset, shards_before):
      labels = batch[schema_lib.LABEL]
      if score_separately:
        scores = model(batch, training=False)
        logs = model.train_step(batch)
      else:
        logs, scores = model.train_step_with_scores(batch)
      progressive.update(labels, scores)
      state.shard.assign(shard)
      state.offset.assign(end_offset)
      state.shards_before.assign(shards_before)
      state.examples.assign_add(tf.size(labels, out_type=tf.int64))
      return logs
    return step_fn

  def train_on(self, batch: stream_lib.StreamBatch):
    """Scores, trains on and passes ``batch``; the step's logs."""
    return self.step_fn(batch.features, tf.constant(batch.end.shard),
                        tf.constant(batch.end.offset, tf.int64),
                        tf.constant(batch.shards_before_end, tf.int64))

  def iterations(self) -> int:
    return int(self.model.optimizer.iterations.numpy())


@dataclasses.dataclass
class _Start:
  """Where a run starts: stream position, shards before it (None: count), step."""
  position: stream_lib.StreamPosition
  shards_before: Optional[int]
  step: int
  checkpoint: Optional[str]


def _restore_or_start(run: _StreamModel, schema: schema_lib.DatasetSchema,
                      lengths: reader.SequenceLengths, stream_dir: str,
                      model_name: str, print_fn: Callable[[str], None]) -> _Start:
  """Resumes from the latest checkpoint (or warm-starts from an offline one),
  else starts the stream from its top; rolls the audit log back to match."""
  latest = run.manager.latest_checkpoint
  if not latest:
    if run.log is not None:
      run.log.rollback_to(0)
    print_fn(f"training {model_name} on the stream in {stream_dir} from its start")
    return _Start(stream_lib.StreamPosition(), None, 0, None)
  # Create every variable (model, queues, optimizer slots) with one traced
  # step on a throwaway batch, then overwrite them all from the checkpoint.
  run.step_fn(reader.zeros_batch(schema, lengths, batch_size=2), tf.constant(""),
              tf.constant(0, tf.int64), tf.constant(0, tf.int64))
  # The checkpoint's reader directly: tf.train.list_variables first asks
  # isdir(latest), which ram:// answers True for a prefix of files.
  saved = {name.split("/")[0] for name in
           tf.compat.v1.train.NewCheckpointReader(latest).get_variable_to_shape_map()}
  if "stream" in saved:
    run.checkpoint.restore(latest).assert_existing_objects_matched()
    start = _Start(run.state.position(), int(run.state.shards_before.numpy()),
                   run.iterations(), latest)
    print_fn(f"resuming from {latest} (step {start.step:,}, "
             f"{int(run.state.examples.numpy()):,} examples trained) at {start.position}")
  else:
    # An offline (`offline.train`) checkpoint: warm start, stream from the top.
    tf.train.Checkpoint(model=run.model, optimizer=run.model.optimizer).restore(
        latest).assert_existing_objects_matched()
    run.state.reset()
    run.progressive.reset()
    start = _Start(stream_lib.StreamPosition(), None, run.iterations(), latest)
    print_fn(f"warm start from the offline checkpoint {latest} (step "
             f"{start.step:,}); reading the stream in {stream_dir} from its start")
  run.model.reset_metrics()
  if run.log is not None:
    for path in run.log.rollback_to(start.step):
      print_fn(f"  discarded {path}: written for a checkpoint that never completed")
  return start


@dataclasses.dataclass
class _LoopState:
  """The loop's counters: steps in total, examples of this run, last records."""
  step: int
  trained_examples: int = 0
  recent_records: list = dataclasses.field(default_factory=list)
  stopped_by: str = "end of stream"


class _ProgressLog:
  """Every ``log_every`` steps: a progress line and TensorBoard points.

  Counted on absolute steps (a run resumed at step 1003 logs at 1100, as an
  unbroken run would), so ``when`` starts at the last multiple of ``log_every``.
  """

  def __init__(self, stream: train_config.StreamConfig, print_fn: Callable[[str], None],
               start_step: int):
    self.when = train_actions.Periodic(steps=stream.log_every)
    self.when.reset(start_step - start_step % stream.log_every)
    self.window = stream.progressive_window
    self.print_fn = print_fn
    self.chunk_start, self.chunk_examples = time.perf_counter(), 0

  def after_step(self, step: int, batch: stream_lib.StreamBatch, logs,
                 run: _StreamModel) -> None:
    self.chunk_examples += batch.size
    if not self.when.due(step):
      return
    self.when.reset(step)
    now = time.perf_counter()
    speed = self.chunk_examples / max(now - self.chunk_start, 1e-9)
    self.chunk_start, self.chunk_examples = now, 0
    result = run.progressive.result()
    values = {k: float(v.numpy()) for k, v in logs.items()}
    self.print_fn(_format_progress(step, batch.end, result, values, speed, self.window))
    for key, value in result.items():
      if key != "examples":
        tf.summary.scalar(f"progressive/{key}", value, step=step)
    for key, value in values.items():
      tf.summary.scalar(f"train/{key}", value, step=step)
    tf.summary.scalar("train/examples_per_second", speed, step=step)
    run.model.reset_metrics()


def _check_finite(logs, step: int, batch: stream_lib.StreamBatch,
                  last_good: Optional[str]) -> None:
  """Raises `NonFiniteLossError` if the step's loss is NaN or infinite."""
  loss = float(logs["loss"].numpy())
  if not np.isfinite(loss):
    raise NonFiniteLossError(
        f"the loss or its gradients became non-finite ({loss}) at step "
        f"{step:,}, on the batch of {batch.size} records from {batch.shards[0]} "
        f"record {int(batch.offsets[0])} to {batch.shards[-1]} record "
        f"{int(batch.offsets[-1])}; its update was not applied, training "
        "stopped and nothing was saved from this step. Last good checkpoint: "
        f"{last_good or 'none'}")


def _actions(run: _StreamModel, start: _Start, loop: _LoopState, schema,
             lengths, stream: train_config.StreamConfig, model_dir: str,
             print_fn: Callable[[str], None]):
  """The checkpointer and the exporter (None without ``export_dir``)."""
  checkpointer = train_actions.Checkpointer(
      run.manager, train_actions.Periodic(stream.checkpoint_every_steps,
                                          stream.checkpoint_every_seconds),
      run.log, last_good=start.checkpoint)
  checkpointer.when.reset(start.step)
  if not stream.export_dir:
    return checkpointer, None
  minutes = stream.export_every_minutes
  exporter = train_actions.Exporter(
      run.model, schema, lengths, stream.export_dir, stream.keep_exports,
      train_actions.Periodic(stream.export_every_steps,
                             None if minutes is None else 60 * minutes),
      run.manager, info=lambda: train_actions.stream_export_info(run.state, model_dir),
      warmup=lambda: loop.recent_records or None, print_fn=print_fn)
  exporter.when.reset(start.step)
  return checkpointer, exporter


def _train_loop(batches, run: _StreamModel, loop: _LoopState, checkpointer,
                exporter, progress: _ProgressLog, stop: _StopFlag) -> None:
  """Trains batch after batch; checkpoints and exports when due, and at the end."""
  for batch in batches:
    logs = run.train_on(batch)
    loop.step += 1
    _check_finite(logs, loop.step, batch, checkpointer.last_good)
    loop.trained_examples += batch.size
    loop.recent_records = batch.records[:100]
    if run.log is not None:
      run.log.add(batch.shards, batch.offsets, batch.fingerprints)
    progress.after_step(loop.step, batch, logs, run)
    checkpointer.maybe_run(loop.step)
    if exporter is not None:
      exporter.maybe_run(loop.step)
    if stop.signal is not None:
      break
  if stop.signal is not None:
    loop.stopped_by = signal.Signals(stop.signal).name
  checkpointer.finish(loop.step)
  if exporter is not None:
    exporter.finish(loop.step)


def _open_stream(stream_dir: str, config: train_config.TrainConfig,
                 stream: train_config.StreamConfig, lengths, schema, start: _Start,
                 stop: _StopFlag) -> stream_lib.ShardStream:
  return stream_lib.ShardStream(
      stream_dir, config.batch_size, lengths, schema=schema, start=start.position,
      follow=stream.follow, poll_seconds=stream.poll_seconds,
      idle_timeout=stream.idle_timeout, on_bad=stream.on_bad, pattern=stream.shard_pattern,
      fingerprints=stream.audit_log, shards_before_start=start.shards_before,
      sleep=lambda seconds: _sleep_unless(stop, seconds),
      should_stop=lambda: stop.signal is not None)


def _run_summary(run: _StreamModel, loop: _LoopState, shard_stream, exporter,
                 stream: train_config.StreamConfig, seconds: float,
                 print_fn: Callable[[str], None]) -> Dict[str, Any]:
  """Prints the run's last line; the result dict (no evaluation yet)."""
  result = run.progressive.result()
  rate = loop.trained_examples / max(seconds, 1e-9)
  window = min(stream.progressive_window, result['examples'])
  print_fn(f"stopped ({loop.stopped_by}) at step {loop.step:,}, {run.state.position()}: "
           f"trained {loop.trained_examples:,} examples in this run ({rate:,.0f}"
           f" ex/s), {result['examples']:,} in total; progressive AUC "
           f"{result['running_auc']:.4f}, last {window:,}: "
           f"{result['window_auc']:.4f}; {shard_stream.skip_summary()}")
  return {
      "steps": loop.step,
      "examples": result["examples"],
      "examples_this_run": loop.trained_examples,
      "position": dataclasses.asdict(run.state.position()),
      "progressive": result,
      "skipped": [str(s) for s in shard_stream.skipped],
      "exports": exporter.exports if exporter is not None else [],
      "seconds": seconds,
      "stopped_by": loop.stopped_by,
      "eval": None,
      "oracle": None,
  }


def train_stream(stream_dir: str, model_dir: str, config: train_config.TrainConfig,
                 stream: train_config.StreamConfig = train_config.StreamConfig(),
                 eval_pattern: Optional[str] = None,
                 print_fn: Callable[[str], None] = print) -> Dict[str, Any]:
  """Trains ``config.model`` on a stream folder, resuming from ``model_dir``.

  Args:
    stream_dir: the stream folder (shards sorting in time order, schema.json).
    model_dir: config, checkpoints, logs (TensorBoard under logs/stream) and the
      trained-example log; a run resumes from what is there. A model directory
      of an offline run (`offline.train`, same model settings) is a warm start:
      its model and optimizer, then the stream from its start.
    config: the model and optimizer settings (``epochs``/``steps`` unused: a
      stream is read once).
    stream: how to read, checkpoint and export.
    eval_pattern: test data scored exactly at the end (optional).
    print_fn: progress lines go here.

  Returns:
    ``{"steps", "examples", "position", "progressive", "skipped", "exports",
    "eval", "oracle", "seconds", "stopped_by"}``.
  """
  if not streamable(config.model):
    raise ValueError(f"{config.model} cannot train on a stream: it needs the "
                     "whole training data before its first step (a first "
                     "stage, e.g. EGES's graph); use another model")
  schema = schema_lib.DatasetSchema.load(stream_dir)
  tf.io.gfile.makedirs(model_dir)
  features = _model_config(model_dir, stream_dir, config, schema, stream.shard_pattern)
  lengths = train_config.sequence_lengths(config)
  run = _StreamModel(config, features, stream, model_dir)
  start = _restore_or_start(run, schema, lengths, stream_dir, config.model, print_fn)
  stop = _StopFlag()
  shard_stream = _open_stream(stream_dir, config, stream, lengths, schema, start, stop)
  # Reading and parsing the next batches overlaps with the current step.
  batches = Prefetcher(shard_stream, depth=2)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, LOG_DIR))
  loop = _LoopState(step=start.step)
  checkpointer, exporter = _actions(run, start, loop, schema, lengths, stream,
                                    model_dir, print_fn)
  progress = _ProgressLog(stream, print_fn, start.step)
  run_start = time.perf_counter()
  with stop, batches, writer.as_default():
    _train_loop(batches, run, loop, checkpointer, exporter, progress, stop)
    writer.flush()
  out = _run_summary(run, loop, shard_stream, exporter, stream,
                     time.perf_counter() - run_start, print_fn)
  if eval_pattern:
    out.update(evaluation.evaluate_and_print(run.model, eval_pattern, config, schema,
                                             print_fn))
  with tf.io.gfile.GFile(os.path.join(model_dir, "stream_metrics.json"), "w") as f:
    json.dump(out, f, indent=2)
  return out
