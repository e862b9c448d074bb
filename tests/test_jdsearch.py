"""Tests of the JDsearch converter: hand-computed users, the real sample, bad lines."""


import csv
import dataclasses
import gzip
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import BadRecordError, NoImpressionsError
from data_pipeline.ids import stable_id
from data_pipeline.jdsearch import (BEHAVIOR_COLUMNS, DEFAULT_TEST_TIME,
                                    META_COLUMNS, convert_jdsearch)
from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from example_io import assert_nothing_left

S = stable_id
T = DEFAULT_TEST_TIME
X = "\x18"  # the term separator of queries
HEADER = "\t".join(BEHAVIOR_COLUMNS)
META_HEADER = "\t".join(META_COLUMNS)
SHARD = "data-00000-of-00001.tfrecord"


def _cats(*levels):
  """The category ids of cate_id_1..4 (an empty level is left out)."""
  return tuple(S(f"l{k}:{c}") for k, c in enumerate(levels, 1) if c)


def _meta_line(wid, *levels):
  fields = [str(wid), "11" + X + "12", "7", "13"]
  for level in levels:
    fields += [str(level), "14" + X + "15"]
  return "\t".join(fields + ["99"])


META = [
    META_HEADER,
    _meta_line(100, 1, 2, 3, 4),
    _meta_line(102, 1, 2, 30, 40),
    _meta_line(103, 7, "", 9, 10),
    _meta_line(104, 1, 2, 3, 4),
    _meta_line(200, 5, 6, 7, 8),
    _meta_line(202, 1, 2, 3, 44),
    _meta_line(300, 5, 6, 7, 8),
]

# User A (line 2): the test query "005^X7^X" normalises to "5^X7"; history rows
#   0  5^X7  100  CLICK  gap 0   -> 60 s before the search
#   1  -1    101  CART   gap 10  -> 50 s before (101 is not in the product file)
#   2  5^X7  102  FLW    gap 0   -> 50 s before (same second as row 1: kept)
#   3  9     103  ORD    gap 20  -> 30 s before
#   4  -1    104  CLICK  gap 30  ->  0 s before: at the search's second, left out
#   test search          gap 0
# Candidates 200 (none), 201 (cart; not in the product file), 202 (purchase).
USER_A = "\t".join([
    "005" + X + "7" + X, "200_201_202", "0.0_2.0_3",
    "_".join(["5" + X + "7", "-1", "5" + X + "7", "9", "-1"]),
    "100_101_102_103_104", "CLICK_CART_FLW_ORD_CLICK", "0_10_0_20_30_0"])
# User B (line 3): no history at all, one unclicked candidate.
USER_B = "\t".join(["42", "300", "0.0", "", "", "", "0"])

CATS_100, CATS_102, CATS_103 = _cats(1, 2, 3, 4), _cats(1, 2, 30, 40), _cats(
    7, "", 9, 10)
Q_57, Q_9 = S("5" + X + "7"), S("9")


def _expected_a(label_of, clicks, queries, time=T):
  """User A's three impressions; history times are relative to ``time``."""
  clicks = [Event(item, time - before, cats) for item, before, cats in clicks]
  queries = [Event(q, time - before, cats) for q, before, cats in queries]
  return [
      Impression(label=label_of[item], user_id=S(2), time=time, item_id=S(item),
                 item_cats=cats, query_id=Q_57, query_cats=CATS_102,
                 clicks=clicks, queries=queries)
      for item, cats in ((200, _cats(5, 6, 7, 8)), (201, ()),
                         (202, _cats(1, 2, 3, 44)))
  ]


EXPECTED_A = _expected_a(
    {200: 0, 201: 1, 202: 1},
    clicks=[(S(100), 60, CATS_100), (S(101), 50, ()), (S(102), 50, CATS_102),
            (S(103), 30, CATS_103)],
    queries=[(Q_57, 60, CATS_100), (Q_57, 50, CATS_102), (Q_9, 30, CATS_103)])
EXPECTED_B = [Impression(label=0, user_id=S(3), time=T, item_id=S(300),
                         item_cats=_cats(5, 6, 7, 8), query_id=S("42"))]


def _write(directory, lines, name):
  """Writes lines (str or bytes), each ending in a line break."""
  path = os.path.join(directory, name)
  data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8"))
                  + b"\n" for line in lines)
  opener = gzip.open if name.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(data)
  return path


