"""CTR models: `build_model(name, features, **kwargs)` creates one by name."""

from data_pipeline.tf_env import ensure_legacy_keras

ensure_legacy_keras(__name__)  # first: Keras 2 (tf-keras) before anything uses tf.keras

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


def register_model(name: str, factory: Callable[..., CTRModel],
                   replace: bool = False) -> Callable[..., CTRModel]:
  """Adds ``factory`` to `MODELS` under ``name`` so `build_model` can create it.

  A name already registered is refused unless ``replace=True``: silently
  shadowing a built-in model (say "egin") would change what every later
  `build_model` call trains. Returns ``factory``, so it also works as a
  decorator: ``@functools.partial(register_model, "mine")``.

  Raises:
    ValueError: ``name`` is registered and ``replace`` is False.
  """
  if name in MODELS and not replace:
    raise ValueError(f"model {name!r} is already registered; pass replace=True "
                     "to replace it")
  MODELS[name] = factory
  return factory


def streamable(name: str) -> bool:
  """Whether stream training may train the model registered under ``name``:
  its class's ``STREAMABLE`` (`CTRModel` says why a model refuses). A factory
  that declares nothing, or a name not registered (`build_model` names the
  error), counts as streamable."""
  return bool(getattr(MODELS.get(name), "STREAMABLE", True))


def build_model(name: str, features: FeatureConfig, **kwargs) -> CTRModel:
  """Creates the model registered under ``name`` (see `MODELS`)."""
  try:
    factory = MODELS[name]
  except KeyError:
    raise ValueError(f"unknown model {name!r}; choose one of "
                     f"{sorted(MODELS)}") from None
  return factory(features, **kwargs)
