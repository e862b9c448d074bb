"""Converts the Tianchi Taobao UserBehavior log into impression TFRecords.

Input (Tianchi dataset 649, ``UserBehavior.csv``): one behaviour per line, no header,
``user_id,item_id,category_id,behavior_type,timestamp``; ids and the timestamp (unix
seconds) are non-negative decimal integers, ``behavior_type`` is pv, cart, fav or
buy. ``.gz`` input is decompressed on the fly.

Impressions follow the paper's section 4.1 (item-only: no query fields):

* A user's clicks are their ``pv`` rows, sorted by time; clicks of the same second
  keep their file order.
* Every click at a later second than the user's first click is a positive
  impression. Its click history is the user's clicks at STRICTLY earlier seconds
  (a click of the same second is not history: in the log it is not known which of
  two same-second clicks came first), the most recent ``max_hist``, oldest first.
  Clicks in the user's first second therefore have no history and are not
  impressions. This is what ``experiments/taobao_to_jsonl.py`` does.
* Each positive gets ``negatives`` negatives with the same user, time and history:
  distinct items the user had not touched by the positive's second (no pv, cart,
  fav or buy row of theirs at or before it; items touched only later may be
  negatives), drawn by ``negative_sampling`` (`data_pipeline.taobao_negatives`):
  ``uniform`` (the paper's; the default) from the catalog (the distinct items of
  all kept rows) with the catalog's category of the item (the category of its
  first kept row); ``popularity`` proportional to the items' clicks (of all users)
  before that second; ``category`` likewise among the items clicked under the
  positive's category, with that category. Too few candidates: the rest come from
  the next distribution (category -> popularity -> uniform), counted in the
  report as ``negatives_from_fallback``. The draws of a user come from a generator
  seeded by ``seed`` and the user id alone, so they do not depend on other users'
  draws or on the file order.
* The target item's category is the one on its click row; history entries carry
  the category of their own rows. Items and categories are hashed with
  `data_pipeline.ids.stable_id` into the one shared category space; ids are read as
  integers, so "007" and "7" are the same id.

Splits, both written: "train" and "test".

* ``last_day`` (default): impressions on the last calendar day of the kept clicks are
  "test", the rest "train". Calendar days are UTC unless ``utc_offset_hours`` says
  otherwise; the Tianchi log's days are Beijing days (``utc_offset_hours=8``).
* ``last_click`` (the paper's): each user's last click (the last of its second, in
  file order) is "test"; the user's earlier positives are "train".

``time_window="2017-11-25:2017-12-03"`` (the paper dataset's days; inclusive, in the
same calendar as above) drops rows outside it and counts them.

Checked against the dataset's documentation (Tianchi 649: behaviours of users
active from 2017-11-25 to 2017-12-03; no session or step counters; a user's rows
together): rows outside those (Beijing) days exist (35 in the shared head); without
``time_window`` they are kept and counted as quirk ``outside_dataset_days``. Rows
out of their user's time order are sorted and counted as ``out_of_time_order``
(the shared head has none). Ids are not reused; an item nearly always keeps one
category (in the shared head one item of 55,368, 2633450, moves to another
category later). Uniform and popularity negatives carry the item's first row's
category, category negatives the positive's (the category they were clicked
under).

Streaming: the file is read twice. The first pass checks every row, collects the
item catalog (memory ~ distinct items, 16 bytes each, in numpy arrays), the set of
users seen (to check that the file is grouped by user) and, for ``popularity`` and
``category``, the click events (8 or 16 bytes per pv row once built; see
`data_pipeline.taobao_negatives`); the second pass holds one user's rows at a
time. The Tianchi file is grouped by user; a file that is not stops
with ``file:line: user X appears again after other users`` (sort it first with
``sort -s -t, -k1,1``: a stable sort keeps each user's file order). Handling
ungrouped files would need either all users' rows in memory or an external sort,
which ``sort`` already does well.
"""

import array
import bisect
import calendar
import dataclasses
import datetime
from typing import (Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Set, Tuple)

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline import taobao_negatives
from data_pipeline.bad_input import (BadRecordError, BadRecordPolicy,
                                     ConversionReport, NoImpressionsError, Quirks)
from data_pipeline.line_checks import InvalidLine
from data_pipeline.taobao_negatives import (ClickLog, NEGATIVE_SAMPLING,
                                            NegativeSampler, UNIFORM)
