"""egin-tf replay: turn a dataset into a stream folder, shards in time order.

Usage: egin-tf replay --data 'd/train-*' --out STREAM_DIR [--records_per_shard N]

Sorts the records of the dataset by impression time and writes them as
STREAM_DIR/impressions-000000.tfrecord, ... with the dataset's schema.json: the
folder a live log pipeline would have filled, for `egin-tf train --stream`.
Holds the records in memory.
"""

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("data", None, "TFRecord glob of the dataset (comma-separated "
                    "globs allowed).")
flags.DEFINE_string("out", None, "The stream folder to write (must not exist).")
flags.DEFINE_integer("records_per_shard", 10_000, "Records per stream shard.",
                     lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")


@common.command(required=["data", "out"])
def main(argv):
  common.require_pattern("data")
  from data_pipeline import stream  # pylint: disable=g-import-not-at-top
  paths = stream.write_time_ordered(FLAGS.data, FLAGS.out, FLAGS.records_per_shard,
                                    progress=common.progress_printer(
                                        "records read + written"),
                                    overwrite=FLAGS.overwrite)
  print(f"wrote {len(paths)} shards in time order to {FLAGS.out}; train on them "
        f"with: egin-tf train --stream {FLAGS.out}")
