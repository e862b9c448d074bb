"""Tests of the trivago RecSys 2019 converter, on small logs and the shared sample."""


import collections
import csv
import gzip
import io
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import BadRecordError, NoImpressionsError
from data_pipeline.ids import stable_id
from data_pipeline.tf_env import tf
from data_pipeline.trivago import COLUMNS, convert_trivago
from example_io import assert_nothing_left, read_examples

S = stable_id
HEADER = ",".join(COLUMNS).encode()
ROME, PARIS = "Rome, Italy", "Paris, France"


def _row(user, session, time, step, action, reference, city=ROME, platform="IT",
         device="desktop", filters="", impressions="", prices="") -> bytes:
  out = io.StringIO()
  csv.writer(out, lineterminator="").writerow(
      [user, session, time, step, action, reference, platform, city, device,
       filters, impressions, prices])
  return out.getvalue().encode("utf-8")


# Two users. u1's sessions are in the file in reverse time order; user 7 never
# searches for a destination. Line numbers count the header as line 1.
SMALL_LOG = [
    HEADER,
    _row("u1", "s2", 200, 1, "search for destination", PARIS, PARIS, "FR",
         "mobile"),                                                       # 2
    _row("u1", "s2", 210, 2, "search for poi", "Eiffel Tower", PARIS, "FR",
         "mobile"),                                                       # 3
    _row("u1", "s2", 210, 3, "interaction item image", "30", PARIS, "FR",
         "mobile"),                                                       # 4
    _row("u1", "s2", 210, 4, "clickout item", "30", PARIS, "FR", "mobile",
         impressions="10|30", prices="100|250"),                          # 5
    _row("u1", "s1", 100, 1, "search for destination", ROME),             # 6
    _row("u1", "s1", 105, 2, "filter selection", "Sort by Price",
         filters="Sort by Price"),                                        # 7
    _row("u1", "s1", 110, 3, "interaction item info", "20"),              # 8
    _row("u1", "s1", 120, 4, "clickout item", "21", impressions="20|21|22",
         prices="50|60.5|70"),                                            # 9
    _row("7", "s3", 150, 1, "clickout item", "99", platform="US", device="tablet",
         impressions="99|20", prices="80|90"),                            # 10
    _row("7", "s3", 160, 2, "search for item", "20", platform="US",
         device="tablet"),                                                # 11
    _row("7", "s3", 300, 3, "clickout item", "5", platform="US", device="tablet",
         impressions="20|30", prices="10|20"),                            # 12
]


def _expected(label, user, time, item, city, query, query_city, clicks, queries,
              price, position, device, platform):
  """The feature dict of one impression; clicks/queries are (raw id, time, city)."""
  return {
      "label": [label], "user_id": [S(user)], "time": [time], "item_id": [S(item)],
      "item_cats": [S(city)], "query_id": [S(query) if query else 0],
      "query_cats": [S(query_city) if query else 0],
      "click_ids": [S(i) for i, _, _ in clicks],
      "click_times": [t for _, t, _ in clicks],
      "click_cats": [S(c) for _, _, c in clicks],
      "query_hist_ids": [S(q) for q, _, _ in queries],
      "query_hist_times": [t for _, t, _ in queries],
      "query_hist_cats": [S(c) for _, _, c in queries],
      "dense/price": [price], "cat/position": [position],
      "cat/device": [S(device)], "cat/platform": [S(platform)],
  }


# Read by hand from SMALL_LOG. Clickout times 120, 150, 210, 300; test_fraction 0.5
# -> the latest 2 are "test" (threshold 210).
# u1 at 120: current query Rome (line 6); history: item 20 at 110.
U1_120 = [
    _expected(label, "u1", 120, item, ROME, ROME, ROME, [(20, 110, ROME)],
              [(ROME, 100, ROME)], price, position, "desktop", "IT")
    for label, item, price, position in [(0, 20, 50.0, 1), (1, 21, 60.5, 2),
                                         (0, 22, 70.0, 3)]
]
# u1 at 210: the poi search at 210 (step 2) is the current query but not yet
# history; the image interaction at 210 is not history either (same second).
U1_210 = [
    _expected(label, "u1", 210, item, PARIS, "Eiffel Tower", PARIS,
              [(20, 110, ROME), (21, 120, ROME)],
              [(ROME, 100, ROME), (PARIS, 200, PARIS)], price, position,
              "mobile", "FR")
    for label, item, price, position in [(0, 10, 100.0, 1), (1, 30, 250.0, 2)]
]
# User 7 never searches a destination: no query. At 300 the reference 5 is not in
# the list, so both items are negatives.
U7_150 = [
    _expected(label, "7", 150, item, ROME, None, None, [], [], price, position,
              "tablet", "US")
    for label, item, price, position in [(1, 99, 80.0, 1), (0, 20, 90.0, 2)]
]
U7_300 = [
    _expected(0, "7", 300, item, ROME, None, None,
              [(99, 150, ROME), (20, 160, ROME)], [], price, position, "tablet",
              "US")
    for item, price, position in [(20, 10.0, 1), (30, 20.0, 2)]
]


def _write(directory, lines, name="in.csv") -> str:
  path = os.path.join(directory, name)
  opener = gzip.open if name.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  return path


def test_small_log_every_feature_equals_hand_computed_value(tmp_path):
  path = _write(tmp_path, SMALL_LOG)
  out = tmp_path / "out"
  seen_progress = []
  report = convert_trivago(path, str(out), test_fraction=0.5,
                           progress=lambda *call: seen_progress.append(call))
  assert sorted(os.listdir(out)) == ["schema.json", "test-00000-of-00001.tfrecord",
                                     "train-00000-of-00001.tfrecord"]
  # Users in file order, each user's clickouts in time order.
  assert read_examples(out / "train-00000-of-00001.tfrecord") == U1_120 + U7_150
  assert read_examples(out / "test-00000-of-00001.tfrecord") == U1_210 + U7_300
  assert (report.lines_read, report.impressions_written,
          report.positives_written) == (11, 9, 3)
  assert report.skipped == {}
  # User 7 clicked item 5 at 300, which is not in the list shown (line 12).
  assert report.quirks == {"clicked_item_not_shown": 1}
  assert report.first_quirk_line == {"clicked_item_not_shown": 12}
  # The file (12 lines with the header) is read twice; the calls end each pass,
  # the first pass knows the lines of both.
  assert seen_progress == [(12, 24, 0.5), (24, 24, 1.0)]
  schema = schema_lib.DatasetSchema.load(str(out))
  assert schema.num_cats == 1
  assert schema.splits == {
      "train": {"files": ["train-00000-of-00001.tfrecord"], "impressions": 5,
                "positives": 2},
      "test": {"files": ["test-00000-of-00001.tfrecord"], "impressions": 4,
               "positives": 1}}
  assert schema.dense_features == ["price"]
  assert schema.cat_features == ["device", "platform", "position"]
  assert schema.has_queries and not schema.has_seeds
  assert schema.max_lengths == {"clicks": 2, "queries": 2, "seeds": 0}
  # Items 10 20 21 22 30 99 (5, clicked last, is in no history); queries Rome,
  # Paris, Eiffel Tower; categories Rome, Paris (shared by items and queries).
  assert (schema.vocab["users"], schema.vocab["items"], schema.vocab["queries"],
          schema.vocab["categories"]) == (2, 6, 3, 2)
  assert "test = clickouts at or after 210" in schema.source


