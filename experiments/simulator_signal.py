"""Where the simulator's click signal lives, and which of it each model can see.

The simulator's click logit (`data_pipeline.simulator`) has terms of three
kinds:

* **visible through categories**: ``match(q, i)`` (item leaf vs the query's
  leaves), ``interest`` (the item's leaf is one of the user's interest leaves,
  which shows as clicks of that leaf in the history) and ``price_z``;
* **cluster terms, visible only through co-clicks**: ``taste`` (the item's hidden
  cluster is a taste cluster of the user), ``related`` (clicks among the last 20
  in the item's cluster) and ``focus`` (the query's focus cluster);
* **item-level**: ``quality``, behind the item id.

This script rebuilds the catalog of the simulated dataset (same config and
seed, so the same hidden clusters), computes for every impression the exact or
proxy value of each term from its own history, fits a logistic regression on
the train split with nested feature sets, and reports test AUC per set. The
gaps between the sets bound what each kind of signal is worth: what DIN/BST can
reach with category-aware attention, and what only a graph that recovers the
hidden clusters can add.

Usage:
  python -m experiments.simulator_signal [--users 2000] [--max_hist 50]
      [--data runs/paper_tables/data/simulator_u2000]
"""

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import ranking_metrics as metrics
from experiments import common

FLAGS = flags.FLAGS

# Nested feature sets: (name, features added to the previous set).
FEATURE_SETS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("position", ("position",)),
    ("+ category terms (match, same-leaf clicks, price_z)",
     ("match", "leaf_clicks", "price_z")),
    ("+ cluster terms (related, same-cluster clicks, focus)",
     ("related", "cluster_clicks", "focus")),
    ("+ item quality", ("quality",)),
)

# Each beside position alone: what one term is worth by itself.
SINGLE_TERMS = (("match",), ("leaf_clicks",), ("price_z",),
                ("related", "cluster_clicks", "focus"), ("quality",))


def define_flags() -> None:
  flags.DEFINE_integer("users", 2000, "Users of the simulated dataset.")
  flags.DEFINE_integer("max_hist", 50, "Clicks read per impression (most recent).")
  flags.DEFINE_string("data", None, "Simulated dataset folder; default "
                      "runs/paper_tables/data/simulator_u<users>.")


def history_counts(history: np.ndarray, target: np.ndarray,
                   window: int = 0) -> np.ndarray:
  """Per row, how many valid (non-zero) history entries equal the target.

  Args:
    history: int [N, L], right-padded with 0, oldest first.
    target: int [N]; rows with target 0 count 0.
    window: > 0 counts only the most recent ``window`` valid entries.

  Returns:
    int64 [N].
  """
  history = np.asarray(history)
  target = np.asarray(target)[:, None]
  valid = history > 0
  if window > 0:
    lengths = valid.sum(axis=1, keepdims=True)
    index = np.arange(history.shape[1])[None, :]
    valid &= index >= lengths - window
  return ((history == target) & valid & (target > 0)).sum(axis=1).astype(np.int64)


def impression_features(batch: Dict[str, np.ndarray], catalog: simulator.Catalog,
                        config: simulator.SimulatorConfig) -> Dict[str, np.ndarray]:
  """The click logit's terms (exact where computable, else proxies) [N] each."""
  items = batch[schema_lib.ITEM_ID]
  queries = batch[schema_lib.QUERY_ID]
  clicks = batch[schema_lib.CLICKS.ids]
  click_leaf = catalog.item_leaf[clicks] * (clicks > 0)
  click_cluster = catalog.item_cluster[clicks] * (clicks > 0)
  cluster = catalog.item_cluster[items]
  match = np.array([simulator.query_match(catalog, int(q), np.array([i]),
                                          config.partial_match)[0]
                    for q, i in zip(queries, items)])
  related = np.minimum(history_counts(click_cluster, cluster,
                                      config.related_window), config.related_cap)
  return {
      "position": batch["cat/" + simulator.POSITION],
      "match": match,
      "leaf_clicks": np.log1p(history_counts(click_leaf, catalog.item_leaf[items])),
      "price_z": catalog.item_price_z[items],
      "related": related / config.related_cap,
      "cluster_clicks": np.log1p(history_counts(click_cluster, cluster)),
      "focus": (cluster == catalog.query_focus[queries]).astype(np.float64),
      "quality": catalog.item_quality[items],
      "label": batch[schema_lib.LABEL],
      "user_id": batch[schema_lib.USER_ID],
  }


