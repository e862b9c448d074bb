"""Training and evaluation of CTR models on impression TFRecords.

What a run writes in its model directory, and how a trained model is loaded
back: `egin_tf.model_dir`.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf import distribute
from egin_tf import metrics
from egin_tf import model_dir as model_dir_lib
from egin_tf import optimizers
from egin_tf.configs import Config, field_specs, param
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import MODELS, build_model
from egin_tf.models.base import CTRModel

ORACLE_FILE = "oracle.json"


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

  # What `model_dir.load_model` calls: that module sits below this one, so it
  # gets the class instead of importing these functions.
  def build_model(self, features: FeatureConfig) -> CTRModel:
    return build_from_config(self, features)

  def sequence_lengths(self) -> reader.SequenceLengths:
    return sequence_lengths(self)


def feature_config(schema: schema_lib.DatasetSchema, config: TrainConfig) -> FeatureConfig:
  """The tables of ``config`` for data of ``schema`` (sizes: ``table_sizes``)."""
  return FeatureConfig.from_schema(
      schema, embedding_dim=config.embedding_dim,
      **{f"{kind}_buckets": rows for kind, rows in config.table_sizes.items()})


def model_dataset(pattern: str, config: TrainConfig, training: bool,
                  schema: schema_lib.DatasetSchema,
                  batch_size: Optional[int] = None,
                  shard: Optional[tuple] = None,
                  cache: bool = False) -> tf.data.Dataset:
  """The model-ready dataset of a `TrainConfig` (`reader.make_dataset` with its
  lengths, batch and seed): shuffled and repeated for training, one ordered pass
  otherwise; ``shard`` and ``cache`` as in `reader.make_dataset`."""
  return reader.make_dataset(
      pattern, batch_size or config.batch_size,
      max_clicks=config.max_clicks, max_queries=config.max_queries,
      max_seeds=config.max_seeds, schema=schema,
      shuffle=training, shuffle_buffer=config.shuffle_buffer,
      num_epochs=None if training else 1, seed=config.seed,
      drop_remainder=training, shard=shard, cache=cache)


def sequence_lengths(config: TrainConfig) -> reader.SequenceLengths:
  return reader.SequenceLengths(config.max_clicks, config.max_queries,
                                config.max_seeds)


def cache_fits(pattern: str, config: TrainConfig, schema: schema_lib.DatasetSchema,
               print_fn: Callable[[str], None] = print) -> bool:
  """Whether the padded examples of ``pattern`` fit in half the memory available
  now (`TrainConfig.cache`); says so either way."""
  needed = count_impressions(pattern, schema) * reader.cached_example_bytes(
      schema, sequence_lengths(config))
  available = available_memory_bytes()
  fits = needed <= available / 2
  print_fn(f"--cache: the parsed training batches take {needed / 2**30:.2f} GiB "
           f"of the {available / 2**30:.1f} GiB available: "
           + ("kept in memory after the first epoch" if fits else
              "more than half, so every epoch reads and parses the files"))
  return fits


def available_memory_bytes() -> int:
  """Memory the kernel can give this process without swapping (MemAvailable)."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def count_impressions(pattern: str, schema: schema_lib.DatasetSchema) -> int:
  """Impressions in the files of a pattern, from ``schema.json``'s split counts."""
  names = {os.path.basename(f) for f in reader.match_files(pattern)}
  total = 0
  for split in schema.splits.values():
    for name in split.get("files", []):
      if name in names:
        total += split["impressions"] / max(len(split["files"]), 1)
  return int(total)


def model_config(config: TrainConfig) -> Config:
  """The model's full hyperparameters: its config's defaults with
  ``model_kwargs`` on top; a model with a ``seed`` of its own takes the run's
  unless ``model_kwargs`` gives one."""
  config_cls = MODELS[config.model].CONFIG
  kwargs = dict(config.model_kwargs)
  if "seed" in (spec.name for spec in field_specs(config_cls)):
    kwargs.setdefault("seed", config.seed)
  return config_cls.from_dict(kwargs)


def build_from_config(config: TrainConfig, features: FeatureConfig) -> CTRModel:
  model = build_model(config.model, features, config=model_config(config))
  model.compile(optimizer=optimizers.make_optimizer(
      model, config.learning_rate, config.graph_learning_rate,
      config.graph_optimizer, config.optimizer),
      steps_per_execution=config.steps_per_execution)
  return model


