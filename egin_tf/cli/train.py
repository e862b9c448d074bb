"""egin-tf train: train a CTR model on impression TFRecords.

Usage:
  egin-tf train                      # simulate search logs, train the best model
  egin-tf train --train 'd/train-*' --eval 'd/test-*' --model dnn --model_dir runs/x
  egin-tf train --stream DIR [--follow] --model_dir runs/s --export_dir exports/s

With --stream it reads the TFRecord shards of DIR once, in file-name order, as
they land (--follow keeps waiting for new ones), scoring every batch before
training on it (progressive validation), checkpointing the stream position with
the model (a restarted run resumes exactly after the last checkpointed batch) and
exporting SavedModel versions for TF Serving (--export_dir).

With no --train it simulates a default dataset into MODEL_DIR/data (reused when
it is already there), trains on it and prints the test AUC, gAUC and logloss next
to the oracle AUC: the AUC of the simulator's true click probabilities, the best
any model can reach on that data. Progress goes to stdout; TensorBoard logs to
MODEL_DIR/logs; checkpoints to MODEL_DIR/checkpoints.
"""

import os

from absl import flags

from egin_tf.cli import common
from egin_tf.models import MODELS

FLAGS = flags.FLAGS

DEFAULT_MODEL = "egin"  # the best model we have

flags.DEFINE_string("train", None, "TFRecord glob of training data (comma-separated "
                    "globs allowed). Omit to simulate a default dataset.")
flags.DEFINE_string("eval", None, "TFRecord glob of test data for the final exact "
                    "metrics.")
flags.DEFINE_enum("model", DEFAULT_MODEL, sorted(MODELS), "Model to train.")
flags.DEFINE_string("model_dir", "runs/default", "Where config, checkpoints, "
                    "TensorBoard logs and metrics go.")
