"""The model directory: its layout, and the one place that reads and writes its config.

A model directory holds everything needed to evaluate, export or resume a run:

* ``config.json``: the run config (``train``: `train.config.TrainConfig`), the model's
  full config (``model_config``: every hyperparameter, defaults included, so a
  model directory rebuilds the same model after a default changes), the
  `FeatureConfig` (``features``) and the training data (``train_pattern``), so
  `load_model` can rebuild the model;
* ``data_schema.json``: the training data's schema (what serving parses);
* ``checkpoints/``: ``tf.train.Checkpoint``s of the model, optimizer and step;
* ``logs/``: TensorBoard logs (losses, progress AUC, per-step figures);
* ``metrics.json``: the exact evaluation at the end of offline training.

This module sits below `egin_tf.train.offline` (which imports it), so it never names
`TrainConfig`: writers hand it configs, readers get dicts or pass the run config
class in (`train_config`, `load_model`).
"""

import dataclasses
import json
import os
from typing import Any, Dict, NamedTuple, Optional, Tuple, Type, TypeVar

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.configs import Config
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models.base import CTRModel

CONFIG_FILE = "config.json"
DATA_SCHEMA_FILE = "data_schema.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.json"

# The run config fields that define the model's variables: a resumed run must
# use the same ones (and the same model config) as the run that wrote the
# checkpoints.
MODEL_DEFINING = ("model", "embedding_dim", "max_clicks", "max_queries", "max_seeds")

C = TypeVar("C", bound=Config)


class SavedConfig(NamedTuple):
  """What ``config.json`` holds."""
  train: Dict[str, Any]  # the run config as a dict (`Config.to_dict`)
  model_config: Optional[Dict[str, Any]]  # None: a directory from before it was kept
  features: FeatureConfig
  train_pattern: str


def config_path(directory: str) -> str:
  return os.path.join(directory, CONFIG_FILE)


def exists(directory: str) -> bool:
  """Whether ``directory`` is a model directory (it has a ``config.json``)."""
  return tf.io.gfile.exists(config_path(directory))


def write_config(directory: str, train: Config, model_config: Config,
                 features: FeatureConfig, schema: schema_lib.DatasetSchema,
                 train_pattern: str) -> None:
  """Writes ``config.json`` and ``data_schema.json``: what `load_model` rebuilds from.

  ``model_config`` is the model's full config (`train.config.model_config`)."""
  with tf.io.gfile.GFile(config_path(directory), "w") as f:
    json.dump({"train": train.to_dict(),
               "model_config": model_config.to_dict(),
               "features": dataclasses.asdict(features),
               "train_pattern": train_pattern}, f, indent=2)
  with tf.io.gfile.GFile(os.path.join(directory, DATA_SCHEMA_FILE), "w") as f:
    json.dump(dataclasses.asdict(schema), f, indent=2)


def read_config(directory: str) -> SavedConfig:
  """The directory's ``config.json``; FileNotFoundError naming it if there is none."""
  path = config_path(directory)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} not found: {directory} is not a model "
                            "directory written by `egin-tf train`")
  with tf.io.gfile.GFile(path, "r") as f:
    saved = json.load(f)
  return SavedConfig(saved["train"], saved.get("model_config"),
                     FeatureConfig(**saved["features"]), saved["train_pattern"])


def read_data_schema(directory: str) -> schema_lib.DatasetSchema:
  return schema_lib.DatasetSchema.load(os.path.join(directory, DATA_SCHEMA_FILE))


def saved_train_pattern(directory: str) -> str:
  """The training data pattern a model directory was trained on."""
  return read_config(directory).train_pattern


def train_config(saved: SavedConfig, config_cls: Type[C]) -> C:
  """The run config (of class ``config_cls``, `train.config.TrainConfig`) of a
  ``config.json``, with the model's full config as written as its
  ``model_kwargs`` (directories from before it was written: the defaults of now)."""
  config = config_cls.from_dict(saved.train)
  if saved.model_config is not None:
    config = config.replace(model_kwargs=saved.model_config)
  return config


def latest_checkpoint(directory: str) -> str:
  """The path of the newest checkpoint; FileNotFoundError if there is none."""
  latest = tf.train.latest_checkpoint(os.path.join(directory, CHECKPOINT_DIR))
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {directory}/{CHECKPOINT_DIR}")
  return latest


class ResumeMismatchError(ValueError):
  """A resumed stream run was given settings other than the checkpoints' own."""


def check_resume(directory: str, saved: Tuple[Config, Config],
                 wanted: Tuple[Config, Config]) -> None:
  """Raises `ResumeMismatchError` naming every setting that differs.

  ``saved`` and ``wanted`` are (run config, the model's full config) of the
  checkpoints in ``directory`` and of the run that wants to resume them. The
  model config is compared only when the run configs agree: with another model
  its fields would all differ."""
  (before, old_model), (after, new_model) = saved, wanted
  differ = [f"{key}={getattr(before, key)!r}, not {getattr(after, key)!r}"
            for key in MODEL_DEFINING if getattr(before, key) != getattr(after, key)]
  if not differ:
    old, new = old_model.to_dict(), new_model.to_dict()
    differ = [f"{key}={old[key]!r}, not {new[key]!r}" for key in old
              if old[key] != new[key]]
  if differ:
    raise ResumeMismatchError(
        f"{config_path(directory)}: this model directory was trained with "
        f"{'; '.join(differ)}; resume with the same settings or use a new --model_dir")


class CheckpointMismatchError(ValueError):
  """A checkpoint lacks some of the model's variables (e.g. written by an
  older egin-tf whose layers kept them under other names)."""


def restore_model(model, checkpoint: str, batch) -> None:
  """Builds ``model`` on ``batch`` (e.g. `reader.zeros_batch`) and restores its
  variables from ``checkpoint``, leaving out what only training needs (the
  optimizer's). A model variable the checkpoint lacks is
  `CheckpointMismatchError`: a silently fresh weight would serve garbage.
  (Built first: TF checks only variables that exist at restore.)"""
  model(batch)
  status = tf.train.Checkpoint(model=model).restore(checkpoint)
  status.expect_partial()
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise CheckpointMismatchError(
        f"{checkpoint}: the checkpoint does not hold all of this model's "
        f"variables ({str(e).splitlines()[0][:300]}); was it written by another "
        "egin-tf version or model?") from None


class TrainedModel(NamedTuple):
  model: CTRModel
  config: Config  # a `train.config.TrainConfig`
  schema: schema_lib.DatasetSchema
  lengths: reader.SequenceLengths


def load_model(directory: str, config_cls: Type[Config]) -> TrainedModel:
  """Rebuilds a trained model from its directory's config and latest checkpoint.

  ``config_cls`` is `train.config.TrainConfig`, passed in because this module sits
  below training: it reads ``train`` and builds the compiled model
  (``build_model(features)``, ``sequence_lengths()``)."""
  saved = read_config(directory)
  config = train_config(saved, config_cls)
  model = config.build_model(saved.features)
  schema, lengths = read_data_schema(directory), config.sequence_lengths()
  restore_model(model, latest_checkpoint(directory), reader.zeros_batch(schema, lengths))
  return TrainedModel(model, config, schema, lengths)
