"""EGES step 2: the weighted directed item graph of click sessions, and its nodes'
side information.

Within a session, click s_i gets an edge to each of the next ``window`` clicks
s_{i+1}, ..., s_{i+window}; the weight of u -> v is the number of such (u, v)
occurrences. Repeated clicks on one item (u -> u) make no edge. Nodes are the items
with at least one edge.
"""

import dataclasses
from typing import Dict, Sequence, Tuple

import numpy as np

from data_pipeline.arg_checks import check_int


@dataclasses.dataclass(frozen=True)
class ItemGraph:
  """A weighted directed item graph in CSR form.

  Attributes:
    ids: int64 [n], the node ids, sorted; node index i is item ``ids[i]``.
    indptr: int64 [n + 1]; node i's out-edges are ``indptr[i]:indptr[i + 1]``.
    neighbors: int64 [E], destination node index of each edge (sorted per node).
    weights: float64 [E], edge weights (> 0).
  """
  ids: np.ndarray
  indptr: np.ndarray
  neighbors: np.ndarray
  weights: np.ndarray

  @property
  def num_nodes(self) -> int:
    return int(self.ids.size)

  def edges(self) -> Dict[Tuple[int, int], float]:
    """{(source id, destination id): weight}, for inspection."""
    sources = np.repeat(self.ids, np.diff(self.indptr))
    return {(int(s), int(self.ids[d])): float(w)
            for s, d, w in zip(sources, self.neighbors, self.weights)}


def _session_pairs(items: np.ndarray, session: np.ndarray, window: int
                   ) -> np.ndarray:
  """(source, destination) ids of every edge occurrence: int64 [P, 2]."""
  pairs = []
  for offset in range(1, window + 1):
    src, dst = items[:-offset], items[offset:]
    keep = (session[:-offset] == session[offset:]) & (src != dst)
    keep &= (src > 0) & (dst > 0)
    pairs.append(np.stack([src[keep], dst[keep]], axis=1))
  return np.concatenate(pairs) if pairs else np.zeros([0, 2], np.int64)


def graph_from_sessions(items: np.ndarray, session: np.ndarray,
                        window: int = 1) -> ItemGraph:
  """The item graph of flat sessions (see `Sessions` and the module docstring)."""
  check_int("graph_window", window, owner="EgesPretrainConfig")
  pairs = _session_pairs(np.asarray(items, np.int64),
                         np.asarray(session, np.int64), window)
  edges, counts = np.unique(pairs, axis=0, return_counts=True)
  ids = np.unique(edges)
  # np.unique sorts edges by source then destination: CSR order.
  src = np.searchsorted(ids, edges[:, 0])
  dst = np.searchsorted(ids, edges[:, 1])
  indptr = np.zeros(ids.size + 1, np.int64)
  np.cumsum(np.bincount(src, minlength=ids.size), out=indptr[1:])
  return ItemGraph(ids.astype(np.int64), indptr, dst.astype(np.int64),
                   counts.astype(np.float64))


def build_graph(sequences: Sequence[Sequence[int]], window: int = 1) -> ItemGraph:
  """The item graph of click sessions given as id lists (oldest first)."""
  items = np.asarray([i for seq in sequences for i in seq], np.int64)
  session = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
  return graph_from_sessions(items, session, window)


def side_index(graph: ItemGraph, item_ids: np.ndarray,
               item_cats: np.ndarray) -> Tuple[np.ndarray, int]:
  """Category slots of every node as indices into a side table (0 = padding).

  Args:
    graph: the item graph.
    item_ids: int64 [m], sorted; items of unknown categories may be missing.
    item_cats: int64 [m, C], their categories (0 = padding).

  Returns:
    int64 [n, C] indices (category -> 1 + its rank among the distinct
    categories) and the side table size (distinct categories + 1).
  """
  item_ids = np.asarray(item_ids, np.int64)
  item_cats = np.asarray(item_cats, np.int64)
  cats = np.zeros([graph.num_nodes, item_cats.shape[-1]], np.int64)
  if item_ids.size:
    rows = np.minimum(np.searchsorted(item_ids, graph.ids), item_ids.size - 1)
    known = item_ids[rows] == graph.ids
    cats[known] = item_cats[rows[known]]
  values = np.unique(cats[cats > 0])
  index = np.where(cats > 0, np.searchsorted(values, cats) + 1, 0)
  return index.astype(np.int64), int(values.size) + 1