@pytest.mark.parametrize("test_fraction,train,test", [
    (0.0, U1_120 + U1_210 + U7_150 + U7_300, None),
    (0.25, U1_120 + U1_210 + U7_150, U7_300),       # round(1.0) = 1 clickout
    (0.375, U1_120 + U7_150, U1_210 + U7_300),      # round(1.5) = 2, halves up
    (0.75, U1_120, U1_210 + U7_150 + U7_300),       # round(3.0) = 3
    (1.0, None, U1_120 + U1_210 + U7_150 + U7_300),
])
def test_time_split_takes_the_latest_clickouts(tmp_path, test_fraction, train, test):
  out = tmp_path / "out"
  convert_trivago(_write(tmp_path, SMALL_LOG), str(out), test_fraction=test_fraction)
  for split, expected in (("train", train), ("test", test)):
    shard = out / f"{split}-00000-of-00001.tfrecord"
    if expected is None:
      assert not shard.exists()
    else:
      assert read_examples(shard) == expected


def test_tied_clickouts_all_go_to_test(tmp_path):
  lines = [HEADER] + [
      _row(f"u{i}", f"s{i}", time, 1, "clickout item", "1", impressions="1",
           prices="5")
      for i, time in enumerate([10, 20, 20, 20])
  ]
  report = convert_trivago(_write(tmp_path, lines), str(tmp_path / "out"),
                           test_fraction=0.25)
  assert report.impressions_written == 4
  splits = schema_lib.DatasetSchema.load(str(tmp_path / "out")).splits
  # The latest clickout is at 20, and so are two more: 3 of 4 are "test".
  assert (splits["train"]["impressions"], splits["test"]["impressions"]) == (1, 3)


def test_max_hist_keeps_the_most_recent(tmp_path):
  out = tmp_path / "out"
  convert_trivago(_write(tmp_path, SMALL_LOG), str(out), test_fraction=0.0,
                  max_hist=1)
  examples = read_examples(out / "train-00000-of-00001.tfrecord")
  at_210 = examples[3]
  assert at_210["time"] == [210]
  assert (at_210["click_ids"], at_210["query_hist_ids"]) == ([S(21)], [S(PARIS)])
  convert_trivago(_write(tmp_path, SMALL_LOG), str(out), test_fraction=0.0,
                  max_hist=0, overwrite=True)
  examples = read_examples(out / "train-00000-of-00001.tfrecord")
  assert all(e["click_ids"] == [] and e["query_hist_ids"] == [] for e in examples)


def test_gzip_input_windows_line_ends_bom_and_shards(tmp_path):
  crlf = [b"\xef\xbb\xbf" + SMALL_LOG[0] + b"\r"] + [line + b"\r" for line in SMALL_LOG[1:]]
  convert_trivago(_write(tmp_path, crlf), str(tmp_path / "a"), test_fraction=0.5)
  convert_trivago(_write(tmp_path, SMALL_LOG, name="in.csv.gz"),
                  str(tmp_path / "b"), test_fraction=0.5, num_shards=2)
  assert read_examples(tmp_path / "a" / "train-00000-of-00001.tfrecord") == (
      U1_120 + U7_150)
  # Round-robin over two shards.
  assert read_examples(tmp_path / "b" / "train-00000-of-00002.tfrecord") == [
      U1_120[0], U1_120[2], U7_150[1]]
  assert read_examples(tmp_path / "b" / "train-00001-of-00002.tfrecord") == [
      U1_120[1], U7_150[0]]
  assert read_examples(tmp_path / "b" / "test-00000-of-00002.tfrecord") == [
      U1_210[0], U7_300[0]]


def test_records_are_the_bytes_the_writer_would_encode(tmp_path):
  # The converter encodes a clickout's histories once and patches each item in;
  # that must give exactly what DatasetWriter.write would write per impression.
  out = tmp_path / "out"
  convert_trivago(_write(tmp_path, SMALL_LOG), str(out), test_fraction=0.0)
  records = [r.numpy() for r in tf.data.TFRecordDataset(
      str(out / "train-00000-of-00001.tfrecord"))]
  by_hand = [
      schema_lib.Impression(
          label=e["label"][0], user_id=e["user_id"][0], time=e["time"][0],
          item_id=e["item_id"][0], item_cats=e["item_cats"],
          query_id=e["query_id"][0],
          query_cats=e["query_cats"] if e["query_id"][0] else (),
          clicks=[schema_lib.Event(*event) for event in zip(
              e["click_ids"], e["click_times"], ([c] for c in e["click_cats"]))],
          queries=[schema_lib.Event(*event) for event in zip(
              e["query_hist_ids"], e["query_hist_times"],
              ([c] for c in e["query_hist_cats"]))],
          dense={"price": e["dense/price"][0]},
          categorical={name: e["cat/" + name][0]
                       for name in ("position", "device", "platform")})
      for e in U1_120 + U1_210 + U7_150 + U7_300
  ]
  assert records == [schema_lib.to_example(imp, num_cats=1).SerializeToString(
      deterministic=True) for imp in by_hand]


def test_header_columns_in_any_order(tmp_path):
  order = list(reversed(COLUMNS)) + ["extra"]
  lines = [",".join(order).encode()]
  for line in SMALL_LOG[1:]:
    fields = dict(zip(COLUMNS, next(csv.reader([line.decode()]))), extra="x")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([fields[c] for c in order])
    lines.append(out.getvalue().encode())
  convert_trivago(_write(tmp_path, lines), str(tmp_path / "out"), test_fraction=0.5)
  assert read_examples(tmp_path / "out" / "test-00000-of-00001.tfrecord") == (
      U1_210 + U7_300)


