"""Converts the trivago RecSys Challenge 2019 session log (CSV) into TFRecord shards.

Input: the challenge's ``train.csv`` / ``test.csv`` layout (``.csv.gz`` accepted), a
header line naming at least these columns (any order, extra columns ignored), then
one row per line::

  user_id,session_id,timestamp,step,action_type,reference,platform,city,device,
  current_filters,impressions,prices

What becomes what:

* Impressions: every item listed in a ``clickout item`` row's ``impressions``
  (``|``-separated item ids), labelled 1 if it is the row's ``reference`` (the
  clicked item), else 0. ``time`` is the clickout's timestamp. Features:
  ``cat/position`` (1-based place in the list, the raw number), ``dense/price``
  (the matching entry of ``prices``), ``cat/device`` and ``cat/platform``.
* Categories: the row's ``city`` is the one category (C = 1) of the items shown in
  a clickout, of a search's query and of every history entry. Items and queries
  hash the same city string, so they share its category id.
* Current query: the ``reference`` text of the user's latest ``search for
  destination`` / ``search for poi`` row at or before the clickout (in any earlier
  session too), with that row's city as its category; none if there is none.
* Query history: the user's searches strictly earlier than the clickout.
* Click history: the user's item actions (``interaction item image/info/rating/
  deals``, ``search for item`` and earlier clickouts, whose reference is the item)
  strictly earlier than the clickout, the most recent ``max_hist`` kept, like
  the query history.
* ``filter selection`` and ``change of sort order`` rows are checked and dropped;
  their reference (free text describing the filter or sort order, sometimes
  ``unknown``) is not read.

The log as published (the challenge's documentation and files): each of these is
converted as described, counted in the report by its name (with its first line)
and is no bad row.

* ``unknown_reference``: an item action (``interaction item ...``, ``search for
  item``) whose reference is ``unknown`` or empty: the log withholds the item, so
  the row adds nothing to the click history and is left out (the shared sample has
  2, ``interaction item info`` rows, the first at line 26201).
* ``unlabelled_clickout``: a clickout whose reference is ``unknown`` or empty, as
  on the clickouts ``test.csv`` asks to predict. Its items were shown but which
  one was clicked is withheld, and labels are not invented: its impressions are
  not written and it is not a clickout of the split (its row is still checked,
  impressions and prices included). The shared sample has none.
* ``clicked_item_not_shown``: a clickout whose reference is not in its impressions
  (the user clicked the item elsewhere on the page): its impressions are written,
  all labelled 0, as the challenge's scoring counts such a clickout a miss (the
  shared sample has 1, line 62260).
* ``reused_session_id``: a row of a session id the user already had whose
  ``step`` restarts at 1 begins a new session segment (the challenge's sessions
  are step-numbered from 1), which may be earlier in time than the rows before
  it; it is converted like any session (the shared sample has none). Any other
  step that does not increase within a segment, or a timestamp going back within
  one, is a bad row.

Order and ties: a user's rows are ordered by timestamp, then by file order (which
within a session segment is ``step`` order). "At or before the clickout" means
earlier in that order, so a search in the same second at a lower step is the
current query. Histories only hold rows of strictly earlier seconds (the schema
requires it): an interaction in the same second as a clickout enters the histories
of later clickouts only.

Split: the latest ``test_fraction`` of clickouts by time, ``round(test_fraction *
n)`` of the ``n`` kept clickouts (halves up), define the threshold: the timestamp of
the earliest of them. Impressions at or after it go to "test", the rest to "train".

Streaming: the file is read twice. The first pass checks every row and collects
clickout timestamps (8 bytes per clickout) for the threshold; the second writes. The
rows of one user must be contiguous (as in the challenge files; sessions of a user
need not be in time order); only the current user's rows and histories are held,
plus the set of users already finished, to catch a user whose rows reappear.

Ids: users, items (targets and history), query texts, cities, devices and
platforms go through `data_pipeline.ids.stable_id`; item ids must be digits and hash
as written (like the int they spell, when it has no leading zeros). A malformed row
is reported as ``file:line: reason`` (1-based, the header is line 1) and stops the
conversion, or with ``on_bad="skip"`` is left out as if it were not in the file and
counted; row counts in the report exclude the header.
"""

