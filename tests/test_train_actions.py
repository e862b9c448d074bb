"""Periodic: when an action is due, by steps, by seconds (a fake clock), both, neither."""

from egin_tf.train.actions import Periodic


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
