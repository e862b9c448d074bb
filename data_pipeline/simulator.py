"""A seeded e-commerce search-log simulator whose true click probabilities are known.

Because every click is drawn from a probability the simulator computes, the best AUC
any model can reach on the generated data (the *oracle*) is known exactly and written
to ``oracle.json`` beside the shards. Everything is reproducible from
`SimulatorConfig` (same seed => byte-identical shards).

Generative model
================

Catalog (drawn once per seed):

* Categories form a two-level tree: leaf categories ``1..K`` (``num_categories``)
  and parent categories ``K+1..K+P`` (``num_parent_categories``); every leaf has one
  parent. Items and queries use this ONE category id space. Leaf ``l`` has a
  Zipf-like weight ``w_l`` (exponent ``category_zipf``).
* Hidden clusters ``1..num_clusters`` (never emitted). Cluster ``k`` has a home leaf
  drawn by ``w_l``. Item ``i`` (ids ``1..num_items``) joins a uniform random cluster
  ``c(i)``; its leaf ``leaf(i)`` is the cluster's home leaf with probability
  ``cluster_home_prob``, a sibling leaf (same parent) with probability
  ``cluster_sibling_prob``, any leaf (by ``w_l``) otherwise. So clusters live inside
  and across categories, and only co-clicks reveal them.
* Item popularity ``pop(i) ∝ rank(i)^-item_zipf`` over a random ranking; item quality
  ``quality(i) = rho * z(log pop(i)) + sqrt(1 - rho^2) * N(0, 1)`` with
  ``rho = quality_popularity_corr`` and ``z`` the standardisation over the catalog.
* Price: ``log price(i) = mu_leaf(i) + price_log_std * N(0, 1)`` with
  ``mu_l ~ N(3.5, 0.8)``; ``price_z(i) = (log price(i) - mu_leaf(i)) / price_log_std``
  (how expensive the item is for its category). Emitted as ``dense/price``.
* Queries ``1..num_queries``, each anchored at a leaf (every leaf gets one, the rest
  by ``w_l``) with popularity ``∝ rank^-query_zipf``. A query is *specific*
  (cats ``[leaf, parent]``, matches ``{leaf}``), *broad* (probability
  ``broad_query_prob``; cats ``[parent]``, matches every leaf of the parent) or a
  *pair* (probability ``pair_query_prob``; cats ``[leaf, sibling]``, matches both).
  A specific or pair query has, with probability ``query_focus_prob``, a hidden focus
  cluster ``focus(q)`` among the clusters homed at its leaf (0 = none).

Users (user ``u`` in ``1..num_users``, each with its own random stream):

* A click propensity ``b_u ~ N(0, user_bias_std)``.
* ``num_interests`` distinct interest leaves (drawn by ``w_l``) with Dirichlet(1)
  weights, and for each interest leaf ``taste_clusters_per_interest`` *taste*
  clusters among those homed at it. Interests drift: at the start of a session each
  interest is replaced (with new taste clusters, same weight) with probability
  ``1 - exp(-interest_drift_per_day * days since the previous session)``.
* Activity: ``1 + Poisson((mean_sessions_per_user - 1) * a_u)`` sessions with
  ``a_u`` log-normal of mean 1 (a few heavy users); session starts uniform over the
  ``days`` window; each session has ``Geometric(1 / mean_searches_per_session)``
  searches 60-600 s apart. Search times strictly increase within a user.
* A search picks a leaf: with probability ``explore_prob`` any leaf by ``w_l``,
  otherwise an interest by its weight; then a query matching that leaf, by
  query popularity.

Search results: the engine shows ``results_per_search`` distinct items, each drawn
(by popularity inside the pool) from the query's focus cluster (if any, probability
0.2), its matched leaves (0.55 or 0.75 without focus), the sibling leaves of the
query's parents (0.15) or the whole catalog (0.1); they are ranked by
``log pop(i) + match_engine(q, i) + Gumbel noise`` (``match_engine`` is 1 for a
matched leaf, 0.5 for the same parent, else 0) and get positions
``1..results_per_search``: the engine knows popularity and categories, not users.

Click probability (the oracle). For user ``u`` shown item ``i`` at 1-based position
``k`` for query ``q``, with the user's state just before the search::

  s = bias + b_u
      + w_interest * [leaf(i) is a current interest of u]
      + w_taste    * [c(i) is a current taste cluster of u]
      + w_match    * match(q, i)      # 1 if leaf(i) is matched by q, else
                                      # partial_match if parent(i) is q's parent, else 0
      + w_focus    * [c(i) == focus(q) != 0]
      + w_related  * min(n, related_cap) / related_cap
                   # n = how many of u's last related_window clicks are in cluster c(i)
      + w_quality  * quality(i)
      - w_price    * price_z(i)
  p(click) = k^-position_bias_exponent * sigmoid(s)

(the examination hypothesis: position only scales the chance the item is looked at).
The label is ``1[U < p]`` with ``U ~ Uniform(0, 1)``. All results of one search use
the state before the search: clicks of a search affect only later searches.

Emitted impressions (`schema.Impression`): ``time`` is the search time (all results
of a search share it); ``item_cats = [leaf, parent]``; ``query_cats`` as above;
``clicks`` are the user's earlier clicks (click time = search time + 5 * position +
0..4 s, always before the next search), ``queries`` the earlier searches and
``seeds`` the earlier clicks whose categories intersect the current query's
categories (the paper's seeds sequence), each oldest first, strictly earlier than
``time`` and cut to the most recent ``max_history``; ``dense/price`` and
``cat/position``. Ids are small positive ints; 0 is never an id.

Split: impressions at or after ``start_time + (1 - test_fraction) * days`` form the
"test" split, the rest "train": every train impression is earlier than every test
impression.

What a model can and cannot see: position, price, item/query ids and categories are
features; ``b_u`` and quality sit behind the user and item ids; interests and taste
are latent but show in the click and query histories; the clusters behind ``taste``,
``focus`` and the ``related`` term are never emitted, only visible through which
items are clicked together (and after which queries), which is what graph learning
on click sequences can recover.

With the defaults (2000 users, seed 0): ~206k impressions (185k train, 21k test),
CTR ~24%, oracle test AUC ~0.81 (gAUC ~0.80), position-only test AUC ~0.66; a
sum-pooled embedding DNN reached ~0.70 in a quick check. ``oracle.json`` has the
exact numbers of each generated dataset.

Run ``python -m data_pipeline.simulator --users 2000`` to time generation.
"""

