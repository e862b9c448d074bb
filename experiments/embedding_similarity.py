"""Intra- vs inter-category similarity of item embeddings (paper, Table 5 and Figure 4).

For each model (EGIN, EGES, DNN) the run chosen by `paper_tables.run_variant`
(best learning rate on validation, first seed; reused if the tables already
trained it) is loaded; its item table (``model.embedding_tables()["items"]``:
EGIN's graph table, EGES's frozen vectors, the DNN's own id embeddings) embeds
every item seen in the train split (`embeddings.seen_ids`). Then:

* Table 5: the mean cosine similarity of ``--pairs`` random item pairs of the
  same category and of ``--pairs`` pairs of different categories (the item's
  first category; pairs drawn with ``--pair_seed``, the same pairs for every
  model). Items whose vector is zero (EGES: items outside its graph) are left
  out, and counted;
* Figure 4: a PNG heat map per model of the similarities among
  ``--heatmap_items`` items of each of the ``--heatmap_categories`` most frequent
  categories, grouped by category.

Usage:
  python -m experiments.embedding_similarity --dataset simulator \
      [--models egin,eges,dnn] [--pairs 100000] [paper_tables flags]
"""

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from egin_tf.serve import embeddings
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from experiments import common
from experiments import paper_tables

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the script's flags; only when run as a script, so that importing
  this module (tests, other scripts) never collides with other absl flags."""
  paper_tables.define_flags()
  flags.DEFINE_enum("dataset", "simulator", ["simulator", "taobao", "trivago"],
                    "Dataset whose items are compared.")
  flags.DEFINE_list("embedding_models", ["egin", "eges", "dnn"],
                    "Variants whose item tables are compared.")
  flags.DEFINE_integer("pairs", 100_000, "Item pairs per kind (intra, inter).")
  flags.DEFINE_integer("pair_seed", 0, "Seed of the pair and heat-map sampling.")
  flags.DEFINE_integer("heatmap_categories", 4, "Categories in the heat map.")
  flags.DEFINE_integer("heatmap_items", 6, "Items per category in the heat map.")


def sample_pairs(cats: np.ndarray, n: int, rng: np.random.Generator,
                 same: bool) -> np.ndarray:
  """``n`` index pairs (i != j) of items of the same / of different categories.

  Args:
    cats: int64 [N], the category of each item.
    n: pairs to draw (with replacement).
    same: intra-category pairs if True, else inter-category.

  Returns:
    int64 [n, 2]; [0, 2] when no such pair exists.
  """
  cats = np.asarray(cats)
  if same:
    order = np.argsort(cats, kind="stable")
    sorted_cats = cats[order]
    starts = np.searchsorted(sorted_cats, sorted_cats, side="left")
    sizes = np.searchsorted(sorted_cats, sorted_cats, side="right") - starts
    eligible = np.flatnonzero(sizes > 1)  # positions in `order`
    if eligible.size == 0:
      return np.zeros([0, 2], np.int64)
    first = rng.choice(eligible, n)
    # Another member of the same category: shift by 1..size-1 within it.
    shift = 1 + (rng.random(n) * (sizes[first] - 1)).astype(np.int64)
    second = starts[first] + (first - starts[first] + shift) % sizes[first]
    return np.stack([order[first], order[second]], axis=1)
  if np.unique(cats).size < 2:
    return np.zeros([0, 2], np.int64)
  pairs = np.zeros([0, 2], np.int64)
  while len(pairs) < n:
    draw = rng.integers(0, cats.size, size=[2 * n, 2])
    draw = draw[cats[draw[:, 0]] != cats[draw[:, 1]]]
    pairs = np.concatenate([pairs, draw])
  return pairs[:n]


def normalized(vectors: np.ndarray) -> np.ndarray:
  """``vectors`` scaled to unit length along the last axis (zero stays zero)."""
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / np.maximum(norms, 1e-12)


def cosines(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """Cosine similarity of each vector pair ``pairs`` (int [n, 2]): float [n]."""
  unit = normalized(vectors)
  return np.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], axis=-1)


def mean_cosine(vectors: np.ndarray, pairs: np.ndarray) -> float:
  """Mean cosine similarity of the vector pairs ``pairs`` (int [n, 2])."""
  return float(np.mean(cosines(vectors, pairs)))


def heatmap_items(cats: np.ndarray, num_cats: int, per_cat: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Indices of ``per_cat`` random items of each of the ``num_cats`` most
  frequent categories, grouped by category."""
  values, counts = np.unique(cats, return_counts=True)
  top = values[np.argsort(-counts, kind="stable")[:num_cats]]
  return np.concatenate([
      rng.choice(np.flatnonzero(cats == c),
                 min(per_cat, int(np.sum(cats == c))), replace=False)
      for c in top])


