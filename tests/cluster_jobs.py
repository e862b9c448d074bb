"""Running `egin-tf` commands and local cluster jobs from tests: start, finish,
kill a task when the chief prints a step, check every process is gone."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

STARTED = re.compile(r"\[cluster\] started (\w+ \d+) \(pid (\d+)\)")


def start(*args, cwd=None):
  """``egin-tf ARGS`` as a process (in ``cwd``), its output piped."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, "-m", "egin_tf.cli.main", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env, cwd=cwd)


def finish(proc, timeout=600):
  """The process' whole output, once it exited 0."""
  out, _ = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out
  return out


def read_json(model_dir, name):
  with open(os.path.join(model_dir, name)) as f:
    return json.load(f)


def started_pids(output):
  """Every pid `egin-tf cluster-local` started, in its output."""
  return [int(pid) for _, pid in STARTED.findall(output)]


def assert_gone(pids):
  for pid in pids:
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)


def kill_at_steps(proc, chief, victims):
  """Reads a cluster job's output; when ``chief`` (e.g. "chief 0") prints
  ``step N``, SIGKILLs the task ``victims[N]`` (e.g. "worker 1"). The job's
  output until the launcher ends; asserts every kill happened."""
  lines, pids, done = [], {}, set()
  for line in proc.stdout:
    lines.append(line)
    started = STARTED.search(line)
    if started:
      pids[started.group(1)] = int(started.group(2))
    step = re.match(rf"{chief} \| step (\d+) ", line)
    if step and int(step.group(1)) in victims and step.group(1) not in done:
      os.kill(pids[victims[int(step.group(1))]], signal.SIGKILL)
      done.add(step.group(1))
  out = "".join(lines) + proc.communicate(timeout=300)[0]
  assert len(done) == len(victims), out
  return out
