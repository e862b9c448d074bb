"""tf.distribute strategies for training, built from a name and ``TF_CONFIG``.

One process per task, as Kubernetes TFJob, Vertex AI or `egin-tf cluster-local`
launch them: every task runs the same `egin-tf train` command with its own
``TF_CONFIG`` (``{"cluster": {...}, "task": {"type": ..., "index": ...}}``).

* ``none``: the default strategy (one process, one device).
* ``mirrored``: synchronous replicas over this machine's devices.
* ``multi_worker_mirrored``: synchronous replicas over the ``worker`` tasks
  (worker 0 is the chief unless the cluster has a ``chief`` task).
* ``parameter_server``: the ``ps`` tasks hold the variables, id tables sharded
  row-wise over them (`table_partitioner`); the ``chief`` runs Keras ``fit``
  through a ``ClusterCoordinator`` that sends steps to the ``worker`` tasks,
  each reading its own files (`worker_input`). ``ps`` and ``worker`` tasks only
  serve (`serve_forever`) until the launcher stops them.
"""

import json
import os
from typing import Callable, NamedTuple, Optional

from data_pipeline.tf_env import tf

STRATEGIES = ("none", "mirrored", "multi_worker_mirrored", "parameter_server")
# Tables below this size stay in one piece: the per-shard lookup costs more
# than it balances (the MLPs, bins and positions are KiBs).
MIN_SHARD_BYTES = 256 << 10


class Task(NamedTuple):
  """This process's place in the cluster (``type`` None: no cluster)."""
  type: Optional[str]
  index: int
  num_workers: int
  num_ps: int
  has_chief: bool

  @property
  def is_chief(self) -> bool:
    """Whether this task writes the model directory (checkpoints, logs, exports)."""
    if self.type is None or self.type == "chief":
      return True
    return self.type == "worker" and self.index == 0 and not self.has_chief

  @property
  def serves_only(self) -> bool:
    """A parameter-server cluster's ``ps`` and ``worker`` tasks run no program."""
    return self.type == "ps" or (self.type == "worker" and self.has_chief)


def current_task() -> Task:
  """The task described by ``TF_CONFIG`` (no cluster when it is unset)."""
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    return Task(None, 0, 0, 0, False)
  try:
    config = json.loads(raw)
    cluster, task = config["cluster"], config.get("task", {})
    return Task(task.get("type"), int(task.get("index", 0)),
                len(cluster.get("worker", [])), len(cluster.get("ps", [])),
                bool(cluster.get("chief")))
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"TF_CONFIG is not a cluster description ({e}): {raw[:200]}") from None


def check_cluster(name: str, task: Task) -> None:
  """Refuses a strategy the cluster of ``TF_CONFIG`` cannot run (ValueError)."""
  if name not in STRATEGIES:
    raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
  if name == "parameter_server":
    if not (task.has_chief and task.num_workers and task.num_ps):
      raise ValueError("--strategy parameter_server needs TF_CONFIG with a chief, "
                       "at least one worker and one ps task")
  elif name == "multi_worker_mirrored":
    if task.type is None or task.num_ps:
      raise ValueError("--strategy multi_worker_mirrored needs TF_CONFIG with "
                       "worker tasks (and no ps tasks)")
  elif task.type is not None and (task.num_workers > 1 or task.num_ps):
    raise ValueError(f"--strategy {name} trains in one process, but TF_CONFIG "
                     "describes a cluster; pick multi_worker_mirrored or "
                     "parameter_server")


def table_partitioner(num_ps: int):
  """Splits each variable of at least `MIN_SHARD_BYTES` row-wise over at most
  ``num_ps`` parameter servers (`tf.distribute.experimental.partitioners`)."""
  return tf.distribute.experimental.partitioners.MinSizePartitioner(
      min_shard_bytes=MIN_SHARD_BYTES, max_shards=num_ps)


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The strategy ``name`` over the cluster of ``TF_CONFIG`` (see module doc)."""
  task = current_task()
  check_cluster(name, task)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "parameter_server":
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.ParameterServerStrategy(
        resolver, variable_partitioner=table_partitioner(task.num_ps))
  return tf.distribute.get_strategy()


def is_parameter_server(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.ParameterServerStrategy)


def serve_forever(task: Task) -> None:
  """Runs this ``ps``/``worker`` task's server until the process is stopped."""
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  server = tf.distribute.Server(resolver.cluster_spec(), job_name=task.type,
                                task_index=task.index, protocol="grpc", start=True)
  print(f"{task.type} {task.index}: serving at "
        f"{resolver.cluster_spec().task_address(task.type, task.index)}", flush=True)
  server.join()


def worker_input(strategy: tf.distribute.Strategy,
                 make_dataset: Callable[[Optional[tuple]], tf.data.Dataset]):
  """What ``fit`` reads under ``strategy``: ``make_dataset(shard)`` where
  ``shard`` is ``(num_workers, this worker's index)`` on parameter-server
  workers (each reads its own files), None elsewhere (the global batch)."""
  if not is_parameter_server(strategy):
    return make_dataset(None)
  num_workers = current_task().num_workers

  def dataset_fn(input_context):
    del input_context  # one input pipeline per worker; the index says which
    index = tf.distribute.coordinator.experimental_get_current_worker_index()
    return make_dataset((num_workers, index))

  return tf.keras.utils.experimental.DatasetCreator(dataset_fn)