def _files(directory, users=(USER_A, USER_B), meta=META,
           name="user_behavior_data_sample.txt",
           meta_name="product_meta_data_sample.txt"):
  return (_write(directory, [HEADER, *users], name),
          _write(directory, meta, meta_name))


def _records(out_dir):
  return [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(out_dir, SHARD))]


def _encoded(imp):
  return schema_lib.to_example(imp, 4).SerializeToString(deterministic=True)


def _assert_records(out_dir, expected):
  records = _records(out_dir)
  # Equal protos first: a failure then shows which feature differs.
  assert [tf.train.Example.FromString(r) for r in records] == [
      schema_lib.to_example(imp, 4) for imp in expected]
  assert records == [_encoded(imp) for imp in expected]


def test_hand_computed_users_every_feature(tmp_path):
  path, meta_path = _files(tmp_path)
  seen_progress = []
  report = convert_jdsearch(path, str(tmp_path / "out"),
                            progress=lambda *call: seen_progress.append(call))
  _assert_records(tmp_path / "out", EXPECTED_A + EXPECTED_B)
  # The product file, then the behaviour file: after the first the share done is
  # by bytes (the behaviour file's lines are not known yet), then by lines.
  meta_lines, meta_bytes = len(META), os.path.getsize(meta_path)
  assert seen_progress == [
      (meta_lines, None, meta_bytes / (meta_bytes + os.path.getsize(path))),
      (meta_lines + 3, meta_lines + 3, 1.0)]
  assert (report.lines_read, report.impressions_written, report.positives_written,
          report.users_written, report.users_without_positive) == (3, 4, 2, 2, 1)
  assert (report.history_at_search_time, report.candidates_without_meta,
          report.history_without_meta, report.items_without_meta) == (1, 1, 1, 2)
  assert (report.meta_lines_read, report.meta_products) == (8, 7)
  assert report.skipped == {} and report.meta_skipped == {}
  schema = schema_lib.DatasetSchema.load(str(tmp_path / "out"))
  assert schema.num_cats == 4 and schema.has_queries and not schema.has_seeds
  assert schema.splits["data"]["impressions"] == 4
  assert schema.splits["data"]["positives"] == 2
  assert schema.max_lengths == {"clicks": 4, "queries": 3, "seeds": 0}
  # Items: 200 201 202 300 and 100 101 102 103 (104 was left out); queries: the
  # two test queries, 5^X7 and 9 -> 3; categories: the 4 levels of 100, 102 (2
  # new), 103 (3), 200/300 (4), 202 (1 new).
  assert (schema.vocab["users"], schema.vocab["items"], schema.vocab["queries"],
          schema.vocab["categories"]) == (2, 8, 3, 14)


def test_label_threshold_click_types_max_hist_and_test_time(tmp_path):
  path, _ = _files(tmp_path, users=[USER_A])
  report = convert_jdsearch(path, str(tmp_path / "out"), min_label=3,
                            click_types=["CLICK", "ORD"], max_hist=1, test_time=0)
  # CLICK and ORD rows before the search: 100 and 103; the most recent is kept.
  _assert_records(tmp_path / "out", _expected_a(
      {200: 0, 201: 0, 202: 1}, clicks=[(S(103), 30, CATS_103)],
      queries=[(Q_9, 30, CATS_103)], time=0))
  assert (report.positives_written, report.users_without_positive) == (1, 0)


def test_gzip_windows_line_ends_bom_and_no_header(tmp_path):
  users = ["\ufeff" + USER_A + "\r", USER_B]
  path = _write(tmp_path, users, "release_data.txt.gz")
  meta = _write(tmp_path, META[1:], "product_data.txt.gz")
  # No header here, so users are on lines 1 and 2.
  report = convert_jdsearch(path, str(tmp_path / "out"))
  assert report.meta_path == meta
  expected = [dataclasses.replace(imp, user_id=S(1)) for imp in EXPECTED_A] + [
      dataclasses.replace(EXPECTED_B[0], user_id=S(2))]
  _assert_records(tmp_path / "out", expected)