import array
import bisect
import contextlib
import csv
import dataclasses
import itertools
import math
import re
from typing import (Callable, Iterator, List, NamedTuple, Optional, Sequence, Set,
                    Tuple)

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import (BadRecordError, BadRecordPolicy,
                                     ConversionReport, NoImpressionsError, Quirks)
from data_pipeline.line_checks import InvalidLine, WriteCounts, decode_utf8
# Line reading (gzip, CRLF, BOM, unreadable files) is the same for every text
# format; these two should move to a shared module.
from data_pipeline.text_input import (FLOAT32_MAX, INT64_MAX, INT64_MIN,
                                      ProgressCallback, ReadProgress,
                                      cached_stable_id, numbered_lines,
                                      open_binary)
from data_pipeline.writer import DatasetWriter

COLUMNS = ("user_id", "session_id", "timestamp", "step", "action_type", "reference",
           "platform", "city", "device", "current_filters", "impressions", "prices")

CLICKOUT = "clickout item"
QUERY_ACTIONS = ("search for destination", "search for poi")
ITEM_ACTIONS = ("interaction item image", "interaction item info",
                "interaction item rating", "interaction item deals",
                "search for item")
DROPPED_ACTIONS = ("filter selection", "change of sort order")
ACTIONS = (CLICKOUT,) + QUERY_ACTIONS + ITEM_ACTIONS + DROPPED_ACTIONS

TRAIN = "train"
TEST = "test"
PRICE = "price"
POSITION = "position"
DEVICE = "device"
PLATFORM = "platform"

# What a row contributes, by action type.
_QUERY, _ITEM, _CLICKOUT, _DROPPED = range(4)
_ROLE = {CLICKOUT: _CLICKOUT, **{a: _QUERY for a in QUERY_ACTIONS},
         **{a: _ITEM for a in ITEM_ACTIONS}, **{a: _DROPPED for a in DROPPED_ACTIONS}}

# The published log reuses session ids: a block of one whose step restarts at 1
# is a new session (the challenge's sessions are step-numbered from 1).
REUSED_SESSION = "reused_session_id"
_REUSED_SESSION_MEANING = ("a session_id whose step restarts at 1, kept as a new "
                           "session (rows in time order within the user)")

# The published log withholds some item references: "unknown" (e.g. on
# "interaction item info" rows of train.csv), empty on the clickouts test.csv
# asks to predict. Such a row names no item, so it converts to nothing.
WITHHELD_REFERENCES = ("unknown", "")
UNKNOWN_REFERENCE = "unknown_reference"
UNLABELLED_CLICKOUT = "unlabelled_clickout"
_WITHHELD_QUIRK = {
    _ITEM: (UNKNOWN_REFERENCE, "an item action whose reference is 'unknown' or "
            "empty (the item is withheld): adds no click to the history"),
    _CLICKOUT: (UNLABELLED_CLICKOUT, "a clickout whose reference is 'unknown' or "
                "empty (the clicked item is withheld, as on test.csv's clickouts to "
                "predict): no label, so its impressions are not written"),
}
# The clicked item need not be among the impressions (the user clicked it
# elsewhere on the page); the challenge's scoring gives such a clickout 0.
CLICKED_ITEM_NOT_SHOWN = "clicked_item_not_shown"
_CLICKED_ITEM_NOT_SHOWN_MEANING = ("a clickout whose clicked item is not in its "
                                   "impressions: written, every item labelled 0")

_INT = re.compile(r"-?[0-9]+")
_PRICE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class _Row(NamedTuple):
  """One checked row; ``impressions`` and ``prices`` only for clickouts."""
  user: str
  time: int
  line: int
  role: int
  reference: str
  city: str
  platform: str
  device: str
  impressions: Sequence[str] = ()
  prices: Sequence[float] = ()


