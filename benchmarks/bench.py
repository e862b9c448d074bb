"""One benchmark command: every speed figure of egin-tf, measured in one run.

Usage:
  python benchmarks/bench.py [--users 2000] [--data 'DIR/train-*'] [--steps 10]
      [--sections reader,train,stream,tables,serving,readme]

Prints, on the same data (the simulator, 2,000 users, unless --data):

* reader: the input pipeline's ceiling (parse + pad, no model), B = 256 / 1024;
* train: training examples/s of DNN, DNN-cross, DIN, BST and EGIN at the paper's
  settings (L = M = S = 100, window 2, 100 negatives, d = 10, top-10) at B = 256
  and 1024, timed interleaved on batches held in memory; EGIN's step / DNN's and
  / DIN's; the graph losses' share of EGIN's step (1 - EGIN w/o graph / EGIN);
* fit: where `fit` loses its time against the step (DNN, DIN, EGIN, B = 256):
  the step on batches in memory, Keras' loop on them, `offline.train` (input
  pipeline on the same cores, callbacks, checkpoints) without and with
  ``--cache``, each as examples/s and as a share of the step;
* stream: `train_stream` vs `offline.train` (fit) examples/s on the same
  records, B = 256;
* tables: EGIN's step with item tables of 100k, 1M and 10M rows (1M-id queues),
  with the default (lazy) Adam and with tf-keras' Adam, and the process RSS;
* serving: p50 / p99 of one request of 100 candidates to the exported EGIN;
* readme: the README's main command, ``egin-tf train`` with default flags, as a
  subprocess: wall time and its AUC line.

With ``--profile_dir`` the train section also writes a TF profiler trace of EGIN's
step (TensorBoard's Profile tab) and prints its op time by scope.

Speed figures of one run are comparable with each other (interleaved on the same
cores); across runs on this shared machine only ratios are. Peak RSS is the
process's maximum resident set (``ru_maxrss``).
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

from absl import app
from absl import flags
from absl import logging

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.layers.feature_embeddings import FeatureConfig

FLAGS = flags.FLAGS
SECTIONS = ("reader", "train", "fit", "stream", "tables", "serving", "readme")
MODELS = ("dnn", "dnn_cross", "din", "bst", "egin")
L = 100


def define_flags() -> None:
  flags.DEFINE_string("data", None, "Training TFRecord glob; simulated when omitted.")
  flags.DEFINE_integer("users", 2000, "Users to simulate (without --data).")
  flags.DEFINE_integer("steps", 10, "Timed steps per model and batch size.")
  flags.DEFINE_integer("warmup", 2, "Untimed steps per function (tracing).")
  flags.DEFINE_list("batch_sizes", ["256", "1024"], "Batch sizes of the train section.")
  flags.DEFINE_integer("stream_records", 25_600, "Records of the stream-vs-fit run.")
  flags.DEFINE_integer("fit_records", 25_600, "Records of the fit section's data.")
  flags.DEFINE_integer("fit_epochs", 3, "Passes of each run of the fit section.")
  flags.DEFINE_list("table_rows", ["100000", "1000000", "10000000"],
                    "Item table sizes of the tables section.")
  flags.DEFINE_list("sections", list(SECTIONS), f"Sections to run, of {SECTIONS}.")
  flags.DEFINE_string("profile_dir", None, "Also write a TF profiler trace of 3 EGIN "
                      "steps at each batch size here (view: tensorboard --logdir "
                      "DIR, Profile tab; needs tensorboard-plugin-profile).")


def rss_mb() -> float:
  """The process's current resident set, in MB (Linux /proc)."""
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heading(text: str) -> None:
  print(f"\n== {text} (load average {os.getloadavg()[0]:.1f})", flush=True)


def config_for(model: str, batch_size: int, **kwargs) -> train_config.TrainConfig:
  return train_config.TrainConfig(model=model, batch_size=batch_size, max_clicks=L,
                                  max_queries=L, max_seeds=L, **kwargs)


def batches_in_memory(pattern: str, schema, batch_size: int, count: int = 6):
  dataset = reader.make_dataset(pattern, batch_size, max_clicks=L, max_queries=L,
                                max_seeds=L, schema=schema, shuffle=True, seed=0,
                                drop_remainder=True)
  return [b for _, b in zip(range(count), dataset)]


def time_interleaved(functions: Dict[str, Callable], batches: List,
                     steps: int, warmup: int) -> Dict[str, float]:
  """Median seconds per call of each function, calls interleaved (order flipped
  every round) so that other load hits every function alike."""
  for fn in functions.values():
    for b in batches[:warmup]:
      fn(b)
  seconds: Dict[str, List[float]] = {name: [] for name in functions}
  names = list(functions)
  for r in range(steps):
    for name in names if r % 2 == 0 else names[::-1]:
      batch = batches[r % len(batches)]
      start = time.perf_counter()
      tf.nest.map_structure(lambda t: t.numpy(), functions[name](batch))
      seconds[name].append(time.perf_counter() - start)
  return {name: statistics.median(s) for name, s in seconds.items()}