def test_product_file_is_found_beside_the_input_or_named(tmp_path):
  path = _write(tmp_path, [HEADER, USER_B], "users.txt")
  with pytest.raises(FileNotFoundError) as raised:
    convert_jdsearch(path, str(tmp_path / "out"))
  assert str(raised.value) == (
      f"no JDsearch product file beside {path} (looked for "
      "product_meta_data_sample.txt, product_meta_data_sample.txt.gz, "
      "product_data.txt, product_data.txt.gz); give its path as the meta path "
      "(--meta)")
  meta = _write(tmp_path, META, "elsewhere.tsv")
  with pytest.raises(FileNotFoundError, match="nope.tsv: no such JDsearch product"):
    convert_jdsearch(path, str(tmp_path / "out"), meta_path=str(tmp_path / "nope.tsv"))
  with pytest.raises(FileNotFoundError, match="x.txt: no such JDsearch behaviour"):
    convert_jdsearch(str(tmp_path / "x.txt"), str(tmp_path / "out"), meta_path=meta)
  assert_nothing_left(tmp_path, ["users.txt", "elsewhere.tsv"])
  convert_jdsearch(path, str(tmp_path / "out"), meta_path=meta)
  _assert_records(tmp_path / "out", [dataclasses.replace(EXPECTED_B[0],
                                                         user_id=S(2))])


def _user(query="1", wids="5_6", labels="1.0_0.0", hq="-1", hw="7", ht="CLICK",
          times="0_5"):
  return "\t".join([query, wids, labels, hq, hw, ht, times])


COLUMNS = " ".join(BEHAVIOR_COLUMNS)

# (kind, line 3 of the file, exact reason); line 1 is the header, 2 and 4 are good.
BAD_LINES = [
    ("empty_line", "", "empty line (every line must be one user's 7 columns)"),
    ("wrong_column_count", "1\t2", f"expected 7 tab-separated columns ({COLUMNS}), "
     "got 2"),
    ("wrong_column_count", _user() + "\t", f"expected 7 tab-separated columns "
     f"({COLUMNS}), got 8"),
    ("not_utf8", b"1\t5\t1.0\t\t\t\t0\xff", "not UTF-8: byte 0xff at column 13"),
    ("empty_query", _user(query="-1"),
     "query is -1 (no query), but the test search must have one"),
    ("empty_query", _user(query=X + X), "query '\\x18\\x18' has no term"),
    ("bad_id", _user(query="1" + X + "a2"), "query term 2 'a2' is not a decimal id"),
    ("bad_id", _user(query=" 1"), "query term 1 ' 1' is not a decimal id"),
    ("bad_id", _user(wids="5_6a"), "candidate_wid_list[1] '6a' is not a decimal id"),
    ("bad_id", _user(wids="5_"), "candidate_wid_list[1] '' is not a decimal id"),
    ("bad_id", _user(hw="-1"), "history_wid_list[0] '-1' is not a decimal id"),
    ("bad_id", _user(hq="1" + X + "-1"),
     "history_qry_list[0] term 2 '-1' is not a decimal id"),
    ("no_candidates", _user(wids="", labels=""), "candidate_wid_list is empty"),
    ("length_mismatch", _user(labels="1.0"),
     "candidate_label_list has 1 entries, candidate_wid_list 2"),
    ("length_mismatch", _user(hq="-1_-1"),
     "history_qry_list has 2 entries, history_wid_list 1"),
    ("length_mismatch", _user(ht=""), "history_type_list has 0 entries, "
     "history_wid_list 1"),
    ("length_mismatch", _user(times="0"), "history_time_list has 1 entries, "
     "expected 2 (one per history row, then the test search)"),
    ("bad_label", _user(labels="1.0_4.0"), "candidate_label_list[1] '4.0' is not "
     "a label level (0 none, 1 click, 2 cart, 3 purchase)"),
    ("bad_label", _user(labels="0.5_0"), "candidate_label_list[0] '0.5' is not a "
     "label level (0 none, 1 click, 2 cart, 3 purchase)"),
    ("bad_label", _user(labels="1.0_"), "candidate_label_list[1] '' is not a "
     "label level (0 none, 1 click, 2 cart, 3 purchase)"),
    ("bad_type", _user(ht="VIEW"),
     "history_type_list[0] 'VIEW' is not one of CLICK, CART, ORD, FLW"),
    ("bad_time", _user(times="0_-5"), "history_time_list[1] '-5' is not a number "
     "of seconds (a non-negative integer)"),
    ("bad_time", _user(times="0_1.5"), "history_time_list[1] '1.5' is not a number "
     "of seconds (a non-negative integer)"),
    ("bad_time", _user(times="3_5"),
     "history_time_list[0] is 3, but the first behaviour's gap must be 0"),
    ("out_of_range", _user(times="0_" + "9" * 19), "history_time_list[1] "
     "'9999999999999999999' does not fit an int64"),
    ("out_of_range", _user(hq="_".join(["-1"] * 10), hw="_".join(["7"] * 10),
                           ht="_".join(["ORD"] * 10),
                           times="_".join(["0"] + ["9" * 18] * 10)),
     "history_time_list adds up to 9999999999999999990 seconds before the test "
     "search (at 1000000000); that is before the smallest int64 time"),
]


