"""Converts the JDsearch personalized product search log into TFRecord shards.

JDsearch (Liu et al., SIGIR 2023, github.com/rucliujn/JDsearch) is a real JD.com
search log: one line per user with the user's test search, the products shown
for it with labels, and the user's earlier interactions, plus a product file
with 4-level categories (``shared/data/jdsearch_sample/PROVENANCE.txt``). All
text is anonymised into decimal ids.

Behaviour file (``user_behavior_data_sample.txt``; ``release_data.txt`` in the
full release): 7 tab-separated columns, list entries joined by ``_``, the terms
of a query joined by ``\\x18`` (shown as ``^X``)::

  query  candidate_wid_list  candidate_label_list  history_qry_list
  history_wid_list  history_type_list  history_time_list

Product file (``product_meta_data_sample.txt``; ``product_data.txt``): 13
tab-separated columns ``wid name brand_id brand_name cate_id_1 cate_name_1 ...
cate_id_4 cate_name_4 shop_id``; only ``wid`` and ``cate_id_1..4`` are used.
Either file may start with its header line (first column ``query`` / ``wid``).

Mapping to the impression schema (C = 4):

* **Impressions**: every candidate of a user's test search is one impression,
  label 1 if its candidate label (0 none, 1 click, 2 add to cart, 3 purchase)
  is >= ``min_label`` (default 1: any interaction counts as a click, since cart
  and purchase happen after a click). Users whose candidates are all 0 are kept
  (a page without clicks is a real negative page) and counted in the report.
  The candidate order is not used: the sample lists the positives first, so a
  position would leak the label.
* **User id**: the file has no user ids, one line is one user; ``user_id`` is
  ``stable_id`` of the line's 1-based line number (the number errors name).
* **Ids**: item ids ``stable_id(wid)``; a query's id is ``stable_id`` of its
  normalised term string: the terms in their order, each in canonical decimal
  form (no leading zeros), empty terms (doubled or trailing separators)
  dropped, joined by ``\\x18``. Ids are decimal digits; anything else (e.g. a
  shifted column) is a bad line.
* **Categories**: an item's categories are its 4 levels from the product file,
  as ``stable_id("l1:<cate_id_1>")`` ... ``stable_id("l4:<cate_id_4>")``: the
  level prefix keeps equal ids of different levels apart, and items and queries
  share this one category space. Products missing from the product file get no
  categories (counted in the report); an empty level is left out.
* **Clicks** (``click_*``): the history rows whose type is in ``click_types``
  (default all of CLICK, CART, ORD, FLW), with or without a query, oldest
  first, the most recent ``max_hist`` kept. Each row is one product
  interaction at its level (the README's "interaction levels"); carting,
  ordering or following happens on the product's page, so it counts as a click
  too. The rows are not also logged as CLICK: the first sample user has 126
  CART rows but only 49 CLICK rows.
* **Query history** (``query_hist_*``): one entry per history row that has a
  query (``-1`` = query-less, e.g. from a recommendation page), whatever its
  type, at that row's time; its categories are those of the row's product (the
  product the user chose under that query: the query's observed intent). A
  search with several interactions has one row, so one entry, per interaction;
  the most recent ``max_hist`` are kept.
* **Query categories** of the test search: those of the product of the user's
  most recent earlier history row with the same query, if any; none otherwise
  (no test query of the 3 sample users occurs in their histories, so the
  sample's query categories are all empty). Never from the candidates: that
  would leak the label.
* **Times**: ``history_time_list`` holds the seconds between consecutive
  behaviours (first 0), plus one more for the test search. The JDsearch paper
  samples active users on one date and logs their year before it, so every
  user's test search is put at the same ``test_time`` (default 1,000,000,000
  s; not the real date, which the data does not give) and history row k at
  ``test_time`` minus the sum of the gaps after it: histories line up across
  users in calendar time, and all history times are positive for histories
  shorter than 31 years. A zero gap means the same second: history rows at the test
  search's second are not strictly earlier than the impression, so they are
  left out of both histories (counted in the report); equal times inside the
  history are kept, in file order.
* No seeds, dense or categorical features.

Memory: one line (one user) at a time, plus the product file held as two
sorted arrays (12 bytes per product, about 150 MB for the full 12.9 M
products; about 3x that while it loads) and the distinct category 4-tuples,
plus the distinct ids of items missing from the product file and the distinct
ids the writer's statistics keep.

Checked for reused ids, out-of-order rows and restarting counters (as in trivago's
sessions), against the JDsearch README and the shared sample: nothing to handle. A
line is one user (no user or session ids to reuse); history times are non-negative
gaps, so order cannot go back (a zero gap is the same second, kept in file order);
the sample repeats no candidate and no product (a product listed again keeps its
first line; again with other categories it is a bad line). The README's own quirks,
products missing from the product file and users without a positive label (which
its authors leave out of their test part), are kept and counted in the report.

A malformed line stops the run with ``file:line: reason`` (or, with
``on_bad="skip"``, is skipped and counted per reason); a malformed product line
likewise, naming the product file.
"""

