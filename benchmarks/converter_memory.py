"""Peak memory and rows/s of the Taobao converter on 1x and 10x the shared sample.

Usage:
  python benchmarks/converter_memory.py [--copies 10] [--max_hist 200]
      [--input ../shared/data/taobao_userbehavior_head/UserBehavior_head.csv]
      [--with_jsonl] [--jsonl_max_hist 20] [--work_dir DIR]

Makes a file of --copies copies of the UserBehavior sample, shifting the user ids
of copy k by k * 10^digits so that every copy's users stay grouped and distinct
(items and categories repeat, so the item catalog does not grow; with
--distinct_items the item ids are shifted too, to show what the catalog costs).
Each conversion runs in a fresh Python process that reports its own peak RSS
(``resource.getrusage``), so one run's memory cannot hide in another's. The
converter streams: peak RSS beyond the TensorFlow import ("growth") should stay
about the same from 1x to 10x, while a converter holding every row would grow ~10x.

With --with_jsonl, the same inputs also go through experiments/taobao_to_jsonl.py
(in its own process, not measured) and the JSONL converter (measured), with
--jsonl_max_hist clicks per history to keep the JSONL small.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_INPUT = os.path.join(_REPO_ROOT, "..", "shared", "data",
                             "taobao_userbehavior_head", "UserBehavior_head.csv")

FLAGS = flags.FLAGS
flags.DEFINE_string("input", DEFAULT_INPUT, "Taobao UserBehavior CSV to repeat.")
flags.DEFINE_integer("copies", 10, "Copies in the large file.")
flags.DEFINE_integer("max_hist", 200, "Clicks per history (the paper: 200).")
flags.DEFINE_bool("distinct_items", False,
                  "Shift item ids per copy too, so the catalog grows with copies.")
flags.DEFINE_bool("with_jsonl", False,
                  "Also measure the JSONL converter on the same logs as JSONL.")
flags.DEFINE_integer("jsonl_max_hist", 20, "Clicks per history in the JSONL.")
flags.DEFINE_string("work_dir", None, "Folder for the files (default: a temp dir).")
# Internal: one measured conversion, run by the parent in a fresh process.
flags.DEFINE_enum("run_one", None, ["taobao", "jsonl"], "Internal.")
flags.DEFINE_string("out", None, "Internal: output folder of --run_one.")


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_one() -> None:
  """Converts --input and prints one JSON line of measurements."""
  import egin_tf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from data_pipeline import jsonl  # pylint: disable=g-import-not-at-top
  from data_pipeline import taobao  # pylint: disable=g-import-not-at-top
  baseline = _peak_rss_mb()
  start, cpu_start = time.perf_counter(), time.process_time()
  if FLAGS.run_one == "taobao":
    report = taobao.convert_taobao(FLAGS.input, FLAGS.out, max_hist=FLAGS.max_hist,
                                   time_window=taobao.PAPER_TIME_WINDOW,
                                   utc_offset_hours=8)
  else:
    report = jsonl.convert_jsonl(FLAGS.input, FLAGS.out, max_cats=1)
  print(json.dumps({
      "rows": report.lines_read, "impressions": report.impressions_written,
      "seconds": time.perf_counter() - start,
      "cpu_seconds": time.process_time() - cpu_start,
      "baseline_mb": baseline, "peak_mb": _peak_rss_mb()}))


def _repeat(path: str, copies: int, out_path: str, distinct_items: bool) -> None:
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split(",") for line in f]
  user_shift = 10 ** len(str(max(int(r[0]) for r in rows)))
  item_shift = 10 ** len(str(max(int(r[1]) for r in rows)))
  with open(out_path, "w", encoding="utf-8") as f:
    for copy in range(copies):
      for user, item, cat, behavior, timestamp in rows:
        if distinct_items:
          item = str(int(item) + copy * item_shift)
        f.write(f"{int(user) + copy * user_shift},{item},{cat},{behavior},"
                f"{timestamp}\n")


def _measure(kind: str, input_path: str, out: str) -> dict:
  result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--run_one={kind}",
       f"--input={input_path}", f"--out={out}", f"--max_hist={FLAGS.max_hist}"],
      check=True, capture_output=True, text=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def _to_jsonl(csv_path: str, jsonl_path: str) -> None:
  code = ("import importlib.util, sys; "
          "spec = importlib.util.spec_from_file_location('t', sys.argv[1]); "
          "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
          "m.convert(sys.argv[2], sys.argv[3], max_hist=int(sys.argv[4]), seed=0)")
  subprocess.run([sys.executable, "-c", code,
                  os.path.join(_REPO_ROOT, "experiments", "taobao_to_jsonl.py"),
                  csv_path, jsonl_path, str(FLAGS.jsonl_max_hist)],
                 check=True, capture_output=True)


def main(argv):
  del argv
  if FLAGS.run_one:
    _run_one()
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="converter_memory-")
  big = os.path.join(work, f"UserBehavior_x{FLAGS.copies}.csv")
  _repeat(FLAGS.input, FLAGS.copies, big, FLAGS.distinct_items)
  inputs = [("1x", FLAGS.input), (f"{FLAGS.copies}x", big)]
  runs = [("taobao", size, path, path) for size, path in inputs]
  if FLAGS.with_jsonl:
    for size, path in inputs:
      jsonl_path = os.path.join(work, f"impressions_{size}.jsonl")
      _to_jsonl(path, jsonl_path)
      runs.append(("jsonl", size, jsonl_path, path))
  items = "distinct items per copy" if FLAGS.distinct_items else "items repeat"
  print(f"max_hist={FLAGS.max_hist} (jsonl: {FLAGS.jsonl_max_hist}), {items}, "
        f"files in {work}")
  print(f"{'converter':9} {'input':>5} {'rows':>9} {'impressions':>11} "
        f"{'rows/s':>8} {'rows/cpu-s':>10} {'peak MB':>8} {'growth MB':>9}")
  for kind, size, path, _ in runs:
    out = os.path.join(work, f"out_{kind}_{size}")
    m = _measure(kind, path, out)
    print(f"{kind:9} {size:>5} {m['rows']:>9,} {m['impressions']:>11,} "
          f"{m['rows'] / m['seconds']:>8,.0f} "
          f"{m['rows'] / m['cpu_seconds']:>10,.0f} {m['peak_mb']:>8,.0f} "
          f"{m['peak_mb'] - m['baseline_mb']:>9,.0f}")


if __name__ == "__main__":
  app.run(main)