@pytest.mark.parametrize("kind,bad_line,reason", BAD_LINES,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_LINES)])
def test_bad_line_stops_with_file_line_reason_and_leaves_nothing(
    tmp_path, kind, bad_line, reason):
  bad_line = bad_line if isinstance(bad_line, bytes) else bad_line.encode()
  lines = [HEADER.encode(), USER_A.encode(), bad_line, USER_B.encode()]
  path = _write(tmp_path, [b"\n".join(lines)], "in.txt")
  _write(tmp_path, META, "product_meta_data_sample.txt")
  with pytest.raises(BadRecordError) as raised:
    convert_jdsearch(path, str(tmp_path / "out"))
  assert str(raised.value) == f"{path}:3: {reason}"
  assert (raised.value.kind, raised.value.line) == (kind, 3)
  assert_nothing_left(tmp_path, ["in.txt", "product_meta_data_sample.txt"])
  # Skipped, the line takes its whole user with it and nothing else.
  report = convert_jdsearch(path, str(tmp_path / "out"), on_bad="skip")
  assert report.skipped == {kind: 1} and report.first_skipped_line == {kind: 3}
  assert report.users_written == 2
  _assert_records(tmp_path / "out", EXPECTED_A + [
      dataclasses.replace(EXPECTED_B[0], user_id=S(4))])


def test_bad_header_is_a_bad_line(tmp_path):
  path = _write(tmp_path, ["query\tcandidates", USER_B], "in.txt")
  _write(tmp_path, META, "product_meta_data_sample.txt")
  with pytest.raises(BadRecordError) as raised:
    convert_jdsearch(path, str(tmp_path / "out"))
  assert str(raised.value) == (f"{path}:1: header 'query candidates' is not the "
                               f"expected {COLUMNS!r}")
  assert raised.value.kind == "bad_header"


META_COLUMN_NAMES = " ".join(META_COLUMNS)

# (kind, line 3 of the product file, exact reason).
BAD_META_LINES = [
    ("wrong_column_count", "102\t1\t2",
     f"expected 13 tab-separated columns ({META_COLUMN_NAMES}), got 3"),
    ("empty_line", "", "empty line (every line must be one product's 13 columns)"),
    ("bad_id", _meta_line("10x", 1, 2, 3, 4), "wid '10x' is not a decimal id"),
    ("bad_id", _meta_line(102, 1, 2, "3.0", 4), "cate_id_3 '3.0' is not a decimal id"),
    ("not_utf8", b"\xc3(", "not UTF-8: byte 0xc3 at column 1"),
    ("conflicting_duplicate", _meta_line(100, 1, 2, 3, 5),
     "this wid is listed again with other categories than on line 2"),
]


@pytest.mark.parametrize("kind,bad_line,reason", BAD_META_LINES,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_META_LINES)])
def test_bad_product_line_names_the_product_file(tmp_path, kind, bad_line, reason):
  bad_line = bad_line if isinstance(bad_line, bytes) else bad_line.encode()
  meta_lines = [line.encode() for line in META]
  meta = _write(tmp_path, [b"\n".join(meta_lines[:2] + [bad_line] + meta_lines[2:])],
                "product_meta_data_sample.txt")
  path = _write(tmp_path, [HEADER, USER_A, USER_B], "in.txt")
  with pytest.raises(BadRecordError) as raised:
    convert_jdsearch(path, str(tmp_path / "out"))
  assert str(raised.value) == f"{meta}:3: {reason}"
  assert raised.value.kind == kind
  assert_nothing_left(tmp_path, ["in.txt", "product_meta_data_sample.txt"])
  report = convert_jdsearch(path, str(tmp_path / "out"), on_bad="skip")
  # The first line of a product wins; every other product is unaffected.
  assert report.meta_skipped == {kind: 1}
  assert report.meta_first_skipped_line == {kind: 3}
  assert report.skipped == {}
  _assert_records(tmp_path / "out", EXPECTED_A + EXPECTED_B)
  assert f"  skipped 1 x {kind} (first at {meta}:3)" in report.summary()