import argparse
import dataclasses
import json
import math
import tempfile
import time as time_lib
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline import writer as writer_lib
from egin_tf import metrics

NUM_CATS = 2  # categories per item, query and history entry: [leaf, parent]
TRAIN = "train"
TEST = "test"
ORACLE_FILE = "oracle.json"
PRICE = "price"  # dense/price
POSITION = "position"  # cat/position, 1-based
_DAY = 86400
_SEARCH_GAP = (60, 600)  # seconds between searches of a session
_CLICK_DELAY_PER_POSITION = 5  # click time = search time + 5 * position + 0..4 s
_SESSION_GAP = 1800  # seconds between the end of a session and the next one
# Engine: where a shown item comes from (focus cluster, matched leaves, sibling
# leaves, whole catalog), for queries with and without a focus cluster.
_SOURCE_PROBS_FOCUS = (0.2, 0.55, 0.15, 0.1)
_SOURCE_PROBS = (0.0, 0.75, 0.15, 0.1)
_ENGINE_PARTIAL_MATCH = 0.5


@dataclasses.dataclass
class SimulatorConfig:
  """Every knob of the simulator; see the module docstring for what each does.

  Attributes:
    num_users: users, ids 1..num_users.
    seed: the random seed; same seed (and config) => same data.
    num_items: items, ids 1..num_items.
    num_categories: leaf categories, ids 1..num_categories.
    num_parent_categories: parent categories, ids after the leaves.
    num_clusters: hidden item clusters (never emitted).
    num_queries: queries, ids 1..num_queries (at least num_categories).
    days: length of the log.
    start_time: unix seconds of the log's start.
    test_fraction: the last test_fraction of the days is the test split.
    results_per_search: impressions per search (positions 1..results_per_search).
    mean_sessions_per_user: average sessions of a user over the log.
    mean_searches_per_session: average searches per session.
    activity_log_std: spread of the users' log-normal activity.
    num_interests: interest leaves per user.
    taste_clusters_per_interest: taste clusters per interest leaf.
    interest_drift_per_day: rate at which an interest is replaced.
    explore_prob: probability that a search is outside the user's interests.
    category_zipf: Zipf exponent of leaf weights.
    item_zipf: Zipf exponent of item popularity.
    query_zipf: Zipf exponent of query popularity.
    cluster_home_prob: probability that an item is in its cluster's home leaf.
    cluster_sibling_prob: probability that it is in a sibling of the home leaf.
    broad_query_prob: share of queries that name only a parent category.
    pair_query_prob: share of queries that name two sibling leaves.
    query_focus_prob: probability that a query has a focus cluster.
    quality_popularity_corr: correlation of item quality and log popularity.
    price_log_std: spread of log prices inside a leaf.
    position_bias_exponent: examination probability at position k is k^-this.
    bias, user_bias_std, w_interest, w_taste, w_match, partial_match, w_focus,
      w_related, related_window, related_cap, w_quality, w_price: the click logit
      (module docstring).
    max_history: most recent clicks / queries / seeds kept per impression.
  """
  num_users: int = 2000
  seed: int = 0
  num_items: int = 10000
  num_categories: int = 50
  num_parent_categories: int = 10
  num_clusters: int = 200
  num_queries: int = 1000
  days: int = 30
  start_time: int = 1_700_000_000
  test_fraction: float = 0.1
  results_per_search: int = 10
  mean_sessions_per_user: float = 4.0
  mean_searches_per_session: float = 2.5
  activity_log_std: float = 0.8
  num_interests: int = 3
  taste_clusters_per_interest: int = 2
  interest_drift_per_day: float = 0.02
  explore_prob: float = 0.2
  category_zipf: float = 0.7
  item_zipf: float = 0.8
  query_zipf: float = 0.8
  cluster_home_prob: float = 0.6
  cluster_sibling_prob: float = 0.3
  broad_query_prob: float = 0.15
  pair_query_prob: float = 0.15
  query_focus_prob: float = 0.5
  quality_popularity_corr: float = 0.5
  price_log_std: float = 0.5
  position_bias_exponent: float = 0.35
  bias: float = -3.8
  user_bias_std: float = 0.3
  w_interest: float = 1.5
  w_taste: float = 2.5
  w_match: float = 2.0
  partial_match: float = 0.4
  w_focus: float = 1.2
  w_related: float = 2.5
  related_window: int = 20
  related_cap: int = 3
  w_quality: float = 0.4
  w_price: float = 0.3
  max_history: int = 200

  def validate(self) -> None:
    """Raises ValueError naming the first knob with an impossible value."""
    positive = ("num_users", "num_items", "num_categories", "num_parent_categories",
                "num_clusters", "num_queries", "days", "results_per_search",
                "num_interests", "related_window", "related_cap", "max_history")
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"SimulatorConfig.{name} must be >= 1, got "
                         f"{getattr(self, name)}")
    probabilities = ("explore_prob", "cluster_home_prob", "cluster_sibling_prob",
                     "broad_query_prob", "pair_query_prob", "query_focus_prob")
    for name in probabilities:
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"SimulatorConfig.{name} must be in [0, 1], got "
                         f"{getattr(self, name)}")
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError("SimulatorConfig.test_fraction must be in (0, 1), got "
                       f"{self.test_fraction}")
    if self.cluster_home_prob + self.cluster_sibling_prob > 1.0:
      raise ValueError("SimulatorConfig.cluster_home_prob + cluster_sibling_prob "
                       "must be <= 1")
    if self.broad_query_prob + self.pair_query_prob > 1.0:
      raise ValueError("SimulatorConfig.broad_query_prob + pair_query_prob must "
                       "be <= 1")
    if self.num_parent_categories > self.num_categories:
      raise ValueError("SimulatorConfig.num_parent_categories "
                       f"({self.num_parent_categories}) must be <= num_categories "
                       f"({self.num_categories}): every parent needs a leaf")
    if self.num_interests > self.num_categories:
      raise ValueError(f"SimulatorConfig.num_interests ({self.num_interests}) must "
                       f"be <= num_categories ({self.num_categories})")
    if self.num_queries < self.num_categories:
      raise ValueError(f"SimulatorConfig.num_queries ({self.num_queries}) must be "
                       f">= num_categories ({self.num_categories}): every leaf "
                       "needs a query")
    if self.num_items < 2 * self.results_per_search:
      raise ValueError(f"SimulatorConfig.num_items ({self.num_items}) must be at "
                       f"least 2 * results_per_search ({self.results_per_search})")
    if self.mean_sessions_per_user < 1 or self.mean_searches_per_session < 1:
      raise ValueError("SimulatorConfig.mean_sessions_per_user and "
                       "mean_searches_per_session must be >= 1")
    for name in ("activity_log_std", "user_bias_std", "price_log_std",
                 "interest_drift_per_day", "position_bias_exponent",
                 "taste_clusters_per_interest"):
      if getattr(self, name) < 0:
        raise ValueError(f"SimulatorConfig.{name} must be >= 0, got "
                         f"{getattr(self, name)}")
    if self.price_log_std == 0:
      raise ValueError("SimulatorConfig.price_log_std must be > 0")


