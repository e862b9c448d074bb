"""The negatives of the Taobao conversion: uniform, popularity or category sampling.

The UserBehavior log has clicks only, so `data_pipeline.taobao` samples each
positive's negatives. A positive at second ``t`` gets ``negatives`` distinct items
that the user had not touched by then: no row of theirs (pv, cart, fav or buy) at or
before ``t`` names the item. The positive's own row is at ``t``, so a negative never
is the positive; items the user touches only after ``t`` (e.g. on the test day) can
be negatives, as they could have been shown at ``t``. Three modes:

* ``uniform`` (the paper's protocol): uniformly from the whole catalog (every item
  of the kept rows, including items first seen after ``t``), with the catalog's
  category of the item (its first row's).
* ``popularity``: items drawn with probability proportional to their clicks (pv
  rows of all users) strictly before second ``t``, with the catalog's category.
* ``category``: items clicked before ``t`` under the positive's category, drawn
  proportional to those clicks; the negative carries the positive's category.
  Real search impressions share the query's category, so this is the protocol
  closest to use: a category match no longer gives the label away.

"Proportional to clicks so far" is drawn exactly: the click events, sorted by time
(by category first, for ``category``), are kept as one array; a draw picks a
uniformly random event among those before ``t`` and takes its item. Distinct
negatives are drawn one after the other, each proportional to clicks among the
items not excluded yet: by rejection while that is quick, else by listing the
candidate items with their click counts (the same distribution). Events of one
second are ordered by item, so the draws do not depend on the file order.

Fallback: when a mode's candidates run out (an early time, a category with fewer
clicked items so far than needed once the user's touched items are excluded), the
missing negatives come from the next distribution: category -> popularity ->
uniform. Each such negative is counted per distribution it came from
(`NegativeSampler.fallback`, the report's ``negatives_from_fallback``); none is
dropped. Only when even the whole catalog is short is the positive a bad record.

Memory, per click (pv row; ~90% of the Tianchi rows): the first pass buffers 16
bytes (item and time; 24 with the category for ``category``); built, the events
take 8 bytes for ``popularity`` (int32 item index and time rank) and 16 for
``category`` (the popularity array for the fallback too), plus 8 bytes per
distinct second; building peaks at ~60 (``popularity``) or ~68 (``category``)
bytes for a moment (numpy's sorts; measured with tracemalloc on 2M clicks). For
the full log (~90M clicks of 100M rows) that is ~0.7 or ~1.4 GB kept and ~5.4 or
~6.1 GB at the peak. ``uniform`` keeps no events.
"""

import array
import dataclasses
import random
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

UNIFORM = "uniform"
POPULARITY = "popularity"
CATEGORY = "category"
NEGATIVE_SAMPLING = (UNIFORM, POPULARITY, CATEGORY)
MEANINGS = {
    UNIFORM: "any catalog item, equally likely",
    POPULARITY: "items by their clicks before the impression",
    CATEGORY: "items of the positive's category by their clicks before the "
              "impression",
}
# Each mode's distributions in the order tried: what one runs out of, the next fills.
_SOURCES = {UNIFORM: (UNIFORM,), POPULARITY: (POPULARITY, UNIFORM),
            CATEGORY: (CATEGORY, POPULARITY, UNIFORM)}
# Up to this many earlier clicks the candidates are listed rather than drawn by
# rejection: listing is as cheap then, and it sees at once when they run out.
_LISTED_RANGE = 64
# Rejected draws per negative before the candidates are listed: rejection is slow
# when the user's own items hold most of the clicks.
_TRIES_PER_NEGATIVE = 32


def _index_dtype(size: int) -> type:
  return np.int32 if size < 2**31 else np.int64


