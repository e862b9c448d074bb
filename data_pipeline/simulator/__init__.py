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

Time generation with ``egin-tf generate --users 2000`` or `benchmark`.
"""

from data_pipeline.simulator.catalog import Catalog, build_catalog, query_match
from data_pipeline.simulator.click_model import click_probability, position_bias
from data_pipeline.simulator.config import (
    NUM_CATS, ORACLE_FILE, POSITION, PRICE, TEST, TRAIN, SimulatorConfig, split_time)
from data_pipeline.simulator.engine import draw_results
from data_pipeline.simulator.generate import benchmark, generate, simulate
from data_pipeline.simulator.oracle import oracle_report

__all__ = [
    "Catalog", "build_catalog", "query_match", "click_probability", "position_bias",
    "NUM_CATS", "ORACLE_FILE", "POSITION", "PRICE", "TEST", "TRAIN", "SimulatorConfig",
    "split_time", "draw_results", "benchmark", "generate", "simulate", "oracle_report",
]