def position_bias(position, exponent: float):
  """Examination probability of 1-based ``position``: ``position^-exponent``."""
  return np.power(np.asarray(position, dtype=np.float64), -exponent)


def click_probability(config: SimulatorConfig, position, user_bias, interest,
                      taste, match, focus, related_count, quality, price_z):
  """The true click probability of the module docstring, elementwise.

  Args:
    config: the weights.
    position: [N] 1-based positions.
    user_bias: b_u (scalar or [N]).
    interest, taste, focus: [N] 0/1 indicators.
    match: [N] query-item match (1, ``partial_match`` or 0).
    related_count: [N] clicks among the user's last ``related_window`` that are in
      the item's cluster.
    quality, price_z: [N] item attributes.

  Returns:
    [N] float64 probabilities.
  """
  related = np.minimum(np.asarray(related_count, np.float64), config.related_cap)
  logit = (config.bias + np.asarray(user_bias, np.float64)
           + config.w_interest * np.asarray(interest, np.float64)
           + config.w_taste * np.asarray(taste, np.float64)
           + config.w_match * np.asarray(match, np.float64)
           + config.w_focus * np.asarray(focus, np.float64)
           + config.w_related * related / config.related_cap
           + config.w_quality * np.asarray(quality, np.float64)
           - config.w_price * np.asarray(price_z, np.float64))
  return position_bias(position, config.position_bias_exponent) / (
      1.0 + np.exp(-logit))


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
    k, p = config.num_categories, config.num_parent_categories
    self.leaf_weight = np.concatenate([[0.0], _zipf_weights(k, config.category_zipf,
                                                            rng)])
    # Parents K+1..K+P; a permutation guarantees every parent has a leaf.
    self.leaf_parent = np.zeros(k + 1, np.int64)
    self.leaf_parent[1:] = k + 1 + rng.permutation(k) % p
    leaves = np.arange(1, k + 1)
    self.siblings = {int(leaf): leaves[(self.leaf_parent[1:] == self.leaf_parent[leaf])
                                       & (leaves != leaf)] for leaf in leaves}

    # Hidden clusters and the items in them.
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

    # Queries: anchor leaf, kind, categories, matched leaves, focus cluster.
    q = config.num_queries
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

    # Samplers by pool (items by popularity, queries by popularity).
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


