"""Shared fixtures. The suite runs the trainer, so tf.keras is Keras 2 (tf-keras) here,
bound before any test module uses it; tests/test_keras_layers.py runs the layers
under Keras 3 (and tf-keras) in subprocesses.

``EGIN_TF_TEST_KERAS=3`` (with ``TF_USE_LEGACY_KERAS`` unset) leaves tf.keras
unbound, so it is Keras 3: for the layer-only modules (test_layer_saving.py,
test_layer_training_state.py), which tests/test_layers_under_keras3.py runs
that way in a subprocess. The trainer's modules need tf-keras.
"""

import fcntl
import os
import tempfile

import pytest

from data_pipeline.tf_env import ensure_legacy_keras

KERAS3 = os.environ.get("EGIN_TF_TEST_KERAS") == "3"
if not KERAS3:
  ensure_legacy_keras("the test suite")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")


@pytest.fixture
def shared_data():
  """Path of ../shared/data; the real-data tests fail (never skip) without it."""
  assert os.path.isdir(SHARED_DATA), (
      f"{SHARED_DATA} is missing: the real-data tests need ../shared/data "
      "beside the repository")
  return SHARED_DATA


def _made_once(tmp_path_factory, name: str, make) -> str:
  """``make(path)`` run once per test run, its folder shared by the xdist workers.

  Under pytest-xdist every worker would make its own copy of a session
  fixture; the first makes it (under a lock, into a temporary folder renamed
  into place) and the others read it.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_TESTRUNUID"):
    root = root.parent  # shared by the workers of this run
  out = os.path.join(str(root), name)
  with open(os.path.join(str(root), name + ".lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.isdir(out):
      tmp = out + ".tmp"
      make(tmp)
      os.rename(tmp, out)
  return out


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory):
  """A small simulated dataset (400 users, seed 3) and its oracle, made once."""
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  from data_pipeline.data_split import load_oracle  # pylint: disable=g-import-not-at-top
  out = _made_once(tmp_path_factory, "sim_data", lambda path: simulator.generate(
      simulator.SimulatorConfig(num_users=400, seed=3), path))
  return out, load_oracle([os.path.join(out, "train")])


@pytest.fixture(scope="session")
def sim_stream(sim_data, tmp_path_factory):
  """sim_data's train split as a stream: time-ordered shards of 500 records."""
  from data_pipeline import stream as stream_lib  # pylint: disable=g-import-not-at-top
  return _made_once(tmp_path_factory, "sim_stream", lambda path: (
      stream_lib.write_time_ordered(os.path.join(sim_data[0], "train-*"), path, 500)))


@pytest.fixture(autouse=True)
def _share_the_cores(request):
  """Under pytest-xdist, a test marked ``alone`` runs with no other test beside it.

  Every test holds a shared lock on one file of the run; an ``alone`` test
  waits for the exclusive lock, so it starts once the other workers' current
  tests end and they wait until it is done. For measurements that other work
  on the cores changes: the AUC of an asynchronous parameter-server job, whose
  workers' relative speed decides which gradients are stale.
  """
  run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  if run is None:  # one process: nothing runs beside a test
    yield
    return
  alone = request.node.get_closest_marker("alone") is not None
  with open(os.path.join(tempfile.gettempdir(), f"egin-tf-tests-{run}.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