import array
import dataclasses
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline.arg_checks import check_int
from data_pipeline.bad_input import (BadRecordError, BadRecordPolicy,
                                     ConversionReport)
from data_pipeline.ids import stable_id
from data_pipeline.line_checks import (InvalidLine, WriteCounts, check_some_written,
                                       check_split_name, decode_utf8)
# The line reading of the JSONL converter (gzip, CRLF, BOM, unreadable files as a
# BadRecordError); shared so every converter numbers lines the same way.
from data_pipeline.text_input import (INT64_MAX, INT64_MIN, ProgressCallback,
                                      ReadProgress, cached_stable_id,
                                      numbered_lines, open_binary)
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter

BEHAVIOR_COLUMNS = ("query", "candidate_wid_list", "candidate_label_list",
                    "history_qry_list", "history_wid_list", "history_type_list",
                    "history_time_list")
META_COLUMNS = ("wid", "name", "brand_id", "brand_name", "cate_id_1", "cate_name_1",
                "cate_id_2", "cate_name_2", "cate_id_3", "cate_name_3", "cate_id_4",
                "cate_name_4", "shop_id")
# Columns of cate_id_1 .. cate_id_4 in the product file.
_CATEGORY_COLUMNS = (4, 6, 8, 10)
NUM_CATS = len(_CATEGORY_COLUMNS)
HISTORY_TYPES = ("CLICK", "CART", "ORD", "FLW")
# The label levels of candidate_label_list.
LABEL_LEVELS = {0: "none", 1: "click", 2: "cart", 3: "purchase"}
NO_QUERY = "-1"
TERM_SEPARATOR = "\x18"
LIST_SEPARATOR = "_"
# The product file of the sample, then of the full release, looked for beside the
# behaviour file when no product file is given.
DEFAULT_META_NAMES = ("product_meta_data_sample.txt", "product_data.txt")
DEFAULT_TEST_TIME = 1_000_000_000
DEFAULT_MAX_HIST = 100

_DIGITS = re.compile(r"[0-9]+")
_LABEL = re.compile(r"([0-9]+)(?:\.0*)?")
# Longer digit strings cannot be an int64 number of seconds; checked before int()
# so that a huge field cannot hit Python's int parsing limits.
_MAX_TIME_DIGITS = 18
# Lines are users (up to 200 candidates each), so progress comes more often than
# in the JSONL converter.
_PROGRESS_EVERY = 1_000

Categories = Tuple[int, ...]


def _shown(text: str, limit: int = 30) -> str:
  """The text quoted (and shortened) for error messages; ^X shows as \\x18."""
  return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def _columns(text: str, names: Sequence[str], what: str) -> List[str]:
  if not text:
    raise InvalidLine("empty_line", f"empty line (every line must be {what})")
  fields = text.split("\t")
  if len(fields) != len(names):
    raise InvalidLine("wrong_column_count", f"expected {len(names)} tab-separated "
                      f"columns ({' '.join(names)}), got {len(fields)}")
  return fields


