"""CTR models: `build_model(name, features, **kwargs)` creates one by name."""

from typing import Callable, Dict

from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models.base import CTRModel
from egin_tf.models.bst import BST
from egin_tf.models.din import DIN
from egin_tf.models.dnn import DNN
from egin_tf.models.dnn_cross import DNNCross
from egin_tf.models.eges import EGES
from egin_tf.models.egin import EGIN

MODELS: Dict[str, Callable[..., CTRModel]] = {
    "dnn": DNN,
    "dnn_cross": DNNCross,
    "din": DIN,
    "bst": BST,
    "eges": EGES,
    "egin": EGIN,
}


def build_model(name: str, features: FeatureConfig, **kwargs) -> CTRModel:
  """Creates the model registered under ``name`` (see `MODELS`)."""
  try:
    factory = MODELS[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; choose one of "
                     f"{sorted(MODELS)}") from None
  return factory(features, **kwargs)