def test_repeated_identical_product_and_empty_product_file(tmp_path):
  path, _ = _files(tmp_path, meta=META + [META[1]])
  report = convert_jdsearch(path, str(tmp_path / "a"))
  assert report.meta_products == 7 and report.meta_skipped == {}
  _assert_records(tmp_path / "a", EXPECTED_A + EXPECTED_B)
  path, _ = _files(tmp_path, meta=[META_HEADER])
  report = convert_jdsearch(path, str(tmp_path / "b"))
  # 200 201 202 300 as candidates, 100-104 in the history.
  assert report.meta_products == 0 and report.items_without_meta == 9
  assert [tf.train.Example.FromString(r).features.feature["item_cats"]
          .int64_list.value for r in _records(tmp_path / "b")] == [[0] * 4] * 4


def test_skip_summary_and_no_impressions(tmp_path):
  path, meta = _files(tmp_path, users=["x", USER_B, "", _user(labels="9_0")])
  report = convert_jdsearch(path, str(tmp_path / "out"), on_bad="skip")
  out = tmp_path / "out"
  assert report.summary() == "\n".join([
      f"{path}: read 5 lines, wrote 1 impressions (0 positive) to {out}",
      f"  skipped 1 x bad_label (first at {path}:5)",
      f"  skipped 1 x empty_line (first at {path}:4)",
      f"  skipped 1 x wrong_column_count (first at {path}:2)",
      "  1 users (1 without a positive candidate)",
      f"  product file {meta}: 7 products from 8 lines",
      "  0 items without categories (not in the product file): 0 candidates, "
      "0 history rows",
      "  0 history rows at the test search's second left out of the histories",
  ])
  header_only, _ = _files(tmp_path, users=[], name="empty.txt")
  with pytest.raises(NoImpressionsError, match="empty.txt: no impressions to "
                     "convert \\(1 lines; no bad records\\)"):
    convert_jdsearch(header_only, str(tmp_path / "none"))
  assert_nothing_left(tmp_path, ["user_behavior_data_sample.txt", "empty.txt",
                                 "product_meta_data_sample.txt", "out"])


def test_truncated_gzip_is_unreadable_even_when_skipping(tmp_path):
  path = _write(tmp_path, [HEADER] + [USER_A] * 300, "in.txt.gz")
  _write(tmp_path, META, "product_data.txt")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(BadRecordError) as raised:
    convert_jdsearch(path, str(tmp_path / "out"), on_bad="skip")
  assert raised.value.kind == "unreadable_file"
  assert ": cannot read the file: " in str(raised.value)
  assert_nothing_left(tmp_path, ["in.txt.gz", "product_data.txt"])


def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path):
  path, _ = _files(tmp_path)
  out = str(tmp_path / "out")
  for kwargs, message in (
      ({"on_bad": "ignore"}, "on_bad must be one of"),
      ({"num_shards": 0}, "num_shards must be >= 1"),
      ({"min_label": 0}, "min_label must be 1 \\(click\\), 2 \\(cart\\) or 3"),
      ({"min_label": True}, "min_label must be"),
      ({"max_hist": 0}, "max_hist must be an int >= 1, got 0"),
      ({"click_types": ["CLICK", "VIEW"]}, "click_types must be a non-empty list"),
      ({"click_types": "CLICK"}, "click_types must be a non-empty list"),
      ({"click_types": []}, "click_types must be a non-empty list"),
      ({"test_time": 2**63}, "test_time must be an int64"),
      ({"split": "../x"}, "not a plain name")):
    with pytest.raises(ValueError, match=message):
      convert_jdsearch(path, out, **kwargs)
  assert_nothing_left(tmp_path, ["user_behavior_data_sample.txt",
                                 "product_meta_data_sample.txt"])


# --- The real sample: expectations computed here from the raw files. ---


