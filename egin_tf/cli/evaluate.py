"""egin-tf evaluate: exact AUC, gAUC and logloss of a trained model.

Usage: egin-tf evaluate --model_dir DIR --data PATTERN [--batch_size N]

Prints the metrics beside the oracle AUC when the data came from the simulator.
"""

import json

from absl import flags

from data_pipeline.tf_env import tf
from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory written by `egin-tf train`.")
flags.DEFINE_string("data", None, "TFRecord glob (comma-separated globs allowed).")
flags.DEFINE_integer("batch_size", 1024, "Examples per evaluation batch.", lower_bound=1)
flags.DEFINE_string("output_json", None, "Also write the metrics to this file.")


@common.command(required=["model_dir", "data"])
def main(argv):
  common.require_model_dir()
  common.require_pattern("data", split="test")
  from egin_tf.train import evaluation  # pylint: disable=g-import-not-at-top
  result = evaluation.evaluate(FLAGS.model_dir, FLAGS.data,
                               batch_size=FLAGS.batch_size)
  print(evaluation.format_report(result["eval"], result["oracle"], title="model"))
  if FLAGS.output_json:
    with tf.io.gfile.GFile(FLAGS.output_json, "w") as f:
      json.dump(result, f, indent=2)
