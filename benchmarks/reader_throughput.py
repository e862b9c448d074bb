"""Reader throughput: examples/s of `make_dataset` at a given batch and lengths.

Usage: python benchmarks/reader_throughput.py [--users 2000] [--batch_size 1024]
       [--max_clicks 100] [--max_queries 100] [--data PATTERN]

Simulates a dataset (unless --data is given), then reads it several times and
prints examples/s of the reader alone (parse + pad + batch, no model).
"""

import os
import tempfile
import time

from absl import app
from absl import flags

import egin_tf.train  # noqa: F401  (first: Keras 2 before anything uses tf.keras)
from data_pipeline import reader

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "TFRecord glob; simulated when omitted.")
flags.DEFINE_integer("users", 2000, "Users to simulate.")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("max_clicks", 100, "L.")
flags.DEFINE_integer("max_queries", 100, "M.")
flags.DEFINE_integer("repeats", 3, "Timed passes over the data.")


def main(argv):
  del argv
  pattern = FLAGS.data
  if pattern is None:
    from data_pipeline import simulator  # pylint: disable=g-import-not-at-top
    out = os.path.join(tempfile.mkdtemp(), "sim")
    start = time.perf_counter()
    oracle = simulator.generate(
        simulator.SimulatorConfig(num_users=FLAGS.users, seed=0), out)
    seconds = time.perf_counter() - start
    total = oracle["train_impressions"] + oracle["test_impressions"]
    print(f"simulator: {total:,} impressions in {seconds:.1f} s = "
          f"{total / seconds:,.0f} impressions/s")
    pattern = os.path.join(out, "*.tfrecord")
  ds = reader.make_dataset(pattern, FLAGS.batch_size,
                           max_clicks=FLAGS.max_clicks,
                           max_queries=FLAGS.max_queries)
  for _ in ds:  # warm-up: file cache and tracing
    pass
  rates = []
  for _ in range(FLAGS.repeats):
    n, start = 0, time.perf_counter()
    for batch in ds:
      n += int(batch["label"].shape[0])
    rates.append(n / (time.perf_counter() - start))
  print(f"reader: batch {FLAGS.batch_size}, L={FLAGS.max_clicks}, "
        f"M={FLAGS.max_queries}: {max(rates):,.0f} examples/s "
        f"(best of {FLAGS.repeats}; all: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
  app.run(main)
