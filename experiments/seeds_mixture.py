"""EGIN's AUC against the share of the seeds sequence in the i2i input (paper, Figure 3).

EGIN builds its i2i edges from the seeds sequence (category-filtered clicks) in a
``seeds_fraction`` of the rows and from the click sequence in the rest. This
trains EGIN on the simulator (the only dataset here with seeds) for each
``--fractions`` value with the `paper_tables` protocol (learning rate chosen on
validation, every seed at the best rate, exact test AUC), prints and writes the
table, and plots test AUC mean +- std against the fraction as a PNG. The
fraction 0 is plain EGIN, so it reuses the tables' EGIN runs.

Usage:
  python -m experiments.seeds_mixture [--fractions 0,0.2,0.5,0.8,1.0] \
      [paper_tables flags: --seeds --lrs --epochs/--steps --users --runs_dir ...]
"""

import os
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from experiments import common
from experiments import paper_tables

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags; only when run as a script, so that importing
  this module (tests, other scripts) never collides with other absl flags."""
  paper_tables.define_flags()
  flags.DEFINE_list("fractions", ["0", "0.2", "0.5", "0.8", "1.0"],
                    "Shares of rows whose i2i edges come from the seeds sequence.")


def fraction_variants(fractions: Sequence[float]
                      ) -> Dict[str, Tuple[str, Dict[str, float]]]:
  """Variant name -> ("egin", kwargs); the fraction 0 is plain "egin"."""
  return {("egin" if f == 0 else f"egin_seeds{f:g}"):
          ("egin", {} if f == 0 else {"seeds_fraction": f}) for f in fractions}


def plot(path: str, fractions: Sequence[float], aucs: List[List[float]],
         oracle_auc: float) -> None:
  """Figure 3: test AUC (mean ± std over seeds) against the seeds share."""
  plt = common.pyplot()
  means = [common.mean_std(a)[0] for a in aucs]
  stds = [0.0 if len(a) < 2 else common.mean_std(a)[1] for a in aucs]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label="EGIN")
  ax.set_xlabel("share of the seeds sequence in the i2i input")
  ax.set_ylabel("test AUC (mean ± std over seeds)")
  ax.set_title(f"simulator (oracle AUC {oracle_auc:.4f})", fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  lrs, seeds = paper_tables.parse_numbers()
  try:
    fractions = [float(f) for f in FLAGS.fractions]
  except ValueError as e:
    raise app.UsageError(f"--fractions must be numbers: {e}")
  if any(not 0 <= f <= 1 for f in fractions):
    raise app.UsageError(f"--fractions must be in [0, 1], got {fractions}")
  split = paper_tables.prepare_split("simulator")
  results = paper_tables.run_table(split, fraction_variants(fractions), lrs, seeds)
  oracle = DataSplit.resolve(split.test, "test").oracle
  table = paper_tables.markdown_table(results, oracle, reference="egin")
  png = os.path.join(FLAGS.runs_dir, f"figure3_{split.name}.png")
  os.makedirs(FLAGS.runs_dir, exist_ok=True)
  plot(png, fractions, [[x["test"]["auc"] for x in r["runs"]] for r in results],
       oracle["test_auc"] if oracle else float("nan"))
  paper_tables.write_report(
      f"figure3_{split.name}", "Figure 3 analogue, seeds share of the i2i input "
      "(simulator)", split, table + f"\n\nPlot: `{png}`")


if __name__ == "__main__":
  define_flags()
  app.run(main)