def _is_item_id(text: str) -> bool:
  # isdigit() alone accepts non-ASCII digits such as "²", which int() rejects.
  return text.isdigit() and text.isascii()


def _quoted(text: str, limit: int = 40) -> str:
  """``repr`` of a field, shortened, for error messages."""
  return repr(text if len(text) <= limit else text[:limit - 3] + "...")


class _RowParser:
  """Checks rows of one file and turns them into `_Row`; see the module docstring.

  Keeps the column positions from the header, the previous good row's user,
  session, step and timestamp (steps must increase and time must not go back in a
  session segment) and the current user's session ids; counts the quirks of the
  published log (see the module docstring) into ``quirks``.
  """

  def __init__(self, path: str, quirks: Quirks):
    self.path = path
    self.quirks = quirks
    self._index: Tuple[int, ...] = ()
    self._num_columns = 0
    # (user, session id, step, time) of the previous good row.
    self._session: Tuple[str, str, int, int] = ("", "", 0, 0)
    self._sessions_of_user: Set[str] = set()

  def header(self, raw: bytes, line: int) -> None:
    """Reads the header line; a bad header is not skippable, so it raises."""
    try:
      names = self._fields(raw, line)
    except BadRecordError as e:
      raise BadRecordError(self.path, line, f"header: {e.reason}", "bad_header"
                           ) from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    missing = [c for c in COLUMNS if c not in names]
    if duplicates or missing:
      # A line of data in place of the header lacks columns and repeats values;
      # the missing names say more.
      problem = (f"lacks columns {missing}" if missing
                 else f"repeats columns {duplicates}")
      raise BadRecordError(
          self.path, line, f"header {problem}; a trivago RecSys 2019 CSV starts "
          f"with the line {','.join(COLUMNS)}", "bad_header")
    self._index = tuple(names.index(c) for c in COLUMNS)
    self._num_columns = len(names)

  def _bad(self, line: int, kind: str, reason: str) -> BadRecordError:
    return BadRecordError(self.path, line, reason, kind)

  def _fields(self, raw: bytes, line: int) -> List[str]:
    try:
      text = decode_utf8(raw)
    except InvalidLine as e:
      raise self._bad(line, e.kind, e.reason) from None
    if not text.strip():
      raise self._bad(line, "empty_line", "empty line (every line must be a row)")
    if '"' not in text:
      return text.split(",")  # the csv module gives the same, only slower
    try:
      rows = list(csv.reader((text,), strict=True))
    except csv.Error as e:
      raise self._bad(line, "bad_csv", f"not a CSV row: {e}") from None
    return rows[0]

  def parse(self, raw: bytes, line: int) -> _Row:
    """Checks one data line; raises a (skippable) `BadRecordError` if malformed."""
    fields = self._fields(raw, line)
    if len(fields) != self._num_columns:
      raise self._bad(line, "wrong_column_count", f"has {len(fields)} columns, the "
                      f"header has {self._num_columns}")
    (user, session, timestamp, step, action, reference, platform, city, device, _,
     impressions, prices) = [fields[i] for i in self._index]
    for name, value in (("user_id", user), ("session_id", session)):
      if not value:
        raise self._bad(line, "empty_id", f"{name} is empty")
    if not _INT.fullmatch(timestamp):
      raise self._bad(line, "bad_timestamp", f"timestamp {_quoted(timestamp)} is not "
                      "an int (unix seconds)")
    time = int(timestamp)
    if not INT64_MIN <= time <= INT64_MAX:
      raise self._bad(line, "bad_timestamp", f"timestamp {time} does not fit an int64")
    if not _is_item_id(step) or len(step) > 18 or not int(step):
      raise self._bad(line, "bad_step", f"step {_quoted(step)} is not a positive int")
    step_number = int(step)
    role = _ROLE.get(action)
    if role is None:
      raise self._bad(line, "unknown_action_type", f"action_type {_quoted(action)} is "
                      f"not a trivago action type ({', '.join(ACTIONS)})")
    restarts = self._restarts_session(user, session, step_number, time, line)
    withheld = self._withholds_item(role, action, reference, line)
    if role != _DROPPED and not city:
      raise self._bad(line, "empty_city", f"city of a {action!r} row is empty (it is "
                      "the category of the row's items and query)")
    shown, amounts = (self._shown_items(impressions, prices, line)
                      if role == _CLICKOUT else ((), ()))
    # Only a good row moves the session on (a skipped row is as if not there).
    if user != self._session[0]:
      self._sessions_of_user = set()
    self._sessions_of_user.add(session)
    self._session = (user, session, step_number, time)
    return self._counted(_Row(user, time, line, role, reference, city, platform,
                              device, shown, amounts), restarts, withheld)

  def _counted(self, row: _Row, restarts: bool, withheld: bool) -> _Row:
    """``row`` with its quirks counted; a withheld item's row converts to nothing."""
    if restarts:
      self.quirks.count(REUSED_SESSION, row.line, _REUSED_SESSION_MEANING)
    if withheld:
      kind, meaning = _WITHHELD_QUIRK[row.role]
      self.quirks.count(kind, row.line, meaning)
      return row._replace(role=_DROPPED, impressions=(), prices=())
    if row.role == _CLICKOUT and row.reference not in row.impressions:
      self.quirks.count(CLICKED_ITEM_NOT_SHOWN, row.line,
                        _CLICKED_ITEM_NOT_SHOWN_MEANING)
    return row

  def _withholds_item(self, role: int, action: str, reference: str,
                      line: int) -> bool:
    """Whether an item or clickout row's reference is withheld (no item).

    Raises:
      BadRecordError: a query row without text, or an item reference that is
        neither an item id nor withheld.
    """
    if role == _QUERY and not reference:
      raise self._bad(line, "empty_query", f"reference of a {action!r} row is empty "
                      "(it is the query text)")
    if role not in (_ITEM, _CLICKOUT) or _is_item_id(reference):
      return False
    if reference in WITHHELD_REFERENCES:
      return True
    raise self._bad(line, "reference_not_item_id", f"reference {_quoted(reference)} "
                    f"of a {action!r} row is not an item id (digits), 'unknown' "
                    "or empty")

  def _restarts_session(self, user: str, session: str, step: int, time: int,
                        line: int) -> bool:
    """Whether the row starts a new segment of a session id the user already had.

    Raises:
      BadRecordError: the step does not follow the segment's previous step, or the
        time goes back within the segment.
    """
    last_user, last_session, last_step, last_time = self._session
    if (user, session) != (last_user, last_session):
      # A session id of this user coming back after another session: a restart
      # at step 1, a continuation otherwise (as before, not checked further).
      return (step == 1 and user == last_user
              and session in self._sessions_of_user)
    if step == 1:
      return True  # the authors' data: a step restarting at 1 is a new session
    if step <= last_step:
      raise self._bad(line, "step_not_increasing", f"step {step} follows step "
                      f"{last_step} of session {_quoted(session)}; steps must "
                      "increase within a session (or restart at 1: a new one)")
    if time < last_time:
      raise self._bad(line, "time_goes_back", f"timestamp {time} is earlier than "
                      f"{last_time} at step {last_step} of session "
                      f"{_quoted(session)}; time must not go back within a session")
    return False

  def _shown_items(self, impressions: str, prices: str, line: int
                   ) -> Tuple[List[str], List[float]]:
    """The items and prices of a clickout, checked."""
    if not impressions:
      raise self._bad(line, "no_impressions", "impressions of a 'clickout item' row "
                      "is empty")
    items = impressions.split("|")
    amounts = prices.split("|") if prices else []
    if len(items) != len(amounts):
      raise self._bad(line, "impressions_prices_mismatch", f"{len(items)} "
                      f"impressions but {len(amounts)} prices")
    for i, item in enumerate(items):
      if not _is_item_id(item):
        raise self._bad(line, "impression_not_item_id", f"impressions[{i}] "
                        f"{_quoted(item)} is not an item id (digits)")
    values = []
    for i, amount in enumerate(amounts):
      value = float(amount) if _PRICE.fullmatch(amount) else math.inf
      if value > FLOAT32_MAX:
        raise self._bad(line, "bad_price", f"prices[{i}] {_quoted(amount)} is not a "
                        "non-negative number that fits a float32")
      values.append(value)
    return items, values