flags.DEFINE_integer("batch_size", 256, "Examples per step.", lower_bound=1)
flags.DEFINE_integer("epochs", 2, "Passes over the training data.", lower_bound=1)
flags.DEFINE_integer("steps", None, "Total steps; overrides --epochs.",
                     lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("embedding_dim", 10, "Embedding size (the paper uses 10).")
flags.DEFINE_integer("max_clicks", 100, "Click history kept (most recent).")
flags.DEFINE_integer("max_queries", 100, "Query history kept (most recent).")
flags.DEFINE_integer("seed", 0, "Seed of initialization, shuffling and simulation.")
flags.DEFINE_integer("log_every", 200, "Steps between progress lines/checkpoints.",
                     lower_bound=1)
flags.DEFINE_integer("sim_users", 2000, "Users simulated when --train is omitted.")
flags.DEFINE_string("stream", None, "Stream folder: train once over its shards in "
                    "file-name order (see egin_tf.streaming). Excludes --train.")
flags.DEFINE_bool("follow", False, "With --stream: keep polling for new shards.")
flags.DEFINE_float("poll_seconds", 10.0, "With --follow: seconds between polls.")
flags.DEFINE_float("idle_timeout", None, "With --follow: stop after this many "
                   "seconds without a new shard (default: never).")
flags.DEFINE_string("shard_pattern", "*.tfrecord*", "With --stream: glob of shard "
                    "names in the folder.")
flags.DEFINE_enum("on_bad", "stop", ["stop", "skip"], "With --stream: stop at an "
                  "unreadable or unparsable record, or skip and report it.")
flags.DEFINE_integer("checkpoint_every_steps", 200, "With --stream: steps between "
                     "checkpoints.")
flags.DEFINE_float("checkpoint_every_seconds", 600.0, "With --stream: at most this "
                   "long between checkpoints.")
flags.DEFINE_string("export_dir", None, "With --stream: SavedModel versions for TF "
                    "Serving go to EXPORT_DIR/<version>/.")
flags.DEFINE_integer("export_every_steps", None, "With --stream: steps between "
                     "exports.")
flags.DEFINE_float("export_every_minutes", None, "With --stream: minutes between "
                   "exports.")
flags.DEFINE_integer("keep_exports", 3, "With --stream: newest versions kept.")
flags.DEFINE_integer("window", 10_000, "With --stream: examples in the progressive "
                     "validation window.")
flags.DEFINE_bool("audit_log", False, "With --stream: log every trained example "
                  "(shard, record, fingerprint) in MODEL_DIR/trained_examples, "
                  "committed with the checkpoints.")
for _kind in ("item", "query", "user", "category"):
  flags.DEFINE_integer(
      f"{_kind}_buckets", None,
      f"Rows of the {_kind} id table (default: a row per id for small ids, else "
      "2x the distinct ids of the training data). On a stream that never ends, "
      "size it for the ids to come: further ids share rows, and the progress "
      "lines and TensorBoard show the item/query collision rates.",
      lower_bound=2)
flags.DEFINE_enum("strategy", "none", ["none", "mirrored", "multi_worker_mirrored",
                                        "parameter_server"],
                  "tf.distribute strategy; the cluster comes from TF_CONFIG (see "
                  "egin_tf.distribute). Under parameter_server, ps and worker "
                  "tasks serve and the chief trains; `egin-tf cluster-local` "
                  "starts such a cluster on this machine.")
flags.DEFINE_enum("verbose", "auto", ["auto", "bar", "line", "quiet"],
                  "Progress: a bar, one line per chunk, or nothing; auto picks "
                  "the bar on a terminal.")


def _simulated_data(model_dir: str) -> tuple:
  """Simulates the default dataset once into MODEL_DIR/data."""
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  data_dir = os.path.join(model_dir, "data")
  if os.path.exists(os.path.join(data_dir, "oracle.json")):
    print(f"reusing simulated data in {data_dir}")
  else:
    config = simulator.SimulatorConfig(num_users=FLAGS.sim_users, seed=FLAGS.seed)
    print(f"simulating search logs of {config.num_users} users into {data_dir}")
    simulator.generate(config, data_dir, overwrite=True,
                       progress=common.progress_printer("impressions"))
  return (os.path.join(data_dir, "train-*.tfrecord"),
          os.path.join(data_dir, "test-*.tfrecord"))


@common.clean_errors
def main(argv):
  common.no_extra_args(argv)
  from egin_tf import distribute, training  # pylint: disable=g-import-not-at-top
  task = _checked_task(distribute)
  if FLAGS.strategy == "parameter_server" and task.serves_only:
    distribute.serve_forever(task)
    return
  train_pattern, eval_pattern = FLAGS.train, FLAGS.eval
  if FLAGS.stream is not None:
    if train_pattern is not None:
      raise common.InputError("--stream and --train exclude each other")
    _train_stream(eval_pattern)
    return
  if train_pattern is None:
    train_pattern, eval_pattern = _simulated_data(FLAGS.model_dir)
  verbose = common.keras_verbosity(FLAGS.verbose)
  if FLAGS.strategy == "parameter_server":
    verbose = min(verbose, 2)  # Keras' progress bar cannot follow remote steps
  result = training.train(train_pattern, FLAGS.model_dir, _train_config(),
                          eval_pattern=eval_pattern, verbose=verbose,
                          strategy=distribute.make_strategy(FLAGS.strategy))
  if not task.is_chief:
    return
  print(f"trained {result['steps']} steps in {result['seconds']:.0f} s "
        f"({result['examples_per_second']:.0f} examples/s); model in "
        f"{FLAGS.model_dir}; TensorBoard: tensorboard --logdir "
        f"{os.path.join(FLAGS.model_dir, 'logs')}")


def _checked_task(distribute):
  """This process's task in TF_CONFIG's cluster, refusing flags it cannot run."""
  try:
    task = distribute.current_task()
    distribute.check_cluster(FLAGS.strategy, task)
  except ValueError as e:
    raise common.InputError(str(e)) from None
  if FLAGS.strategy != "none" and FLAGS.stream is not None:
    raise common.InputError(f"--stream trains in one process; --strategy "
                            f"{FLAGS.strategy} is for offline training (--train)")
  if FLAGS.strategy == "multi_worker_mirrored" and FLAGS.train is None:
    raise common.InputError("--strategy multi_worker_mirrored needs --train: every "
                            "worker reads it (make one with `egin-tf generate`)")
  return task


def _train_config():
  from egin_tf import training  # pylint: disable=g-import-not-at-top
  return training.TrainConfig(
      model=FLAGS.model, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
      steps=FLAGS.steps, learning_rate=FLAGS.learning_rate,
      embedding_dim=FLAGS.embedding_dim, max_clicks=FLAGS.max_clicks,
      max_queries=FLAGS.max_queries, seed=FLAGS.seed, log_every=FLAGS.log_every,
      table_sizes={kind: FLAGS[f"{kind}_buckets"].value for kind in training.TABLE_KINDS
                   if FLAGS[f"{kind}_buckets"].value is not None})


def _train_stream(eval_pattern) -> None:
  from egin_tf import streaming  # pylint: disable=g-import-not-at-top
  stream = streaming.StreamConfig(
      follow=FLAGS.follow, poll_seconds=FLAGS.poll_seconds,
      idle_timeout=FLAGS.idle_timeout, pattern=FLAGS.shard_pattern,
      on_bad=FLAGS.on_bad, checkpoint_every_steps=FLAGS.checkpoint_every_steps,
      checkpoint_every_seconds=FLAGS.checkpoint_every_seconds,
      export_dir=FLAGS.export_dir, export_every_steps=FLAGS.export_every_steps,
      export_every_minutes=FLAGS.export_every_minutes,
      keep_exports=FLAGS.keep_exports, window=FLAGS.window,
      log_every=FLAGS.log_every, audit_log=FLAGS.audit_log)
  try:
    result = streaming.train_stream(FLAGS.stream, FLAGS.model_dir, _train_config(),
                                    stream, eval_pattern=eval_pattern)
  except (streaming.NonFiniteLossError, streaming.CheckpointWriteError,
          streaming.ExportWriteError) as e:
    # Not the user's input, but the same treatment: one clear line, exit 1.
    raise common.InputError(str(e)) from None
  print(f"model in {FLAGS.model_dir}; {result['steps']:,} steps in total; "
        f"TensorBoard: tensorboard --logdir {os.path.join(FLAGS.model_dir, 'logs')}")