# The line reader (BOM, CRLF, unreadable .gz as `unreadable_file`) is the JSONL
# converter's; sharing it keeps both formats' line numbers and errors identical.
from data_pipeline.text_input import (INT64_MAX, ProgressCallback, ReadProgress,
                                      cached_stable_id, numbered_lines,
                                      open_binary)
from data_pipeline.writer import DatasetWriter

BEHAVIORS = ("pv", "cart", "fav", "buy")
CLICK = "pv"
SPLIT_RULES = ("last_day", "last_click")
TRAIN = "train"
TEST = "test"
# The days of the Tianchi UserBehavior dataset the paper uses (Beijing days).
PAPER_TIME_WINDOW = "2017-11-25:2017-12-03"
FIELDS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
# Quirks of the published log, converted as its authors intend and counted.
OUT_OF_TIME_ORDER = "out_of_time_order"
OUTSIDE_DATASET_DAYS = "outside_dataset_days"
_QUIRK_MEANINGS = {
    OUT_OF_TIME_ORDER: "a row earlier than its user's previous row, put in time "
                       "order (a user's clicks are sorted by time)",
    OUTSIDE_DATASET_DAYS: f"a row outside the dataset's documented days "
                          f"{PAPER_TIME_WINDOW.replace(':', '..')} (Beijing), kept; "
                          f"time_window {PAPER_TIME_WINDOW} with utc_offset_hours "
                          "8 drops such rows",
}

_BEHAVIOR_BYTES = {b.encode("ascii"): b for b in BEHAVIORS}
_INT64_DIGITS = len(str(INT64_MAX))
_SECONDS_PER_DAY = 86_400
# Categories and a user's items repeat; a small cache skips most hashing and stays
# small (~16 MB; the catalog itself can be millions of items).
_ID_CACHE_SIZE = 1 << 16
# Catalog rows are buffered and deduplicated in chunks of at least this many.
_CATALOG_CHUNK = 1 << 18


class _Row(NamedTuple):
  """One well-formed UserBehavior row, ids as the integers of the file."""
  user: int
  item: int
  category: int
  behavior: str
  time: int


def _shown(field: bytes, limit: int = 30) -> str:
  """A field for an error message: quoted, non-ASCII bytes as \\xNN, shortened."""
  text = repr(field[:limit])[1:]  # repr of bytes without its b prefix
  return text + "..." if len(field) > limit else text


def _parse_row(raw: bytes) -> _Row:
  """Parses one line (without its line break).

  Raises:
    InvalidLine: the row is malformed; ``kind`` says how, ``reason`` in words.
  """
  fields = raw.split(b",")
  if len(fields) != len(FIELDS):
    if not raw.strip():
      raise InvalidLine("empty_line", "empty line (every line must be a "
                        "user_id,item_id,category_id,behavior_type,timestamp row)")
    raise InvalidLine("wrong_field_count", f"expected {len(FIELDS)} comma-separated "
                      f"fields ({','.join(FIELDS)}), got {len(fields)}")
  behavior = _BEHAVIOR_BYTES.get(fields[3])
  if behavior is None:
    raise InvalidLine("bad_behavior", f"behavior_type {_shown(fields[3])} is not one "
                      f"of {', '.join(BEHAVIORS)}")
  numbers = []
  for name, field in ((FIELDS[0], fields[0]), (FIELDS[1], fields[1]),
                      (FIELDS[2], fields[2]), (FIELDS[4], fields[4])):
    # isdigit() on bytes accepts ASCII digits only: no sign, space or "1e5".
    if not field.isdigit():
      raise InvalidLine("wrong_type", f"{name} {_shown(field)} is not a non-negative "
                        "integer")
    # Length first: int() refuses more than 4300 digits with its own error.
    if (len(field.lstrip(b"0")) > _INT64_DIGITS
        or int(field) > INT64_MAX):
      raise InvalidLine("out_of_range", f"{name} {_shown(field)} does not fit an int64")
    numbers.append(int(field))
  return _Row(user=numbers[0], item=numbers[1], category=numbers[2],
              behavior=behavior, time=numbers[3])


