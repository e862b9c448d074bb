"""EGIN vs DNN and EGIN's ablations (paper, Tables 3-4) on one simulated dataset.

Every variant trains with `offline.train` on the same data, batch size, number of
steps and seed, then is scored exactly on the test split beside the simulator's
oracle (the AUC of the true click probabilities) and position-only AUC.

Variants: dnn, egin, egin_no_graph (``use_graph=False``), egin_no_query
(``use_query=False``), egin_no_pos_emb (``positional=False``), egin_soft_binning
(``binning="soft"``).

The "train" loss columns are the final train losses: each loss's mean over the
LAST progress chunk (at most ``--log_every`` steps), from the Keras history that
`offline.train` returns. Train examples/s is over the whole ``fit`` wall time
(input pipeline, tracing, checkpoints and logs included, all on the same cores).

Usage:
  python -m experiments.egin_vs_dnn [--users 2000] [--seed 0] [--epochs 2]
      [--batch_size 256] [--out runs/egin_vs_dnn] [--variants dnn,egin,...]
      [--data DATASET_DIR] [--results_md FILE] [--overwrite]

Smoke run (about a minute):
  python -m experiments.egin_vs_dnn --users 100 --epochs 1 \
      --out /tmp/egin_vs_dnn_smoke --overwrite
"""

import os
import shutil
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from egin_tf.train import config as train_config
from egin_tf.train import offline
from experiments import common

