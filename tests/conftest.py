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
