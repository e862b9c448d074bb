"""Cluster descriptions, strategy checks, the local launcher's pieces and the
reader's per-worker shards (no cluster is started here)."""

import json
import sys

import pytest

from data_pipeline import reader
from egin_tf.train import cluster_local
from egin_tf.train import distribute


def _task(monkeypatch, cluster, task_type="chief", index=0):
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": cluster, "task": {"type": task_type, "index": index}}))
  return distribute.current_task()


PS_CLUSTER = {"chief": ["a:1"], "worker": ["a:2", "a:3"], "ps": ["a:4"]}


def test_no_tf_config_is_one_chief_process(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  task = distribute.current_task()
  assert task == distribute.Task(None, 0, 0, 0, False)
  assert task.is_chief and not task.serves_only


def test_roles_of_a_parameter_server_cluster(monkeypatch):
  chief = _task(monkeypatch, PS_CLUSTER)
  assert (chief.num_workers, chief.num_ps, chief.has_chief) == (2, 1, True)
  assert chief.is_chief and not chief.serves_only
  worker0 = _task(monkeypatch, PS_CLUSTER, "worker", 0)
  assert not worker0.is_chief and worker0.serves_only
  assert _task(monkeypatch, PS_CLUSTER, "ps", 0).serves_only


def test_worker_zero_is_chief_without_a_chief_task(monkeypatch):
  cluster = {"worker": ["a:1", "a:2"]}
  assert _task(monkeypatch, cluster, "worker", 0).is_chief
  worker1 = _task(monkeypatch, cluster, "worker", 1)
  assert not worker1.is_chief and not worker1.serves_only


def test_a_malformed_tf_config_names_itself(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(ValueError, match="TF_CONFIG is not a cluster description"):
    distribute.current_task()


@pytest.mark.parametrize("name, cluster, message", [
    ("parameter_server", None, "needs TF_CONFIG with a chief"),
    ("parameter_server", {"worker": ["a:1"], "ps": ["a:2"]}, "with a chief"),
    ("multi_worker_mirrored", None, "needs TF_CONFIG with worker tasks"),
    ("multi_worker_mirrored", PS_CLUSTER, "and no ps tasks"),
    ("mirrored", PS_CLUSTER, "trains in one process"),
    ("none", {"worker": ["a:1", "a:2"]}, "trains in one process"),
    ("horovod", None, "--strategy must be one of"),
])
def test_strategies_the_cluster_cannot_run_are_refused(monkeypatch, name,
                                                       cluster, message):
  if cluster is None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    task = distribute.current_task()
  else:
    task = _task(monkeypatch, cluster, "worker" if "chief" not in cluster else "chief")
  with pytest.raises(ValueError, match=message):
    distribute.check_cluster(name, task)


def test_strategies_that_fit_their_cluster_pass(monkeypatch):
  distribute.check_cluster("parameter_server", _task(monkeypatch, PS_CLUSTER))
  distribute.check_cluster("multi_worker_mirrored",
                           _task(monkeypatch, {"worker": ["a:1", "a:2"]}, "worker"))
  monkeypatch.delenv("TF_CONFIG")
  for name in ("none", "mirrored"):
    distribute.check_cluster(name, distribute.current_task())


def test_small_variables_stay_whole_and_tables_split_over_the_ps():
  partitioner = distribute.table_partitioner(num_ps=3)
  from data_pipeline.tf_env import tf  # pylint: disable=g-import-not-at-top
  # 1,000 x 10 float32 = 40 KB: below MIN_SHARD_BYTES, one piece.
  assert partitioner(tf.TensorShape([1_000, 10]), tf.float32) == [1, 1]
  # 1,000,000 x 10 float32 = 40 MB: as many pieces as ps tasks, not more.
  assert partitioner(tf.TensorShape([1_000_000, 10]), tf.float32) == [3, 1]
  # 100,000 x 1 int64 = 800 KB: 3 pieces of at least 256 KiB fit.
  assert partitioner(tf.TensorShape([100_000]), tf.int64) == [3]


def test_cluster_spec_gives_every_task_its_own_port():
  cluster = cluster_local.cluster_spec(workers=2, ps=2)
  assert {role: len(v) for role, v in cluster.items()} == {
      "chief": 1, "worker": 2, "ps": 2}
  addresses = [a for v in cluster.values() for a in v]
  assert len(set(addresses)) == 5
  assert all(a.startswith("127.0.0.1:") for a in addresses)
  assert cluster_local.tasks_of(cluster) == [
      ("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0), ("ps", 1)]
  assert list(cluster_local.cluster_spec(workers=3, ps=0)) == ["worker"]


def test_train_command_adds_the_strategy_the_cluster_needs():
  base = [sys.executable, "-m", "egin_tf.cli.main", "train"]
  assert cluster_local.train_command(["--steps=5"], ps=1) == base + [
      "--steps=5", "--strategy=parameter_server"]
  assert cluster_local.train_command([], ps=0) == base + [
      "--strategy=multi_worker_mirrored"]
  given = ["--strategy", "parameter_server"]
  assert cluster_local.train_command(given, ps=1) == base + given


def _record_ids(pattern, shard):
  """(user, time, item) of every record read, sorted."""
  ds = reader.make_dataset(pattern, batch_size=1000, shard=shard)
  return sorted((int(u), int(t), int(i)) for batch in ds for u, t, i in zip(
      batch["user_id"].numpy(), batch["time"].numpy(), batch["item_id"].numpy()))


@pytest.mark.parametrize("num_shards", [2, 3])
def test_worker_shards_partition_the_records(sim_data, num_shards):
  # sim_data has 2 train files: 2 workers get one file each; 3 workers split
  # records instead (a file each would leave one worker without data).
  pattern = sim_data[0] + "/train-*"
  everything = _record_ids(pattern, None)
  parts = [_record_ids(pattern, (num_shards, i)) for i in range(num_shards)]
  assert all(parts)
  assert sorted(i for part in parts for i in part) == everything
