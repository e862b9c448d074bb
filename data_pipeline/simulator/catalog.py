"""The catalog of one seed: categories, items, hidden clusters, queries and samplers."""

import math
from typing import List, Sequence, Tuple

import numpy as np

from data_pipeline.simulator.config import SimulatorConfig


class _PopularitySampler:
  """Draws ids from pools (e.g. the items of a leaf) proportionally to weights."""

  def __init__(self, pools: Sequence[np.ndarray], weights: np.ndarray):
    """``pools[g]`` is an int array of ids; ``weights[id]`` their weight."""
    self._pools = []
    self._cdfs = []
    for pool in pools:
      pool = np.asarray(pool, dtype=np.int64)
      cdf = np.cumsum(weights[pool]) if pool.size else np.zeros(0)
      self._pools.append(pool)
      self._cdfs.append(cdf / cdf[-1] if pool.size else cdf)

  def size(self, group: int) -> int:
    return self._pools[group].size

  def draw(self, group: int, rng: np.random.Generator, n: int) -> np.ndarray:
    cdf = self._cdfs[group]
    index = np.searchsorted(cdf, rng.random(n), side="right")
    return self._pools[group][np.minimum(index, cdf.size - 1)]


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
  """[n] weights ``rank^-exponent`` over a random ranking, summing to 1."""
  weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
  weights = weights[rng.permutation(n)]
  return weights / weights.sum()


def _standardize(x: np.ndarray) -> np.ndarray:
  std = x.std()
  return (x - x.mean()) / std if std > 0 else x - x.mean()