def _draw_results(catalog: Catalog, query: int, num_results: int,
                  rng: np.random.Generator) -> np.ndarray:
  """The engine: ``num_results`` distinct items for ``query``, best first."""
  focus = catalog.query_focus[query]
  probs = _SOURCE_PROBS_FOCUS if focus else _SOURCE_PROBS
  matched = catalog.query_leaves[query]
  sibling_leaves = catalog.query_sibling_leaves[query]
  chosen = np.zeros(0, np.int64)
  while chosen.size < num_results:
    n = 3 * num_results
    source = rng.choice(4, size=n, p=probs)
    if not sibling_leaves.size:
      source[source == 2] = 1
    items = np.empty(n, np.int64)
    for s, group in ((0, None), (1, matched), (2, sibling_leaves)):
      slots = np.flatnonzero(source == s)
      if not slots.size:
        continue
      if s == 0:
        items[slots] = catalog.items_by_cluster.draw(int(focus), rng, slots.size)
        continue
      leaves = rng.choice(group, size=slots.size)
      for leaf in np.unique(leaves):
        at = slots[leaves == leaf]
        if catalog.items_by_leaf.size(int(leaf)):
          items[at] = catalog.items_by_leaf.draw(int(leaf), rng, at.size)
        else:
          items[at] = catalog.all_items.draw(0, rng, at.size)
    slots = np.flatnonzero(source == 3)
    items[slots] = catalog.all_items.draw(0, rng, slots.size)
    merged = np.concatenate([chosen, items])
    _, first = np.unique(merged, return_index=True)
    chosen = merged[np.sort(first)][:num_results]
  match = query_match(catalog, query, chosen, partial=_ENGINE_PARTIAL_MATCH)
  score = (np.log(catalog.item_pop[chosen]) + match
           + rng.gumbel(size=chosen.size))
  return chosen[np.argsort(-score, kind="stable")]


