"""egin-tf generate: simulate search logs whose true click probabilities are known.

Usage: egin-tf generate --out DIR [--users N] [--seed S] [--shards K]

Writes DIR/train-*.tfrecord and DIR/test-*.tfrecord (split by time: test is the
latest period), DIR/schema.json, and DIR/oracle.json with the exact AUC of the true
click probabilities on the test split: the best AUC any model can reach.
"""

import time

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("out", None, "Output folder (must not exist unless --overwrite).")
flags.DEFINE_integer("users", 2000, "Users to simulate.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed: the same seed gives byte-identical output.",
                     lower_bound=0)
flags.DEFINE_integer("shards", 2, "TFRecord shards per split.", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Replace an existing output folder.")


@common.command(required=["out"])
def main(argv):
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  config = simulator.SimulatorConfig(num_users=FLAGS.users, seed=FLAGS.seed)
  start = time.perf_counter()
  oracle = simulator.generate(config, FLAGS.out, num_shards=FLAGS.shards,
                              overwrite=FLAGS.overwrite,
                              progress=common.progress_printer("impressions"))
  seconds = time.perf_counter() - start
  total = oracle["train_impressions"] + oracle["test_impressions"]
  print(f"wrote {total:,} impressions to {FLAGS.out} in {seconds:.1f} s "
        f"({total / seconds:,.0f}/s); oracle test AUC {oracle['test_auc']:.4f}")