# name -> (registered model, constructor arguments); the paper's ablations.
VARIANTS: Dict[str, tuple] = {
    "dnn": ("dnn", {}),
    "egin": ("egin", {}),
    "egin_no_graph": ("egin", {"use_graph": False}),
    "egin_no_query": ("egin", {"use_query": False}),
    "egin_no_pos_emb": ("egin", {"positional": False}),
    "egin_soft_binning": ("egin", {"binning": "soft"}),
    # The paper's EGIN: one graph table (no out-of-fold), no match features.
    "egin_paper": ("egin", {"graph_folds": 1, "category_graph": False,
                            "match_features": False}),
    "egin_no_category_graph": ("egin", {"category_graph": False}),
    "egin_one_fold": ("egin", {"graph_folds": 1}),
    "egin_no_match": ("egin", {"match_features": False}),
}
GRAPH_LOSSES = ("i2i", "q2q", "q2i")

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags; only when run as a script, so that importing
  this module (tests, other scripts) never collides with other absl flags."""
  flags.DEFINE_integer("users", 2000, "Users to simulate.")
  flags.DEFINE_integer("seed", 0, "Seed of the simulator, training and models.")
  flags.DEFINE_integer("epochs", 2, "Passes over the training split.")
  flags.DEFINE_integer("batch_size", 256, "Examples per step.")
  flags.DEFINE_integer("log_every", 200, "Steps per progress chunk.")
  flags.DEFINE_string("out", os.path.join(common.REPO_ROOT, "runs", "egin_vs_dnn"),
                      "Folder for the dataset, one model dir per variant, results.md.")
  flags.DEFINE_list("variants", list(VARIANTS), f"Subset of {list(VARIANTS)}.")
  flags.DEFINE_string("data", None, "Existing simulated dataset folder (with "
                      "train-*, test-*, oracle.json); default: <out>/data.")
  flags.DEFINE_string("results_md", None, "Markdown table; default <out>/results.md.")
  flags.DEFINE_bool("overwrite", False, "Replace existing variant model dirs.")
  flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (2 = one line per chunk).")


def dataset_dir() -> str:
  """The dataset folder: --data, or <out>/data simulated (reused if it matches)."""
  if FLAGS.data:
    return FLAGS.data
  path = os.path.join(FLAGS.out, "data")
  try:
    common.simulated_dataset(path, FLAGS.users, FLAGS.seed,
                             f"--users {FLAGS.users} --seed {FLAGS.seed}")
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  return path


def markdown_table(rows: List[Dict[str, Any]],
                   oracle: Optional[Dict[str, Any]]) -> str:
  """One row per variant, then the oracle and position-only references (if any)."""
  fmt = common.format_number
  base = next((r["eval"]["auc"] for r in rows if r["variant"] == "dnn"), None)
  header = (["variant", "test AUC", "AUC - DNN", "gAUC", "logloss",
             "train ctr_loss"] + [f"train {n}" for n in GRAPH_LOSSES] +
            ["train ex/s", "steps"])
  body = []
  for r in rows:
    e, losses = r["eval"], r["train_losses"]
    delta = None if base is None else e["auc"] - base
    body.append([r["variant"], fmt(e["auc"]),
                 "-" if delta is None else f"{delta:+.4f}", fmt(e["gauc"]),
                 fmt(e["logloss"]), fmt(losses.get("ctr_loss"))] +
                [fmt(losses.get(f"{n}_loss")) for n in GRAPH_LOSSES] +
                [f"{r['examples_per_second']:,.0f}", str(r["steps"])])
  if oracle:
    blank = ["-"] * (len(header) - 5)
    body.append(["oracle (true p)", fmt(oracle["test_auc"]),
                 "-" if base is None else f"{oracle['test_auc'] - base:+.4f}",
                 fmt(oracle["test_gauc"]), fmt(oracle["test_logloss"])] + blank)
    body.append(["position only", fmt(oracle["test_position_auc"]), "-", "-", "-"] +
                blank)
  return common.markdown_table(header, body)


def train_variant(variant: str, train_pattern: str, test_pattern: str
                  ) -> Dict[str, Any]:
  """Trains ``variant`` into <out>/<variant>; `offline.train`'s result with its
  ``variant`` and ``train_losses`` (each loss of the last progress chunk)."""
  model, kwargs = VARIANTS[variant]
  if model == "egin":
    kwargs = dict(kwargs, seed=FLAGS.seed)
  config = train_config.TrainConfig(model=model, model_kwargs=kwargs,
                                    batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                                    seed=FLAGS.seed, log_every=FLAGS.log_every)
  model_dir = os.path.join(FLAGS.out, variant)
  print(f"\n== {variant}: {model} {kwargs}")
  result = offline.train(train_pattern, model_dir, config,
                         eval_pattern=test_pattern, verbose=FLAGS.verbose)
  # Each metric's mean over the last progress chunk: the final train losses.
  result.update(variant=variant, train_losses={
      name: values[-1] for name, values in result["history"].items()})
  return result


def main(argv):
  del argv
  unknown = [v for v in FLAGS.variants if v not in VARIANTS]
  if unknown or not FLAGS.variants:
    raise app.UsageError(f"--variants: unknown {unknown}; choose from "
                         f"{list(VARIANTS)}")
  for variant in FLAGS.variants:
    model_dir = os.path.join(FLAGS.out, variant)
    if os.path.exists(model_dir):
      if not FLAGS.overwrite:
        raise app.UsageError(f"{model_dir} exists; pass --overwrite to replace it")
      shutil.rmtree(model_dir)
  data = dataset_dir()
  train_pattern = os.path.join(data, "train-*")
  test_pattern = os.path.join(data, "test-*")

  rows = [train_variant(variant, train_pattern, test_pattern)
          for variant in FLAGS.variants]

  oracle = DataSplit.resolve(test_pattern, "test").oracle
  table = markdown_table(rows, oracle)
  command = " ".join(common.command_line())
  date = common.utc_date()
  text = (f"Command: `{command}`  \nDate: {date}  \nData: {data}, "
          f"{rows[0]['steps']} steps of {FLAGS.batch_size}\n\n{table}\n")
  results_md = FLAGS.results_md or os.path.join(FLAGS.out, "results.md")
  os.makedirs(os.path.dirname(os.path.abspath(results_md)), exist_ok=True)
  with open(results_md, "w", encoding="utf-8") as f:
    f.write(text)
  print("\n" + text + f"\nwritten to {results_md}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