def reader_section(pattern: str, schema) -> None:
  heading("input pipeline ceiling: parse + pad, no model")
  for batch_size in (int(b) for b in FLAGS.batch_sizes):
    dataset = reader.make_dataset(pattern, batch_size, max_clicks=L, max_queries=L,
                                  max_seeds=L, schema=schema, shuffle=False,
                                  num_epochs=1)
    start, examples = time.perf_counter(), 0
    for batch in dataset:
      examples += int(batch[schema_lib.LABEL].shape[0])
    rate = examples / (time.perf_counter() - start)
    print(f"reader B={batch_size}: {rate:,.0f} examples/s ({examples:,} examples)")


def train_section(pattern: str, schema, features: FeatureConfig) -> None:
  heading(f"training steps, L = M = S = {L}, batches in memory")
  variants = {name: (name, {}) for name in MODELS}
  variants["egin w/o graph"] = ("egin", {"use_graph": False})
  for batch_size in (int(b) for b in FLAGS.batch_sizes):
    batches = batches_in_memory(pattern, schema, batch_size)
    steps = {}
    for name, (model, kwargs) in variants.items():
      built = config_for(model, batch_size, model_kwargs=kwargs).build_model(features)
      steps[name] = tf.function(built.train_step)
    seconds = time_interleaved(steps, batches, FLAGS.steps, FLAGS.warmup)
    if FLAGS.profile_dir:
      trace(steps["egin"], batches,
            os.path.join(FLAGS.profile_dir, f"egin_b{batch_size}"))
    print(f"B={batch_size}: model, ms/step, examples/s, step / DNN's, graph nodes "
          "of the traced step (before TF's graph optimizations)")
    for name, s in seconds.items():
      print(f"  {name:16s} {1000 * s:8.1f} {batch_size / s:10,.0f} "
            f"{s / seconds['dnn']:6.2f} {graph_nodes(steps[name], batches[0]):8,}")
    print(f"  RATIO B={batch_size} EGIN/DNN {seconds['egin'] / seconds['dnn']:.2f} "
          f"(target <= 2)  EGIN/DIN {seconds['egin'] / seconds['din']:.2f}  graph "
          f"losses' share of EGIN's step {1 - seconds['egin w/o graph'] / seconds['egin']:.0%}")


def graph_nodes(step, batch) -> int:
  """Nodes of a traced step's graph and of the functions it calls: a count of the
  ops the executor dispatches per step, which does not depend on the load."""
  graph = step.get_concrete_function(batch).graph.as_graph_def()
  return len(graph.node) + sum(len(f.node_def) for f in graph.library.function)


def fit_section(pattern: str, schema, features: FeatureConfig, tmp: str) -> None:
  """Where `fit` loses its time against the step, model by model.

  On the first ``--fit_records`` records, ``--fit_epochs`` passes of B = 256
  (a progress chunk per pass): the step on batches in memory; Keras' `fit` loop
  on the same in-memory batches (its per-step overhead); `offline.train` (the
  input pipeline on the same cores, callbacks, checkpoints), without and with
  ``--cache``. The `train` figures are steady speeds: passes after the first
  (which traces and fills the shuffle buffer or the cache).
  """
  heading(f"whole fit, B = 256, {FLAGS.fit_records:,} records x {FLAGS.fit_epochs} "
          "passes, steady passes (after the first): examples/s and / the step's")
  data = os.path.join(tmp, "fit_data")
  _first_records(pattern, data, FLAGS.fit_records)
  pattern = os.path.join(data, "train-*")
  batches = batches_in_memory(pattern, schema, 256)
  steps_per_pass = FLAGS.fit_records // 256
  rates = {}
  for model in ("dnn", "din", "egin"):
    built = config_for(model, 256).build_model(features)
    step = 256 / time_interleaved({model: tf.function(built.train_step)}, batches,
                                  FLAGS.steps, FLAGS.warmup)[model]
    rates[model] = {"step": step,
                    "keras fit, batches in memory": keras_loop_rate(
                        model, features, batches, steps_per_pass)}
    for cache in (False, True):
      result = offline.train(
          pattern, os.path.join(tmp, f"fit_{model}_{cache}"),
          config_for(model, 256, epochs=FLAGS.fit_epochs, log_every=steps_per_pass,
                     cache=cache), verbose=0, print_fn=lambda _: None)
      steady = result["chunk_seconds"][1:]
      rates[model]["train" + (" --cache" if cache else "")] = (
          256 * steps_per_pass * len(steady) / sum(steady))
    print("  " + model + ": " + ",  ".join(
        f"{name} {rate:,.0f} ({rate / step:.2f})"
        for name, rate in rates[model].items()), flush=True)
  print(f"  RATIO DNN train/step {rates['dnn']['train'] / rates['dnn']['step']:.2f} "
        f"(--cache {rates['dnn']['train --cache'] / rates['dnn']['step']:.2f}; "
        f"target >= 0.8)  EGIN/DIN train {rates['egin']['train'] / rates['din']['train']:.2f} "
        f"(--cache {rates['egin']['train --cache'] / rates['din']['train --cache']:.2f}; "
        "target >= 1)")