@dataclasses.dataclass(frozen=True)
class CalendarDays:
  """Calendar days at a fixed offset from UTC (the Tianchi log's days: +8)."""
  utc_offset_hours: int = 0

  def __post_init__(self):
    if not -12 <= self.utc_offset_hours <= 14:
      raise ValueError(f"utc_offset_hours must be in [-12, 14], got "
                       f"{self.utc_offset_hours}")

  @property
  def _offset(self) -> int:
    return self.utc_offset_hours * 3600

  def day_start(self, time: int) -> int:
    """Unix seconds of the start of the day holding ``time``."""
    return (time + self._offset) // _SECONDS_PER_DAY * _SECONDS_PER_DAY - self._offset

  def date(self, time: int) -> str:
    """``time``'s day as YYYY-MM-DD (or the unix time, outside years 1-9999)."""
    day = (time + self._offset) // _SECONDS_PER_DAY
    try:
      return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
    except OverflowError:
      return f"the day of unix time {time}"

  def start_of_date(self, text: str) -> int:
    """Unix seconds of the start of the day YYYY-MM-DD."""
    day = datetime.date.fromisoformat(text)
    return calendar.timegm(day.timetuple()) - self._offset

  @property
  def name(self) -> str:
    if not self.utc_offset_hours:
      return "UTC"
    return f"UTC{self.utc_offset_hours:+d}"


@dataclasses.dataclass(frozen=True)
class TimeWindow:
  """Rows kept: ``start <= time < end`` (unix seconds)."""
  start: int
  end: int
  text: str

  @classmethod
  def parse(cls, text: str, days: CalendarDays) -> "TimeWindow":
    """Parses ``START:END``: first and last day (YYYY-MM-DD), both included.

    Raises:
      ValueError: not two dates, or START after END.
    """
    parts = text.split(":")
    try:
      if len(parts) != 2:
        raise ValueError("expected one ':'")
      start = days.start_of_date(parts[0].strip())
      end = days.start_of_date(parts[1].strip()) + _SECONDS_PER_DAY
    except ValueError as e:
      raise ValueError(f"time_window {text!r} is not START:END with dates "
                       f"YYYY-MM-DD, e.g. {PAPER_TIME_WINDOW} ({e})") from None
    if end <= start:
      raise ValueError(f"time_window {text!r} ends before it starts")
    return cls(start, end, f"{text} ({days.name} days)")

  def __contains__(self, time: int) -> bool:
    return self.start <= time < self.end


class _CatalogBuilder:
  """Distinct items with the category of their first row, in bounded memory.

  Rows are buffered and merged into sorted unique arrays whenever the buffer is as
  large as the catalog, so memory stays ~3x (items + buffer) and the merges cost
  O(rows log items) in all.
  """

  def __init__(self):
    self._items = np.empty(0, np.int64)
    self._cats = np.empty(0, np.int64)
    self._new_items = array.array("q")
    self._new_cats = array.array("q")

  def add(self, item: int, category: int) -> None:
    self._new_items.append(item)
    self._new_cats.append(category)
    if len(self._new_items) >= max(_CATALOG_CHUNK, len(self._items)):
      self._merge()

  def _merge(self) -> None:
    items = np.concatenate([self._items, np.array(self._new_items, np.int64)])
    cats = np.concatenate([self._cats, np.array(self._new_cats, np.int64)])
    # return_index gives each item's FIRST occurrence: the merged (earlier) rows
    # come first, so an item keeps the category of its first row.
    self._items, first = np.unique(items, return_index=True)
    self._cats = cats[first]
    self._new_items = array.array("q")
    self._new_cats = array.array("q")

  def build(self) -> Tuple[np.ndarray, np.ndarray]:
    """(items sorted ascending, their categories), as int64 arrays."""
    self._merge()
    return self._items, self._cats


@dataclasses.dataclass
class _Scan:
  """What the first pass found."""
  rows: int = 0
  outside_window: int = 0
  first_outside_window_line: int = 0
  last_click_time: Optional[int] = None
  quirks: Quirks = dataclasses.field(default_factory=Quirks)
  items: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))
  item_cats: np.ndarray = dataclasses.field(
      default_factory=lambda: np.empty(0, np.int64))
  clicks: Optional[ClickLog] = None


