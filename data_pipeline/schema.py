"""The impression-log schema: one ``tf.train.Example`` per shown item.

This is a public contract; readers, converters, models and users rely on these names.
All ids are int64 and 0 is padding, never a real id (see `data_pipeline.ids`).

=====================  =====  ===============================================
feature                dtype  length
=====================  =====  ===============================================
label                  int64  1 (1 = clicked)
user_id                int64  1
time                   int64  1 (unix seconds of the impression)
item_id                int64  1
item_cats              int64  C (0-padded)
query_id               int64  1 (0 = no query, e.g. recommendation data)
query_cats             int64  C
click_ids              int64  n (the user's earlier clicks, oldest first)
click_times            int64  n
click_cats             int64  n * C (C per click, flattened)
query_hist_ids/_times  int64  m, m        (earlier queries, oldest first)
query_hist_cats        int64  m * C
seed_ids/_times/_cats  int64  s, s, s * C (optional category-filtered clicks)
dense/<name>           float  1
cat/<name>             int64  1
=====================  =====  ===============================================

Item categories and query categories share ONE category id space: the query-item
graph intersects them. Each converted dataset has a ``schema.json`` beside its shards
(`DatasetSchema`).
"""

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

from data_pipeline import paths as paths_lib
from data_pipeline.tf_env import tf

SCHEMA_VERSION = 1
SCHEMA_FILE = "schema.json"

LABEL = "label"
USER_ID = "user_id"
TIME = "time"
ITEM_ID = "item_id"
ITEM_CATS = "item_cats"
QUERY_ID = "query_id"
QUERY_CATS = "query_cats"
DENSE_PREFIX = "dense/"
CAT_PREFIX = "cat/"

SCALAR_FEATURES = (LABEL, USER_ID, TIME, ITEM_ID, QUERY_ID)


@dataclasses.dataclass(frozen=True)
class SequenceFeatures:
  """Names of one history sequence's three features (ids, times, flattened cats)."""
  name: str
  ids: str
  times: str
  cats: str


CLICKS = SequenceFeatures("clicks", "click_ids", "click_times", "click_cats")
QUERIES = SequenceFeatures("queries", "query_hist_ids", "query_hist_times",
                           "query_hist_cats")
SEEDS = SequenceFeatures("seeds", "seed_ids", "seed_times", "seed_cats")
SEQUENCES = (CLICKS, QUERIES, SEEDS)


@dataclasses.dataclass(frozen=True)
class Event:
  """One history entry: a clicked item, a past query or a seed item."""
  id: int
  time: int
  cats: Sequence[int] = ()


@dataclasses.dataclass
class Impression:
  """One shown item with everything the user had done before it was shown.

  Histories are oldest first and every entry is strictly earlier than ``time``.
  ``seeds`` is None when the source has no seeds sequence.
  """
  label: int
  user_id: int
  time: int
  item_id: int
  item_cats: Sequence[int] = ()
  query_id: int = 0
  query_cats: Sequence[int] = ()
  clicks: Sequence[Event] = ()
  queries: Sequence[Event] = ()
  seeds: Optional[Sequence[Event]] = None
  dense: Mapping[str, float] = dataclasses.field(default_factory=dict)
  categorical: Mapping[str, int] = dataclasses.field(default_factory=dict)


