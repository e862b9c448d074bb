"""What several experiment scripts share: paths, number formats, Markdown tables,
the recorded command line and the simulated dataset they train on."""

import dataclasses
import datetime
import json
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared real-data samples, beside the repository.
SHARED_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))


# ---------------------------------------------------------------- numbers ----

def format_number(x: Optional[float], digits: int = 4) -> str:
  """``x`` with ``digits`` decimals; "-" for a missing (None or NaN) value."""
  return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (n - 1; NaN for a single value)."""
  x = np.asarray(values, np.float64)
  return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan


def mean_pm_std(values: Sequence[float], digits: int = 4) -> str:
  """"mean ± std" of ``values``; the mean alone for a single value."""
  mean, std = mean_std(values)
  return format_number(mean, digits) + (
      "" if math.isnan(std) else f" ± {std:.{digits}f}")


# ----------------------------------------------------------------- tables ----

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   left_columns: int = 1) -> str:
  """A Markdown table; the first ``left_columns`` columns are left-aligned, the
  rest (the numbers) right-aligned."""
  right = max(0, len(header) - left_columns)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] * (len(header) - right) + ["---:"] * right) + "|"]
  lines += ["| " + " | ".join(cells) + " |" for cells in rows]
  return "\n".join(lines)


# ----------------------------------------------------------------- report ----

def command_line() -> List[str]:
  """The command that runs this process's experiment (``python -m experiments.<x>``,
  its module named by ``sys.argv[0]``) with the same flags."""
  script = os.path.splitext(os.path.basename(sys.argv[0]))[0]
  return ["python", "-m", f"experiments.{script}"] + sys.argv[1:]


def utc_date() -> str:
  """Now, as the reports print it (minutes, UTC)."""
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend (imported only to plot)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


# ------------------------------------------------------------------- data ----

def simulated_dataset(data_dir: str, users: int, seed: int,
                      wanted: str) -> Dict[str, Any]:
  """Simulates ``users`` (``seed``) into ``data_dir``, or reuses what is there.

  Args:
    wanted: how the error names the requested dataset (e.g. the flags).

  Returns:
    The simulator config of the dataset, as its ``oracle.json`` holds it.

  Raises:
    ValueError: ``data_dir`` holds a dataset of other users or another seed.
  """
  # Here, not at the top: the simulator loads TensorFlow (seconds), which scripts
  # that only format tables (local_cluster's parent process) do without.
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  oracle_path = os.path.join(data_dir, simulator.ORACLE_FILE)
  if os.path.exists(oracle_path):
    with open(oracle_path, encoding="utf-8") as f:
      config = json.load(f)["config"]
    if config["num_users"] != users or config["seed"] != seed:
      raise ValueError(
          f"{data_dir} holds a dataset of {config['num_users']} users, seed "
          f"{config['seed']}, not {wanted}; pick another --out or delete it")
    print(f"reusing {data_dir} (same simulator users and seed)")
    return config
  config = simulator.SimulatorConfig(num_users=users, seed=seed)
  print(f"simulating {users} users (seed {seed}) into {data_dir}")
  simulator.generate(config, data_dir)
  return dataclasses.asdict(config)
