"""The model-ready input of a training run: a `DataSplit` batched as a
`TrainConfig` says, and whether its parsed batches fit in memory."""

import os
from typing import Callable, Optional

from data_pipeline import reader
from data_pipeline.data_split import DataSplit
from data_pipeline.tf_env import tf
from egin_tf.train.config import TrainConfig


def model_dataset(split: DataSplit, config: TrainConfig, training: bool,
                  batch_size: Optional[int] = None,
                  shard: Optional[tuple] = None,
                  cache: bool = False) -> tf.data.Dataset:
  """The model-ready dataset of a split under a `TrainConfig` (its batch,
  shuffle buffer and seed): shuffled and repeated for training, one ordered
  pass otherwise; ``shard`` and ``cache`` as in `reader.make_dataset`."""
  return split.dataset(
      batch_size or config.batch_size, shuffle=training,
      shuffle_buffer=config.shuffle_buffer, num_epochs=None if training else 1,
      seed=config.seed, drop_remainder=training, shard=shard, cache=cache)


def cache_fits(split: DataSplit, print_fn: Callable[[str], None] = print) -> bool:
  """Whether the padded examples of ``split`` fit in half the memory available
  now (`TrainConfig.cache`); says so either way."""
  needed = split.impressions * reader.cached_example_bytes(split.schema, split.lengths)
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