def item_vectors(run_dir: str, train_pattern: str
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(ids, first categories, vectors) of the items of a run's train split."""
  model, config, _, lengths = model_dir_lib.load_model(run_dir, train_config.TrainConfig)
  del config
  table = embeddings.seen_ids(DataSplit.resolve(train_pattern, "train", lengths),
                              cache_dir=run_dir)["items"]
  vectors = embeddings.embed(model.embedding_tables()["items"], table.ids)
  return table.ids, table.cats[:, 0], vectors


def plot_heatmaps(path: str, sims: Dict[str, np.ndarray], labels: List[str]) -> None:
  """Figure 4: one heat map of item similarities per model, side by side."""
  plt = common.pyplot()
  fig, axes = plt.subplots(1, len(sims), figsize=(5 * len(sims), 4.6),
                           layout="constrained")
  axes = np.atleast_1d(axes)
  for ax, (name, sim) in zip(axes, sims.items()):
    image = ax.imshow(sim, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title(f"{name} item embeddings")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90, fontsize=6)
    ax.set_yticks(ticks, labels, fontsize=6)
  fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  lrs, seeds = paper_tables.parse_numbers()
  variants = {n: paper_tables.VARIANTS[n] for n in FLAGS.embedding_models}
  split = paper_tables.prepare_split(FLAGS.dataset)
  rows: List[Sequence[str]] = []
  sims: Dict[str, np.ndarray] = {}
  labels: List[str] = []
  for name, spec in variants.items():
    result = paper_tables.run_variant(split, name, spec, lrs, seeds[:1])
    run_dir = result["runs"][0]["run_dir"]
    ids, cats, vectors = item_vectors(run_dir, split.train)
    # Same train split, so the same items and the same draw for every model
    # (a zero vector, e.g. an item outside EGES's graph, shows as 0).
    chosen = heatmap_items(cats, FLAGS.heatmap_categories, FLAGS.heatmap_items,
                           np.random.default_rng(FLAGS.pair_seed))
    unit = normalized(vectors[chosen])
    sims[name] = unit @ unit.T
    labels = [f"c{cats[i]}:{ids[i] % 100000}" for i in chosen]
    nonzero = np.linalg.norm(vectors, axis=-1) > 0
    ids, cats, vectors = ids[nonzero], cats[nonzero], vectors[nonzero]
    # Fresh generators per model: every model is scored on the same pairs
    # whenever they have the same items.
    intra = sample_pairs(cats, FLAGS.pairs, np.random.default_rng(FLAGS.pair_seed),
                         same=True)
    inter = sample_pairs(cats, FLAGS.pairs, np.random.default_rng(FLAGS.pair_seed),
                         same=False)
    rows.append((name, f"{mean_cosine(vectors, intra):.4f}",
                 f"{mean_cosine(vectors, inter):.4f}", f"{ids.size:,}",
                 f"{int(np.sum(~nonzero)):,}", f"{result['best_lr']:g}"))

  table = common.markdown_table(
      ("model", "intra-category", "inter-category", "items", "zero vectors", "lr"),
      rows)
  png = os.path.join(FLAGS.runs_dir, f"figure4_{split.name}.png")
  os.makedirs(FLAGS.runs_dir, exist_ok=True)
  plot_heatmaps(png, sims, labels)
  paper_tables.write_report(
      f"table5_{split.name}", f"Table 5 analogue, mean cosine similarity "
      f"({split.name}; {FLAGS.pairs:,} pairs per kind; models of seed "
      f"{seeds[0]} only)", split,
      table + f"\n\nFigure 4 analogue: `{png}`")


if __name__ == "__main__":
  define_flags()
  app.run(main)