def keras_loop_rate(model: str, features: FeatureConfig, batches: List,
                    steps: int) -> float:
  """Examples/s of Keras' `fit` over batches held in memory, after a first call
  that traces."""
  built = config_for(model, 256).build_model(features)
  stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
  dataset = tf.data.Dataset.from_tensor_slices(stacked).repeat()
  built.fit(dataset, steps_per_epoch=2, verbose=0)
  start = time.perf_counter()
  built.fit(dataset, steps_per_epoch=steps, verbose=0)
  return 256 * steps / (time.perf_counter() - start)


def trace(step: Callable, batches: List, logdir: str) -> None:
  """A TF profiler trace of three (already traced) steps."""
  tf.profiler.experimental.start(logdir)
  for i in range(3):
    with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
      tf.nest.map_structure(lambda t: t.numpy(), step(batches[i % len(batches)]))
  tf.profiler.experimental.stop()
  print(f"  profiler trace of EGIN's step -> {logdir}; op time by scope:")
  for line in profile_summary(logdir, steps=3):
    print("    " + line)


def profile_summary(logdir: str, steps: int, top: int = 8) -> List[str]:
  """Op time per top-level scope of a trace (summed over TF's compute threads)."""
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  path = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  scopes = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if line.name.startswith("tf_Compute"):
        for event in line.events:
          name = names.get(event.metadata_id, "?")
          parts = name.split("/")
          scope = parts[0].split(":")[0]
          if scope == "gradient_tape" and len(parts) > 1:
            scope = "gradient of " + parts[1].split(":")[0]
          elif scope.startswith("cond"):
            scope = "optimizer (guarded apply)"
          elif scope == "ExecutorState":
            scope = "executor overhead per op"
          scopes[scope] += event.duration_ps
  total = sum(scopes.values())
  return [f"{value / 1e9 / steps:8.1f} ms/step {100 * value / total:5.1f}%  {scope}"
          for scope, value in scopes.most_common(top)]


def stream_section(pattern: str, tmp: str) -> None:
  from data_pipeline import stream as stream_lib  # pylint: disable=g-import-not-at-top
  from egin_tf.train import stream as streaming  # pylint: disable=g-import-not-at-top
  heading(f"stream loop vs fit, B = 256, {FLAGS.stream_records:,} records, one pass")
  data = os.path.join(tmp, "stream_data")
  stream_dir = os.path.join(tmp, "stream")
  _first_records(pattern, data, FLAGS.stream_records)
  stream_lib.write_time_ordered(os.path.join(data, "train-*"), stream_dir, 5000)
  quiet = lambda _: None  # noqa: E731
  for model in ("dnn", "egin"):
    config = config_for(model, 256, steps=FLAGS.stream_records // 256,
                        log_every=FLAGS.stream_records // 256)
    fit = offline.train(os.path.join(data, "train-*"),
                        os.path.join(tmp, f"fit_{model}"), config, verbose=0,
                        print_fn=quiet)
    stream = streaming.train_stream(
        stream_dir, os.path.join(tmp, f"stream_{model}"), config,
        train_config.StreamConfig(checkpoint_every_steps=10**9,
                                  checkpoint_every_seconds=None, log_every=10**9),
        print_fn=quiet)
    stream_rate = stream["examples_this_run"] / stream["seconds"]
    print(f"  {model:5s} fit {fit['examples_per_second']:8,.0f} ex/s  stream "
          f"{stream_rate:8,.0f} ex/s  RATIO stream/fit "
          f"{stream_rate / fit['examples_per_second']:.2f}")


def _first_records(pattern: str, out: str, count: int) -> None:
  """The first ``count`` records of a dataset as a dataset folder of its own."""
  from data_pipeline.writer import DatasetWriter  # pylint: disable=g-import-not-at-top
  schema = schema_lib.schema_for_files(reader.match_files(pattern))
  records = tf.data.TFRecordDataset(reader.match_files(pattern)).take(count)
  with DatasetWriter(out, num_cats=schema.num_cats) as writer:
    for raw in records.as_numpy_iterator():
      imp = _from_example(tf.train.Example.FromString(raw), schema.num_cats)
      writer.write_serialized("train", imp, raw)
    writer.commit(source=f"first {count} records of {pattern}")


def _from_example(example, num_cats: int):
  if hasattr(schema_lib, "from_example"):
    return schema_lib.from_example(example, num_cats)
  # Code from before schema.from_example (benchmarking an older commit).
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                  "experiments"))
  import paper_tables  # pylint: disable=g-import-not-at-top
  return paper_tables.impression_from_example(example, num_cats)


