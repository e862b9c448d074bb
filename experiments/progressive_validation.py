"""Progressive validation on a simulated stream (issue 6): online vs offline AUC.

The simulator's train split is replayed as a log stream (shards in impression-time
order) and every model is trained on it in ONE pass with `streaming.train_stream`,
which scores each batch before training on it (progressive validation). Because the
simulator knows every impression's true click probability, the same progressive
windows can be scored for the oracle, the best any model can do on them.

Per model the script reports

* the progressive AUC over the whole stream (running; `ProgressiveMetrics` buckets
  it into 10,000 thresholds, so it is good to about 1e-4) and over the last window,
* the exact test AUC after the stream pass,
* the exact test AUC of the same model trained OFFLINE for one shuffled epoch on
  the same train split (`offline.train`: same batch size, learning rate, history
  lengths and seed),
* the oracle's test AUC and the stream's training speed,

and plots the progressive curves. The curves come from the TensorBoard scalars
that `train_stream` writes under ``<model_dir>/logs/stream`` (the library is not
changed for this); the oracle's window AUC at a logged step ``s`` is the exact AUC
of the true probabilities over the last ``window`` examples of the first
``min(s * batch_size, N)`` stream examples (only the last batch of a finite stream
is partial), the same examples as the model's ring buffer holds at that step.

Folders under ``--out``: ``data/`` (the simulated dataset, reused), ``stream/`` (the
time-ordered train split, reused), ``stream_<model>/`` and ``offline_<model>/``
(model dirs; a finished one with the same settings is reused unless
``--overwrite``; an unfinished stream run resumes where its checkpoint stands),
``results.md`` and ``curves.json``.

Usage:
  python -m experiments.progressive_validation [--users 2000] [--seed 0]
      [--models egin,dnn] [--max_hist 50] [--records_per_shard 5000]
      [--export_every_steps 0] [--out runs/progressive_validation]
      [--figure experiments/figures/progressive_auc.png] [--overwrite]

Smoke run (a minute or two):
  python -m experiments.progressive_validation --users 100 --models dnn \
      --out /tmp/progressive_smoke --figure /tmp/progressive_smoke/auc.png
"""

import dataclasses
import glob
import json
import math
import os
import shutil
from typing import Dict, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from data_pipeline import ranking_metrics as metrics
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import stream as streaming
from egin_tf.train.config import StreamConfig, TrainConfig
from egin_tf.train import offline
from experiments import common

PROGRESSIVE_PREFIX = "progressive/"
PROGRESSIVE_TAGS = ("running_auc", "window_auc", "running_logloss", "window_logloss")
STREAM_METRICS_FILE = "stream_metrics.json"  # written by train_stream at its end

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags; only when run as a script, so that importing
  this module (tests, other scripts) never collides with other absl flags."""
  flags.DEFINE_integer("users", 2000, "Users to simulate.")
  flags.DEFINE_integer("seed", 0, "Seed of the simulator, training and models.")
  flags.DEFINE_list("models", ["egin", "dnn"], "Models to train (registered names).")
  flags.DEFINE_integer("max_hist", 50, "L = M = S: history lengths kept.")
  flags.DEFINE_integer("records_per_shard", 5000, "Records per stream shard.")
  flags.DEFINE_integer("export_every_steps", 0,
                       "Export a SavedModel every N stream steps (0: never).")
  flags.DEFINE_integer("batch_size", 256, "Examples per step (stream and offline).")
  flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate (both).")
  flags.DEFINE_integer("window", 10_000, "Examples in the progressive window.")
  flags.DEFINE_integer("log_every", 20, "Stream steps between logged points.")
  flags.DEFINE_string("out", os.path.join(common.REPO_ROOT, "runs", "progressive_validation"),
                      "Folder for the data, the stream, the model dirs and results.")
  flags.DEFINE_string("figure", os.path.join(common.REPO_ROOT, "experiments", "figures",
                                             "progressive_auc.png"),
                      "Where the plot goes.")
  flags.DEFINE_bool("overwrite", False, "Retrain models whose dirs exist.")
  flags.DEFINE_integer("verbose", 2, "Keras fit verbosity of the offline runs.")


@dataclasses.dataclass
class ExperimentConfig:
  """Everything a run depends on (the flags, as one value for `run`)."""
  out: str
  figure: str
  users: int = 2000
  seed: int = 0
  models: Sequence[str] = ("egin", "dnn")
  max_hist: int = 50
  records_per_shard: int = 5000
  export_every_steps: int = 0
  batch_size: int = 256
  learning_rate: float = 1e-3
  window: int = 10_000
  log_every: int = 20
  overwrite: bool = False
  verbose: int = 2


@dataclasses.dataclass
class Curve:
  """AUCs at the logged stream steps: examples streamed [T] and AUCs [T]."""
  examples: np.ndarray
  running_auc: np.ndarray
  window_auc: np.ndarray


@dataclasses.dataclass
class ModelResult:
  """One model's stream pass and offline epoch."""
  model: str
  curve: Curve
  running_auc: float  # progressive, over the whole stream
  window_auc: float  # progressive, over the last window
  stream_test_auc: float
  offline_test_auc: float
  stream_examples_per_second: float
  offline_examples_per_second: float
  stream_steps: int
  offline_steps: int


