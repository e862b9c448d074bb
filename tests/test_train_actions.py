"""Periodic: when an action is due, by steps, by seconds (a fake clock), both,
neither; the NaN stop; ChunkEndActions, the offline fit's callback (fake clock,
fake checkpoint manager, fake model)."""

import pytest

from data_pipeline.tf_env import tf
from egin_tf.train.actions import (CheckpointWriteError, Checkpointer, ChunkEndActions,
                                   NanStop, Periodic)
from fake_fit import Model, SavesRecorded


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_by_steps_due_every_n_steps_after_reset():
  when = Periodic(steps=3, clock=FakeClock())
  assert [s for s in range(1, 7) if when.due(s)] == [3, 4, 5, 6]
  when.reset(3)
  assert [s for s in range(4, 10) if when.due(s)] == [6, 7, 8, 9]


def test_by_seconds_with_a_fake_clock():
  clock = FakeClock()
  when = Periodic(seconds=10.0, clock=clock)
  clock.now = 9.9
  assert not when.due(100)
  clock.now = 10.0
  assert when.due(100)
  when.reset(100)
  clock.now = 19.0
  assert not when.due(101)


def test_both_either_makes_it_due():
  clock = FakeClock()
  when = Periodic(steps=5, seconds=10.0, clock=clock)
  assert not when.due(4)
  assert when.due(5)
  clock.now = 10.0
  assert when.due(1)


def test_neither_is_never_due_but_pending_after_steps():
  clock = FakeClock()
  when = Periodic(clock=clock)
  clock.now = 1e9
  assert not when.due(10 ** 9)
  assert not when.pending(0)
  assert when.pending(1)
  when.reset(1)
  assert not when.pending(1)


def test_nan_stop_passes_finite_losses_and_names_where_it_stopped():
  messages = []
  stop = NanStop(messages.append)
  assert stop.check(0.5, lambda: pytest.fail("named the place of a finite loss"))
  assert stop.check(tf.constant(-3.0), lambda: "unused")
  assert not stop.check(float("inf"), lambda: "step 7")
  assert not stop.check(tf.constant(float("nan")), lambda: "chunk 3")
  assert messages == [
      "the loss or its gradients became non-finite (inf) at step 7",
      "the loss or its gradients became non-finite (nan) at chunk 3"]


def _fit(every_seconds, seconds_per_chunk, losses, manager=None):
  """Chunks of 10 steps through ChunkEndActions, as Keras' fit calls it: the
  chunk ends (a stop ends the fit after its chunk), then the train end.

  Returns (saved checkpoint numbers, printed lines, the model's stop_training).
  """
  clock, manager, lines = FakeClock(), manager or SavesRecorded(), []
  callback = ChunkEndActions(
      Checkpointer(manager, Periodic(seconds=every_seconds, clock=clock)), lines.append)
  callback.model = Model()
  for chunk, loss in enumerate(losses):
    callback.model.optimizer.iterations.step += 10
    clock.now += seconds_per_chunk
    callback.on_epoch_end(chunk, {"loss": loss})
    if callback.model.stop_training:
      break
  callback.on_train_end()
  return manager.saved, lines, callback.model.stop_training


def test_chunk_actions_checkpoint_by_the_clock_and_once_at_the_end():
  # 0 s: due at every chunk's end; the train end finds step 30 saved.
  assert _fit(0.0, 1.0, [.5, .4, .3]) == ([10, 20, 30], [], False)
  # 600 s never pass in 3 s: only the final checkpoint.
  assert _fit(600.0, 1.0, [.5, .4, .3])[0] == [30]
  # 250 s chunks: 500 s >= 400 s at chunk 2 (step 20); 250 s more is not 400.
  assert _fit(400.0, 250.0, [.5, .4, .3])[0] == [20, 30]
  # 600 s pass at chunk 3, whose save already holds the last step.
  assert _fit(600.0, 250.0, [.5, .4, .3])[0] == [30]


def test_chunk_actions_stop_the_fit_at_a_non_finite_chunk_loss():
  saved, lines, stopped = _fit(0.0, 1.0, [.5, float("nan"), .3])
  assert stopped
  assert lines == ["the loss or its gradients became non-finite (nan) at chunk 2; "
                   "stopping"]
  # The stopped chunk's end still checkpoints (train_step refused the
  # non-finite updates, the weights are the last finite ones); the train end
  # finds step 20 saved.
  assert saved == [10, 20]
  assert _fit(600.0, 1.0, [float("inf")]) == ([10], [
      "the loss or its gradients became non-finite (inf) at chunk 1; stopping"], True)


def test_chunk_actions_raise_checkpoint_write_error_on_a_failed_save():
  with pytest.raises(CheckpointWriteError,
                     match="could not write the checkpoint of step 10 in "
                     "/fake/checkpoints: .*No space left"):
    _fit(0.0, 1.0, [.5], manager=SavesRecorded(fail=True))


def test_chunk_actions_run_no_per_step_hook():
  # A per-step hook would make Keras fetch every metric after every step.
  callback = ChunkEndActions(Checkpointer(SavesRecorded(), Periodic()))
  assert not callback._implements_train_batch_hooks()