@dataclasses.dataclass
class TaobaoReport(ConversionReport):
  """A `ConversionReport` with what is particular to the Taobao conversion.

  Attributes (beyond `ConversionReport`'s; ``lines_read`` counts input rows):
    users: distinct users among the kept rows.
    users_with_impressions: users with at least one impression.
    rows_outside_window: rows dropped by ``time_window``.
    first_outside_window_line: the first of them (0 if none).
    split_impressions: split name -> impressions written to it.
    test_rule: how the test split was chosen, in words.
    negative_sampling: how negatives were drawn (`NEGATIVE_SAMPLING`).
    negatives_from_fallback: distribution -> negatives it filled in because the
      mode's own had too few candidates (popularity and/or uniform; empty for
      uniform sampling).
  """
  users: int = 0
  users_with_impressions: int = 0
  rows_outside_window: int = 0
  first_outside_window_line: int = 0
  split_impressions: Dict[str, int] = dataclasses.field(default_factory=dict)
  test_rule: str = ""
  negative_sampling: str = UNIFORM
  negatives_from_fallback: Dict[str, int] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    lines = [super().summary()]
    lines.append(f"  {self.users} users, {self.users_with_impressions} with "
                 f"impressions; {self.positives_written} positives, "
                 f"{self.impressions_written - self.positives_written} negatives")
    lines.append("  " + ", ".join(f"{name} {count}" for name, count in
                                  sorted(self.split_impressions.items())) +
                 f" impressions; test = {self.test_rule}")
    lines.append(self._sampling_line())
    if self.rows_outside_window:
      lines.append(f"  dropped {self.rows_outside_window} rows outside the time "
                   f"window (first at {self.input_path}:"
                   f"{self.first_outside_window_line})")
    return "\n".join(lines)

  def _sampling_line(self) -> str:
    line = (f"  negative_sampling {self.negative_sampling}: "
            f"{taobao_negatives.MEANINGS[self.negative_sampling]}, untouched by "
            "the user by then")
    if self.negatives_from_fallback:
      line += "; from the fallback (too few candidates): " + ", ".join(
          f"{source} {count}" for source, count in
          self.negatives_from_fallback.items())
    return line


def _rows(path: str, progress: ReadProgress
          ) -> Iterator[Tuple[int, Optional[_Row], Optional[InvalidLine]]]:
  """Yields (line, row, None) or (line, None, problem) for every line of ``path``."""
  with open_binary(path) as f:
    for line, raw in numbered_lines(f, path, progress):
      try:
        yield line, _parse_row(raw), None
      except InvalidLine as e:
        yield line, None, e


def _not_grouped(path: str, line: int, user: int) -> BadRecordError:
  return BadRecordError(
      path, line, f"user {user} appears again after other users; the file must be "
      "grouped by user (sort it with `sort -s -t, -k1,1`)", "user_not_grouped")


def _count_quirks(quirks: Quirks, line: int, time: int, previous_time: Optional[int],
                  documented_days: Optional[TimeWindow]) -> None:
  """Counts a row out of its user's time order or outside the dataset's days."""
  if previous_time is not None and time < previous_time:
    quirks.count(OUT_OF_TIME_ORDER, line, _QUIRK_MEANINGS[OUT_OF_TIME_ORDER])
  if documented_days is not None and time not in documented_days:
    quirks.count(OUTSIDE_DATASET_DAYS, line, _QUIRK_MEANINGS[OUTSIDE_DATASET_DAYS])


def _scan(path: str, policy: BadRecordPolicy, window: Optional[TimeWindow],
          progress: ReadProgress, negative_sampling: str) -> _Scan:
  """First pass: checks rows, the grouping, collects the catalog (and clicks)."""
  scan = _Scan()
  if negative_sampling != UNIFORM:
    scan.clicks = ClickLog(
        with_categories=negative_sampling == taobao_negatives.CATEGORY)
  catalog = _CatalogBuilder()
  finished_users: Set[int] = set()
  # Without a window, rows outside the dataset's own days are kept and counted.
  documented_days = (TimeWindow.parse(PAPER_TIME_WINDOW, CalendarDays(8))
                     if window is None else None)
  user = previous_time = None
  for line, row, problem in _rows(path, progress):
    scan.rows = line
    if problem is not None:
      reason = problem.reason
      if line == 1 and problem.kind in ("wrong_type", "bad_behavior"):
        reason += " (if this is a header line: UserBehavior files have none)"
      policy.handle(BadRecordError(path, line, reason, problem.kind))
      continue
    if row.user != user:
      if row.user in finished_users:
        raise _not_grouped(path, line, row.user)
      if user is not None:
        finished_users.add(user)
      user, previous_time = row.user, None
    _count_quirks(scan.quirks, line, row.time, previous_time, documented_days)
    previous_time = row.time
    if window is not None and row.time not in window:
      scan.outside_window += 1
      scan.first_outside_window_line = scan.first_outside_window_line or line
      continue
    catalog.add(row.item, row.category)
    if row.behavior == CLICK:
      _add_click(scan, row)
  scan.items, scan.item_cats = catalog.build()
  return scan


