"""Converts an impression-log JSONL file (format version 1) into TFRecord shards.

The format (``shared/impression-jsonl.md``): one JSON object per line, one shown item.

==========  ==========================  ========  =====================================
key         type                        required  meaning
==========  ==========================  ========  =====================================
user        string or int               yes       user id
time        int                         yes       unix seconds of the impression
label       0 or 1                      yes       clicked or not
item        string or int               yes       target item id
item_cats   list of string/int          no ([])   categories of the target item
query       string, int or null         no (null) current query; null = recommendation
query_cats  list of string/int          no ([])   categories of the current query
clicks      list of [id, time, [cats]]  no ([])   earlier clicks, oldest first
queries     list of [id, time, [cats]]  no ([])   earlier queries, oldest first
seeds       list of [id, time, [cats]]  no        category-filtered clicks
features    object name -> number|str   no ({})   numbers -> dense/<name>, strings ->
                                                  cat/<name>
==========  ==========================  ========  =====================================

Every id (users, items, queries, categories, history ids, string features) becomes
``data_pipeline.ids.stable_id(raw)``. The file is read line by line, so memory does not
grow with its length. Anything the format does not allow is a bad line, reported as
``file:line: reason``: histories must be strictly earlier than ``time`` and oldest
first, unknown keys (typos) and duplicate keys are errors, blank lines are bad lines,
a feature must keep its kind (number or string) over the whole file.
"""

import difflib
import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import (BadRecordError, BadRecordPolicy,
                                     ConversionReport)
from data_pipeline.line_checks import (InvalidLine, WriteCounts, check_some_written,
                                       check_split_name, decode_utf8)
from data_pipeline.text_input import (FLOAT32_MAX, INT64_MAX, INT64_MIN,
                                      ProgressCallback, ReadProgress,
                                      cached_stable_id, numbered_lines,
                                      open_binary)
from data_pipeline.writer import DatasetWriter

FORMAT_VERSION = 1

REQUIRED_KEYS = ("user", "time", "item", "label")
OPTIONAL_KEYS = ("item_cats", "query", "query_cats", "clicks", "queries", "seeds",
                 "features")
KNOWN_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


def _at(subject: str, parse: Callable[[Any], Any], value: Any) -> Any:
  """``parse(value)``; a failure's reason is prefixed with ``subject``."""
  try:
    return parse(value)
  except InvalidLine as e:
    raise e.within(subject) from None


def _json_type(value: Any) -> str:
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "a bool"
  if isinstance(value, int):
    return "an int"
  if isinstance(value, float):
    return "a float"
  if isinstance(value, str):
    return "a string"
  if isinstance(value, list):
    return "a list"
  return "an object"


def _described(value: Any) -> str:
  """E.g. 'a string "5"', 'a bool true', 'null', for error messages."""
  return "null" if value is None else f"{_json_type(value)} {_shown(value)}"


def _shown(value: Any, limit: int = 40) -> str:
  """The value as (shortened) JSON, for error messages."""
  text = json.dumps(value, ensure_ascii=True)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
  # json.loads keeps the last of duplicate keys silently; a duplicate is a bug upstream.
  obj = {}
  for key, value in pairs:
    if key in obj:
      raise InvalidLine("duplicate_key", f"duplicate key {key!r}")
    obj[key] = value
  return obj


def _reject_constant(name: str) -> Any:
  raise InvalidLine("invalid_json", f"invalid JSON: {name} is not a JSON number")


