"""The paper's Tables 2-4 (section 4) reproduced on the data this project has, and
the fair tables.

One command per table; each trains every model of the table for several seeds
and prints (and writes as markdown) test AUC mean +- std, gAUC, logloss,
RelaImpr against DNN and training examples/s:

  fair_taobao,        The fair tables (issue 24): DNN, DNN-cross, DIN, BST, EGES,
  fair_taobao_category, EGIN, EGIN w/o graph and the paper's EGIN, every one
  fair_trivago,       under the SAME ``--match_features`` setting (the explicit
  fair_simulator      target-match block, `egin_tf.layers.TargetMatch`) and the
                      same tuning budget. Taobao with the paper's uniform
                      negatives and with category negatives (drawn from the
                      positive's category by click counts so far).
  taobao              Table 2 analogue: Taobao UserBehavior head, item-only,
                      ``convert_taobao(split="last_day")``: the last Beijing day
                      of the paper's window is test (~20k impressions; the
                      paper's ``last_click`` leaves only 1,626 on this sample).
  trivago             Table 3 analogue: the trivago sample, query graph on
                      (``convert_trivago`` with default flags: the log's withheld
                      items are counted quirks).
  simulator           Table 3 analogue on the simulator, with the oracle AUC (the
                      true click probabilities) as the ceiling.
  ablation_trivago,   Table 4: EGIN w/o graph, with one (leaking) graph table,
  ablation_simulator, w/o the match block and the paper's EGIN, beside EGIN
  ablation_taobao     and DNN-cross.

Protocol (the same for every model, so the comparison is fair):

* the same epochs (or ``--steps``), batch size, embedding size (d = 10), history
  lengths and data for all models; the paper's EGIN settings (window 2, top-10,
  100 negatives, d = 10, queue of 1M) are the model defaults;
* the same tuning budget (`experiments.tuning`): Adam's learning rate over
  ``--lrs`` crossed with two values of one architecture knob per model (DNN
  widths, DIN attention units, BST heads, EGES/EGIN top_k; ``--notune_arch``:
  the rates alone), every trial with the first seed; the best is picked on a
  VALIDATION split, the latest ``--valid_fraction`` of the train split by
  impression time (`split_by_time`), never on test. Every model trains on the
  rest of the train split;
* in the fair tables EGIN's ablations (EGIN w/o graph, the paper's EGIN) reuse
  EGIN's chosen trial (`FAIR_ABLATIONS`): they measure a part of EGIN, so they
  keep its settings and get no sweep of their own;
* the best trial is then run with every ``--seeds`` and scored exactly
  on the test split. AUC, gAUC and logloss are mean +- sample std (n - 1) over
  seeds; RelaImpr = (AUC(model) - 0.5) / (AUC(DNN) - 0.5) - 1 (paper,
  section 4) on the mean AUCs; "AUC - EGIN" (Table 4's "Diff") is in AUC points.

Every run has its own folder ``<runs_dir>/<dataset>/<training settings>/
<variant>/lr<lr>-seed<seed>`` with ``metrics.json`` (validation) and
``test.json``; a re-run reuses finished runs (tables share them: the ablation
tables reuse EGIN and DNN from the main tables) and retrains interrupted
ones. Datasets are converted once into ``<runs_dir>/data``. EGES's stage 1
(graph, walks, skip-gram) does not depend on the CTR learning rate, so it runs
once per dataset and seed (`cached_eges_embeddings`) and every rate reuses it.

``--extra_variants`` adds variants with other constructor arguments (e.g. loss
weights) under new names, trained with the same protocol; ``--report_name``
writes their table beside the main ones without overwriting them.

Usage:
  python -m experiments.paper_tables --table simulator [--seeds 0,1,2]
      [--lrs 3e-4,1e-3,3e-3] [--epochs 2 | --steps N] [--batch_size 256]
      [--max_hist 100] [--users 2000] [--models dnn_cross,egin,...]
      [--runs_dir runs/paper_tables]

Smoke run (a few minutes):
  python -m experiments.paper_tables --table simulator --users 100 --steps 20 \
      --seeds 0,1 --lrs 1e-3,3e-3 --models dnn_cross,egin --runs_dir /tmp/pt_smoke
"""