# One user whose session s9 comes back twice with its step restarting at 1, as in
# the published log: right after itself (line 4, earlier in time than lines 2-3)
# and after session s8 (line 8, the user's earliest row).
REUSED_SESSION_LOG = [
    HEADER,
    _row("r", "s9", 300, 1, "search for destination", PARIS, PARIS),     # 2
    _row("r", "s9", 310, 2, "clickout item", "31", PARIS,
         impressions="30|31", prices="10|20"),                            # 3
    _row("r", "s9", 100, 1, "search for destination", ROME),             # 4
    _row("r", "s9", 110, 2, "clickout item", "20", impressions="20|21",
         prices="5|6"),                                                   # 5
    _row("r", "s8", 200, 1, "interaction item image", "21"),             # 6
    _row("r", "s8", 205, 2, "clickout item", "22", impressions="22",
         prices="7"),                                                     # 7
    _row("r", "s9", 50, 1, "clickout item", "40", impressions="40",
         prices="9"),                                                     # 8
]


def _reused_session_expected():
  """By hand: the user's rows in time order 50, 100, 110, 200, 205, 300, 310."""
  rome = [(ROME, 100, ROME)]
  clicks = [(40, 50, ROME), (20, 110, ROME), (21, 200, ROME), (22, 205, ROME)]
  shared = dict(user="r", device="desktop", platform="IT")
  return (
      [_expected(1, time=50, item=40, city=ROME, query=None, query_city=None,
                 clicks=[], queries=[], price=9.0, position=1, **shared)]
      + [_expected(label, time=110, item=item, city=ROME, query=ROME,
                   query_city=ROME, clicks=clicks[:1], queries=rome, price=price,
                   position=position, **shared)
         for label, item, price, position in [(1, 20, 5.0, 1), (0, 21, 6.0, 2)]]
      + [_expected(1, time=205, item=22, city=ROME, query=ROME, query_city=ROME,
                   clicks=clicks[:3], queries=rome, price=7.0, position=1,
                   **shared)]
      + [_expected(label, time=310, item=item, city=PARIS, query=PARIS,
                   query_city=PARIS, clicks=clicks,
                   queries=rome + [(PARIS, 300, PARIS)], price=price,
                   position=position, **shared)
         for label, item, price, position in [(0, 30, 10.0, 1), (1, 31, 20.0, 2)]])


def test_reused_session_ids_are_new_segments_in_time_order(tmp_path):
  path = _write(tmp_path, REUSED_SESSION_LOG)
  out = tmp_path / "out"
  report = convert_trivago(path, str(out), test_fraction=0.0)
  assert read_examples(out / "train-00000-of-00001.tfrecord") == (
      _reused_session_expected())
  assert (report.lines_read, report.impressions_written,
          report.positives_written) == (7, 6, 4)
  assert report.skipped == {}
  assert report.quirks == {"reused_session_id": 2}
  assert report.first_quirk_line == {"reused_session_id": 4}
  assert report.summary().splitlines()[1] == (
      "  converted 2 x reused_session_id: a session_id whose step restarts at 1, "
      f"kept as a new session (rows in time order within the user) (first at "
      f"{path}:4)")


@pytest.mark.parametrize("line,changes,kind,reason,skipped", [
    # A restart at 2 is no restart: step 2 after step 2. Skipped, line 5 (step 2)
    # then follows line 3's step 2 too.
    (4, dict(step="2"), "step_not_increasing",
     "step 2 follows step 2 of session 's9'; steps must increase within a session "
     "(or restart at 1: a new one)", 2),
    # Within the restarted segment time still must not go back.
    (5, dict(timestamp="99"), "time_goes_back",
     "timestamp 99 is earlier than 100 at step 1 of session 's9'; time must not "
     "go back within a session", 1),
])
def test_a_restarted_segment_is_still_checked(tmp_path, line, changes, kind,
                                              reason, skipped):
  lines = list(REUSED_SESSION_LOG)
  fields = dict(zip(COLUMNS, next(csv.reader([lines[line - 1].decode()]))))
  fields.update(changes)
  out = io.StringIO()
  csv.writer(out, lineterminator="").writerow([fields[c] for c in COLUMNS])
  lines[line - 1] = out.getvalue().encode()
  path = _write(tmp_path, lines)
  with pytest.raises(BadRecordError) as raised:
    convert_trivago(path, str(tmp_path / "out"))
  assert (str(raised.value), raised.value.kind) == (f"{path}:{line}: {reason}", kind)
  report = convert_trivago(path, str(tmp_path / "out"), on_bad="skip")
  assert report.skipped == {kind: skipped}


def test_the_same_session_id_of_another_user_is_no_reuse(tmp_path):
  lines = [HEADER,
           _row("a", "s1", 10, 1, "clickout item", "1", impressions="1",
                prices="1"),
           _row("b", "s1", 5, 1, "clickout item", "2", impressions="2",
                prices="1")]
  report = convert_trivago(_write(tmp_path, lines), str(tmp_path / "out"),
                           test_fraction=0.0)
  assert (report.quirks, report.impressions_written) == ({}, 2)


def _replace(line: int, **changes) -> bytes:
  """SMALL_LOG's line ``line`` (1-based) with some columns changed."""
  fields = dict(zip(COLUMNS, next(csv.reader([SMALL_LOG[line - 1].decode()]))))
  fields.update(changes)
  out = io.StringIO()
  csv.writer(out, lineterminator="").writerow([fields[c] for c in COLUMNS])
  return out.getvalue().encode("utf-8")