def _add_click(scan: _Scan, row: _Row) -> None:
  if scan.last_click_time is None or row.time > scan.last_click_time:
    scan.last_click_time = row.time
  if scan.clicks is not None:
    scan.clicks.add(row.item, row.category, row.time)


@dataclasses.dataclass
class _UserRows:
  """One user's kept rows: clicks (item, category, time, line), touches (time, item)."""
  user: int
  clicks: List[Tuple[int, int, int, int]] = dataclasses.field(default_factory=list)
  touches: List[Tuple[int, int]] = dataclasses.field(default_factory=list)


class _TouchedSoFar:
  """The items a user touched (any behaviour) up to a time, for times in order."""

  def __init__(self, touches: Sequence[Tuple[int, int]]):
    self._touches = sorted(touches)
    self._next = 0
    self.items: Set[int] = set()

  def up_to(self, time: int) -> Set[int]:
    """Items of the rows at or before ``time`` (not below an earlier call's)."""
    while (self._next < len(self._touches)
           and self._touches[self._next][0] <= time):
      self.items.add(self._touches[self._next][1])
      self._next += 1
    return self.items


def _users(path: str, window: Optional[TimeWindow],
           progress: ReadProgress) -> Iterator[_UserRows]:
  """Second pass: one user's kept rows at a time (bad rows were handled already)."""
  current = None
  for line, row, problem in _rows(path, progress):
    if problem is not None or (window is not None and row.time not in window):
      continue
    if current is None or row.user != current.user:
      if current is not None:
        yield current
      current = _UserRows(row.user)
    current.touches.append((row.time, row.item))
    if row.behavior == CLICK:
      current.clicks.append((row.item, row.category, row.time, line))
  if current is not None:
    yield current


class _Encoder:
  """Hashes raw ids (cached) and encodes a positive with its negatives."""

  def __init__(self):
    self.id = cached_stable_id(_ID_CACHE_SIZE)

  def records(self, positive: schema_lib.Impression,
              negatives: Sequence[Tuple[int, int]]
              ) -> Iterator[Tuple[schema_lib.Impression, bytes]]:
    """(impression, serialized example): the positive, then each negative.

    Negatives differ from the positive only in label, item and category, so the
    example (whose history dominates the cost) is encoded once and patched.
    """
    example = schema_lib.to_example(positive, num_cats=1)
    yield positive, example.SerializeToString(deterministic=True)
    feature = example.features.feature
    feature[schema_lib.LABEL].int64_list.value[0] = 0
    item_ids = feature[schema_lib.ITEM_ID].int64_list.value
    item_cats = feature[schema_lib.ITEM_CATS].int64_list.value
    for item, category in negatives:
      item_ids[0] = self.id(item)
      item_cats[0] = self.id(category)
      negative = schema_lib.Impression(
          label=0, user_id=positive.user_id, time=positive.time,
          item_id=item_ids[0], item_cats=(item_cats[0],), clicks=positive.clicks)
      yield negative, example.SerializeToString(deterministic=True)


