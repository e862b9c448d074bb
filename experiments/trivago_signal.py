"""What predicts a trivago clickout, and can SimExtract still see it on graph vectors?

Part 1 (no model): features computed from each impression's own fields, a
logistic regression fitted on the train split, test AUC per nested feature set:
position (one-hot), log price, and the *repeat* features, i.e. how often the
target item is already in the user's click history (item interactions earlier
in the session or before) and whether it is the latest click.

Part 2 (``--runs``): for trained runs, the cosine between the target item and
each click of the test impressions on the run's item table (EGIN: its graph
table; ``use_graph=False``: the CTR id embedding). SimExtract bins cosines in
equal-width bins of 2 / num_bins (0.1 with the default 20 bins), so an exact
repeat (cosine 1) is told apart from a different item only if that item's
cosine is below the top bin's edge. Reported: the share of different-item pairs
in the top bin, and the share of impressions WITHOUT a repeat whose top-1 slot is
in the top bin anyway (they look like repeats to the MLP).

Usage:
  python -m experiments.trivago_signal [--data runs/paper_tables/data/trivago]
      [--max_hist 50] [--runs RUN_DIR,...] [--num_bins 20]
"""

import os
from typing import Dict, List

import numpy as np
from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from egin_tf.serve import embeddings
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from experiments import common
from experiments import embedding_similarity
from experiments import simulator_signal

FLAGS = flags.FLAGS

FEATURE_SETS = (
    ("position", ("position",)),
    ("+ log price", ("log_price",)),
    ("+ repeat (log(1 + times in click history), is the latest click)",
     ("repeats", "is_last_click")),
)


def define_flags() -> None:
  flags.DEFINE_string("data", os.path.join(common.REPO_ROOT, "runs", "paper_tables",
                                           "data", "trivago"),
                      "Converted trivago folder (train-*, test-*).")
  flags.DEFINE_integer("max_hist", 50, "Clicks read per impression.")
  flags.DEFINE_list("runs", [], "Trained run folders for part 2.")
  flags.DEFINE_integer("num_bins", 20, "SimExtract's bins (top bin = last).")


def last_click(history: np.ndarray) -> np.ndarray:
  """The most recent valid id of each right-padded row (0 when empty)."""
  lengths = (history > 0).sum(axis=1)
  return np.where(lengths > 0, history[np.arange(len(history)),
                                       np.maximum(lengths - 1, 0)], 0)


def read_features(pattern: str) -> Dict[str, np.ndarray]:
  parts: List[Dict[str, np.ndarray]] = []
  for batch in reader.make_dataset(pattern, 4096, max_clicks=FLAGS.max_hist,
                                   max_queries=1, max_seeds=1,
                                   num_epochs=1).as_numpy_iterator():
    items = batch[schema_lib.ITEM_ID]
    clicks = batch[schema_lib.CLICKS.ids]
    parts.append({
        "position": np.minimum(batch["cat/position"], 25),
        "log_price": np.log1p(batch["dense/price"].astype(np.float64)),
        "repeats": np.log1p(simulator_signal.history_counts(clicks, items)),
        "is_last_click": (last_click(clicks) == items).astype(np.float64),
        "label": batch[schema_lib.LABEL], "user_id": batch[schema_lib.USER_ID],
    })
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def repeat_cosines(run_dir: str, pattern: str, num_bins: int) -> str:
  """Part 2's row for one run."""
  model, config, _, _ = model_dir_lib.load_model(run_dir, train_config.TrainConfig)
  table = model.embedding_tables()["items"]
  top_edge = 1.0 - 2.0 / num_bins
  different_in_top = different = no_repeat = no_repeat_top = 0
  for batch in reader.make_dataset(pattern, 2048, max_clicks=config.max_clicks,
                                   max_queries=1, max_seeds=1,
                                   num_epochs=1).as_numpy_iterator():
    items, clicks = batch[schema_lib.ITEM_ID], batch[schema_lib.CLICKS.ids]
    target = embedding_unit(table, items)
    history = embedding_unit(table, clicks.reshape(-1)).reshape(
        clicks.shape + (target.shape[-1],))
    cos = np.einsum("bd,bld->bl", target, history)
    valid = clicks > 0
    other = valid & (clicks != items[:, None])
    different += other.sum()
    different_in_top += (other & (cos >= top_edge)).sum()
    repeat = (valid & (clicks == items[:, None])).any(axis=1)
    best = np.where(valid, cos, -2.0).max(axis=1)
    rows = ~repeat & valid.any(axis=1)
    no_repeat += rows.sum()
    no_repeat_top += (rows & (best >= top_edge)).sum()
  name = os.path.relpath(run_dir, os.path.dirname(os.path.dirname(run_dir)))
  return (f"| {name} | {different_in_top / max(different, 1):.3f} | "
          f"{no_repeat_top / max(no_repeat, 1):.3f} |")


def embedding_unit(table, ids: np.ndarray) -> np.ndarray:
  """The rows of ``table`` for ``ids``, scaled to unit length."""
  return embedding_similarity.normalized(embeddings.embed(table, ids))


def main(argv):
  del argv
  train = read_features(os.path.join(FLAGS.data, "train-*"))
  test = read_features(os.path.join(FLAGS.data, "test-*"))
  print(f"train {len(train['label']):,} / test {len(test['label']):,} impressions; "
        f"test impressions whose target is in the click history: "
        f"{np.mean(test['repeats'] > 0):.3f} (their CTR "
        f"{test['label'][test['repeats'] > 0].mean():.3f}, others "
        f"{test['label'][test['repeats'] == 0].mean():.3f})")
  simulator_signal.print_nested_scores(train, test, FEATURE_SETS)
  if FLAGS.runs:
    print(f"\n| run | different-item pairs in the top bin (cos >= "
          f"{1 - 2 / FLAGS.num_bins:g}) | no-repeat impressions whose top-1 is in "
          "the top bin |\n|---|---:|---:|")
    for run_dir in FLAGS.runs:
      print(repeat_cosines(run_dir, os.path.join(FLAGS.data, "test-*"),
                           FLAGS.num_bins))


if __name__ == "__main__":
  define_flags()
  app.run(main)