class Catalog:
  """Categories, items, hidden clusters and queries of one seed.

  Arrays are indexed by id (index 0 is an unused padding slot).
  """

  def __init__(self, config: SimulatorConfig, rng: np.random.Generator):
    # The draws happen in this order; changing it changes every generated dataset.
    leaves = np.arange(1, config.num_categories + 1)
    self._draw_categories(config, leaves, rng)
    self._draw_items(config, leaves, rng)
    self._draw_queries(config, leaves, rng)
    self._build_samplers(config, leaves)

  def _draw_categories(self, config: SimulatorConfig, leaves: np.ndarray,
                       rng: np.random.Generator) -> None:
    k, p = config.num_categories, config.num_parent_categories
    self.leaf_weight = np.concatenate([[0.0], _zipf_weights(k, config.category_zipf,
                                                            rng)])
    # Parents K+1..K+P; a permutation guarantees every parent has a leaf.
    self.leaf_parent = np.zeros(k + 1, np.int64)
    self.leaf_parent[1:] = k + 1 + rng.permutation(k) % p
    self.siblings = {int(leaf): leaves[(self.leaf_parent[1:] == self.leaf_parent[leaf])
                                       & (leaves != leaf)] for leaf in leaves}

  def _draw_items(self, config: SimulatorConfig, leaves: np.ndarray,
                  rng: np.random.Generator) -> None:
    """Hidden clusters and the items in them, with popularity, quality and price."""
    k = config.num_categories
    self.cluster_home = np.concatenate(
        [[0], rng.choice(leaves, size=config.num_clusters,
                         p=self.leaf_weight[1:])])
    n = config.num_items
    self.item_cluster = np.concatenate(
        [[0], rng.integers(1, config.num_clusters + 1, size=n)])
    home = self.cluster_home[self.item_cluster[1:]]
    where = rng.random(n)
    sibling = home.copy()
    for leaf, siblings in self.siblings.items():
      at = np.flatnonzero(home == leaf)
      if siblings.size and at.size:
        sibling[at] = rng.choice(siblings, size=at.size)
    anywhere = rng.choice(leaves, size=n, p=self.leaf_weight[1:])
    leaf = np.where(where < config.cluster_home_prob, home,
                    np.where(where < config.cluster_home_prob
                             + config.cluster_sibling_prob, sibling, anywhere))
    self.item_leaf = np.concatenate([[0], leaf]).astype(np.int64)
    self.item_parent = self.leaf_parent[self.item_leaf]
    self.item_parent[0] = 0
    self.item_pop = np.concatenate([[0.0], _zipf_weights(n, config.item_zipf, rng)])
    rho = config.quality_popularity_corr
    self.item_quality = np.concatenate([[0.0], rho * _standardize(
        np.log(self.item_pop[1:])) + math.sqrt(max(0.0, 1 - rho * rho))
                                        * rng.standard_normal(n)])
    leaf_log_price = rng.normal(3.5, 0.8, size=k + 1)
    noise = rng.standard_normal(n)
    log_price = leaf_log_price[leaf] + config.price_log_std * noise
    self.item_price = np.concatenate([[0.0], np.round(np.exp(log_price), 2)])
    self.item_price_z = np.concatenate([[0.0], noise])

  def _draw_queries(self, config: SimulatorConfig, leaves: np.ndarray,
                    rng: np.random.Generator) -> None:
    """Queries: anchor leaf, kind, categories, matched leaves, focus cluster."""
    k, q = config.num_categories, config.num_queries
    anchor = np.concatenate([rng.permutation(leaves), rng.choice(
        leaves, size=q - k, p=self.leaf_weight[1:])])
    self.query_pop = np.concatenate([[0.0], _zipf_weights(q, config.query_zipf,
                                                          rng)])
    kind = rng.random(q)
    focus_draw = rng.random(q)
    self.query_cats: List[Tuple[int, ...]] = [()]
    self.query_leaves: List[np.ndarray] = [np.zeros(0, np.int64)]
    self.query_focus = np.zeros(q + 1, np.int64)
    for j, leaf in enumerate(anchor, start=1):
      leaf = int(leaf)
      parent = int(self.leaf_parent[leaf])
      siblings = self.siblings[leaf]
      if kind[j - 1] < config.broad_query_prob:
        cats = (parent,)
        matched = leaves[self.leaf_parent[1:] == parent]
      elif (kind[j - 1] < config.broad_query_prob + config.pair_query_prob
            and siblings.size):
        other = int(rng.choice(siblings))
        cats = (leaf, other)
        matched = np.array([leaf, other])
      else:
        cats = (leaf, parent)
        matched = np.array([leaf])
      self.query_cats.append(cats)
      self.query_leaves.append(np.asarray(matched, np.int64))
      homed = np.flatnonzero(self.cluster_home == leaf)
      homed = homed[np.isin(homed, self.item_cluster[1:])]  # focus needs items
      is_broad = len(cats) == 1
      if not is_broad and focus_draw[j - 1] < config.query_focus_prob and homed.size:
        self.query_focus[j] = rng.choice(homed)
    self.query_parents = [np.unique(self.leaf_parent[m]) for m in self.query_leaves]
    self.query_sibling_leaves = [
        np.setdiff1d(leaves[np.isin(self.leaf_parent[1:], parents)], m)
        for m, parents in zip(self.query_leaves, self.query_parents)]

  def _build_samplers(self, config: SimulatorConfig, leaves: np.ndarray) -> None:
    """Samplers by pool (items by popularity, queries by popularity)."""
    k, n, q = config.num_categories, config.num_items, config.num_queries
    self.items_by_leaf = _PopularitySampler(
        [np.zeros(0)] + [np.flatnonzero(self.item_leaf == leaf) for leaf in leaves],
        self.item_pop)
    self.items_by_cluster = _PopularitySampler(
        [np.zeros(0)] + [np.flatnonzero(self.item_cluster == c)
                         for c in range(1, config.num_clusters + 1)], self.item_pop)
    self.all_items = _PopularitySampler([np.arange(1, n + 1)], self.item_pop)
    query_ids = np.arange(1, q + 1)
    self.queries_by_leaf = _PopularitySampler(
        [np.zeros(0)] + [query_ids[[leaf in m for m in self.query_leaves[1:]]]
                         for leaf in leaves], self.query_pop)
    self.clusters_by_leaf = [np.flatnonzero(self.cluster_home == leaf)
                             for leaf in range(k + 1)]

  def item_cats(self, item: int) -> Tuple[int, int]:
    return int(self.item_leaf[item]), int(self.item_parent[item])


def query_match(catalog: Catalog, query: int, items: np.ndarray,
                partial: float) -> np.ndarray:
  """How well each item matches the query: 1 (its leaf), ``partial`` (its parent) or 0."""
  leaf_match = np.isin(catalog.item_leaf[items], catalog.query_leaves[query])
  parent_match = np.isin(catalog.item_parent[items], catalog.query_parents[query])
  return np.where(leaf_match, 1.0, np.where(parent_match, partial, 0.0))


def build_catalog(config: SimulatorConfig) -> Catalog:
  """The catalog ``simulate(config)`` draws from: same seed, same hidden clusters."""
  return Catalog(config, np.random.default_rng([config.seed, 0]))
