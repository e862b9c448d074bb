"""`egin-tf cluster-local`: a parameter-server job of chief + 2 workers + 1 ps as
processes, with a worker killed mid-run, against one process on the same data."""

import os
import re
import signal

import pytest

import cluster_jobs

STEPS = 300
# Measured at these flags over seeds 0-2 (experiments/local_cluster.py, see
# experiments/RESULTS.md "Scale-out"): one process 0.7297 +- 0.0024, the
# cluster 0.7313 +- 0.0050, the cluster with worker 1 killed 0.7242. The
# asynchronous workers train other batches in another order, so a cluster run
# is within noise when it is this close (4 std of the cluster runs).
AUC_TOLERANCE = 0.02


def _train_flags(sim_data, model_dir):
  data = sim_data[0]
  return ["--train", f"{data}/train-*", "--eval", f"{data}/test-*",
          "--model", "egin", "--model_dir", str(model_dir), "--steps", str(STEPS),
          "--log_every", "100", "--verbose", "line", "--seed", "0"]


def _metrics(model_dir):
  return cluster_jobs.read_json(model_dir, "metrics.json")


@pytest.fixture(scope="module")
def single_process_auc(sim_data, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("single")
  cluster_jobs.finish(cluster_jobs.start("train", *_train_flags(sim_data, model_dir)))
  return _metrics(model_dir)["eval"]["auc"]


# Alone: with other tests on the cores, the workers' relative speed changes and
# with it the async job's AUC (0.676 against one process' 0.704 in one run
# beside the rest of the suite on 2 cores; within 0.02 in runs alone).
@pytest.mark.alone
def test_cluster_with_a_killed_worker_trains_to_the_auc_of_one_process(
    sim_data, tmp_path, single_process_auc):
  # One job checks both: the coordinator reschedules the steps of a worker
  # killed mid-run (the launcher restarts it), and the job still reaches the
  # AUC of one process. Every process it started is gone afterwards.
  proc = cluster_jobs.start("cluster-local", "--workers", "2", "--ps", "1", "--",
                            *_train_flags(sim_data, tmp_path))
  lines, victim = [], None
  for line in proc.stdout:
    lines.append(line)
    started = re.search(r"\[cluster\] started worker 1 \(pid (\d+)\)", line)
    victim = int(started.group(1)) if started else victim
    if line.startswith("chief 0 | Epoch 2/"):  # a third of the steps done
      os.kill(victim, signal.SIGKILL)
      break
  out = "".join(lines) + cluster_jobs.finish(proc)
  assert re.search(r"\[cluster\] worker 1 exited with -9; restarting it", out), out
  for role in ("chief 0 | ", "worker 0 | ", "worker 1 | ", "ps 0 | "):
    assert role in out
  metrics = _metrics(tmp_path)
  assert metrics["steps"] == STEPS
  assert abs(metrics["eval"]["auc"] - single_process_auc) < AUC_TOLERANCE, out
  pids = cluster_jobs.started_pids(out)
  assert len(pids) == 5  # chief, 2 workers, ps, and worker 1 again
  cluster_jobs.assert_gone(pids)