# (kind, replacement of line 9 (u1's clickout at 120, step 4 of session s1 after
# step 3 at 110), exact reason).
BAD_ROWS = [
    ("empty_line", b"", "empty line (every line must be a row)"),
    ("empty_line", b" \t", "empty line (every line must be a row)"),
    ("not_utf8", b"u1,s1,120,4,clickout item,\xff", "not UTF-8: byte 0xff at column 27"),
    ("bad_csv", b'u1,s1,120,4,clickout item,"21', "not a CSV row: unexpected end of data"),
    ("bad_csv", b'u1,s1,"120"x,4', "not a CSV row: ',' expected after '\"'"),
    ("wrong_column_count", b"u1,s1,120", "has 3 columns, the header has 12"),
    ("wrong_column_count", _replace(9) + b",", "has 13 columns, the header has 12"),
    ("empty_id", _replace(9, user_id=""), "user_id is empty"),
    ("empty_id", _replace(9, session_id=""), "session_id is empty"),
    ("bad_timestamp", _replace(9, timestamp="120.0"),
     "timestamp '120.0' is not an int (unix seconds)"),
    ("bad_timestamp", _replace(9, timestamp=""),
     "timestamp '' is not an int (unix seconds)"),
    ("bad_timestamp", _replace(9, timestamp=str(2**63)),
     "timestamp 9223372036854775808 does not fit an int64"),
    ("bad_step", _replace(9, step="0"), "step '0' is not a positive int"),
    ("bad_step", _replace(9, step="-4"), "step '-4' is not a positive int"),
    ("bad_step", _replace(9, step="four"), "step 'four' is not a positive int"),
    ("unknown_action_type", _replace(9, action_type="clickout"),
     "action_type 'clickout' is not a trivago action type (clickout item, search "
     "for destination, search for poi, interaction item image, interaction item "
     "info, interaction item rating, interaction item deals, search for item, "
     "filter selection, change of sort order)"),
    ("step_not_increasing", _replace(9, step="3"),
     "step 3 follows step 3 of session 's1'; steps must increase within a session "
     "(or restart at 1: a new one)"),
    ("time_goes_back", _replace(9, timestamp="109"),
     "timestamp 109 is earlier than 110 at step 3 of session 's1'; time must not go "
     "back within a session"),
    ("empty_query", _replace(9, action_type="search for poi", reference="",
                             impressions="", prices=""),
     "reference of a 'search for poi' row is empty (it is the query text)"),
    # "unknown" and "" are the log's withheld items (quirks); nothing else is.
    ("reference_not_item_id", _replace(9, action_type="interaction item info",
                                       reference="Unknown"),
     "reference 'Unknown' of a 'interaction item info' row is not an item id "
     "(digits), 'unknown' or empty"),
    ("reference_not_item_id", _replace(9, action_type="search for item",
                                       reference="Sort by Price"),
     "reference 'Sort by Price' of a 'search for item' row is not an item id "
     "(digits), 'unknown' or empty"),
    ("reference_not_item_id", _replace(9, reference=" "),
     "reference ' ' of a 'clickout item' row is not an item id (digits), 'unknown' "
     "or empty"),
    ("reference_not_item_id", _replace(9, reference="-21"),
     "reference '-21' of a 'clickout item' row is not an item id (digits), "
     "'unknown' or empty"),
    ("reference_not_item_id", _replace(9, reference="2\u00b2"),
     "reference '2\u00b2' of a 'clickout item' row is not an item id (digits), "
     "'unknown' or empty"),
    ("empty_city", _replace(9, city=""),
     "city of a 'clickout item' row is empty (it is the category of the row's "
     "items and query)"),
    ("no_impressions", _replace(9, impressions="", prices=""),
     "impressions of a 'clickout item' row is empty"),
    ("impressions_prices_mismatch", _replace(9, prices="50|60"),
     "3 impressions but 2 prices"),
    ("impressions_prices_mismatch", _replace(9, prices=""),
     "3 impressions but 0 prices"),
    ("impression_not_item_id", _replace(9, impressions="20||22"),
     "impressions[1] '' is not an item id (digits)"),
    ("impression_not_item_id", _replace(9, impressions="20|21|x22"),
     "impressions[2] 'x22' is not an item id (digits)"),
    # A withheld clicked item does not excuse a malformed list.
    ("impression_not_item_id", _replace(9, reference="unknown",
                                        impressions="20|x|22"),
     "impressions[1] 'x' is not an item id (digits)"),
    ("impressions_prices_mismatch", _replace(9, reference="", prices="50"),
     "3 impressions but 1 prices"),
    ("bad_price", _replace(9, prices="50|-1|70"),
     "prices[1] '-1' is not a non-negative number that fits a float32"),
    ("bad_price", _replace(9, prices="50|60|nan"),
     "prices[2] 'nan' is not a non-negative number that fits a float32"),
    ("bad_price", _replace(9, prices="50|60|" + "9" * 45),
     f"prices[2] '{'9' * 37}...' is not a non-negative number that fits a "
     "float32"),
]


@pytest.mark.parametrize("kind,bad_row,reason", BAD_ROWS,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_ROWS)])
def test_bad_row_stops_with_file_line_reason_and_leaves_nothing(
    tmp_path, kind, bad_row, reason):
  lines = list(SMALL_LOG)
  lines[8] = bad_row
  path = _write(tmp_path, lines)
  with pytest.raises(BadRecordError) as raised:
    convert_trivago(path, str(tmp_path / "out"))
  assert str(raised.value) == f"{path}:9: {reason}"
  assert (raised.value.kind, raised.value.line, raised.value.path) == (kind, 9, path)
  assert_nothing_left(tmp_path, ["in.csv"])


def test_skip_counts_per_reason_and_writes_the_good_rows(tmp_path):
  lines = list(SMALL_LOG)
  lines[2] = _replace(3, reference="")                   # 3 empty_query
  lines[7] = _replace(8, reference="item 20")            # 8 reference_not_item_id
  lines.insert(9, _replace(9, step="2"))                 # 10 step_not_increasing
  lines.insert(10, b"")                                  # 11 empty_line
  lines.append(_replace(12, step="9", prices="1"))       # 15 impressions_prices_...
  path = _write(tmp_path, lines)
  out = tmp_path / "out"
  report = convert_trivago(path, str(out), on_bad="skip", test_fraction=0.0)
  assert report.lines_read == 14
  assert report.skipped == {"empty_query": 1, "reference_not_item_id": 1,
                            "step_not_increasing": 1, "empty_line": 1,
                            "impressions_prices_mismatch": 1}
  assert report.first_skipped_line == {
      "empty_query": 3, "reference_not_item_id": 8, "step_not_increasing": 10,
      "empty_line": 11, "impressions_prices_mismatch": 15}
  examples = read_examples(out / "train-00000-of-00001.tfrecord")
  # Without the poi search u1's query at 210 is Paris; without item 20 at 110 the
  # first clickout has no click history. The step-2 row after step 4 was skipped,
  # so session s1 stays at step 4 and user 7 is unaffected.
  no_click_20 = [dict(e, click_ids=[], click_times=[], click_cats=[])
                 for e in U1_120]
  paris = [dict(e, query_id=[S(PARIS)], click_ids=[S(21)], click_times=[120],
                click_cats=[S(ROME)]) for e in U1_210]
  assert examples == no_click_20 + paris + U7_150 + U7_300
  assert report.summary().splitlines()[0] == (
      f"{path}: read 14 lines, wrote 9 impressions (3 positive) to {out}")