import dataclasses
import json
import math
import os
import shlex
import shutil
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline.taobao import PAPER_TIME_WINDOW, convert_taobao
from data_pipeline.tf_env import tf
from data_pipeline.trivago import convert_trivago
from data_pipeline.writer import DatasetWriter
from egin_tf import eges
from egin_tf.eges import config as eges_config
from egin_tf.serve import embeddings
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from egin_tf.train import evaluation
from egin_tf.train import offline
from egin_tf.layers.query_item_graph import QueryItemGraph
from egin_tf.models import MODELS
from egin_tf.models.configs import EGESConfig
from egin_tf.models.eges import stage1_config
from experiments import common
from experiments import graph_quality
from experiments import tuning
# The colleague's script: its ablation variants and flags (--users, --epochs,
# --batch_size, --log_every, --verbose) are shared.
from experiments import egin_vs_dnn

TAOBAO_CSV = "taobao_userbehavior_head/UserBehavior_head.csv"
TRIVAGO_CSV = "trivago/trivago_sample.csv.gz"
# RelaImpr's base: the paper's pooling baseline.
BASE_VARIANT = "dnn"
TEST_FILE = "test.json"
GRAPH_FILE = "graph_recall.json"
VALID_SPLIT = "valid"
TRAIN_CONFIG_KEY = "train_config"

# variant name -> (registered model, constructor arguments).
VARIANTS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    **{name: (name, {}) for name in MODELS}, **egin_vs_dnn.VARIANTS}
MAIN_VARIANTS = ("dnn", "dnn_cross", "din", "bst", "eges", "egin")
# The paper's Table 2 has no EGES (its Table 3 has).
TAOBAO_VARIANTS = ("dnn", "dnn_cross", "din", "bst", "egin")
# The graph's share (w/o graph: no item, query or category graph), the label
# leak of one graph table, the category graph's share.
ABLATION_VARIANTS = ("dnn", "egin", "egin_no_graph", "egin_one_fold",
                     "egin_no_category_graph")
# Taobao's earlier tables used another split, so the paper's EGIN is rerun there.
TAOBAO_ABLATION_VARIANTS = ABLATION_VARIANTS + ("egin_no_match", "egin_paper")
# The fair tables (issue 24): every model, EGIN without its graph and the
# paper's EGIN (one leaking table, no category graph), all under the table's one
# --match_features setting and the same tuning budget (`tuning`).
FAIR_VARIANTS = ("dnn", "dnn_cross", "din", "bst", "eges", "egin", "egin_no_graph",
                 "egin_paper")
