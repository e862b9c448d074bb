"""egin-tf convert: convert raw impression logs to TFRecords of our schema.

Usage: egin-tf convert --format jsonl --input X.jsonl --out DIR [--shards N]
                       [--on_bad stop|skip] [--max_cats C]

A bad input line stops the run with `file:line: reason` and a non-zero exit, and
nothing is written (output goes to a temporary folder renamed only on success).
With --on_bad skip, bad lines are skipped and counted per reason.
"""

import time

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_enum("format", "jsonl", ["jsonl"],
                  "Input format. jsonl: the impression JSONL interchange format, "
                  "version 1 (../shared/impression-jsonl.md).")
flags.DEFINE_string("input", None, "Input file (.gz accepted).")
flags.DEFINE_string("out", None, "Output folder (must not exist unless --overwrite).")
flags.DEFINE_integer("shards", 1, "TFRecord shards to write.")
flags.DEFINE_enum("on_bad", "stop", ["stop", "skip"],
                  "On a bad line: stop with file:line: reason, or skip and count.")
flags.DEFINE_integer("max_cats", 4, "Categories per item/query/history entry (C); "
                     "more is a bad line.")
flags.DEFINE_bool("overwrite", False, "Replace an existing output folder.")
flags.mark_flags_as_required(["input", "out"])


@common.clean_errors
def main(argv):
  common.no_extra_args(argv)
  from data_pipeline import jsonl  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  report = jsonl.convert_jsonl(
      FLAGS.input, FLAGS.out, num_shards=FLAGS.shards, on_bad=FLAGS.on_bad,
      max_cats=FLAGS.max_cats, overwrite=FLAGS.overwrite,
      progress=common.progress_printer("lines"))
  seconds = time.perf_counter() - start
  print(report.summary())
  print(f"wrote {FLAGS.out} in {seconds:.1f} s")