def _good_rows(path: str, policy: BadRecordPolicy, on_row: Callable[[int], None],
               quirks: Quirks, progress: ReadProgress) -> Iterator[_Row]:
  """Yields the good rows of ``path`` in file order; bad rows go to ``policy``.

  ``on_row`` is called with each data row's number (1-based, header excluded)
  before the row is checked. Rows that convert to nothing (dropped actions, withheld
  item references) are checked but not yielded. Quirks are counted into ``quirks``.

  Raises:
    BadRecordError: a bad header, an unreadable file, or a user whose rows are not
      contiguous (none of which skipping could repair); a bad row under "stop".
  """
  parser = _RowParser(path, quirks)
  # User -> last line of its block; only to name it when its rows come back.
  finished = {}
  user, user_end = None, 0
  with open_binary(path) as f:
    lines = numbered_lines(f, path, progress)
    first = next(lines, None)
    if first is None:
      return  # an empty file: no rows
    parser.header(first[1], first[0])
    for line, raw in lines:
      on_row(line - 1)
      try:
        row = parser.parse(raw, line)
      except BadRecordError as e:
        bad = e
      else:
        if row.user != user:
          if row.user in finished:
            raise BadRecordError(
                path, line, f"user_id {_quoted(row.user)} comes back after other "
                f"users (its rows ended at line {finished[row.user]}); each user's "
                "rows must be together: sort the file by user_id, keeping the order "
                "of rows within a user", "user_not_grouped")
          if user is not None:
            finished[user] = user_end
          user = row.user
        user_end = line
        if row.role != _DROPPED:
          yield row
        continue
      policy.handle(bad)  # outside the except: no "during handling" chain