# --------------------------------------------------------------------- data


def simulate_dataset(data_dir: str, users: int, seed: int
                     ) -> simulator.SimulatorConfig:
  """Simulates ``users`` (``seed``) into ``data_dir``, or reuses what is there.

  Returns:
    The simulator config the dataset was made with (from its ``oracle.json``).
  """
  return simulator.SimulatorConfig(**common.simulated_dataset(
      data_dir, users, seed, f"{users} users, seed {seed}"))


def make_stream(data_dir: str, stream_dir: str, records_per_shard: int) -> int:
  """The train split as a time-ordered stream folder (reused if it matches).

  Returns:
    The number of records in the stream.
  """
  train_pattern = os.path.join(data_dir, "train-*")
  expected = DataSplit.resolve(train_pattern, "train").impressions
  if os.path.isdir(stream_dir):
    split = schema_lib.DatasetSchema.load(stream_dir).splits.get("stream", {})
    shards = stream_lib.list_shards(stream_dir)
    if (split.get("impressions") != expected or
        len(shards) != math.ceil(expected / records_per_shard)):
      raise ValueError(
          f"{stream_dir} holds {split.get('impressions')} records in "
          f"{len(shards)} shards, not the {expected} train impressions of "
          f"{data_dir} in shards of {records_per_shard}; delete it or pick "
          "another --out")
    print(f"reusing the stream {stream_dir} ({len(shards)} shards)")
    return expected
  paths = stream_lib.write_time_ordered(train_pattern, stream_dir, records_per_shard)
  print(f"wrote the train split as a stream: {len(paths)} shards of "
        f"{records_per_shard} in {stream_dir}")
  return expected


def _train_truth(config: simulator.SimulatorConfig) -> Dict[int, Tuple[int, float]]:
  """``{record fingerprint: (label, true click probability)}`` of every simulated
  train impression, serialized exactly as `simulator.generate` writes it."""
  truth: Dict[int, Tuple[int, float]] = {}
  for split, imp, prob in simulator.simulate(config):
    if split != simulator.TRAIN:
      continue
    record = schema_lib.to_example(imp, simulator.NUM_CATS).SerializeToString(
        deterministic=True)
    key = stream_lib.record_fingerprint(record)
    # (user, time, item) is unique in the simulator (search times strictly
    # increase per user, results of a search are distinct), so records are too.
    if key in truth:
      raise ValueError(f"two simulated impressions share the record fingerprint "
                       f"{key} (user {imp.user_id}, time {imp.time}, item "
                       f"{imp.item_id}); their probabilities cannot be told apart")
    truth[key] = (imp.label, prob)
  return truth


