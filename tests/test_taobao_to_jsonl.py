"""Tests of experiments/taobao_to_jsonl.py, on a hand-made log and the real sample."""


import bisect
import collections
import csv
import json
import os

import pytest

from data_pipeline.bad_input import BadRecordError, BadRecordPolicy
from data_pipeline.jsonl import convert_jsonl
from experiments import taobao_to_jsonl

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "shared", "data", "taobao_userbehavior_head",
                      "UserBehavior_head.csv")

# user 1 clicks A and B in second 10, C and D in second 20, A again at 30, and puts F
# in the cart; user 2 clicks E once. Rows are out of time order on purpose.
HAND_LOG = """\
1,300,9,pv,20
1,100,7,pv,10
1,200,7,pv,10
1,400,9,pv,20
1,600,8,cart,5
1,100,7,pv,30
2,500,8,pv,15
"""


def _records(csv_text, tmp_path, max_hist, seed=0):
  path = tmp_path / "log.csv"
  path.write_text(csv_text)
  log = taobao_to_jsonl.read_user_behavior(str(path), BadRecordPolicy("stop"))
  return list(taobao_to_jsonl.impressions(log, max_hist=max_hist, seed=seed))


def test_hand_made_log_gives_hand_computed_impressions(tmp_path):
  records = _records(HAND_LOG, tmp_path, max_hist=2)
  a, b, c, d = [100, 10, [7]], [200, 10, [7]], [300, 20, [9]], [400, 20, [9]]
  # Second 10 is user 1's first: A and B are not impressions. C and D (second 20)
  # see only second-10 clicks; A at 30 sees the 2 most recent earlier clicks.
  # User 2 has a single click: no impression. The only item user 1 never touched
  # (F was carted) is E, so every negative is E with its category 8.
  positives = [(300, 9, 20, [a, b]), (400, 9, 20, [a, b]), (100, 7, 30, [c, d])]
  expected = []
  for item, cat, time, history in positives:
    positive = {"user": 1, "time": time, "item": item, "item_cats": [cat],
                "label": 1, "clicks": history}
    expected += [positive, dict(positive, item=500, item_cats=[8], label=0)]
  assert records == expected


def test_bad_csv_row_names_file_and_line(tmp_path):
  path = tmp_path / "log.csv"
  path.write_text("1,100,7,pv,10\n1,100,7,click,11\n")
  with pytest.raises(BadRecordError) as raised:
    taobao_to_jsonl.read_user_behavior(str(path), BadRecordPolicy("stop"))
  assert str(raised.value) == (
      f"{path}:2: behavior 'click' is not one of pv, cart, fav, buy")
  policy = BadRecordPolicy("skip")
  path.write_text("1,100,7,pv,10\n1,100,7,pv\n1,x,7,pv,12\n")
  log = taobao_to_jsonl.read_user_behavior(str(path), policy)
  assert policy.skipped == {"wrong_field_count": 1, "wrong_type": 1}
  assert log.rows == 3 and log.catalog == [100]


def _independent_counts(path):
  """From the raw CSV, without the experiment's code."""
  pv_times = collections.defaultdict(list)
  pv_items = collections.defaultdict(set)
  with open(path, newline="") as f:
    for user, item, _, behavior, timestamp in csv.reader(f):
      if behavior == "pv":
        pv_times[int(user)].append(int(timestamp))
        pv_items[int(user)].add(int(item))
  positives = 0
  for times in pv_times.values():
    times.sort()
    # A positive: a pv at a later second than the user's first pv.
    positives += sum(1 for t in times if t > times[0])
  return positives, pv_times, pv_items


def test_real_sample_impressions_and_conversion(tmp_path):
  assert os.path.exists(SAMPLE), (
      f"the shared Taobao sample is missing: {os.path.abspath(SAMPLE)}")
  expected_positives, pv_times, pv_items = _independent_counts(SAMPLE)
  assert expected_positives > 70_000  # the sample has 75,872 pv rows

  log = taobao_to_jsonl.read_user_behavior(SAMPLE, BadRecordPolicy("stop"))
  max_hist = 200
  positives = negatives = 0
  previous = None
  for record in taobao_to_jsonl.impressions(log, max_hist=max_hist, seed=3):
    user, time, history = record["user"], record["time"], record["clicks"]
    if record["label"] == 1:
      positives += 1
      previous = record
      # History: the most recent earlier-second clicks, oldest first.
      earlier = bisect.bisect_left(pv_times[user], time)
      assert len(history) == min(max_hist, earlier)
      times = [entry[1] for entry in history]
      assert times == pv_times[user][earlier - len(history):earlier]
      assert all(t < time for t in times)
      assert record["item"] in pv_items[user]
    else:
      negatives += 1
      assert record["label"] == 0
      assert record["item"] not in pv_items[user]
      assert {k: v for k, v in record.items() if k not in ("item", "item_cats",
                                                           "label")} == {
          k: v for k, v in previous.items() if k not in ("item", "item_cats",
                                                         "label")}
      assert record["item_cats"] == [log.item_category[record["item"]]]
      previous = None
  assert positives == expected_positives
  assert negatives == positives

  # The whole output converts without a single bad line. Shorter histories keep this
  # fast; the ordering and earlier-than rules are the same at any length.
  jsonl = str(tmp_path / "taobao.jsonl")
  counts = taobao_to_jsonl.convert(SAMPLE, jsonl, max_hist=5, seed=3)
  assert (counts.positives, counts.negatives, counts.lines) == (
      expected_positives, expected_positives, 2 * expected_positives)
  with open(jsonl) as f:
    first = json.loads(f.readline())
  assert "query" not in first and "queries" not in first
  report = convert_jsonl(jsonl, str(tmp_path / "data"), on_bad="skip", max_cats=1)
  assert report.skipped == {}
  assert report.lines_read == report.impressions_written == 2 * expected_positives
  assert report.positives_written == expected_positives