def query_match(catalog: Catalog, query: int, items: np.ndarray,
                partial: float) -> np.ndarray:
  """How well each item matches the query: 1 (its leaf), ``partial`` (its parent) or 0."""
  leaf_match = np.isin(catalog.item_leaf[items], catalog.query_leaves[query])
  parent_match = np.isin(catalog.item_parent[items], catalog.query_parents[query])
  return np.where(leaf_match, 1.0, np.where(parent_match, partial, 0.0))


class _User:
  """One user's latent state and history while their log is simulated."""

  def __init__(self, config: SimulatorConfig, catalog: Catalog,
               rng: np.random.Generator):
    self.bias = rng.normal(0.0, config.user_bias_std)
    leaf_weight = catalog.leaf_weight[1:]
    self.interests = rng.choice(np.arange(1, config.num_categories + 1),
                                size=config.num_interests, replace=False,
                                p=leaf_weight)
    self.weights = rng.dirichlet(np.ones(config.num_interests))
    self.tastes = [self._draw_taste(int(leaf), config, catalog, rng)
                   for leaf in self.interests]
    self.clicks: List[schema_lib.Event] = []
    self.click_clusters: List[int] = []
    self.queries: List[schema_lib.Event] = []

  @staticmethod
  def _draw_taste(leaf: int, config: SimulatorConfig, catalog: Catalog,
                  rng: np.random.Generator) -> np.ndarray:
    homed = catalog.clusters_by_leaf[leaf]
    size = min(config.taste_clusters_per_interest, homed.size)
    return rng.choice(homed, size=size, replace=False) if size else homed

  def drift(self, days: float, config: SimulatorConfig, catalog: Catalog,
            rng: np.random.Generator) -> None:
    replace = rng.random(self.interests.size) < 1.0 - math.exp(
        -config.interest_drift_per_day * days)
    for slot in np.flatnonzero(replace):
      weights = catalog.leaf_weight[1:].copy()
      weights[self.interests - 1] = 0.0
      if weights.sum() <= 0:
        return
      leaf = rng.choice(np.arange(1, config.num_categories + 1),
                        p=weights / weights.sum())
      self.interests[slot] = leaf
      self.tastes[slot] = self._draw_taste(int(leaf), config, catalog, rng)

  def taste_clusters(self) -> np.ndarray:
    return np.concatenate(self.tastes) if self.tastes else np.zeros(0, np.int64)


def _split_time(config: SimulatorConfig) -> int:
  return config.start_time + int(round(
      (1.0 - config.test_fraction) * config.days * _DAY))


def _user_rng(config: SimulatorConfig, user_id: int) -> np.random.Generator:
  # One independent stream per user: a user's log does not depend on the others.
  return np.random.default_rng([config.seed, 1, user_id])


def _search_times(config: SimulatorConfig, rng: np.random.Generator
                  ) -> List[List[int]]:
  """Search times of one user, grouped by session, strictly increasing."""
  activity = rng.lognormal(-0.5 * config.activity_log_std ** 2,
                           config.activity_log_std)
  num_sessions = 1 + rng.poisson((config.mean_sessions_per_user - 1) * activity)
  starts = np.sort(rng.integers(0, config.days * _DAY, size=num_sessions))
  sessions = []
  last = -_SESSION_GAP
  for start in starts:
    t = max(int(start), last + _SESSION_GAP)
    count = rng.geometric(1.0 / config.mean_searches_per_session)
    gaps = rng.integers(_SEARCH_GAP[0], _SEARCH_GAP[1], size=count)
    gaps[0] = 0
    times = t + np.cumsum(gaps)
    sessions.append([config.start_time + int(x) for x in times])
    last = int(times[-1])
  return sessions


