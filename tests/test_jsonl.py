"""Tests of the impression JSONL converter and the shared bad-input pieces."""


import gzip
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import (BadRecordError, BadRecordPolicy,
                                     NoImpressionsError)
from data_pipeline.ids import stable_id
from data_pipeline.jsonl import KNOWN_KEYS, convert_jsonl
from example_io import assert_nothing_left, read_examples

S = stable_id

GOOD_1 = {
    "user": "alice", "time": 1000, "item": "i1", "item_cats": ["c1", 7],
    "label": 1, "query": None,
    "clicks": [["i0", 900, ["c1"]], [42, 950, []]],
    "seeds": [["i0", 900, ["c1"]]],
    "features": {"price": 2.5, "city": "paris", "n": 3},
}
GOOD_2 = {
    "user": 17, "time": 2000, "item": 99, "label": 0,
    "query": "shoes", "query_cats": ["c1"],
    "clicks": [["i1", 1000, ["c1", 7, "c9"]]],
    "queries": [["boots", 1500, ["c2", "c3"]], ["boots", 1500, []]],
    "seeds": [],
    "features": {"price": 1, "city": "rome", "n": -4},
}
# With max_cats=3: categories padded to 3 with 0, history cats flattened.
EXPECTED_1 = {
    "label": [1], "user_id": [S("alice")], "time": [1000], "item_id": [S("i1")],
    "item_cats": [S("c1"), S(7), 0], "query_id": [0], "query_cats": [0, 0, 0],
    "click_ids": [S("i0"), S(42)], "click_times": [900, 950],
    "click_cats": [S("c1"), 0, 0, 0, 0, 0],
    "query_hist_ids": [], "query_hist_times": [], "query_hist_cats": [],
    "seed_ids": [S("i0")], "seed_times": [900], "seed_cats": [S("c1"), 0, 0],
    "dense/price": [2.5], "dense/n": [3.0], "cat/city": [S("paris")],
}
EXPECTED_2 = {
    "label": [0], "user_id": [S(17)], "time": [2000], "item_id": [S(99)],
    "item_cats": [0, 0, 0], "query_id": [S("shoes")], "query_cats": [S("c1"), 0, 0],
    "click_ids": [S("i1")], "click_times": [1000],
    "click_cats": [S("c1"), S(7), S("c9")],
    "query_hist_ids": [S("boots"), S("boots")], "query_hist_times": [1500, 1500],
    "query_hist_cats": [S("c2"), S("c3"), 0, 0, 0, 0],
    "seed_ids": [], "seed_times": [], "seed_cats": [],
    "dense/price": [1.0], "dense/n": [-4.0], "cat/city": [S("rome")],
}


def _line(record) -> bytes:
  return json.dumps(record).encode("utf-8")


def _write(directory, lines, name="in.jsonl") -> str:
  path = os.path.join(directory, name)
  opener = gzip.open if name.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  return path


def test_round_trip_every_feature_equals_hand_computed_value(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1), _line(GOOD_2)])
  out = tmp_path / "out"
  seen_progress = []
  report = convert_jsonl(path, str(out), num_shards=2, max_cats=3,
                         progress=lambda *call: seen_progress.append(call))
  assert sorted(os.listdir(out)) == ["data-00000-of-00002.tfrecord",
                                     "data-00001-of-00002.tfrecord", "schema.json"]
  # Round-robin: line 1 to shard 0, line 2 to shard 1.
  assert read_examples(out / "data-00000-of-00002.tfrecord") == [EXPECTED_1]
  assert read_examples(out / "data-00001-of-00002.tfrecord") == [EXPECTED_2]
  assert (report.lines_read, report.impressions_written,
          report.positives_written) == (2, 2, 1)
  assert report.skipped == {} and report.first_skipped_line == {}
  assert seen_progress == [(2, 2, 1.0)]  # (lines, total, share done) at the end
  assert report.out_dir == str(out)


