"""Statistics of the shared real-data samples after conversion, like the paper's Table 1.

Converts each sample in ``../shared/data`` with its converter into a temporary
folder and prints one table row per dataset: impressions, positives, users,
items, queries and categories (all from the written ``schema.json``: ``splits``
and ``vocab``; items and queries count history entries too), plus the input rows
read and the converter's speed. Rows are the input's lines (for JDsearch one
line is one user with up to 200 candidates, so compare impressions/s across
formats, not rows/s). A converter whose module does not exist yet is skipped
with a note.

Usage:
  python -m experiments.dataset_stats
  python -m experiments.dataset_stats --formats jdsearch --keep_dir runs/stats
"""

import dataclasses
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from typing import Callable, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import ON_BAD_CHOICES, BadRecordError, NoImpressionsError
from experiments import common

_FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Sample:
  """A shared sample and the converter that reads it.

  Attributes:
    format: the converter's ``egin-tf convert --format`` name.
    title: the dataset's name in the table.
    module: the converter's module.
    function: its ``convert_<format>`` function.
    path: the input file, relative to the data folder.
  """
  format: str
  title: str
  module: str
  function: str
  path: str


SAMPLES = (
    Sample("taobao", "Taobao UserBehavior (head)", "data_pipeline.taobao",
           "convert_taobao", "taobao_userbehavior_head/UserBehavior_head.csv"),
    Sample("trivago", "trivago RecSys 2019 (sample)", "data_pipeline.trivago",
           "convert_trivago", "trivago/trivago_sample.csv.gz"),
    Sample("jdsearch", "JDsearch (sample)", "data_pipeline.jdsearch",
           "convert_jdsearch", "jdsearch_sample/user_behavior_data_sample.txt"),
)
FORMATS = tuple(sample.format for sample in SAMPLES)


def define_flags() -> None:
  # Only when run as a script: importing this module must not claim flag names.
  flags.DEFINE_string("data_dir", common.SHARED_DATA_DIR,
                      "Folder of the shared samples (default: ../shared/data "
                      "beside the repository).")
  flags.DEFINE_list("formats", list(FORMATS),
                    f"Datasets to convert, of {', '.join(FORMATS)}.")
  flags.DEFINE_enum("on_bad", "stop", list(ON_BAD_CHOICES),
                    "Passed to every converter: stop at a bad input row (the "
                    "dataset is then left out of the table, with a note), or skip "
                    "and count bad rows.")
  flags.DEFINE_string("keep_dir", None, "Keep the converted datasets in "
                      "KEEP_DIR/<format> (which must not exist); default: a temporary "
                      "folder, removed at the end.")


@dataclasses.dataclass
class DatasetStats:
  """One table row: what a converted sample holds and how fast it converted."""
  title: str
  impressions: int
  positives: int
  users: int
  items: int
  queries: int
  categories: int
  rows: int
  seconds: float

  @classmethod
  def of(cls, title: str, schema: schema_lib.DatasetSchema, rows: int,
         seconds: float) -> "DatasetStats":
    splits = schema.splits.values()
    return cls(title=title,
               impressions=sum(s["impressions"] for s in splits),
               positives=sum(s["positives"] for s in splits),
               users=schema.vocab["users"], items=schema.vocab["items"],
               queries=schema.vocab["queries"],
               categories=schema.vocab["categories"], rows=rows, seconds=seconds)


def find_converter(sample: Sample) -> Optional[Callable]:
  """The sample's converter function, or None if its module does not exist yet."""
  if importlib.util.find_spec(sample.module) is None:
    return None
  return getattr(importlib.import_module(sample.module), sample.function, None)


def convert_sample(sample: Sample, converter: Callable, data_dir: str,
                   out_dir: str, on_bad: str = "stop") -> DatasetStats:
  """Converts one sample into ``out_dir`` with default options, timed."""
  start = time.perf_counter()
  report = converter(os.path.join(data_dir, sample.path), out_dir, on_bad=on_bad)
  seconds = time.perf_counter() - start
  print(report.summary(), flush=True)
  return DatasetStats.of(sample.title, schema_lib.DatasetSchema.load(out_dir),
                         rows=report.lines_read, seconds=seconds)


def collect(formats: Sequence[str], data_dir: str, work_dir: str,
            on_bad: str = "stop") -> Tuple[List[DatasetStats], List[str]]:
  """Converts the samples of ``formats`` into ``work_dir/<format>``.

  Formats whose converter does not exist yet are skipped with a printed note;
  a conversion that fails on bad input is left out with a printed note too.

  Returns:
    The table rows, and the formats whose conversion failed.
  """
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise ValueError(f"unknown formats {unknown}; known: {', '.join(FORMATS)}")
  rows, failed = [], []
  for sample in SAMPLES:
    if sample.format not in formats:
      continue
    converter = find_converter(sample)
    if converter is None:
      print(f"note: skipped {sample.format}: no {sample.module}.{sample.function} "
            "yet", flush=True)
      continue
    try:
      rows.append(convert_sample(sample, converter, data_dir,
                                 os.path.join(work_dir, sample.format), on_bad))
    except (BadRecordError, NoImpressionsError) as e:
      print(f"note: {sample.format} failed (left out of the table): {e}",
            flush=True)
      failed.append(sample.format)
  return rows, failed


COLUMNS = ("dataset", "impressions", "positives", "users", "items", "queries",
           "categories", "rows read", "seconds", "rows/s", "impressions/s")


def format_table(stats: Sequence[DatasetStats]) -> str:
  """A Markdown table, one row per dataset, numbers right-aligned."""
  body = []
  for s in stats:
    body.append([s.title] + [f"{n:,}" for n in (
        s.impressions, s.positives, s.users, s.items, s.queries, s.categories,
        s.rows)] + [f"{s.seconds:.2f}", f"{s.rows / s.seconds:,.0f}",
                    f"{s.impressions / s.seconds:,.0f}"])
  widths = [max(len(row[i]) for row in [list(COLUMNS)] + body)
            for i in range(len(COLUMNS))]

  def line(cells):
    return "| " + " | ".join(
        cell.ljust(w) if i == 0 else cell.rjust(w)
        for i, (cell, w) in enumerate(zip(cells, widths))) + " |"

  rule = "|" + "|".join(
      "-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
  return "\n".join([line(COLUMNS), rule] + [line(row) for row in body])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _FLAGS.keep_dir:
    stats, failed = collect(_FLAGS.formats, _FLAGS.data_dir, _FLAGS.keep_dir,
                            _FLAGS.on_bad)
  else:
    with tempfile.TemporaryDirectory(prefix="dataset_stats-") as work_dir:
      stats, failed = collect(_FLAGS.formats, _FLAGS.data_dir, work_dir,
                              _FLAGS.on_bad)
  if stats:
    print()
    print(format_table(stats))
  else:
    print("no dataset converted; nothing to show", file=sys.stderr)
  return 1 if failed or not stats else 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
