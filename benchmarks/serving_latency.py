"""Serving latency of an exported model on the typical search request.

Usage:
  python benchmarks/serving_latency.py [--model egin] [--candidates 100]
      [--requests 300] [--max_history 100]
      [--model_dir DIR | --saved_model VERSION_DIR --data PATTERN]

Smoke run (about a minute):
  python benchmarks/serving_latency.py --users 100 --train_steps 2 \
      --max_history 20 --candidates 20 --requests 20 --warmup 2

Without --model_dir or --saved_model it simulates --users users, trains --model
for --train_steps steps with L = M = S = --max_history, and exports it (with the
request as TF Serving warm-up records); with --model_dir it exports that trained
model; with --saved_model it serves that version folder (and --data gives the
histories and candidates). The SavedModel is loaded with `tf.saved_model.load`,
in this process, like TF Serving would run its graph (no RPC, no batching).

The request is the typical search: one user, --candidates candidate items, and
the longest click, query and seed histories found in the data (so every history
fills its L / M / S). It is timed through the three signatures, interleaved
(order flipped every round) after --warmup untimed calls:

* ``serving_default``: the N serialized tf.Examples, parsed in the graph. Each
  example repeats the user's histories, so parsing grows with N x (L + M + S);
* ``serving_context``: the same request as one context Example (user, query,
  histories) and N candidate Examples (item features only), as TF-Ranking's
  context + examples: the histories are sent and parsed once;
* ``predict_padded``: the same request already as padded tensors (the caller
  parses), which shows what parsing costs.

Prints p50 / p90 / p95 / p99 latency, requests/s and candidates/s of one
sequential client, the first call after loading (what warm-up hides), the
serving_context / serving_default ratios of p50 and p95 (same run), the request
bytes of both Example forms (serialized Examples, gRPC PredictRequest, REST JSON
body), the SavedModel sizes and the machine's load average (other processes
skew latency).
"""

import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Tuple

from absl import app
from absl import flags
from absl import logging

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.schema import Event
from data_pipeline.tf_env import tf
from egin_tf.serve import export
from egin_tf.serve import requests as serving_requests
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.models import MODELS

import timing  # pylint: disable=g-bad-import-order  (a sibling script module)

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags; defined only when run as a script, so importing this
  module (tests, your own code) never collides with other absl flags."""
  timing.define_common_flags(users=400, batch_size=256, warmup=10)
  flags.adopt_module_key_flags(timing)
  flags.DEFINE_string("model_dir", None, "A model directory of `egin-tf train` "
                      "to export and serve.")
  flags.DEFINE_string("saved_model", None, "An exported version folder to serve "
                      "as it is (needs --data).")
  flags.DEFINE_string("data", None, "Impression TFRecord glob the request's "
                      "histories and candidates come from; default: the model's "
                      "training data, or a simulated dataset.")
  flags.DEFINE_string("model", "egin", "Registered model to train when neither "
                      "--model_dir nor --saved_model is given.")
  flags.DEFINE_integer("train_steps", 20, "Training steps of the model to serve.")
  flags.DEFINE_integer("max_history", 100, "L = M = S of the trained model.")
  flags.DEFINE_integer("candidates", 100, "Candidate items per request (N).")
  flags.DEFINE_integer("requests", 300, "Timed requests per signature.")
  flags.DEFINE_integer("scan_records", 100_000, "Records scanned for the longest "
                       "histories and the candidates.")


def _values(feature: Dict[str, tf.train.Feature], key: str) -> list:
  if key not in feature:
    return []
  kind = feature[key].WhichOneof("kind")
  return list(getattr(feature[key], kind).value) if kind else []


def _history(feature, seq: schema_lib.SequenceFeatures, c: int) -> List[Event]:
  ids, times, cats = (_values(feature, k) for k in (seq.ids, seq.times, seq.cats))
  return [Event(i, t, [x for x in cats[j * c:(j + 1) * c] if x])
          for j, (i, t) in enumerate(zip(ids, times))]


def _scan(pattern: str, schema: schema_lib.DatasetSchema, num_candidates: int,
          scan_records: int) -> Tuple[Dict[str, List[Event]], Dict, Dict[int, Dict]]:
  """The longest history of each sequence, the features of the impression with
  the longest click history, and the first ``num_candidates`` distinct items."""
  longest: Dict[str, List[Event]] = {seq.name: [] for seq in schema_lib.SEQUENCES}
  anchor = None
  candidates: Dict[int, Dict] = {}
  files = reader.match_files(pattern)
  for record in tf.data.TFRecordDataset(files).take(scan_records):
    f = tf.train.Example.FromString(record.numpy()).features.feature
    for seq in schema_lib.SEQUENCES:
      if len(_values(f, seq.ids)) > len(longest[seq.name]):
        longest[seq.name] = _history(f, seq, schema.num_cats)
        if seq is schema_lib.CLICKS:
          anchor = f
    item = _values(f, schema_lib.ITEM_ID)[0]
    if len(candidates) < num_candidates and item not in candidates:
      candidates[item] = _candidate(f, schema)
  if anchor is None or len(candidates) < num_candidates:
    raise ValueError(f"{pattern}: the first {scan_records} records have no click "
                     f"history or fewer than {num_candidates} distinct items")
  return longest, anchor, candidates


def _candidate(feature, schema: schema_lib.DatasetSchema) -> Dict:
  """An impression's item: its categories and dense / categorical features."""
  return {
      "cats": [x for x in _values(feature, schema_lib.ITEM_CATS) if x],
      "dense": {n: (_values(feature, schema_lib.DENSE_PREFIX + n) or [0.0])[0]
                for n in schema.dense_features},
      "cat": {n: (_values(feature, schema_lib.CAT_PREFIX + n) or [0])[0]
              for n in schema.cat_features}}


