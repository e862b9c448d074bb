"""Stream training: one pass over log shards as they land, resumable exactly once.

`StreamTrainer` owns a run (``restore()``, ``train()``, ``summary()``; what it
does now and then, checkpoint, export and NaN stop, are `egin_tf.train.actions`);
`train_stream` is the whole run. It reads a stream folder (`data_pipeline.stream`)
in shard-name order and, for every batch,

1. scores it with the current model (progressive validation, `ProgressiveMetrics`),
2. trains on it (the model's own ``train_step``: L_CTR plus the graph losses),
3. moves the stream position to the end of the batch,

all in one ``tf.function`` call (`egin_tf.train.stream_model.StreamModel`), so the
model, its negative queues, the optimizer, the progressive metrics and the
position always change together. (Under parameter servers the workers run the
steps and the chief moves the position as they complete; checkpoints come after
a drain: `egin_tf.train.stream_ps`, with its guarantee.) Checkpoints
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
from typing import Any, Callable, Dict, List, Optional

from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.data_split import DataSplit
from data_pipeline.prefetch import Prefetcher
from data_pipeline.tf_env import tf
from egin_tf.train import distribute
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from egin_tf.train import evaluation
from egin_tf.train import actions as train_actions
from egin_tf.train.actions import (  # noqa: F401  (public here since before)
    CheckpointWriteError, ExportWriteError, EXPORT_INFO_FILE)
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import streamable
from egin_tf.train.stream_model import (  # noqa: F401  (public here since before)
    AUDIT_DIR, StreamModel, StreamState, checkpoint_position)
from egin_tf.train.stream_mwms import MirroredStreamModel
from egin_tf.train.stream_ps import ParameterServerStreamModel

LOG_DIR = os.path.join("logs", "stream")


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the model state after that step is not saved."""


def _model_config(model_dir: str, stream_dir: str, config: train_config.TrainConfig,
                  schema: schema_lib.DatasetSchema, pattern: str,
                  write: bool = True) -> FeatureConfig:
  """Writes (first run) or checks (resume) the model directory's config
  (``write`` False: a worker that is not the chief only reads it)."""
  if not write:
    if model_dir_lib.exists(model_dir):
      return model_dir_lib.read_config(model_dir).features
    return train_config.feature_config(schema, config)
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


def _stream_model(config: train_config.TrainConfig, features: FeatureConfig,
                  stream: train_config.StreamConfig, out_dir: str,
                  strategy: Optional[tf.distribute.Strategy], index: int,
                  model_dir: str) -> StreamModel:
  """The `StreamModel` that runs the steps under ``strategy``."""
  if strategy is not None and distribute.is_parameter_server(strategy):
    return ParameterServerStreamModel(config, features, stream, out_dir, strategy)
  if strategy is not None:
    return MirroredStreamModel(config, features, stream, out_dir, strategy, index,
                               chief_dir=model_dir)
  return StreamModel(config, features, stream, out_dir)


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


@dataclasses.dataclass
class RunStart:
  """Where a run starts: stream position, shards before it (None: count), step,
  and the checkpoint it restored (None: a fresh model)."""
  position: stream_lib.StreamPosition
  shards_before: Optional[int]
  step: int
  checkpoint: Optional[str]


@dataclasses.dataclass
class _LoopState:
  """The loop's counters: steps in total, examples of this run, last records."""
  step: int
  trained_examples: int = 0
  recent_records: list = dataclasses.field(default_factory=list)
  stopped_by: str = "end of stream"
  seconds: float = 0.0


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
                 run: StreamModel) -> None:
    self.chunk_examples += batch.size
    if not self.when.due(step):
      return
    self.when.reset(step)
    now = time.perf_counter()
    speed = self.chunk_examples / max(now - self.chunk_start, 1e-9)
    self.chunk_start, self.chunk_examples = now, 0
    result = run.progressive.result()
    values = {k: float(v) for k, v in logs.items()}
    self.print_fn(_format_progress(step, batch.end, result, values, speed, self.window))
    for key, value in result.items():
      if key != "examples":
        tf.summary.scalar(f"progressive/{key}", value, step=step)
    for key, value in values.items():
      tf.summary.scalar(f"train/{key}", value, step=step)
    tf.summary.scalar("train/examples_per_second", speed, step=step)
    run.model.reset_metrics()


def _batch_where(step: int, batch: stream_lib.StreamBatch) -> str:
  """Names a step and its batch's records (what `NonFiniteLossError` says)."""
  return (f"step {step:,}, on the batch of {batch.size} records from {batch.shards[0]} "
          f"record {int(batch.offsets[0])} to {batch.shards[-1]} record "
          f"{int(batch.offsets[-1])}")


