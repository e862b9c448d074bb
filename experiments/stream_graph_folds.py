"""Stream defaults: EGIN's ``graph_folds`` 1 vs 2 on a stream (issue 24, item 5).

Out-of-fold graph tables (``graph_folds=2``, `egin_tf.layers.out_of_fold`) remove
a label leak of shuffled, multi-epoch OFFLINE training: a row's target sits in the
same user's later histories, whose edges teach the graph that row's answer. Stream
training (`streaming.train_stream`: one time-ordered pass, each batch scored before
it is trained on) cannot leak that way, since no later row has been seen when a
row is trained; but with 2 folds each table learns from only half of the edges.
This script measures which setting a stream run should default to.

Per dataset, ``graph_folds`` and seed it runs one `train_stream` pass of default
EGIN (only ``graph_folds`` and the seed change) and reports the progressive
running AUC and logloss over the whole stream, the AUC of the last window, the
exact test AUC after the pass and the stream's examples/s (mean ± std over seeds),
then ``2 folds - 1 fold`` per metric and whether it is inside the noise: within
two standard errors of the difference of the means, sqrt(std1² / n + std2² / n).

Datasets:

* ``simulator``: the simulator's train split (``--users``, ``--data_seed``)
  replayed in time order (`progressive_validation.make_stream`);
* ``trivago``: the trivago sample converted with `convert_trivago`'s defaults, its
  train split written in time order (`stream.write_time_ordered`).

The decision (`decide`): 2 folds becomes the stream default only if it is better
beyond the noise on some progressive metric (running AUC or logloss) of some
dataset and worse beyond the noise on none; otherwise 1 fold (half the graph
table rows, and no leak to remove on a stream).

Folders under ``--out``: ``<dataset>/data`` and ``<dataset>/stream`` (made once,
reused), ``<dataset>/folds<K>-seed<S>`` (model dirs: a finished run with the same
settings is reused unless ``--overwrite``, an unfinished one resumes), and
``results.md`` / ``results.json``.

Usage:
  python -m experiments.stream_graph_folds [--datasets simulator,trivago]
      [--seeds 0,1] [--users 2000] [--out runs/stream_graph_folds]

Smoke run (a minute or two):
  python -m experiments.stream_graph_folds --datasets simulator --users 60 \
      --seeds 0 --window 1000 --out /tmp/stream_folds_smoke
"""

import dataclasses
import json
import math
import os
import shutil
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.trivago import convert_trivago
from egin_tf.train import stream as streaming
from egin_tf.train.config import StreamConfig, TrainConfig
from experiments import common
from experiments import progressive_validation as pv

DATASETS = ("simulator", "trivago")
FOLDS = (1, 2)
TRIVAGO_CSV = os.path.join(common.SHARED_DATA_DIR, "trivago", "trivago_sample.csv.gz")
# (result key, column title, True if higher is better, digits); the first two are
# the progressive metrics the decision is taken on.
METRICS = (("running_auc", "progressive AUC, whole stream", True, 4),
           ("running_logloss", "progressive logloss, whole stream", False, 4),
           ("window_auc", "progressive AUC, last window", True, 4),
           ("test_auc", "test AUC after the pass", True, 4),
           ("examples_per_second", "stream ex/s", True, 0))
DECISION_METRICS = ("running_auc", "running_logloss")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags (only when run as a script, as in progressive_validation)."""
  flags.DEFINE_list("datasets", list(DATASETS), f"Of {', '.join(DATASETS)}.")
  flags.DEFINE_list("seeds", ["0", "1"], "Seeds of training and the model.")
  flags.DEFINE_integer("users", 2000, "Users of the simulated dataset.")
  flags.DEFINE_integer("data_seed", 0, "Seed of the simulated dataset.")
  flags.DEFINE_string("trivago_csv", TRIVAGO_CSV, "The trivago sample (CSV or .csv.gz).")
  flags.DEFINE_integer("max_hist", 50, "L = M = S: history lengths kept.")
  flags.DEFINE_integer("batch_size", 256, "Examples per stream step.")
  flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
  flags.DEFINE_integer("window", 10_000, "Examples in the progressive window.")
  flags.DEFINE_integer("log_every", 100, "Stream steps between progress lines.")
  flags.DEFINE_integer("records_per_shard", 5000, "Records per stream shard.")
  flags.DEFINE_string("out", os.path.join(common.REPO_ROOT, "runs", "stream_graph_folds"),
                      "Folder of the data, streams, model dirs and results.")
  flags.DEFINE_bool("overwrite", False, "Retrain runs whose folders exist.")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every run depends on (the flags, as one value)."""
  out: str
  users: int = 2000
  data_seed: int = 0
  trivago_csv: str = TRIVAGO_CSV
  max_hist: int = 50
  batch_size: int = 256
  learning_rate: float = 1e-3
  window: int = 10_000
  log_every: int = 100
  records_per_shard: int = 5000
  overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class Difference:
  """``2 folds - 1 fold`` of one metric's means, and its noise (two standard
  errors of the difference; NaN with a single seed)."""
  value: float
  noise: float

  @property
  def inside_noise(self) -> bool:
    return math.isnan(self.noise) or abs(self.value) <= self.noise


