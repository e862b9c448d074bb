"""egin-tf train: train a CTR model on impression TFRecords.

Usage:
  egin-tf train                      # simulate search logs, train the best model
  egin-tf train --train 'd/train-*' --eval 'd/test-*' --model dnn --model_dir runs/x
  egin-tf train --stream DIR [--follow] --model_dir runs/s --export_dir exports/s
  egin-tf train --config run.json --alpha 0.5 --print_config   # the resolved config

Every hyperparameter of the model, of training and of streaming is a flag (the
model's own apply only to it: --top_k to egin/eges, --num_heads to bst, ...) and
a key of a --config JSON file with the sections that --print_config prints:
{"model": {"name": "egin", ...}, "train": {...}, "stream": {...}}; flags given
override the file, which overrides the defaults. A bad value or a flag that does
not apply to the run is refused in one line (exit status 2) before any work.

With --stream it reads the TFRecord shards of DIR once, in file-name order, as
they land (--follow keeps waiting for new ones), scoring every batch before
training on it (progressive validation), checkpointing the stream position with
the model (a restarted run resumes exactly after the last checkpointed batch) and
exporting SavedModel versions for TF Serving (--export_dir). On a cluster
(`egin-tf cluster-local -- --stream DIR ...`), --strategy parameter_server runs
the steps on the workers (egin_tf.train.stream_ps) and multi_worker_mirrored
trains each batch on all workers at once (egin_tf.train.stream_mwms).

Defaults per mode: EGIN's --graph_folds is 2 offline and 1 with --stream
(egin_tf.train.config.STREAM_MODEL_DEFAULTS; --graph_folds or the --config file
still wins, and --print_config shows the value). Two out-of-fold graph tables
remove a label leak of shuffled multi-epoch training (a row's target sits in the
same user's later histories, whose edges train the graph); one time-ordered pass
scores every row before any later row is trained, so it cannot leak that way,
and 2 folds measured no better there (progressive AUC over the whole stream,
2 folds - 1 fold: +0.0015, noise 0.0017, on a simulated stream; +0.0001, noise
0.0018, on a trivago replay; 3 seeds, experiments/RESULTS.md): one table, half
the rows. A stream warm-started from an offline EGIN model directory needs that
run's --graph_folds (2 by default).

With no --train it simulates a default dataset into MODEL_DIR/data (reused when
it is already there), trains on it and prints the test AUC, gAUC and logloss next
to the oracle AUC: the AUC of the simulator's true click probabilities, the best
any model can reach on that data. Progress goes to stdout; TensorBoard logs to
MODEL_DIR/logs; checkpoints to MODEL_DIR/checkpoints.
"""

import json
import os

from absl import flags

from data_pipeline.tf_env import tf
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import run_config
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.cli import common
from egin_tf.cli import config_flags
from egin_tf.models import MODELS, streamable

FLAGS = flags.FLAGS
# What --stream runs under (egin_tf.train.stream_ps, stream_mwms).
STREAM_STRATEGIES = ("none", "parameter_server", "multi_worker_mirrored")

# What `egin-tf train` does with no flags, where the library's defaults differ.
CLI_DEFAULTS = ("defaults of egin-tf train",
                {"model": {"name": "egin"}, "train": {"epochs": 2}})
COMMAND_LINE = "command line"

flags.DEFINE_string("train", None, "TFRecord glob of training data (comma-separated "
                    "globs allowed), or a dataset folder (its train split). Omit "
                    "to simulate a default dataset.")
flags.DEFINE_string("eval", None, "TFRecord glob of test data for the final exact "
                    "metrics, or a dataset folder (its test split).")
flags.DEFINE_enum("model", "egin", sorted(MODELS), "Model to train (overrides the "
                  "config file's model.name).")
flags.DEFINE_string("model_dir", "runs/default", "Where config, checkpoints, "
                    "TensorBoard logs and metrics go.")
flags.DEFINE_string("config", None, "JSON file of the run's config (sections model, "
                    "train, stream; what --print_config prints); flags override it.")
flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit.")
flags.DEFINE_integer("sim_users", 2000, "Users simulated when --train is omitted.")
flags.DEFINE_string("stream", None, "Stream folder: train once over its shards in "
                    "file-name order (see egin_tf.train.stream). Excludes --train. "
                    "Model defaults differ here: EGIN's --graph_folds is 1 on a "
                    "stream, 2 offline (see the module help).")