def true_click_probabilities(config: simulator.SimulatorConfig, stream_dir: str
                             ) -> Tuple[np.ndarray, np.ndarray]:
  """Labels and true click probabilities of every stream record, in stream order.

  Re-runs the simulator and keys each train impression by the fingerprint of its
  serialized record (serialized exactly as `simulator.generate` writes it), then
  reads the stream's shards in the order `ShardStream` does.

  Returns:
    ``(labels, probs)``: int64 [N] and float64 [N].

  Raises:
    ValueError: naming the shard and record of a stream record that no simulated
      train impression produces, or a train impression missing from the stream.
  """
  truth = _train_truth(config)
  labels, probs, found = [], [], set()
  for shard in stream_lib.list_shards(stream_dir):
    path = os.path.join(stream_dir, shard)
    index = 0
    for chunk in tf.data.TFRecordDataset(path).batch(4096):
      for record in chunk.numpy().tolist():
        key = stream_lib.record_fingerprint(record)
        if key not in truth:
          raise ValueError(
              f"{path}: record {index}: no simulated train impression of "
              f"{config.num_users} users, seed {config.seed} serializes to this "
              "record, so its true click probability is unknown; was the stream "
              "made from another dataset?")
        if key in found:
          raise ValueError(f"{path}: record {index}: this impression is already "
                           "earlier in the stream")
        found.add(key)
        label, prob = truth[key]
        labels.append(label)
        probs.append(prob)
        index += 1
  if len(found) != len(truth):
    raise ValueError(f"{stream_dir}: the stream holds {len(found)} of the "
                     f"{len(truth)} simulated train impressions")
  return np.asarray(labels, np.int64), np.asarray(probs, np.float64)


# ---------------------------------------------------------- progressive curves


def read_scalars(log_dir: str, prefix: str = PROGRESSIVE_PREFIX
                 ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """TensorBoard scalars under ``log_dir`` whose tag starts with ``prefix``.

  A resumed run logs again the steps between its last checkpoint and the crash;
  the value written last (by wall time) wins.

  Returns:
    ``{tag without prefix: (steps int64 [T], values float64 [T])}``, by step.
  """
  files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
  if not files:
    raise FileNotFoundError(f"no TensorBoard event files in {log_dir}")
  points = []  # (wall time, order read, tag, step, value)
  for path in files:
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if not value.tag.startswith(prefix):
          continue
        number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                  else float(value.simple_value))
        points.append((event.wall_time, len(points), value.tag[len(prefix):],
                       int(event.step), number))
  by_tag: Dict[str, Dict[int, float]] = {}
  for _, _, tag, step, number in sorted(points):
    by_tag.setdefault(tag, {})[step] = number
  out = {}
  for tag, values in by_tag.items():
    steps = np.array(sorted(values), np.int64)
    out[tag] = (steps, np.array([values[s] for s in steps], np.float64))
  return out


def examples_at_steps(steps: np.ndarray, batch_size: int, total: int) -> np.ndarray:
  """Examples streamed after each step: full batches, the last one maybe partial."""
  steps = np.asarray(steps, np.int64)
  last_step = math.ceil(total / batch_size)
  bad = steps[(steps < 1) | (steps > last_step)]
  if bad.size:
    raise ValueError(f"step {int(bad[0])} is not a step of a stream of {total} "
                     f"examples in batches of {batch_size} (steps 1..{last_step})")
  return np.minimum(steps * batch_size, total)


def auc_at(labels: np.ndarray, scores: np.ndarray, ends: np.ndarray,
           window: Optional[int] = None) -> np.ndarray:
  """Exact AUC of ``scores`` [N] over ``[end - window, end)`` (or ``[0, end)``)
  for every end in ``ends`` [T]; NaN where the labels are all equal."""
  return np.array([metrics.auc(labels[max(0, e - window) if window else 0:e],
                               scores[max(0, e - window) if window else 0:e])
                   for e in ends], np.float64)


def oracle_curve(labels: np.ndarray, probs: np.ndarray, ends: np.ndarray,
                 window: int) -> Curve:
  """The true probabilities scored like progressive validation at ``ends``."""
  return Curve(np.asarray(ends), auc_at(labels, probs, ends),
               auc_at(labels, probs, ends, window))


def model_curve(model_dir: str, batch_size: int, total: int) -> Curve:
  """A stream run's logged progressive AUCs, by examples streamed."""
  scalars = read_scalars(os.path.join(model_dir, streaming.LOG_DIR))
  missing = [t for t in ("running_auc", "window_auc") if t not in scalars]
  if missing:
    raise ValueError(f"{model_dir}/{streaming.LOG_DIR}: no "
                     f"{', '.join(PROGRESSIVE_PREFIX + t for t in missing)} scalars")
  steps, running = scalars["running_auc"]
  window_steps, window = scalars["window_auc"]
  if not np.array_equal(steps, window_steps):
    raise ValueError(f"{model_dir}: running and window AUC were logged at "
                     "different steps")
  return Curve(examples_at_steps(steps, batch_size, total), running, window)