# -------------------------------------------------------------------- data ----


def prepare_dataset(dataset: str, settings: Settings) -> Tuple[str, str]:
  """Makes (once) ``<out>/<dataset>/data`` and its time-ordered ``stream``.

  Returns:
    ``(stream folder, test file pattern)``.
  """
  base = os.path.join(settings.out, dataset)
  data_dir = os.path.join(base, "data")
  if dataset == "simulator":
    pv.simulate_dataset(data_dir, settings.users, settings.data_seed)
  elif not os.path.exists(os.path.join(data_dir, "schema.json")):
    print(f"converting {settings.trivago_csv} into {data_dir}")
    print(convert_trivago(settings.trivago_csv, data_dir, overwrite=True))
  stream_dir = os.path.join(base, "stream")
  pv.make_stream(data_dir, stream_dir, settings.records_per_shard)
  return stream_dir, os.path.join(data_dir, "test-*")


# ---------------------------------------------------------------- training ----


def train_config(folds: int, seed: int, settings: Settings) -> TrainConfig:
  """Default EGIN with ``folds`` graph folds; the stream's optimizer and lengths."""
  return TrainConfig(
      model="egin", model_kwargs={"graph_folds": folds}, batch_size=settings.batch_size,
      epochs=1, learning_rate=settings.learning_rate, max_clicks=settings.max_hist,
      max_queries=settings.max_hist, max_seeds=settings.max_hist, seed=seed)


def stream_run(stream_dir: str, test_pattern: str, model_dir: str,
               config: TrainConfig, settings: Settings) -> Dict[str, float]:
  """One pass of ``config`` over ``stream_dir`` (or the finished run's figures)."""
  if settings.overwrite and os.path.exists(model_dir):
    shutil.rmtree(model_dir)
  # progressive_validation's reuse rule: the same settings, or an error.
  result = pv._finished(model_dir, pv.STREAM_METRICS_FILE, config)
  if result is None:
    print(f"\n== {model_dir}: one pass over {stream_dir}")
    result = streaming.train_stream(
        stream_dir, model_dir, config,
        StreamConfig(progressive_window=settings.window,
                     log_every=settings.log_every),
        eval_pattern=test_pattern)
  else:
    print(f"reusing the finished stream run in {model_dir}")
  return run_figures(result)


def dataset_runs(dataset: str, seeds: Sequence[int], settings: Settings
                 ) -> Dict[int, List[Dict[str, float]]]:
  """``{graph_folds: [figures per seed]}`` of one dataset."""
  stream_dir, test_pattern = prepare_dataset(dataset, settings)
  return {folds: [stream_run(stream_dir, test_pattern,
                             os.path.join(settings.out, dataset, f"folds{folds}-seed{seed}"),
                             train_config(folds, seed, settings), settings)
                  for seed in seeds] for folds in FOLDS}


def run_figures(result: dict) -> Dict[str, float]:
  """The reported metrics of a `train_stream` result (its stream_metrics.json)."""
  progressive = result["progressive"]
  return {"running_auc": progressive["running_auc"],
          "running_logloss": progressive["running_logloss"],
          "window_auc": progressive["window_auc"], "test_auc": result["eval"]["auc"],
          "examples_per_second": result["examples_this_run"] / result["seconds"],
          "examples": progressive["examples"]}


# --------------------------------------------------------------- reporting ----


def difference(one_fold: Sequence[float], two_folds: Sequence[float]) -> Difference:
  """``mean(two_folds) - mean(one_fold)`` and two standard errors of it."""
  mean1, std1 = common.mean_std(one_fold)
  mean2, std2 = common.mean_std(two_folds)
  noise = 2 * math.sqrt(std1 ** 2 / len(one_fold) + std2 ** 2 / len(two_folds))
  return Difference(mean2 - mean1, noise)


