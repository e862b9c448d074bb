"""Delivery of stream training under kill -9, counted by `egin-tf audit` (issue 28).

The simulator's train split is replayed as a stream, and a model is trained on
it in one pass twice with ``egin-tf train --stream ... --audit_log``:
uninterrupted, and with ``--kills`` SIGKILLs, each at a random moment (after the
run's next checkpoint, then up to ``--kill_spread`` seconds more), each followed
by a restart, the last run going to the end of the stream. `egin-tf audit` then
counts, over the stream's records, those trained once, the extra trainings and
those never trained. One process promises exactly once; this measures it. (The
cluster trainers of issue 28 are to add their rows with the same counts.)

Per run: kills, examples, trained once, duplicate trainings, never trained, the
progressive AUC over the stream, and the wall time of all its processes.

Usage:
  python -m experiments.stream_delivery [--users 500] [--seed 0] [--kills 5]
      [--model egin] [--out runs/stream_delivery]
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List

from absl import app
from absl import flags

from experiments import common

FLAGS = flags.FLAGS
AUDIT_LINE = re.compile(r"([\d,]+) records: ([\d,]+) trained once, ([\d,]+) duplicate "
                        r"trainings, ([\d,]+) never trained")


def define_flags() -> None:
  flags.DEFINE_integer("users", 500, "Users of the simulated dataset.")
  flags.DEFINE_integer("seed", 0, "Simulator and training seed; kill times too.")
  flags.DEFINE_integer("kills", 5, "SIGKILLs of the killed run.", lower_bound=1)
  flags.DEFINE_float("kill_spread", 3.0, "Seconds after a new checkpoint within "
                     "which a kill falls (uniformly).", lower_bound=0.0)
  flags.DEFINE_string("model", "egin", "The model trained on the stream.")
  flags.DEFINE_integer("records_per_shard", 2000, "Stream shard size.", lower_bound=1)
  flags.DEFINE_string("out", "runs/stream_delivery", "Data, stream, model folders "
                      "and results.md.")


def _stream(out: str) -> str:
  """The simulated train split as a stream folder (made once, then reused)."""
  from data_pipeline import stream as stream_lib  # pylint: disable=g-import-not-at-top
  data = os.path.join(out, "data")
  common.simulated_dataset(data, FLAGS.users, FLAGS.seed,
                           f"--users {FLAGS.users} --seed {FLAGS.seed}")
  directory = os.path.join(out, "stream")
  if not os.path.isdir(directory):
    stream_lib.write_time_ordered(os.path.join(data, "train-*"), directory,
                                  FLAGS.records_per_shard)
  return directory


def _egin_tf(*args: str) -> List[str]:
  return [sys.executable, "-m", "egin_tf.cli.main", *args]


def _train_command(stream: str, model_dir: str) -> List[str]:
  return _egin_tf("train", "--stream", stream, "--model", FLAGS.model, "--model_dir",
                  model_dir, "--seed", str(FLAGS.seed), "--checkpoint_every_steps", "20",
                  "--log_every", "100", "--audit_log")


def _new_checkpoint(checkpoints: str, before: set) -> bool:
  now = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  return any(name.endswith(".index") for name in now - before)


def _run_and_kill(command: List[str], model_dir: str, rng: random.Random) -> None:
  """Starts a run and SIGKILLs it after its next checkpoint, at a random moment."""
  checkpoints = os.path.join(model_dir, "checkpoints")
  before = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  while not _new_checkpoint(checkpoints, before):
    if process.poll() is not None:
      raise RuntimeError("the run ended before it could be killed: raise --users")
    time.sleep(0.05)
  time.sleep(rng.uniform(0.0, FLAGS.kill_spread))
  process.send_signal(signal.SIGKILL)
  process.wait()


def _train(stream: str, model_dir: str, kills: int) -> float:
  """One pass, killed ``kills`` times and restarted; its wall seconds."""
  if os.path.isdir(model_dir):
    shutil.rmtree(model_dir)
  command, rng = _train_command(stream, model_dir), random.Random(FLAGS.seed)
  start = time.perf_counter()
  for kill in range(kills):
    _run_and_kill(command, model_dir, rng)
    print(f"  {model_dir}: killed {kill + 1} of {kills}", flush=True)
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  return time.perf_counter() - start


def _audit(model_dir: str) -> Dict[str, int]:
  run = subprocess.run(_egin_tf("audit", "--model_dir", model_dir), text=True,
                       capture_output=True, check=False)
  found = AUDIT_LINE.search(run.stdout)
  if not found:
    raise RuntimeError(f"egin-tf audit printed no counts:\n{run.stdout}{run.stderr}")
  counts = [int(n.replace(",", "")) for n in found.groups()]
  return dict(zip(("records", "once", "duplicates", "never"), counts))


def _row(name: str, kills: int, seconds: float, model_dir: str) -> List[str]:
  counts = _audit(model_dir)
  with open(os.path.join(model_dir, "stream_metrics.json"), encoding="utf-8") as f:
    progressive = json.load(f)["progressive"]
  return [name, str(kills), f"{counts['records']:,}", f"{counts['once']:,}",
          f"{counts['duplicates']:,}", f"{counts['never']:,}",
          common.format_number(progressive["running_auc"]), f"{seconds:.0f}"]


def main(argv):
  del argv
  stream = _stream(FLAGS.out)
  rows = []
  for name, kills in (("uninterrupted", 0), ("killed", FLAGS.kills)):
    model_dir = os.path.join(FLAGS.out, f"{FLAGS.model}_{name}")
    print(f"{name}: training {FLAGS.model} on {stream}", flush=True)
    rows.append(_row(name, kills, _train(stream, model_dir, kills), model_dir))
  table = common.markdown_table(
      ["run", "kills", "records", "trained once", "duplicate trainings",
       "never trained", "progressive AUC", "seconds"], rows)
  text = f"`{' '.join(common.command_line())}` ({common.utc_date()})\n\n{table}\n"
  print(text)
  with open(os.path.join(FLAGS.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text)


if __name__ == "__main__":
  define_flags()
  app.run(main)