class StreamTrainer:
  """One run over a stream folder into a model directory.

  Orbit's ``Controller``: this object owns the outer loop; the actions of
  `egin_tf.train.actions` say what is done now and then (checkpoint, export,
  NaN stop), each with its own *when*.

  ```python
  trainer = StreamTrainer(stream_dir, model_dir, config, stream_config)
  trainer.restore()           # resume, warm start, or the stream's top
  trainer.train()             # to the end of the stream or SIGTERM/SIGINT
  result = trainer.summary()  # steps, examples, position, progressive, ...
  ```
  """

  def __init__(self, stream_dir: str, model_dir: str, config: train_config.TrainConfig,
               stream: train_config.StreamConfig = train_config.StreamConfig(),
               print_fn: Callable[[str], None] = print,
               strategy: Optional[tf.distribute.Strategy] = None):
    """Reads the stream's schema, writes (first run) or checks (resume) the
    model directory's config and builds the model and what is saved with it.

    Under a ``ParameterServerStrategy`` (this process the chief) the steps run
    on the cluster's workers (`egin_tf.train.stream_ps`); without a strategy,
    here.

    Raises:
      ValueError: ``config.model`` cannot train on a stream.
    """
    if not streamable(config.model):
      raise ValueError(f"{config.model} cannot train on a stream: it needs the "
                       "whole training data before its first step (a first "
                       "stage, e.g. EGES's graph); use another model")
    self.stream_dir, self.model_dir = stream_dir, model_dir
    self.config = config
    task = distribute.current_task()
    self.is_chief = strategy is None or task.is_chief
    # Other (synchronous) workers write no audit log, and their checkpoints,
    # logs and exports to a scratch folder: they must save and export with the
    # chief, whose saves read variables all workers hold (collectives).
    self.out_dir = model_dir if self.is_chief else os.path.join(
        model_dir, "non_chief", f"worker-{task.index}")
    self.stream = stream if self.is_chief else dataclasses.replace(
        stream, audit_log=False, keep_exports=1, export_dir=stream.export_dir and
        os.path.join(self.out_dir, "exports"))
    self._print = print_fn if self.is_chief else (lambda line: None)
    self.schema = schema_lib.DatasetSchema.load(stream_dir)
    self.lengths = config.sequence_lengths()
    tf.io.gfile.makedirs(self.out_dir)
    features = _model_config(model_dir, stream_dir, config, self.schema,
                             stream.shard_pattern, write=self.is_chief)
    self._run = _stream_model(config, features, self.stream, self.out_dir, strategy,
                              task.index, model_dir)
    self._nan_stop = train_actions.NanStop(self._raise_non_finite)
    self.start: Optional[RunStart] = None
    self._loop: Optional[_LoopState] = None
    self._shard_stream: Optional[stream_lib.ShardStream] = None
    self._checkpointer: Optional[train_actions.Checkpointer] = None
    self._exporter: Optional[train_actions.Exporter] = None
    self._progress: Optional[_ProgressLog] = None

  @property
  def model(self):
    """The Keras model (trained in place)."""
    return self._run.model

  def evaluation_model(self):
    """The trained model; under a strategy a copy of its last checkpoint in
    this process (tables whole, no strategy), which Keras' predict can run."""
    if self._run.DISTRIBUTED:
      return model_dir_lib.load_model(self.model_dir, train_config.TrainConfig).model
    return self.model

  def restore(self) -> RunStart:
    """Decides where the run starts and restores the state it starts from.

    The latest checkpoint of a stream run resumes at the record after its last
    trained batch; one of an offline run (`offline.train`, same model settings)
    is a warm start: its model and optimizer, the stream from its top; without
    a checkpoint the run starts at the stream's top. The audit log is rolled
    back to the step the run starts from. Only the first call restores.
    """
    if self.start is not None:
      return self.start
    latest = self._run.latest_checkpoint()
    if latest:
      self.start = self._restore_from(latest)
    else:
      self.start = RunStart(stream_lib.StreamPosition(), None, 0, None)
      self._print(f"training {self.config.model} on the stream in {self.stream_dir} "
                  "from its start")
    if self._run.log is not None:
      for path in self._run.log.rollback_to(self.start.step):
        self._print(f"  discarded {path}: written for a checkpoint that never completed")
    return self.start

  def _restore_from(self, latest: str) -> RunStart:
    """Restores ``latest``: a stream checkpoint (resume) or an offline one (warm start)."""
    run = self._run
    run.create_variables(self.schema, self.lengths)
    # The checkpoint's reader directly: tf.train.list_variables first asks
    # isdir(latest), which ram:// answers True for a prefix of files.
    saved = {name.split("/")[0] for name in
             tf.compat.v1.train.NewCheckpointReader(latest).get_variable_to_shape_map()}
    if "stream" in saved:
      run.checkpoint.restore(latest).assert_existing_objects_matched()
      start = RunStart(run.state.position(), int(run.state.shards_before.numpy()),
                       run.iterations(), latest)
      self._print(f"resuming from {latest} (step {start.step:,}, "
                  f"{int(run.state.examples.numpy()):,} examples trained) at "
                  f"{start.position}")
    else:
      tf.train.Checkpoint(model=run.model, optimizer=run.model.optimizer).restore(
          latest).assert_existing_objects_matched()
      run.state.reset()
      run.progressive.reset()
      start = RunStart(stream_lib.StreamPosition(), None, run.iterations(), latest)
      self._print(f"warm start from the offline checkpoint {latest} (step "
                  f"{start.step:,}); reading the stream in {self.stream_dir} from its start")
    run.model.reset_metrics()
    return start

  def train(self) -> None:
    """Trains batch after batch to the end of the stream or a stop signal.

    After every step the NaN stop checks the loss and the progress log, the
    checkpointer and the exporter run when due; at the end a last checkpoint
    and export. Restores first if `restore` was not called. Once per trainer
    (a new trainer on the model directory resumes where this one stopped).

    Raises:
      NonFiniteLossError: a step's loss or gradients were NaN or infinite.
      CheckpointWriteError: a checkpoint or audit segment could not be written.
      ExportWriteError: an export could not be written.
    """
    if self._loop is not None:
      raise RuntimeError("StreamTrainer.train runs once; a new StreamTrainer on "
                         f"{self.model_dir} resumes where this one stopped")
    start = self.restore()
    self._loop = _LoopState(step=start.step)
    stop = _StopFlag()
    self._shard_stream = self._open_stream(start, stop)
    # Reading and parsing the next batches overlaps with the current step.
    batches = Prefetcher(self._shard_stream, depth=2)
    writer = tf.summary.create_file_writer(os.path.join(self.out_dir, LOG_DIR))
    actions = self._periodic_actions(start)
    self._progress = _ProgressLog(self.stream, self._print, start.step)
    run_start = time.perf_counter()
    with stop, batches, writer.as_default():
      for batch in batches:
        self._completed(self._run.submit(batch))
        if self._run_due(stop):
          self._loop.stopped_by = "a stop signal to another worker"
          break
      if stop.signal is not None:
        self._loop.stopped_by = signal.Signals(stop.signal).name
      self._completed(self._run.drain())
      for action in actions:
        action.finish(self._loop.step)
      writer.flush()
    self._loop.seconds = time.perf_counter() - run_start

  def _completed(self, steps) -> None:
    """After each completed step: the NaN stop, the counters, the progress log."""
    loop = self._loop
    for batch, logs in steps:
      loop.step += 1
      self._nan_stop.check(logs["loss"], lambda: _batch_where(loop.step, batch))
      loop.trained_examples += batch.size
      loop.recent_records = batch.records[:100]
      self._progress.after_step(loop.step, batch, logs, self._run)

  def _run_due(self, stop: _StopFlag) -> bool:
    """The actions due now, after a drain (what they save holds no step in
    flight); whether to stop. Due and stop as all workers agree."""
    actions = (self._checkpointer, self._exporter)
    due = [action is not None and action.when.due(self._loop.step)
           for action in actions]
    *due, stopping = self._run.agree(due + [stop.signal is not None])
    if any(due):
      self._completed(self._run.drain())
      for action, now in zip(actions, due):
        if now:
          action.run(self._loop.step)
    return stopping

  def _raise_non_finite(self, message: str) -> None:
    """The stream's NaN stop: nothing after the step may be saved, so it raises."""
    raise NonFiniteLossError(
        f"{message}; its update was not applied, training stopped and nothing was "
        "saved from this step. Last good checkpoint: "
        f"{self._checkpointer.last_good or 'none'}")

  def _periodic_actions(self, start: RunStart) -> List[train_actions.PeriodicAction]:
    """The checkpointer, then the exporter (with ``export_dir``), due from ``start``."""
    run, stream = self._run, self.stream
    self._checkpointer = train_actions.Checkpointer(
        run.manager, train_actions.Periodic(stream.checkpoint_every_steps,
                                            stream.checkpoint_every_seconds),
        run.log, last_good=start.checkpoint)
    actions = [self._checkpointer]
    if stream.export_dir:
      minutes = stream.export_every_minutes
      self._exporter = train_actions.Exporter(
          run.export_model, self.schema, self.lengths, stream.export_dir, stream.keep_exports,
          train_actions.Periodic(stream.export_every_steps,
                                 None if minutes is None else 60 * minutes),
          run.manager,
          info=lambda: train_actions.stream_export_info(run.state, self.model_dir),
          warmup=lambda: self._loop.recent_records or None, print_fn=self._print)
      actions.append(self._exporter)
    for action in actions:
      action.when.reset(start.step)
    return actions

  def _open_stream(self, start: RunStart, stop: _StopFlag) -> stream_lib.ShardStream:
    stream = self.stream
    return stream_lib.ShardStream(
        self.stream_dir, self.config.batch_size, self.lengths, schema=self.schema,
        start=start.position, follow=stream.follow, poll_seconds=stream.poll_seconds,
        idle_timeout=stream.idle_timeout, on_bad=stream.on_bad,
        pattern=stream.shard_pattern, fingerprints=stream.audit_log,
        shards_before_start=start.shards_before,
        sleep=lambda seconds: _sleep_unless(stop, seconds),
        should_stop=lambda: stop.signal is not None,
        landing_timeout=stream.landing_timeout, done_suffix=stream.done_suffix)

  def summary(self) -> Dict[str, Any]:
    """Prints the run's last line; the result dict (``eval``/``oracle`` None:
    `train_stream` evaluates)."""
    if self._loop is None:
      raise RuntimeError("StreamTrainer.summary comes after train")
    run, loop = self._run, self._loop
    result = run.progressive.result()
    rate = loop.trained_examples / max(loop.seconds, 1e-9)
    window = min(self.stream.progressive_window, result['examples'])
    self._print(f"stopped ({loop.stopped_by}) at step {loop.step:,}, "
                f"{run.state.position()}: trained {loop.trained_examples:,} examples "
                f"in this run ({rate:,.0f} ex/s), {result['examples']:,} in total; "
                f"progressive AUC {result['running_auc']:.4f}, last {window:,}: "
                f"{result['window_auc']:.4f}; {self._shard_stream.skip_summary()}"
                f"{_waiting_note(self._shard_stream)}")
    return {
        "steps": loop.step,
        "examples": result["examples"],
        "examples_this_run": loop.trained_examples,
        "position": dataclasses.asdict(run.state.position()),
        "progressive": result,
        "skipped": [str(s) for s in self._shard_stream.skipped],
        "exports": self._exporter.exports if self._exporter is not None else [],
        "seconds": loop.seconds,
        "stopped_by": loop.stopped_by,
        "eval": None,
        "oracle": None,
    }