# The published log withholds some items: "unknown" or empty references.


def test_withheld_item_of_an_interaction_adds_no_click(tmp_path):
  lines = list(SMALL_LOG)
  lines[7] = _replace(8, reference="unknown")    # u1's info on item 20 at 110
  lines[10] = _replace(11, reference="")         # 7's search for item 20 at 160
  path = _write(tmp_path, lines)
  out = tmp_path / "out"
  report = convert_trivago(path, str(out), test_fraction=0.5)
  # Item 20 leaves u1's history at 120 and 210 and user 7's at 300.
  no_click_20 = [dict(e, click_ids=[], click_times=[], click_cats=[])
                 for e in U1_120]
  u1_210 = [dict(e, click_ids=[S(21)], click_times=[120], click_cats=[S(ROME)])
            for e in U1_210]
  u7_300 = [dict(e, click_ids=[S(99)], click_times=[150], click_cats=[S(ROME)])
            for e in U7_300]
  assert read_examples(out / "train-00000-of-00001.tfrecord") == (
      no_click_20 + U7_150)
  assert read_examples(out / "test-00000-of-00001.tfrecord") == u1_210 + u7_300
  assert (report.lines_read, report.impressions_written, report.skipped) == (
      11, 9, {})
  assert report.quirks == {"unknown_reference": 2, "clicked_item_not_shown": 1}
  assert report.first_quirk_line == {"unknown_reference": 8,
                                     "clicked_item_not_shown": 12}
  assert (f"  converted 2 x unknown_reference: an item action whose reference is "
          "'unknown' or empty (the item is withheld): adds no click to the history "
          f"(first at {path}:8)") in report.summary().splitlines()


def test_clickout_with_withheld_item_writes_no_impressions(tmp_path):
  lines = list(SMALL_LOG)
  lines[8] = _replace(9, reference="unknown")    # u1's clickout at 120
  lines[9] = _replace(10, reference="")          # 7's clickout at 150 (test.csv)
  path = _write(tmp_path, lines)
  out = tmp_path / "out"
  report = convert_trivago(path, str(out), test_fraction=0.5)
  # Two clickouts are left, 210 and 300: round(0.5 * 2) = 1 -> test from 300.
  # Neither withheld clickout is in a later history (item 21 at 120, item 99 at
  # 150 were their references).
  u1_210 = [dict(e, click_ids=[S(20)], click_times=[110], click_cats=[S(ROME)])
            for e in U1_210]
  u7_300 = [dict(e, click_ids=[S(20)], click_times=[160], click_cats=[S(ROME)])
            for e in U7_300]
  assert read_examples(out / "train-00000-of-00001.tfrecord") == u1_210
  assert read_examples(out / "test-00000-of-00001.tfrecord") == u7_300
  assert (report.lines_read, report.impressions_written,
          report.positives_written, report.skipped) == (11, 4, 1, {})
  assert report.quirks == {"unlabelled_clickout": 2, "clicked_item_not_shown": 1}
  assert report.first_quirk_line == {"unlabelled_clickout": 9,
                                     "clicked_item_not_shown": 12}
  assert "test = clickouts at or after 300" in schema_lib.DatasetSchema.load(
      str(out)).source


def test_only_withheld_clickouts_is_no_impressions_naming_the_quirk(tmp_path):
  lines = [HEADER, _replace(9, reference=""), _replace(10, reference="unknown")]
  path = _write(tmp_path, lines)
  with pytest.raises(NoImpressionsError) as raised:
    convert_trivago(path, str(tmp_path / "out"))
  assert str(raised.value) == (
      f"{path}: no impressions to convert (2 rows, no good 'clickout item' row; "
      "no bad records; quirks: unlabelled_clickout 2 (first at line 2))")
  assert_nothing_left(tmp_path, ["in.csv"])


def test_withheld_item_rows_still_move_the_session_on(tmp_path):
  # A withheld row is a good row: the next row's step must follow it.
  lines = list(SMALL_LOG)
  lines[7] = _replace(8, reference="unknown")
  lines.insert(8, _replace(8, timestamp="115"))   # step 3 again, after line 8
  path = _write(tmp_path, lines)
  with pytest.raises(BadRecordError) as raised:
    convert_trivago(path, str(tmp_path / "out"))
  assert str(raised.value) == (
      f"{path}:9: step 3 follows step 3 of session 's1'; steps must increase "
      "within a session (or restart at 1: a new one)")


FATAL = [
    ("bad_header", [b"user_id,session_id,timestamp"] + SMALL_LOG[1:], 1,
     "header lacks columns ['step', 'action_type', 'reference', 'platform', 'city', "
     "'device', 'current_filters', 'impressions', 'prices']; a trivago RecSys 2019 "
     f"CSV starts with the line {HEADER.decode()}"),
    ("bad_header", [HEADER + b",city"] + SMALL_LOG[1:], 1,
     "header repeats columns ['city']; a trivago RecSys 2019 CSV starts with the "
     f"line {HEADER.decode()}"),
    ("bad_header", SMALL_LOG[1:], 1,
     "header lacks columns ['user_id', 'session_id', 'timestamp', 'step', "
     "'action_type', 'reference', 'platform', 'city', 'device', 'current_filters', "
     "'impressions', 'prices']; a trivago RecSys 2019 CSV starts with the line "
     f"{HEADER.decode()}"),
    ("bad_header", [b"\xfe" + HEADER] + SMALL_LOG[1:], 1,
     "header: not UTF-8: byte 0xfe at column 1"),
    ("user_not_grouped", SMALL_LOG + [_row("u1", "s9", 500, 1, "clickout item", "1",
                                           impressions="1", prices="1")], 13,
     "user_id 'u1' comes back after other users (its rows ended at line 9); each "
     "user's rows must be together: sort the file by user_id, keeping the order of "
     "rows within a user"),
]


@pytest.mark.parametrize("on_bad", ["stop", "skip"])
@pytest.mark.parametrize("kind,lines,line,reason", FATAL,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(FATAL)])
def test_file_level_problems_stop_even_when_skipping(tmp_path, on_bad, kind, lines,
                                                     line, reason):
  path = _write(tmp_path, lines)
  with pytest.raises(BadRecordError) as raised:
    convert_trivago(path, str(tmp_path / "out"), on_bad=on_bad)
  assert str(raised.value) == f"{path}:{line}: {reason}"
  assert raised.value.kind == kind
  assert_nothing_left(tmp_path, ["in.csv"])