def difference_text(d: Difference, digits: int) -> str:
  """``+0.0012 (noise 0.0030: inside)``."""
  if math.isnan(d.noise):
    return f"{d.value:+.{digits}f} (1 seed: noise unknown)"
  where = "inside" if d.inside_noise else "OUTSIDE"
  return f"{d.value:+.{digits}f} (noise {d.noise:.{digits}f}: {where})"


def dataset_rows(dataset: str, runs: Dict[int, List[Dict[str, float]]]
                 ) -> List[List[str]]:
  """Table rows of one dataset: each graph_folds (mean ± std), then 2 - 1."""
  rows = []
  for folds in FOLDS:
    cells = [dataset, f"graph_folds={folds}", str(len(runs[folds]))]
    for key, _, _, digits in METRICS:
      values = [r[key] for r in runs[folds]]
      cells.append(common.mean_pm_std(values, digits) if digits else
                   f"{common.mean_std(values)[0]:,.0f}")
    rows.append(cells)
  diffs = [difference_text(difference([r[key] for r in runs[1]],
                                      [r[key] for r in runs[2]]), digits)
           for key, _, _, digits in METRICS]
  rows.append([dataset, "2 folds - 1 fold", ""] + diffs)
  return rows


def results_table(results: Dict[str, Dict[int, List[Dict[str, float]]]]) -> str:
  """One Markdown table: per dataset, both settings and their difference."""
  header = ["dataset", "graph_folds", "seeds"] + [title for _, title, _, _ in METRICS]
  rows = [row for dataset, runs in results.items()
          for row in dataset_rows(dataset, runs)]
  return common.markdown_table(header, rows, left_columns=3)


def decide(results: Dict[str, Dict[int, List[Dict[str, float]]]]) -> Tuple[int, str]:
  """The stream default of ``graph_folds`` and why (see the module docstring)."""
  better, worse = [], []  # (dataset, metric) where 2 folds beat / lost to 1 fold
  for dataset, runs in results.items():
    for key, title, higher_is_better, _ in METRICS:
      if key not in DECISION_METRICS:
        continue
      d = difference([r[key] for r in runs[1]], [r[key] for r in runs[2]])
      if not d.inside_noise:
        (better if (d.value > 0) == higher_is_better else worse).append(
            f"{dataset} {title}")
  if better and not worse:
    return 2, "2 folds are better beyond the noise on " + "; ".join(better)
  if worse and not better:
    return 1, "1 fold is better beyond the noise on " + "; ".join(worse)
  if better:
    return 1, (f"the progressive metrics disagree (2 folds better on "
               f"{'; '.join(better)}, worse on {'; '.join(worse)}): 1 fold, the "
               "simpler")
  return 1, ("every progressive difference is inside the noise: 1 fold (half the "
             "graph table rows, and no leak to remove on a stream)")


def write_results(settings: Settings, results, command: str) -> str:
  """Writes ``<out>/results.md`` (returned) and ``<out>/results.json``."""
  folds, why = decide(results)
  text = (f"Command: `{command}`  \nDate: {common.utc_date()}  \n"
          f"EGIN defaults but graph_folds; lr {settings.learning_rate}, batch "
          f"{settings.batch_size}, L = M = S = {settings.max_hist}, window "
          f"{settings.window:,}\n\n{results_table(results)}\n\n"
          f"Decision: graph_folds={folds} on the stream: {why}.\n")
  with open(os.path.join(settings.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text)
  with open(os.path.join(settings.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"results": results, "decision": folds, "why": why}, f, indent=2)
  return text


def run(datasets: Sequence[str], seeds: Sequence[int], settings: Settings,
        command: str = "") -> str:
  """Every dataset x graph_folds x seed; returns the results text."""
  results = {dataset: dataset_runs(dataset, seeds, settings) for dataset in datasets}
  return write_results(settings, results, command)


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.datasets) - set(DATASETS))
  if unknown or not FLAGS.datasets:
    raise app.UsageError(f"--datasets={','.join(FLAGS.datasets)}: give some of "
                         f"{', '.join(DATASETS)}")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: integers") from None
  settings = Settings(
      out=FLAGS.out, users=FLAGS.users, data_seed=FLAGS.data_seed,
      trivago_csv=FLAGS.trivago_csv, max_hist=FLAGS.max_hist,
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      window=FLAGS.window, log_every=FLAGS.log_every,
      records_per_shard=FLAGS.records_per_shard, overwrite=FLAGS.overwrite)
  os.makedirs(settings.out, exist_ok=True)
  print("\n" + run(FLAGS.datasets, seeds, settings, " ".join(common.command_line())))


if __name__ == "__main__":
  define_flags()
  app.run(main)
