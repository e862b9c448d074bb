"""Turns Taobao UserBehavior logs into impression JSONL (paper section 4.1, item-only).

Input: ``user_id,item_id,category_id,behavior_type,timestamp`` rows, no header,
behavior in pv/cart/fav/buy (``shared/data/taobao_userbehavior_head/PROVENANCE.txt``).

Impressions, as in the paper (earlier clicks predict the next click):
  * A user's clicks are their ``pv`` rows, sorted by time; rows of the same second
    keep their file order.
  * Every click at a time later than the user's first click is a positive
    impression. Clicks in the same second as the user's first click are not: they
    have no earlier click to learn from.
  * Its ``clicks`` history is the user's clicks strictly before its second (clicks
    of the same second are not history), the most recent ``max_hist``, oldest first.
  * Each positive gets one negative with the same user, time and history: an item
    drawn uniformly, with ``seed``, from the catalog of distinct items in the file,
    that the user never touched (no pv, cart, fav or buy row), with its category.
Taobao has no queries, so no query fields are written. Raw ids are written as they
are; ``egin-tf convert --format jsonl`` hashes them.

Usage:
  python -m experiments.taobao_to_jsonl --output runs/taobao_head/impressions.jsonl
  egin-tf convert --format jsonl --input runs/taobao_head/impressions.jsonl \
      --out runs/taobao_head/data
"""

import bisect
import dataclasses
import gzip
import json
import os
import random
from typing import Any, Dict, Iterable, Iterator, List, Set, TextIO

from absl import app
from absl import flags

from data_pipeline.bad_input import BadRecordError, BadRecordPolicy

# No experiments.common import here: benchmarks/converter_memory.py loads this file
# on its own (by path, from any folder), so it needs nothing but data_pipeline.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_INPUT = os.path.join(_REPO_ROOT, "..", "shared", "data",
                             "taobao_userbehavior_head", "UserBehavior_head.csv")
DEFAULT_OUTPUT = os.path.join(_REPO_ROOT, "runs", "taobao_head", "impressions.jsonl")
BEHAVIORS = ("pv", "cart", "fav", "buy")
CLICK = "pv"

_FLAGS = flags.FLAGS


def define_flags() -> None:
  # Only when run as a script: importing this module (tests, other experiments)
  # must not claim flag names such as --input in absl's process-wide registry.
  flags.DEFINE_string("input", DEFAULT_INPUT,
                      "Taobao UserBehavior CSV (default: ../shared/data/taobao_"
                      "userbehavior_head/UserBehavior_head.csv from the repo root).")
  flags.DEFINE_string("output", DEFAULT_OUTPUT,
                      "Impression JSONL to write; a name ending in .gz is gzipped.")
  flags.DEFINE_integer("seed", 0, "Seed of the negative item sampling.")
  flags.DEFINE_integer("max_hist", 200, "Most recent clicks kept per history "
                       "(the paper truncates at 200).")
  flags.DEFINE_enum("on_bad", "stop", ["stop", "skip"],
                    "Bad CSV row: stop with path:line: reason, or skip and count.")


@dataclasses.dataclass(frozen=True)
class Click:
  item: int
  category: int
  time: int


@dataclasses.dataclass
class TaobaoLog:
  """The parts of a UserBehavior file that impressions are built from.

  Attributes:
    clicks: user -> pv clicks sorted by time, same-second clicks in file order.
    touched: user -> items with any behavior of that user (never negatives for them).
    item_category: item -> its category (the first seen, if a row disagrees).
    catalog: distinct items of all rows, in first-seen order.
    rows: rows read (bad rows included).
  """
  clicks: Dict[int, List[Click]]
  touched: Dict[int, Set[int]]
  item_category: Dict[int, int]
  catalog: List[int]
  rows: int


@dataclasses.dataclass
class Counts:
  users: int = 0
  positives: int = 0
  negatives: int = 0
  lines: int = 0


def _parse_row(path: str, line: int, text: str):
  fields = text.rstrip("\r\n").split(",")
  if len(fields) != 5:
    raise BadRecordError(path, line, f"expected 5 comma-separated fields "
                         f"(user,item,category,behavior,timestamp), got {len(fields)}",
                         "wrong_field_count")
  user, item, category, behavior, timestamp = fields
  if behavior not in BEHAVIORS:
    raise BadRecordError(path, line, f"behavior {behavior!r} is not one of "
                         f"{', '.join(BEHAVIORS)}", "bad_behavior")
  values = []
  for name, value in (("user_id", user), ("item_id", item),
                      ("category_id", category), ("timestamp", timestamp)):
    if not value.isascii() or not value.isdigit():
      raise BadRecordError(path, line, f"{name} {value!r} is not a non-negative "
                           "integer", "wrong_type")
    values.append(int(value))
  return values[0], values[1], values[2], behavior, values[3]