def typical_request(pattern: str, schema: schema_lib.DatasetSchema,
                    num_candidates: int, scan_records: int
                    ) -> Tuple[serving_requests.ContextRequest, Dict]:
  """The search request of the longest histories in the data, and its makeup.

  The user, time and query are those of the impression with the longest click
  history; its query and seed histories are the longest ones found (in any
  impression). Candidates are the first distinct items, with their own
  categories and dense / categorical features.
  """
  c = schema.num_cats
  longest, anchor, candidates = _scan(pattern, schema, num_candidates, scan_records)
  ids = list(candidates)
  start = time.perf_counter()
  request = serving_requests.context_request(
      num_cats=c, item_ids=ids, item_cats=[candidates[i]["cats"] for i in ids],
      dense={n: [candidates[i]["dense"][n] for i in ids]
             for n in schema.dense_features},
      categorical={n: [candidates[i]["cat"][n] for i in ids]
                   for n in schema.cat_features},
      user_id=_values(anchor, schema_lib.USER_ID)[0],
      time=_values(anchor, schema_lib.TIME)[0],
      query_id=_values(anchor, schema_lib.QUERY_ID)[0],
      query_cats=[x for x in _values(anchor, schema_lib.QUERY_CATS) if x],
      clicks=longest["clicks"], queries=longest["queries"],
      seeds=longest["seeds"] if schema.has_seeds else None)
  makeup = {name: len(events) for name, events in longest.items()}
  makeup["build_ms"] = 1000 * (time.perf_counter() - start)
  return request, makeup


def request_bytes(request) -> Tuple[int, int, int]:
  """Bytes of a request (either form): its serialized Examples, its gRPC
  PredictRequest and its REST JSON body."""
  if isinstance(request, serving_requests.ContextRequest):
    examples = len(request.context) + sum(len(e) for e in request.examples)
  else:
    examples = sum(len(e) for e in request)
  return (examples, serving_requests.predict_request(request).ByteSize(),
          len(serving_requests.rest_predict_body(request)))


def padded_lengths(loaded) -> reader.SequenceLengths:
  """L, M, S of a loaded SavedModel, from its ``predict_padded`` input shapes."""
  spec = loaded.signatures["predict_padded"].structured_input_signature[1]
  return reader.SequenceLengths(*(int(spec[seq.ids].shape[1])
                                  for seq in schema_lib.SEQUENCES))


def padded_inputs(examples: List[bytes], schema: schema_lib.DatasetSchema,
                  lengths: reader.SequenceLengths) -> Dict[str, tf.Tensor]:
  """The request as ``predict_padded``'s keyword inputs (parsed outside)."""
  parsed = tf.io.parse_example(tf.constant(examples),
                               reader.feature_spec(schema, serving=True))
  batch = reader.dense_batch(parsed, schema, lengths)
  return {k.replace("/", "_"): v for k, v in batch.items()
          if k != schema_lib.LABEL}


def folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(path) for f in files)


def _percentile(sorted_values: List[float], q: float) -> float:
  return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


DEFAULT = "serving_default (examples)"
CONTEXT = "serving_context (context + candidates)"
PADDED = "predict_padded (tensors)"


def _signature_calls(loaded, request: serving_requests.ContextRequest,
                     padded: Dict[str, tf.Tensor]) -> List[Tuple[str, Callable]]:
  """One request per signature, as calls that wait for the scores."""
  examples = tf.constant(serving_requests.flatten_request(request))
  context = tf.constant([request.context])
  candidates = tf.constant([request.examples])
  serve_examples = loaded.signatures[serving_requests.SIGNATURE]
  serve_padded = loaded.signatures["predict_padded"]
  # .numpy() waits for the result: the time covers the whole request.
  calls = [(DEFAULT, lambda: serve_examples(examples=examples)["pctr"].numpy())]
  if serving_requests.CONTEXT_SIGNATURE in loaded.signatures:  # older exports lack it
    serve_context = loaded.signatures[serving_requests.CONTEXT_SIGNATURE]
    calls.append((CONTEXT, lambda: serve_context(
        context=context, examples=candidates)["pctr"].numpy()))
  calls.append((PADDED, lambda: serve_padded(**padded)["pctr"].numpy()))
  return calls


def _first_calls(calls) -> Dict[str, float]:
  first = {}
  for name, call in calls:
    start = time.perf_counter()
    call()
    first[name] = time.perf_counter() - start
  return first


def _print_latencies(calls, seconds, first, num_candidates: int) -> None:
  rows = [("signature", "first call ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms",
           "requests/s", "candidates/s")]
  for name, _ in calls:
    s = sorted(seconds[name])
    mean = statistics.fmean(s)
    rows.append((name, f"{1000 * first[name]:.1f}",
                 *(f"{1000 * _percentile(s, q):.2f}"
                   for q in (0.5, 0.9, 0.95, 0.99)),
                 f"{1 / mean:,.1f}", f"{num_candidates / mean:,.0f}"))
  print(timing.format_table(rows))
  p50 = {name: statistics.median(seconds[name]) for name, _ in calls}
  print(f"parsing the examples in the graph: {1 - p50[PADDED] / p50[DEFAULT]:.0%} "
        "of the serving_default p50 (the rest is the model)")
  if CONTEXT in seconds:
    p95 = {n: _percentile(sorted(seconds[n]), 0.95) for n in (DEFAULT, CONTEXT)}
    print(f"serving_context / serving_default: p50 {p50[CONTEXT] / p50[DEFAULT]:.2f}x"
          f", p95 {p95[CONTEXT] / p95[DEFAULT]:.2f}x (same run, interleaved)")


def _print_request_bytes(request: serving_requests.ContextRequest) -> None:
  forms = {DEFAULT: serving_requests.flatten_request(request), CONTEXT: request}
  sizes = {name: request_bytes(form) for name, form in forms.items()}
  rows = [("request bytes", "Examples", "gRPC PredictRequest", "REST JSON body")]
  rows += [(name, *(f"{b:,}" for b in sizes[name])) for name in forms]
  rows.append(("serving_default / serving_context",
               *(f"{d / c:.1f}x" for d, c in zip(sizes[DEFAULT], sizes[CONTEXT]))))
  print(timing.format_table(rows))