def _test_threshold(times: array.array, test_fraction: float) -> Optional[int]:
  """The first timestamp of the "test" split, None for no test split."""
  num_test = math.floor(test_fraction * len(times) + 0.5)
  if not num_test:
    return None
  return sorted(times)[len(times) - num_test]


def _recent_before(events: List[schema_lib.Event], times: List[int], time: int,
                   cap: int) -> List[schema_lib.Event]:
  """The last ``cap`` of ``events`` (oldest first) strictly earlier than ``time``."""
  end = bisect.bisect_left(times, time)
  return events[max(0, end - cap):end]


class _ImpressionBuilder:
  """Turns one user's rows into impressions (ids hashed through a bounded cache)."""

  def __init__(self, max_hist: int, test_threshold: Optional[int]):
    self.max_hist = max_hist
    self.test_threshold = test_threshold
    self._id = cached_stable_id()

  def clickouts(self, rows: List[_Row]
                ) -> Iterator[Tuple[str, List[schema_lib.Impression]]]:
    """Yields (split, impressions) of each of the user's clickouts, in time order."""
    rows.sort(key=lambda row: row.time)  # stable: ties keep file (= step) order
    user_id = self._id(rows[0].user)
    clicks: List[schema_lib.Event] = []
    click_times: List[int] = []
    queries: List[schema_lib.Event] = []
    query_times: List[int] = []
    query_id, query_cats = 0, ()
    for row in rows:
      city = (self._id(row.city),)
      if row.role == _QUERY:
        query_id, query_cats = self._id(row.reference), city
        queries.append(schema_lib.Event(query_id, row.time, city))
        query_times.append(row.time)
        continue
      if row.role == _CLICKOUT:
        t = row.time
        earlier_clicks = _recent_before(clicks, click_times, t, self.max_hist)
        earlier_queries = _recent_before(queries, query_times, t, self.max_hist)
        context = {DEVICE: self._id(row.device), PLATFORM: self._id(row.platform)}
        split = (TEST if self.test_threshold is not None
                 and t >= self.test_threshold else TRAIN)
        yield split, [
            schema_lib.Impression(
                label=int(shown == row.reference), user_id=user_id, time=t,
                item_id=self._id(shown), item_cats=city, query_id=query_id,
                query_cats=query_cats, clicks=earlier_clicks,
                queries=earlier_queries, dense={PRICE: price},
                categorical={POSITION: position, **context})
            for position, (shown, price) in enumerate(
                zip(row.impressions, row.prices), 1)
        ]
      clicks.append(schema_lib.Event(self._id(row.reference), row.time, city))
      click_times.append(row.time)


