"""A tf.distribute cluster as processes on this machine (`egin-tf cluster-local`).

Every task runs the same ``egin-tf train`` command with its own ``TF_CONFIG``
(ports on 127.0.0.1), as a cluster manager would start them. With parameter
servers the cluster is one chief, N workers and M ps tasks
(``--strategy parameter_server``); without, N workers of which worker 0 is the
chief (``--strategy multi_worker_mirrored``). Each task's output lines are
printed with its role in front. The job ends when the chief (the task that
trains) exits; then every process still running is stopped, also when the
launcher fails or is interrupted. A parameter-server worker that dies is
started again (as Kubernetes' restartPolicy would), and the coordinator
reschedules the steps it lost; a ps task that dies ends the job (restart it
from the last checkpoint).

No TensorFlow here: the launcher only starts, watches and stops processes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

STOP_GRACE_SECONDS = 5.0


def free_ports(count: int) -> List[int]:
  """``count`` distinct ports the OS reports free on 127.0.0.1 right now."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket()
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def cluster_spec(workers: int, ps: int) -> Dict[str, List[str]]:
  """The ``cluster`` of TF_CONFIG: chief + workers + ps, or workers alone."""
  roles = ([("chief", 1), ("worker", workers), ("ps", ps)] if ps
           else [("worker", workers)])
  ports = iter(free_ports(sum(n for _, n in roles)))
  return {role: [f"127.0.0.1:{next(ports)}" for _ in range(n)] for role, n in roles}


def tasks_of(cluster: Dict[str, List[str]]) -> List[tuple]:
  return [(role, i) for role in ("chief", "worker", "ps")
          for i in range(len(cluster.get(role, [])))]


class LocalCluster:
  """Starts, watches and stops the processes of one local job."""

  def __init__(self, command: Sequence[str], cluster: Dict[str, List[str]],
               print_fn: Callable[[str], None] = print,
               restart_workers: bool = True):
    self.command = list(command)
    self.cluster = cluster
    self.print_fn = print_fn
    self.restart_workers = restart_workers and "ps" in cluster
    self.processes: Dict[tuple, subprocess.Popen] = {}
    self.restarts = 0
    self._lock = threading.Lock()

  @property
  def trainer(self) -> tuple:
    return ("chief", 0) if "chief" in self.cluster else ("worker", 0)

  def start(self, task: tuple) -> None:
    role, index = task
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": self.cluster, "task": {"type": role, "index": index}}))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    process = subprocess.Popen(
        self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True)
    with self._lock:
      self.processes[task] = process
    self.print_fn(f"[cluster] started {role} {index} (pid {process.pid}) at "
                  f"{self.cluster[role][index]}")
    threading.Thread(target=self._stream, args=(task, process), daemon=True).start()

  def _stream(self, task: tuple, process: subprocess.Popen) -> None:
    prefix = f"{task[0]} {task[1]} | "
    for line in process.stdout:
      self.print_fn(prefix + line.rstrip("\n"))

  def run(self, poll_seconds: float = 0.5) -> int:
    """Runs the job to its end; the trainer's exit code (non-zero on failure)."""
    try:
      for task in tasks_of(self.cluster):
        self.start(task)
      return self._watch(poll_seconds)
    finally:
      self.stop_all()

  def _watch(self, poll_seconds: float) -> int:
    while True:
      for task, process in list(self.processes.items()):
        code = process.poll()
        if code is None:
          continue
        if task == self.trainer:
          self.print_fn(f"[cluster] {task[0]} {task[1]} exited with {code}")
          return code
        if self.restart_workers and task[0] == "worker":
          self.print_fn(f"[cluster] worker {task[1]} exited with {code}; restarting it")
          self.restarts += 1
          self.start(task)
        elif code != 0 or task[0] == "ps":
          self.print_fn(f"[cluster] {task[0]} {task[1]} exited with {code}; "
                        "stopping the job")
          return code or 1
      time.sleep(poll_seconds)

  def stop_all(self) -> None:
    """SIGTERM to every process group still running, SIGKILL after a grace."""
    running = [p for p in self.processes.values() if p.poll() is None]
    for process in running:
      _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in running:
      try:
        process.wait(max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
    if running:
      self.print_fn(f"[cluster] stopped {len(running)} process(es)")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(process.pid, sig)
  except ProcessLookupError:
    pass


def train_command(train_args: Sequence[str], ps: int,
                  python: Optional[str] = None) -> List[str]:
  """``egin-tf train`` with ``train_args``, adding the strategy the cluster needs."""
  args = list(train_args)
  if not any(a == "--strategy" or a.startswith("--strategy=") for a in args):
    args.append("--strategy=" + ("parameter_server" if ps else "multi_worker_mirrored"))
  return [python or sys.executable, "-m", "egin_tf.cli.main", "train"] + args
