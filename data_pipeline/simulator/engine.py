"""The search engine: which items a query shows, ranked by popularity and match."""

import numpy as np

from data_pipeline.simulator.catalog import Catalog, query_match
from data_pipeline.simulator.config import (
    _ENGINE_PARTIAL_MATCH, _SOURCE_PROBS, _SOURCE_PROBS_FOCUS)


def draw_results(catalog: Catalog, query: int, num_results: int,
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