def test_truncated_gzip_is_unreadable_even_when_skipping(tmp_path):
  path = _write(tmp_path, SMALL_LOG * 30, name="in.csv.gz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(BadRecordError) as raised:
    convert_trivago(path, str(tmp_path / "out"), on_bad="skip")
  assert raised.value.kind == "unreadable_file"
  assert str(raised.value).startswith(f"{path}:")
  assert ": cannot read the file: " in str(raised.value)
  assert_nothing_left(tmp_path, ["in.csv.gz"])


@pytest.mark.parametrize("on_bad", ["stop", "skip"])
@pytest.mark.parametrize("lines,message", [
    ([], "in.csv: no impressions to convert (0 rows, no good 'clickout item' row; "
     "no bad records)"),
    ([HEADER], "in.csv: no impressions to convert (0 rows, no good 'clickout item' "
     "row; no bad records)"),
    (SMALL_LOG[:4], "in.csv: no impressions to convert (3 rows, no good 'clickout "
     "item' row; no bad records)"),
])
def test_no_clickouts_is_an_error_and_leaves_nothing(tmp_path, on_bad, lines,
                                                     message):
  path = os.path.join(tmp_path, "in.csv")
  with open(path, "wb") as f:
    f.write(b"".join(line + b"\n" for line in lines))
  with pytest.raises(NoImpressionsError) as raised:
    convert_trivago(path, str(tmp_path / "out"), on_bad=on_bad)
  assert str(raised.value) == f"{tmp_path}/{message}"
  assert_nothing_left(tmp_path, ["in.csv"])


def test_all_clickouts_skipped_is_an_error_naming_the_skips(tmp_path):
  lines = [HEADER, _replace(9, prices="1"), _replace(10, impressions="")]
  path = _write(tmp_path, lines)
  with pytest.raises(NoImpressionsError) as raised:
    convert_trivago(path, str(tmp_path / "out"), on_bad="skip")
  assert str(raised.value) == (
      f"{path}: no impressions to convert (2 rows, no good 'clickout item' row; "
      "skipped 2 bad records: impressions_prices_mismatch 1 (first at line 2), "
      "no_impressions 1 (first at line 3))")
  assert_nothing_left(tmp_path, ["in.csv"])


def test_existing_output_is_kept_unless_overwrite(tmp_path):
  path = _write(tmp_path, SMALL_LOG)
  bad_lines = list(SMALL_LOG)
  bad_lines[11] = b"7,s3"
  bad = _write(tmp_path, bad_lines, name="bad.csv")
  out = tmp_path / "out"
  out.mkdir()
  (out / "mine.txt").write_text("keep")
  with pytest.raises(FileExistsError):
    convert_trivago(path, str(out))
  with pytest.raises(BadRecordError):
    convert_trivago(bad, str(out), overwrite=True)
  assert os.listdir(out) == ["mine.txt"]
  assert_nothing_left(tmp_path, ["in.csv", "bad.csv", "out"])
  convert_trivago(path, str(out), overwrite=True)
  assert sorted(os.listdir(out)) == ["schema.json", "test-00000-of-00001.tfrecord",
                                     "train-00000-of-00001.tfrecord"]


def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path):
  path = _write(tmp_path, SMALL_LOG)
  out = str(tmp_path / "out")
  with pytest.raises(ValueError, match="on_bad must be one of"):
    convert_trivago(path, out, on_bad="ignore")
  with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\], got 1.5"):
    convert_trivago(path, out, test_fraction=1.5)
  with pytest.raises(ValueError, match="max_hist must be >= 0, got -1"):
    convert_trivago(path, out, max_hist=-1)
  with pytest.raises(ValueError, match="num_shards must be >= 1"):
    convert_trivago(path, out, num_shards=0)
  with pytest.raises(FileNotFoundError):
    convert_trivago(str(tmp_path / "missing.csv"), out)
  assert_nothing_left(tmp_path, ["in.csv"])


# --- The shared sample: real trivago rows. ---

SAMPLE_REL = os.path.join("trivago", "trivago_sample.csv.gz")


def _independent_counts(path):
  """What the conversion must give, computed from the raw rows with csv alone.

  Returns ({quirk: its lines}, {split: (users, positives, negatives)}, threshold,
  number of rows).
  """
  with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  item_actions = {"interaction item image", "interaction item info",
                  "interaction item rating", "interaction item deals",
                  "search for item", "clickout item"}
  withheld = [(line, r["action_type"]) for line, r in enumerate(rows, 2)
              if r["action_type"] in item_actions
              and r["reference"] in ("unknown", "")]
  quirks = {
      "unknown_reference": [line for line, action in withheld
                            if action != "clickout item"],
      "unlabelled_clickout": [line for line, action in withheld
                              if action == "clickout item"],
      "clicked_item_not_shown": [
          line for line, r in enumerate(rows, 2)
          if r["action_type"] == "clickout item" and r["reference"].isdigit()
          and r["reference"] not in r["impressions"].split("|")],
  }
  clickouts = [r for r in rows if r["action_type"] == "clickout item"
               and r["reference"].isdigit()]
  times = sorted(int(r["timestamp"]) for r in clickouts)
  threshold = times[len(times) - round(0.25 * len(times))]
  counts = {}
  for split, wanted in (("train", lambda t: t < threshold),
                        ("test", lambda t: t >= threshold)):
    chosen = [r for r in clickouts if wanted(int(r["timestamp"]))]
    shown = sum(len(r["impressions"].split("|")) for r in chosen)
    positives = sum(r["reference"] in r["impressions"].split("|") for r in chosen)
    counts[split] = (len({r["user_id"] for r in chosen}), positives,
                     shown - positives)
  return quirks, counts, threshold, len(rows)


@pytest.fixture(scope="module")
def converted_sample(tmp_path_factory):
  """The sample converted once, with the default flags (on_bad="stop")."""
  data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "shared", "data")
  path = os.path.join(data, SAMPLE_REL)
  assert os.path.isfile(path), f"{path} is missing: the real-data tests need it"
  out = str(tmp_path_factory.mktemp("trivago") / "out")
  report = convert_trivago(path, out)
  return path, out, report


def _scalars_and_times(out, split):
  """Per impression: label, user_id, time, and ragged click/query times."""
  spec = {name: tf.io.FixedLenFeature([], tf.int64)
          for name in ("label", "user_id", "time")}
  spec.update({name: tf.io.RaggedFeature(tf.int64)
               for name in ("click_times", "query_hist_times")})
  parts = collections.defaultdict(list)
  for batch in tf.data.TFRecordDataset(
      os.path.join(out, f"{split}-00000-of-00001.tfrecord")).batch(8192):
    parsed = tf.io.parse_example(batch, spec)
    for name, value in parsed.items():
      parts[name].append(value)
  return {name: (np.concatenate([v.numpy() for v in values])
                 if name in ("label", "user_id", "time")
                 else tf.concat(values, axis=0))
          for name, values in parts.items()}