def test_schema_json_counts(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1), _line(GOOD_2), _line(GOOD_1)])
  convert_jsonl(path, str(tmp_path / "out"), max_cats=3, split="train")
  schema = schema_lib.DatasetSchema.load(str(tmp_path / "out"))
  assert schema.num_cats == 3
  assert schema.splits == {"train": {"files": ["train-00000-of-00001.tfrecord"],
                                     "impressions": 3, "positives": 2}}
  assert schema.dense_features == ["n", "price"]
  assert schema.cat_features == ["city"]
  assert schema.has_queries and schema.has_seeds
  assert schema.max_lengths == {"clicks": 2, "queries": 2, "seeds": 1}
  # users alice, 17; items i1, i0, 42, 99; queries shoes, boots;
  # categories c1, 7, c9, c2, c3.
  assert (schema.vocab["users"], schema.vocab["items"], schema.vocab["queries"],
          schema.vocab["categories"]) == (2, 4, 2, 5)


def test_gzip_input_and_windows_line_ends_and_bom(tmp_path):
  plain = _write(tmp_path, [b"\xef\xbb\xbf" + _line(GOOD_1) + b"\r", _line(GOOD_2)])
  zipped = _write(tmp_path, [_line(GOOD_1), _line(GOOD_2)], name="in.jsonl.gz")
  convert_jsonl(plain, str(tmp_path / "a"), max_cats=3)
  convert_jsonl(zipped, str(tmp_path / "b"), max_cats=3)
  for out in ("a", "b"):
    assert read_examples(tmp_path / out / "data-00000-of-00001.tfrecord") == [
        EXPECTED_1, EXPECTED_2]


def _with(**changes):
  record = dict(GOOD_2)
  record.update(changes)
  return _line(record)


def _without(key):
  record = dict(GOOD_2)
  del record[key]
  return _line(record)


KNOWN = ", ".join(KNOWN_KEYS)