def _is_header(fields: List[str], names: Sequence[str]) -> bool:
  """Whether a first line is the header: it must then be exactly the header."""
  if fields[0] != names[0]:
    return False
  if tuple(fields) != tuple(names):
    raise InvalidLine("bad_header", f"header {_shown(' '.join(fields), 200)} is not "
                      f"the expected {' '.join(names)!r}")
  return True


def _list(field: str) -> List[str]:
  return field.split(LIST_SEPARATOR) if field else []


def _decimal(text: str, what: str) -> str:
  """A decimal id in canonical form (no leading zeros)."""
  if not _DIGITS.fullmatch(text):
    raise InvalidLine("bad_id", f"{what} {_shown(text)} is not a decimal id")
  return text.lstrip("0") or "0"


def _query_text(raw: str, what: str) -> str:
  """The normalised term string of a query (see the module docstring)."""
  terms = [_decimal(term, f"{what} term {i + 1}")
           for i, term in enumerate(raw.split(TERM_SEPARATOR)) if term]
  if not terms:
    raise InvalidLine("empty_query", f"{what} {_shown(raw)} has no term")
  return TERM_SEPARATOR.join(terms)


def _label_level(text: str, what: str) -> int:
  match = _LABEL.fullmatch(text)
  level = int(match.group(1)) if match and len(match.group(1)) < 4 else None
  if level not in LABEL_LEVELS:
    levels = ", ".join(f"{k} {v}" for k, v in LABEL_LEVELS.items())
    raise InvalidLine("bad_label", f"{what} {_shown(text)} is not a label level "
                      f"({levels})")
  return level


def _gap(text: str, what: str) -> int:
  if not _DIGITS.fullmatch(text):
    raise InvalidLine("bad_time", f"{what} {_shown(text)} is not a number of seconds "
                      "(a non-negative integer)")
  if len(text) > _MAX_TIME_DIGITS:
    raise InvalidLine("out_of_range", f"{what} {_shown(text)} does not fit an int64")
  return int(text)


@dataclasses.dataclass(frozen=True)
class HistoryRow:
  """One parsed history row.

  Attributes:
    query: the normalised query, None for a query-less row (-1).
    wid: the product id (canonical decimal).
    type: CLICK, CART, ORD or FLW.
    seconds_before: seconds from this row to the test search (>= 0).
  """
  query: Optional[str]
  wid: str
  type: str
  seconds_before: int


@dataclasses.dataclass(frozen=True)
class UserLine:
  """One parsed behaviour line (one user).

  Attributes:
    query: the test search's normalised term string.
    candidates: (wid, label level 0-3) of each candidate, in file order.
    history: the history rows, oldest first.
  """
  query: str
  candidates: Tuple[Tuple[str, int], ...]
  history: Tuple[HistoryRow, ...]