def benchmark(version_dir: str, pattern: str, schema: schema_lib.DatasetSchema,
              num_candidates: int, requests: int, warmup: int,
              scan_records: int) -> None:
  """Loads a version folder and prints the latency table of its signatures."""
  load_avg = os.getloadavg()[0]
  start = time.perf_counter()
  loaded = tf.saved_model.load(version_dir)
  load_seconds = time.perf_counter() - start
  lengths = padded_lengths(loaded)
  request, makeup = typical_request(pattern, schema, num_candidates, scan_records)
  padded = padded_inputs(serving_requests.flatten_request(request), schema,
                         lengths)
  calls = _signature_calls(loaded, request, padded)
  first = _first_calls(calls)
  print(f"request: 1 user, {num_candidates} candidates, histories of "
        f"{makeup['clicks']} clicks / {makeup['queries']} queries / "
        f"{makeup['seeds']} seeds (served L={lengths.max_clicks}, "
        f"M={lengths.max_queries}, S={lengths.max_seeds}); built in Python in "
        f"{makeup['build_ms']:.0f} ms")
  _print_request_bytes(request)
  print(f"timing {requests} interleaved requests per signature after {warmup} "
        f"warm-up requests; {os.cpu_count()} CPUs, load average {load_avg:.1f}")
  # Every round sends the same request: the round index is not needed.
  seconds = timing.time_interleaved(
      [(name, lambda _, c=call: c()) for name, call in calls], warmup, requests)
  _print_latencies(calls, seconds, first, num_candidates)
  warmup_file = os.path.join(version_dir, serving_requests.ASSETS_EXTRA,
                             serving_requests.WARMUP_FILE)
  warmup_bytes = os.path.getsize(warmup_file) if os.path.exists(warmup_file) else 0
  print(f"SavedModel {version_dir}: {folder_bytes(version_dir):,} bytes in total, "
        f"{folder_bytes(os.path.join(version_dir, 'variables')):,} bytes of "
        f"variables, {warmup_bytes:,} bytes of warm-up requests; "
        f"tf.saved_model.load took {load_seconds:.1f} s")
  print(f"load average now {os.getloadavg()[0]:.1f} (was {load_avg:.1f})")


def _train_and_export(pattern: str, model_dir: str, export_dir: str) -> str:
  config = train_config.TrainConfig(
      model=FLAGS.model, batch_size=FLAGS.batch_size, steps=FLAGS.train_steps,
      log_every=FLAGS.train_steps, max_clicks=FLAGS.max_history,
      max_queries=FLAGS.max_history, max_seeds=FLAGS.max_history, seed=FLAGS.seed)
  start = time.perf_counter()
  offline.train(pattern, model_dir, config, verbose=0, print_fn=lambda _: None)
  print(f"trained {FLAGS.model} for {FLAGS.train_steps} steps of "
        f"{FLAGS.batch_size} in {time.perf_counter() - start:.0f} s")
  return _export(model_dir, export_dir)


def _export(model_dir: str, export_dir: str) -> str:
  trained = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  request, _ = typical_request(model_dir_lib.saved_train_pattern(model_dir), trained.schema,
                               FLAGS.candidates, FLAGS.scan_records)
  start = time.perf_counter()
  path = export.export_saved_model(
      trained.model, trained.schema, trained.lengths, export_dir,
      warmup_examples=serving_requests.flatten_request(request))
  print(f"exported {trained.config.model} with warm-up requests in "
        f"{time.perf_counter() - start:.0f} s -> {path}")
  return path


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep the table readable
  if FLAGS.saved_model and not FLAGS.data:
    raise app.UsageError("--saved_model needs --data (histories and candidates)")
  if FLAGS.model not in MODELS:
    raise app.UsageError(f"--model {FLAGS.model!r}: choose from {sorted(MODELS)}")
  with tempfile.TemporaryDirectory(prefix="egin_serving_latency_") as tmp:
    if FLAGS.saved_model:
      version_dir, pattern = FLAGS.saved_model, FLAGS.data
    elif FLAGS.model_dir:
      pattern = FLAGS.data or model_dir_lib.saved_train_pattern(FLAGS.model_dir)
      version_dir = _export(FLAGS.model_dir, os.path.join(tmp, "serving"))
    else:
      from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
      out = os.path.join(tmp, "sim")
      start = time.perf_counter()
      simulator.generate(simulator.SimulatorConfig(num_users=FLAGS.users,
                                                   seed=FLAGS.seed), out)
      print(f"simulated {FLAGS.users} users in {time.perf_counter() - start:.0f} s")
      pattern = FLAGS.data or os.path.join(out, "train-*")
      version_dir = _train_and_export(os.path.join(out, "train-*"),
                                      os.path.join(tmp, "model"),
                                      os.path.join(tmp, "serving"))
    schema = schema_lib.schema_for_files(reader.match_files(pattern))
    benchmark(version_dir, pattern, schema, FLAGS.candidates, FLAGS.requests,
              FLAGS.warmup, FLAGS.scan_records)


if __name__ == "__main__":
  define_flags()
  app.run(main)
