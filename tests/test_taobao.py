"""Tests of the Taobao UserBehavior converter, on hand-made logs and the real sample."""


import collections
import csv
import gzip
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import BadRecordError, NoImpressionsError
from data_pipeline.ids import stable_id
from data_pipeline.taobao import convert_taobao
from data_pipeline.taobao_negatives import NEGATIVE_SAMPLING
from example_io import assert_nothing_left, read_examples

S = stable_id

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "shared", "data", "taobao_userbehavior_head",
                      "UserBehavior_head.csv")

# 2017-12-02 15:00 UTC = 23:00 in Beijing (UTC+8); T1 ten minutes later; T2 is
# 2017-12-02 17:00 UTC, which is already 2017-12-03 01:00 in Beijing.
T0 = 1512226800
T1 = T0 + 600
T2 = 1512234000
# User 1 clicks 100 and 200 in second T0, 300 and 400 in second T1 (file order 300
# first), 100 again at T2, and carts 600; user 2 clicks 500 once. Out of time order.
HAND_LOG = f"""\
1,300,9,pv,{T1}
1,100,7,pv,{T0}
1,200,7,pv,{T0}
1,400,9,pv,{T1}
1,600,8,cart,{T0 - 5}
1,100,7,pv,{T2}
2,500,8,pv,{T1}
"""


def _expected(label, time, item, cat, history, user=1):
  """The example dict of one impression; history = [(item, time, cat)]."""
  return {
      "label": [label], "user_id": [S(user)], "time": [time], "item_id": [S(item)],
      "item_cats": [S(cat)], "query_id": [0], "query_cats": [0],
      "click_ids": [S(i) for i, _, _ in history],
      "click_times": [t for _, t, _ in history],
      "click_cats": [S(c) for _, _, c in history],
      "query_hist_ids": [], "query_hist_times": [], "query_hist_cats": [],
  }


def _with_negative(time, item, cat, history, negative=(500, 8)):
  return [_expected(1, time, item, cat, history),
          _expected(0, time, negative[0], negative[1], history)]


# max_hist=2. Second T0 is user 1's first: 100 and 200 are not impressions. 300 and
# 400 (second T1) see both T0 clicks, not each other; 100 at T2 sees the 2 most recent
# earlier clicks. User 2 has one click: no impression. The only item user 1 has not
# touched by T1 (600 was carted before T0; 300 and 400 are clicked at T1) is 500, so
# every negative is 500 with its category 8.
HISTORY_T1 = [(100, T0, 7), (200, T0, 7)]
POSITIVE_300 = _with_negative(T1, 300, 9, HISTORY_T1)
POSITIVE_400 = _with_negative(T1, 400, 9, HISTORY_T1)
POSITIVE_100 = _with_negative(T2, 100, 7, [(300, T1, 9), (400, T1, 9)])


def _write(directory, text, name="log.csv"):
  path = os.path.join(directory, name)
  data = text.encode("utf-8") if isinstance(text, str) else text
  opener = gzip.open if name.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(data)
  return path


def _split(out, name):
  return read_examples(os.path.join(out, f"{name}-00000-of-00001.tfrecord"))