def convert_taobao(input_path: str, out_dir: str, *, num_shards: int = 1,
                   on_bad: str = "stop", overwrite: bool = False,
                   progress: Optional[ProgressCallback] = None,
                   max_hist: int = 200, negatives: int = 1,
                   split: str = "last_day", time_window: Optional[str] = None,
                   utc_offset_hours: int = 0, seed: int = 0,
                   negative_sampling: str = UNIFORM) -> TaobaoReport:
  """Converts a Taobao UserBehavior CSV (or ``.csv.gz``) into a dataset folder.

  Writes "train" and "test" shards and ``schema.json`` (C = 1 category per item)
  into ``out_dir``, atomically: a failed run leaves nothing at ``out_dir``. See the
  module docstring for how impressions, negatives and splits are made.

  Args:
    input_path: the UserBehavior CSV, grouped by user (as Tianchi ships it).
    out_dir: the dataset folder to create.
    num_shards: TFRecord shards per split; impressions go round-robin.
    on_bad: "stop" raises at the first malformed row; "skip" skips and counts
      malformed rows, and positives for which not enough negatives are left.
    overwrite: replace ``out_dir`` if it exists.
    progress: called as ``progress(rows read, total or None, share done or
      None)``, counting both passes over the file (so it ends at twice the rows;
      see `text_input.ReadProgress`).
    max_hist: most recent earlier clicks kept per history (the paper: 200).
    negatives: negatives sampled per positive.
    split: "last_day" or "last_click" (see the module docstring).
    time_window: "START:END", first and last day kept (YYYY-MM-DD), e.g.
      `PAPER_TIME_WINDOW`; None keeps every row.
    utc_offset_hours: hours east of UTC of the calendar days of ``split`` and
      ``time_window`` (0 = UTC; the Tianchi log's own days are UTC+8).
    seed: seed of the negative sampling.
    negative_sampling: how negatives are drawn: "uniform" (the paper's),
      "popularity" or "category" (see `data_pipeline.taobao_negatives`).

  Returns:
    What was read, written, skipped and dropped.

  Raises:
    BadRecordError: a malformed row under on_bad="stop", a positive without
      enough negatives left under on_bad="stop", a user whose rows are not
      contiguous, or an unreadable file; ``str(e)`` is ``file:line: reason``.
    NoImpressionsError: not a single impression to write, or none in "train"
      or in "test".
    FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    FileNotFoundError: no ``input_path``.
    ValueError: a bad argument.
  """
  policy = BadRecordPolicy(on_bad)
  days, window = _checked_options(input_path, max_hist, negatives, split,
                                  time_window, utc_offset_hours, negative_sampling)
  with DatasetWriter(out_dir, num_cats=1, num_shards=num_shards,
                     overwrite=overwrite) as writer:
    meter = ReadProgress(progress, [input_path, input_path])
    scan = _scan(input_path, policy, window, meter, negative_sampling)
    test_start, test_rule = _test_split(split, scan.last_click_time, days)
    sampler = NegativeSampler(negative_sampling, scan.items, scan.item_cats,
                              negatives, seed, scan.clicks)
    scan.clicks = None  # built into the sampler
    users = _UserWriter(writer, policy, input_path, max_hist, test_start, sampler)
    for rows in _users(input_path, window, meter):
      users.write(rows)
    _check_splits(users, input_path, scan.rows, policy, test_rule)
    writer.commit(source=_source(input_path, test_rule, window, negative_sampling))
  return _report(policy, scan, users, input_path, writer.out_dir, test_rule)


def _checked_options(input_path: str, max_hist: int, negatives: int, split: str,
                     time_window: Optional[str], utc_offset_hours: int,
                     negative_sampling: str
                     ) -> Tuple[CalendarDays, Optional[TimeWindow]]:
  """The calendar days and the time window; raises for a bad option or no input."""
  if max_hist < 0:
    raise ValueError(f"max_hist must be >= 0, got {max_hist}")
  if negatives < 0:
    raise ValueError(f"negatives must be >= 0, got {negatives}")
  if split not in SPLIT_RULES:
    raise ValueError(f"split must be one of {SPLIT_RULES}, got {split!r}")
  if negative_sampling not in NEGATIVE_SAMPLING:
    raise ValueError(f"negative_sampling must be one of {NEGATIVE_SAMPLING}, got "
                     f"{negative_sampling!r}")
  days = CalendarDays(utc_offset_hours)
  window = None if time_window is None else TimeWindow.parse(time_window, days)
  with open_binary(input_path):  # FileNotFoundError before anything is created
    pass
  return days, window


def _source(input_path: str, test_rule: str, window: Optional[TimeWindow],
            negative_sampling: str) -> str:
  """The dataset's ``source`` in ``schema.json``."""
  source = f"Taobao UserBehavior CSV: {input_path}; test = {test_rule}"
  if window is not None:
    source += f"; time window {window.text}"
  return source + f"; negative_sampling {negative_sampling}"


def _test_split(split: str, last_click_time: Optional[int],
                days: CalendarDays) -> Tuple[Optional[int], str]:
  """(start of the test day, or None for each user's last click; the rule in words)."""
  if split == "last_click":
    return None, "each user's last click"
  if last_click_time is None:
    return None, "no clicks"
  test_start = days.day_start(last_click_time)
  return test_start, f"impressions on {days.date(test_start)} ({days.name})"


