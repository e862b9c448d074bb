"""Id tables on a stream whose catalog keeps growing (issue 12, item 6).

The simulator's log is rewritten so that every item is re-listed under a new id
every ``--relist_days`` days (a new SKU for the same product, as marketplaces
do): the id of an item shown or clicked at time t is
``item + num_items * (day(t) // relist_days)``, so a 30-day log at 5 days per
listing shows 6x the simulator's catalog, arriving over the whole stream. The
train split is replayed as a stream (`stream.write_time_ordered`) and trained
in one pass (`streaming.train_stream`) with item tables of several sizes:

* ``rows = ids``: a row for every id the stream will ever show (what a dynamic
  table that admits every id and never evicts gives; the simulator's ids are
  contiguous, so ``bucketize_ids`` maps them one to one);
* fractions of that: hashing, where ids share rows (``--item_buckets``).

Per size and seed it reports the item collision rate of the last progress chunk
(`IdCollisionRate`), the progressive AUC over the whole stream and over its
last window, and the test AUC after the pass; then mean +- std over seeds.

Usage:
  python -m experiments.growing_catalog [--users 2000] [--seeds 0,1]
      [--fractions 1,0.25,0.0625] [--relist_days 5] [--model dnn]
      [--out runs/growing_catalog]
"""

import dataclasses
import os
import re
from typing import Dict, List

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import stream as stream_lib
from data_pipeline import writer as writer_lib
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from experiments import common

FLAGS = flags.FLAGS
flags.DEFINE_integer("users", 2000, "Users simulated.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds (simulation and training).")
flags.DEFINE_list("fractions", ["1", "0.25", "0.0625"],
                  "Item table rows as fractions of the ids the stream shows.")
flags.DEFINE_integer("relist_days", 5, "Days an item keeps one id.")
flags.DEFINE_string("model", "dnn", "Model trained on the stream.")
flags.DEFINE_integer("max_hist", 50, "History lengths kept.")
flags.DEFINE_integer("log_every", 20, "Steps between progress lines.")
flags.DEFINE_string("out", "runs/growing_catalog", "Working folder.")

_DAY = 86_400


def relisted(imp: schema_lib.Impression, num_items: int, start: int,
             relist_days: int) -> schema_lib.Impression:
  """``imp`` with every item id replaced by the id of its listing at that time."""
  def listing(item: int, t: int) -> int:
    return item + num_items * ((t - start) // (_DAY * relist_days))

  def events(seq):
    return None if seq is None else tuple(
        dataclasses.replace(e, id=listing(e.id, e.time)) for e in seq)

  return dataclasses.replace(imp, item_id=listing(imp.item_id, imp.time),
                             clicks=events(imp.clicks), seeds=events(imp.seeds))


def write_relisted(config: simulator.SimulatorConfig, out_dir: str) -> int:
  """Writes the re-listed log (train/test); returns the number of ids shown."""
  if os.path.exists(out_dir):
    return schema_lib.DatasetSchema.load(out_dir).vocab["max_items"]
  with writer_lib.DatasetWriter(out_dir, num_cats=simulator.NUM_CATS,
                                num_shards=2) as writer:
    for split, imp, _ in simulator.simulate(config):
      imp = relisted(imp, config.num_items, config.start_time, FLAGS.relist_days)
      writer.write_serialized(split, imp, schema_lib.to_example(
          imp, simulator.NUM_CATS).SerializeToString(deterministic=True))
    writer.commit(source=f"experiments/growing_catalog.py seed={config.seed} "
                  f"relist_days={FLAGS.relist_days}")
  return schema_lib.DatasetSchema.load(out_dir).vocab["max_items"]


def last_collision_rate(lines: List[str]) -> float:
  """The item collision rate on the last progress line of a stream run."""
  rates = [float(m.group(1)) for line in lines
           for m in [re.search(r"item_collisions (\d+\.\d+)%", line)] if m]
  return rates[-1] / 100 if rates else float("nan")


def run(seed: int, fraction: float) -> Dict[str, float]:
  """One stream pass of ``--model`` (``seed``) with ``fraction`` of the ids as rows."""
  base = os.path.join(FLAGS.out, f"seed{seed}")
  data = os.path.join(base, "data")
  ids = write_relisted(simulator.SimulatorConfig(num_users=FLAGS.users, seed=seed), data)
  stream_dir = os.path.join(base, "stream")
  if not os.path.exists(stream_dir):
    stream_lib.write_time_ordered(os.path.join(data, "train-*"), stream_dir, 5000)
  rows = max(2, int(round(fraction * (ids + 1))))
  config = train_config.TrainConfig(
      model=FLAGS.model, seed=seed, max_clicks=FLAGS.max_hist,
      max_queries=FLAGS.max_hist, max_seeds=FLAGS.max_hist,
      table_sizes={"item": rows})
  lines: List[str] = []
  result = streaming.train_stream(
      stream_dir, os.path.join(base, f"rows{rows}"), config,
      train_config.StreamConfig(log_every=FLAGS.log_every),
      eval_pattern=os.path.join(data, "test-*"), print_fn=lines.append)
  print(f"seed {seed}, {rows:,} item rows for {ids:,} ids: {lines[-2]}", flush=True)
  return {"ids": ids, "rows": rows, "collisions": last_collision_rate(lines),
          "running_auc": result["progressive"]["running_auc"],
          "window_auc": result["progressive"]["window_auc"],
          "test_auc": result["eval"]["auc"]}


def table(results: Dict[float, List[Dict[str, float]]]) -> str:
  """Mean ± std over seeds (the mean alone for one seed) per item table size."""
  keys = ("collisions", "running_auc", "window_auc", "test_auc")
  rows = []
  for fraction, runs in results.items():
    cells = [f"{fraction:g} ({runs[0]['rows']:,} / {runs[0]['ids']:,})"]
    for key in keys:
      cells.append(common.mean_pm_std([r[key] for r in runs]))
    rows.append(cells)
  return common.markdown_table(("item rows / ids",) + keys, rows,
                               left_columns=len(keys) + 1)


def main(argv):
  del argv
  fractions = [float(f) for f in FLAGS.fractions]
  results = {f: [run(int(s), f) for s in FLAGS.seeds] for f in fractions}
  text = table(results)
  print(text)
  with open(os.path.join(FLAGS.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