def test_hand_made_log_last_day_in_beijing_time(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  out = str(tmp_path / "out")
  progress = []
  report = convert_taobao(path, out, max_hist=2, utc_offset_hours=8,
                          progress=lambda *call: progress.append(call))
  # In Beijing days, T2 is on 2017-12-03, the last day; T0 and T1 on 2017-12-02.
  assert _split(out, "train") == POSITIVE_300 + POSITIVE_400
  assert _split(out, "test") == POSITIVE_100
  assert (report.lines_read, report.impressions_written, report.positives_written,
          report.users, report.users_with_impressions) == (7, 6, 3, 2, 1)
  assert report.split_impressions == {"train": 4, "test": 2}
  assert report.test_rule == "impressions on 2017-12-03 (UTC+8)"
  assert report.skipped == {} and report.rows_outside_window == 0
  # Line 2 (T0) follows line 1 (T1), line 5 (T0 - 5) follows line 4 (T1): two
  # rows out of their user's time order, converted in time order.
  assert report.quirks == {"out_of_time_order": 2}
  assert report.first_quirk_line == {"out_of_time_order": 2}
  # (rows read, total, share done), counted over both passes, at their ends.
  assert progress == [(7, 14, 0.5), (14, 14, 1.0)]
  schema = schema_lib.DatasetSchema.load(out)
  assert schema.num_cats == 1 and not schema.has_queries and not schema.has_seeds
  assert {k: v["impressions"] for k, v in schema.splits.items()} == {
      "train": 4, "test": 2}
  # users 1 (user 2 has no impression); items 100-500 (500 as a negative);
  # categories 7, 8, 9.
  assert (schema.vocab["users"], schema.vocab["items"],
          schema.vocab["categories"]) == (1, 5, 3)
  assert schema.max_lengths["clicks"] == 2


def test_last_click_split_and_utc_days(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  out = str(tmp_path / "out")
  # The paper's rule: user 1's last click (100 at T2) is the test example.
  report = convert_taobao(path, out, max_hist=2, split="last_click")
  assert _split(out, "train") == POSITIVE_300 + POSITIVE_400
  assert _split(out, "test") == POSITIVE_100
  assert report.test_rule == "each user's last click"
  # In UTC days all clicks are on 2017-12-02: nothing would be left to train on.
  with pytest.raises(NoImpressionsError) as raised:
    convert_taobao(path, str(tmp_path / "utc"), max_hist=2)
  assert str(raised.value) == (
      f"{path}: no train impressions (test = impressions on 2017-12-02 (UTC); "
      "6 impressions in all); use a log of more days or the other split rule "
      "(last_day, last_click)")
  assert_nothing_left(tmp_path, ["log.csv", "out"])


def test_time_window_drops_and_counts_rows_and_ties_keep_file_order(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  out = str(tmp_path / "out")
  # Beijing day 2017-12-02 ends at 16:00 UTC: the T2 row (line 6) is dropped.
  report = convert_taobao(path, out, max_hist=2, split="last_click",
                          time_window="2017-12-02:2017-12-02", utc_offset_hours=8)
  assert (report.rows_outside_window, report.first_outside_window_line) == (1, 6)
  # The last click is 400: the later of the two T1 clicks in file order.
  assert _split(out, "train") == POSITIVE_300
  assert _split(out, "test") == POSITIVE_400
  assert report.summary().endswith(
      f"dropped 1 rows outside the time window (first at {path}:6)")


# Lines 8 and 9: 1505117799 is 2017-09-11 (a real row's time, the sample's line
# 4171), 1512316800 is 2017-12-04 00:00 in Beijing: both outside the dataset's
# documented days; line 8 is also earlier than line 7 (T1) of its user.
OUTSIDE_DAYS_LOG = HAND_LOG + "2,800,8,pv,1505117799\n2,900,8,pv,1512316800\n"


def test_rows_outside_the_documented_days_are_kept_and_counted(tmp_path):
  path = _write(tmp_path, OUTSIDE_DAYS_LOG)
  report = convert_taobao(path, str(tmp_path / "out"), max_hist=2, split="last_click",
                          utc_offset_hours=8)
  assert report.quirks == {"out_of_time_order": 3, "outside_dataset_days": 2}
  assert report.first_quirk_line == {"out_of_time_order": 2,
                                     "outside_dataset_days": 8}
  assert report.rows_outside_window == 0
  # User 2's clicks in time order 1505117799, T1, 1512316800: the last two are
  # positives; user 1 has 3.
  assert report.positives_written == 3 + 2
  assert (f"  converted 2 x outside_dataset_days: a row outside the dataset's "
          "documented days 2017-11-25..2017-12-03 (Beijing), kept; time_window "
          "2017-11-25:2017-12-03 with utc_offset_hours 8 drops such rows (first at "
          f"{path}:8)") in report.summary().splitlines()
  # With the window they are dropped (and counted as such), not quirks.
  report = convert_taobao(path, str(tmp_path / "out"), max_hist=2,
                          split="last_click", utc_offset_hours=8, overwrite=True,
                          time_window="2017-11-25:2017-12-03")
  assert report.quirks == {"out_of_time_order": 3}
  assert (report.rows_outside_window, report.first_outside_window_line) == (2, 8)


def test_output_reads_back_through_the_reader(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  out = str(tmp_path / "out")
  convert_taobao(path, out, max_hist=2, utc_offset_hours=8)
  batch = next(iter(reader.make_dataset(os.path.join(out, "train-*"), 4,
                                        max_clicks=3)))
  assert batch["label"].numpy().tolist() == [1, 0, 1, 0]
  assert batch["item_id"].numpy().tolist() == [S(300), S(500), S(400), S(500)]
  assert batch["click_ids"].numpy().tolist() == [[S(100), S(200), 0]] * 4
  assert batch["click_cats"].numpy().tolist() == [[[S(7)], [S(7)], [0]]] * 4
  assert batch["query_id"].numpy().tolist() == [0] * 4


def test_gzip_crlf_bom_and_shards_give_the_same_impressions(tmp_path):
  plain = _write(tmp_path, HAND_LOG)
  zipped = _write(tmp_path, HAND_LOG, name="log.csv.gz")
  windows = _write(tmp_path, b"\xef\xbb\xbf" + HAND_LOG.replace("\n", "\r\n")
                   .encode(), name="crlf.csv")
  outs = []
  for i, path in enumerate([plain, zipped, windows]):
    outs.append(str(tmp_path / f"out{i}"))
    convert_taobao(path, outs[-1], max_hist=2, utc_offset_hours=8)
  for out in outs[1:]:
    for name in ("train", "test"):
      with open(os.path.join(outs[0], f"{name}-00000-of-00001.tfrecord"), "rb") as a:
        with open(os.path.join(out, f"{name}-00000-of-00001.tfrecord"), "rb") as b:
          assert a.read() == b.read()
  sharded = str(tmp_path / "sharded")
  convert_taobao(plain, sharded, max_hist=2, utc_offset_hours=8, num_shards=2)
  # Round-robin: shard 0 holds impressions 1 and 3, shard 1 impressions 2 and 4.
  assert read_examples(os.path.join(sharded, "train-00000-of-00002.tfrecord")) == [
      POSITIVE_300[0], POSITIVE_400[0]]
  assert read_examples(os.path.join(sharded, "train-00001-of-00002.tfrecord")) == [
      POSITIVE_300[1], POSITIVE_400[1]]


# User 1 clicks items 1..5 at seconds 1..5; user 2 clicks items 100..139 at
# seconds 1..40. Item i has category 1000 + i % 3.
def _catalog_log(users_first=(1, 2)):
  blocks = {
      1: [f"1,{i},{1000 + i % 3},pv,{i}" for i in range(1, 6)],
      2: [f"2,{i},{1000 + i % 3},pv,{i - 99}" for i in range(100, 140)],
  }
  return "\n".join(row for user in users_first for row in blocks[user]) + "\n"


def _negatives_by_positive(out, user):
  """[(positive item, [negative items])] of one user, train then test."""
  result = []
  for name in ("train", "test"):
    for example in _split(out, name):
      if example["user_id"] != [S(user)]:
        continue
      if example["label"] == [1]:
        result.append((example["item_id"][0], []))
        positive = example
      else:
        assert {k: v for k, v in example.items()
                if k not in ("label", "item_id", "item_cats")} == {
                    k: v for k, v in positive.items()
                    if k not in ("label", "item_id", "item_cats")}
        result[-1][1].append(example["item_id"][0])
  return result


def test_negatives_are_distinct_untouched_seeded_and_per_user(tmp_path):
  path = _write(tmp_path, _catalog_log())
  out = str(tmp_path / "out")
  report = convert_taobao(path, out, negatives=3, split="last_click", seed=7)
  assert (report.positives_written, report.impressions_written) == (4 + 39, 4 * 43)
  category = {S(i): S(1000 + i % 3) for i in list(range(1, 6)) + list(range(100, 140))}
  for example in _split(out, "train") + _split(out, "test"):
    assert example["item_cats"] == [category[example["item_id"][0]]]
  user_1 = _negatives_by_positive(out, 1)
  assert [item for item, _ in user_1] == [S(i) for i in range(2, 6)]
  # User 1's positive i (at second i) may not have items 1..i, touched by then.
  catalog = set(category)
  for i, (_, negatives) in zip(range(2, 6), user_1):
    assert len(set(negatives)) == 3
    assert set(negatives) <= catalog - {S(j) for j in range(1, i + 1)}
  user_2 = _negatives_by_positive(out, 2)
  assert [item for item, _ in user_2] == [S(i) for i in range(101, 140)]
  for i, (_, negatives) in zip(range(101, 140), user_2):
    assert len(set(negatives)) == 3
    assert set(negatives) <= catalog - {S(j) for j in range(100, i + 1)}
  # A user's draws depend on the seed and the user only, not on the file order.
  swapped = _write(tmp_path, _catalog_log(users_first=(2, 1)), name="swapped.csv")
  convert_taobao(swapped, str(tmp_path / "swapped"), negatives=3,
                 split="last_click", seed=7)
  assert _negatives_by_positive(str(tmp_path / "swapped"), 1) == user_1
  convert_taobao(path, str(tmp_path / "seed8"), negatives=3, split="last_click",
                 seed=8)
  assert _negatives_by_positive(str(tmp_path / "seed8"), 1) != user_1


def test_not_enough_negatives_stops_or_is_skipped(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  with pytest.raises(BadRecordError) as raised:
    convert_taobao(path, str(tmp_path / "out"), negatives=2, utc_offset_hours=8)
  # Line 1 holds user 1's first positive (300 at T1).
  assert str(raised.value) == (f"{path}:1: user 1 touched all but 1 of the 6 "
                               f"catalog items by time {T1}; cannot draw 2 "
                               "negatives")
  assert raised.value.kind == "no_negatives_left"
  with pytest.raises(NoImpressionsError,
                     match=r"no_negatives_left 3 \(first at line 1\)"):
    convert_taobao(path, str(tmp_path / "out"), negatives=2, on_bad="skip")
  assert_nothing_left(tmp_path, ["log.csv"])


# Clicks by time: 0: 80 (cat 3, user 3), 1: 10 (cat 1, u1) and 90 (3, u3), 2: 40
# (1, u2), 3: 50 (2, u2), 5: 20 (2, u1), 7: 60 (2, u2), 9: 30 (1, u1). User 2 carts
# 80 and 90 at 0 and 70 at 4. Positives: u1 20@5 and 30@9, u2 50@3 and 60@7, u3 90@1.
SAMPLING_LOG = """\
1,10,1,pv,1
1,20,2,pv,5
1,30,1,pv,9
2,80,3,cart,0
2,90,3,cart,0
2,40,1,pv,2
2,50,2,pv,3
2,70,1,cart,4
2,60,2,pv,7
3,80,3,pv,0
3,90,3,pv,1
"""
SAMPLING_CATALOG = {10: 1, 20: 2, 30: 1, 40: 1, 50: 2, 60: 2, 70: 1, 80: 3, 90: 3}


def _pairs(out):
  """{(user, time): (positive (item, cat), [negative (item, cat)])}, hashed ids."""
  pairs = {}
  for name in ("train", "test"):
    for example in _split(out, name):
      key = (example["user_id"][0], example["time"][0])
      item = (example["item_id"][0], example["item_cats"][0])
      if example["label"] == [1]:
        pairs[key] = (item, [])
      else:
        pairs[key][1].append(item)
  return pairs


def _hashed(*items):
  return [(S(item), S(SAMPLING_CATALOG[item])) for item in items]


def test_category_and_popularity_draw_earlier_clicks_by_hand(tmp_path):
  path = _write(tmp_path, SAMPLING_LOG)
  out = str(tmp_path / "category")
  report = convert_taobao(path, out, split="last_click",
                          negative_sampling="category")
  pairs = _pairs(out)
  # u1 20@5 (cat 2): the only cat-2 click before 5 is 50. u1 30@9 (cat 1): 10 and
  # 40 were clicked before 9 under cat 1; u1 touched 10. u2 60@7 (cat 2): 50 and 20;
  # u2 touched 50. u2 50@3 (cat 2): no cat-2 click before 3, so popularity: 80, 10,
  # 90 and 40 were clicked, u2 touched all but 10. u3 90@1: only 80 (touched) was
  # clicked before: uniform over the catalog but 80 and 90.
  assert pairs[(S(1), 5)] == (_hashed(20)[0], _hashed(50))
  assert pairs[(S(1), 9)] == (_hashed(30)[0], _hashed(40))
  assert pairs[(S(2), 7)] == (_hashed(60)[0], _hashed(20))
  assert pairs[(S(2), 3)] == (_hashed(50)[0], _hashed(10))
  assert pairs[(S(3), 1)][1][0] in _hashed(10, 20, 30, 40, 50, 60, 70)
  assert report.negative_sampling == "category"
  assert report.negatives_from_fallback == {"popularity": 1, "uniform": 1}
  assert report.summary().splitlines()[-1] == (
      "  negative_sampling category: items of the positive's category by their "
      "clicks before the impression, untouched by the user by then; from the "
      "fallback (too few candidates): popularity 1, uniform 1")
  assert schema_lib.DatasetSchema.load(out).source.endswith(
      "; negative_sampling category")
  # Popularity: any category. u1 20@5: 40, 50, 80 or 90 (10 touched); u1 30@9: also
  # 60 (20 was clicked at 5 but is touched); u2 60@7: 10 or 20; u2 50@3: 10.
  out = str(tmp_path / "popularity")
  report = convert_taobao(path, out, split="last_click",
                          negative_sampling="popularity")
  pairs = _pairs(out)
  assert pairs[(S(1), 5)][1][0] in _hashed(40, 50, 80, 90)
  assert pairs[(S(1), 9)][1][0] in _hashed(40, 50, 60, 80, 90)
  assert pairs[(S(2), 7)][1][0] in _hashed(10, 20)
  assert pairs[(S(2), 3)][1] == _hashed(10)
  assert pairs[(S(3), 1)][1][0] in _hashed(10, 20, 30, 40, 50, 60, 70)
  assert report.negatives_from_fallback == {"uniform": 1}


def test_fallback_fills_what_a_distribution_lacks_in_order(tmp_path):
  path = _write(tmp_path, SAMPLING_LOG)
  out = str(tmp_path / "out")
  report = convert_taobao(path, out, split="last_click", negatives=2,
                          negative_sampling="category")
  pairs = _pairs(out)
  # u1 20@5: category gives 50, popularity another click before 5: 40, 80 or 90.
  assert pairs[(S(1), 5)][1][0] == _hashed(50)[0]
  assert pairs[(S(1), 5)][1][1] in _hashed(40, 80, 90)
  # u1 30@9: category gives 40; popularity 50, 60, 80 or 90 (10, 20 touched).
  assert pairs[(S(1), 9)][1][0] == _hashed(40)[0]
  assert pairs[(S(1), 9)][1][1] in _hashed(50, 60, 80, 90)
  # u2 50@3: popularity gives 10 only; uniform one of the rest: 70 is carted by
  # u2 only at 4, after 3, so it may be drawn.
  assert pairs[(S(2), 3)][1][0] == _hashed(10)[0]
  assert pairs[(S(2), 3)][1][1] in _hashed(20, 30, 60, 70)
  # u2 60@7: category has 20 only (50 touched); popularity: 10 (40, 50, 70 touched).
  assert pairs[(S(2), 7)][1] == _hashed(20, 10)
  # u3 90@1: both from uniform.
  assert len(set(pairs[(S(3), 1)][1])) == 2
  assert set(pairs[(S(3), 1)][1]) <= set(_hashed(10, 20, 30, 40, 50, 60, 70))
  # Fallback negatives: u1 one + one, u2 2 (popularity 1, uniform 1) + 1, u3 2.
  assert report.negatives_from_fallback == {"popularity": 4, "uniform": 3}


# User 1 clicks 1 at second 1 and 2 at 2 (its positive) and carts 3 at cart_time;
# user 2 clicks 3 at 3, 4 and 5. At second 2 the catalog {1, 2, 3} has only 3 left.
def _later_log(cart_time):
  return (f"1,1,7,pv,1\n1,2,7,pv,2\n1,3,7,cart,{cart_time}\n"
          "2,3,7,pv,3\n2,3,7,pv,4\n2,3,7,pv,5\n")


@pytest.mark.parametrize("negative_sampling", NEGATIVE_SAMPLING)
def test_items_touched_later_can_be_negatives_earlier_ones_cannot(
    tmp_path, negative_sampling):
  path = _write(tmp_path, _later_log(cart_time=5))
  out = str(tmp_path / "out")
  convert_taobao(path, out, split="last_click", negative_sampling=negative_sampling)
  assert _pairs(out)[(S(1), 2)] == ((S(2), S(7)), [(S(3), S(7))])
  # Carted in the positive's second or before: touched by then, nothing is left.
  for cart_time in (2, 1):
    path = _write(tmp_path, _later_log(cart_time), name=f"cart{cart_time}.csv")
    with pytest.raises(BadRecordError) as raised:
      convert_taobao(path, str(tmp_path / "no"), split="last_click",
                     negative_sampling=negative_sampling)
    assert str(raised.value) == (f"{path}:2: user 1 touched all but 0 of the 3 "
                                 "catalog items by time 2; cannot draw 1 negatives")


# User 0 clicks item 1 (category 7) A times and item 2 (category 7) B times, all in
# second 1 (so it has no positive); users 1..400 click item 3 (category 8) at 1000
# and item 4 (category 7) at 2000 and 3000, their two positives. Untouched clicks
# before 2000 and 3000 are 1's and 2's only: 3 and 4 are each user's own.
def _popular_log(a, b):
  rows = ["0,1,7,pv,1"] * a + ["0,2,7,pv,1"] * b
  for user in range(1, 401):
    rows += [f"{user},3,8,pv,1000", f"{user},4,7,pv,2000", f"{user},4,7,pv,3000"]
  return "\n".join(rows) + "\n"


@pytest.mark.parametrize("negative_sampling", ["popularity", "category"])
@pytest.mark.parametrize("a,b", [(300, 100), (3, 1)])
def test_draws_are_proportional_to_earlier_clicks(tmp_path, negative_sampling, a, b):
  """Item 1 has 3x the clicks of item 2, so 800 draws give it ~600 (sd 12.2).

  (300, 100) draws by rejection; (3, 1) lists the candidates (4 earlier clicks
  of category 7 at 2000; at 3000, and for popularity, rejection mostly fails on
  the users' own clicks of 3 and 4, 400 each).
  """
  path = _write(tmp_path, _popular_log(a, b))
  out = str(tmp_path / "out")
  report = convert_taobao(path, out, split="last_click", seed=5,
                          negative_sampling=negative_sampling)
  drawn = collections.Counter(negatives[0][0] for _, negatives in
                              _pairs(out).values())
  assert set(drawn) == {S(1), S(2)} and sum(drawn.values()) == 800
  # For seed 5 the counts are fixed; the bounds are 3.5 sd: they hold for any
  # correct sampler with near certainty, and fail for uniform draws (400).
  assert 557 <= drawn[S(1)] <= 643
  assert report.negatives_from_fallback == (
      {"popularity": 0, "uniform": 0} if negative_sampling == "category"
      else {"uniform": 0})


@pytest.mark.parametrize("negative_sampling", ["popularity", "category"])
def test_draws_depend_on_the_seed_and_user_not_the_file_order(tmp_path,
                                                              negative_sampling):
  path = _write(tmp_path, _catalog_log())
  options = dict(negatives=3, split="last_click", negative_sampling=negative_sampling)
  convert_taobao(path, str(tmp_path / "out"), seed=7, **options)
  users = [_negatives_by_positive(str(tmp_path / "out"), user) for user in (1, 2)]
  swapped = _write(tmp_path, _catalog_log(users_first=(2, 1)), name="swapped.csv")
  convert_taobao(swapped, str(tmp_path / "swapped"), seed=7, **options)
  assert [_negatives_by_positive(str(tmp_path / "swapped"), user)
          for user in (1, 2)] == users
  convert_taobao(path, str(tmp_path / "seed8"), seed=8, **options)
  assert _negatives_by_positive(str(tmp_path / "seed8"), 2) != users[1]
  for user, pairs in zip((1, 2), users):
    for _, negatives in pairs:
      assert len(set(negatives)) == 3


GOOD = b"1,100,7,pv,10"
FIELDS = "user_id,item_id,category_id,behavior_type,timestamp"
# (kind, line 2 of the file, exact reason).
BAD_ROWS = [
    ("empty_line", b"", f"empty line (every line must be a {FIELDS} row)"),
    ("empty_line", b" \t", f"empty line (every line must be a {FIELDS} row)"),
    ("wrong_field_count", b"1,100,7,pv",
     f"expected 5 comma-separated fields ({FIELDS}), got 4"),
    ("wrong_field_count", b"1,100,7,pv,10,",
     f"expected 5 comma-separated fields ({FIELDS}), got 6"),
    ("wrong_field_count", b"1;100;7;pv;10",
     f"expected 5 comma-separated fields ({FIELDS}), got 1"),
    ("bad_behavior", b"1,100,7,click,10",
     "behavior_type 'click' is not one of pv, cart, fav, buy"),
    ("bad_behavior", b"1,100,7,PV,10",
     "behavior_type 'PV' is not one of pv, cart, fav, buy"),
    ("wrong_type", b"x,100,7,pv,10", "user_id 'x' is not a non-negative integer"),
    ("wrong_type", b"1,-100,7,pv,10",
     "item_id '-100' is not a non-negative integer"),
    ("wrong_type", b"1,100,,pv,10", "category_id '' is not a non-negative integer"),
    ("wrong_type", b"1,100,7,pv,1.5e9",
     "timestamp '1.5e9' is not a non-negative integer"),
    ("wrong_type", b"1,100,7,pv, 10", "timestamp ' 10' is not a non-negative integer"),
    ("wrong_type", b"1,1\xff0,7,pv,10",
     "item_id '1\\xff0' is not a non-negative integer"),
    ("wrong_type", b"1,100,7,pv,\xd9\xa3",  # ARABIC-INDIC DIGIT THREE
     "timestamp '\\xd9\\xa3' is not a non-negative integer"),
    ("wrong_type", b"1," + b"9" * 40 + b"x,7,pv,10",
     "item_id '" + "9" * 30 + "'... is not a non-negative integer"),
    ("out_of_range", b"1,100,7,pv,9223372036854775808",
     "timestamp '9223372036854775808' does not fit an int64"),
    ("out_of_range", b"1,100," + b"9" * 5000 + b",pv,10",
     "category_id '" + "9" * 30 + "'... does not fit an int64"),
]


@pytest.mark.parametrize("kind,bad_row,reason", BAD_ROWS,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_ROWS)])
def test_bad_row_stops_with_file_line_reason_and_leaves_nothing(
    tmp_path, kind, bad_row, reason):
  path = _write(tmp_path, b"\n".join([GOOD, bad_row, b"1,200,7,pv,20"]) + b"\n")
  with pytest.raises(BadRecordError) as raised:
    convert_taobao(path, str(tmp_path / "out"))
  assert str(raised.value) == f"{path}:2: {reason}"
  assert (raised.value.kind, raised.value.line) == (kind, 2)
  assert_nothing_left(tmp_path, ["log.csv"])


def test_header_line_gets_a_hint(tmp_path):
  path = _write(tmp_path, f"{FIELDS}\n{HAND_LOG}")
  with pytest.raises(BadRecordError) as raised:
    convert_taobao(path, str(tmp_path / "out"))
  assert str(raised.value) == (
      f"{path}:1: behavior_type 'behavior_type' is not one of pv, cart, fav, buy "
      "(if this is a header line: UserBehavior files have none)")


@pytest.mark.parametrize("on_bad", ["stop", "skip"])
def test_user_not_grouped_always_stops(tmp_path, on_bad):
  path = _write(tmp_path, "1,100,7,pv,10\n2,500,8,pv,10\n1,200,7,pv,20\n")
  with pytest.raises(BadRecordError) as raised:
    convert_taobao(path, str(tmp_path / "out"), on_bad=on_bad)
  assert str(raised.value) == (
      f"{path}:3: user 1 appears again after other users; the file must be "
      "grouped by user (sort it with `sort -s -t, -k1,1`)")
  assert raised.value.kind == "user_not_grouped"
  assert_nothing_left(tmp_path, ["log.csv"])


def test_skip_counts_bad_rows_per_reason_and_converts_the_rest(tmp_path):
  lines = HAND_LOG.splitlines()
  # A bad row inside user 1's rows does not break the grouping.
  text = "\n".join(lines[:2] + ["1,100,7,click,5", "", "1,2,3"] + lines[2:] +
                   ["2,x,8,pv,1"]) + "\n"
  path = _write(tmp_path, text)
  out = str(tmp_path / "out")
  report = convert_taobao(path, out, max_hist=2, utc_offset_hours=8, on_bad="skip")
  assert _split(out, "train") == POSITIVE_300 + POSITIVE_400
  assert _split(out, "test") == POSITIVE_100
  assert report.lines_read == 11
  assert report.skipped == {"bad_behavior": 1, "empty_line": 1,
                            "wrong_field_count": 1, "wrong_type": 1}
  assert report.first_skipped_line == {"bad_behavior": 3, "empty_line": 4,
                                       "wrong_field_count": 5, "wrong_type": 11}
  assert report.summary() == "\n".join([
      f"{path}: read 11 lines, wrote 6 impressions (3 positive) to {out}",
      f"  skipped 1 x bad_behavior (first at {path}:3)",
      f"  skipped 1 x empty_line (first at {path}:4)",
      f"  skipped 1 x wrong_field_count (first at {path}:5)",
      f"  skipped 1 x wrong_type (first at {path}:11)",
      "  converted 2 x out_of_time_order: a row earlier than its user's previous "
      "row, put in time order (a user's clicks are sorted by time) (first at "
      f"{path}:2)",
      "  2 users, 1 with impressions; 3 positives, 3 negatives",
      "  test 2, train 4 impressions; test = impressions on 2017-12-03 (UTC+8)",
      "  negative_sampling uniform: any catalog item, equally likely, untouched by "
      "the user by then",
  ])


@pytest.mark.parametrize("on_bad", ["stop", "skip"])
def test_no_impressions_is_an_error_and_leaves_nothing(tmp_path, on_bad):
  empty = _write(tmp_path, b"")
  with pytest.raises(NoImpressionsError, match="log.csv: no impressions"):
    convert_taobao(empty, str(tmp_path / "out"), on_bad=on_bad)
  # Clicks in one second only: nothing earlier to predict from.
  same_second = _write(tmp_path, "1,1,1,pv,5\n1,2,1,pv,5\n2,3,1,pv,5\n",
                       name="same.csv")
  with pytest.raises(NoImpressionsError, match="clicks in two different seconds"):
    convert_taobao(same_second, str(tmp_path / "out"), on_bad=on_bad)
  assert_nothing_left(tmp_path, ["log.csv", "same.csv"])


def test_truncated_gzip_is_unreadable_even_when_skipping(tmp_path):
  rows = "".join(f"1,{i},7,pv,{i}\n" for i in range(2000))
  path = _write(tmp_path, rows, name="log.csv.gz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(BadRecordError) as raised:
    convert_taobao(path, str(tmp_path / "out"), on_bad="skip")
  assert raised.value.kind == "unreadable_file"
  assert ": cannot read the file: " in str(raised.value)
  assert_nothing_left(tmp_path, ["log.csv.gz"])


def test_existing_output_is_kept_unless_overwrite(tmp_path):
  path = _write(tmp_path, HAND_LOG)
  out = tmp_path / "out"
  out.mkdir()
  (out / "mine.txt").write_text("keep")
  with pytest.raises(FileExistsError):
    convert_taobao(path, str(out), utc_offset_hours=8)
  bad = _write(tmp_path, HAND_LOG + "3,1,1,pv\n", name="bad.csv")
  with pytest.raises(BadRecordError):
    convert_taobao(bad, str(out), utc_offset_hours=8, overwrite=True)
  assert os.listdir(out) == ["mine.txt"]
  convert_taobao(path, str(out), utc_offset_hours=8, overwrite=True)
  assert sorted(os.listdir(out)) == ["schema.json", "test-00000-of-00001.tfrecord",
                                     "train-00000-of-00001.tfrecord"]


@pytest.mark.parametrize("kwargs,message", [
    ({"on_bad": "ignore"}, "on_bad must be one of"),
    ({"max_hist": -1}, "max_hist must be >= 0, got -1"),
    ({"negatives": -1}, "negatives must be >= 0, got -1"),
    ({"split": "random"}, r"split must be one of \('last_day', 'last_click'\)"),
    ({"negative_sampling": "random"}, r"negative_sampling must be one of "
     r"\('uniform', 'popularity', 'category'\), got 'random'"),
    ({"utc_offset_hours": 15}, r"utc_offset_hours must be in \[-12, 14\], got 15"),
    ({"time_window": "2017-11-25"}, "time_window '2017-11-25' is not START:END "
     "with dates YYYY-MM-DD, e.g. 2017-11-25:2017-12-03"),
    ({"time_window": "2017-11-25:2017-13-03"}, "is not START:END"),
    ({"time_window": "2017-12-03:2017-11-25"},
     "time_window '2017-12-03:2017-11-25' ends before it starts"),
    ({"num_shards": 0}, "num_shards must be >= 1"),
])
def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path, kwargs,
                                                               message):
  path = _write(tmp_path, HAND_LOG)
  with pytest.raises(ValueError, match=message):
    convert_taobao(path, str(tmp_path / "out"), **kwargs)
  assert_nothing_left(tmp_path, ["log.csv"])


def test_missing_input(tmp_path):
  with pytest.raises(FileNotFoundError):
    convert_taobao(str(tmp_path / "missing.csv"), str(tmp_path / "out"))
  assert_nothing_left(tmp_path, [])


# --- The real Tianchi sample. ---

# Beijing days 2017-11-25 .. 2017-12-03 in unix seconds, by hand: 2017-11-25 00:00
# UTC is 1511568000; 8 hours earlier is Beijing midnight; the window is 9 days.
WINDOW_START = 1511568000 - 8 * 3600
WINDOW_END = WINDOW_START + 9 * 86400
SAMPLE_MAX_HIST = 2

# User 1001241's pv rows (file lines 27881-27907 minus the buy rows 27883,
# 27893-27895, 27902 and 27904), read off the file: (item, category, time).
USER = 1001241
USER_CLICKS = [
    (4350429, 2609569, 1511567633), (4551433, 2885642, 1511567711),
    (1240089, 2096639, 1511612198), (1577782, 1299190, 1511653326),
    (4860243, 1029459, 1511699532), (4468030, 1299190, 1511699882),
    (4860243, 1029459, 1511699882), (1240089, 2096639, 1511704237),
    (1061335, 1829891, 1511742898), (114436, 1299190, 1511825781),
    (2748359, 1299190, 1511825842), (4982499, 2096639, 1511842886),
    (1240089, 2096639, 1511842898), (3117805, 2096639, 1511842965),
    (1240089, 2096639, 1511936532), (4792276, 2096639, 1511936690),
    (1704730, 2885642, 1512094149), (5057180, 4159072, 1512094254),
    (4982499, 2096639, 1512194630), (2505633, 2885642, 1512198227),
    (4640894, 2885642, 1512305261),
]
C = {c[0]: c[1] for c in USER_CLICKS}  # item -> category, for the literals below
# Its positives with max_hist=2: (item, time, [(history item, time)]). The first
# click has no history; the two clicks of second 1511699882 both see the clicks
# before that second, and the click after them sees both, in file order.
USER_POSITIVES = [
    (4551433, 1511567711, [(4350429, 1511567633)]),
    (1240089, 1511612198, [(4350429, 1511567633), (4551433, 1511567711)]),
    (1577782, 1511653326, [(4551433, 1511567711), (1240089, 1511612198)]),
    (4860243, 1511699532, [(1240089, 1511612198), (1577782, 1511653326)]),
    (4468030, 1511699882, [(1577782, 1511653326), (4860243, 1511699532)]),
    (4860243, 1511699882, [(1577782, 1511653326), (4860243, 1511699532)]),
    (1240089, 1511704237, [(4468030, 1511699882), (4860243, 1511699882)]),
    (1061335, 1511742898, [(4860243, 1511699882), (1240089, 1511704237)]),
    (114436, 1511825781, [(1240089, 1511704237), (1061335, 1511742898)]),
    (2748359, 1511825842, [(1061335, 1511742898), (114436, 1511825781)]),
    (4982499, 1511842886, [(114436, 1511825781), (2748359, 1511825842)]),
    (1240089, 1511842898, [(2748359, 1511825842), (4982499, 1511842886)]),
    (3117805, 1511842965, [(4982499, 1511842886), (1240089, 1511842898)]),
    (1240089, 1511936532, [(1240089, 1511842898), (3117805, 1511842965)]),
    (4792276, 1511936690, [(3117805, 1511842965), (1240089, 1511936532)]),
    (1704730, 1512094149, [(1240089, 1511936532), (4792276, 1511936690)]),
    (5057180, 1512094254, [(4792276, 1511936690), (1704730, 1512094149)]),
    (4982499, 1512194630, [(1704730, 1512094149), (5057180, 1512094254)]),
    (2505633, 1512198227, [(5057180, 1512094254), (4982499, 1512194630)]),
    (4640894, 1512305261, [(4982499, 1512194630), (2505633, 1512198227)]),
]
# The last Beijing day of the sample is 2017-12-03, from 1512230400: only the
# last positive is a test impression.
USER_TEST_POSITIVES = 1


def _raw_sample():
  """Counts from the raw file with the csv module, independent of the converter."""
  assert os.path.exists(SAMPLE), (
      f"the shared Taobao sample is missing: {os.path.abspath(SAMPLE)}")
  rows = []
  outside = 0
  with open(SAMPLE, newline="") as f:
    for user, item, cat, behavior, timestamp in csv.reader(f):
      if WINDOW_START <= int(timestamp) < WINDOW_END:
        rows.append((int(user), int(item), int(cat), behavior, int(timestamp)))
      else:
        outside += 1
  pv_times = collections.defaultdict(list)
  touches = collections.defaultdict(list)
  first_category = {}
  first_click = {}  # (item, category) -> the first time clicked under it
  first_item_click = {}  # item -> the first time clicked
  for user, item, cat, behavior, timestamp in rows:
    touches[user].append((timestamp, item))
    first_category.setdefault(item, cat)
    if behavior == "pv":
      pv_times[user].append(timestamp)
      first_click[item, cat] = min(timestamp, first_click.get((item, cat), timestamp))
      first_item_click[item] = min(timestamp, first_item_click.get(item, timestamp))
  last_pv = max(t for times in pv_times.values() for t in times)
  test_start = (last_pv + 8 * 3600) // 86400 * 86400 - 8 * 3600
  positives = test_positives = 0
  users_with_impressions = 0
  for times in pv_times.values():
    times.sort()
    later = [t for t in times if t > times[0]]
    positives += len(later)
    test_positives += sum(1 for t in later if t >= test_start)
    users_with_impressions += bool(later)
  return dict(rows=len(rows) + outside, outside=outside,
              users=len({r[0] for r in rows}),
              users_with_impressions=users_with_impressions, positives=positives,
              test_positives=test_positives, pv_times=pv_times, touches=touches,
              first_category=first_category, first_click=first_click,
              first_item_click=first_item_click)


def _touched_by(touches, time):
  """Items of [(time, item)] rows at or before ``time``."""
  return {item for t, item in touches if t <= time}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  assert os.path.exists(SAMPLE), (
      f"the shared Taobao sample is missing: {os.path.abspath(SAMPLE)}")
  out = str(tmp_path_factory.mktemp("taobao") / "data")
  report = convert_taobao(SAMPLE, out, max_hist=SAMPLE_MAX_HIST, seed=3,
                          time_window="2017-11-25:2017-12-03", utc_offset_hours=8)
  return report, {name: _split(out, name) for name in ("train", "test")}


def test_real_sample_counts_equal_the_raw_file(sample):
  report, _ = sample
  raw = _raw_sample()
  assert raw["outside"] == 35 and raw["users"] == 815  # as PROVENANCE.txt says
  assert report.lines_read == raw["rows"]
  assert report.rows_outside_window == raw["outside"]
  assert report.users == raw["users"]
  assert report.users_with_impressions == raw["users_with_impressions"]
  assert report.positives_written == raw["positives"]
  assert report.impressions_written == 2 * raw["positives"]
  assert report.split_impressions == {
      "test": 2 * raw["test_positives"],
      "train": 2 * (raw["positives"] - raw["test_positives"])}
  assert report.skipped == {}


def test_real_sample_quirks_equal_the_raw_file(sample, tmp_path):
  """Without a time window the 35 rows outside the dataset's days are kept and
  counted; no row of the sample is out of its user's time order."""
  report, _ = sample
  raw = _raw_sample()
  with open(SAMPLE, newline="") as f:
    rows = [(int(u), int(t)) for u, _, _, _, t in csv.reader(f)]
  out_of_order = sum(1 for (u0, t0), (u1, t1) in zip(rows, rows[1:])
                     if u0 == u1 and t1 < t0)
  assert out_of_order == 0
  assert report.quirks == {}  # the window dropped the outside rows
  kept = convert_taobao(SAMPLE, str(tmp_path / "out"), max_hist=SAMPLE_MAX_HIST,
                        utc_offset_hours=8)
  assert kept.quirks == {"outside_dataset_days": raw["outside"]} == {
      "outside_dataset_days": 35}
  first = next(line for line, (_, t) in enumerate(rows, 1)
               if not WINDOW_START <= t < WINDOW_END)
  assert kept.first_quirk_line == {"outside_dataset_days": first}
  assert kept.lines_read == raw["rows"] and kept.rows_outside_window == 0


def test_real_sample_histories_and_negatives(sample):
  _, splits = sample
  raw = _raw_sample()
  user_of = {S(u): u for u in raw["pv_times"]}
  item_of = {S(i): i for i in raw["first_category"]}
  checked = 0
  for examples in splits.values():
    for example in examples:
      user = user_of[example["user_id"][0]]
      time = example["time"][0]
      history = example["click_times"]
      # Every history entry is strictly earlier than its impression, oldest first,
      # and the history is the most recent clicks of earlier seconds.
      assert all(t < time for t in history)
      assert history == sorted(history)
      times = raw["pv_times"][user]
      earlier = [t for t in times if t < time]
      assert history == earlier[len(earlier) - len(history):]
      assert len(history) == min(SAMPLE_MAX_HIST, len(earlier))
      item = item_of[example["item_id"][0]]
      if example["label"] == [0]:
        assert item not in _touched_by(raw["touches"][user], time)
        assert example["item_cats"] == [S(raw["first_category"][item])]
      checked += 1
  assert checked == 2 * raw["positives"]


def test_real_sample_one_user_by_hand(sample):
  _, splits = sample
  mine = {name: [e for e in examples if e["user_id"] == [S(USER)]]
          for name, examples in splits.items()}
  got = mine["train"] + mine["test"]
  assert len(mine["test"]) == 2 * USER_TEST_POSITIVES
  assert [e["label"] for e in got] == [[1], [0]] * len(USER_POSITIVES)
  positives = got[0::2]
  expected = [_expected(1, time, item, C[item], [(i, t, C[i]) for i, t in history],
                        user=USER)
              for item, time, history in USER_POSITIVES]
  assert positives == expected
  # Its rows (clicks and the buys of lines 27883, 27893-27895, 27902, 27904).
  touches = [(time, item) for item, _, time in USER_CLICKS] + [
      (1511567815, 2505633), (1511825960, 114436), (1511826532, 4848076),
      (1511826598, 3873539), (1512094207, 4640894), (1512094322, 700114)]
  for positive, negative in zip(got[0::2], got[1::2]):
    touched = _touched_by(touches, positive["time"][0])
    assert negative["item_id"][0] not in {S(i) for i in touched}
    assert {k: v for k, v in negative.items() if k not in ("label", "item_id",
                                                           "item_cats")} == {
        k: v for k, v in positive.items() if k not in ("label", "item_id",
                                                       "item_cats")}


@pytest.fixture(scope="module", params=["popularity", "category"])
def sampled(request, tmp_path_factory):
  """The sample converted with a sampling by clicks (slow, like `sample`)."""
  out = str(tmp_path_factory.mktemp("taobao") / "data")
  report = convert_taobao(SAMPLE, out, max_hist=SAMPLE_MAX_HIST, seed=3,
                          time_window="2017-11-25:2017-12-03", utc_offset_hours=8,
                          negative_sampling=request.param)
  examples = _split(out, "train") + _split(out, "test")
  return request.param, report, list(zip(examples[0::2], examples[1::2]))


def _negative_source(raw, positive, negative):
  """Which distribution could have drawn ``negative``: category, popularity, or
  uniform; with the raw ids of its item and categories."""
  item = raw["item_of"][negative["item_id"][0]]
  category = raw["category_of"][positive["item_cats"][0]]
  time = positive["time"][0]
  if raw["first_click"].get((item, category), time) < time:
    return "category", category
  clicked = raw["first_item_click"].get(item, time) < time
  return ("popularity" if clicked else "uniform"), raw["first_category"][item]


def test_real_sample_negatives_follow_the_clicks_before_them(sampled):
  mode, report, pairs = sampled
  raw = _raw_sample()
  raw["item_of"] = {S(i): i for i in raw["first_category"]}
  raw["category_of"] = {S(c): c for c in raw["first_category"].values()}
  user_of = {S(u): u for u in raw["pv_times"]}
  sources = collections.Counter()
  for positive, negative in pairs:
    assert (positive["label"], negative["label"]) == ([1], [0])
    user, time = user_of[positive["user_id"][0]], positive["time"][0]
    item = raw["item_of"][negative["item_id"][0]]
    assert item not in _touched_by(raw["touches"][user], time)
    source, category = _negative_source(raw, positive, negative)
    if mode == "popularity" and source == "category":
      source = "popularity"  # clicked before under the positive's category
    sources[source] += 1
    # Category draws carry the positive's category; others the catalog's.
    assert negative["item_cats"] == [S(category)]
  assert report.positives_written == len(pairs) == raw["positives"]
  # Every negative that no distribution before uniform could give is counted.
  assert {s: n for s, n in sources.items() if s != mode} == {
      s: n for s, n in report.negatives_from_fallback.items() if n}
  assert sources[mode] > 0.9 * len(pairs)


# --- Fuzzing: any input converts or fails with a clear error, nothing else. ---

_FUZZ = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
_NUMBERS = st.integers(0, 6).map(str) | st.sampled_from(
    ["", "-1", "x", "1.5", "99999999999999999999", " 3", "\xe9"])
_BEHAVIORS = st.sampled_from(["pv", "pv", "pv", "cart", "buy", "fav", "PV", ""])
# Seconds on two days, so that both split rules can leave train and test non-empty.
_TIMES = st.sampled_from([0, 1, 2, 3, 86400, 86401, 86402])
_ROWS = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 3),
                  _BEHAVIORS, _TIMES)
_CELLS = st.lists(_NUMBERS | _BEHAVIORS, min_size=0, max_size=7)


def _convert_or_clear_error(data: bytes, on_bad: str, **kwargs) -> None:
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "log.csv")
    with open(path, "wb") as f:
      f.write(data)
    out = os.path.join(directory, "out")
    try:
      report = convert_taobao(path, out, on_bad=on_bad, max_hist=3, **kwargs)
    except BadRecordError as e:
      assert str(e).startswith(f"{path}:{e.line}: ")
      assert on_bad == "stop" or e.kind == "user_not_grouped"
      assert_nothing_left(directory, ["log.csv"])
      return
    except NoImpressionsError as e:
      assert str(e).startswith(f"{path}: no ")
      assert_nothing_left(directory, ["log.csv"])
      return
    assert report.impressions_written == 2 * report.positives_written
    assert sum(report.split_impressions.values()) == report.impressions_written
    for name in ("train", "test"):
      for example in _split(out, name):
        assert all(t < example["time"][0] for t in example["click_times"])
        assert len(example["click_times"]) <= 3


