"""Users: latent bias, interests and tastes, and the simulation of one user's log."""

import math
from typing import Iterator, List, Tuple

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline.simulator.catalog import Catalog, query_match
from data_pipeline.simulator.click_model import click_probability
from data_pipeline.simulator.config import (
    _CLICK_DELAY_PER_POSITION, _DAY, _SEARCH_GAP, _SESSION_GAP, POSITION, PRICE, TEST,
    TRAIN, SimulatorConfig, split_time)
from data_pipeline.simulator.engine import draw_results


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


def _record_search(user: _User, catalog: Catalog, query: int, t: int,
                   positions: np.ndarray, items: np.ndarray, delays: np.ndarray) -> None:
  """Appends the search and its clicks (``positions``/``items``/``delays``) to the history."""
  user.queries.append(schema_lib.Event(query, t, catalog.query_cats[query]))
  for position, item, delay in zip(positions, items, delays):
    click_time = t + _CLICK_DELAY_PER_POSITION * int(position) + int(delay)
    user.clicks.append(schema_lib.Event(int(item), click_time,
                                        catalog.item_cats(int(item))))
    user.click_clusters.append(int(catalog.item_cluster[item]))


def simulate_user(config: SimulatorConfig, catalog: Catalog, user_id: int
                  ) -> Iterator[Tuple[str, schema_lib.Impression, float]]:
  """Yields ``(split, impression, true click probability)`` of one user, in time order."""
  rng = _user_rng(config, user_id)
  user = _User(config, catalog, rng)
  test_start = split_time(config)
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
      items = draw_results(catalog, query, config.results_per_search, rng)

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
      split = TEST if t >= test_start else TRAIN
      for position, item, label, prob in zip(positions, items, labels, probs):
        item = int(item)
        imp = schema_lib.Impression(
            label=int(label), user_id=user_id, time=t, item_id=item,
            item_cats=catalog.item_cats(item), query_id=query,
            query_cats=query_cats, clicks=clicks, queries=queries, seeds=seeds,
            dense={PRICE: float(catalog.item_price[item])},
            categorical={POSITION: int(position)})
        yield split, imp, float(prob)

      _record_search(user, catalog, query, t, positions[labels], items[labels],
                     delays[labels])