class _ImpressionParser:
  """Turns one line's text into an `schema_lib.Impression`, or raises `InvalidLine`.

  Keeps, per conversion, a bounded id cache and each feature's kind (number or
  string) with the line that fixed it. The per-entry checks run millions of times
  per file, so they test exact types (``type(x) is int`` also rules out bools) and
  name the failing key only once something failed.
  """

  def __init__(self, max_cats: int):
    self.max_cats = max_cats
    self._stable_id = cached_stable_id()
    self._feature_kinds: Dict[str, Tuple[str, int]] = {}

  def parse(self, text: str, line: int) -> schema_lib.Impression:
    if not text.strip():
      raise InvalidLine("empty_line", "empty line (every line must be one JSON object)")
    try:
      record = json.loads(text, object_pairs_hook=_unique_keys,
                          parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
      raise InvalidLine("invalid_json", f"invalid JSON: {e}") from None
    if type(record) is not dict:
      raise InvalidLine("not_object",
                        f"expected a JSON object, got {_json_type(record)}")
    self._check_keys(record)
    time = _at("time", self._time, record["time"])
    label = record["label"]
    if type(label) is not int or label not in (0, 1):
      raise InvalidLine("bad_label", f"label must be 0 or 1, got {_shown(label)}")
    query = record.get("query")
    query_cats = _at("query_cats", self._cats, record.get("query_cats", []))
    if query is None and query_cats:
      raise InvalidLine("query_cats_without_query",
                        "query_cats given but query is null or missing")
    imp = schema_lib.Impression(
        label=label,
        user_id=_at("user", self._id, record["user"]),
        time=time,
        item_id=_at("item", self._id, record["item"]),
        item_cats=_at("item_cats", self._cats, record.get("item_cats", [])),
        query_id=0 if query is None else _at("query", self._id, query),
        query_cats=query_cats,
        clicks=self._events(record.get("clicks", []), "clicks", time),
        queries=self._events(record.get("queries", []), "queries", time),
        seeds=(self._events(record["seeds"], "seeds", time)
               if "seeds" in record else None))
    # Last, so that a feature's kind is only fixed by a line that is kept.
    imp.dense, imp.categorical = self._features(record.get("features", {}), line)
    return imp

  def _check_keys(self, record: Dict[str, Any]) -> None:
    for key in record:
      if key not in KNOWN_KEYS:
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidLine("unknown_key", f"unknown key {key!r} ({hint}known keys: "
                          f"{', '.join(KNOWN_KEYS)})")
    for key in REQUIRED_KEYS:
      if key not in record:
        raise InvalidLine("missing_key", f"missing required key {key!r}")

  def _id(self, value: Any) -> int:
    kind = type(value)
    if kind is int or (kind is str and value):
      try:
        return self._stable_id(value)
      except UnicodeEncodeError as e:
        # JSON "\ud800" escapes decode to lone surrogates, which UTF-8 cannot encode.
        raise InvalidLine("not_utf8", f"contains an unpaired surrogate "
                          f"{value[e.start]!a}, which is not valid Unicode") from None
    if kind is str:
      raise InvalidLine("empty_id", "is an empty string, not an id")
    raise InvalidLine("wrong_type", f"must be a string or an int id, got "
                      f"{_described(value)}")

  def _time(self, value: Any) -> int:
    if type(value) is not int:
      raise InvalidLine("wrong_type", f"must be an int (unix seconds), got "
                        f"{_described(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
      raise InvalidLine("out_of_range", f"{value} does not fit an int64")
    return value

  def _cats(self, value: Any) -> List[int]:
    if type(value) is not list:
      raise InvalidLine("wrong_type", f"must be a list of category ids, got "
                        f"{_described(value)}")
    if len(value) > self.max_cats:
      raise InvalidLine("too_many_cats", f"has {len(value)} categories, more than "
                        f"max_cats={self.max_cats}")
    cats = []
    for i, cat in enumerate(value):
      try:
        cats.append(self._id(cat))
      except InvalidLine as e:
        raise e.within(f"[{i}]") from None
    return cats

  def _events(self, value: Any, where: str, time: int) -> List[schema_lib.Event]:
    if type(value) is not list:
      raise InvalidLine("wrong_type", f"{where} must be a list of [id, time, [cats]] "
                        f"entries, got {_described(value)}")
    events = []
    previous = INT64_MIN
    for i, entry in enumerate(value):
      try:
        if type(entry) is not list or len(entry) != 3:
          raise InvalidLine("wrong_type",
                            f"must be [id, time, [cats]], got {_shown(entry)}")
        raw_id, event_time, raw_cats = entry
        if type(event_time) is not int:
          raise InvalidLine("wrong_type", f"time must be an int (unix seconds), got "
                            f"{_described(event_time)}")
        if event_time >= time:
          raise InvalidLine("history_not_earlier", f"time {event_time} is not "
                            f"earlier than the impression time {time}")
        # previous starts at the int64 minimum and time fits an int64, so passing
        # both checks also keeps event_time inside int64.
        if event_time < previous:
          if not i:
            raise InvalidLine("out_of_range", f"time {event_time} does not fit an int64")
          raise InvalidLine("history_not_sorted", f"time {event_time} is earlier "
                            f"than {where}[{i - 1}] time {previous}; histories must "
                            "be oldest first")
        previous = event_time
        events.append(schema_lib.Event(_at("id", self._id, raw_id), event_time,
                                       _at("cats", self._cats, raw_cats)))
      except InvalidLine as e:
        raise e.within(f"{where}[{i}]") from None
    return events

  def _features(self, value: Any,
                line: int) -> Tuple[Dict[str, float], Dict[str, int]]:
    if type(value) is not dict:
      raise InvalidLine("wrong_type", f"features must be an object name -> number or "
                        f"string, got {_described(value)}")
    dense: Dict[str, float] = {}
    categorical: Dict[str, int] = {}
    kinds = {}
    for name, feature in value.items():
      if not name:
        raise InvalidLine("bad_feature_name", "features has an empty feature name")
      at = f"features.{name}"
      try:
        name.encode("utf-8")
      except UnicodeEncodeError:
        raise InvalidLine("not_utf8", f"feature name {name!a} contains an unpaired "
                          "surrogate, which is not valid Unicode") from None
      kind = type(feature)
      if kind is str:
        # Not through _id: an empty string is a fine category value ("unknown").
        categorical[name] = _at(at, self._id, feature) if feature else (
            self._stable_id(feature))
        kinds[name] = "string"
      elif kind is int or kind is float:
        # Compare before float(): a huge JSON int would overflow the conversion.
        if not -FLOAT32_MAX <= feature <= FLOAT32_MAX:
          raise InvalidLine("out_of_range",
                            f"{at} = {_shown(feature)} does not fit a float32")
        dense[name] = float(feature)
        kinds[name] = "number"
      else:
        raise InvalidLine("wrong_type", f"{at} must be a number or a string, got "
                          f"{_described(feature)}")
      known = self._feature_kinds.get(name)
      if known is not None and known[0] != kinds[name]:
        raise InvalidLine("feature_type_changed", f"{at} is a {kinds[name]} here but "
                          f"a {known[0]} on line {known[1]}")
    for name, kind in kinds.items():
      self._feature_kinds.setdefault(name, (kind, line))
    return dense, categorical


def convert_jsonl(input_path: str, out_dir: str, num_shards: int = 1,
                  on_bad: str = "stop", max_cats: int = 4, overwrite: bool = False,
                  split: str = "data",
                  progress: Optional[ProgressCallback] = None
                  ) -> ConversionReport:
  """Converts an impression JSONL file (or ``.jsonl.gz``) into a dataset folder.

  Writes ``{split}-XXXXX-of-NNNNN.tfrecord`` shards and ``schema.json`` into
  ``out_dir``, atomically: a failed run leaves nothing at ``out_dir`` (an existing
  folder replaced with ``overwrite`` stays as it was).

  Args:
    input_path: the JSONL file; ``.gz`` files are decompressed on the fly.
    out_dir: the dataset folder to create.
    num_shards: TFRecord shards; impressions go round-robin over them.
    on_bad: "stop" raises at the first bad line; "skip" skips and counts bad lines.
    max_cats: C, categories per item, query and history entry; more is a bad line.
    overwrite: replace ``out_dir`` if it exists.
    split: the split name all impressions go to.
    progress: called as ``progress(lines read, total lines or None, share done or
      None)`` every few thousand lines and once at the end (see
      `text_input.ReadProgress`).

  Returns:
    What was read, written and skipped.

  Raises:
    BadRecordError: a bad line under on_bad="stop", or an unreadable (corrupt
      gzip) file; ``str(e)`` is ``file:line: reason``.
    NoImpressionsError: not a single impression to write.
    FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    FileNotFoundError: no ``input_path``.
  """
  policy = BadRecordPolicy(on_bad)
  if max_cats < 1:
    raise ValueError(f"max_cats must be >= 1, got {max_cats}")
  check_split_name(split)
  meter = ReadProgress(progress, [input_path])
  with open_binary(input_path) as f, DatasetWriter(
      out_dir, num_cats=max_cats, num_shards=num_shards,
      overwrite=overwrite) as writer:
    counts = _write_lines(numbered_lines(f, input_path, meter), input_path,
                          _ImpressionParser(max_cats), policy, writer, split)
    check_some_written(counts.written, input_path, f"{counts.lines_read} lines",
                       policy)
    writer.commit(source=f"impression JSONL v{FORMAT_VERSION}: {input_path}")
  return ConversionReport.from_policy(
      policy, input_path=input_path, out_dir=writer.out_dir,
      lines_read=counts.lines_read, impressions_written=counts.written,
      positives_written=counts.positives)


def _write_lines(lines: Iterator[Tuple[int, bytes]], input_path: str,
                 parser: _ImpressionParser, policy: BadRecordPolicy,
                 writer: DatasetWriter, split: str) -> WriteCounts:
  """Parses and writes every line; a bad line goes to ``policy``."""
  counts = WriteCounts()
  for line, raw in lines:
    counts.lines_read = line
    try:
      imp = parser.parse(decode_utf8(raw), line)
    except InvalidLine as e:
      bad = BadRecordError(input_path, line, e.reason, e.kind)
    else:
      writer.write(split, imp)
      counts.written += 1
      counts.positives += imp.label
      continue
    policy.handle(bad)  # outside the except: no "during handling" chain
  return counts