def read_features(pattern: str, catalog: simulator.Catalog,
                  config: simulator.SimulatorConfig) -> Dict[str, np.ndarray]:
  parts: List[Dict[str, np.ndarray]] = []
  for batch in reader.make_dataset(pattern, 4096, max_clicks=FLAGS.max_hist,
                                   max_queries=1, max_seeds=1, shuffle=False,
                                   num_epochs=1).as_numpy_iterator():
    parts.append(impression_features(batch, catalog, config))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


MAX_POSITION = 25  # one-hot columns for positions 2..25 (both datasets' lists)


def design(features: Dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
  """Columns: an intercept, position one-hot (1 = reference; the same columns
  for every split, so train weights apply to test), the others."""
  columns = [np.ones(len(features["label"]))]
  for name in names:
    if name == "position":
      positions = features["position"]
      columns += [(positions == k).astype(np.float64)
                  for k in range(2, MAX_POSITION + 1)]
    else:
      columns.append(features[name].astype(np.float64))
  return np.stack(columns, axis=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, iterations: int = 25,
                 l2: float = 1e-4) -> np.ndarray:
  """Newton's method (IRLS) for L2-regularized logistic regression."""
  w = np.zeros(x.shape[1])
  for _ in range(iterations):
    p = 1.0 / (1.0 + np.exp(-x @ w))
    gradient = x.T @ (p - y) / len(y) + l2 * w
    hessian = (x * (p * (1 - p))[:, None]).T @ x / len(y) + l2 * np.eye(len(w))
    step = np.linalg.solve(hessian, gradient)
    w -= step
    if np.max(np.abs(step)) < 1e-8:
      break
  return w


def _scores(data: Dict[str, np.ndarray], p: np.ndarray) -> str:
  y = data["label"]
  return (f"{metrics.auc(y, p):.4f} | "
          f"{metrics.grouped_auc(y, p, data['user_id']):.4f} | "
          f"{metrics.logloss(y, p):.4f}")


def fitted_scores(train: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
                  names: Sequence[str]) -> str:
  """Fits `fit_logistic` on the ``names`` features of ``train``; its test AUC,
  gAUC and logloss as Markdown cells ("a | b | c")."""
  w = fit_logistic(design(train, names), train["label"].astype(np.float64))
  p = 1.0 / (1.0 + np.exp(-design(test, names) @ w))
  return _scores(test, p)


def print_nested_scores(train: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
                        feature_sets: Sequence[Tuple[str, Sequence[str]]]) -> None:
  """Prints a Markdown table: `fitted_scores` of each nested feature set, every
  set adding ``(title, features)`` to the previous one."""
  names: List[str] = []
  print("| features (nested) | test AUC | test gAUC | test logloss |")
  print("|---|---:|---:|---:|")
  for title, added in feature_sets:
    names += added
    print(f"| {title} | {fitted_scores(train, test, names)} |")


def main(argv):
  del argv
  config = simulator.SimulatorConfig(num_users=FLAGS.users, seed=0)
  data = FLAGS.data or os.path.join(common.REPO_ROOT, "runs", "paper_tables", "data",
                                    f"simulator_u{FLAGS.users}")
  catalog = simulator.build_catalog(config)
  train = read_features(os.path.join(data, "train-*"), catalog, config)
  test = read_features(os.path.join(data, "test-*"), catalog, config)
  print(f"train {len(train['label']):,} / test {len(test['label']):,} impressions")
  print_nested_scores(train, test, FEATURE_SETS)
  for extra in SINGLE_TERMS:
    print(f"| position + {', '.join(extra)} only | "
          f"{fitted_scores(train, test, ['position', *extra])} |")
  with open(os.path.join(data, simulator.ORACLE_FILE), encoding="utf-8") as f:
    print("oracle:", f.read())


if __name__ == "__main__":
  define_flags()
  app.run(main)