# In the fair tables, ablation -> the model whose chosen trial it reuses: an
# ablation changes one part of EGIN and keeps its tuned settings, so its row
# measures the part, not a second tuning budget (ablations are not rivals).
FAIR_ABLATIONS = {"egin_no_graph": "egin", "egin_paper": "egin"}
# table -> (dataset, variants, title)
TABLES: Dict[str, Tuple[str, Tuple[str, ...], str]] = {
    "fair_taobao": ("taobao", FAIR_VARIANTS,
                    "Fair table, Taobao head, uniform negatives (the paper's)"),
    "fair_taobao_category": ("taobao_category", FAIR_VARIANTS,
                             "Fair table, Taobao head, category negatives"),
    "fair_trivago": ("trivago", FAIR_VARIANTS, "Fair table, trivago sample"),
    "fair_simulator": ("simulator", FAIR_VARIANTS, "Fair table, simulator"),
    "taobao": ("taobao", TAOBAO_VARIANTS, "Table 2 analogue (Taobao UserBehavior head)"),
    "trivago": ("trivago", MAIN_VARIANTS, "Table 3 analogue (trivago sample)"),
    "simulator": ("simulator", MAIN_VARIANTS, "Table 3 analogue (simulator)"),
    "ablation_trivago": ("trivago", ABLATION_VARIANTS,
                         "Table 4 analogue, ablations (trivago sample)"),
    "ablation_simulator": ("simulator", ABLATION_VARIANTS,
                           "Table 4 analogue, ablations (simulator)"),
    "ablation_taobao": ("taobao", TAOBAO_ABLATION_VARIANTS,
                        "Table 4 analogue, ablations (Taobao UserBehavior head)"),
}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags; only when run as a script, so that importing
  this module (tests, other scripts) never collides with other absl flags."""
  egin_vs_dnn.define_flags()
  flags.DEFINE_enum("table", None, list(TABLES), "The table to make.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of training and models.")
  flags.DEFINE_list("lrs", ["3e-4", "1e-3", "3e-3"],
                    "Adam learning rates swept (first seed) on the validation split.")
  flags.DEFINE_float("valid_fraction", 0.1, "Latest share of the train split (by "
                     "impression time) held out for choosing the learning rate.")
  flags.DEFINE_integer("steps", None, "Training steps per run (overrides --epochs).")
  flags.DEFINE_integer("max_hist", 100, "L = M = S: history lengths kept.")
  flags.DEFINE_list("models", None, "Subset of the table's variants, of "
                    f"{sorted(VARIANTS)}.")
  flags.DEFINE_string("runs_dir", os.path.join(common.REPO_ROOT, "runs", "paper_tables"),
                      "Folder of converted data, runs and tables.")
  flags.DEFINE_string("data_dir", common.SHARED_DATA_DIR, "The shared samples' folder.")
  flags.DEFINE_string("report_name", None, "Name of the written <runs_dir>/<name>.md "
                      "(default: the table's name).")
  flags.DEFINE_boolean("match_features", None, "Every variant's match_features "
                       "(the target-match block), the same for all; unset: each "
                       "variant's own (the model default unless the variant sets it).")
  flags.DEFINE_boolean("tune_arch", True, "Sweep one architecture knob per model "
                       "(tuning.ARCH_KNOBS) with the rates; else the rates alone.")
  flags.DEFINE_string("extra_variants", None, "JSON object of more variants, "
                      'name -> [model, {constructor kwargs}], e.g. \'{"egin_a0.1": '
                      '["egin", {"alpha": 0.1}]}\'; list them in --models.')


# ---------------------------------------------------------------- formulas ----

def rela_impr(auc: float, base_auc: float) -> float:
  """RelaImpr of the paper: (AUC - 0.5) / (AUC(base) - 0.5) - 1."""
  if base_auc <= 0.5:
    raise ValueError(f"RelaImpr needs a base AUC above 0.5, got {base_auc}")
  return (auc - 0.5) / (base_auc - 0.5) - 1.0


# ------------------------------------------------------- validation split ----

def validation_start(times: Sequence[int], fraction: float) -> int:
  """The earliest time of the validation split: the latest ``fraction`` of
  impressions by time; impressions at that same second all go to validation.

  Raises:
    ValueError: fraction outside (0, 1), or no impression would stay in train.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"valid_fraction must be in (0, 1), got {fraction}")
  ordered = sorted(times)
  if not ordered:
    raise ValueError("no impressions to split")
  start = ordered[len(ordered) - max(1, math.ceil(fraction * len(ordered)))]
  if start <= ordered[0]:
    raise ValueError(
        f"cannot hold out the latest {fraction:g} by time: every impression is "
        f"at or after {start}, so none would stay in train")
  return start


def split_by_time(train_pattern: str, out_dir: str, valid_fraction: float,
                  num_shards: int = 2) -> schema_lib.DatasetSchema:
  """Writes the records of ``train_pattern`` into a new dataset: "train" (before
  `validation_start`) and "valid" (the latest ``valid_fraction`` by time)."""
  files = reader.match_files(train_pattern)
  num_cats = schema_lib.schema_for_files(files).num_cats
  records = tf.data.TFRecordDataset(files)
  times = []
  for raw in records.as_numpy_iterator():
    times.append(tf.train.Example.FromString(raw).features.feature[
        schema_lib.TIME].int64_list.value[0])
  start = validation_start(times, valid_fraction)
  with DatasetWriter(out_dir, num_cats=num_cats, num_shards=num_shards) as writer:
    for raw in records.as_numpy_iterator():
      imp = schema_lib.from_example(tf.train.Example.FromString(raw), num_cats)
      writer.write_serialized(VALID_SPLIT if imp.time >= start else "train", imp,
                              raw)
    return writer.commit(
        source=f"{train_pattern} split by time: {VALID_SPLIT} = impressions at or "
        f"after {start} (latest {valid_fraction:g})")