def test_sample_counts_equal_counts_from_the_raw_file(converted_sample):
  path, out, report = converted_sample
  quirks, counts, threshold, num_rows = _independent_counts(path)
  assert report.skipped == {}
  found = {kind: lines for kind, lines in quirks.items() if lines}
  assert report.quirks == {kind: len(lines) for kind, lines in found.items()}
  assert report.first_quirk_line == {kind: lines[0] for kind, lines in found.items()}
  assert report.lines_read == num_rows
  schema = schema_lib.DatasetSchema.load(out)
  assert f"test = clickouts at or after {threshold} " in schema.source
  all_users = set()
  for split, (users, positives, negatives) in counts.items():
    got = _scalars_and_times(out, split)
    assert len(np.unique(got["user_id"])) == users
    assert (int(got["label"].sum()), int((got["label"] == 0).sum())) == (
        positives, negatives)
    assert schema.splits[split]["impressions"] == positives + negatives
    assert (got["time"] >= threshold).all() == (split == "test")
    assert (got["time"] < threshold).all() == (split == "train")
    all_users.update(got["user_id"].tolist())
  assert schema.vocab["users"] == len(all_users)
  assert report.impressions_written == sum(p + n for _, p, n in counts.values())


def _independent_session_reuses(path):
  """Lines starting a block of a session id its user already had at step 1."""
  with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  reuses, sessions_of_user, previous = [], set(), (None, None)
  for line, row in enumerate(rows, 2):
    user, session = row["user_id"], row["session_id"]
    if user != previous[0]:
      sessions_of_user = set()
    if row["step"] == "1" and session in sessions_of_user:
      reuses.append(line)
    sessions_of_user.add(session)
    previous = (user, session)
  return reuses


def test_sample_reused_session_ids_are_counted(converted_sample):
  """The shared sample (sessions kept whole) reuses no session id; the count is
  the raw file's either way."""
  path, _, report = converted_sample
  reuses = _independent_session_reuses(path)
  assert reuses == []
  assert report.quirks.get("reused_session_id", 0) == len(reuses)
  assert "reused_session_id" not in report.summary()


@pytest.mark.parametrize("split", ["train", "test"])
def test_sample_every_history_entry_is_earlier_than_its_impression(
    converted_sample, split):
  _, out, _ = converted_sample
  got = _scalars_and_times(out, split)
  assert len(got["time"]) > 10_000
  for name in ("click_times", "query_hist_times"):
    times = got[name]
    lengths = times.row_lengths().numpy()
    assert lengths.max() <= 100
    assert lengths.max() > 0
    flat = times.flat_values.numpy()
    owner_time = np.repeat(got["time"], lengths)
    assert (flat < owner_time).all(), name
    # Oldest first within each impression.
    same_owner = np.repeat(np.arange(len(lengths)), lengths)
    step_back = (np.diff(flat) < 0) & (np.diff(same_owner) == 0)
    assert not step_back.any(), name


def _records_of_user(out, user):
  """The feature dicts of one user's impressions, train then test, in order."""
  found = []
  for split in ("train", "test"):
    for batch in tf.data.TFRecordDataset(
        os.path.join(out, f"{split}-00000-of-00001.tfrecord")).batch(8192):
      users = tf.io.parse_example(
          batch, {"user_id": tf.io.FixedLenFeature([], tf.int64)})["user_id"]
      for record, user_id in zip(batch.numpy(), users.numpy()):
        if user_id == S(user):
          example = tf.train.Example.FromString(record)
          found.append({k: list(getattr(v, v.WhichOneof("kind")).value)
                        for k, v in example.features.feature.items()})
  return found


AFYON = "Afyon, Turkey"
SANDIKLI = "Sandıklı Hüdai Kaplıcaları"


def test_sample_one_user_by_hand(converted_sample):
  """User 609WDWYDA3KM, lines 60084-60094 of the sample, read by hand:

  60084 t=1541611136 search for poi "Sandıklı Hüdai Kaplıcaları" (Afyon, Turkey)
  60085 t=1541611168 clickout 4410388, shown 4410388 at 41
  60086-60090        sort order and filter changes (dropped)
  60091 t=1541611349 clickout 4410388, shown 4410388 at 41
  60092, 60093 t=1541611754 image of 2328804 (twice)
  60094 t=1541611784 clickout 1709889, shown 1709889|4410388|2328804 at 65|58|40
  All mobile, platform TR, city Afyon, Turkey; all before the test threshold.
  """
  _, out, _ = converted_sample
  query = [(SANDIKLI, 1541611136, AFYON)]
  expected = [
      _expected(1, "609WDWYDA3KM", 1541611168, 4410388, AFYON, SANDIKLI, AFYON, [],
                query, 41.0, 1, "mobile", "TR"),
      _expected(1, "609WDWYDA3KM", 1541611349, 4410388, AFYON, SANDIKLI, AFYON,
                [(4410388, 1541611168, AFYON)], query, 41.0, 1, "mobile", "TR"),
  ] + [
      _expected(label, "609WDWYDA3KM", 1541611784, item, AFYON, SANDIKLI, AFYON,
                [(4410388, 1541611168, AFYON), (4410388, 1541611349, AFYON),
                 (2328804, 1541611754, AFYON), (2328804, 1541611754, AFYON)],
                query, price, position, "mobile", "TR")
      for label, item, price, position in [(1, 1709889, 65.0, 1),
                                           (0, 4410388, 58.0, 2),
                                           (0, 2328804, 40.0, 3)]
  ]
  assert _records_of_user(out, "609WDWYDA3KM") == expected


