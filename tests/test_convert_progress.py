"""Progress of long conversions (lines, total, share done, rate, ETA) and --version."""


import gzip
import itertools
import os
import random
import re
import subprocess
import sys

import pytest

from data_pipeline.jdsearch import convert_jdsearch
from data_pipeline.jsonl import convert_jsonl
from data_pipeline.taobao import convert_taobao
from data_pipeline.text_input import ReadProgress, numbered_lines, open_binary
from data_pipeline.trivago import COLUMNS, convert_trivago
from egin_tf.cli import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JDSEARCH = os.path.join(REPO, "..", "shared", "data", "jdsearch_sample",
                        "user_behavior_data_sample.txt")


# --- The line a user sees. ---

def test_progress_line_with_total_share_rate_and_eta():
  # 120,000 lines in 120000/25300 s is 25,300 lines/s; 4% done in 4.743 s leaves
  # 4.743 * 0.96 / 0.04 = 113.8 s.
  assert common.progress_line(120_000, "rows", 120_000 / 25_300, 3_000_000,
                              0.04) == (
      "  120,000 rows of 3,000,000 (4.0%)  25,300 rows/s  ETA 1m54s")


@pytest.mark.parametrize("total,fraction,expected", [
    (None, None, "  5,000 lines  2,500 lines/s"),               # rows only
    (None, 0.25, "  5,000 lines (25.0%)  2,500 lines/s  ETA 6s"),  # by bytes
    (5_000, 1.0, "  5,000 lines of 5,000 (100.0%)  2,500 lines/s"),  # done
])
def test_progress_line_leaves_out_what_is_unknown(total, fraction, expected):
  assert common.progress_line(5_000, "lines", 2.0, total, fraction) == expected


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (45, "45s"), (59.6, "1m00s"), (65, "1m05s"), (114, "1m54s"),
    (3599, "59m59s"), (7380, "2h03m")])
def test_duration_text(seconds, text):
  assert common.duration_text(seconds) == text


def test_printer_prints_at_most_every_few_seconds(capsys):
  times = iter([100.0, 101.0, 105.0, 107.0, 110.5])
  report = common.progress_printer("lines", every_seconds=5.0,
                                   clock=lambda: next(times))
  report(10)                # at 101: 1 s after the start, not printed
  report(50, None, 0.5)     # at 105: printed
  report(60)                # at 107: 2 s after the last line, not printed
  report(105, 210, 0.5)     # at 110.5: printed
  assert capsys.readouterr().out.splitlines() == [
      "  50 lines (50.0%)  10 lines/s  ETA 5s",
      "  105 lines of 210 (50.0%)  10 lines/s  ETA 10s"]


# --- What the converters report: lines, the total once known, share done. ---

def _read_all(path, meter):
  with open_binary(path) as f:
    for _ in numbered_lines(f, path, meter):
      pass


def test_read_progress_by_bytes_then_by_lines(tmp_path):
  path = tmp_path / "five.txt"
  path.write_bytes(b"aaaa\n" * 5)  # 25 bytes, 5 bytes a line
  calls = []
  meter = ReadProgress(lambda *call: calls.append(call), [str(path)] * 2, every=2)
  _read_all(str(path), meter)
  _read_all(str(path), meter)
  # Pass 1 by bytes of 2 x 25; after it the 10 lines of both passes are known.
  assert calls == [(2, None, 10 / 50), (4, None, 20 / 50), (5, 10, 0.5),
                   (7, 10, 0.7), (9, 10, 0.9), (10, 10, 1.0)]


def test_read_progress_of_a_gzip_file_follows_its_compressed_bytes(tmp_path):
  # Hex of random bytes compresses evenly: the share of compressed bytes read
  # tracks the share of lines (up to gzip's read-ahead of a few blocks).
  rng = random.Random(0)
  lines = [rng.randbytes(32).hex().encode() for _ in range(40_000)]
  path = str(tmp_path / "log.txt.gz")
  with gzip.open(path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  calls = []
  _read_all(path, ReadProgress(lambda *call: calls.append(call), [path],
                               every=4_000))
  assert [c[0] for c in calls] == list(range(4_000, 40_001, 4_000)) + [40_000]
  assert [c[1] for c in calls] == [None] * 10 + [40_000]
  shares = [c[2] for c in calls]
  assert shares == sorted(shares) and shares[-1] == 1.0
  for lines_read, _, share in calls[:-1]:
    assert abs(share - lines_read / 40_000) < 0.03


def test_unknown_size_gives_no_share(tmp_path):
  path = tmp_path / "three.txt"
  path.write_bytes(b"a\nb\nc\n")
  calls = []
  meter = ReadProgress(lambda *call: calls.append(call),
                       [str(path), str(tmp_path / "not_there")], every=2)
  _read_all(str(path), meter)
  assert calls == [(2, None, None), (3, None, None)]


def _final_line(capsys):
  return capsys.readouterr().out.splitlines()[-1]


def _printer():
  """Prints every call; the clock ticks 1 s per call."""
  return common.progress_printer("lines", every_seconds=0,
                                 clock=itertools.count().__next__)


def test_every_format_prints_progress_to_the_end(tmp_path, capsys):
  jsonl = tmp_path / "log.jsonl"
  jsonl.write_text('{"user": 1, "time": 10, "item": 5, "label": 1}\n'
                   '{"user": 1, "time": 11, "item": 6, "label": 0}\n')
  convert_jsonl(str(jsonl), str(tmp_path / "jsonl"), progress=_printer())
  # One call at the end, 1 s after the start.
  assert _final_line(capsys) == "  2 lines of 2 (100.0%)  2 lines/s"

  taobao = tmp_path / "taobao.csv"
  taobao.write_text("1,100,7,pv,10\n1,200,7,pv,20\n1,300,7,pv,30\n2,400,8,pv,10\n")
  convert_taobao(str(taobao), str(tmp_path / "taobao"), split="last_click",
                 progress=_printer())
  # Two passes of 4 rows, a call at the end of each: 8 lines at 2 s.
  assert _final_line(capsys) == "  8 lines of 8 (100.0%)  4 lines/s"

  trivago = tmp_path / "trivago.csv"
  trivago.write_text(",".join(COLUMNS) + "\n"
                     "u,s,10,1,clickout item,1,IT,Rome,mobile,,1|2,5|6\n")
  convert_trivago(str(trivago), str(tmp_path / "trivago"), test_fraction=0.0,
                  progress=_printer())
  assert _final_line(capsys) == "  4 lines of 4 (100.0%)  2 lines/s"

  # The real sample: product file (410 lines), then 4 behaviour lines.
  convert_jdsearch(JDSEARCH, str(tmp_path / "jdsearch"), progress=_printer())
  assert _final_line(capsys) == "  414 lines of 414 (100.0%)  207 lines/s"


# --- egin-tf --version ---

def test_version_prints_the_installed_package_version():
  with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
    version = re.search(r'version="([^"]+)"', f.read()).group(1)
  proc = subprocess.run([sys.executable, "-m", "egin_tf.cli.main", "--version"],
                        capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert (proc.returncode, proc.stdout) == (0, f"egin-tf {version}\n")
