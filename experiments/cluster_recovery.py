"""Do a model's item vectors recover the simulator's hidden clusters?

Three of the simulator's click terms (``taste``, ``related``, ``focus``) depend on
hidden item clusters that are never emitted; only co-clicks reveal them. EGIN's
i2i feature can carry them only if its graph item vectors put items of one
cluster close together. For trained runs (model folders of `paper_tables.py`)
this script embeds every item of the train split with the run's item table
(EGIN: the graph table; EGES: its frozen vectors; DNN/DIN/BST: the CTR network's
own id embeddings) and reports, over ``--pairs`` random pairs per kind:

* the mean cosine of same-cluster pairs, of same-leaf pairs from different
  clusters and of pairs from different leaves and clusters;
* "cluster AUC": the AUC of the cosine for telling same-cluster pairs from
  different-cluster pairs (0.5 = no cluster information);
* "within-leaf cluster AUC": the same among pairs of one leaf only (same
  cluster vs other cluster): the cluster information beyond the category.

Pairs are drawn among items clicked at least ``--min_clicks`` times in the
train split (items the models could have learned), with the same pairs for
every run.

Usage:
  python -m experiments.cluster_recovery --runs RUN_DIR[,RUN_DIR...]
      [--users 2000] [--min_clicks 5] [--pairs 50000]
"""

import os
from typing import Dict, List

import numpy as np
from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import ranking_metrics as metrics
from egin_tf.train import model_dir as model_dir_lib
from experiments import common
from experiments import embedding_similarity

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_list("runs", None, "Model folders to compare.")
  flags.DEFINE_integer("users", 2000, "Users of the simulated dataset.")
  flags.DEFINE_integer("min_clicks", 5, "Only items clicked this often in train.")
  flags.DEFINE_integer("pairs", 50_000, "Pairs per kind.")
  flags.DEFINE_integer("pair_seed", 0, "Seed of the pair sampling.")


def click_counts(pattern: str) -> Dict[int, int]:
  """Clicks (positive impressions) per target item of a split."""
  counts: Dict[int, int] = {}
  for batch in reader.make_dataset(pattern, 4096, max_clicks=1, max_queries=1,
                                   max_seeds=1, num_epochs=1).as_numpy_iterator():
    for item in batch[schema_lib.ITEM_ID][batch[schema_lib.LABEL] > 0]:
      counts[int(item)] = counts.get(int(item), 0) + 1
  return counts


def pair_kinds(items: np.ndarray, cluster: np.ndarray, leaf: np.ndarray,
               n: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
  """Index pairs into ``items``: same cluster; same cluster and leaf; same leaf
  but other cluster; other leaf and other cluster."""
  same_cluster = embedding_similarity.sample_pairs(cluster, n, rng, same=True)
  # A combined key: equal exactly when both cluster and leaf are equal.
  both = embedding_similarity.sample_pairs(cluster * (leaf.max() + 1) + leaf, n,
                                           rng, same=True)
  same_leaf = embedding_similarity.sample_pairs(leaf, 4 * n, rng, same=True)
  same_leaf = same_leaf[cluster[same_leaf[:, 0]] != cluster[same_leaf[:, 1]]][:n]
  other = embedding_similarity.sample_pairs(leaf, 2 * n, rng, same=False)
  other = other[cluster[other[:, 0]] != cluster[other[:, 1]]][:n]
  return {"same cluster": same_cluster, "same cluster and leaf": both,
          "same leaf, other cluster": same_leaf, "other leaf and cluster": other}


def main(argv):
  del argv
  if not FLAGS.runs:
    raise app.UsageError("--runs is required")
  config = simulator.SimulatorConfig(num_users=FLAGS.users, seed=0)
  catalog = simulator.build_catalog(config)
  rows: List[List[str]] = []
  pairs = None
  for run_dir in FLAGS.runs:
    pattern = model_dir_lib.saved_train_pattern(run_dir)
    ids, _, vectors = embedding_similarity.item_vectors(run_dir, pattern)
    if pairs is None:
      counts = click_counts(pattern)
      keep = np.array([counts.get(int(i), 0) >= FLAGS.min_clicks for i in ids])
      chosen = ids[keep]
      pairs = pair_kinds(chosen, catalog.item_cluster[chosen],
                         catalog.item_leaf[chosen], FLAGS.pairs,
                         np.random.default_rng(FLAGS.pair_seed))
      print(f"{chosen.size:,} of {ids.size:,} items clicked >= "
            f"{FLAGS.min_clicks} times in {pattern}")
    # Runs may list the items in another order: select the chosen ids by value.
    row_of = {int(i): k for k, i in enumerate(ids)}
    chosen_vectors = vectors[np.array([row_of[int(i)] for i in chosen])]
    sims = {kind: embedding_similarity.cosines(chosen_vectors, p) for kind, p in pairs.items()}
    same = sims["same cluster"]
    different = np.concatenate([sims["same leaf, other cluster"],
                                sims["other leaf and cluster"]])
    auc = metrics.auc(np.r_[np.ones(same.size), np.zeros(different.size)],
                      np.r_[same, different])
    name = os.path.relpath(run_dir, os.path.dirname(os.path.dirname(run_dir)))
    # Within a leaf: does the cosine tell the item's cluster from the leaf's
    # other clusters (what the related and taste terms need beyond categories)?
    within = sims["same cluster and leaf"]
    other_in_leaf = sims["same leaf, other cluster"]
    within_auc = metrics.auc(np.r_[np.ones(within.size), np.zeros(other_in_leaf.size)],
                             np.r_[within, other_in_leaf])
    rows.append([name] + [f"{sims[k].mean():.4f}" for k in pairs] +
                [f"{auc:.4f}", f"{within_auc:.4f}"])
  print(common.markdown_table(
      ["run", *pairs, "cluster AUC", "within-leaf cluster AUC"], rows))


if __name__ == "__main__":
  define_flags()
  app.run(main)