def _simulate_user(config: SimulatorConfig, catalog: Catalog, user_id: int
                   ) -> Iterator[Tuple[str, schema_lib.Impression, float]]:
  rng = _user_rng(config, user_id)
  user = _User(config, catalog, rng)
  split_time = _split_time(config)
  cap = config.max_history
  positions = np.arange(1, config.results_per_search + 1)
  leaves = np.arange(1, config.num_categories + 1)
  previous = None
  for session in _search_times(config, rng):
    if previous is not None:
      user.drift((session[0] - previous) / _DAY, config, catalog, rng)
    for t in session:
      previous = t
      if rng.random() < config.explore_prob:
        leaf = int(rng.choice(leaves, p=catalog.leaf_weight[1:]))
      else:
        leaf = int(rng.choice(user.interests, p=user.weights))
      query = int(catalog.queries_by_leaf.draw(leaf, rng, 1)[0])
      items = _draw_results(catalog, query, config.results_per_search, rng)

      clusters = catalog.item_cluster[items]
      recent = np.asarray(user.click_clusters[-config.related_window:], np.int64)
      related = (clusters[:, None] == recent[None, :]).sum(axis=1)
      focus = catalog.query_focus[query]
      probs = click_probability(
          config, positions, user.bias,
          interest=np.isin(catalog.item_leaf[items], user.interests),
          taste=np.isin(clusters, user.taste_clusters()),
          match=query_match(catalog, query, items, config.partial_match),
          focus=(clusters == focus) & (focus > 0),
          related_count=related,
          quality=catalog.item_quality[items],
          price_z=catalog.item_price_z[items])
      labels = rng.random(items.size) < probs
      delays = rng.integers(0, _CLICK_DELAY_PER_POSITION, size=items.size)

      query_cats = catalog.query_cats[query]
      wanted = set(query_cats)
      clicks = tuple(user.clicks[-cap:])
      queries = tuple(user.queries[-cap:])
      seeds = tuple([e for e in user.clicks if not wanted.isdisjoint(e.cats)
                     ][-cap:])
      split = TEST if t >= split_time else TRAIN
      for position, item, label, prob in zip(positions, items, labels, probs):
        item = int(item)
        imp = schema_lib.Impression(
            label=int(label), user_id=user_id, time=t, item_id=item,
            item_cats=catalog.item_cats(item), query_id=query,
            query_cats=query_cats, clicks=clicks, queries=queries, seeds=seeds,
            dense={PRICE: float(catalog.item_price[item])},
            categorical={POSITION: int(position)})
        yield split, imp, float(prob)

      user.queries.append(schema_lib.Event(query, t, query_cats))
      for position, item, delay in zip(positions[labels], items[labels],
                                       delays[labels]):
        click_time = t + _CLICK_DELAY_PER_POSITION * int(position) + int(delay)
        user.clicks.append(schema_lib.Event(int(item), click_time,
                                            catalog.item_cats(int(item))))
        user.click_clusters.append(int(catalog.item_cluster[item]))


def build_catalog(config: SimulatorConfig) -> Catalog:
  """The catalog ``simulate(config)`` draws from: same seed, same hidden clusters."""
  return Catalog(config, np.random.default_rng([config.seed, 0]))


def simulate(config: SimulatorConfig
             ) -> Iterator[Tuple[str, schema_lib.Impression, float]]:
  """Yields ``(split, impression, true click probability)``, user by user.

  Within a user impressions are in time order; splits are "train" and "test".
  """
  config.validate()
  catalog = build_catalog(config)
  for user_id in range(1, config.num_users + 1):
    yield from _simulate_user(config, catalog, user_id)


