"""The learned item and query embeddings, with the ids they belong to.

Tables are indexed by hash bucket, not by id, so the ids have to come from data:
`seen_ids` scans a dataset once for every distinct item and query id (targets and
histories) with its categories, and caches the result in the model directory.
`nearest` ranks items and queries by cosine similarity to an item, which is what
``egin-tf neighbors`` prints; `write_tsv` writes ``id, categories, vector`` rows
(into SavedModel exports, beside the model).
"""

import os
from typing import Dict, List, NamedTuple, Optional

import numpy as np

from data_pipeline.data_split import DataSplit
from data_pipeline import schema as schema_lib
from data_pipeline import stream
from data_pipeline.text_input import ProgressCallback
from data_pipeline import paths
from data_pipeline.tf_env import tf

SEEN_IDS_FILE = "seen_ids.npz"


class IdTable(NamedTuple):
  """Distinct ids of one kind with the categories first seen with them."""
  ids: np.ndarray   # int64 [n], sorted
  cats: np.ndarray  # int64 [n, C]


def _distinct(ids: np.ndarray, cats: np.ndarray) -> IdTable:
  ids = ids.reshape(-1)
  cats = cats.reshape(-1, cats.shape[-1])
  keep = ids > 0
  ids, cats = ids[keep], cats[keep]
  unique, first = np.unique(ids, return_index=True)
  return IdTable(unique, cats[first])


def _merge(a: Optional[IdTable], b: IdTable) -> IdTable:
  if a is None:
    return b
  return _distinct(np.concatenate([a.ids, b.ids]), np.concatenate([a.cats, b.cats]))


def seen_ids(data: DataSplit, cache_dir: Optional[str] = None, batch_size: int = 4096,
             progress: Optional[ProgressCallback] = None) -> Dict[str, IdTable]:
  """Every distinct item and query id of a split, cached in ``cache_dir``.

  ``progress(count, total, share)`` (`text_input.ProgressCallback`) gets the
  records scanned after every batch, with the total from ``schema.json``'s split
  counts (None if it does not list the files); the last call is (N, N, 1.0). A
  cached result reads no records and reports nothing.
  """
  cache = os.path.join(cache_dir, SEEN_IDS_FILE) if cache_dir else None
  if cache and tf.io.gfile.exists(cache):
    saved = paths.load_npz(cache)
    return {kind: IdTable(saved[f"{kind}_ids"], saved[f"{kind}_cats"])
            for kind in ("items", "queries")}
  result = _scan_ids(data, batch_size, progress)
  if cache:
    paths.save_npz(cache, **{f"{k}_ids": t.ids for k, t in result.items()},
                   **{f"{k}_cats": t.cats for k, t in result.items()})
  return result


def _scan_ids(data: DataSplit, batch_size: int,
              progress: Optional[ProgressCallback]) -> Dict[str, IdTable]:
  """One pass over the dataset collecting `seen_ids`' tables."""
  # kind -> (target id, target cats, history sequence) in the reader's batch.
  sources = {
      "items": (schema_lib.ITEM_ID, schema_lib.ITEM_CATS, schema_lib.CLICKS),
      "queries": (schema_lib.QUERY_ID, schema_lib.QUERY_CATS, schema_lib.QUERIES),
  }
  tables: Dict[str, Optional[IdTable]] = {kind: None for kind in sources}
  counter = stream.RecordProgress(progress, stream.records_in_files(list(data.files)))
  num_cats = 1
  for batch in data.dataset(batch_size).as_numpy_iterator():
    for kind, (ids, cats, seq) in sources.items():
      num_cats = batch[cats].shape[-1]
      found = _distinct(
          np.concatenate([batch[ids], batch[seq.ids].reshape(-1)]),
          np.concatenate([batch[cats], batch[seq.cats].reshape(-1, num_cats)]))
      tables[kind] = _merge(tables[kind], found)
    counter.add(len(batch[schema_lib.LABEL]))
  counter.end()
  empty = IdTable(np.zeros([0], np.int64), np.zeros([0, num_cats], np.int64))
  return {kind: empty if t is None else t for kind, t in tables.items()}


def embed(table: tf.keras.layers.Layer, ids: np.ndarray,
          batch_size: int = 65536) -> np.ndarray:
  """Vectors of ``ids`` from an id-embedding layer, float32 [n, d]."""
  parts = [table(tf.constant(ids[i:i + batch_size], tf.int64)).numpy()
           for i in range(0, max(ids.size, 1), batch_size)]
  return np.concatenate(parts, axis=0)[:ids.size]


def _normalized(x: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


class Neighbor(NamedTuple):
  id: int
  similarity: float
  cats: List[int]


def nearest(query_vector: np.ndarray, candidates: IdTable, vectors: np.ndarray,
            k: int = 10, exclude: Optional[int] = None) -> List[Neighbor]:
  """The k candidates most cosine-similar to ``query_vector``."""
  if candidates.ids.size == 0:
    return []
  sims = _normalized(vectors) @ _normalized(query_vector[None, :])[0]
  if exclude is not None:
    sims = np.where(candidates.ids == exclude, -np.inf, sims)
  order = np.argsort(-sims, kind="stable")[:k]
  return [Neighbor(int(candidates.ids[i]), float(sims[i]),
                   [int(c) for c in candidates.cats[i] if c])
          for i in order if np.isfinite(sims[i])]


def write_tsv(path: str, table: IdTable, vectors: np.ndarray) -> None:
  """Rows of ``id<TAB>cat,cat<TAB>v1 v2 ...`` (one per id)."""
  with tf.io.gfile.GFile(path, "w") as f:
    for i in range(table.ids.size):
      cats = ",".join(str(int(c)) for c in table.cats[i] if c)
      vec = " ".join(f"{v:.6g}" for v in vectors[i])
      f.write(f"{int(table.ids[i])}\t{cats}\t{vec}\n")
