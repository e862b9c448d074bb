"""One process vs a local parameter-server cluster on the same data (issue 12).

For each seed: `egin-tf train` in one process, then `egin-tf cluster-local
--workers 2 --ps 1` with the same flags (chief + 2 workers + 1 ps as processes
on this machine); then one cluster run in which worker 1 is killed (SIGKILL)
when the chief starts its second progress chunk. Reports the test AUC and the
training examples/s (from the chief's final line; on a 2-core machine read
the ratio, not the absolute figure) as mean +- std over seeds, and the
worker-kill run's outcome.

Usage:
  python -m experiments.local_cluster [--users 400] [--data_seed 3]
      [--seeds 0,1,2] [--steps 300] [--model egin] [--out runs/local_cluster]
"""

import json
import os
import re
import signal
import subprocess
import sys
from typing import Dict, List, Tuple

from absl import app
from absl import flags
import numpy as np

from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("users", 400, "Users simulated.")
flags.DEFINE_integer("data_seed", 3, "Seed of the simulated data.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_integer("steps", 300, "Training steps of every run.")
flags.DEFINE_string("model", "egin", "Model trained.")
flags.DEFINE_string("out", "runs/local_cluster", "Working folder.")


def _egin_tf(*args) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, "-m", "egin_tf.cli.main", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)


def _train_flags(data: str, model_dir: str, seed: int) -> List[str]:
  return ["--train", f"{data}/train-*", "--eval", f"{data}/test-*",
          "--model", FLAGS.model, "--model_dir", model_dir, "--steps", str(FLAGS.steps),
          "--log_every", str(FLAGS.steps // 3), "--verbose", "line",
          "--seed", str(seed)]


def _outcome(model_dir: str, output: str) -> Dict[str, float]:
  with open(os.path.join(model_dir, "metrics.json")) as f:
    metrics = json.load(f)
  speed = re.findall(r"trained \d+ steps in \d+ s \((\d+) examples/s\)", output)
  return {"auc": metrics["eval"]["auc"], "steps": metrics["steps"],
          "examples_per_second": float(speed[-1])}


def run(kind: str, data: str, seed: int, kill_worker: bool = False
        ) -> Tuple[Dict[str, float], str]:
  model_dir = os.path.join(FLAGS.out, f"{kind}_seed{seed}")
  args = _train_flags(data, model_dir, seed)
  proc = (_egin_tf("train", *args) if kind == "single" else
          _egin_tf("cluster-local", "--workers", "2", "--ps", "1", "--", *args))
  lines, victim = [], None
  for line in proc.stdout:
    lines.append(line)
    started = re.search(r"\[cluster\] started worker 1 \(pid (\d+)\)", line)
    victim = int(started.group(1)) if started else victim
    if kill_worker and victim and line.startswith("chief 0 | Epoch 2/"):
      os.kill(victim, signal.SIGKILL)
      kill_worker = False
  output = "".join(lines)
  if proc.wait() != 0:
    raise RuntimeError(f"{kind} seed {seed} failed:\n{output[-3000:]}")
  return _outcome(model_dir, output), output


def main(argv):
  del argv
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  data = os.path.join(FLAGS.out, "data")
  if not os.path.exists(data):
    simulator.generate(simulator.SimulatorConfig(num_users=FLAGS.users,
                                                 seed=FLAGS.data_seed), data)
  seeds = [int(s) for s in FLAGS.seeds]
  results = {kind: [run(kind, data, s)[0] for s in seeds] for kind in ("single", "cluster")}
  killed, output = run("killed", data, seeds[0], kill_worker=True)
  rows = [[kind, common.mean_pm_std([r["auc"] for r in runs]),
           common.mean_pm_std([r["examples_per_second"] for r in runs])]
          for kind, runs in results.items()]
  ratio = (np.mean([r["examples_per_second"] for r in results["cluster"]]) /
           np.mean([r["examples_per_second"] for r in results["single"]]))
  restarted = re.findall(r"\[cluster\] worker 1 exited with .*", output)
  text = common.markdown_table(("run", "test AUC", "examples/s"), rows,
                               left_columns=3) + (
      f"\n\ncluster / single examples/s: {ratio:.2f}\n"
      f"worker 1 killed at chunk 2 (seed {seeds[0]}): {restarted}, finished "
      f"{killed['steps']} steps, test AUC {killed['auc']:.4f}, "
      f"{killed['examples_per_second']:.0f} examples/s\n")
  print(text)
  with open(os.path.join(FLAGS.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text)


if __name__ == "__main__":
  app.run(main)