# ------------------------------------------------------------------- data ----

@dataclasses.dataclass(frozen=True)
class Split:
  """File patterns of one dataset's train (minus validation), valid and test."""
  name: str
  train: str
  valid: str
  test: str


def _convert(dataset: str, out_dir: str) -> None:
  if dataset.startswith("taobao"):
    sampling = {"taobao": "uniform", "taobao_category": "category"}[dataset]
    convert_taobao(os.path.join(FLAGS.data_dir, TAOBAO_CSV), out_dir,
                   split="last_day", time_window=PAPER_TIME_WINDOW,
                   utc_offset_hours=8, negative_sampling=sampling)
  elif dataset == "trivago":
    convert_trivago(os.path.join(FLAGS.data_dir, TRIVAGO_CSV), out_dir)
  else:
    simulator.generate(simulator.SimulatorConfig(num_users=FLAGS.users, seed=0),
                       out_dir)


def prepare_split(dataset: str) -> Split:
  """Converts (once) a dataset into <runs_dir>/data and cuts its validation."""
  # Taobao's negatives now exclude only what a user touched up to the impression
  # (issue 24), so its folder names the sampling.
  name = {"simulator": f"simulator_u{FLAGS.users}",
          "taobao": "taobao_last_day_uniform",
          "taobao_category": "taobao_last_day_category"}.get(dataset, dataset)
  data = os.path.join(FLAGS.runs_dir, "data", name)
  if not os.path.exists(os.path.join(data, schema_lib.SCHEMA_FILE)):
    print(f"converting {dataset} into {data}")
    _convert(dataset, data)
  split_dir = f"{data}_valid{FLAGS.valid_fraction:g}"
  if not os.path.exists(os.path.join(split_dir, schema_lib.SCHEMA_FILE)):
    print(f"holding out the latest {FLAGS.valid_fraction:g} of train into "
          f"{split_dir}")
    split_by_time(os.path.join(data, "train-*"), split_dir, FLAGS.valid_fraction)
  return Split(name, os.path.join(split_dir, "train-*"),
               os.path.join(split_dir, f"{VALID_SPLIT}-*"),
               os.path.join(data, "test-*"))


# ----------------------------------------------------------------- runner ----

def settings_tag() -> str:
  """The training settings shared by all runs of a table (part of run paths)."""
  length = f"s{FLAGS.steps}" if FLAGS.steps else f"e{FLAGS.epochs}"
  match = "" if FLAGS.match_features is None else f"_m{int(FLAGS.match_features)}"
  return f"{length}_b{FLAGS.batch_size}_h{FLAGS.max_hist}{match}"


def table_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
  """A variant's constructor arguments under the table's --match_features."""
  if FLAGS.match_features is None:
    return dict(kwargs)
  return {**kwargs, "match_features": FLAGS.match_features}


def cached_eges_embeddings(
    train_pattern: str, cache_dir: str, stage1: eges.EgesPretrainConfig,
    train_fn: Callable[[str, str, eges.EgesPretrainConfig], str] = eges.train_eges
) -> str:
  """EGES's stage 1 (graph, walks, skip-gram) once per dataset, seed, dim and
  leak guard.

  Stage 1 does not depend on the CTR learning rate, so every rate of the sweep
  (and every table) reuses the vectors of its seed instead of re-running the
  walks and skip-gram (minutes on trivago's 83k items). Returns the ``.npz``
  path, written by ``train_fn`` (atomically: `eges.save_embeddings`).
  """
  guards = {eges_config.OUT_OF_FOLD: f"_oof{stage1.folds}",
            eges_config.TIME_CUT: f"_cut{stage1.time_cut:g}"}
  guard = guards.get(stage1.leak_guard, "")
  path = os.path.join(cache_dir, f"eges_stage1_d{stage1.dim}_seed{stage1.seed}"
                      f"{guard}.npz")
  if not os.path.exists(path):
    print(f"EGES stage 1 (seed {stage1.seed}, d = {stage1.dim}, "
          f"{stage1.leak_guard}) -> {path}")
    train_fn(train_pattern, path, stage1)
  return path