@dataclasses.dataclass
class _UserWriter:
  """Writes each user's positives with their negatives, counting what it wrote.

  ``test_start``: clicks from this time on are "test"; None: each user's last.
  """
  _writer: DatasetWriter
  _policy: BadRecordPolicy
  _input_path: str
  _max_hist: int
  _test_start: Optional[int]
  sampler: NegativeSampler
  _encoder: _Encoder = dataclasses.field(default_factory=_Encoder)
  split_counts: Dict[str, int] = dataclasses.field(
      default_factory=lambda: {TRAIN: 0, TEST: 0})
  written: int = 0
  positives: int = 0
  users: int = 0
  users_with_impressions: int = 0

  def write(self, rows: _UserRows) -> None:
    """Writes the impressions of one user's clicks after their first second."""
    self.users += 1
    clicks = sorted(rows.clicks, key=lambda c: c[2])  # stable: ties keep file order
    if not clicks or clicks[-1][2] == clicks[0][2]:
      return  # no click after the first second: no impression
    user_id = self._encoder.id(rows.user)
    history = [schema_lib.Event(self._encoder.id(item), time, (self._encoder.id(cat),))
               for item, cat, time, _ in clicks]
    times = [c[2] for c in clicks]
    rng = self.sampler.rng(user_id)
    touched = _TouchedSoFar(rows.touches)
    user_written = 0
    for i, (item, cat, time, line) in enumerate(clicks):
      if time == times[0]:
        continue
      if not self._enough_negatives(rows.user, line, touched.up_to(time), time):
        continue
      end = bisect.bisect_left(times, time)  # the first click of this second
      positive = schema_lib.Impression(
          label=1, user_id=user_id, time=time, item_id=self._encoder.id(item),
          item_cats=(self._encoder.id(cat),),
          clicks=history[max(0, end - self._max_hist):end])
      is_test = (i == len(clicks) - 1 if self._test_start is None
                 else time >= self._test_start)
      user_written += self._write(TEST if is_test else TRAIN, positive,
                                  self.sampler.draw(rng, touched.items, cat, time))
    self.users_with_impressions += bool(user_written)

  def _enough_negatives(self, user: int, line: int, touched: Set[int],
                        time: int) -> bool:
    """Whether negatives can be drawn at ``time``; if not, a bad record."""
    available = self.sampler.available(touched)
    if available >= self.sampler.negatives:
      return True
    # Not a malformed row, but this click cannot become a labelled example.
    self._policy.handle(BadRecordError(
        self._input_path, line, f"user {user} touched all but {available} of "
        f"the {self.sampler.catalog_size} catalog items by time {time}; cannot "
        f"draw {self.sampler.negatives} negatives", "no_negatives_left"))
    return False

  def _write(self, split: str, positive: schema_lib.Impression,
             negatives: Sequence[Tuple[int, int]]) -> int:
    """Writes a positive and its negatives into ``split``; returns how many."""
    count = 0
    for imp, record in self._encoder.records(positive, negatives):
      self._writer.write_serialized(split, imp, record)
      count += 1
    self.split_counts[split] += count
    self.written += count
    self.positives += 1
    return count


def _check_splits(users: _UserWriter, input_path: str, rows: int,
                  policy: BadRecordPolicy, test_rule: str) -> None:
  """Raises `NoImpressionsError` for no impressions, or none in a split."""
  if not users.written:
    raise NoImpressionsError(
        f"{input_path}: no impressions to convert ({rows} rows, "
        f"{users.users} users; {policy.summary()}; a user needs clicks in two "
        "different seconds)")
  for name in (TRAIN, TEST):
    # A dataset without one of its splits cannot be trained or evaluated.
    if not users.split_counts[name]:
      raise NoImpressionsError(
          f"{input_path}: no {name} impressions (test = {test_rule}; "
          f"{users.written} impressions in all); use a log of more days or "
          f"the other split rule ({', '.join(SPLIT_RULES)})")


def _report(policy: BadRecordPolicy, scan: _Scan, users: _UserWriter,
            input_path: str, out_dir: str, test_rule: str) -> TaobaoReport:
  return TaobaoReport.from_policy(
      policy, scan.quirks, input_path=input_path, out_dir=out_dir,
      lines_read=scan.rows, impressions_written=users.written,
      positives_written=users.positives, users=users.users,
      users_with_impressions=users.users_with_impressions,
      rows_outside_window=scan.outside_window,
      first_outside_window_line=scan.first_outside_window_line,
      split_impressions=users.split_counts, test_rule=test_rule,
      negative_sampling=users.sampler.mode,
      negatives_from_fallback=dict(users.sampler.fallback))