class _CheckpointEvery(tf.keras.callbacks.Callback):
  """Saves model and optimizer at the end of a progress chunk once
  ``every_seconds`` have passed since the last save (None: every chunk), and at
  the end of training.

  Why not every chunk: a save of the tables and their optimizer slots takes
  0.2-0.6 s on trivago's tables, 5-15% of a 200-step chunk of a small model.
  """

  def __init__(self, manager: tf.train.CheckpointManager,
               every_seconds: Optional[float]):
    super().__init__()
    self.manager = manager
    self.every_seconds = every_seconds
    self._last_save = time.monotonic()
    self._saved_step = -1

  def on_epoch_end(self, epoch, logs=None):
    if (self.every_seconds is None
        or time.monotonic() - self._last_save >= self.every_seconds):
      self._save()

  def on_train_end(self, logs=None):
    if int(self.model.optimizer.iterations.numpy()) != self._saved_step:
      self._save()

  def _save(self) -> None:
    self._saved_step = int(self.model.optimizer.iterations.numpy())
    self.manager.save(checkpoint_number=self._saved_step)
    self._last_save = time.monotonic()


def predict(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
  """pctr, label and user_id of every example, in dataset order."""
  out = model.predict(dataset, verbose=0)
  return {k: np.asarray(v).reshape(-1) for k, v in out.items()}


def exact_report(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, float]:
  """Exact AUC, gAUC and logloss of a model on a dataset."""
  out = predict(model, dataset)
  return metrics.ctr_report(out["label"], out["pctr"], out["user_id"])


def load_oracle(pattern: str) -> Optional[Dict[str, Any]]:
  """The simulator's ``oracle.json`` beside the files, if there is one."""
  directory = os.path.dirname(reader.match_files(pattern)[0])
  path = os.path.join(directory, ORACLE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


def format_report(report: Dict[str, float], oracle: Optional[Dict] = None,
                  title: str = "model") -> str:
  """A small table: the model's exact metrics beside the oracle's."""
  rows = [("", "AUC", "gAUC", "logloss", "impressions")]
  rows.append((title, f"{report['auc']:.4f}", f"{report.get('gauc', float('nan')):.4f}",
               f"{report['logloss']:.4f}", str(report["impressions"])))
  if oracle:
    rows.append(("oracle (true p)", f"{oracle['test_auc']:.4f}",
                 f"{oracle.get('test_gauc', float('nan')):.4f}",
                 f"{oracle.get('test_logloss', float('nan')):.4f}",
                 str(oracle.get("test_impressions", ""))))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)


def train(train_pattern: str, model_dir: str, config: TrainConfig,
          eval_pattern: Optional[str] = None, verbose: int = 1,
          print_fn: Callable[[str], None] = print,
          strategy: Optional[tf.distribute.Strategy] = None,
          stage_progress=None) -> Dict[str, Any]:
  """Trains a model, checkpoints it and reports exact metrics on ``eval_pattern``.

  ``stage_progress(label)`` makes a progress callback per stage of the work
  before training (EGES stage 1; e.g. `egin_tf.cli.common.progress_printer`).

  Under a ``strategy`` (`egin_tf.distribute`) the model is built in its scope and
  ``config.batch_size`` is the global batch of a step (each parameter-server
  worker's batch); only the chief writes ``model_dir`` (other multi-worker
  tasks write theirs to a scratch folder) and evaluates, on an unsharded copy
  restored from the final checkpoint.

  Returns:
    ``{"eval": exact metrics or None, "oracle": oracle or None, "steps": n,
    "seconds": training time, "examples_per_second": ..., "history": training
    metrics (losses, progress AUC) per progress chunk}``
  """
  # A dataset folder reads its train split for training, its test split for eval.
  train_pattern = reader.split_pattern(train_pattern, "train")
  eval_pattern = eval_pattern and reader.split_pattern(eval_pattern, "test")
  strategy = strategy or tf.distribute.get_strategy()
  chief = distribute.current_task().is_chief
  run = _build_run(train_pattern, model_dir, config, strategy, chief, stage_progress)
  result = _fit(run, train_pattern, strategy, verbose, print_fn)
  if not chief:
    tf.io.gfile.rmtree(run.out_dir)
    return result
  if eval_pattern:
    result.update(evaluate_and_print(_evaluation_model(run, strategy), eval_pattern,
                                     run.config, run.schema, print_fn))
  with tf.io.gfile.GFile(os.path.join(model_dir, model_dir_lib.METRICS_FILE), "w") as f:
    json.dump(result, f, indent=2)
  return result


class _OfflineRun(NamedTuple):
  """What `train` builds before it fits: the compiled model and where it writes."""
  model: CTRModel
  config: TrainConfig  # after `CTRModel.prepare`
  features: FeatureConfig
  schema: schema_lib.DatasetSchema
  out_dir: str  # model_dir, or a non-chief worker's scratch folder
  manager: tf.train.CheckpointManager


def _build_run(train_pattern: str, model_dir: str, config: TrainConfig,
               strategy: tf.distribute.Strategy, chief: bool,
               stage_progress) -> _OfflineRun:
  """Seeds the run, prepares and writes the model directory, builds the model."""
  tf.keras.utils.set_random_seed(config.seed)
  schema = schema_lib.schema_for_files(reader.match_files(train_pattern))
  features = feature_config(schema, config)
  out_dir = model_dir if chief else os.path.join(model_dir, "non_chief", str(os.getpid()))
  config = _prepare(train_pattern, out_dir, config, features, schema,
                    stage_progress)
  with strategy.scope():
    model = build_from_config(config, features)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, optimizer=model.optimizer),
      os.path.join(out_dir, model_dir_lib.CHECKPOINT_DIR), max_to_keep=3)
  return _OfflineRun(model, config, features, schema, out_dir, manager)