for _kind in train_config.TABLE_KINDS:
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
                  "egin_tf.train.distribute). Under parameter_server, ps and worker "
                  "tasks serve and the chief trains; `egin-tf cluster-local` "
                  "starts such a cluster on this machine. With --stream: none, "
                  "parameter_server or multi_worker_mirrored (see README, "
                  "'Delivery guarantees').")
flags.DEFINE_enum("verbose", "auto", ["auto", "bar", "line", "quiet"],
                  "Progress of offline training: a bar, one line per chunk, or "
                  "nothing; auto picks the bar on a terminal.")

# One flag per field of TrainConfig, of every model's config and of StreamConfig.
CONFIG_FLAGS = config_flags.collect(
    {"train": {"train": train_config.TrainConfig},
     "model": {name: model.CONFIG for name, model in MODELS.items()},
     "stream": {"stream": train_config.StreamConfig}},
    exclude=("model", "model_kwargs"))
config_flags.define_flags(CONFIG_FLAGS, __name__)


def _simulated_data(model_dir: str, seed: int) -> tuple:
  """Simulates the default dataset once into MODEL_DIR/data."""
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  data_dir = os.path.join(model_dir, "data")
  if tf.io.gfile.exists(os.path.join(data_dir, "oracle.json")):
    print(f"reusing simulated data in {data_dir}")
  else:
    config = simulator.SimulatorConfig(num_users=FLAGS.sim_users, seed=seed)
    print(f"simulating search logs of {config.num_users} users into {data_dir}")
    simulator.generate(config, data_dir, overwrite=True,
                       progress=common.progress_printer("impressions"))
  return (os.path.join(data_dir, "train-*.tfrecord"),
          os.path.join(data_dir, "test-*.tfrecord"))


@common.command()
def main(argv):
  from egin_tf.train import distribute  # pylint: disable=g-import-not-at-top
  _refuse_flags_outside_mode()
  run = _resolved_run()
  if FLAGS.stream is not None and not streamable(run.train.model):
    raise common.FlagError(f"--model {run.train.model} cannot train on --stream: "
                           "it needs the whole training data before its first "
                           "step (a first stage, e.g. EGES's graph)")
  if FLAGS.print_config:
    print(json.dumps(run.to_dict(), indent=2))
    return
  task = _checked_task(distribute)
  if FLAGS.strategy == "parameter_server" and task.serves_only:
    distribute.serve_forever(task)
    return
  _check_paths()
  if FLAGS.stream is not None:
    _train_stream(run, FLAGS.eval, distribute)
    return
  train_pattern, eval_pattern = FLAGS.train, FLAGS.eval
  if train_pattern is None:
    train_pattern, eval_pattern = _simulated_data(FLAGS.model_dir, run.train.seed)
  verbose = common.keras_verbosity(FLAGS.verbose)
  if FLAGS.strategy == "parameter_server":
    verbose = min(verbose, 2)  # Keras' progress bar cannot follow remote steps
  result = offline.train(train_pattern, FLAGS.model_dir, run.train,
                         eval_pattern=eval_pattern, verbose=verbose,
                         strategy=distribute.make_strategy(FLAGS.strategy),
                         stage_progress=common.progress_printer)
  if not task.is_chief:
    return
  print(f"trained {result['steps']} steps in {result['seconds']:.0f} s "
        f"({result['examples_per_second']:.0f} examples/s); model in "
        f"{FLAGS.model_dir}; TensorBoard: tensorboard --logdir "
        f"{os.path.join(FLAGS.model_dir, 'logs')}")


def _refuse_flags_outside_mode() -> None:
  """Flags of one mode given in another are refused, not ignored."""
  def given(name: str) -> bool:
    return FLAGS[name].present > 0

  offline, simulated = FLAGS.stream is None, FLAGS.train is None and FLAGS.stream is None
  refusals = [
      (FLAGS.stream is not None and FLAGS.train is not None,
       "--stream and --train exclude each other"),
      (given("sim_users") and not simulated,
       "--sim_users applies only when --train and --stream are omitted"),
      (given("eval") and simulated, "--eval needs --train or --stream (the "
       "simulated data brings its own test split)"),
      (given("verbose") and not offline, "--verbose applies to offline training; "
       "--stream prints its own progress lines"),
  ]
  for refused, why in refusals:
    if refused:
      raise common.FlagError(why)


def _check_paths() -> None:
  common.require_pattern("train", split="train")
  common.require_pattern("eval", split="test")
  if FLAGS.stream is not None and not os.path.isdir(FLAGS.stream):
    raise common.FlagError(f"--stream={FLAGS.stream}: no such folder (a stream "
                           "folder holds schema.json and the shards)")


