"""Offline training of CTR models on impression TFRecords: Keras' fit in progress
chunks, checkpoints, TensorBoard, and exact metrics at the end.

What a run writes in its model directory, and how a trained model is loaded
back: `egin_tf.train.model_dir`.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from data_pipeline.data_split import DataSplit
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import MODELS
from egin_tf.models.base import CTRModel
from egin_tf.train import actions
from egin_tf.train import distribute
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train.config import TrainConfig, feature_config, model_config
from egin_tf.train.model_input import cache_fits, model_dataset
from egin_tf.train.evaluation import evaluate_and_print


def train(train_pattern: str, model_dir: str, config: TrainConfig,
          eval_pattern: Optional[str] = None, verbose: int = 1,
          print_fn: Callable[[str], None] = print,
          strategy: Optional[tf.distribute.Strategy] = None,
          stage_progress=None) -> Dict[str, Any]:
  """Trains a model, checkpoints it and reports exact metrics on ``eval_pattern``.

  ``stage_progress(label)`` makes a progress callback per stage of the work
  before training (EGES stage 1; e.g. `egin_tf.cli.common.progress_printer`).

  Under a ``strategy`` (`egin_tf.train.distribute`) the model is built in its scope and
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
  train_split = DataSplit.resolve(train_pattern, "train", config.sequence_lengths())
  eval_split = eval_pattern and DataSplit.resolve(eval_pattern, "test",
                                                  config.sequence_lengths())
  strategy = strategy or tf.distribute.get_strategy()
  chief = distribute.current_task().is_chief
  run = _build_run(train_split, model_dir, config, strategy, chief, stage_progress)
  result = _fit(run, train_split, strategy, verbose, print_fn)
  if not chief:
    tf.io.gfile.rmtree(run.out_dir)
    return result
  if eval_split:
    result.update(evaluate_and_print(_evaluation_model(run, strategy), eval_split,
                                     run.config, print_fn))
  with tf.io.gfile.GFile(os.path.join(model_dir, model_dir_lib.METRICS_FILE), "w") as f:
    json.dump(result, f, indent=2)
  return result


class _OfflineRun(NamedTuple):
  """What `train` builds before it fits: the compiled model and where it writes."""
  model: CTRModel
  config: TrainConfig  # after `CTRModel.prepare`
  features: FeatureConfig
  out_dir: str  # model_dir, or a non-chief worker's scratch folder
  manager: tf.train.CheckpointManager


def _build_run(train: DataSplit, model_dir: str, config: TrainConfig,
               strategy: tf.distribute.Strategy, chief: bool,
               stage_progress) -> _OfflineRun:
  """Seeds the run, prepares and writes the model directory, builds the model."""
  tf.keras.utils.set_random_seed(config.seed)
  features = feature_config(train.schema, config)
  out_dir = model_dir if chief else os.path.join(model_dir, "non_chief", str(os.getpid()))
  config = _prepare(train, out_dir, config, features, stage_progress)
  with strategy.scope():
    model = config.build_model(features)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, optimizer=model.optimizer),
      os.path.join(out_dir, model_dir_lib.CHECKPOINT_DIR), max_to_keep=3)
  return _OfflineRun(model, config, features, out_dir, manager)


def _fit(run: _OfflineRun, train: DataSplit, strategy: tf.distribute.Strategy,
         verbose: int, print_fn: Callable[[str], None]) -> Dict[str, Any]:
  """Keras' fit in progress chunks; the run's result (no evaluation yet)."""
  config = run.config
  num_chunks, chunk = _progress_chunks(config, train.impressions)
  print_fn(f"training {config.model} for {num_chunks * chunk} steps of "
           f"{config.batch_size} ({num_chunks} progress chunks of {chunk})")
  cache = config.cache and cache_fits(train, print_fn)
  train_input = distribute.worker_input(strategy, lambda shard: model_dataset(
      train, config, True, shard=shard, cache=cache))
  start = time.perf_counter()
  timer = _ChunkTimer()
  history = run.model.fit(
      train_input, epochs=num_chunks, steps_per_epoch=chunk,
      callbacks=[timer] + _callbacks(run.manager, run.out_dir,
                                     config.checkpoint_every_seconds, print_fn),
      verbose=verbose)
  return _run_result(num_chunks * chunk, config.batch_size,
                     time.perf_counter() - start, history, timer.seconds)


def _evaluation_model(run: _OfflineRun, strategy: tf.distribute.Strategy) -> CTRModel:
  """The trained model, or under a strategy an unsharded copy of its last checkpoint."""
  if strategy is tf.distribute.get_strategy():
    return run.model
  return _restored_copy(run.config, run.features, run.manager.latest_checkpoint)


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


def _prepare(train: DataSplit, model_dir: str, config: TrainConfig,
             features: FeatureConfig, stage_progress=None) -> TrainConfig:
  """Runs the model's `CTRModel.prepare` and writes the model directory's config."""
  tf.io.gfile.makedirs(model_dir)
  prepared = MODELS[config.model].prepare(train.pattern, model_dir, config.seed,
                                          config.model_kwargs, stage_progress)
  if prepared:
    config = dataclasses.replace(
        config, model_kwargs={**config.model_kwargs, **prepared})
  model_dir_lib.write_config(model_dir, config, model_config(config), features,
                             train.schema, train.pattern)
  return config


def _progress_chunks(config: TrainConfig, impressions: int) -> Tuple[int, int]:
  """(number, size) of the progress chunks that make up the run.

  Keras runs whole "epochs"; we use them as progress chunks of equal size, at
  most log_every steps, that add up to the total steps (or just over it).
  """
  total_steps = config.steps
  if total_steps is None:
    per_epoch = impressions // config.batch_size
    total_steps = max(1, per_epoch) * config.epochs
  num_chunks = math.ceil(total_steps / config.log_every)
  return num_chunks, math.ceil(total_steps / num_chunks)


def _callbacks(manager: tf.train.CheckpointManager, out_dir: str,
               checkpoint_every_seconds: Optional[float],
               print_fn: Callable[[str], None]) -> List[tf.keras.callbacks.Callback]:
  """TensorBoard, then the NaN stop and checkpoints (`actions.ChunkEndActions`),
  at the ends of progress chunks: no callback runs per step, so Keras fetches
  nothing between chunks.

  A checkpoint is written at a chunk's end once ``checkpoint_every_seconds``
  have passed since the last (None: every chunk), and at the end of training.
  Why not every chunk: a save of the tables and their optimizer slots takes
  0.2-0.6 s on trivago's tables, 5-15% of a 200-step chunk of a small model.
  """
  every = 0.0 if checkpoint_every_seconds is None else checkpoint_every_seconds
  return [
      # A point per progress chunk: with batch-level points, Keras records
      # summaries inside every step (a conditional write per metric), which
      # cost EGIN 12-17% of its fit on trivago.
      tf.keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"),
                                     update_freq="epoch"),
      actions.ChunkEndActions(
          actions.Checkpointer(manager, actions.Periodic(seconds=every)), print_fn),
  ]


def _restored_copy(config: TrainConfig, features: FeatureConfig,
                   checkpoint: str) -> CTRModel:
  """The model of ``checkpoint`` outside any strategy (sharded tables restore
  into whole ones), for evaluation in this process."""
  model = config.build_model(features)
  tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
  return model