def _waiting_note(shards: stream_lib.ShardStream) -> str:
  """Says which record of a shard written in place was still cut off at the
  stop (not lost: the position is before it, so a resumed run reads it)."""
  if shards.waiting_for is None:
    return ""
  return (f"; stopped while waiting for the rest of {shards.waiting_for.shard} "
          f"record {shards.waiting_for.offset} (written in place; a resumed run "
          "reads it)")


def train_stream(stream_dir: str, model_dir: str, config: train_config.TrainConfig,
                 stream: train_config.StreamConfig = train_config.StreamConfig(),
                 eval_pattern: Optional[str] = None,
                 print_fn: Callable[[str], None] = print,
                 strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, Any]:
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
    strategy: a ``ParameterServerStrategy`` of the cluster this process is the
      chief of (`egin_tf.train.stream_ps`), a ``MultiWorkerMirroredStrategy``
      of the workers this process is one of (`egin_tf.train.stream_mwms`; the
      chief writes the model directory, evaluates and returns the result), or
      None (one process).

  Returns:
    ``{"steps", "examples", "position", "progressive", "skipped", "exports",
    "eval", "oracle", "seconds", "stopped_by"}``.
  """
  trainer = StreamTrainer(stream_dir, model_dir, config, stream, print_fn, strategy)
  trainer.restore()
  trainer.train()
  out = trainer.summary()
  if not trainer.is_chief:  # a synchronous worker: the chief reports
    tf.io.gfile.rmtree(trainer.out_dir)
    return out
  if eval_pattern:
    split = DataSplit.resolve(eval_pattern, "test", trainer.lengths)
    out.update(evaluation.evaluate_and_print(trainer.evaluation_model(), split, config,
                                             print_fn))
  with tf.io.gfile.GFile(os.path.join(model_dir, "stream_metrics.json"), "w") as f:
    json.dump(out, f, indent=2)
  return out