def _fit(run: _OfflineRun, train_pattern: str, strategy: tf.distribute.Strategy,
         verbose: int, print_fn: Callable[[str], None]) -> Dict[str, Any]:
  """Keras' fit in progress chunks; the run's result (no evaluation yet)."""
  config = run.config
  num_chunks, chunk = _progress_chunks(config, train_pattern, run.schema)
  print_fn(f"training {config.model} for {num_chunks * chunk} steps of "
           f"{config.batch_size} ({num_chunks} progress chunks of {chunk})")
  cache = config.cache and cache_fits(train_pattern, config, run.schema, print_fn)
  train_input = distribute.worker_input(strategy, lambda shard: model_dataset(
      train_pattern, config, True, run.schema, shard=shard, cache=cache))
  start = time.perf_counter()
  timer = _ChunkTimer()
  history = run.model.fit(
      train_input, epochs=num_chunks, steps_per_epoch=chunk,
      callbacks=[timer] + _callbacks(run.manager, run.out_dir,
                                     config.checkpoint_every_seconds),
      verbose=verbose)
  return _run_result(num_chunks * chunk, config.batch_size,
                     time.perf_counter() - start, history, timer.seconds)


def _evaluation_model(run: _OfflineRun, strategy: tf.distribute.Strategy) -> CTRModel:
  """The trained model, or under a strategy an unsharded copy of its last checkpoint."""
  if strategy is tf.distribute.get_strategy():
    return run.model
  return _restored_copy(run.config, run.features, run.manager.latest_checkpoint)


def evaluate_and_print(model: CTRModel, eval_pattern: str, config: TrainConfig,
                       schema: schema_lib.DatasetSchema,
                       print_fn: Callable[[str], None] = print) -> Dict[str, Any]:
  """Exact metrics on ``eval_pattern``, printed beside the oracle's:
  ``{"eval": report, "oracle": oracle or None}`` (offline and stream training)."""
  report = exact_report(model, model_dataset(eval_pattern, config, False, schema))
  oracle = load_oracle(eval_pattern)
  print_fn(format_report(report, oracle, title=f"test ({config.model})"))
  return {"eval": report, "oracle": oracle}


class _ChunkTimer(tf.keras.callbacks.Callback):
  """Seconds of each progress chunk: from the previous chunk's end (the first:
  from the start of training), so a chunk's time includes the checkpoint written
  at the end of the chunk before it."""

  def __init__(self):
    super().__init__()
    self.seconds: List[float] = []
    self._last = 0.0

  def on_train_begin(self, logs=None):
    self._last = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    now = time.perf_counter()
    self.seconds.append(now - self._last)
    self._last = now