class ClickLog:
  """The click events of the first pass, buffered compactly (array.array)."""

  def __init__(self, with_categories: bool):
    self._items = array.array("q")
    self._times = array.array("q")
    self._cats = array.array("q") if with_categories else None

  def add(self, item: int, category: int, time: int) -> None:
    self._items.append(item)
    self._times.append(time)
    if self._cats is not None:
      self._cats.append(category)

  def build(self, catalog_items: np.ndarray) -> "_Clicks":
    """The events as catalog indices with time ranks; empties the buffers."""
    times = np.frombuffer(self._times, np.int64)
    distinct_times, ranks = np.unique(times, return_inverse=True)
    del times
    self._times = None
    ranks = ranks.astype(_index_dtype(len(distinct_times)))
    items = np.searchsorted(catalog_items, np.frombuffer(self._items, np.int64))
    self._items = None
    items = items.astype(_index_dtype(len(catalog_items)))
    by_category = None
    if self._cats is not None:
      by_category = _EventRuns(items, ranks, np.frombuffer(self._cats, np.int64))
      self._cats = None
    return _Clicks(distinct_times, _EventRuns(items, ranks), by_category)


def _group_bounds(groups: np.ndarray) -> Dict[int, Tuple[int, int]]:
  """group -> [start, end) of its run in ``groups`` (sorted)."""
  if not len(groups):
    return {}
  starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
  ends = np.r_[starts[1:], len(groups)]
  return {int(groups[s]): (int(s), int(e)) for s, e in zip(starts, ends)}


class _EventRuns:
  """Events sorted by (group, time, item): a group's events before a time are a run.

  Holds per event its catalog index and time rank; groups are categories, or one
  group of all events (``groups`` None).
  """

  def __init__(self, items: np.ndarray, ranks: np.ndarray,
               groups: Optional[np.ndarray] = None):
    keys = (items, ranks) if groups is None else (items, ranks, groups)
    order = np.lexsort(keys)
    self.items = items[order]
    self._ranks = ranks[order]
    if groups is None:
      self._bounds = {None: (0, len(order))}
      return
    self._bounds = _group_bounds(groups[order])

  def earlier(self, group: Optional[int], rank: int) -> Tuple[int, int]:
    """[start, end) of ``group``'s events with a time rank below ``rank``."""
    start, end = self._bounds.get(group, (0, 0))
    return start, start + int(np.searchsorted(self._ranks[start:end], rank))


@dataclasses.dataclass
class _Clicks:
  """All click events (and by category), with the distinct seconds they rank."""
  distinct_times: np.ndarray
  all: _EventRuns
  by_category: Optional[_EventRuns]

  def earlier(self, category: Optional[int], time: int) -> Tuple[np.ndarray, int, int]:
    """(events, start, end): the clicks before ``time`` (of ``category``)."""
    rank = int(np.searchsorted(self.distinct_times, time))
    runs = self.all if category is None else self.by_category
    return (runs.items, *runs.earlier(category, rank))


class _Excluded:
  """Catalog indices a positive's negatives must avoid: touched or already chosen."""

  def __init__(self, catalog_items: np.ndarray, touched: Set[int]):
    self._items = catalog_items
    self._touched = touched
    self._chosen: Set[int] = set()

  def __contains__(self, index: int) -> bool:
    return index in self._chosen or int(self._items[index]) in self._touched

  def __len__(self) -> int:
    return len(self._touched) + len(self._chosen)  # chosen items are untouched

  def add(self, index: int) -> None:
    self._chosen.add(index)

  def mask(self, indices: np.ndarray) -> np.ndarray:
    """Which of ``indices`` are excluded."""
    touched = np.fromiter(self._touched, np.int64, len(self._touched))
    chosen = np.fromiter(self._chosen, np.int64, len(self._chosen))
    return np.isin(self._items[indices], touched) | np.isin(indices, chosen)


def _listed_by_clicks(rng: random.Random, events: np.ndarray, k: int,
                      excluded: _Excluded) -> List[int]:
  """Up to ``k`` distinct items of ``events``, each proportional to its events."""
  candidates, weights = [], []
  # Set lookups per distinct item: cheaper than numpy's isin for the few items of
  # an early or small range, the usual case here.
  distinct, counts = np.unique(events, return_counts=True)
  for index, count in zip(distinct.tolist(), counts.tolist()):
    if index not in excluded:
      candidates.append(index)
      weights.append(count)
  picks = []
  while len(picks) < k and candidates:
    i = rng.choices(range(len(candidates)), weights=weights)[0]
    picks.append(candidates.pop(i))
    weights.pop(i)
    excluded.add(picks[-1])
  return picks


