"""The settings of a training run, and what is built from them.

`TrainConfig` says how a model trains (offline and on a stream), `StreamConfig`
how a stream is consumed; both are frozen `Config`s, so the CLI makes a flag of
every field (`egin_tf.cli.config_flags`) and `run_config` layers them. At the
bottom: the model's tables, sequence lengths, hyperparameters and compiled
model, built from a `TrainConfig`.
"""

import dataclasses
from typing import Any, Dict, Optional

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from egin_tf.configs import Config, field_specs, param
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import MODELS, build_model
from egin_tf.models.base import CTRModel
from egin_tf.train import optimizers

TABLE_KINDS = ("item", "query", "user", "category")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
  """How to train (a frozen `Config`: every field checked on construction).

  ``model_kwargs`` are the model's hyperparameters (fields of its config, see
  `egin_tf.models.configs`; left out: the defaults). ``table_sizes`` gives
  rows of the id tables by kind ("item", "query", "user", "category"); a kind
  left out gets `FeatureConfig.from_schema`'s size (a row per id for small
  contiguous ids, else 2x the distinct ids of the training data). Give a stream
  that never ends room for the ids to come: extra ids share rows
  (`bucketize_ids`; see the collision rates). ``steps_per_execution`` runs
  several steps per call of Keras' compiled train function: fewer Python round
  trips, which is what limits small models; callbacks then see every N-th step.
  """
  model: str = param("dnn", "Registered model name.", choices=sorted(MODELS))
  model_kwargs: Dict[str, Any] = param({}, "The model's hyperparameters.")
  batch_size: int = param(256, "Examples per step.", min=1)
  epochs: int = param(1, "Passes over the training data (unless --steps).", min=1)
  steps: Optional[int] = param(None, "Total training steps; overrides --epochs.",
                               min=1)
  learning_rate: float = param(1e-3, "Adam's learning rate.", above=0.0)
  optimizer: str = param("lazy_adam", "lazy_adam (sparse rows and their moments "
                         "only) or adam (tf-keras' Adam: every row each step).",
                         choices=optimizers.OPTIMIZERS)
  graph_learning_rate: Optional[float] = param(
      None, "A separate rate for the graph tables (EGIN), with --graph_optimizer "
      "(unset: one Adam for every variable).", above=0.0)
  graph_optimizer: str = param("adagrad", "Optimizer of the graph tables under "
                               "--graph_learning_rate.",
                               choices=optimizers.GRAPH_OPTIMIZERS)
  max_clicks: int = param(100, "Click history kept (most recent).", min=1)
  max_queries: int = param(100, "Query history kept (most recent).", min=1)
  max_seeds: int = param(100, "Seeds history kept (most recent).", min=1)
  embedding_dim: int = param(10, "Size of every embedding table (paper: 10).",
                             min=1)
  table_sizes: Dict[str, int] = param({}, "Rows of the id tables by kind.")
  seed: int = param(0, "Seeds initialization, shuffling and sampling (and the "
                    "model's own seed); a run is repeatable.", min=0)
  shuffle_buffer: int = param(20_000, "Records in the training shuffle buffer.",
                              min=1)
  log_every: int = param(200, "Steps between progress lines.", min=1)
  checkpoint_every_seconds: Optional[float] = param(
      600.0, "Seconds between checkpoints, taken at the end of a progress line's "
      "steps (unset: at every progress line); always one at the end.", above=0.0)
  steps_per_execution: int = param(1, "Training steps per call of Keras' compiled "
                                   "train function.", min=1)
  cache: bool = param(False, "Keep the parsed training batches in memory (if "
                      "they fit in half the available memory): later epochs "
                      "read no file and parse nothing, and replay the first "
                      "epoch's batches in a new order.")

  def check(self) -> None:
    for kind, rows in self.table_sizes.items():
      if kind not in TABLE_KINDS:
        self.fail("table_sizes", f"unknown table {kind!r}; the tables are "
                  f"{', '.join(TABLE_KINDS)}")
      if isinstance(rows, bool) or not isinstance(rows, int) or rows < 2:
        self.fail("table_sizes", f"the {kind} table needs an int >= 2 rows")

  # `model_dir.load_model` calls these: that module sits below this one, so it
  # gets the class instead of importing this module.
  def sequence_lengths(self) -> reader.SequenceLengths:
    """The history lengths every record is padded to (L, M, S)."""
    return reader.SequenceLengths(self.max_clicks, self.max_queries, self.max_seeds)

  def build_model(self, features: FeatureConfig) -> CTRModel:
    """The model of these settings over ``features``' tables, compiled with
    its optimizer."""
    model = build_model(self.model, features, config=model_config(self))
    model.compile(optimizer=optimizers.make_optimizer(
        model, self.learning_rate, self.graph_learning_rate,
        self.graph_optimizer, self.optimizer),
        steps_per_execution=self.steps_per_execution)
    return model