def parse_user_line(text: str) -> UserLine:
  """Parses one behaviour line; raises `InvalidLine` naming the column and entry."""
  (query, wids, labels, hist_queries, hist_wids, hist_types,
   hist_gaps) = _columns(text, BEHAVIOR_COLUMNS, "one user's 7 columns")
  if query == NO_QUERY:
    raise InvalidLine("empty_query", "query is -1 (no query), but the test search "
                      "must have one")
  query = _query_text(query, "query")
  wids, labels = _list(wids), _list(labels)
  if not wids:
    raise InvalidLine("no_candidates", "candidate_wid_list is empty")
  if len(labels) != len(wids):
    raise InvalidLine("length_mismatch", f"candidate_label_list has {len(labels)} "
                      f"entries, candidate_wid_list {len(wids)}")
  candidates = tuple(
      (_decimal(wid, f"candidate_wid_list[{i}]"),
       _label_level(label, f"candidate_label_list[{i}]"))
      for i, (wid, label) in enumerate(zip(wids, labels)))
  hist_queries, hist_wids = _list(hist_queries), _list(hist_wids)
  hist_types, hist_gaps = _list(hist_types), _list(hist_gaps)
  n = len(hist_wids)
  for name, values in (("history_qry_list", hist_queries),
                       ("history_type_list", hist_types)):
    if len(values) != n:
      raise InvalidLine("length_mismatch", f"{name} has {len(values)} entries, "
                        f"history_wid_list {n}")
  if len(hist_gaps) != n + 1:
    raise InvalidLine("length_mismatch", f"history_time_list has {len(hist_gaps)} "
                      f"entries, expected {n + 1} (one per history row, then the "
                      "test search)")
  gaps = [_gap(g, f"history_time_list[{i}]") for i, g in enumerate(hist_gaps)]
  if gaps[0] != 0:
    raise InvalidLine("bad_time", f"history_time_list[0] is {gaps[0]}, but the "
                      "first behaviour's gap must be 0")
  history = []
  seconds_before = sum(gaps)
  for i in range(n):
    seconds_before -= gaps[i]
    if hist_types[i] not in HISTORY_TYPES:
      raise InvalidLine("bad_type", f"history_type_list[{i}] {_shown(hist_types[i])} "
                        f"is not one of {', '.join(HISTORY_TYPES)}")
    raw_query = hist_queries[i]
    history.append(HistoryRow(
        query=(None if raw_query == NO_QUERY else
               _query_text(raw_query, f"history_qry_list[{i}]")),
        wid=_decimal(hist_wids[i], f"history_wid_list[{i}]"),
        type=hist_types[i],
        seconds_before=seconds_before))
  return UserLine(query, candidates, tuple(history))


def _category_ids(levels: Sequence[str],
                  hash_id: Callable[[str], int] = stable_id) -> Categories:
  """``stable_id("l<level>:<cate_id>")`` of each non-empty level, in level order."""
  return tuple(hash_id(f"l{level}:{cate}")
               for level, cate in enumerate(levels, 1) if cate)


class ProductCategories:
  """The product file as a lookup: item id -> its (up to 4) category ids.

  Held compactly for the 12.9 M products of the full release: the item ids
  (``stable_id(wid)``) sorted in an int64 array, beside an int32 array indexing
  the distinct category tuples (a few thousand).
  """

  def __init__(self, item_ids: np.ndarray, tuple_index: np.ndarray,
               tuples: Sequence[Categories]):
    self._item_ids = item_ids
    self._tuple_index = tuple_index
    self._tuples = list(tuples)

  def __len__(self) -> int:
    return len(self._item_ids)

  def lookup(self, item_ids: Sequence[int]) -> List[Optional[Categories]]:
    """Each item's category ids, or None for an item not in the product file."""
    if not len(self._item_ids):
      return [None] * len(item_ids)
    query = np.asarray(item_ids, dtype=np.int64)
    pos = np.searchsorted(self._item_ids, query)
    pos = np.minimum(pos, len(self._item_ids) - 1)
    found = self._item_ids[pos] == query
    index = self._tuple_index[pos]
    return [self._tuples[i] if ok else None
            for i, ok in zip(index.tolist(), found.tolist())]

  @classmethod
  def load(cls, path: str, policy: BadRecordPolicy,
           progress: Optional[ReadProgress] = None) -> Tuple[
               "ProductCategories", int]:
    """Reads a product file; returns the lookup and the lines read.

    A product listed twice keeps its first line; listing it again with other
    categories is a bad line.

    Raises:
      BadRecordError: a bad line under ``policy`` "stop" (or an unreadable file).
    """
    rows = _ProductRows()
    lines_read = 0
    with open_binary(path) as f:
      for line, raw in numbered_lines(f, path, progress):
        lines_read = line
        try:
          product = _product_line(raw, line)
        except InvalidLine as e:
          bad = BadRecordError(path, line, e.reason, e.kind)
        else:
          if product is not None:
            rows.add(*product, line)
          continue
        policy.handle(bad)  # outside the except: no "during handling" chain
    keys, index = rows.first_of_each(path, policy)
    return cls(keys, index, rows.tuples()), lines_read


