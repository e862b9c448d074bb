"""EGES steps 3 and 4: DeepWalk random walks over the item graph, and their
skip-gram (center, context) pairs.

From every node, ``walks_per_node`` walks of ``walk_length`` nodes, each step to an
out-neighbor with probability proportional to the edge weight. A walk that reaches
a node without out-edges stops there (the rest of its row is 0, padding). Pairs
join nodes at most ``window`` apart in a walk.
"""

from typing import Optional

import numpy as np

from data_pipeline.arg_checks import check_int
from data_pipeline.stream import RecordProgress
from data_pipeline.text_input import ProgressCallback
from egin_tf.eges.graph import ItemGraph


def random_walks(graph: ItemGraph, walk_length: int, walks_per_node: int,
                 seed: int = 0, progress: Optional[ProgressCallback] = None
                 ) -> np.ndarray:
  """DeepWalk walks over a weighted graph: int64 [n * walks_per_node, walk_length].

  Round r holds one walk from every node, in a seeded random node order (as in
  DeepWalk); each step goes to out-neighbor v of u with probability
  w(u, v) / sum_v' w(u, v'). Rows hold item ids; a walk stuck at a node without
  out-edges is padded with 0. Equal seeds give equal walks.

  All walks advance together, so ``progress(count, total, share)`` counts walk
  steps (the walks' positions filled, padding too) of walks * walk_length.
  """
  check_int("walk_length", walk_length, owner="EgesPretrainConfig")
  check_int("walks_per_node", walks_per_node, owner="EgesPretrainConfig")
  rng = np.random.default_rng(seed)
  n = graph.num_nodes
  current = np.concatenate([rng.permutation(n) for _ in range(walks_per_node)])
  walks = np.zeros([current.size, walk_length], np.int64)
  counter = RecordProgress(progress, walks.size)
  if n:
    walks[:, 0] = graph.ids[current]
    counter.add(current.size)
  if n and graph.neighbors.size:
    _walk_on(graph, walks, current, rng, counter)
  counter.end()
  return walks


def _walk_on(graph: ItemGraph, walks: np.ndarray, current: np.ndarray,
             rng: np.random.Generator, counter: RecordProgress) -> None:
  """Fills ``walks[:, 1:]`` from the start nodes ``current`` (node indices)."""
  alive = np.ones(current.size, bool)
  cumulative = np.concatenate([[0.0], np.cumsum(graph.weights)])
  for step in range(1, walks.shape[1]):
    start, end = graph.indptr[current], graph.indptr[current + 1]
    alive &= end > start
    # Inverse CDF over the node's slice of the global cumulative weights.
    target = cumulative[start] + rng.random(current.size) * (
        cumulative[end] - cumulative[start])
    edge = np.searchsorted(cumulative, target, side="right") - 1
    # Rounding can land a hair outside the slice; clip back into it. Stopped
    # walks read edge 0 and keep their node.
    edge = np.where(alive, np.clip(edge, start, end - 1), 0)
    current = np.where(alive, graph.neighbors[edge], current)
    walks[:, step] = np.where(alive, graph.ids[current], 0)
    counter.add(current.size)


def skipgram_pairs(walks: np.ndarray, window: int) -> np.ndarray:
  """(center, context) pairs at most ``window`` apart: int64 [P, 2].

  Ordered by walk, then center position, then context position; pairs with a
  padding (0) end are left out.
  """
  check_int("skip_window", window, owner="EgesPretrainConfig")
  walks = np.asarray(walks, np.int64)
  num_walks, length = walks.shape
  parts = []  # (walk, center position, context position)
  for offset in list(range(-window, 0)) + list(range(1, window + 1)):
    centers = np.arange(max(0, -offset), min(length, length - offset))
    w, c = np.meshgrid(np.arange(num_walks), centers, indexing="ij")
    parts.append(np.stack([w.ravel(), c.ravel(), c.ravel() + offset], axis=1))
  index = np.concatenate(parts) if parts else np.zeros([0, 3], np.int64)
  index = index[np.lexsort((index[:, 2], index[:, 1], index[:, 0]))]
  pairs = np.stack([walks[index[:, 0], index[:, 1]],
                    walks[index[:, 0], index[:, 2]]], axis=1)
  return pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
