"""egin-tf convert: convert raw impression logs to TFRecords of our schema.

Usage:
  egin-tf convert --format jsonl --input X.jsonl --out DIR [--shards N] [--max_cats C]
  egin-tf convert --format taobao --input UserBehavior.csv --out DIR [--split last_click]
                  [--negatives 1] [--negative_sampling category] [--max_hist 200]
                  [--time_window 2017-11-25:2017-12-03]
  egin-tf convert --format trivago --input train.csv.gz --out DIR [--test_fraction 0.25]
  egin-tf convert --format jdsearch --input user_behavior_data.txt --out DIR [--meta F]

Formats: jsonl (the impression JSONL interchange format, version 1), taobao (Tianchi
UserBehavior, the paper's public dataset: item-only), trivago (RecSys Challenge 2019
search sessions), jdsearch (the JDsearch search log). `.gz` input is accepted.

A bad input row stops the run with `file:line: reason` and a non-zero exit, and nothing
is written (output goes to a temporary folder renamed only on success). With
--on_bad skip, bad rows are skipped and counted per reason in the printed report;
rows that look odd but are the dataset as published (e.g. trivago session ids reused
with their steps restarting) are converted as its authors intend and counted too.

Progress: every few seconds a line `  120,000 lines of 3,000,000 (4.0%)  25,300
lines/s  ETA 1m54s`, counting every pass over the input (taobao and trivago read it
twice): the share done by bytes read of the file size, by lines once a first pass
has counted them.
"""

import time

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

FORMATS = ["jsonl", "taobao", "trivago", "jdsearch"]

flags.DEFINE_enum("format", "jsonl", FORMATS, "Input format (see above).")
flags.DEFINE_string("input", None, "Input file (.gz accepted).")
flags.DEFINE_string("out", None, "Output folder (must not exist unless --overwrite).")
flags.DEFINE_integer("shards", 1, "TFRecord shards to write per split.", lower_bound=1)
flags.DEFINE_enum("on_bad", "stop", ["stop", "skip"],
                  "On a bad row: stop with file:line: reason, or skip and count.")
flags.DEFINE_bool("overwrite", False, "Replace an existing output folder.")
flags.DEFINE_integer("max_hist", None, "Most recent clicks (and queries) kept per "
                     "impression; default: the format's (taobao 200 as in the "
                     "paper, trivago and jdsearch 100).", lower_bound=1)
# jsonl
flags.DEFINE_integer("max_cats", 4, "jsonl: categories per item/query/history "
                     "entry (C); more is a bad line.", lower_bound=1)
# taobao
flags.DEFINE_integer("negatives", 1, "taobao: sampled negatives per click "
                     "(items the user had not touched by the click's second).",
                     lower_bound=0)
flags.DEFINE_enum("negative_sampling", "uniform", ["uniform", "popularity", "category"],
                  "taobao: how negatives are drawn: uniform over the catalog (the "
                  "paper's); popularity: by the items' clicks before the "
                  "impression; category: items of the clicked item's category, by "
                  "their clicks before the impression (like real search results). "
                  "Too few candidates: the rest come from popularity, then uniform, "
                  "counted in the report.")
flags.DEFINE_enum("split", "last_day", ["last_day", "last_click"],
                  "taobao: test split: impressions on the last calendar day, or "
                  "each user's last click (the paper's protocol).")
flags.DEFINE_string("time_window", None, "taobao: keep only rows from START to END "
                    "(YYYY-MM-DD, both included), dropping and counting the rest; "
                    "the paper's dataset window is 2017-11-25:2017-12-03 in "
                    "Beijing days (add --utc_offset_hours 8). Off by default.")
flags.DEFINE_integer("utc_offset_hours", 0, "taobao: hours east of UTC of the days "
                     "used by --split last_day and --time_window (Tianchi's days "
                     "are Beijing days: 8).")
flags.DEFINE_integer("seed", 0, "taobao: seed of the negative sampling.")
# trivago
flags.DEFINE_float("test_fraction", 0.25, "trivago: share of clickouts, the latest "
                   "by time, whose impressions form the test split.",
                   lower_bound=0.0, upper_bound=1.0)
# jdsearch
flags.DEFINE_string("meta", None, "jdsearch: product file (wid, 4-level categories); "
                    "default: product_meta_data_sample.txt or product_data.txt "
                    "beside --input.")
flags.DEFINE_integer("min_label", 1, "jdsearch: smallest candidate label that is a "
                     "positive: 1 click, 2 add to cart, 3 purchase.",
                     lower_bound=1, upper_bound=3)

# The flags of one format (their help says which); refused with another.
FORMAT_FLAGS = {"max_cats": ("jsonl",), "negatives": ("taobao",),
                "negative_sampling": ("taobao",),
                "split": ("taobao",), "time_window": ("taobao",),
                "utc_offset_hours": ("taobao",), "seed": ("taobao",),
                "test_fraction": ("trivago",), "meta": ("jdsearch",),
                "min_label": ("jdsearch",),
                "max_hist": ("taobao", "trivago", "jdsearch")}


def _check_flags() -> None:
  for flag, formats in FORMAT_FLAGS.items():
    common.refuse_outside(flag, "format", formats)
  common.require_file("input")
  common.require_file("meta")
  if common.tf_io_exists(FLAGS.out) and not FLAGS.overwrite:
    raise common.FlagError(f"--out={FLAGS.out}: exists; pass --overwrite to "
                           "replace it")


def _convert(fmt: str, common_args: dict):
  """Runs the converter of ``fmt`` with its format-specific flags."""
  # pylint: disable=g-import-not-at-top
  if FLAGS.max_hist is not None:
    common_args["max_hist"] = FLAGS.max_hist
  if fmt == "jsonl":
    from data_pipeline import jsonl
    common_args.pop("max_hist", None)
    return jsonl.convert_jsonl(FLAGS.input, FLAGS.out, max_cats=FLAGS.max_cats,
                               **common_args)
  if fmt == "taobao":
    from data_pipeline import taobao
    return taobao.convert_taobao(FLAGS.input, FLAGS.out, negatives=FLAGS.negatives,
                                 negative_sampling=FLAGS.negative_sampling,
                                 split=FLAGS.split, time_window=FLAGS.time_window,
                                 utc_offset_hours=FLAGS.utc_offset_hours,
                                 seed=FLAGS.seed, **common_args)
  if fmt == "trivago":
    from data_pipeline import trivago
    return trivago.convert_trivago(FLAGS.input, FLAGS.out,
                                   test_fraction=FLAGS.test_fraction, **common_args)
  from data_pipeline import jdsearch
  return jdsearch.convert_jdsearch(FLAGS.input, FLAGS.out, meta_path=FLAGS.meta,
                                   min_label=FLAGS.min_label, **common_args)


@common.command(required=["input", "out"])
def main(argv):
  _check_flags()
  start = time.perf_counter()
  try:
    report = _convert(FLAGS.format, {
        "num_shards": FLAGS.shards, "on_bad": FLAGS.on_bad,
        "overwrite": FLAGS.overwrite,
        "progress": common.progress_printer("lines")})
  except common.BAD_INPUT_ERRORS:
    raise
  except ValueError as e:
    # The converters check their options (e.g. a malformed --time_window) with
    # ValueError; those are the user's input too.
    raise common.InputError(str(e)) from None
  seconds = time.perf_counter() - start
  print(report.summary())
  print(f"wrote {FLAGS.out} in {seconds:.1f} s "
        f"({report.lines_read / max(seconds, 1e-9):,.0f} rows/s)")
