"""The log of trained examples, committed together with the checkpoints.

With `TrainedExamplesLog` a streaming run records which examples went into the
model: one line ``shard<TAB>offset<TAB>fingerprint`` (fingerprint: BLAKE2b-64 of
the serialized record, `data_pipeline.stream.record_fingerprint`) per trained
example, in training order. Lines are buffered between checkpoints and written as
one segment per checkpoint, ``segment-<step>.tsv``, under a temporary name and
renamed, just BEFORE that checkpoint is saved. On restart from the checkpoint of
step S, segments of later steps (written, but their checkpoint never completed) are
deleted. So the segments always list exactly the examples the latest checkpoint's
model was trained on: this is how the exactly-once guarantee is checked.
"""

import os
import re
from typing import List, Tuple

import numpy as np

from data_pipeline import paths
from data_pipeline.tf_env import tf

_SEGMENT = re.compile(r"^segment-(\d{12})\.tsv$")


class TrainedExamplesLog:
  """Segments of trained-example lines in ``directory``, one per checkpoint."""

  def __init__(self, directory: str):
    self.directory = directory
    tf.io.gfile.makedirs(directory)
    self._pending: List[str] = []

  def segments(self) -> List[Tuple[int, str]]:
    """``(step, path)`` of the committed segments, oldest first."""
    found = []
    for name in paths.listdir(self.directory):
      match = _SEGMENT.match(name)
      if match:
        found.append((int(match.group(1)), os.path.join(self.directory, name)))
    return sorted(found)

  def rollback_to(self, step: int) -> List[str]:
    """Deletes segments of steps after ``step`` and pending lines; returns paths."""
    self._pending = []
    removed = []
    for segment_step, path in self.segments():
      if segment_step > step:
        tf.io.gfile.remove(path)
        removed.append(path)
    return removed

  def add(self, shards, offsets, fingerprints: np.ndarray) -> None:
    """Records a trained batch: [B] shard names, offsets and fingerprints."""
    self._pending.extend(f"{s}\t{int(o)}\t{int(f)}\n"
                         for s, o, f in zip(shards, offsets, fingerprints))

  def commit(self, step: int) -> str:
    """Writes the pending lines as the segment of ``step`` (atomically)."""
    path = os.path.join(self.directory, f"segment-{step:012d}.tsv")
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write("".join(self._pending))
    paths.fsync(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    self._pending = []
    return path

  def read(self) -> List[Tuple[str, int, int]]:
    """Every committed ``(shard, offset, fingerprint)``, in training order."""
    rows = []
    for _, path in self.segments():
      with tf.io.gfile.GFile(path, "r") as f:
        for line in f:
          shard, offset, fingerprint = line.rstrip("\n").split("\t")
          rows.append((shard, int(offset), int(fingerprint)))
    return rows
