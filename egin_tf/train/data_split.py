"""The model-ready input of a training run: datasets, impression counts, the cache check."""

import os
from typing import Callable, Optional

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.train.config import TrainConfig, sequence_lengths


def model_dataset(pattern: str, config: TrainConfig, training: bool,
                  schema: schema_lib.DatasetSchema,
                  batch_size: Optional[int] = None,
                  shard: Optional[tuple] = None,
                  cache: bool = False) -> tf.data.Dataset:
  """The model-ready dataset of a `TrainConfig` (`reader.make_dataset` with its
  lengths, batch and seed): shuffled and repeated for training, one ordered pass
  otherwise; ``shard`` and ``cache`` as in `reader.make_dataset`."""
  return reader.make_dataset(
      pattern, batch_size or config.batch_size,
      max_clicks=config.max_clicks, max_queries=config.max_queries,
      max_seeds=config.max_seeds, schema=schema,
      shuffle=training, shuffle_buffer=config.shuffle_buffer,
      num_epochs=None if training else 1, seed=config.seed,
      drop_remainder=training, shard=shard, cache=cache)


def cache_fits(pattern: str, config: TrainConfig, schema: schema_lib.DatasetSchema,
               print_fn: Callable[[str], None] = print) -> bool:
  """Whether the padded examples of ``pattern`` fit in half the memory available
  now (`TrainConfig.cache`); says so either way."""
  needed = count_impressions(pattern, schema) * reader.cached_example_bytes(
      schema, sequence_lengths(config))
  available = available_memory_bytes()
  fits = needed <= available / 2
  print_fn(f"--cache: the parsed training batches take {needed / 2**30:.2f} GiB "
           f"of the {available / 2**30:.1f} GiB available: "
           + ("kept in memory after the first epoch" if fits else
              "more than half, so every epoch reads and parses the files"))
  return fits


def available_memory_bytes() -> int:
  """Memory the kernel can give this process without swapping (MemAvailable)."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def count_impressions(pattern: str, schema: schema_lib.DatasetSchema) -> int:
  """Impressions in the files of a pattern, from ``schema.json``'s split counts."""
  names = {os.path.basename(f) for f in reader.match_files(pattern)}
  total = 0
  for split in schema.splits.values():
    for name in split.get("files", []):
      if name in names:
        total += split["impressions"] / max(len(split["files"]), 1)
  return int(total)
