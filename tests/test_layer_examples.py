"""Every public layer's docstring has an ``Example:`` that runs as written and
gives what its comments say (issue 27), under tf-keras here and under Keras 3
in test_layers_under_keras3.py."""

import inspect
import math
import re

import numpy as np
import pytest

from data_pipeline.tf_env import tf
from egin_tf import layers

PUBLIC_LAYERS = sorted(
    (obj for obj in vars(layers).values()
     if inspect.isclass(obj) and issubclass(obj, tf.keras.layers.Layer)),
    key=lambda cls: cls.__name__)
# Examples that go on from another's variables (its ``batch`` and ``edges``).
CONTINUES = {"GraphSoftmaxLoss": "QueryItemGraph", "GraphLearning": "QueryItemGraph"}
EXAMPLE = re.compile(r"\n  Example[^\n]*:\n\n  ```python\n(.*?)\n  ```\n", re.S)


def _example(cls) -> str:
  found = EXAMPLE.findall(cls.__doc__ or "")
  assert len(found) == 1, f"{cls.__name__}: no single Example: ```python block"
  return "\n".join(line[2:] for line in found[0].splitlines())


def _run(cls) -> dict:
  namespace = {"tf": tf, "np": np, **vars(layers)}
  for name in (CONTINUES.get(cls.__name__), cls.__name__):
    if name:
      exec(_example(getattr(layers, name)), namespace)  # pylint: disable=exec-used
  return namespace


def _shape(namespace, name):
  return list(namespace[name].shape)


# What the examples' comments promise, checked.
CLAIMS = {
    "BehaviorSequenceTransformer": lambda ns: _shape(ns, "encoded") == [2, 16],
    "FeatureEmbeddings": lambda ns: _shape(ns, "context") == [2, 16],
    "GraphLearning": lambda ns: sorted(ns["losses"]) == ["i2i", "q2i", "q2q"],
    "GraphSoftmaxLoss": lambda ns: ns["l_i2i"].dtype == tf.float32,
    "IdEmbedding": lambda ns: (_shape(ns, "vectors") == [1, 3, 8]
                               and not ns["vectors"].numpy()[0, 2].any()),
    "MaskedPooling": lambda ns: ns["pooled"].numpy().tolist() == [[2.0]],
    "MLP": lambda ns: _shape(ns, "logits") == [2],
    "NegativeQueue": lambda ns: (int(ns["queue"].size()) == 3
                                 and bool(tf.reduce_all(ns["sample"].valid))),
    "OutOfFoldEmbedding": lambda ns: _shape(ns, "vectors") == [2, 3, 4],
    "QueryItemGraph": lambda ns: (
        ns["edges"]["q2i"].src.numpy().tolist() == [21, 21, 22]
        and ns["edges"]["q2i"].dst.numpy().tolist() == [11, 12, 12]),
    "SimExtract": lambda ns: _shape(ns, "features") == [2, 8],
    "TargetAttention": lambda ns: _shape(ns, "interest") == [2, 4],
    "TargetMatch": lambda ns: (_shape(ns, "features") == [2, 6] and math.isclose(
        float(ns["features"][0, 0]), math.log(2), rel_tol=1e-6)),
    "TransformerBlock": lambda ns: _shape(ns, "encoded") == [2, 3, 8],
}


def test_every_public_layer_has_a_checked_example():
  assert sorted(cls.__name__ for cls in PUBLIC_LAYERS) == sorted(CLAIMS)


@pytest.mark.parametrize("cls", PUBLIC_LAYERS, ids=lambda cls: cls.__name__)
def test_the_example_runs_and_gives_what_it_says(cls):
  assert CLAIMS[cls.__name__](_run(cls))
