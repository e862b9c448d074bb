"""Shared fixtures. Importing egin_tf first binds tf.keras to Keras 2."""

import os

import egin_tf  # noqa: F401  (must precede any TensorFlow import)
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")


@pytest.fixture
def shared_data():
  """Path of ../shared/data; the real-data tests fail (never skip) without it."""
  assert os.path.isdir(SHARED_DATA), (
      f"{SHARED_DATA} is missing: the real-data tests need ../shared/data "
      "beside the repository")
  return SHARED_DATA


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory):
  """A small simulated dataset (400 users, seed 3) and its oracle, made once."""
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  out = str(tmp_path_factory.mktemp("sim") / "data")
  oracle = simulator.generate(simulator.SimulatorConfig(num_users=400, seed=3), out)
  return out, oracle