def _product_line(raw: bytes, line: int) -> Optional[Tuple[str, List[str]]]:
  """(wid, its 4 category ids, "" for an empty level), None for the header line."""
  fields = _columns(decode_utf8(raw), META_COLUMNS,
                    f"one product's {len(META_COLUMNS)} columns")
  if line == 1 and _is_header(fields, META_COLUMNS):
    return None
  wid = _decimal(fields[0], "wid")
  levels = [fields[c] and _decimal(fields[c], META_COLUMNS[c])
            for c in _CATEGORY_COLUMNS]
  return wid, levels


class _ProductRows:
  """The product lines read so far, in compact arrays (see `ProductCategories`)."""

  def __init__(self):
    self._keys = array.array("q")
    self._lines = array.array("i")
    self._index = array.array("i")
    self._tuple_ids: Dict[Categories, int] = {}
    # A few thousand categories cover millions of products.
    self._category_id = cached_stable_id()

  def add(self, wid: str, levels: List[str], line: int) -> None:
    cats = _category_ids(levels, self._category_id)
    self._keys.append(stable_id(wid))
    self._lines.append(line)
    self._index.append(self._tuple_ids.setdefault(cats, len(self._tuple_ids)))

  def tuples(self) -> List[Categories]:
    """The distinct category tuples, in the order `add` numbered them."""
    return sorted(self._tuple_ids, key=self._tuple_ids.get)

  def first_of_each(self, path: str, policy: BadRecordPolicy
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, their tuple index), a repeated product's first line winning.

    A repeat with other categories goes to ``policy`` as a bad line.
    """
    keys = np.frombuffer(self._keys, dtype=np.int64)
    # Stable: among equal ids the first line comes first and wins.
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    index = np.frombuffer(self._index, dtype=np.int32)[order]
    lines = np.frombuffer(self._lines, dtype=np.int32)[order]
    repeated = keys[1:] == keys[:-1]
    if not repeated.any():
      return keys, index
    first = np.maximum.accumulate(
        np.where(np.concatenate([[True], ~repeated]), np.arange(len(keys)), 0))
    conflicts = np.flatnonzero(
        np.concatenate([[False], repeated]) & (index != index[first]))
    for pos in sorted(conflicts.tolist(), key=lambda p: lines[p]):
      policy.handle(BadRecordError(
          path, int(lines[pos]), "this wid is listed again with other "
          f"categories than on line {int(lines[first[pos]])}",
          "conflicting_duplicate"))
    keep = np.concatenate([[True], ~repeated])
    return keys[keep], index[keep]


@dataclasses.dataclass
class JDsearchReport(ConversionReport):
  """What a JDsearch conversion did, beyond a `ConversionReport`.

  Attributes:
    users_written: users (behaviour lines) whose candidates were written.
    users_without_positive: of those, users with no candidate >= min_label.
    history_at_search_time: history rows left out because they are at the test
      search's second (not strictly earlier than the impressions).
    candidates_without_meta: written candidates missing from the product file.
    history_without_meta: history rows (of written users) whose product is
      missing from the product file.
    items_without_meta: distinct items (candidates and history) missing from it.
    meta_path: the product file.
    meta_lines_read: its lines read, bad ones included.
    meta_products: distinct products it held.
    meta_skipped: bad-line kind -> product lines skipped.
    meta_first_skipped_line: bad-line kind -> first product line of that kind.
  """
  users_written: int = 0
  users_without_positive: int = 0
  history_at_search_time: int = 0
  candidates_without_meta: int = 0
  history_without_meta: int = 0
  items_without_meta: int = 0
  meta_path: str = ""
  meta_lines_read: int = 0
  meta_products: int = 0
  meta_skipped: Dict[str, int] = dataclasses.field(default_factory=dict)
  meta_first_skipped_line: Dict[str, int] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    lines = [super().summary()]
    lines.append(f"  {self.users_written} users ({self.users_without_positive} "
                 "without a positive candidate)")
    lines.append(f"  product file {self.meta_path}: {self.meta_products} products "
                 f"from {self.meta_lines_read} lines")
    for kind, count in sorted(self.meta_skipped.items()):
      lines.append(f"  skipped {count} x {kind} (first at "
                   f"{self.meta_path}:{self.meta_first_skipped_line[kind]})")
    lines.append(f"  {self.items_without_meta} items without categories (not in "
                 f"the product file): {self.candidates_without_meta} candidates, "
                 f"{self.history_without_meta} history rows")
    lines.append(f"  {self.history_at_search_time} history rows at the test "
                 "search's second left out of the histories")
    return "\n".join(lines)


def default_meta_path(input_path: str) -> str:
  """The product file beside ``input_path`` (see `DEFAULT_META_NAMES`)."""
  folder = os.path.dirname(input_path)
  candidates = [os.path.join(folder, name + gz)
                for name in DEFAULT_META_NAMES for gz in ("", ".gz")]
  for path in candidates:
    if tf.io.gfile.exists(path):
      return path
  raise FileNotFoundError(
      f"no JDsearch product file beside {input_path} (looked for "
      f"{', '.join(os.path.basename(p) for p in candidates)}); give its path as "
      "the meta path (--meta)")


class _ImpressionBuilder:
  """Turns a parsed user line into that user's impressions, counting as it goes."""

  def __init__(self, products: ProductCategories, min_label: int, max_hist: int,
               click_types: Sequence[str], test_time: int):
    self.products = products
    self.min_label = min_label
    self.max_hist = max_hist
    self.click_types = frozenset(click_types)
    self.test_time = test_time
    self._stable_id = cached_stable_id()
    self.missing_items = set()
    self.candidates_without_meta = 0
    self.history_without_meta = 0
    self.history_at_search_time = 0

  def build(self, user: UserLine, line: int) -> List[schema_lib.Impression]:
    """One impression per candidate; raises `InvalidLine` if a time leaves int64."""
    span = user.history[0].seconds_before if user.history else 0
    if self.test_time - span < INT64_MIN:
      raise InvalidLine("out_of_range", f"history_time_list adds up to {span} seconds "
                        f"before the test search (at {self.test_time}); that is "
                        "before the smallest int64 time")
    sid = self._stable_id
    cand_ids = [sid(wid) for wid, _ in user.candidates]
    hist_ids = [sid(row.wid) for row in user.history]
    cats = self.products.lookup(cand_ids + hist_ids)
    cand_cats, hist_cats = cats[:len(cand_ids)], cats[len(cand_ids):]
    for item, item_cats in zip(cand_ids + hist_ids, cats):
      if item_cats is None:
        self.missing_items.add(item)
    self.candidates_without_meta += cand_cats.count(None)
    self.history_without_meta += hist_cats.count(None)

    clicks, queries = [], []
    query_cats: Categories = ()
    for row, item, row_cats in zip(user.history, hist_ids, hist_cats):
      if not row.seconds_before:
        # Not strictly earlier than the test search; all later rows are too.
        self.history_at_search_time += 1
        continue
      time = self.test_time - row.seconds_before
      row_cats = row_cats or ()
      if row.type in self.click_types:
        clicks.append(schema_lib.Event(item, time, row_cats))
      if row.query is not None:
        queries.append(schema_lib.Event(sid(row.query), time, row_cats))
        if row.query == user.query:
          query_cats = row_cats
    clicks, queries = clicks[-self.max_hist:], queries[-self.max_hist:]
    user_id = sid(line)
    query_id = sid(user.query)
    return [
        schema_lib.Impression(
            label=int(level >= self.min_label), user_id=user_id,
            time=self.test_time, item_id=item, item_cats=item_cats or (),
            query_id=query_id, query_cats=query_cats, clicks=clicks,
            queries=queries)
        for (_, level), item, item_cats in zip(user.candidates, cand_ids, cand_cats)
    ]


