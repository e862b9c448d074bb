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
Under parameter servers a step runs on a worker and may run twice (a worker
died mid-step and the coordinator ran it again): each run, an *attempt*, writes
its batch's lines to ``attempts/<n>-<random>.tsv`` itself (`write_attempt`,
inside the step, before the update), ended by an end marker; the segment of a
checkpoint is then the complete attempts before it, so a step run twice shows
as its records trained twice. An attempt file without the marker died while
writing, before its update, and is left out.
`delivery` compares such a log with the records of the stream and counts what
was trained once, twice or more, not at all, or is not the stream's.
"""

import collections
import os
import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from data_pipeline import paths
from data_pipeline import stream as stream_lib
from data_pipeline.text_input import ProgressCallback
from data_pipeline.tf_env import tf

_SEGMENT = re.compile(r"^segment-(\d{12})\.tsv$")
ATTEMPTS_DIR = "attempts"
_ATTEMPT_END = "#end\n"


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
    """Deletes segments of steps after ``step``, attempts and pending lines
    (none of them in a checkpoint); returns the segments' paths."""
    self._pending = []
    for path in self._attempt_files():
      tf.io.gfile.remove(path)
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

  def attempt_prefix(self, number: int) -> str:
    """Where the attempts of the ``number``-th step write (`write_attempt`
    adds a random part: every attempt has its own file)."""
    return os.path.join(self.directory, ATTEMPTS_DIR, f"{number:012d}-")

  def _attempt_files(self) -> List[str]:
    folder = os.path.join(self.directory, ATTEMPTS_DIR)
    if not tf.io.gfile.isdir(folder):
      return []
    return [os.path.join(folder, name) for name in sorted(paths.listdir(folder))]

  def commit(self, step: int) -> str:
    """Writes the pending lines and the complete attempts as the segment of
    ``step`` (atomically), then deletes the attempt files."""
    attempts = self._attempt_files()
    lines = self._pending + [_attempt_lines(paths.read_text(a)) for a in attempts]
    path = os.path.join(self.directory, f"segment-{step:012d}.tsv")
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write("".join(lines))
    paths.fsync(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    for attempt in attempts:
      tf.io.gfile.remove(attempt)
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


def write_attempt(lines: tf.Tensor, prefix: tf.Tensor) -> None:
  """In a step: writes its ``lines`` [B] (``shard<TAB>offset<TAB>fingerprint``
  and a newline each) to ``prefix<random>.tsv``, with the end marker; nothing
  for an empty ``prefix`` (a step on no stream records)."""

  def write():
    suffix = tf.strings.as_string(
        tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64))
    tf.io.write_file(prefix + suffix + ".tsv",
                     tf.strings.reduce_join(lines) + _ATTEMPT_END)
    return tf.constant(True)

  tf.cond(tf.strings.length(prefix) > 0, write, lambda: tf.constant(False))


def _attempt_lines(text: str) -> str:
  """An attempt file's lines; none if it was not written to its end marker."""
  return text[:-len(_ATTEMPT_END)] if text.endswith(_ATTEMPT_END) else ""


Row = Tuple[str, int, int]  # (shard, offset, fingerprint)


class Delivery(NamedTuple):
  """How a trained-example log covers the stream's records (`delivery`).

  expected: the stream's records; once: those trained exactly once;
  duplicates: extra trainings (a record trained 3 times counts 2); repeated:
  ``(shard, offset, times)`` of the records trained more than once; missing:
  ``(shard, offset)`` of records never trained; foreign: trained rows that
  are no record of the stream (unknown position, or another fingerprint).
  """
  expected: int
  once: int
  duplicates: int
  repeated: List[Tuple[str, int, int]]
  missing: List[Tuple[str, int]]
  foreign: List[Row]

  @property
  def exactly_once(self) -> bool:
    return (self.once == self.expected and not self.duplicates
            and not self.missing and not self.foreign)

  def __str__(self) -> str:
    return (f"{self.expected:,} records: {self.once:,} trained once, "
            f"{self.duplicates:,} duplicate trainings, {len(self.missing):,} never "
            f"trained, {len(self.foreign):,} trained rows not of the stream")


def delivery(trained: Iterable[Row], expected: Iterable[Row]) -> Delivery:
  """Counts, per record of ``expected`` (the stream, e.g. up to a position),
  how often ``trained`` (`TrainedExamplesLog.read`, of one or many readers)
  holds it; a record is its (shard, offset) with its fingerprint."""
  stream = {(shard, offset): fp for shard, offset, fp in expected}
  counts = collections.Counter()
  foreign = []
  for shard, offset, fp in trained:
    if stream.get((shard, offset)) == fp:
      counts[(shard, offset)] += 1
    else:
      foreign.append((shard, offset, fp))
  return Delivery(
      expected=len(stream), once=sum(1 for n in counts.values() if n == 1),
      duplicates=sum(n - 1 for n in counts.values()),
      repeated=sorted((*k, n) for k, n in counts.items() if n > 1),
      missing=sorted(k for k in stream if k not in counts), foreign=foreign)


def stream_rows(directory: str, position: stream_lib.StreamPosition,
                pattern: str = stream_lib.DEFAULT_PATTERN,
                progress: Optional[ProgressCallback] = None) -> List[Row]:
  """The stream's records before ``position`` as rows (what a run that stands
  there should have trained). A shard's rows stop at a record TFRecord cannot
  read: none after it can have been trained."""
  counter = stream_lib.RecordProgress(progress)
  rows: List[Row] = []
  for shard in stream_lib.list_shards(directory, pattern):
    if shard > position.shard:
      break
    records = tf.data.TFRecordDataset(os.path.join(directory, shard))
    if shard == position.shard:
      records = records.take(position.offset)
    offset = 0
    for chunk in records.ignore_errors(log_warning=False).batch(4096):
      for record in chunk.numpy().tolist():
        rows.append((shard, offset, stream_lib.record_fingerprint(record)))
        offset += 1
      counter.add(len(chunk))
  counter.end()
  return rows