def _resolved_run() -> run_config.RunConfig:
  """Defaults (then --stream's), the --config file, the flags given: the run's config."""
  layers = [CLI_DEFAULTS]
  if FLAGS.config is not None:
    layers.append((FLAGS.config, _config_file(FLAGS.config)))
  model = _model_name(layers)
  if FLAGS.stream is not None:
    layers.insert(1, run_config.stream_defaults(model))
  layers.append((COMMAND_LINE, _flag_sections(model)))
  try:
    return run_config.resolve(layers, stream=FLAGS.stream is not None)
  except run_config.RunConfigError as e:
    if e.source != COMMAND_LINE:
      raise common.FlagError(str(e)) from None
    flag = ("model" if (e.section, e.field) == ("model", "name") else
            config_flags.flag_of(CONFIG_FLAGS, e.section, e.field) or e.field)
    raise common.FlagError(f"--{flag}={e.value!r}: {e.allowed}") from None


def _config_file(path: str) -> dict:
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  except (OSError, tf.errors.OpError) as e:
    reason = getattr(e, "strerror", None) or getattr(e, "message", str(e))
    raise common.FlagError(f"--config={path}: cannot read it ({reason})") from None
  except json.JSONDecodeError as e:
    raise common.FlagError(f"--config={path}: not JSON: line {e.lineno} column "
                           f"{e.colno}: {e.msg}") from None


def _model_name(layers) -> str:
  """The run's model: --model if given, else the last layer's that names one."""
  if FLAGS["model"].present:
    return FLAGS.model
  return next(layer["model"]["name"] for _, layer in reversed(layers)
              if isinstance(layer, dict) and isinstance(layer.get("model"), dict)
              and "name" in layer["model"])


def _flag_sections(model: str) -> dict:
  """The sections of the flags given, for a run of ``model``."""
  active = {"train": "train", "model": model}
  if FLAGS.stream is not None:
    active["stream"] = "stream"
  sections = config_flags.overrides(
      CONFIG_FLAGS, active, {"model": f"does not apply to --model {model}",
                             "stream": "applies only with --stream"})
  sizes = {kind: FLAGS[f"{kind}_buckets"].value for kind in train_config.TABLE_KINDS
           if FLAGS[f"{kind}_buckets"].value is not None}
  if sizes:
    sections.setdefault("train", {})["table_sizes"] = sizes
  if FLAGS["model"].present:
    sections.setdefault("model", {})["name"] = FLAGS.model
  return sections


def _checked_task(distribute):
  """This process's task in TF_CONFIG's cluster, refusing flags it cannot run."""
  try:
    task = distribute.current_task()
    distribute.check_cluster(FLAGS.strategy, task)
  except ValueError as e:
    raise common.FlagError(str(e)) from None
  if FLAGS.strategy not in STREAM_STRATEGIES and FLAGS.stream is not None:
    raise common.FlagError(f"--stream trains in one process or on a cluster; "
                           f"--strategy {FLAGS.strategy} is for offline training "
                           "(--train)")
  if (FLAGS.strategy == "multi_worker_mirrored" and FLAGS.train is None and
      FLAGS.stream is None):
    raise common.FlagError("--strategy multi_worker_mirrored needs --train: every "
                           "worker reads it (make one with `egin-tf generate`)")
  return task


def _train_stream(run: run_config.RunConfig, eval_pattern, distribute) -> None:
  if FLAGS.strategy == "multi_worker_mirrored" and run.stream.follow:
    raise common.FlagError("--follow is not supported with --strategy "
                           "multi_worker_mirrored: workers listing a folder while "
                           "shards land could cut different batches (use "
                           "parameter_server)")
  strategy = None
  if FLAGS.strategy != "none":
    strategy = distribute.make_strategy(FLAGS.strategy)
  try:
    result = streaming.train_stream(FLAGS.stream, FLAGS.model_dir, run.train,
                                    run.stream, eval_pattern=eval_pattern,
                                    strategy=strategy)
  except model_dir_lib.ResumeMismatchError as e:
    raise common.FlagError(str(e)) from None
  except (streaming.NonFiniteLossError, streaming.CheckpointWriteError,
          streaming.ExportWriteError) as e:
    # Not the user's input, but the same treatment: one clear line, exit 1.
    raise common.InputError(str(e)) from None
  if not distribute.current_task().is_chief:
    return  # a synchronous worker: the chief reports
  print(f"model in {FLAGS.model_dir}; {result['steps']:,} steps in total; "
        f"TensorBoard: tensorboard --logdir {os.path.join(FLAGS.model_dir, 'logs')}")