def _encoded(impressions: Sequence[schema_lib.Impression]) -> Iterator[bytes]:
  """The records of one user's impressions, as `DatasetWriter.write` encodes them.

  They differ only in label, item id and item categories, so the histories are
  encoded once and only those three features are replaced per candidate (about
  4x faster than encoding each impression whole; the bytes are the same).
  """
  example = schema_lib.to_example(impressions[0], NUM_CATS)
  feature = example.features.feature
  label = feature[schema_lib.LABEL].int64_list.value
  item_id = feature[schema_lib.ITEM_ID].int64_list.value
  item_cats = feature[schema_lib.ITEM_CATS].int64_list.value
  for imp in impressions:
    label[0] = imp.label
    item_id[0] = imp.item_id
    item_cats[:] = list(imp.item_cats) + [0] * (NUM_CATS - len(imp.item_cats))
    yield example.SerializeToString(deterministic=True)


def _check_options(num_shards: int, min_label: int, max_hist: int,
                   click_types: Sequence[str], test_time: int, split: str) -> None:
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  if type(min_label) is not int or min_label not in (1, 2, 3):
    raise ValueError(f"min_label must be 1 (click), 2 (cart) or 3 (purchase), "
                     f"got {min_label!r}")
  check_int("max_hist", max_hist)
  unknown = sorted(set(click_types) - set(HISTORY_TYPES))
  if isinstance(click_types, str) or not click_types or unknown:
    raise ValueError(f"click_types must be a non-empty list of "
                     f"{', '.join(HISTORY_TYPES)}, got {click_types!r}")
  if type(test_time) is not int or not INT64_MIN <= test_time <= INT64_MAX:
    raise ValueError(f"test_time must be an int64, got {test_time!r}")
  check_split_name(split)