def _grouped(rows):
  return sorted(rows, key=lambda r: r[0])  # stable: each user keeps file order


@_FUZZ
@given(data=st.binary(max_size=200), on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_random_bytes(data, on_bad):
  _convert_or_clear_error(data, on_bad)


@_FUZZ
@given(rows=st.lists(_ROWS, min_size=1, max_size=20),
       cuts=st.lists(st.integers(0, 16), max_size=2),
       on_bad=st.sampled_from(["stop", "skip"]),
       split=st.sampled_from(["last_day", "last_click"]))
def test_fuzz_truncated_rows(rows, cuts, on_bad, split):
  lines = [",".join(map(str, r)).encode() for r in _grouped(rows)]
  for i, cut in enumerate(cuts):
    lines[i % len(lines)] = lines[i % len(lines)][:cut]
  _convert_or_clear_error(b"\n".join(lines), on_bad, split=split)


_GOOD_ROWS = st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(1, 3),
                       st.sampled_from(["pv", "pv", "pv", "cart"]), _TIMES)


def _assert_negatives_untouched(out, rows):
  """Every negative: an item its user had not touched by the impression's second."""
  touches = collections.defaultdict(list)
  for user, item, _, _, time in rows:
    touches[S(user)].append((time, S(item)))
  for name in ("train", "test"):
    examples = _split(out, name)
    for positive, negative in zip(examples[0::2], examples[1::2]):
      assert (positive["label"], negative["label"]) == ([1], [0])
      assert negative["item_id"][0] not in _touched_by(
          touches[negative["user_id"][0]], negative["time"][0])