def _run_result(steps: int, batch_size: int, seconds: float,
                history: tf.keras.callbacks.History,
                chunk_seconds: List[float]) -> Dict[str, Any]:
  return {
      "steps": steps,
      "seconds": seconds,
      "examples_per_second": steps * batch_size / seconds,
      # Each progress chunk's seconds: the first includes tracing and filling
      # the shuffle buffer; the later ones are the steady speed.
      "chunk_seconds": chunk_seconds,
      "eval": None,
      "oracle": None,
      # Training metrics averaged over each progress chunk, oldest first.
      "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
  }


def _prepare(train_pattern: str, model_dir: str, config: TrainConfig,
             features: FeatureConfig, schema: schema_lib.DatasetSchema,
             stage_progress=None) -> TrainConfig:
  """Runs the model's `CTRModel.prepare` and writes the model directory's config."""
  tf.io.gfile.makedirs(model_dir)
  prepared = MODELS[config.model].prepare(train_pattern, model_dir, config.seed,
                                          config.model_kwargs, stage_progress)
  if prepared:
    config = dataclasses.replace(
        config, model_kwargs={**config.model_kwargs, **prepared})
  model_dir_lib.write_config(model_dir, config, model_config(config), features, schema,
                             train_pattern)
  return config


def _progress_chunks(config: TrainConfig, train_pattern: str,
                     schema: schema_lib.DatasetSchema) -> Tuple[int, int]:
  """(number, size) of the progress chunks that make up the run.

  Keras runs whole "epochs"; we use them as progress chunks of equal size, at
  most log_every steps, that add up to the total steps (or just over it).
  """
  total_steps = config.steps
  if total_steps is None:
    per_epoch = count_impressions(train_pattern, schema) // config.batch_size
    total_steps = max(1, per_epoch) * config.epochs
  num_chunks = math.ceil(total_steps / config.log_every)
  return num_chunks, math.ceil(total_steps / num_chunks)


class _TerminateOnNaNChunk(tf.keras.callbacks.Callback):
  """`TerminateOnNaN` at the end of each progress chunk.

  Per chunk, not per step: `CTRModel.train_step` refuses non-finite updates
  and its loss mean turns NaN for the rest of the chunk, so nothing is lost by
  waiting; a per-step check makes Keras fetch every metric after every step
  (and under parameter servers a step's logs are remote values that only a
  chunk's end fetches).
  """

  def on_epoch_end(self, epoch, logs=None):
    if not math.isfinite(float((logs or {}).get("loss", 0.0))):
      print(f"chunk {epoch + 1}: the loss is not finite; stopping")
      self.model.stop_training = True


def _callbacks(manager: tf.train.CheckpointManager, out_dir: str,
               checkpoint_every_seconds: Optional[float]
               ) -> List[tf.keras.callbacks.Callback]:
  """NaN stop, TensorBoard and checkpoints, at the ends of progress chunks:
  no callback runs per step, so Keras fetches nothing between chunks."""
  return [
      _TerminateOnNaNChunk(),
      # A point per progress chunk: with batch-level points, Keras records
      # summaries inside every step (a conditional write per metric), which
      # cost EGIN 12-17% of its fit on trivago.
      tf.keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"),
                                     update_freq="epoch"),
      _CheckpointEvery(manager, checkpoint_every_seconds),
  ]


def _restored_copy(config: TrainConfig, features: FeatureConfig,
                   checkpoint: str) -> CTRModel:
  """The model of ``checkpoint`` outside any strategy (sharded tables restore
  into whole ones), for evaluation in this process."""
  model = build_from_config(config, features)
  tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
  return model


def evaluate(model_dir: str, data_pattern: str,
             batch_size: Optional[int] = None) -> Dict[str, Any]:
  """Exact metrics of a trained model on data; ``oracle`` if the data has one."""
  model, config, _, _ = model_dir_lib.load_model(model_dir, TrainConfig)
  data_pattern = reader.split_pattern(data_pattern, "test")
  schema = schema_lib.schema_for_files(reader.match_files(data_pattern))
  report = exact_report(model, model_dataset(data_pattern, config, False, schema,
                                             batch_size=batch_size))
  return {"eval": report, "oracle": load_oracle(data_pattern)}