def _drawn_by_clicks(rng: random.Random, events: np.ndarray, start: int, end: int,
                     k: int, excluded: _Excluded) -> List[int]:
  """Up to ``k`` distinct items of ``events[start:end]``, proportional to events.

  Fewer only when fewer candidates are left.
  """
  picks = []
  if end - start > _LISTED_RANGE:
    tries = _TRIES_PER_NEGATIVE * k
    while len(picks) < k and tries:
      tries -= 1
      index = int(events[rng.randrange(start, end)])
      if index not in excluded:
        excluded.add(index)
        picks.append(index)
  if len(picks) < k:
    picks += _listed_by_clicks(rng, events[start:end], k - len(picks), excluded)
  return picks


class NegativeSampler:
  """Draws, per positive, distinct items the user had not touched by then.

  The catalog stays in its numpy arrays (16 bytes an item): as Python lists it
  would take ~5x more.

  Attributes:
    mode: one of `NEGATIVE_SAMPLING`.
    negatives: negatives per positive.
    fallback: distribution -> negatives it filled in for the mode's own (the
      distributions after the mode's first; empty for uniform).
  """

  def __init__(self, mode: str, items: np.ndarray, item_cats: np.ndarray,
               negatives: int, seed: int, clicks: Optional[ClickLog] = None):
    self.mode = mode
    self._items = items
    self._cats = item_cats
    self.negatives = negatives
    self._seed = seed
    self._clicks = None if clicks is None else clicks.build(items)
    self.fallback: Dict[str, int] = {source: 0 for source in _SOURCES[mode][1:]}

  def rng(self, user: int) -> random.Random:
    # Seeded by (seed, user) only: a user's draws do not depend on other users.
    return random.Random(f"{self._seed}/{user}")

  @property
  def catalog_size(self) -> int:
    return len(self._items)

  def available(self, touched: Set[int]) -> int:
    """Catalog items outside ``touched`` (touched items are all in the catalog)."""
    return len(self._items) - len(touched)

  def draw(self, rng: random.Random, touched: Set[int], category: int,
           time: int) -> List[Tuple[int, int]]:
    """``negatives`` distinct (item, category) pairs outside ``touched``.

    ``category`` and ``time`` are the positive's. The caller checks that enough
    catalog items are available.
    """
    excluded = _Excluded(self._items, touched)
    negatives = []
    for source in _SOURCES[self.mode]:
      missing = self.negatives - len(negatives)
      if not missing:
        break
      picks = self._draw_from(source, rng, missing, excluded, category, time)
      if source in self.fallback:
        self.fallback[source] += len(picks)
      negatives += [(int(self._items[i]),
                     category if source == CATEGORY else int(self._cats[i]))
                    for i in picks]
    return negatives

  def _draw_from(self, source: str, rng: random.Random, k: int,
                 excluded: _Excluded, category: int, time: int) -> List[int]:
    """Up to ``k`` catalog indices from one distribution."""
    if source == UNIFORM:
      return self._uniform(rng, k, excluded)
    events, start, end = self._clicks.earlier(
        category if source == CATEGORY else None, time)
    return _drawn_by_clicks(rng, events, start, end, k, excluded)

  def _uniform(self, rng: random.Random, k: int, excluded: _Excluded) -> List[int]:
    """``k`` (or all left, if fewer) distinct catalog indices, uniformly."""
    n = len(self._items)
    available = n - len(excluded)
    if available < 2 * k or 4 * available < n:
      # Rejection would be slow; here the catalog is small (n < 2 * k + excluded,
      # or n < 4/3 * excluded), so listing the candidates is cheap.
      candidates = np.flatnonzero(~excluded.mask(np.arange(n)))
      picks = rng.sample(candidates.tolist(), min(k, len(candidates)))
      for i in picks:
        excluded.add(i)
    else:
      picks = []
      while len(picks) < k:
        i = rng.randrange(n)
        if i not in excluded:
          excluded.add(i)
          picks.append(i)
    return picks