# ------------------------------------------------------------------ training


def _train_config(model: str, config: ExperimentConfig) -> TrainConfig:
  kwargs = {"seed": config.seed} if model == "egin" else {}
  return TrainConfig(
      model=model, model_kwargs=kwargs, batch_size=config.batch_size, epochs=1,
      learning_rate=config.learning_rate, max_clicks=config.max_hist,
      max_queries=config.max_hist, max_seeds=config.max_hist, seed=config.seed)


def _finished(model_dir: str, metrics_file: str,
              train_config: TrainConfig) -> Optional[dict]:
  """The metrics of a finished run in ``model_dir`` with the same settings."""
  metrics_path = os.path.join(model_dir, metrics_file)
  if not (os.path.exists(metrics_path) and model_dir_lib.exists(model_dir)):
    return None
  saved = model_dir_lib.read_config(model_dir).train
  wanted = json.loads(json.dumps(dataclasses.asdict(train_config)))
  if saved != wanted:
    raise ValueError(f"{model_dir} was trained with other settings ({saved}); "
                     "pass --overwrite or pick another --out")
  with open(metrics_path, encoding="utf-8") as f:
    return json.load(f)


def train_on_stream(model: str, stream_dir: str, test_pattern: str, model_dir: str,
                    config: ExperimentConfig) -> dict:
  """One pass of ``model`` over the stream (`train_stream`), then the test split."""
  train_config = _train_config(model, config)
  if config.overwrite and os.path.exists(model_dir):
    shutil.rmtree(model_dir)
  done = _finished(model_dir, STREAM_METRICS_FILE, train_config)
  if done is not None:
    print(f"reusing the finished stream run in {model_dir}")
    return done
  stream_config = StreamConfig(
      progressive_window=config.window, log_every=config.log_every,
      export_dir=(os.path.join(model_dir, "exports")
                  if config.export_every_steps else None),
      export_every_steps=config.export_every_steps or None)
  print(f"\n== {model}: one pass over the stream {stream_dir}")
  return streaming.train_stream(stream_dir, model_dir, train_config, stream_config,
                                eval_pattern=test_pattern)


def train_offline(model: str, train_pattern: str, test_pattern: str, model_dir: str,
                  config: ExperimentConfig) -> dict:
  """One shuffled epoch of ``model`` on the train split (`offline.train`)."""
  train_config = _train_config(model, config)
  if config.overwrite and os.path.exists(model_dir):
    shutil.rmtree(model_dir)
  done = _finished(model_dir, model_dir_lib.METRICS_FILE, train_config)
  if done is not None:
    print(f"reusing the finished offline run in {model_dir}")
    return done
  if os.path.exists(model_dir):  # unfinished: `offline.train` does not resume
    shutil.rmtree(model_dir)
  print(f"\n== {model}: one offline epoch on {train_pattern}")
  return offline.train(train_pattern, model_dir, train_config,
                       eval_pattern=test_pattern, verbose=config.verbose)


# ------------------------------------------------------------------ reporting


def markdown_table(rows: Sequence[ModelResult], oracle: Curve,
                   oracle_test_auc: float, window: int) -> str:
  """One row per model, then the oracle (the true probabilities) on the same data."""
  fmt = common.format_number
  header = ["model", "progressive AUC, whole stream (running)",
            f"progressive AUC, last {window:,}", "test AUC after the stream pass",
            "test AUC after 1 offline epoch", "oracle test AUC", "stream ex/s",
            "offline ex/s"]
  body = [[r.model, fmt(r.running_auc), fmt(r.window_auc), fmt(r.stream_test_auc),
           fmt(r.offline_test_auc), fmt(oracle_test_auc),
           f"{r.stream_examples_per_second:,.0f}",
           f"{r.offline_examples_per_second:,.0f}"] for r in rows]
  body.append(["oracle (true p)", fmt(float(oracle.running_auc[-1])),
               fmt(float(oracle.window_auc[-1])), "-", "-", fmt(oracle_test_auc), "-",
               "-"])
  return common.markdown_table(header, body)