# (kind, line 2 of the file, exact reason); line 1 is GOOD_1, max_cats=3.
BAD_LINES = [
    ("empty_line", b"", "empty line (every line must be one JSON object)"),
    ("empty_line", b"  \t", "empty line (every line must be one JSON object)"),
    ("not_object", b"[1, 2]", "expected a JSON object, got a list"),
    ("not_object", b'"user"', "expected a JSON object, got a string"),
    ("invalid_json", b'{"user": 1, "time": NaN}',
     "invalid JSON: NaN is not a JSON number"),
    ("not_utf8", b'{"user": "\xff"}', "not UTF-8: byte 0xff at column 11"),
    ("not_utf8", _with(user="\ud800"),
     "user contains an unpaired surrogate '\\ud800', which is not valid Unicode"),
    ("duplicate_key", b'{"user": 1, "user": 2}', "duplicate key 'user'"),
    ("unknown_key", _with(clikcs=[]),
     f"unknown key 'clikcs' (did you mean 'clicks'? known keys: {KNOWN})"),
    ("unknown_key", _with(zzz=1), f"unknown key 'zzz' (known keys: {KNOWN})"),
    ("missing_key", _without("label"), "missing required key 'label'"),
    ("missing_key", _without("user"), "missing required key 'user'"),
    ("wrong_type", _with(time="2000"),
     'time must be an int (unix seconds), got a string "2000"'),
    ("wrong_type", _with(time=2000.0),
     "time must be an int (unix seconds), got a float 2000.0"),
    ("wrong_type", _with(user=True),
     "user must be a string or an int id, got a bool true"),
    ("wrong_type", _with(item=None), "item must be a string or an int id, got null"),
    ("wrong_type", _with(item=1.5),
     "item must be a string or an int id, got a float 1.5"),
    ("wrong_type", _with(item_cats="c1"),
     'item_cats must be a list of category ids, got a string "c1"'),
    ("wrong_type", _with(item_cats=["c1", ["c2"]]),
     'item_cats[1] must be a string or an int id, got a list ["c2"]'),
    ("wrong_type", _with(clicks={"i1": 1}),
     'clicks must be a list of [id, time, [cats]] entries, got an object {"i1": 1}'),
    ("wrong_type", _with(clicks=[["i1", 1000]]),
     'clicks[0] must be [id, time, [cats]], got ["i1", 1000]'),
    ("wrong_type", _with(clicks=[["i1", "1000", []]]),
     'clicks[0] time must be an int (unix seconds), got a string "1000"'),
    ("wrong_type", _with(clicks=[[1.0, 1000, []]]),
     "clicks[0] id must be a string or an int id, got a float 1.0"),
    ("wrong_type", _with(queries=[["q", 1000, "c1"]]),
     'queries[0] cats must be a list of category ids, got a string "c1"'),
    ("wrong_type", _with(features=[1]),
     "features must be an object name -> number or string, got a list [1]"),
    ("wrong_type", _with(features={"price": 1, "city": "x", "n": False}),
     "features.n must be a number or a string, got a bool false"),
    ("wrong_type", _with(features={"price": None}),
     "features.price must be a number or a string, got null"),
    ("bad_label", _with(label=2), "label must be 0 or 1, got 2"),
    ("bad_label", _with(label=True), "label must be 0 or 1, got true"),
    ("bad_label", _with(label=1.0), "label must be 0 or 1, got 1.0"),
    ("bad_label", _with(label="1"), 'label must be 0 or 1, got "1"'),
    ("empty_id", _with(item=""), "item is an empty string, not an id"),
    ("empty_id", _with(clicks=[["i1", 5, [""]]]),
     "clicks[0] cats[0] is an empty string, not an id"),
    ("history_not_earlier", _with(clicks=[["i0", 10, []], ["i1", 2000, []]]),
     "clicks[1] time 2000 is not earlier than the impression time 2000"),
    ("history_not_earlier", _with(seeds=[["i1", 2001, []]]),
     "seeds[0] time 2001 is not earlier than the impression time 2000"),
    ("history_not_sorted", _with(queries=[["a", 10, []], ["b", 9, []]]),
     "queries[1] time 9 is earlier than queries[0] time 10; histories must be "
     "oldest first"),
    ("too_many_cats", _with(item_cats=[1, 2, 3, 4]),
     "item_cats has 4 categories, more than max_cats=3"),
    ("too_many_cats", _with(queries=[["q", 5, ["a", "b", "c", "d"]]]),
     "queries[0] cats has 4 categories, more than max_cats=3"),
    ("query_cats_without_query", _with(query=None),
     "query_cats given but query is null or missing"),
    ("out_of_range", _with(time=2**63), "time 9223372036854775808 does not fit an int64"),
    ("out_of_range", _with(clicks=[["i", -2**63 - 1, []]]),
     "clicks[0] time -9223372036854775809 does not fit an int64"),
    ("out_of_range", _with(features={"price": 1e39}),
     "features.price = 1e+39 does not fit a float32"),
    ("feature_type_changed", _with(features={"price": "cheap"}),
     "features.price is a string here but a number on line 1"),
    ("bad_feature_name", _with(features={"": 1}), "features has an empty feature name"),
]


@pytest.mark.parametrize("kind,bad_line,reason", BAD_LINES,
                         ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_LINES)])
def test_bad_line_stops_with_file_line_reason_and_leaves_nothing(
    tmp_path, kind, bad_line, reason):
  path = _write(tmp_path, [_line(GOOD_1), bad_line, _line(GOOD_2)])
  with pytest.raises(BadRecordError) as raised:
    convert_jsonl(path, str(tmp_path / "out"), max_cats=3)
  assert str(raised.value) == f"{path}:2: {reason}"
  assert (raised.value.kind, raised.value.line, raised.value.path) == (kind, 2, path)
  assert_nothing_left(tmp_path, ["in.jsonl"])


def test_invalid_json_names_the_json_error(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1), b'{"user": 1,'])
  with pytest.raises(BadRecordError) as raised:
    convert_jsonl(path, str(tmp_path / "out"))
  assert str(raised.value).startswith(f"{path}:2: invalid JSON: Expecting ")
  assert raised.value.kind == "invalid_json"
  assert_nothing_left(tmp_path, ["in.jsonl"])


