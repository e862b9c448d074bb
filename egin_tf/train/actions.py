"""What the training loops do now and then, apart from when they do it.

`Periodic` says *when* (every N steps and/or M seconds since the last time);
`Checkpointer` and `Exporter` say *what* (write a checkpoint with its audit
segment; write a SavedModel version and prune old ones). Each action owns a
`Periodic` and resets it after it ran, so the loop only asks ``maybe_run``.
`NanStop` stops training at a non-finite loss.

The stream trainer (`egin_tf.train.stream`) calls them after each step; the
offline fit (`egin_tf.train.offline`) through `ChunkEndActions`, a Keras
callback, at the end of each progress chunk: each action is written once.
"""

import dataclasses
import json
import math
import time
from typing import Any, Callable, List, Optional

from data_pipeline import paths
from data_pipeline.tf_env import tf
from egin_tf.serve import export as export_lib

EXPORT_INFO_FILE = "export_info.json"


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written; the previous one is still the latest."""


class ExportWriteError(RuntimeError):
  """An export could not be written; earlier versions are untouched."""


class Periodic:
  """Due every ``steps`` steps and/or ``seconds`` seconds since the last reset.

  Either may be None (off); with neither it is never due. ``clock`` returns
  seconds (default `time.monotonic`; tests pass a fake one).
  """

  def __init__(self, steps: Optional[int] = None, seconds: Optional[float] = None,
               clock: Optional[Callable[[], float]] = None):
    self.steps = steps
    self.seconds = seconds
    # time.monotonic looked up now, not at import: a test that patches it
    # reaches the Periodic a callback builds.
    self._clock = clock or time.monotonic
    self.reset(0)

  def reset(self, step: int) -> None:
    """Starts counting again from ``step`` and now."""
    self.last_step = step
    self._last_time = self._clock()

  def due(self, step: int) -> bool:
    """Whether the action is due at ``step``."""
    if self.steps is not None and step - self.last_step >= self.steps:
      return True
    return (self.seconds is not None and
            self._clock() - self._last_time >= self.seconds)

  def pending(self, step: int) -> bool:
    """Whether steps were taken since the last reset (what a final run needs)."""
    return step != self.last_step


class PeriodicAction:
  """An action (``run(step)``, defined by subclasses) and *when* to take it.

  Orbit's ConditionalAction split: ``self.when`` (a `Periodic`) decides, ``run``
  does; ``run`` resets ``when`` after it succeeds.
  """

  when: Periodic

  def run(self, step: int) -> None:
    raise NotImplementedError

  def maybe_run(self, step: int) -> None:
    """Runs if ``when`` is due at ``step``."""
    if self.when.due(step):
      self.run(step)

  def finish(self, step: int) -> None:
    """The final run, unless the last one already holds ``step``."""
    if self.when.pending(step):
      self.run(step)


class Checkpointer(PeriodicAction):
  """Commits the audit segment (if any), then saves a checkpoint numbered by step."""

  def __init__(self, manager: tf.train.CheckpointManager, when: Periodic,
               log=None, last_good: Optional[str] = None):
    self.manager = manager
    self.when = when
    self.log = log
    # The newest checkpoint known complete (named by `NonFiniteLossError`).
    self.last_good = last_good

  def run(self, step: int) -> None:
    """Saves now; raises `CheckpointWriteError` if that fails."""
    try:
      if self.log is not None:
        self.log.commit(step)
      path = self.manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
      raise CheckpointWriteError(
          f"could not write the checkpoint of step {step:,} in "
          f"{self.manager.directory}: {e}; training stopped. The previous checkpoint, "
          f"{self.manager.latest_checkpoint or 'none'}, is intact and a restart resumes "
          "from it") from e
    self.last_good = path
    self.when.reset(step)


class Exporter(PeriodicAction):
  """Writes a SavedModel version for TF Serving and keeps the newest ``keep``.

  ``model()`` gives the Keras model to export (under synchronous workers a copy
  of the distributed one, `egin_tf.train.stream_mwms`); ``info()`` the stream
  facts of ``assets.extra/export_info.json`` (step added here); ``warmup()`` the
  records for the warm-up requests (or None).
  """

  def __init__(self, model: Callable[[], Any], schema, lengths, export_dir: str, keep: int,
               when: Periodic, manager: tf.train.CheckpointManager,
               info: Callable[[], dict], warmup: Callable[[], Optional[List[Any]]],
               print_fn: Callable[[str], None] = print):
    self.model, self.schema, self.lengths = model, schema, lengths
    self.export_dir, self.keep = export_dir, keep
    self.when, self.manager = when, manager
    self._info, self._warmup, self._print = info, warmup, print_fn
    self.exports: List[str] = []

  def run(self, step: int) -> None:
    """Exports now; raises `ExportWriteError` if that fails."""
    # Versions are numbered by `export.next_version` (wall-clock seconds, always
    # above the newest version there), never by step: after a restart from an
    # earlier checkpoint, or into an export folder of an older run, the newest
    # version TF Serving picks must be the newest model.
    info = {"step": step, **self._info()}
    try:
      path = export_lib.export_saved_model(
          self.model(), self.schema, self.lengths, self.export_dir,
          warmup_examples=self._warmup(),
          extra_assets={EXPORT_INFO_FILE: json.dumps(info, indent=2) + "\n"})
    except (OSError, tf.errors.OpError) as e:
      raise ExportWriteError(
          f"could not export step {step:,} to {self.export_dir}: {e}; training "
          "stopped. Earlier versions are untouched; the latest checkpoint is "
          f"{self.manager.latest_checkpoint or 'none'}") from e
    removed = export_lib.prune_versions(self.export_dir, self.keep)
    self.exports.append(path)
    self._print(f"exported step {step:,} to {path}" +
                (f" (removed {len(removed)} older)" if removed else ""))
    self.when.reset(step)


class NanStop:
  """Stops training at a NaN or infinite loss, naming where it happened.

  The check is the same in both loops; what stopping means is not, so the loop
  passes it as ``stop(message)``: the stream raises (nothing after that step
  may be saved), the offline fit ends after the chunk (``model.stop_training``).
  """

  def __init__(self, stop: Callable[[str], None]):
    self._stop = stop

  def check(self, loss, where: Callable[[], str]) -> bool:
    """Whether ``loss`` is finite; if not, calls ``stop`` with a message.

    ``where()`` names the step or chunk (called only then: naming a stream
    batch formats its shards and records).
    """
    value = float(loss)
    if math.isfinite(value):
      return True
    self._stop(f"the loss or its gradients became non-finite ({value}) at {where()}")
    return False


class ChunkEndActions(tf.keras.callbacks.Callback):
  """The actions of a Keras fit, at the end of each progress chunk ("epoch").

  The NaN stop checks the chunk's mean loss and ends the fit (printing why);
  the checkpointer saves when its `Periodic` is due, numbered by the
  optimizer's iterations, and once more at the end of training unless its last
  save holds that step. A failed save raises `CheckpointWriteError`.

  Per chunk, not per step: `CTRModel.train_step` refuses non-finite updates
  and the chunk's loss mean stays NaN, so nothing is lost by waiting; a
  per-step hook makes Keras fetch every metric after every step (and under
  parameter servers a step's logs are remote values only a chunk's end
  fetches).
  """

  def __init__(self, checkpointer: Checkpointer,
               print_fn: Callable[[str], None] = print):
    super().__init__()
    self.checkpointer = checkpointer
    self.nan_stop = NanStop(self._stop_fit)
    self._print = print_fn

  def on_epoch_end(self, epoch, logs=None):
    self.nan_stop.check((logs or {}).get("loss", 0.0), lambda: f"chunk {epoch + 1}")
    self.checkpointer.maybe_run(self._step())

  def on_train_end(self, logs=None):
    self.checkpointer.finish(self._step())

  def _step(self) -> int:
    return int(self.model.optimizer.iterations.numpy())

  def _stop_fit(self, message: str) -> None:
    self._print(message + "; stopping")
    self.model.stop_training = True


def stream_export_info(state, model_dir: str) -> dict:
  """What an export records of the stream: examples trained, position, model dir."""
  return {"examples_trained": int(state.examples.numpy()),
          "position": dataclasses.asdict(state.position()),
          "model_dir": paths.abspath(model_dir)}
