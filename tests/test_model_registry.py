"""Tests of `egin_tf.models.register_model`."""

import functools

import pytest

from egin_tf import models
from egin_tf.models.dnn import DNN


@pytest.fixture(autouse=True)
def _restore_registry():
  saved = dict(models.MODELS)
  yield
  models.MODELS.clear()
  models.MODELS.update(saved)


def test_register_model_adds_a_name_build_model_finds():
  assert models.register_model("my_dnn", DNN) is DNN
  assert models.MODELS["my_dnn"] is DNN


def test_register_model_works_as_a_decorator():

  @functools.partial(models.register_model, "decorated")
  def factory(features, **kwargs):
    return DNN(features, **kwargs)

  assert models.MODELS["decorated"] is factory


def test_register_model_refuses_an_existing_name():
  with pytest.raises(ValueError, match="'egin' is already registered"):
    models.register_model("egin", DNN)
  assert models.MODELS["egin"] is not DNN


def test_register_model_replaces_when_asked():
  models.register_model("egin", DNN, replace=True)
  assert models.MODELS["egin"] is DNN