def tables_section(pattern: str, schema, features: FeatureConfig) -> None:
  import dataclasses  # pylint: disable=g-import-not-at-top
  heading("EGIN step (B = 256) by item table size; 1M-id queues")
  batches = batches_in_memory(pattern, schema, 256)
  optimizers = ["lazy_adam", "adam"] if hasattr(train_config.TrainConfig,
                                                "optimizer") else ["adam"]
  first = {}
  for rows in (int(r) for r in FLAGS.table_rows):
    big = dataclasses.replace(features, item_buckets=rows)
    for optimizer in optimizers:
      extra = {"optimizer": optimizer} if len(optimizers) > 1 else {}
      model = config_for("egin", 256, **extra).build_model(big)
      seconds = time_interleaved({"egin": tf.function(model.train_step)}, batches,
                                 FLAGS.steps, FLAGS.warmup)["egin"]
      first.setdefault(optimizer, seconds)
      print(f"  {rows:>10,} rows  {optimizer:9s} {1000 * seconds:8.1f} ms/step  "
            f"x{seconds / first[optimizer]:.2f} of the {FLAGS.table_rows[0]}-row "
            f"step  RSS {rss_mb():,.0f} MB  peak {peak_rss_mb():,.0f} MB",
            flush=True)
      del model


def serving_section(pattern: str, tmp: str) -> None:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import serving_latency  # pylint: disable=g-import-not-at-top
  from egin_tf.serve import export  # pylint: disable=g-import-not-at-top
  heading("serving: one request of 100 candidates to the exported EGIN")
  model_dir = os.path.join(tmp, "serve_model")
  offline.train(pattern, model_dir, config_for("egin", 256, steps=20, log_every=20),
                verbose=0, print_fn=lambda _: None)
  trained = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  examples, _ = serving_latency.typical_request(pattern, trained.schema, 100,
                                                100_000)
  version = export.export_saved_model(trained.model, trained.schema,
                                      trained.lengths, os.path.join(tmp, "serving"),
                                      warmup_examples=examples)
  serving_latency.benchmark(version, pattern, trained.schema, 100, requests=200,
                            warmup=10, scan_records=100_000)


def readme_section(tmp: str) -> None:
  heading("the README's main command: egin-tf train (default flags)")
  start = time.perf_counter()
  done = subprocess.run(["egin-tf", "train", "--model_dir",
                         os.path.join(tmp, "readme_run")],
                        capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  lines = [line for line in done.stdout.splitlines() if "AUC" in line
           or "test" in line or "oracle" in line or "training" in line]
  print(f"egin-tf train: exit {done.returncode}, {seconds:.0f} s wall")
  print("\n".join("  " + line for line in lines[-6:]))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  unknown = set(FLAGS.sections) - set(SECTIONS)
  if unknown:
    raise app.UsageError(f"--sections: unknown {sorted(unknown)}; of {SECTIONS}")
  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="egin_bench_") as tmp:
    pattern = FLAGS.data
    if pattern is None:
      from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
      simulator.generate(simulator.SimulatorConfig(num_users=FLAGS.users, seed=0),
                         os.path.join(tmp, "sim"))
      pattern = os.path.join(tmp, "sim", "train-*")
      print(f"simulated {FLAGS.users} users in {time.perf_counter() - start:.0f} s")
    schema = schema_lib.schema_for_files(reader.match_files(pattern))
    features = FeatureConfig.from_schema(schema)
    print(f"{os.cpu_count()} CPUs; TensorFlow {tf.__version__}; data {pattern}")
    runs = {"reader": lambda: reader_section(pattern, schema),
            "train": lambda: train_section(pattern, schema, features),
            "fit": lambda: fit_section(pattern, schema, features, tmp),
            "stream": lambda: stream_section(pattern, tmp),
            "tables": lambda: tables_section(pattern, schema, features),
            "serving": lambda: serving_section(pattern, tmp),
            "readme": lambda: readme_section(tmp)}
    for section in SECTIONS:
      if section in FLAGS.sections:
        runs[section]()
  print(f"\npeak RSS {peak_rss_mb():,.0f} MB; bench.py took "
        f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
  define_flags()
  app.run(main)