def test_skip_counts_per_reason_and_writes_the_good_lines(tmp_path):
  lines = [
      _line(GOOD_1),                                   # 1 good
      b"",                                             # 2 empty_line
      _with(label=3, features={"price": "x"}),         # 3 bad_label
      b"{oops",                                        # 4 invalid_json
      _line(GOOD_2),                                   # 5 good
      _with(label=5),                                  # 6 bad_label
      _line(dict(GOOD_1, user="bob")),                 # 7 good
  ]
  path = _write(tmp_path, lines)
  report = convert_jsonl(path, str(tmp_path / "out"), on_bad="skip", max_cats=3)
  assert report.lines_read == 7
  assert (report.impressions_written, report.positives_written) == (3, 2)
  assert report.skipped == {"empty_line": 1, "bad_label": 2, "invalid_json": 1}
  assert report.first_skipped_line == {"empty_line": 2, "bad_label": 3,
                                       "invalid_json": 4}
  examples = read_examples(tmp_path / "out" / "data-00000-of-00001.tfrecord")
  # Line 3 (skipped) had a string price; it must not have fixed price's kind.
  assert [e["user_id"] for e in examples] == [[S("alice")], [S(17)], [S("bob")]]
  assert report.summary() == "\n".join([
      f"{path}: read 7 lines, wrote 3 impressions (2 positive) to "
      f"{tmp_path / 'out'}",
      f"  skipped 2 x bad_label (first at {path}:3)",
      f"  skipped 1 x empty_line (first at {path}:2)",
      f"  skipped 1 x invalid_json (first at {path}:4)",
  ])


@pytest.mark.parametrize("on_bad", ["stop", "skip"])
def test_no_impressions_is_an_error_and_leaves_nothing(tmp_path, on_bad):
  empty = os.path.join(tmp_path, "empty.jsonl")
  open(empty, "wb").close()
  with pytest.raises(NoImpressionsError, match="empty.jsonl: no impressions"):
    convert_jsonl(empty, str(tmp_path / "out"), on_bad=on_bad)
  assert_nothing_left(tmp_path, ["empty.jsonl"])


def test_all_lines_skipped_is_an_error_naming_the_skips(tmp_path):
  path = _write(tmp_path, [b"[]", b"[]"])
  with pytest.raises(NoImpressionsError) as raised:
    convert_jsonl(path, str(tmp_path / "out"), on_bad="skip")
  assert str(raised.value) == (
      f"{path}: no impressions to convert (2 lines; skipped 2 bad records: "
      "not_object 2 (first at line 1))")
  assert_nothing_left(tmp_path, ["in.jsonl"])


def test_truncated_gzip_is_unreadable_even_when_skipping(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1)] * 50, name="in.jsonl.gz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(BadRecordError) as raised:
    convert_jsonl(path, str(tmp_path / "out"), on_bad="skip")
  assert raised.value.kind == "unreadable_file"
  # The line is wherever decompression hit the cut; the message says why.
  assert str(raised.value).startswith(f"{path}:")
  assert ": cannot read the file: " in str(raised.value)
  assert_nothing_left(tmp_path, ["in.jsonl.gz"])


def test_existing_output_is_kept_unless_overwrite(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1)])
  bad = _write(tmp_path, [_line(GOOD_2), b"[]"], name="bad.jsonl")
  out = tmp_path / "out"
  out.mkdir()
  (out / "mine.txt").write_text("keep")
  with pytest.raises(FileExistsError):
    convert_jsonl(path, str(out))
  # A failed overwrite leaves the old folder as it was.
  with pytest.raises(BadRecordError):
    convert_jsonl(bad, str(out), overwrite=True)
  assert os.listdir(out) == ["mine.txt"]
  assert_nothing_left(tmp_path, ["in.jsonl", "bad.jsonl", "out"])
  convert_jsonl(path, str(out), overwrite=True)
  assert sorted(os.listdir(out)) == ["data-00000-of-00001.tfrecord", "schema.json"]


def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path):
  path = _write(tmp_path, [_line(GOOD_1)])
  with pytest.raises(ValueError, match="on_bad must be one of"):
    convert_jsonl(path, str(tmp_path / "out"), on_bad="ignore")
  with pytest.raises(ValueError, match="max_cats must be >= 1"):
    convert_jsonl(path, str(tmp_path / "out"), max_cats=0)
  with pytest.raises(ValueError, match="not a plain name"):
    convert_jsonl(path, str(tmp_path / "out"), split="../x")
  with pytest.raises(FileNotFoundError):
    convert_jsonl(str(tmp_path / "missing.jsonl"), str(tmp_path / "out"))
  assert_nothing_left(tmp_path, ["in.jsonl"])


