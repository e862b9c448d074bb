"""How good is a trained graph? Recall@k of held-out edges against all items.

The held-out edges are the i2i and q2i edges of the test period: `QueryItemGraph`
(the model's own edge rules: window, time spans, categories) is run over the test
split's histories, and an edge is kept when both of its events happen at or after
the test period's start and its (anchor, positive) pair is not an edge of the
training data (so a memorized pair does not count). Each distinct (user, anchor,
positive) counts once.

For each edge, every item seen in the training or test data is a candidate, ranked
by cosine with the anchor (what SimExtract reads), the anchor itself excluded; a
hit is the positive among the top k. Ties count against the edge (an untrained
zero vector never hits by accident). Rows read the table their user's fold reads
(`egin_tf.layers.out_of_fold`), as the CTR features do.

Why not `tfrs.metrics.FactorizedTopK`: it ranks against one candidate set with no
way to exclude each query's own id, and i2i anchors are items themselves (the
anchor's cosine 1 would take one of the k slots); this brute force over a small
table is as cheap and exact.
"""

from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.graph_edges import EdgeList
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
from egin_tf.layers.query_item_graph import QueryItemGraph

EDGE_KINDS = ("i2i", "q2i")
_CHUNK = 512


class EdgeSet(NamedTuple):
  """Distinct edges of one kind: int64 [n] anchor ids, positive ids, user ids."""
  anchors: np.ndarray
  positives: np.ndarray
  users: np.ndarray


def _edge_rows(batch: Dict[str, tf.Tensor], edges: EdgeList, src_times, dst_times,
               since: Optional[int]) -> np.ndarray:
  """[n, 3] (user, anchor, positive) of the edges, both events >= since."""
  rows = edges.rows.numpy()
  found = np.stack([batch[schema_lib.USER_ID].numpy()[rows], edges.src.numpy(),
                    edges.dst.numpy()], axis=1)
  if since is None:
    return found
  src_t = src_times.numpy()[rows, edges.src_pos.numpy()]
  dst_t = dst_times.numpy()[rows, edges.dst_pos.numpy()]
  return found[(src_t >= since) & (dst_t >= since)]


def collect_edges(pattern: str, graph: QueryItemGraph,
                  lengths: reader.SequenceLengths,
                  since: Optional[int] = None,
                  batch_size: int = 1024) -> Dict[str, np.ndarray]:
  """Distinct (user, anchor, positive) rows [n, 3] per edge kind of a dataset."""
  schema = schema_lib.schema_for_files(reader.match_files(pattern))
  dataset = reader.make_dataset(
      pattern, batch_size, max_clicks=lengths.max_clicks,
      max_queries=lengths.max_queries, max_seeds=lengths.max_seeds,
      schema=schema, shuffle=False, num_epochs=1)
  found: Dict[str, List[np.ndarray]] = {kind: [] for kind in EDGE_KINDS}
  for batch in dataset:
    edges = graph(batch, training=False)
    click_t = batch[schema_lib.CLICKS.times]
    query_t = batch[schema_lib.QUERIES.times]
    found["i2i"].append(_edge_rows(batch, edges["i2i"], click_t, click_t, since))
    found["q2i"].append(_edge_rows(batch, edges["q2i"], query_t, click_t, since))
  return {kind: np.unique(np.concatenate(rows), axis=0) if rows else
          np.zeros([0, 3], np.int64) for kind, rows in found.items()}


def held_out_edges(train_pattern: str, test_pattern: str, graph: QueryItemGraph,
                   lengths: reader.SequenceLengths) -> Dict[str, EdgeSet]:
  """The test period's edges whose pair is no edge of the training data."""
  since = int(_times(test_pattern).min())
  train = collect_edges(train_pattern, graph, lengths)
  test = collect_edges(test_pattern, graph, lengths, since=since)
  out = {}
  for kind in EDGE_KINDS:
    known = {(a, p) for a, p in train[kind][:, 1:].tolist()}
    rows = np.array([r for r in test[kind].tolist() if (r[1], r[2]) not in known],
                    np.int64).reshape(-1, 3)
    out[kind] = EdgeSet(anchors=rows[:, 1], positives=rows[:, 2], users=rows[:, 0])
  return out


