"""`SimulatorConfig`, the simulator's knobs, and the constants of the generated log."""

import dataclasses

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


def split_time(config: SimulatorConfig) -> int:
  """Unix seconds where the test split starts: the last ``test_fraction`` of the days."""
  return config.start_time + int(round(
      (1.0 - config.test_fraction) * config.days * _DAY))