def plot_progressive(rows: Sequence[ModelResult], oracle: Curve,
                     oracle_test_auc: float, stream_examples: int, window: int,
                     path: str) -> None:
  """Progressive window (solid) and running (dashed) AUC per model, the oracle's
  window AUC (black), and the test AUCs as marks right of the stream's end."""
  plt = common.pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  fig, ax = plt.subplots(figsize=(10, 6.8), layout="constrained")
  # Test AUCs are single numbers measured after the stream: short marks in a
  # band right of its end (after the stream pass, then after the offline epoch,
  # side by side since they can be nearly equal), so they do not read as curves.
  n = stream_examples
  stream_marks, offline_marks = (n * 1.02, n * 1.075), (n * 1.085, n * 1.14)
  for color, r in zip(colors, rows):
    ax.plot(r.curve.examples, r.curve.window_auc, color=color, lw=1.6,
            label=f"{r.model}: progressive AUC, last {window:,}")
    ax.plot(r.curve.examples, r.curve.running_auc, color=color, lw=1.4, ls="--",
            label=f"{r.model}: progressive AUC, whole stream so far")
    ax.hlines(r.stream_test_auc, *stream_marks, color=color, lw=3,
              label=f"{r.model}: test AUC after the stream pass "
                    f"({r.stream_test_auc:.4f})")
    ax.hlines(r.offline_test_auc, *offline_marks, color=color, lw=3, ls=":",
              label=f"{r.model}: test AUC after 1 offline epoch "
                    f"({r.offline_test_auc:.4f})")
  ax.plot(oracle.examples, oracle.window_auc, color="black", lw=1.6,
          label=f"oracle (true p): AUC, last {window:,}")
  ax.hlines(oracle_test_auc, stream_marks[0], offline_marks[1], color="black", lw=3,
            label=f"oracle: test AUC ({oracle_test_auc:.4f})")
  ax.axvline(n, color="gray", lw=0.8)
  for (a, b), text in ((stream_marks, "test AUC\nafter\nstream"),
                       (offline_marks, "test AUC\nafter 1\noffline\nepoch")):
    ax.text((a + b) / 2, 0.02, text, transform=ax.get_xaxis_transform(),
            ha="center", va="bottom", fontsize=7.5, color="dimgray")
  x1 = offline_marks[1]
  ax.set_xlim(0, x1 * 1.01)
  ax.set_xlabel("examples streamed (train split in time order)")
  ax.set_ylabel("AUC")
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(
      lambda x, _: f"{x / 1000:,.0f}k" if x else "0"))
  ax.grid(alpha=0.3)
  ax.set_title(f"Progressive validation: scored before training on each batch "
               f"({stream_examples:,} examples, one pass)")
  fig.legend(loc="outside lower center", fontsize=8, ncol=2)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ----------------------------------------------------------------------- run


def prepare_stream(config: ExperimentConfig
                   ) -> Tuple[int, np.ndarray, np.ndarray]:
  """Simulates (or reuses) ``<out>/data`` and its stream ``<out>/stream``.

  Returns:
    ``(total, labels, probs)``: the stream's record count, and the labels and
    true click probabilities of its records in stream order.
  """
  data_dir = os.path.join(config.out, "data")
  stream_dir = os.path.join(config.out, "stream")
  sim_config = simulate_dataset(data_dir, config.users, config.seed)
  total = make_stream(data_dir, stream_dir, config.records_per_shard)
  labels, probs = true_click_probabilities(sim_config, stream_dir)
  if labels.size != total:
    raise ValueError(f"{stream_dir}: {labels.size} records, expected {total}")
  print(f"true click probabilities of all {total:,} stream records found")
  return total, labels, probs


