"""Simulating the log and writing it as a dataset with its oracle."""

import json
import tempfile
import time as time_lib
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline import writer as writer_lib
from data_pipeline.simulator.catalog import build_catalog
from data_pipeline.simulator.config import NUM_CATS, ORACLE_FILE, POSITION, SimulatorConfig
from data_pipeline.simulator.oracle import oracle_report
from data_pipeline.simulator.users import simulate_user


def simulate(config: SimulatorConfig
             ) -> Iterator[Tuple[str, schema_lib.Impression, float]]:
  """Yields ``(split, impression, true click probability)``, user by user.

  Within a user impressions are in time order; splits are "train" and "test".
  """
  config.validate()
  catalog = build_catalog(config)
  for user_id in range(1, config.num_users + 1):
    yield from simulate_user(config, catalog, user_id)


def generate(config: SimulatorConfig, out_dir: str, num_shards: int = 2,
             overwrite: bool = False,
             progress: Optional[Callable[[int], None]] = None,
             progress_every: int = 10000) -> dict:
  """Writes the simulated log as a dataset (train/test shards, schema.json, oracle).

  Records are serialized deterministically (sorted feature keys), so the same
  config gives byte-identical shards in every process.

  Args:
    config: the simulator's knobs.
    out_dir: the dataset folder (created atomically).
    num_shards: shards per split.
    overwrite: replace ``out_dir`` if it exists.
    progress: called with the number of impressions written so far, every
      ``progress_every`` impressions and once at the end.

  Returns:
    The oracle dict (`oracle_report`), also written to ``oracle.json``.
  """
  config.validate()
  if progress_every < 1:
    raise ValueError(f"progress_every must be >= 1, got {progress_every}")
  splits, labels, probs, users, positions = [], [], [], [], []
  with writer_lib.DatasetWriter(out_dir, num_cats=NUM_CATS, num_shards=num_shards,
                                overwrite=overwrite) as writer:
    for split, imp, prob in simulate(config):
      record = schema_lib.to_example(imp, NUM_CATS).SerializeToString(
          deterministic=True)
      writer.write_serialized(split, imp, record)
      splits.append(split)
      labels.append(imp.label)
      probs.append(prob)
      users.append(imp.user_id)
      positions.append(imp.categorical[POSITION])
      if progress is not None and len(labels) % progress_every == 0:
        progress(len(labels))
    report = oracle_report(config, np.asarray(splits), np.asarray(labels),
                           np.asarray(probs), np.asarray(users),
                           np.asarray(positions))
    writer.commit(source=f"data_pipeline.simulator seed={config.seed}",
                  extra_files={ORACLE_FILE: json.dumps(report, indent=2,
                                                       sort_keys=True) + "\n"})
  if progress is not None and len(labels) % progress_every:
    progress(len(labels))
  return report


def benchmark(config: SimulatorConfig, out_dir: Optional[str] = None) -> dict:
  """Generates ``config`` (into a temporary folder by default) and times it.

  Returns:
    The oracle dict plus ``seconds``, ``impressions_per_second`` and ``ctr``.
  """
  with tempfile.TemporaryDirectory() as tmp:
    start = time_lib.perf_counter()
    report = generate(config, out_dir or f"{tmp}/data", overwrite=True)
    seconds = time_lib.perf_counter() - start
  total = report["train_impressions"] + report["test_impressions"]
  positives = report["train_positives"] + report["test_positives"]
  return dict(report, seconds=seconds, impressions_per_second=total / seconds,
              ctr=positives / max(total, 1))
