"""Fakes of what a Keras fit hands its callbacks, for the checkpoint and NaN-stop
tests (test_train_actions.py, test_training.py): a model whose optimizer counts
steps, and a CheckpointManager that records what it saved."""


class Iterations:
  """``optimizer.iterations``: the tests move ``step``; callbacks read numpy()."""

  def __init__(self):
    self.step = 0

  def numpy(self):
    return self.step


class Optimizer:

  def __init__(self):
    self.iterations = Iterations()


class Model:

  def __init__(self):
    self.optimizer = Optimizer()
    self.stop_training = False


class SavesRecorded:
  """A CheckpointManager that records the checkpoint numbers it saved."""

  directory = "/fake/checkpoints"
  latest_checkpoint = None

  def __init__(self, fail: bool = False):
    self.saved = []
    self.fail = fail

  def save(self, checkpoint_number):
    if self.fail:
      raise OSError(28, "No space left on device")
    self.saved.append(checkpoint_number)
    return f"{self.directory}/ckpt-{checkpoint_number}"