def _user_lines(path: str, progress: ReadProgress
                ) -> Iterator[Tuple[int, Optional[UserLine], Optional[InvalidLine]]]:
  """(line, parsed user or None for the header, or the line's problem)."""
  with open_binary(path) as f:
    for line, raw in numbered_lines(f, path, progress):
      try:
        text = decode_utf8(raw)
        if line == 1 and text.split("\t", 1)[0] == BEHAVIOR_COLUMNS[0]:
          _is_header(text.split("\t"), BEHAVIOR_COLUMNS)
          yield line, None, None
          continue
        yield line, parse_user_line(text), None
      except InvalidLine as e:
        yield line, None, e


def convert_jdsearch(input_path: str, out_dir: str, *, meta_path: Optional[str] = None,
                     num_shards: int = 1, on_bad: str = "stop", overwrite: bool = False,
                     progress: Optional[ProgressCallback] = None,
                     max_hist: int = DEFAULT_MAX_HIST, min_label: int = 1,
                     click_types: Sequence[str] = HISTORY_TYPES,
                     test_time: int = DEFAULT_TEST_TIME,
                     split: str = "data") -> JDsearchReport:
  """Converts a JDsearch behaviour file (and its product file) into a dataset.

  Writes ``{split}-XXXXX-of-NNNNN.tfrecord`` shards and ``schema.json`` (C = 4)
  into ``out_dir``, atomically: a failed run leaves nothing at ``out_dir``. The
  mapping is in the module docstring.

  Args:
    input_path: the behaviour file; ``.gz`` files are decompressed on the fly.
    out_dir: the dataset folder to create.
    meta_path: the product file; default: `DEFAULT_META_NAMES` beside the input.
    num_shards: TFRecord shards; impressions go round-robin over them.
    on_bad: "stop" raises at the first bad line (of either file); "skip" skips
      and counts bad lines (a skipped behaviour line drops that whole user).
    overwrite: replace ``out_dir`` if it exists.
    progress: called as ``progress(lines read, total lines or None, share done
      or None)`` over the product file, then the behaviour file, every few
      thousand lines and at the end of each (see `text_input.ReadProgress`).
    max_hist: most recent clicks, and most recent queries, kept per impression.
    min_label: smallest candidate label level that is a positive: 1 click,
      2 add to cart, 3 purchase.
    click_types: history row types that are clicks (of CLICK, CART, ORD, FLW).
    test_time: the time every test search is put at (history times are before).
    split: the split name all impressions go to.

  Returns:
    What was read, written and skipped, with the JDsearch counts.

  Raises:
    BadRecordError: a bad line under on_bad="stop", or an unreadable (corrupt
      gzip) file; ``str(e)`` is ``file:line: reason``.
    NoImpressionsError: not a single impression to write.
    FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    FileNotFoundError: no input file or product file.
  """
  policy = BadRecordPolicy(on_bad)
  _check_options(num_shards, min_label, max_hist, click_types, test_time, split)
  meta_path = _checked_paths(input_path, meta_path)
  meta_policy = BadRecordPolicy(on_bad)
  meter = ReadProgress(progress, [meta_path, input_path], _PROGRESS_EVERY)
  # Before the writer exists: a bad product file leaves no temporary folder.
  products, meta_lines = ProductCategories.load(meta_path, meta_policy, meter)
  builder = _ImpressionBuilder(products, min_label, max_hist, click_types,
                               test_time)
  with DatasetWriter(out_dir, num_cats=NUM_CATS, num_shards=num_shards,
                     overwrite=overwrite) as writer:
    counts = _write_users(input_path, meter, builder, policy, writer, split)
    check_some_written(counts.written, input_path, f"{counts.lines_read} lines",
                       policy)
    writer.commit(source=f"JDsearch: {input_path} with products {meta_path}")
  return _report(policy, counts, builder, input_path, writer.out_dir, meta_policy,
                 meta_path, meta_lines)