@_FUZZ
@given(rows=st.lists(_GOOD_ROWS, min_size=4, max_size=25),
       negative_sampling=st.sampled_from(NEGATIVE_SAMPLING))
def test_fuzz_well_formed_logs_match_an_independent_count(rows, negative_sampling):
  rows = _grouped(rows)
  pv_times = collections.defaultdict(list)
  for user, _, _, behavior, time in rows:
    if behavior == "pv":
      pv_times[user].append(time)
  positives = sum(1 for times in pv_times.values() for t in times if t > min(times))
  # last_click: a user's last positive is test, the others train.
  train = sum(1 for times in pv_times.values() for t in times
              if t > min(times)) - sum(1 for times in pv_times.values()
                                       if max(times) > min(times))
  catalog = {item for _, item, _, _, _ in rows}
  touches = collections.defaultdict(list)
  for user, item, _, _, time in rows:
    touches[user].append((time, item))
  # Whatever the sampling, the fallback ends in the whole catalog: a positive
  # fails only when its user had touched every catalog item by then.
  no_negative_left = any(_touched_by(touches[user], t) == catalog
                         for user, times in pv_times.items()
                         for t in times if t > min(times))
  data = "".join(",".join(map(str, r)) + "\n" for r in rows).encode()
  with tempfile.TemporaryDirectory() as directory:
    path = _write(directory, data)
    out = os.path.join(directory, "out")
    try:
      report = convert_taobao(path, out, split="last_click",
                              negative_sampling=negative_sampling)
    except BadRecordError as e:
      assert e.kind == "no_negatives_left" and no_negative_left
      return
    except NoImpressionsError:
      assert positives == 0 or train == 0
      return
    assert not no_negative_left
    assert report.positives_written == positives
    assert report.split_impressions == {"train": 2 * train,
                                        "test": 2 * (positives - train)}
    _assert_negatives_untouched(out, rows)


@_FUZZ
@given(rows=st.lists(_ROWS.map(lambda r: list(map(str, r))) | _CELLS, min_size=1,
                     max_size=10),
       junk=st.sampled_from([b"", b"\xff", b"\xc3", b"\x00", b"\r", b",,"]),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_wrong_columns_and_non_utf8(rows, junk, on_bad):
  lines = [",".join(cells).encode("utf-8") for cells in rows]
  lines[len(lines) // 2] += junk
  _convert_or_clear_error(b"\n".join(lines), on_bad, split="last_click")
