"""egin-tf train: train a CTR model on impression TFRecords.

Usage:
  egin-tf train                      # simulate search logs, train the best model
  egin-tf train --train 'd/train-*' --eval 'd/test-*' --model dnn --model_dir runs/x

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
flags.DEFINE_integer("batch_size", 256, "Examples per step.")
flags.DEFINE_integer("epochs", 2, "Passes over the training data.")
flags.DEFINE_integer("steps", None, "Total steps; overrides --epochs.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("embedding_dim", 10, "Embedding size (the paper uses 10).")
flags.DEFINE_integer("max_clicks", 100, "Click history kept (most recent).")
flags.DEFINE_integer("max_queries", 100, "Query history kept (most recent).")
flags.DEFINE_integer("seed", 0, "Seed of initialization, shuffling and simulation.")
flags.DEFINE_integer("log_every", 200, "Steps between progress lines/checkpoints.")
flags.DEFINE_integer("sim_users", 2000, "Users simulated when --train is omitted.")
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
  from egin_tf import training  # pylint: disable=g-import-not-at-top
  train_pattern, eval_pattern = FLAGS.train, FLAGS.eval
  if train_pattern is None:
    train_pattern, eval_pattern = _simulated_data(FLAGS.model_dir)
  config = training.TrainConfig(
      model=FLAGS.model, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
      steps=FLAGS.steps, learning_rate=FLAGS.learning_rate,
      embedding_dim=FLAGS.embedding_dim, max_clicks=FLAGS.max_clicks,
      max_queries=FLAGS.max_queries, seed=FLAGS.seed, log_every=FLAGS.log_every)
  result = training.train(train_pattern, FLAGS.model_dir, config,
                          eval_pattern=eval_pattern,
                          verbose=common.keras_verbosity(FLAGS.verbose))
  print(f"trained {result['steps']} steps in {result['seconds']:.0f} s "
        f"({result['examples_per_second']:.0f} examples/s); model in "
        f"{FLAGS.model_dir}; TensorBoard: tensorboard --logdir "
        f"{os.path.join(FLAGS.model_dir, 'logs')}")