@dataclasses.dataclass(frozen=True)
class StreamConfig(Config):
  """How to consume a stream (the model and optimizer come from `TrainConfig`)."""
  follow: bool = param(False, "Keep polling for new shards instead of stopping at "
                       "the end.")
  poll_seconds: float = param(10.0, "With --follow: seconds between polls.",
                              above=0.0)
  idle_timeout: Optional[float] = param(None, "With --follow: stop after this many "
                                        "seconds without new data: a new shard, or "
                                        "bytes appended to the newest (unset: never).",
                                        above=0.0)
  landing_timeout: Optional[float] = param(
      600.0, "With --follow: seconds the newest shard (written in place) may end "
      "inside a record without growing; then that record is bad input (unset: "
      "until a newer shard lands).", above=0.0)
  shard_pattern: str = param(stream_lib.DEFAULT_PATTERN, "Glob of shard names in "
                             "the stream folder.")
  done_suffix: Optional[str] = param(None, "Read a shard only once a done marker "
                                     "named after it with this suffix exists beside "
                                     "it, e.g. .done for x.tfrecord.done (unset: "
                                     "every landed shard).")
  on_bad: str = param("stop", "Stop at an unreadable or unparsable record, or skip "
                      "and report it.", choices=("stop", "skip"))
  checkpoint_every_steps: int = param(200, "Steps between checkpoints (also at the "
                                      "end).", min=1)
  checkpoint_every_seconds: Optional[float] = param(
      600.0, "At most this long between checkpoints (unset: off).", above=0.0)
  keep_checkpoints: int = param(3, "Checkpoints kept.", min=1)
  export_dir: Optional[str] = param(None, "SavedModel versions for TF Serving go to "
                                    "EXPORT_DIR/<version>/ (unset: no exports).")
  export_every_steps: Optional[int] = param(None, "Steps between exports (unset: "
                                            "off).", min=1)
  export_every_minutes: Optional[float] = param(None, "Minutes between exports "
                                                "(unset: off).", above=0.0)
  keep_exports: int = param(3, "Newest versions kept in the export folder.", min=1)
  progressive_window: int = param(10_000, "Examples in the progressive-validation "
                                  "window.", min=1)
  log_every: int = param(100, "Steps between progress lines and TensorBoard "
                         "points.", min=1)
  audit_log: bool = param(False, "Log every trained example (shard, record, "
                          "fingerprint) in MODEL_DIR/trained_examples, committed "
                          "with the checkpoints.")


# Model fields whose default differs on a stream, for every model whose config
# has the field (`egin-tf train --stream` stacks them between its defaults and a
# --config file and the flags, `run_config.stream_defaults`). EGIN's graph_folds:
# out-of-fold tables remove a label leak of shuffled multi-epoch training, which a
# time-ordered pass cannot have (no later row is trained before a row is scored);
# measured in experiments/RESULTS.md, "Stream defaults: graph_folds on the stream".
STREAM_MODEL_DEFAULTS: Dict[str, Any] = {"graph_folds": 1}


def feature_config(schema: schema_lib.DatasetSchema, config: TrainConfig) -> FeatureConfig:
  """The tables of ``config`` for data of ``schema`` (sizes: ``table_sizes``)."""
  return FeatureConfig.from_schema(
      schema, embedding_dim=config.embedding_dim,
      **{f"{kind}_buckets": rows for kind, rows in config.table_sizes.items()})


def model_config(config: TrainConfig) -> Config:
  """The model's full hyperparameters: its config's defaults with
  ``model_kwargs`` on top; a model with a ``seed`` of its own takes the run's
  unless ``model_kwargs`` gives one."""
  config_cls = MODELS[config.model].CONFIG
  kwargs = dict(config.model_kwargs)
  if "seed" in (spec.name for spec in field_specs(config_cls)):
    kwargs.setdefault("seed", config.seed)
  return config_cls.from_dict(kwargs)
