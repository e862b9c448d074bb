"""egin-tf cluster-local: run `egin-tf train` on a tf.distribute cluster of local processes.

Usage:
  egin-tf cluster-local --workers 2 --ps 2 -- --train 'd/train-*' --eval 'd/test-*'
  egin-tf cluster-local --workers 2 --ps 0 -- --train 'd/train-*' --steps 300

Starts a chief, WORKERS workers and PS parameter servers (--ps 0: WORKERS
workers training synchronously, worker 0 as chief) as processes on 127.0.0.1
ports, each running `egin-tf train <flags after -->` with its own TF_CONFIG and
--strategy parameter_server (or multi_worker_mirrored) unless the flags name
one. Every line a task prints is shown with its role in front. The job ends
with the chief; every process it started is stopped then, and also when the
job fails or is interrupted (Ctrl-C, SIGTERM). A worker that dies under
parameter servers is started again; its lost steps are rescheduled.
"""

import signal
import sys

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_integer("workers", 2, "Worker tasks (at least 1).", lower_bound=1)
flags.DEFINE_integer("ps", 1, "Parameter-server tasks; 0 trains synchronously "
                     "over the workers (multi_worker_mirrored).", lower_bound=0)
flags.DEFINE_bool("restart_workers", True, "Start a parameter-server worker "
                  "again when it dies (as a cluster manager would).")


def _interrupted(signum, frame):
  del frame
  raise KeyboardInterrupt(f"signal {signum}")


@common.clean_errors
def main(argv):
  from egin_tf.train import cluster_local  # pylint: disable=g-import-not-at-top
  train_args = argv[1:]
  if train_args and train_args[0] == "--":
    train_args = train_args[1:]
  if any(a.startswith("--model_dir") for a in train_args) is False:
    raise common.FlagError("give the train flags after --, with --model_dir "
                           "(every task must agree on it)")
  cluster = cluster_local.cluster_spec(FLAGS.workers, FLAGS.ps)
  job = cluster_local.LocalCluster(
      cluster_local.train_command(train_args, FLAGS.ps), cluster,
      print_fn=lambda line: print(line, flush=True),
      restart_workers=FLAGS.restart_workers)
  signal.signal(signal.SIGTERM, _interrupted)
  try:
    code = job.run()
  except KeyboardInterrupt:
    print("[cluster] interrupted; every process stopped", flush=True)
    sys.exit(130)
  if code:
    sys.exit(code)