def _int64(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _padded_cats(cats: Sequence[int], num_cats: int, what: str) -> List[int]:
  if len(cats) > num_cats:
    raise ValueError(
        f"{what} has {len(cats)} categories, more than num_cats={num_cats}")
  return list(cats) + [0] * (num_cats - len(cats))


def _events_features(seq: SequenceFeatures, events: Sequence[Event], num_cats: int,
                     feature: Dict[str, tf.train.Feature]) -> None:
  cats: List[int] = []
  for event in events:
    cats.extend(_padded_cats(event.cats, num_cats, f"a {seq.name} entry"))
  feature[seq.ids] = _int64([e.id for e in events])
  feature[seq.times] = _int64([e.time for e in events])
  feature[seq.cats] = _int64(cats)


def to_example(imp: Impression, num_cats: int) -> tf.train.Example:
  """Encodes an impression as a ``tf.train.Example`` of this schema.

  Raises:
    ValueError: more than ``num_cats`` categories on the item, query or an event.
  """
  feature = {
      LABEL: _int64([imp.label]),
      USER_ID: _int64([imp.user_id]),
      TIME: _int64([imp.time]),
      ITEM_ID: _int64([imp.item_id]),
      ITEM_CATS: _int64(_padded_cats(imp.item_cats, num_cats, "the item")),
      QUERY_ID: _int64([imp.query_id]),
      QUERY_CATS: _int64(_padded_cats(imp.query_cats, num_cats, "the query")),
  }
  _events_features(CLICKS, imp.clicks, num_cats, feature)
  _events_features(QUERIES, imp.queries, num_cats, feature)
  if imp.seeds is not None:
    _events_features(SEEDS, imp.seeds, num_cats, feature)
  for name, value in imp.dense.items():
    feature[DENSE_PREFIX + name] = tf.train.Feature(
        float_list=tf.train.FloatList(value=[value]))
  for name, value in imp.categorical.items():
    feature[CAT_PREFIX + name] = _int64([value])
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _ints(feature: tf.train.Feature) -> List[int]:
  return list(feature.int64_list.value)


def from_example(example: tf.train.Example, num_cats: int) -> Impression:
  """Decodes a record of this schema: the inverse of `to_example`."""
  f = example.features.feature

  def events(seq: SequenceFeatures) -> List[Event]:
    if seq.ids not in f:
      return []
    cats = _ints(f[seq.cats])
    rows = [tuple(c for c in cats[k:k + num_cats] if c)
            for k in range(0, len(cats), num_cats)]
    return [Event(i, t, c) for i, t, c in
            zip(_ints(f[seq.ids]), _ints(f[seq.times]), rows)]

  def scalar(name: str) -> int:
    return _ints(f[name])[0] if name in f else 0

  def cats_of(name: str) -> tuple:
    return tuple(c for c in _ints(f[name]) if c) if name in f else ()

  dense = {k[len(DENSE_PREFIX):]: v.float_list.value[0]
           for k, v in f.items() if k.startswith(DENSE_PREFIX)}
  categorical = {k[len(CAT_PREFIX):]: v.int64_list.value[0]
                 for k, v in f.items() if k.startswith(CAT_PREFIX)}
  return Impression(
      label=scalar(LABEL), user_id=scalar(USER_ID), time=scalar(TIME),
      item_id=scalar(ITEM_ID), item_cats=cats_of(ITEM_CATS),
      query_id=scalar(QUERY_ID), query_cats=cats_of(QUERY_CATS),
      clicks=events(CLICKS), queries=events(QUERIES),
      seeds=events(SEEDS) if SEEDS.ids in f else None,
      dense=dense, categorical=categorical)


@dataclasses.dataclass
class DatasetSchema:
  """What ``schema.json`` beside a converted dataset's shards says.

  Attributes:
    num_cats: C, categories per item, query and history entry (0-padded).
    dense_features: names of the ``dense/<name>`` features.
    cat_features: names of the ``cat/<name>`` features.
    has_queries: any impression has a query or a query history.
    has_seeds: impressions carry a seeds sequence.
    splits: split name -> {"files": [...], "impressions": n, "positives": n}.
    vocab: distinct ids seen, by kind: "users", "items" (targets and history),
      "queries" (current and history), "categories" (one shared space), and the
      largest id of each kind under "max_<kind>".
    max_lengths: longest history seen, by sequence name.
    source: where the data came from (converter and input).
    version: schema version.
  """
  num_cats: int
  dense_features: List[str] = dataclasses.field(default_factory=list)
  cat_features: List[str] = dataclasses.field(default_factory=list)
  has_queries: bool = False
  has_seeds: bool = False
  splits: Dict[str, Dict] = dataclasses.field(default_factory=dict)
  vocab: Dict[str, int] = dataclasses.field(default_factory=dict)
  max_lengths: Dict[str, int] = dataclasses.field(default_factory=dict)
  source: str = ""
  version: int = SCHEMA_VERSION

  def save(self, directory: str) -> str:
    path = os.path.join(directory, SCHEMA_FILE)
    paths_lib.write_text(path, json.dumps(dataclasses.asdict(self), indent=2,
                                          sort_keys=True) + "\n")
    return path

  @classmethod
  def load(cls, directory_or_file: str) -> "DatasetSchema":
    path = directory_or_file
    if tf.io.gfile.isdir(path):
      path = os.path.join(path, SCHEMA_FILE)
    try:
      raw = json.loads(paths_lib.read_text(path))
    except FileNotFoundError:
      raise FileNotFoundError(
          f"{path}: no {SCHEMA_FILE}; every dataset needs one beside its shards "
          "(made by `egin-tf convert` or `egin-tf generate`)") from None
    if raw.get("version") != SCHEMA_VERSION:
      raise ValueError(f"{path}: schema version {raw.get('version')!r} is not "
                       f"{SCHEMA_VERSION}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
      raise ValueError(f"{path}: unknown schema keys {unknown}")
    return cls(**raw)


def schema_for_files(files: Sequence[str]) -> DatasetSchema:
  """Loads the ``schema.json`` beside the given shards (one schema for all)."""
  if not files:
    raise FileNotFoundError("no files given")
  dirs = sorted({os.path.dirname(f) for f in files})
  schemas = [DatasetSchema.load(d or ".") for d in dirs]
  first = schemas[0]
  for d, other in zip(dirs[1:], schemas[1:]):
    if (other.num_cats, other.dense_features, other.cat_features) != (
        first.num_cats, first.dense_features, first.cat_features):
      raise ValueError(f"{d}/{SCHEMA_FILE} differs from {dirs[0]}/{SCHEMA_FILE} "
                       "in num_cats or feature names; the pattern mixes datasets")
  return first


class SchemaStats:
  """Accumulates what `DatasetSchema` reports while impressions are written."""

  def __init__(self):
    self._users = set()
    self._items = set()
    self._queries = set()
    self._cats = set()
    self._dense = set()
    self._cat_features = set()
    self.has_queries = False
    self.has_seeds = False
    self.max_lengths = {seq.name: 0 for seq in SEQUENCES}
    self.splits: Dict[str, Dict] = {}

  def add(self, split: str, imp: Impression) -> None:
    stats = self.splits.setdefault(split, {"impressions": 0, "positives": 0})
    stats["impressions"] += 1
    stats["positives"] += int(imp.label == 1)
    self._users.add(imp.user_id)
    self._items.add(imp.item_id)
    self._cats.update(imp.item_cats)
    if imp.query_id:
      self._queries.add(imp.query_id)
      self._cats.update(imp.query_cats)
      self.has_queries = True
    for seq, events, ids in ((CLICKS, imp.clicks, self._items),
                             (QUERIES, imp.queries, self._queries),
                             (SEEDS, imp.seeds or (), self._items)):
      self.max_lengths[seq.name] = max(self.max_lengths[seq.name], len(events))
      for e in events:
        ids.add(e.id)
        self._cats.update(e.cats)
    if imp.queries:
      self.has_queries = True
    if imp.seeds is not None:
      self.has_seeds = True
    self._dense.update(imp.dense)
    self._cat_features.update(imp.categorical)

  def schema(self, num_cats: int, files: Dict[str, List[str]],
             source: str) -> DatasetSchema:
    self._cats.discard(0)
    vocab = {}
    for kind, ids in (("users", self._users), ("items", self._items),
                      ("queries", self._queries), ("categories", self._cats)):
      vocab[kind] = len(ids)
      vocab["max_" + kind] = int(max(ids)) if ids else 0
    splits = {}
    for name, stats in sorted(self.splits.items()):
      splits[name] = dict(stats, files=sorted(files.get(name, [])))
    return DatasetSchema(
        num_cats=num_cats,
        dense_features=sorted(self._dense),
        cat_features=sorted(self._cat_features),
        has_queries=self.has_queries,
        has_seeds=self.has_seeds,
        splits=splits,
        vocab=vocab,
        max_lengths=dict(self.max_lengths),
        source=source)