def _raw_rows(path):
  """The data rows of a tab-separated sample file, parsed with the csv module."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  return rows[1:]  # the header


def _user_histories(out_dir):
  """user_id -> (query_id, [(item_id, label)], clicks, queries, item cats by item)."""
  users = {}
  for record in _records(out_dir):
    f = {name: list(getattr(feat, feat.WhichOneof("kind")).value)
         for name, feat in tf.train.Example.FromString(record).features.feature.items()}
    user = users.setdefault(f["user_id"][0], {
        "query": f["query_id"][0], "query_cats": f["query_cats"],
        "candidates": [], "item_cats": {},
        "clicks": list(zip(f["click_ids"], f["click_times"])),
        "queries": list(zip(f["query_hist_ids"], f["query_hist_times"]))})
    user["candidates"].append((f["item_id"][0], f["label"][0]))
    user["item_cats"][f["item_id"][0]] = f["item_cats"]
    # Every history entry strictly earlier than its impression, oldest first.
    for seq in schema_lib.SEQUENCES:
      times = f.get(seq.times, [])
      assert all(t < f["time"][0] for t in times), (seq.name, f["time"], times)
      assert times == sorted(times)
    # The histories are the user's, the same on every candidate.
    assert user["clicks"] == list(zip(f["click_ids"], f["click_times"]))
    assert user["queries"] == list(zip(f["query_hist_ids"], f["query_hist_times"]))
  return users


def test_real_sample_counts_and_histories(shared_data, tmp_path):
  folder = os.path.join(shared_data, "jdsearch_sample")
  path = os.path.join(folder, "user_behavior_data_sample.txt")
  rows = _raw_rows(path)
  products = {row[0]: [row[c] for c in (4, 6, 8, 10)]
              for row in _raw_rows(os.path.join(folder,
                                                "product_meta_data_sample.txt"))}
  out = str(tmp_path / "out")
  report = convert_jdsearch(path, out)
  labels = [float(x) for row in rows for x in row[2].split("_")]
  positives = sum(x >= 1 for x in labels)
  negatives = sum(x == 0 for x in labels)
  assert (len(rows), positives, negatives) == (3, 5, 257)  # PROVENANCE.txt says so
  assert (report.users_written, report.positives_written,
          report.impressions_written - report.positives_written) == (
              len(rows), positives, negatives)
  schema = schema_lib.DatasetSchema.load(out)
  assert schema.splits["data"]["impressions"] == positives + negatives
  assert schema.splits["data"]["positives"] == positives
  assert schema.vocab["users"] == len(rows)
  items = {w for row in rows for w in row[1].split("_") + row[4].split("_")}
  assert report.items_without_meta == len(items - set(products))
  assert report.history_without_meta == sum(
      w not in products for row in rows for w in row[4].split("_"))

  users = _user_histories(out)
  assert len(users) == len(rows)
  for line, row in enumerate(rows, 2):
    user = users[S(line)]
    assert user["query"] == S(row[0])  # the sample's queries are already normal
    assert user["candidates"] == [
        (S(w), int(float(x) >= 1))
        for w, x in zip(row[1].split("_"), row[2].split("_"))]
    for wid in row[1].split("_"):
      assert user["item_cats"][S(wid)] == [S(f"l{k}:{c}") for k, c in enumerate(
          products[wid], 1)]
    # Gaps are seconds between behaviours; the search is the last one at T.
    gaps = [int(g) for g in row[6].split("_")]
    times = [T - sum(gaps[k + 1:]) for k in range(len(gaps) - 1)]
    wids, queries = row[4].split("_"), row[3].split("_")
    assert all(t < T for t in times)  # no history row at the search's second
    assert user["clicks"] == [(S(w), t) for w, t in zip(wids, times)][-100:]
    assert user["queries"] == [(S(q), t) for q, t in zip(queries, times)
                               if q != "-1"][-100:]
  # The first user's 182 rows are cut to their most recent 100.
  assert [len(users[S(line)]["clicks"]) for line in (2, 3, 4)] == [100, 46, 2]
  assert [len(users[S(line)]["queries"]) for line in (2, 3, 4)] == [88, 13, 0]


def test_real_sample_one_user_by_hand(shared_data, tmp_path):
  """Line 4 of user_behavior_data_sample.txt, read by eye."""
  folder = os.path.join(shared_data, "jdsearch_sample")
  out = str(tmp_path / "out")
  convert_jdsearch(os.path.join(folder, "user_behavior_data_sample.txt"), out)
  users = _user_histories(out)
  user = users[S(4)]
  # query 2437437^X60677689^X39206305; labels 1.0_1.0 then 81 x 0.0.
  assert user["query"] == S("2437437\x1860677689\x1839206305")
  assert user["query_cats"] == [0, 0, 0, 0]
  candidates = [
      42155506, 90092899, 4336287, 74203839, 39478459, 37459191, 48905099, 50434951,
      10238216, 302101, 47814850, 56965060, 56672847, 41568035, 99899993, 21020315,
      16822603, 31347144, 93795686, 82805172, 41396282, 52709665, 75394562, 2633934,
      55464974, 16211987, 75275465, 56248266, 27508668, 25515303, 48655707, 64485691,
      28022550, 66647496, 80245342, 85184167, 87175046, 87345385, 16239704, 57885923,
      40178400, 66111388, 37319577, 69645243, 29434437, 92302381, 54184194, 25241780,
      21939811, 77884237, 82077861, 99347317, 84978707, 79285034, 4662576, 6011346,
      39505764, 26039941, 15410302, 80084393, 49136280, 46946940, 18246636, 16323652,
      33590106, 85703812, 6155258, 31351281, 64317823, 99616113, 76398405, 64430163,
      99841776, 34960057, 16427184, 42976539, 96135555, 76108234, 83306805, 29598284,
      91667306, 92006745, 22873219]
  assert user["candidates"] == [(S(w), int(i < 2)) for i, w in enumerate(candidates)]
  # product_meta_data_sample.txt: 42155506 -> 31606173 61547046 38058201 3892387,
  # 90092899 -> 7098021 72111473 33496926 56253428.
  assert user["item_cats"][S(42155506)] == [
      S("l1:31606173"), S("l2:61547046"), S("l3:38058201"), S("l4:3892387")]
  assert user["item_cats"][S(90092899)] == [
      S("l1:7098021"), S("l2:72111473"), S("l3:33496926"), S("l4:56253428")]
  # History -1 8133925 CLICK, -1 59478082 CLICK; gaps 0_27_49660: the search is
  # 49660 s after the second click, 49687 s after the first. No query history.
  assert user["clicks"] == [(S(8133925), T - 49687), (S(59478082), T - 49660)]
  assert user["queries"] == []


# --- Fuzzing: any input converts or fails with a BadRecordError, nothing else. ---

_FUZZ = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
_TOKENS = st.sampled_from(["", "0", "1", "7", "-1", "00", "1.0", "3.0", "4.0", "x",
                           "CLICK", "ORD", "FLW", "9" * 20, X, "1" + X + "2", " ",
                           "\xe9", "\u00ff"])
_LISTS = st.lists(_TOKENS, max_size=4).map("_".join)
# Mostly the right number of columns (7 per user, 13 per product), so that the
# fuzzing reaches the checks inside the columns.
_COLUMN_LISTS = (st.sampled_from([7, 13]) | st.integers(0, 14)).flatmap(
    lambda n: st.lists(_LISTS, min_size=n, max_size=n))


def _convert_or_bad_record(behavior: bytes, meta: bytes, on_bad: str) -> None:
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "in.txt")
    meta_path = os.path.join(directory, "product_data.txt")
    for name, data in ((path, behavior), (meta_path, meta)):
      with open(name, "wb") as f:
        f.write(data)
    out = os.path.join(directory, "out")
    try:
      report = convert_jdsearch(path, out, on_bad=on_bad)
    except BadRecordError as e:
      assert on_bad == "stop" and str(e).startswith((f"{path}:", f"{meta_path}:"))
      assert_nothing_left(directory, ["in.txt", "product_data.txt"])
      return
    except NoImpressionsError:
      assert_nothing_left(directory, ["in.txt", "product_data.txt"])
      return
    schema = schema_lib.DatasetSchema.load(out)
    assert schema.splits["data"]["impressions"] == report.impressions_written
    # Every line is the header, a written user or a skipped line.
    assert report.lines_read - report.users_written - sum(
        report.skipped.values()) in (0, 1)


_GOOD_BEHAVIOR = "\n".join([HEADER, USER_A, USER_B]).encode()
_GOOD_META = "\n".join(META).encode()


@_FUZZ
@given(data=st.binary(max_size=300), on_bad=st.sampled_from(["stop", "skip"]),
       which=st.sampled_from(["behavior", "meta"]))
def test_fuzz_random_bytes(data, on_bad, which):
  if which == "behavior":
    _convert_or_bad_record(data, _GOOD_META, on_bad)
  else:
    _convert_or_bad_record(_GOOD_BEHAVIOR, data, on_bad)


@_FUZZ
@given(cuts=st.lists(st.integers(0, 200), min_size=1, max_size=3),
       on_bad=st.sampled_from(["stop", "skip"]),
       which=st.sampled_from(["behavior", "meta"]))
def test_fuzz_truncated_lines(cuts, on_bad, which):
  good = _GOOD_BEHAVIOR if which == "behavior" else _GOOD_META
  lines = good.split(b"\n")
  # Cut lines 2.. (keeping the header) at the given byte offsets.
  lines = lines[:1] + [line[:cut] for line, cut in zip(lines[1:], cuts)] + lines[
      1 + len(cuts):]
  data = b"\n".join(lines)
  if which == "behavior":
    _convert_or_bad_record(data, _GOOD_META, on_bad)
  else:
    _convert_or_bad_record(_GOOD_BEHAVIOR, data, on_bad)


@_FUZZ
@given(lines=st.lists(_COLUMN_LISTS, min_size=1, max_size=3),
       on_bad=st.sampled_from(["stop", "skip"]),
       which=st.sampled_from(["behavior", "meta"]),
       encoding=st.sampled_from(["utf-8", "latin-1"]))
def test_fuzz_wrong_columns_and_tokens(lines, on_bad, which, encoding):
  data = "\n".join("\t".join(columns) for columns in lines).encode(encoding)
  if which == "behavior":
    _convert_or_bad_record(_GOOD_BEHAVIOR + b"\n" + data, _GOOD_META, on_bad)
  else:
    _convert_or_bad_record(_GOOD_BEHAVIOR, _GOOD_META + b"\n" + data, on_bad)


# --- experiments/dataset_stats.py, on the JDsearch sample. ---


def _load_dataset_stats():
  from experiments import dataset_stats  # pylint: disable=g-import-not-at-top
  return dataset_stats


def test_dataset_stats_row_and_table(shared_data, tmp_path, capsys):
  dataset_stats = _load_dataset_stats()
  stats, failed = dataset_stats.collect(["jdsearch"], shared_data, str(tmp_path))
  assert failed == [] and len(stats) == 1
  row = stats[0]
  schema = schema_lib.DatasetSchema.load(str(tmp_path / "jdsearch"))
  # 3 users, 262 candidates of which 5 positive (test_real_sample_counts_...).
  assert (row.title, row.impressions, row.positives, row.users, row.rows) == (
      "JDsearch (sample)", 262, 5, 3, 4)
  assert (row.items, row.queries, row.categories) == (
      schema.vocab["items"], schema.vocab["queries"], schema.vocab["categories"])
  assert row.seconds > 0
  assert "wrote 262 impressions (5 positive)" in capsys.readouterr().out
  table = dataset_stats.format_table([dataset_stats.DatasetStats(
      title="X", impressions=1234, positives=5, users=3, items=40, queries=0,
      categories=7, rows=1000, seconds=0.5)])
  assert table.splitlines() == [
      "| dataset | impressions | positives | users | items | queries | categories "
      "| rows read | seconds | rows/s | impressions/s |",
      "|---------|------------:|----------:|------:|------:|--------:|-----------:"
      "|----------:|--------:|-------:|--------------:|",
      "| X       |       1,234 |         5 |     3 |    40 |       0 |          7 "
      "|     1,000 |    0.50 |  2,000 |         2,468 |",
  ]


def test_dataset_stats_skips_missing_converters_and_unknown_formats():
  dataset_stats = _load_dataset_stats()
  missing = dataclasses.replace(dataset_stats.SAMPLES[0],
                                module="data_pipeline.no_such_converter")
  assert dataset_stats.find_converter(missing) is None
  with pytest.raises(ValueError, match="unknown formats \\['csv'\\]"):
    dataset_stats.collect(["csv"], "unused", "unused")