def read_user_behavior(path: str, policy: BadRecordPolicy) -> TaobaoLog:
  """Reads a UserBehavior CSV; bad rows go to ``policy`` (stop or skip)."""
  clicks: Dict[int, List[Click]] = {}
  touched: Dict[int, Set[int]] = {}
  item_category: Dict[int, int] = {}
  rows = 0
  with open(path, encoding="utf-8") as f:
    for rows, text in enumerate(f, 1):
      try:
        user, item, category, behavior, timestamp = _parse_row(path, rows, text)
      except BadRecordError as e:
        policy.handle(e)
        continue
      item_category.setdefault(item, category)
      touched.setdefault(user, set()).add(item)
      if behavior == CLICK:
        clicks.setdefault(user, []).append(Click(item, category, timestamp))
  for user_clicks in clicks.values():
    user_clicks.sort(key=lambda c: c.time)  # stable: same second keeps file order
  return TaobaoLog(clicks=clicks, touched=touched, item_category=item_category,
                   catalog=list(item_category), rows=rows)


def sample_negative(rng: random.Random, catalog: List[int], excluded: Set[int]
                    ) -> int:
  """Draws a catalog item not in ``excluded``, uniformly."""
  if len(excluded) >= len(catalog) and excluded.issuperset(catalog):
    raise ValueError("the user touched every item of the catalog; no negative left")
  while True:
    item = rng.choice(catalog)
    if item not in excluded:
      return item


def impressions(log: TaobaoLog, max_hist: int, seed: int
                ) -> Iterator[Dict[str, Any]]:
  """Yields impression JSONL records: each positive, then its sampled negative.

  Users in increasing id order, each user's impressions in time order.
  """
  if max_hist < 0:
    raise ValueError(f"max_hist must be >= 0, got {max_hist}")
  rng = random.Random(seed)
  for user in sorted(log.clicks):
    clicks = log.clicks[user]
    times = [c.time for c in clicks]
    for click in clicks:
      if click.time == times[0]:
        continue  # the user's first second: nothing earlier to predict from
      end = bisect.bisect_left(times, click.time)  # first click of this second
      history = [[c.item, c.time, [c.category]]
                 for c in clicks[max(0, end - max_hist):end]]
      positive = {"user": user, "time": click.time, "item": click.item,
                  "item_cats": [click.category], "label": 1, "clicks": history}
      yield positive
      item = sample_negative(rng, log.catalog, log.touched[user])
      yield dict(positive, item=item, item_cats=[log.item_category[item]], label=0)


def _open_text_for_writing(path: str) -> TextIO:
  if path.endswith(".gz"):
    return gzip.open(path, "wt", encoding="utf-8", compresslevel=6)
  return open(path, "w", encoding="utf-8")


def write_jsonl(records: Iterable[Dict[str, Any]], path: str) -> Counts:
  """Writes records one per line, atomically (a temp file renamed on success)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp_path = f"{path}.tmp-{os.getpid()}"
  counts = Counts()
  users = set()
  try:
    with _open_text_for_writing(tmp_path) as f:
      for record in records:
        f.write(json.dumps(record, separators=(",", ":")))
        f.write("\n")
        counts.lines += 1
        users.add(record["user"])
        if record["label"]:
          counts.positives += 1
        else:
          counts.negatives += 1
    os.replace(tmp_path, path)
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
  counts.users = len(users)
  return counts


def convert(input_path: str, output_path: str, max_hist: int, seed: int,
            on_bad: str = "stop") -> Counts:
  """UserBehavior CSV -> impression JSONL; returns what was written."""
  policy = BadRecordPolicy(on_bad)
  log = read_user_behavior(input_path, policy)
  counts = write_jsonl(impressions(log, max_hist, seed), output_path)
  if policy.num_skipped:
    print(f"{input_path}: {policy.summary()}")
  return counts


def main(argv):
  del argv  # unused
  counts = convert(_FLAGS.input, _FLAGS.output, _FLAGS.max_hist, _FLAGS.seed,
                   _FLAGS.on_bad)
  print(f"{_FLAGS.output}: {counts.users} users with impressions, "
        f"{counts.positives} positives, {counts.negatives} negatives, "
        f"{counts.lines} lines")


if __name__ == "__main__":
  define_flags()
  app.run(main)
