"""Delivery of stream training under kill -9, counted by `egin-tf audit` (issue 28).

The simulator's train split is replayed as a stream, and a model is trained on
it in one pass with ``egin-tf train --stream ... --audit_log``: in one process,
on a parameter-server cluster and on synchronous workers (``egin-tf
cluster-local``), each uninterrupted and killed:

* one process: ``--kills`` SIGKILLs, each followed by a restart;
* parameter servers (chief, 2 workers, 1 ps): ``--cluster_kills`` SIGKILLs,
  alternately of a worker (the launcher starts it again, the coordinator runs
  its step again) and of the chief (the job ends; it is started again from the
  latest checkpoint);
* synchronous workers (2, multi_worker_mirrored): ``--cluster_kills``
  SIGKILLs, alternately of worker 1 and worker 0 (the chief); each ends the
  job, which is started again.

Each kill falls at a random moment (after the run's next checkpoint, then up
to ``--kill_spread`` seconds more); the last run goes to the end of the
stream. `egin-tf audit` then counts, over the stream's records, those trained
once, the extra trainings and those never trained. One process and the
synchronous workers promise exactly once; parameter servers exactly once
across chief restarts and at most one batch trained twice per worker death;
this measures all three.

Per run: kills, examples, trained once, duplicate trainings, never trained, the
progressive AUC over the stream, examples/s of the uninterrupted runs (the
training loop's, from stream_metrics.json) and the wall time of all its
processes.

Usage:
  python -m experiments.stream_delivery [--users 500] [--seed 0] [--kills 5]
      [--cluster_kills 4] [--model egin] [--out runs/stream_delivery]
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List

from absl import app
from absl import flags

from experiments import common

FLAGS = flags.FLAGS
AUDIT_LINE = re.compile(r"([\d,]+) records: ([\d,]+) trained once, ([\d,]+) duplicate "
                        r"trainings, ([\d,]+) never trained")
STARTED_LINE = re.compile(r"\[cluster\] started (\w+ \d+) \(pid (\d+)\)")


def define_flags() -> None:
  flags.DEFINE_integer("users", 500, "Users of the simulated dataset.")
  flags.DEFINE_integer("seed", 0, "Simulator and training seed; kill times too.")
  flags.DEFINE_integer("kills", 5, "SIGKILLs of the killed one-process run.",
                       lower_bound=1)
  flags.DEFINE_integer("cluster_kills", 4, "SIGKILLs of the killed cluster run: "
                       "a worker, the chief, a worker, ...", lower_bound=1)
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


def _train_command(stream: str, model_dir: str, cluster: str) -> List[str]:
  """One process (``cluster`` ""), or cluster-local on "ps" or "mwms"."""
  flags_ = ["--stream", stream, "--model", FLAGS.model, "--model_dir", model_dir,
            "--seed", str(FLAGS.seed), "--checkpoint_every_steps", "20",
            "--log_every", "100", "--audit_log"]
  if cluster:
    ps = "1" if cluster == "ps" else "0"
    return _egin_tf("cluster-local", "--workers", "2", "--ps", ps, "--", *flags_)
  return _egin_tf("train", *flags_)


class _Job:
  """A running command; with `egin-tf cluster-local`, its tasks' pids."""

  def __init__(self, command: List[str]):
    self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
    self.pids = {"process": self.process.pid}
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self) -> None:
    for line in self.process.stdout:
      started = STARTED_LINE.search(line)
      if started:
        self.pids[started.group(1)] = int(started.group(2))


def _new_checkpoint(checkpoints: str, before: set) -> bool:
  now = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  return any(name.endswith(".index") for name in now - before)


def _kill_after_checkpoint(job: _Job, victim: str, model_dir: str,
                           rng: random.Random) -> None:
  """SIGKILLs ``victim`` (a key of ``job.pids``) after the run's next
  checkpoint, at a random moment."""
  checkpoints = os.path.join(model_dir, "checkpoints")
  before = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  while not _new_checkpoint(checkpoints, before):
    if job.process.poll() is not None:
      raise RuntimeError("the run ended before it could be killed: raise --users")
    time.sleep(0.05)
  time.sleep(rng.uniform(0.0, FLAGS.kill_spread))
  os.kill(job.pids[victim], signal.SIGKILL)


def _victims(cluster: str, kills: int, rng: random.Random) -> List[str]:
  """Who each kill hits: the process; on parameter servers a worker, the chief,
  ...; on synchronous workers worker 1, worker 0 (the chief), ..."""
  if cluster == "ps":
    return [f"worker {rng.randrange(2)}" if k % 2 == 0 else "chief 0"
            for k in range(kills)]
  if cluster == "mwms":
    return [f"worker {1 - k % 2}" for k in range(kills)]
  return ["process"] * kills


def _train(stream: str, model_dir: str, kills: int, cluster: str) -> float:
  """One pass, killed ``kills`` times (each kill that ends the job followed by
  a restart); its wall seconds."""
  if os.path.isdir(model_dir):
    shutil.rmtree(model_dir)
  command, rng = _train_command(stream, model_dir, cluster), random.Random(FLAGS.seed)
  start = time.perf_counter()
  job = _Job(command)
  for kill, victim in enumerate(_victims(cluster, kills, rng)):
    _kill_after_checkpoint(job, victim, model_dir, rng)
    print(f"  {model_dir}: killed {victim} ({kill + 1} of {kills})", flush=True)
    # Killing the process, the chief, or any synchronous worker ends the job.
    if cluster == "mwms" or victim in ("process", "chief 0"):
      job.process.wait()
      job = _Job(command)
  if job.process.wait() != 0:
    raise RuntimeError(f"{' '.join(command)} failed")
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
    metrics = json.load(f)
  speed = (f"{metrics['examples_this_run'] / metrics['seconds']:,.0f}" if not kills
           else "")
  return [name, str(kills), f"{counts['records']:,}", f"{counts['once']:,}",
          f"{counts['duplicates']:,}", f"{counts['never']:,}",
          common.format_number(metrics["progressive"]["running_auc"]), speed,
          f"{seconds:.0f}"]


RUNS = (("one process", "", False), ("one process, killed", "", True),
        ("parameter servers", "ps", False), ("parameter servers, killed", "ps", True),
        ("synchronous workers", "mwms", False),
        ("synchronous workers, killed", "mwms", True))


def main(argv):
  del argv
  stream = _stream(FLAGS.out)
  rows = []
  for name, cluster, killed in RUNS:
    kills = (FLAGS.cluster_kills if cluster else FLAGS.kills) if killed else 0
    model_dir = os.path.join(FLAGS.out, f"{FLAGS.model}_{name.replace(', ', '_')}"
                             .replace(" ", "_"))
    print(f"{name}: training {FLAGS.model} on {stream}", flush=True)
    rows.append(_row(name, kills, _train(stream, model_dir, kills, cluster), model_dir))
  table = common.markdown_table(
      ["run", "kills", "records", "trained once", "duplicate trainings",
       "never trained", "progressive AUC", "examples/s", "seconds"], rows)
  text = f"`{' '.join(common.command_line())}` ({common.utc_date()})\n\n{table}\n"
  print(text)
  with open(os.path.join(FLAGS.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text)


if __name__ == "__main__":
  define_flags()
  app.run(main)