def _report(policy: BadRecordPolicy, counts: "_UserCounts",
            builder: "_ImpressionBuilder", input_path: str, out_dir: str,
            meta_policy: BadRecordPolicy, meta_path: str,
            meta_lines: int) -> JDsearchReport:
  return JDsearchReport.from_policy(
      policy, input_path=input_path, out_dir=out_dir,
      lines_read=counts.lines_read, impressions_written=counts.written,
      positives_written=counts.positives, users_written=counts.users,
      users_without_positive=counts.users_without_positive,
      history_at_search_time=builder.history_at_search_time,
      candidates_without_meta=builder.candidates_without_meta,
      history_without_meta=builder.history_without_meta,
      items_without_meta=len(builder.missing_items), meta_path=meta_path,
      meta_lines_read=meta_lines, meta_products=len(builder.products),
      meta_skipped=dict(meta_policy.skipped),
      meta_first_skipped_line=dict(meta_policy.first_line))


def _checked_paths(input_path: str, meta_path: Optional[str]) -> str:
  """The product file (default: beside the input); raises if either file is missing."""
  if not tf.io.gfile.exists(input_path):
    raise FileNotFoundError(f"{input_path}: no such JDsearch behaviour file")
  if meta_path is None:
    return default_meta_path(input_path)
  if not tf.io.gfile.exists(meta_path):
    raise FileNotFoundError(f"{meta_path}: no such JDsearch product file")
  return meta_path


@dataclasses.dataclass
class _UserCounts(WriteCounts):
  """`WriteCounts` with the users written and those without a positive."""
  users: int = 0
  users_without_positive: int = 0


def _write_users(input_path: str, meter: ReadProgress, builder: "_ImpressionBuilder",
                 policy: BadRecordPolicy, writer: DatasetWriter,
                 split: str) -> _UserCounts:
  """Writes every user's impressions; a bad line goes to ``policy``."""
  counts = _UserCounts()
  for line, user, problem in _user_lines(input_path, meter):
    counts.lines_read = line
    if user is not None:
      try:
        impressions = builder.build(user, line)
      except InvalidLine as e:
        problem = e
    if problem is not None:
      policy.handle(BadRecordError(input_path, line, problem.reason,
                                   problem.kind))
      continue
    if user is None:  # the header
      continue
    user_positives = 0
    for imp, record in zip(impressions, _encoded(impressions)):
      writer.write_serialized(split, imp, record)
      user_positives += imp.label
    counts.users += 1
    counts.written += len(impressions)
    counts.positives += user_positives
    counts.users_without_positive += not user_positives
  return counts