def oracle_report(config: SimulatorConfig, splits: np.ndarray, labels: np.ndarray,
                  probs: np.ndarray, users: np.ndarray, positions: np.ndarray
                  ) -> dict:
  """The oracle dict: exact metrics of the true probabilities, by split.

  Args:
    config: the simulator's knobs (copied into the report).
    splits, labels, probs, users, positions: [N] per impression.

  Returns:
    ``{split}_auc``, ``{split}_gauc`` (grouped by user), ``{split}_logloss``,
    ``{split}_impressions`` and ``{split}_positives`` for "train" and "test" (NaN
    metrics for an empty split), ``test_position_auc`` (the AUC of the position
    alone, a trivial baseline), ``split_time`` and ``config``.
  """
  report = {}
  for split in (TRAIN, TEST):
    rows = splits == split
    y, p = labels[rows], probs[rows]
    empty = not y.size
    report[f"{split}_auc"] = float("nan") if empty else metrics.auc(y, p)
    report[f"{split}_gauc"] = (float("nan") if empty else
                               metrics.grouped_auc(y, p, users[rows]))
    report[f"{split}_logloss"] = float("nan") if empty else metrics.logloss(y, p)
    report[f"{split}_impressions"] = int(y.size)
    report[f"{split}_positives"] = int(y.sum())
  test = splits == TEST
  report["test_position_auc"] = (metrics.auc(labels[test], -positions[test])
                                 if test.any() else float("nan"))
  report["split_time"] = _split_time(config)
  report["config"] = dataclasses.asdict(config)
  return report


def generate(config: SimulatorConfig, out_dir: str, num_shards: int = 2,
             overwrite: bool = False,
             progress: Optional[Callable[[int], None]] = None,
             progress_every: int = 10000) -> dict:
  """Writes the simulated log as a dataset (train/test shards, schema.json, oracle).

  Records are serialized deterministically (sorted feature keys), so the same
  config gives byte-identical shards in every process.

  Args:
    config: the simulator's knobs.
    out_dir: the dataset folder (created atomically).
    num_shards: shards per split.
    overwrite: replace ``out_dir`` if it exists.
    progress: called with the number of impressions written so far, every
      ``progress_every`` impressions and once at the end.

  Returns:
    The oracle dict (`oracle_report`), also written to ``oracle.json``.
  """
  config.validate()
  if progress_every < 1:
    raise ValueError(f"progress_every must be >= 1, got {progress_every}")
  splits, labels, probs, users, positions = [], [], [], [], []
  with writer_lib.DatasetWriter(out_dir, num_cats=NUM_CATS, num_shards=num_shards,
                                overwrite=overwrite) as writer:
    for split, imp, prob in simulate(config):
      record = schema_lib.to_example(imp, NUM_CATS).SerializeToString(
          deterministic=True)
      writer.write_serialized(split, imp, record)
      splits.append(split)
      labels.append(imp.label)
      probs.append(prob)
      users.append(imp.user_id)
      positions.append(imp.categorical[POSITION])
      if progress is not None and len(labels) % progress_every == 0:
        progress(len(labels))
    report = oracle_report(config, np.asarray(splits), np.asarray(labels),
                           np.asarray(probs), np.asarray(users),
                           np.asarray(positions))
    writer.commit(source=f"data_pipeline.simulator seed={config.seed}",
                  extra_files={ORACLE_FILE: json.dumps(report, indent=2,
                                                       sort_keys=True) + "\n"})
  if progress is not None and len(labels) % progress_every:
    progress(len(labels))
  return report


def benchmark(config: SimulatorConfig, out_dir: Optional[str] = None) -> dict:
  """Generates ``config`` (into a temporary folder by default) and times it.

  Returns:
    The oracle dict plus ``seconds``, ``impressions_per_second`` and ``ctr``.
  """
  with tempfile.TemporaryDirectory() as tmp:
    start = time_lib.perf_counter()
    report = generate(config, out_dir or f"{tmp}/data", overwrite=True)
    seconds = time_lib.perf_counter() - start
  total = report["train_impressions"] + report["test_impressions"]
  positives = report["train_positives"] + report["test_positives"]
  return dict(report, seconds=seconds, impressions_per_second=total / seconds,
              ctr=positives / max(total, 1))


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--users", type=int, default=SimulatorConfig.num_users)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="keep the dataset here")
  args = parser.parse_args(argv)
  report = benchmark(SimulatorConfig(num_users=args.users, seed=args.seed), args.out)
  report.pop("config")
  print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
  main()