def test_policy_and_error_basics():
  error = BadRecordError("a.csv", 3, "bad thing", "bad_kind")
  assert str(error) == "a.csv:3: bad thing"
  assert isinstance(error, ValueError)
  policy = BadRecordPolicy("skip")
  assert policy.summary() == "no bad records"
  policy.handle(error)
  policy.handle(BadRecordError("a.csv", 9, "bad thing", "bad_kind"))
  policy.handle(BadRecordError("a.csv", 5, "other", "another"))
  assert policy.skipped == {"bad_kind": 2, "another": 1}
  assert policy.first_line == {"bad_kind": 3, "another": 5}
  assert policy.summary() == ("skipped 3 bad records: another 1 (first at line 5), "
                              "bad_kind 2 (first at line 3)")
  with pytest.raises(BadRecordError, match="^a.csv:3: bad thing$"):
    BadRecordPolicy("stop").handle(error)


# --- Fuzzing: any input converts or fails with a BadRecordError, nothing else. ---

_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                 | st.floats(allow_nan=False) | st.text(max_size=6))
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=5), inner, max_size=4),
    max_leaves=12)
_IDS = st.integers(-5, 2**64) | st.text(max_size=4)
_TIMES = st.integers(-3, 30)
_ENTRIES = st.lists(st.tuples(_IDS, _TIMES, st.lists(_IDS, max_size=3)).map(list)
                    | _JSON_VALUES, max_size=4)
_FIELD_VALUES = {
    "user": _IDS, "time": _TIMES, "item": _IDS, "label": st.integers(-1, 2),
    "item_cats": st.lists(_IDS, max_size=5), "query": _IDS | st.none(),
    "query_cats": st.lists(_IDS, max_size=5), "clicks": _ENTRIES,
    "queries": _ENTRIES, "seeds": _ENTRIES,
    "features": st.dictionaries(st.sampled_from(["a", "b", ""]),
                                st.integers() | st.floats() | st.text(max_size=3)
                                | _JSON_VALUES, max_size=3),
}
# Records that mostly look right, so the fuzzing reaches the deeper checks.
_RECORDS = st.fixed_dictionaries(
    {k: _FIELD_VALUES[k] for k in ("user", "time", "item", "label")},
    optional={**{k: v for k, v in _FIELD_VALUES.items()
                 if k not in ("user", "time", "item", "label")},
              "clikcs": _JSON_VALUES})
_FUZZ = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _convert_or_bad_record(data: bytes, on_bad: str) -> None:
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "in.jsonl")
    with open(path, "wb") as f:
      f.write(data)
    out = os.path.join(directory, "out")
    try:
      report = convert_jsonl(path, out, on_bad=on_bad, max_cats=3)
    except BadRecordError as e:
      assert on_bad == "stop" and str(e).startswith(f"{path}:")
      assert_nothing_left(directory, ["in.jsonl"])
      return
    except NoImpressionsError:
      # Under "stop", only a file without a single line has nothing to write.
      assert on_bad == "skip" or data == b""
      assert_nothing_left(directory, ["in.jsonl"])
      return
    assert report.impressions_written + sum(report.skipped.values()) == (
        report.lines_read)
    assert schema_lib.DatasetSchema.load(out).splits["data"]["impressions"] == (
        report.impressions_written)


@_FUZZ
@given(data=st.binary(max_size=300), on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_random_bytes(data, on_bad):
  _convert_or_bad_record(data, on_bad)


@_FUZZ
@given(records=st.lists(_RECORDS, min_size=1, max_size=3),
       cuts=st.lists(st.integers(0, 400), min_size=1, max_size=3),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_truncated_lines(records, cuts, on_bad):
  lines = [_line(r) for r in records]
  lines = [line[:cut] for line, cut in zip(lines, cuts)] + lines[len(cuts):]
  _convert_or_bad_record(b"\n".join(lines), on_bad)


@_FUZZ
@given(values=st.lists(_RECORDS | _JSON_VALUES, min_size=1, max_size=4),
       on_bad=st.sampled_from(["stop", "skip"]))
def test_fuzz_random_json_values(values, on_bad):
  _convert_or_bad_record(b"\n".join(_line(v) for v in values), on_bad)