def _encoded(impressions: Sequence[schema_lib.Impression]) -> Iterator[bytes]:
  """The records of one clickout's impressions, as `DatasetWriter.write` makes them.

  They differ only in label, item id, price and position, so the histories are
  encoded once and only those features are replaced per item (the bytes are the
  same as encoding each impression whole).
  """
  example = schema_lib.to_example(impressions[0], num_cats=1)
  feature = example.features.feature
  label = feature[schema_lib.LABEL].int64_list.value
  item_id = feature[schema_lib.ITEM_ID].int64_list.value
  price = feature[schema_lib.DENSE_PREFIX + PRICE].float_list.value
  position = feature[schema_lib.CAT_PREFIX + POSITION].int64_list.value
  for imp in impressions:
    label[0] = imp.label
    item_id[0] = imp.item_id
    price[0] = imp.dense[PRICE]
    position[0] = imp.categorical[POSITION]
    yield example.SerializeToString(deterministic=True)


def convert_trivago(input_path: str, out_dir: str, *, num_shards: int = 1,
                    on_bad: str = "stop", overwrite: bool = False,
                    progress: Optional[ProgressCallback] = None,
                    test_fraction: float = 0.25, max_hist: int = 100
                    ) -> ConversionReport:
  """Converts a trivago RecSys 2019 CSV (or ``.csv.gz``) into a dataset folder.

  Writes ``train-*`` and ``test-*`` shards (a split without impressions is left
  out) and ``schema.json`` into ``out_dir``, atomically: a failed run leaves
  nothing at ``out_dir`` (an existing folder replaced with ``overwrite`` stays as it
  was). See the module docstring for what becomes what.

  Args:
    input_path: the CSV file; ``.gz`` files are decompressed on the fly.
    out_dir: the dataset folder to create.
    num_shards: TFRecord shards per split; impressions go round-robin over them.
    on_bad: "stop" raises at the first bad row; "skip" skips and counts bad rows.
    overwrite: replace ``out_dir`` if it exists.
    progress: called as ``progress(lines read, total or None, share done or
      None)`` every few thousand lines and at the end of each pass; the file is
      read twice, so the count goes on to twice its lines, header included (see
      `text_input.ReadProgress`).
    test_fraction: share of clickouts, the latest by time, whose impressions form
      the "test" split; 0 writes only "train".
    max_hist: most recent clicks and queries kept per impression.

  Returns:
    What was read (data rows, without the header), written and skipped, and the
    quirks of the published log, per kind: ``REUSED_SESSION`` (session segments
    that reuse a session id), ``UNKNOWN_REFERENCE`` (item actions left out),
    ``UNLABELLED_CLICKOUT`` (clickouts not written) and ``CLICKED_ITEM_NOT_SHOWN``
    (clickouts written with every item labelled 0).

  Raises:
    BadRecordError: a bad row under on_bad="stop"; a bad header, an unreadable
      (corrupt gzip) file or a user whose rows are not contiguous under either
      policy. ``str(e)`` is ``file:line: reason``.
    NoImpressionsError: not a single clickout to write.
    FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    FileNotFoundError: no ``input_path``.
  """
  policy = BadRecordPolicy(on_bad)
  _check_options(test_fraction, max_hist)
  meter = ReadProgress(progress, [input_path, input_path])
  # The writer comes first so that a taken out_dir fails before a pass over the
  # file; whatever fails inside the block removes its temporary folder.
  with DatasetWriter(out_dir, num_cats=1, num_shards=num_shards,
                     overwrite=overwrite) as writer:
    # Pass 1 checks every row: a bad one stops the run before anything is written.
    checked = _check_rows(input_path, policy, meter, test_fraction)
    # Pass 2: write, one user at a time. Bad rows were counted in pass 1.
    counts = _write_users(input_path, meter,
                          _ImpressionBuilder(max_hist, checked.threshold), writer)
    writer.commit(source=f"trivago RecSys 2019 CSV: {input_path}; "
                  f"{_split_rule(checked.threshold, test_fraction)}")
  return ConversionReport.from_policy(
      policy, checked.quirks, input_path=input_path, out_dir=writer.out_dir,
      lines_read=checked.rows, impressions_written=counts.written,
      positives_written=counts.positives)