def test_sample_user_whose_sessions_are_out_of_time_order(converted_sample):
  """User O2KE45PBPZZZ, lines 53197-53200: the session listed first is later.

  53197, 53198 t=1541690344 image of 479106 (session e3a879b13376d)
  53199 t=1541610406 clickout 1169493, shown 1169493|1636711|9460734|1321492
        at 106|50|32|36 (session d3280f388418a)
  53200 t=1541612522 clickout 1169493, shown 1169493|9460734|1321492 at 106|32|35
  The images are later than both clickouts, so no history holds them. Desktop,
  platform BR, city Joinville, Brazil; both clickouts before the test threshold.
  """
  _, out, _ = converted_sample
  city = "Joinville, Brazil"
  expected = [
      _expected(label, "O2KE45PBPZZZ", 1541610406, item, city, None, None, [], [],
                price, position, "desktop", "BR")
      for label, item, price, position in [(1, 1169493, 106.0, 1),
                                           (0, 1636711, 50.0, 2),
                                           (0, 9460734, 32.0, 3),
                                           (0, 1321492, 36.0, 4)]
  ] + [
      _expected(label, "O2KE45PBPZZZ", 1541612522, item, city, None, None,
                [(1169493, 1541610406, city)], [], price, position, "desktop",
                "BR")
      for label, item, price, position in [(1, 1169493, 106.0, 1),
                                           (0, 9460734, 32.0, 2),
                                           (0, 1321492, 35.0, 3)]
  ]
  assert _records_of_user(out, "O2KE45PBPZZZ") == expected


def test_sample_converts_with_default_flags_counting_its_quirks(
    converted_sample):
  """Measured on the sample and read by hand: two 'interaction item info' rows
  with reference 'unknown' (lines 26201 and 35725) and one clickout of item 97752
  not among the 25 items shown (line 62260); no bad row."""
  path, out, report = converted_sample
  assert report.quirks == {"unknown_reference": 2, "clicked_item_not_shown": 1}
  assert report.first_quirk_line == {"unknown_reference": 26201,
                                     "clicked_item_not_shown": 62260}
  assert (report.lines_read, report.impressions_written,
          report.positives_written) == (67336, 217956, 9472)
  assert report.summary().splitlines()[1:] == [
      "  converted 1 x clicked_item_not_shown: a clickout whose clicked item is not "
      f"in its impressions: written, every item labelled 0 (first at {path}:62260)",
      "  converted 2 x unknown_reference: an item action whose reference is "
      "'unknown' or empty (the item is withheld): adds no click to the history "
      f"(first at {path}:26201)"]


# --- Fuzzing: any input converts or fails with a BadRecordError, nothing else. ---

_FATAL_KINDS = ("bad_header", "user_not_grouped", "unreadable_file")
_FIELD_TEXT = st.text(alphabet=st.sampled_from('ab1|2,". \t\x00\u00e9\ud7ff'),
                      max_size=6)
# Mostly good rows, so that the fuzzing reaches the deeper checks and conversions
# succeed; `_JUNK` then breaks a few fields.
_GOOD_ROWS = st.fixed_dictionaries({
    "user_id": st.sampled_from(["u1", "u2"]),
    "session_id": st.sampled_from(["s1", "s2"]),
    "timestamp": st.integers(-2, 20),
    "action_type": st.sampled_from(
        ["clickout item", "search for poi", "search for destination",
         "interaction item image", "filter selection", "search for item"]),
    "reference": st.sampled_from(["1", "2", "3", "unknown", ""]),
    "platform": st.sampled_from(["IT", ""]),
    "city": st.sampled_from([ROME, PARIS]),
    "device": st.sampled_from(["mobile", ""]),
    "current_filters": st.sampled_from(["", "Sort by Price"]),
    "shown": st.sampled_from([("1|2", "5|6"), ("3", "5"), ("2|1|3", "1|2.5|3")]),
})
_JUNK = st.lists(st.tuples(st.sampled_from(COLUMNS), _FIELD_TEXT), max_size=2)
_FUZZ = settings(max_examples=50, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _csv_lines(rows, junk) -> list:
  """CSV lines of ``rows`` grouped by user and session in time order, with
  consecutive steps, then fields replaced by ``junk`` (column, text) pairs."""
  rows = sorted(rows, key=lambda r: (r["user_id"], r["session_id"], r["timestamp"]))
  lines = []
  for i, row in enumerate(rows):
    fields = dict(row, timestamp=str(row["timestamp"]), step=str(i + 1),
                  impressions=row["shown"][0], prices=row["shown"][1])
    if i < len(junk):
      fields[junk[i][0]] = junk[i][1]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([fields[c] for c in COLUMNS])
    lines.append(out.getvalue().encode("utf-8"))
  return lines


def _convert_or_bad_record(data: bytes, on_bad: str) -> None:
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "in.csv")
    with open(path, "wb") as f:
      f.write(data)
    out = os.path.join(directory, "out")
    try:
      report = convert_trivago(path, out, on_bad=on_bad, test_fraction=0.5)
    except BadRecordError as e:
      assert on_bad == "stop" or e.kind in _FATAL_KINDS, e
      assert str(e).startswith(f"{path}:{e.line}: ")
      assert_nothing_left(directory, ["in.csv"])
      return
    except NoImpressionsError:
      assert_nothing_left(directory, ["in.csv"])
      return
    splits = schema_lib.DatasetSchema.load(out).splits
    assert sum(s["impressions"] for s in splits.values()) == (
        report.impressions_written) > 0


@_FUZZ
@given(data=st.binary(max_size=300), with_header=st.booleans(),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_random_bytes(data, with_header, on_bad):
  _convert_or_bad_record((HEADER + b"\n" if with_header else b"") + data, on_bad)


@_FUZZ
@given(rows=st.lists(_GOOD_ROWS, min_size=1, max_size=6), junk=_JUNK,
       cuts=st.lists(st.integers(0, 80), max_size=2),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_rows_and_truncated_lines(rows, junk, cuts, on_bad):
  lines = _csv_lines(rows, junk)
  lines = [line[:cut] for line, cut in zip(lines, cuts)] + lines[len(cuts):]
  _convert_or_bad_record(b"\n".join([HEADER] + lines), on_bad)


@_FUZZ
@given(lines=st.lists(st.sampled_from(SMALL_LOG[1:]), min_size=1, max_size=6),
       columns=st.lists(st.integers(-2, 2), min_size=1, max_size=6),
       noise=st.lists(st.tuples(st.integers(0, 120), st.binary(min_size=1,
                                                               max_size=2)),
                      max_size=3),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_wrong_column_counts_and_non_utf8(lines, columns, noise, on_bad):
  changed = []
  for line, extra in zip(lines, columns + [0] * len(lines)):
    if extra < 0:
      line = line.rsplit(b",", -extra)[0]
    changed.append(line + b",x" * max(extra, 0))
  for i, (at, junk) in enumerate(noise):
    target = i % len(changed)
    changed[target] = changed[target][:at] + junk + changed[target][at:]
  _convert_or_bad_record(b"\n".join([HEADER] + changed), on_bad)