def _train_run(split: Split, variant: str, model: str, kwargs: Dict[str, Any],
               trial: tuning.Trial, seed: int) -> Tuple[str, Dict[str, Any]]:
  """Trains one run (or reuses a finished one); its metrics on validation."""
  run_dir = os.path.join(FLAGS.runs_dir, split.name, settings_tag(), variant,
                         f"{trial.tag()}-seed{seed}")
  lr = trial.lr
  kwargs = {**table_kwargs(kwargs), **trial.kwargs()}
  metrics_path = os.path.join(run_dir, model_dir_lib.METRICS_FILE)
  if os.path.exists(metrics_path):
    with open(metrics_path, encoding="utf-8") as f:
      return run_dir, json.load(f)
  if os.path.exists(run_dir):
    shutil.rmtree(run_dir)  # interrupted: its checkpoints are partial
  # A variant's "train_config" entry overrides TrainConfig fields (e.g. the
  # graph optimizer's rate); the rest are model constructor arguments.
  train_overrides = kwargs.get(TRAIN_CONFIG_KEY, {})
  kwargs = {k: v for k, v in kwargs.items() if k != TRAIN_CONFIG_KEY}
  if model == "egin":
    kwargs = dict(kwargs, seed=seed)
  if model == "eges" and "eges_embeddings_path" not in kwargs:
    stage1 = stage1_config(EGESConfig.from_dict(kwargs), seed)
    kwargs = dict(kwargs, eges_embeddings_path=cached_eges_embeddings(
        split.train, os.path.join(FLAGS.runs_dir, split.name), stage1))
  config = train_config.TrainConfig(
      model=model, model_kwargs=kwargs, batch_size=FLAGS.batch_size,
      epochs=FLAGS.epochs, steps=FLAGS.steps, learning_rate=lr,
      max_clicks=FLAGS.max_hist, max_queries=FLAGS.max_hist,
      max_seeds=FLAGS.max_hist, seed=seed, log_every=FLAGS.log_every,
      **train_overrides)
  print(f"\n== {split.name} {variant} lr={lr:g} seed={seed} -> {run_dir}")
  result = offline.train(split.train, run_dir, config, eval_pattern=split.valid,
                         verbose=FLAGS.verbose)
  return run_dir, result