def _times(pattern: str) -> np.ndarray:
  files = reader.match_files(pattern)
  dataset = tf.data.TFRecordDataset(files).batch(4096).map(
      lambda raw: tf.io.parse_example(
          raw, {schema_lib.TIME: tf.io.FixedLenFeature([1], tf.int64)}))
  return np.concatenate([b[schema_lib.TIME].numpy()[:, 0] for b in dataset])


Lookup = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _normalized(lookup: Lookup, ids: np.ndarray, folds: np.ndarray) -> np.ndarray:
  vectors = lookup(tf.constant(ids, tf.int64), tf.constant(folds, tf.int32))
  return tf.math.l2_normalize(tf.cast(vectors, tf.float32), axis=-1).numpy()


def recall_at_k(anchor_lookup: Lookup, item_lookup: Lookup, edges: EdgeSet,
                candidates: np.ndarray, k: int = 10, num_folds: int = 1,
                exclude_anchor: bool = True) -> float:
  """Share of edges whose positive ranks in the top ``k`` candidate items."""
  if edges.anchors.size == 0:
    return float("nan")
  folds = user_folds(tf.constant(edges.users), num_folds).numpy()
  hits = 0
  for fold in range(num_folds):
    chosen = folds == fold
    if not chosen.any():
      continue
    table = _normalized(item_lookup, candidates,
                        np.full(candidates.size, fold, np.int32))
    for start in range(0, int(chosen.sum()), _CHUNK):
      index = np.nonzero(chosen)[0][start:start + _CHUNK]
      fold_ids = np.full(index.size, fold, np.int32)
      a = _normalized(anchor_lookup, edges.anchors[index], fold_ids)
      p = _normalized(item_lookup, edges.positives[index], fold_ids)
      scores = a @ table.T  # [n, candidates]
      positive = np.sum(a * p, axis=1, keepdims=True)
      # The positive itself is a candidate (its score equals `positive`).
      rank = np.sum(scores >= positive - 1e-6, axis=1) - 1
      if exclude_anchor:
        own = np.sum(a * a, axis=1) >= positive[:, 0] - 1e-6
        rank -= (own & np.isin(edges.anchors[index], candidates)).astype(int)
      hits += int(np.sum(rank < k))
  return hits / edges.anchors.size


def graph_lookups(model) -> Dict[str, Lookup]:
  """Fold-aware item and query lookups of a model's graph (or id) tables."""
  def wrap(table):
    if isinstance(table, OutOfFoldEmbedding):
      return table
    return lambda ids, folds: table(ids)

  tables = model.embedding_tables()
  items = getattr(model, "graph_items", None)
  queries = getattr(model, "graph_queries", None)
  return {"items": wrap(tables["items"] if items is None else items),
          "queries": wrap(tables["queries"] if queries is None else queries)}


def graph_recall(model, edges: Dict[str, EdgeSet], candidates: np.ndarray,
                 k: int = 10) -> Dict[str, float]:
  """recall@k of held-out i2i and q2i edges with a model's tables."""
  lookups = graph_lookups(model)
  num_folds = getattr(getattr(model, "graph_items", None), "num_folds", 1)
  out = {}
  for kind in EDGE_KINDS:
    anchor = lookups["items"] if kind == "i2i" else lookups["queries"]
    out[f"{kind}_recall@{k}"] = recall_at_k(
        anchor, lookups["items"], edges[kind], candidates, k, num_folds,
        exclude_anchor=kind == "i2i")
    out[f"{kind}_edges"] = int(edges[kind].anchors.size)
  return out