def model_result(model: str, total: int, config: ExperimentConfig) -> ModelResult:
  """Trains ``model`` on the stream and offline (or reuses the runs); its row."""
  data_dir = os.path.join(config.out, "data")
  test_pattern = os.path.join(data_dir, "test-*")
  stream_dir_model = os.path.join(config.out, f"stream_{model}")
  streamed = train_on_stream(model, os.path.join(config.out, "stream"), test_pattern,
                             stream_dir_model, config)
  if streamed["examples"] != total:
    raise ValueError(f"{stream_dir_model}: trained on {streamed['examples']} "
                     f"examples, the stream has {total}")
  offline = train_offline(model, os.path.join(data_dir, "train-*"), test_pattern,
                          os.path.join(config.out, f"offline_{model}"), config)
  progressive = streamed["progressive"]
  curve = model_curve(stream_dir_model, config.batch_size, total)
  if curve.examples[-1] != total:  # the last step was not a logged one
    curve = Curve(np.append(curve.examples, total),
                  np.append(curve.running_auc, progressive["running_auc"]),
                  np.append(curve.window_auc, progressive["window_auc"]))
  return ModelResult(
      model=model, curve=curve,
      running_auc=progressive["running_auc"],
      window_auc=progressive["window_auc"],
      stream_test_auc=streamed["eval"]["auc"],
      offline_test_auc=offline["eval"]["auc"],
      stream_examples_per_second=(streamed["examples_this_run"] /
                                  streamed["seconds"]),
      offline_examples_per_second=offline["examples_per_second"],
      stream_steps=streamed["steps"], offline_steps=offline["steps"])


def write_results(config: ExperimentConfig, rows: Sequence[ModelResult],
                  oracle: Curve, total: int, table: str, command: str) -> str:
  """Writes ``<out>/results.md`` (returned) and ``<out>/curves.json``."""
  text = (f"Command: `{command}`  \nDate: {common.utc_date()}  \nStream: {total:,} "
          f"train impressions in time order, {rows[0].stream_steps} steps of "
          f"{config.batch_size}; offline: {rows[0].offline_steps} shuffled steps; "
          f"L = M = S = {config.max_hist}, lr {config.learning_rate}, seed "
          f"{config.seed}\n\n{table}\n\nFigure: {config.figure}\n")
  with open(os.path.join(config.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text)
  curves = {r.model: {k: np.asarray(v).tolist() for k, v in
                      dataclasses.asdict(r.curve).items()} for r in rows}
  curves["oracle"] = {k: np.asarray(v).tolist()
                      for k, v in dataclasses.asdict(oracle).items()}
  with open(os.path.join(config.out, "curves.json"), "w", encoding="utf-8") as f:
    json.dump(curves, f)
  return text


def run(config: ExperimentConfig, command: str = "") -> dict:
  """Runs the whole experiment; returns ``{"rows", "oracle", "oracle_test_auc",
  "stream_examples", "table"}`` and writes results.md, curves.json and the figure."""
  total, labels, probs = prepare_stream(config)
  test_pattern = os.path.join(config.out, "data", "test-*")
  oracle_test_auc = DataSplit.resolve(test_pattern, "test").oracle["test_auc"]
  rows = [model_result(model, total, config) for model in config.models]
  for r in rows[1:]:
    if not np.array_equal(r.curve.examples, rows[0].curve.examples):
      raise ValueError(f"{r.model} and {rows[0].model} were logged at different "
                       "steps")
  oracle = oracle_curve(labels, probs, rows[0].curve.examples, config.window)
  table = markdown_table(rows, oracle, oracle_test_auc, config.window)
  plot_progressive(rows, oracle, oracle_test_auc, total, config.window,
                   config.figure)
  text = write_results(config, rows, oracle, total, table, command)
  print("\n" + text)
  return {"rows": rows, "oracle": oracle, "oracle_test_auc": oracle_test_auc,
          "stream_examples": total, "table": table}


def main(argv):
  del argv
  if not FLAGS.models:
    raise app.UsageError("--models: give at least one model")
  config = ExperimentConfig(
      out=FLAGS.out, figure=FLAGS.figure, users=FLAGS.users, seed=FLAGS.seed,
      models=FLAGS.models, max_hist=FLAGS.max_hist,
      records_per_shard=FLAGS.records_per_shard,
      export_every_steps=FLAGS.export_every_steps, batch_size=FLAGS.batch_size,
      learning_rate=FLAGS.learning_rate, window=FLAGS.window,
      log_every=FLAGS.log_every, overwrite=FLAGS.overwrite, verbose=FLAGS.verbose)
  os.makedirs(FLAGS.out, exist_ok=True)
  run(config, " ".join(common.command_line()))


if __name__ == "__main__":
  define_flags()
  app.run(main)
