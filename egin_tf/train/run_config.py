"""A training run's whole configuration: the model, how to train, how to stream.

`RunConfig` is what ``egin-tf train --config FILE.json`` reads and
``--print_config`` prints, as one JSON object of sections::

  {"model": {"name": "egin", "alpha": 1.0, ...},   # the model's config fields
   "train": {"batch_size": 256, ...},              # `TrainConfig` fields
   "stream": {"follow": false, ...}}               # `StreamConfig`, with --stream

`resolve` stacks such dicts, each named by its source (defaults, a file, the
command line), later ones overriding earlier ones key by key, and names the
source of a bad value in its `RunConfigError`. A stream run stacks
`stream_defaults` (`train_config.STREAM_MODEL_DEFAULTS`, e.g. EGIN's
``graph_folds=1``) right after the defaults, so a file or a flag still wins.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple
from egin_tf.train import config as train_config
from egin_tf.configs import ConfigError, field_specs
from egin_tf.models import MODELS

SECTIONS = ("model", "train", "stream")
# The source of `stream_defaults`' layer; its values are reported as defaults.
STREAM_DEFAULTS = "defaults of --stream"
# TrainConfig fields that are a section of their own or the model's name.
_NOT_TRAIN_KEYS = ("model", "model_kwargs")


class RunConfigError(ValueError):
  """A value of a config source cannot be used: ``source``, ``section.field``."""

  def __init__(self, source: str, section: str, field: str, value: Any,
               allowed: str):
    self.source, self.section, self.field = source, section, field
    self.value, self.allowed = value, allowed
    where = f"{section}.{field}" if field else section
    super().__init__(f"{source}: {where}={value!r}: {allowed}" if field or value
                     is not None else f"{source}: {where}: {allowed}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  train: train_config.TrainConfig  # its model_kwargs: the model's full config
  stream: Optional[train_config.StreamConfig] = None

  def to_dict(self) -> Dict[str, Any]:
    train = self.train.to_dict()
    out = {"model": {"name": self.train.model,
                     **train_config.model_config(self.train).to_dict()},
           "train": {k: v for k, v in train.items() if k not in _NOT_TRAIN_KEYS}}
    if self.stream is not None:
      out["stream"] = self.stream.to_dict()
    return out


Layer = Tuple[str, Mapping[str, Any]]  # (source name, sections dict)


def resolve(layers: Sequence[Layer], stream: bool) -> RunConfig:
  """The run of ``layers`` stacked in order; ``stream``: a stream run."""
  merged: Dict[str, Dict[str, Tuple[Any, str]]] = {s: {} for s in SECTIONS}
  for source, sections in layers:
    for section, values in _checked_sections(source, sections, stream).items():
      for key, value in values.items():
        before = merged[section].get(key, (None,))[0]
        if isinstance(value, Mapping) and isinstance(before, Mapping):
          value = {**before, **value}  # table_sizes: a kind at a time
        merged[section][key] = (value, source)
  model_name, name_source = merged["model"].pop("name", ("egin", "defaults"))
  if model_name not in MODELS:
    raise RunConfigError(name_source, "model", "name", model_name,
                         f"must be one of {', '.join(sorted(MODELS))}")
  try:
    return _build(model_name, merged, stream)
  except ConfigError as e:
    raise _config_error(e, merged, layers[-1][0], model_name) from None


def stream_defaults(model_name: str) -> Layer:
  """The layer of `train_config.STREAM_MODEL_DEFAULTS` for a stream run of
  ``model_name``: only the fields its config has (none for an unknown name,
  which `resolve` reports). Stack it after the defaults, before a file and flags."""
  model = MODELS.get(model_name) if isinstance(model_name, str) else None
  fields = {spec.name for spec in field_specs(model.CONFIG)} if model else set()
  return (STREAM_DEFAULTS, {"model": {k: v for k, v in
                                      train_config.STREAM_MODEL_DEFAULTS.items()
                                      if k in fields}})


def _config_error(e: ConfigError, merged, last_source: str,
                  model_name: str) -> RunConfigError:
  """``e`` named by the source of its value; a default's is the last layer's."""
  section = _section_of(e.owner)
  source = merged[section].get(e.field, (None, None))[1]
  allowed = e.allowed
  if section == "model" and allowed.startswith("unknown field"):
    allowed = f"does not apply to model {model_name}"
  if source in (None, STREAM_DEFAULTS):
    default = "the --stream default" if source else "the default"
    source, allowed = last_source, f"({default}) {allowed}"
  return RunConfigError(source, section, e.field, e.value, allowed)


def _build(model_name: str, merged, stream: bool) -> RunConfig:
  values = {s: {k: v for k, (v, _) in merged[s].items()} for s in SECTIONS}
  # The model's config is checked once, here, so its errors come before the
  # train section's; train_config.model_config adds only the run's seed, which
  # TrainConfig has already checked against the same range (min 0).
  MODELS[model_name].CONFIG.from_dict(values["model"])
  train = train_config.TrainConfig.from_dict(
      {**values["train"], "model": model_name, "model_kwargs": values["model"]})
  stream_config = (train_config.StreamConfig.from_dict(values["stream"])
                   if stream else None)
  return RunConfig(train, stream_config)


def _checked_sections(source: str, sections: Mapping[str, Any],
                      stream: bool) -> Mapping[str, Mapping[str, Any]]:
  if not isinstance(sections, Mapping):
    raise RunConfigError(source, "config", "", None, "must be a JSON object of "
                         f"sections ({', '.join(SECTIONS)})")
  for section, values in sections.items():
    if section not in SECTIONS:
      raise RunConfigError(source, section, "", None, "unknown section; the "
                           f"sections are {', '.join(SECTIONS)}")
    if not isinstance(values, Mapping):
      raise RunConfigError(source, section, "", None, "must be a JSON object")
    if section == "stream" and values and not stream:
      raise RunConfigError(source, section, "", None, "applies only with --stream")
    for key in values:
      if section == "train" and key in _NOT_TRAIN_KEYS:
        raise RunConfigError(source, section, key, values[key],
                             "set the model in the model section")
  return sections


def _section_of(owner: str) -> str:
  if owner == train_config.TrainConfig.__name__:
    return "train"
  if owner == train_config.StreamConfig.__name__:
    return "stream"
  return "model"
