"""Training step time of several models, measured together on the same batches.

Usage:
  python benchmarks/step_time.py [--models dnn,egin] [--batch_size 1024]
      [--max_clicks 100] [--max_queries 100] [--steps 30] [--data PATTERN]

Smoke run (well under two minutes):
  python benchmarks/step_time.py --users 100 --batch_size 128 --batches 3 \
      --warmup 1 --steps 3 --reader_batches 5

Simulates a dataset into a temporary folder (unless --data is given), pulls
--batches training batches into memory (so input cost is excluded), builds every
model with `TrainConfig.build_model`, traces ``tf.function(model.train_step)``
and then times --steps calls per model, interleaved (A, B, A, B, ... with the
order flipped every round) so that noise from other processes hits all models
alike. Prints the median ms/step, examples/s and the ratio to the first model,
plus a cheap breakdown (forward pass in inference mode; the graph losses alone
for models that have them) and the reader's own examples/s at the same batch
and lengths, to show whether the model or the input pipeline is the bottleneck.

Also reports how full the padded histories are (mean valid length vs L): short
histories padded to L=100 still cost the full L in every dense op.
"""

import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline.data_split import DataSplit
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.train import config as train_config
from egin_tf.train import model_input
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import MODELS

import timing  # pylint: disable=g-bad-import-order  (a sibling script module)

FLAGS = flags.FLAGS
timing.define_common_flags(users=2000, batch_size=1024, warmup=3)
flags.adopt_module_key_flags(timing)
flags.DEFINE_string("data", None, "Training TFRecord glob; simulated when omitted.")
flags.DEFINE_list("models", ["dnn", "egin"],
                  "Registered models to time; ratios are to the first one.")
flags.DEFINE_integer("max_clicks", 100, "L.")
flags.DEFINE_integer("max_queries", 100, "M.")
flags.DEFINE_integer("max_seeds", 100, "S.")
flags.DEFINE_integer("batches", 20, "Distinct batches held in memory.")
flags.DEFINE_integer("steps", 30, "Timed calls per function.")
flags.DEFINE_integer("reader_batches", 50, "Batches timed for the reader alone.")
flags.DEFINE_bool("breakdown", True, "Also time forward-only and graph losses.")


def _simulate(users: int, seed: int, out: str) -> str:
  from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  oracle = simulator.generate(
      simulator.SimulatorConfig(num_users=users, seed=seed), out)
  print(f"simulated {users} users: {oracle['train_impressions']:,} train "
        f"impressions in {time.perf_counter() - start:.0f} s -> {out}")
  return os.path.join(out, "train-*")


def _history_report(batches: List[Dict[str, tf.Tensor]],
                    schema: schema_lib.DatasetSchema) -> str:
  """Mean valid length and share of full rows of each padded history."""
  lines = []
  for seq in schema_lib.SEQUENCES:
    valid = tf.concat([tf.reduce_sum(tf.cast(b[seq.ids] > 0, tf.float32), axis=1)
                       for b in batches], axis=0)
    cap = int(batches[0][seq.ids].shape[1])
    mean = float(tf.reduce_mean(valid))
    full = float(tf.reduce_mean(tf.cast(valid >= cap, tf.float32)))
    lines.append(f"  {seq.name:8s} padded to {cap:3d}: mean valid {mean:5.1f} "
                 f"({mean / cap:4.0%} of the padded length), {full:4.0%} of rows "
                 f"full; longest in the data {schema.max_lengths.get(seq.name, '?')}")
  return "\n".join(lines)


def _time_interleaved(functions: List[Tuple[str, Callable]],
                      batches: List[Dict[str, tf.Tensor]]) -> Dict[str, List[float]]:
  """Seconds per call of each function, calls interleaved across functions."""
  def on_batch(fn):
    # .numpy() waits for the result, so the time covers the whole step.
    return lambda i: tf.nest.map_structure(lambda t: t.numpy(),
                                           fn(batches[i % len(batches)]))

  return timing.time_interleaved([(name, on_batch(fn)) for name, fn in functions],
                                 FLAGS.warmup, FLAGS.steps)


def _reader_rate(split: DataSplit, config: train_config.TrainConfig) -> float:
  """Examples/s of the training input pipeline alone (no model)."""
  ds = model_input.model_dataset(split, config, True)
  it = iter(ds)
  for _ in range(3):  # warm-up: tracing, file cache, shuffle buffer
    next(it)
  start = time.perf_counter()
  for _ in range(FLAGS.reader_batches):
    next(it)
  return FLAGS.reader_batches * config.batch_size / (time.perf_counter() - start)