def _check_options(test_fraction: float, max_hist: int) -> None:
  if not 0 <= test_fraction <= 1:
    raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
  if max_hist < 0:
    raise ValueError(f"max_hist must be >= 0, got {max_hist}")


def _split_rule(threshold: Optional[int], test_fraction: float) -> str:
  if threshold is None:
    return "no test split"
  return (f"test = clickouts at or after {threshold} "
          f"(latest {test_fraction:g} of clickouts)")


@dataclasses.dataclass
class _CheckedRows:
  """What the first pass found: data rows, the first "test" time, quirks."""
  rows: int = 0
  threshold: Optional[int] = None
  quirks: Quirks = dataclasses.field(default_factory=Quirks)


def _check_rows(input_path: str, policy: BadRecordPolicy, meter: ReadProgress,
                test_fraction: float) -> _CheckedRows:
  """Pass 1: checks every row; the clickout times fix the split's threshold.

  Raises:
    NoImpressionsError: no good clickout row.
  """
  checked = _CheckedRows()

  def on_row(row: int) -> None:
    checked.rows = row

  clickout_times = array.array("q")  # 8 bytes a clickout, freed before pass 2
  for row in _good_rows(input_path, policy, on_row, checked.quirks, meter):
    if row.role == _CLICKOUT:
      clickout_times.append(row.time)
  if not clickout_times:
    raise NoImpressionsError(
        f"{input_path}: no impressions to convert ({checked.rows} rows, no good "
        f"{CLICKOUT!r} row; {policy.summary()}"
        f"{_quirk_note(checked.quirks)})")
  checked.threshold = _test_threshold(clickout_times, test_fraction)
  return checked


def _quirk_note(quirks: Quirks) -> str:
  """``, quirks: unlabelled_clickout 2 (first at line 3)``, or "" for none."""
  if not quirks.counts:
    return ""
  return "; quirks: " + ", ".join(
      f"{kind} {count} (first at line {quirks.first_line[kind]})"
      for kind, count in sorted(quirks.counts.items()))


def _write_users(input_path: str, meter: ReadProgress, builder: _ImpressionBuilder,
                 writer: DatasetWriter) -> WriteCounts:
  """Pass 2: writes the impressions of every user's clickouts."""
  counts = WriteCounts()
  with contextlib.closing(_good_rows(
      input_path, BadRecordPolicy("skip"), lambda row: None, Quirks(),
      meter)) as rows:
    for _, user_rows in itertools.groupby(rows, key=lambda row: row.user):
      for split, impressions in builder.clickouts(list(user_rows)):
        for imp, record in zip(impressions, _encoded(impressions)):
          writer.write_serialized(split, imp, record)
          counts.positives += imp.label
        counts.written += len(impressions)
  return counts