def _test_report(run_dir: str, test_pattern: str) -> Dict[str, Any]:
  path = os.path.join(run_dir, TEST_FILE)
  if not os.path.exists(path):
    report = evaluation.evaluate(run_dir, test_pattern)["eval"]
    with open(path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def held_out_edges(split: Split) -> Tuple[Dict[str, Any], Any]:
  """The test period's new i2i / q2i edges (default edge rules) and every item id
  of train and test, computed once per dataset and history length."""
  key = (split.name, FLAGS.max_hist)
  if key not in _EDGE_CACHE:
    lengths = reader.SequenceLengths(FLAGS.max_hist, FLAGS.max_hist,
                                     FLAGS.max_hist)
    edges = graph_quality.held_out_edges(split.train, split.test,
                                         QueryItemGraph(), lengths)
    items = np.union1d(
        embeddings.seen_ids(DataSplit.resolve(split.train, "train", lengths))["items"].ids,
        embeddings.seen_ids(DataSplit.resolve(split.test, "test", lengths))["items"].ids)
    _EDGE_CACHE[key] = (edges, items)
  return _EDGE_CACHE[key]


_EDGE_CACHE: Dict[Tuple[str, int], Tuple[Dict[str, Any], Any]] = {}


def _graph_report(run_dir: str, split: Split) -> Dict[str, Any]:
  """Held-out edge recall@10 of a run's item and query tables (cached)."""
  path = os.path.join(run_dir, GRAPH_FILE)
  if not os.path.exists(path):
    edges, items = held_out_edges(split)
    model = model_dir_lib.load_model(run_dir, train_config.TrainConfig).model
    report = graph_quality.graph_recall(model, edges, items, k=10)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def best_trial(split: Split, variant: str, spec: Tuple[str, Dict[str, Any]],
               lrs: Sequence[float], seed: int) -> Tuple[tuning.Trial, float, int]:
  """The tuning sweep on validation (``seed``: every rate, crossed with the
  model's knob, `tuning.trials`): the best trial, its valid AUC, the trials."""
  model, kwargs = spec
  grid = tuning.trials(model, lrs, FLAGS.tune_arch)
  valid_auc = {trial: _train_run(split, variant, model, kwargs, trial, seed)[1]
               ["eval"]["auc"] for trial in grid}
  best = max(grid, key=lambda trial: valid_auc[trial])  # ties: the first listed
  return best, valid_auc[best], len(grid)


def run_variant(split: Split, variant: str, spec: Tuple[str, Dict[str, Any]],
                lrs: Sequence[float], seeds: Sequence[int],
                leader: Optional[str] = None) -> Dict[str, Any]:
  """The variant's best trial (`best_trial`; with a ``leader``, the leader's:
  the variant is its ablation and has no sweep of its own), then every seed at
  that trial scored on test. Returns the per-seed results and the choice."""
  model, kwargs = spec
  if leader is None:
    best, best_auc, trials = best_trial(split, variant, spec, lrs, seeds[0])
  else:
    best, _, _ = best_trial(split, leader, VARIANTS[leader], lrs, seeds[0])
    best_auc = _train_run(split, variant, model, kwargs, best, seeds[0])[1][
        "eval"]["auc"]
    trials = 0
  runs = []
  for seed in seeds:
    run_dir, result = _train_run(split, variant, model, kwargs, best, seed)
    runs.append({"run_dir": run_dir, "test": _test_report(run_dir, split.test),
                 "graph": _graph_report(run_dir, split),
                 "examples_per_second": result["examples_per_second"],
                 "steps": result["steps"]})
  choice = best.label() if leader is None else f"{leader}'s: {best.label()}"
  return {"variant": variant, "best_lr": best.lr, "choice": choice,
          "best_valid_auc": best_auc, "trials": trials, "runs": runs}


def run_table(split: Split, variants: Dict[str, Tuple[str, Dict[str, Any]]],
              lrs: Sequence[float], seeds: Sequence[int],
              leaders: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
  """Every variant's `run_variant`; ``leaders``: ablation -> the variant whose
  chosen trial it reuses."""
  leaders = leaders or {}
  return [run_variant(split, name, spec, lrs, seeds, leaders.get(name))
          for name, spec in variants.items()]


# ------------------------------------------------------------------ table ----

def markdown_table(results: List[Dict[str, Any]],
                   oracle: Optional[Dict[str, Any]] = None,
                   reference: Optional[str] = None) -> str:
  """One row per variant; ``reference``: also "AUC - <reference>" (points)."""
  mean_auc = {r["variant"]: common.mean_std([x["test"]["auc"] for x in r["runs"]])[0]
              for r in results}
  base = mean_auc.get(BASE_VARIANT)
  header = ["model", "chosen (valid AUC)", "test AUC", "gAUC", "logloss",
            f"RelaImpr vs {BASE_VARIANT}"]
  if reference:
    header.append(f"AUC - {reference}")
  header += ["i2i / q2i recall@10", "train ex/s", "steps", "seeds"]

  def relative(auc: float) -> List[str]:
    cells = ["-" if base is None else f"{100 * rela_impr(auc, base):+.2f}%"]
    if reference:
      ref = mean_auc.get(reference)
      cells.append("-" if ref is None else f"{auc - ref:+.4f}")
    return cells

  rows = [_variant_cells(r) + relative(mean_auc[r["variant"]]) + _run_cells(r)
          for r in results]
  if oracle:
    fmt = common.format_number
    rows.append(["oracle (true p)", "-", fmt(oracle["test_auc"]),
                 fmt(oracle.get("test_gauc")), fmt(oracle.get("test_logloss"))] +
                relative(oracle["test_auc"]) + ["-", "-", "-", "-"])
  return common.markdown_table(header, rows, left_columns=2)


def _variant_cells(result: Dict[str, Any]) -> List[str]:
  """A variant's name, chosen rate and test metrics over seeds (mean ± std)."""
  tests = [x["test"] for x in result["runs"]]
  return [result["variant"],
          f"{result['choice']} ({result['best_valid_auc']:.4f})"] + [
              common.mean_pm_std([t[key] for t in tests])
              for key in ("auc", "gauc", "logloss")]


def _run_cells(result: Dict[str, Any]) -> List[str]:
  """A variant's graph recall, speed, steps and number of seeds."""
  runs = result["runs"]
  return [_recall_cell([x.get("graph") for x in runs]),
          f"{np.mean([x['examples_per_second'] for x in runs]):,.0f}",
          str(runs[0]["steps"]), str(len(runs))]


def _recall_cell(reports: List[Optional[Dict[str, Any]]]) -> str:
  """Mean i2i and q2i held-out recall@10 over seeds, "-" where not measured."""
  def mean(key):
    values = [r[key] for r in reports if r and not math.isnan(r.get(key, math.nan))]
    return f"{np.mean(values):.4f}" if values else "-"
  return f"{mean('i2i_recall@10')} / {mean('q2i_recall@10')}"


# The fair tables' rivals of EGIN (its ablations are not rivals).
BASELINES = ("dnn", "dnn_cross", "din", "bst", "eges")


def difference_text(a: Sequence[float], b: Sequence[float]) -> str:
  """mean(a) - mean(b) in AUC points and in seed standard deviations (the
  root mean square of the two sample stds), "inside the noise" under 2."""
  (mean_a, std_a), (mean_b, std_b) = common.mean_std(a), common.mean_std(b)
  difference = mean_a - mean_b
  noise = math.sqrt((std_a ** 2 + std_b ** 2) / 2)
  if math.isnan(noise) or noise == 0:
    return f"{difference:+.4f}"
  sigmas = difference / noise
  verdict = "inside the noise" if abs(sigmas) < 2 else "outside the noise"
  return f"{difference:+.4f} ({sigmas:+.1f} std, {verdict})"


def fair_summary(results: List[Dict[str, Any]]) -> str:
  """EGIN's margin over the best baseline and the graph's share (EGIN minus EGIN
  w/o graph), in AUC points and seed stds; "" without EGIN or anything to
  compare it with."""
  aucs = {r["variant"]: [x["test"]["auc"] for x in r["runs"]] for r in results}
  if "egin" not in aucs:
    return ""
  lines = []
  rivals = [v for v in BASELINES if v in aucs]
  if rivals:
    best = max(rivals, key=lambda v: np.mean(aucs[v]))
    lines.append(f"EGIN - best baseline ({best}): "
                 f"{difference_text(aucs['egin'], aucs[best])}")
  if "egin_no_graph" in aucs:
    lines.append("graph's share (EGIN - EGIN w/o graph): "
                 f"{difference_text(aucs['egin'], aucs['egin_no_graph'])}")
  if "egin_paper" in aucs:
    lines.append("EGIN - the paper's EGIN: "
                 f"{difference_text(aucs['egin'], aucs['egin_paper'])}")
  return "Test AUC differences: " + "; ".join(lines) + "." if lines else ""


def write_report(name: str, title: str, split: Split, table: str) -> str:
  """Prints the table with its command, date and scale; writes <name>.md."""
  command = shlex.join(common.command_line())
  date = common.utc_date()
  schema = schema_lib.schema_for_files(reader.match_files(split.train))
  test = schema_lib.schema_for_files(reader.match_files(split.test))
  counts = ", ".join(f"{s} {v['impressions']:,}" for s, v in sorted(
      schema.splits.items())) + f", test {test.splits['test']['impressions']:,}"
  length = f"{FLAGS.steps} steps" if FLAGS.steps else f"{FLAGS.epochs} epochs"
  text = (f"### {title}\n\nCommand: `{command}`  \nDate: {date}  \n"
          f"Data: {split.name} ({counts} impressions); {length} of "
          f"{FLAGS.batch_size}, d = 10, L = M = S = {FLAGS.max_hist}; lrs "
          f"{','.join(FLAGS.lrs)}{_knob_text()} swept on valid with seed "
          f"{FLAGS.seeds[0]}; seeds {','.join(FLAGS.seeds)}; match_features "
          f"{_match_text()}\n\n{table}\n")
  path = os.path.join(FLAGS.runs_dir, f"{name}.md")
  os.makedirs(FLAGS.runs_dir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  print("\n" + text + f"\nwritten to {path}")
  return path


def _knob_text() -> str:
  if not FLAGS.tune_arch:
    return ""
  return " x one knob per model (" + "; ".join(
      f"{model} {knob} {values[0]} / {values[1]}"
      for model, (knob, values) in tuning.ARCH_KNOBS.items()) + ")"


def _match_text() -> str:
  if FLAGS.match_features is None:
    return "as each variant sets it"
  return "on for every model" if FLAGS.match_features else "off for every model"


def parse_numbers() -> Tuple[List[float], List[int]]:
  try:
    lrs = [float(x) for x in FLAGS.lrs]
    seeds = [int(x) for x in FLAGS.seeds]
  except ValueError as e:
    raise app.UsageError(f"--lrs must be floats and --seeds integers: {e}")
  if not lrs or not seeds:
    raise app.UsageError("--lrs and --seeds need at least one value each")
  return lrs, seeds


def parse_extra_variants(text: Optional[str]) -> Dict[str, Tuple[str, Dict]]:
  """``--extra_variants``: JSON name -> [registered model, kwargs].

  Raises:
    ValueError: not JSON, a name that shadows a built-in variant, an unknown
      model or kwargs that are not an object.
  """
  if not text:
    return {}
  try:
    parsed = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"--extra_variants is not JSON: {e}") from None
  if not isinstance(parsed, dict):
    raise ValueError("--extra_variants must be a JSON object name -> [model, kwargs]")
  variants = {}
  for name, spec in parsed.items():
    if name in VARIANTS:
      raise ValueError(f"--extra_variants: {name!r} is a built-in variant; "
                       "give the new one another name")
    if (not isinstance(spec, list) or len(spec) != 2 or spec[0] not in MODELS or
        not isinstance(spec[1], dict)):
      raise ValueError(f"--extra_variants: {name!r} must be [model, {{kwargs}}] "
                       f"with model one of {sorted(MODELS)}, got {spec!r}")
    variants[name] = (spec[0], spec[1])
  return variants


def chosen_variants(default: Sequence[str]) -> Dict[str, Tuple[str, Dict]]:
  try:
    known = {**VARIANTS, **parse_extra_variants(FLAGS.extra_variants)}
  except ValueError as e:
    raise app.UsageError(str(e))
  names = FLAGS.models or list(default)
  unknown = [n for n in names if n not in known]
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; choose from "
                         f"{sorted(known)}")
  return {n: known[n] for n in names}


def main(argv):
  del argv
  if FLAGS.table is None:
    raise app.UsageError(f"--table is required, one of {list(TABLES)}")
  lrs, seeds = parse_numbers()
  dataset, default_variants, title = TABLES[FLAGS.table]
  variants = chosen_variants(default_variants)
  split = prepare_split(dataset)
  leaders = FAIR_ABLATIONS if FLAGS.table.startswith("fair_") else None
  results = run_table(split, variants, lrs, seeds, leaders)
  reference = "egin" if FLAGS.table.startswith("ablation") else None
  table = markdown_table(results, DataSplit.resolve(split.test, "test").oracle, reference)
  summary = fair_summary(results) if FLAGS.table.startswith("fair_") else ""
  if summary:
    table += "\n" + summary + "\n"
  write_report(FLAGS.report_name or FLAGS.table, title, split, table)


if __name__ == "__main__":
  define_flags()
  app.run(main)