def _timed_functions(configs: Dict[str, train_config.TrainConfig],
                     schema: schema_lib.DatasetSchema) -> List[Tuple[str, Callable]]:
  """Each model's train step (and with --breakdown its forward pass and graph
  losses) as named tf.functions of a batch, models built in ``configs`` order."""
  functions = []
  for name, config in configs.items():
    model = config.build_model(
        FeatureConfig.from_schema(schema, embedding_dim=config.embedding_dim))
    functions.append((f"{name} train step", tf.function(model.train_step)))
    if FLAGS.breakdown:
      functions.append((f"{name} forward (inference)", tf.function(
          lambda b, m=model: m.forward(b, training=False)[0])))
      if getattr(model, "use_graph", False):
        functions.append((f"{name} graph losses only",
                          tf.function(model.graph_losses)))
  return functions


def _step_table(names: List[str], seconds: Dict[str, List[float]]) -> str:
  """Median, p10-p90, examples/s and the ratio to the first function, per function."""
  baseline = statistics.median(seconds[names[0]])
  rows = [("function", "median ms", "p10-p90 ms", "examples/s", f"x {names[0]}")]
  for name in names:
    s = sorted(seconds[name])
    median = statistics.median(s)
    rows.append((name, f"{1000 * median:.1f}",
                 f"{1000 * s[len(s) // 10]:.0f}-{1000 * s[(9 * len(s)) // 10]:.0f}",
                 f"{FLAGS.batch_size / median:,.0f}", f"{median / baseline:.2f}"))
  return timing.format_table(rows)


def benchmark(pattern: str) -> None:
  """Prints history fill, interleaved step times and the reader's rate."""
  schema = schema_lib.schema_for_files(reader.match_files(pattern))
  configs = {
      name: train_config.TrainConfig(
          model=name, batch_size=FLAGS.batch_size, max_clicks=FLAGS.max_clicks,
          max_queries=FLAGS.max_queries, max_seeds=FLAGS.max_seeds, seed=FLAGS.seed)
      for name in FLAGS.models
  }
  base = configs[FLAGS.models[0]]
  tf.keras.utils.set_random_seed(FLAGS.seed)
  split = DataSplit.resolve(pattern, "train", base.sequence_lengths())
  ds = model_input.model_dataset(split, base, True)
  batches = list(ds.take(FLAGS.batches))
  print(f"{len(batches)} batches of {FLAGS.batch_size} in memory; histories:")
  print(_history_report(batches, schema))

  functions = _timed_functions(configs, schema)
  print(f"timing {FLAGS.steps} interleaved calls of each function "
        f"(after {FLAGS.warmup} warm-up calls); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}")
  seconds = _time_interleaved(functions, batches)

  print(_step_table([name for name, _ in functions], seconds))

  train_steps = [f"{name} train step" for name in FLAGS.models]
  if "dnn" in FLAGS.models and "egin" in FLAGS.models:
    ratio = (statistics.median(seconds["egin train step"]) /
             statistics.median(seconds["dnn train step"]))
    print(f"RATIO EGIN/DNN train step (this run): {ratio:.2f}")
  rate = _reader_rate(split, base)
  slowest = max(statistics.median(seconds[n]) for n in train_steps)
  print(f"reader alone (training pipeline, B={FLAGS.batch_size}, "
        f"L={FLAGS.max_clicks}, M={FLAGS.max_queries}): {rate:,.0f} examples/s "
        f"vs {FLAGS.batch_size / slowest:,.0f} examples/s for the slowest train "
        f"step -> {'input' if rate < FLAGS.batch_size / slowest else 'model'} "
        "bound (both share the same cores during training)")


def main(argv):
  del argv
  unknown = [m for m in FLAGS.models if m not in MODELS]
  if unknown or not FLAGS.models:
    raise app.UsageError(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
  if FLAGS.data:
    benchmark(FLAGS.data)
  else:
    with tempfile.TemporaryDirectory(prefix="egin_step_time_") as tmp:
      benchmark(_simulate(FLAGS.users, FLAGS.seed, os.path.join(tmp, "sim")))


if __name__ == "__main__":
  app.run(main)
