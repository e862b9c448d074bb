"""Reads a folder of impression shards as one stream, in file-name order, resumably.

A log stream is a folder that shards land in over time (``DIR/*.tfrecord``), named
so that file-name order is time order (e.g. ``impressions-000042.tfrecord`` or a
timestamp), plus the ``schema.json`` of the data. How a shard lands, by the
conventions log shippers use:

- whole, by rename: written under a hidden or temporary name (``.name``,
  ``_name`` or ``name.tmp``, which are never read) and renamed into place;
- with a done marker (``done_suffix``, e.g. ".done"): a shard is read only once
  ``<shard><done_suffix>`` exists beside it, and marker files are never shards;
- written in place, under ``follow``: the newest shard (last in name order) stays
  open. Each poll re-reads it from its last whole record if it grew, and a record
  cut short at its end is "not landed yet": the stream waits for the rest. The
  shard is final (read to its end once more, then never again) when a newer shard
  lands; a cut-off record then, or after ``landing_timeout`` seconds without the
  shard growing, is bad input like any truncated shard. Without ``follow`` every
  shard is final when read.

Several readers (a cluster's workers) split a stream by `ShardOwner`: each
shard belongs to one reader by a hash of its name, and each reader reads its
shards in name order with a position of its own.

`ShardStream` yields fixed-size batches of the reader's padded tensors (see
`data_pipeline.reader`), cut across shard boundaries, each with the exact records it
holds. Where a stream stands is a `StreamPosition`: ``(shard, offset)`` means every
shard sorting before ``shard`` and the first ``offset`` records of ``shard`` are
consumed. After a batch, `StreamBatch.end` is the position to resume from, so a
trainer that checkpoints ``end`` together with its model can restart exactly after
the last batch it trained on: no record twice, none skipped.

Bad input names the shard and the 0-based record (``shard: record N: reason``):
an unreadable record (truncated or corrupted: the shard ends inside a record, or
the TFRecord length or CRC check fails), a record that does not parse with the
schema, or one with a NaN or infinite dense feature. Under ``on_bad="stop"`` it
raises `bad_input.BadShardRecordError` (the reader's error too); under ``"skip"``
the record (or, for an unreadable one, the rest of its shard, since TFRecord
framing cannot resynchronize) is skipped, counted and listed in
`ShardStream.skipped`. A shard that lands with a name sorting before the current
position (out of order) would never be read; it is bad input too.

`write_time_ordered` makes a stream folder of a converted dataset (``egin-tf
replay``); `RecordProgress` and `records_in_files` count records of a pass over
shards for a progress callback (also used by `egin_tf`'s one-pass scans).
"""

import dataclasses
import fnmatch
import hashlib
import os
import time
from typing import (Callable, Dict, Generator, Iterator, List, Optional, Sequence,
                    Tuple)

import numpy as np

from data_pipeline import paths as paths_lib
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import BadShardRecordError, ON_BAD_CHOICES
from data_pipeline.text_input import ProgressCallback
from data_pipeline.tf_env import tf

DEFAULT_PATTERN = "*.tfrecord*"


@dataclasses.dataclass(frozen=True, order=True)
class StreamPosition:
  """Every shard before ``shard`` (by name) and its first ``offset`` records are consumed.

  ``StreamPosition()`` (empty shard name) is the start of the stream.
  """
  shard: str = ""
  offset: int = 0

  def __str__(self) -> str:
    if not self.shard:
      return "the start of the stream"
    return f"{self.shard} record {self.offset}"


@dataclasses.dataclass
class SkippedRecords:
  """Records skipped under ``on_bad="skip"``: ``count`` from ``shard`` ``record`` on."""
  shard: str
  record: int
  count: Optional[int]  # None: the unreadable rest of the shard
  kind: str
  reason: str

  def __str__(self) -> str:
    what = ("the rest of the shard" if self.count is None
            else f"{self.count} record{'s' if self.count != 1 else ''}")
    return f"{self.shard}: record {self.record}: skipped {what} ({self.kind}: {self.reason})"


@dataclasses.dataclass
class StreamBatch:
  """One batch of the stream.

  Attributes:
    features: the reader's padded tensors (`data_pipeline.reader`), batch B.
    shards: [B] the shard (file name) of every record.
    offsets: int64 [B], every record's 0-based index in its shard.
    fingerprints: uint64 [B] BLAKE2b-64 of every serialized record (only when
      the stream was asked for them, else None).
    records: [B] the serialized records (bytes).
    end: where the stream stands after this batch.
    shards_before_end: shards known to the stream that sort before
      ``end.shard``; checkpointed with ``end``, it lets a resumed stream notice
      shards that landed before the position while nobody was reading.
  """
  features: Dict[str, tf.Tensor]
  shards: List[str]
  offsets: np.ndarray
  fingerprints: Optional[np.ndarray]
  records: List[bytes]
  end: StreamPosition
  shards_before_end: int = 0

  @property
  def size(self) -> int:
    return len(self.shards)


def record_fingerprint(record: bytes) -> int:
  """BLAKE2b-64 of a serialized record: the id of an example in audit logs."""
  return int.from_bytes(hashlib.blake2b(record, digest_size=8).digest(), "little")


def is_landed_shard(name: str, pattern: str = DEFAULT_PATTERN) -> bool:
  """A complete shard: matches ``pattern`` and is not hidden or temporary."""
  return (fnmatch.fnmatch(name, pattern) and not name.startswith((".", "_"))
          and not name.endswith(".tmp"))


def list_shards(directory: str, pattern: str = DEFAULT_PATTERN,
                done_suffix: Optional[str] = None) -> List[str]:
  """Names of the landed shards of a stream folder, in stream (name) order.

  With ``done_suffix``, a shard has landed once its marker ``<shard><done_suffix>``
  exists beside it; markers are never shards (the default pattern matches them).
  """
  names = set(tf.io.gfile.listdir(directory))
  shards = [n for n in names if is_landed_shard(n, pattern)]
  if done_suffix:
    shards = [n for n in shards
              if not n.endswith(done_suffix) and n + done_suffix in names]
  return sorted(shards)


@dataclasses.dataclass(frozen=True)
class ShardOwner:
  """Which shards one of ``count`` readers of a stream reads (reader ``index``).

  A shard belongs to reader ``BLAKE2b-64(name) mod count``: a rule of the name
  alone, so the readers (e.g. a cluster's workers) need no coordination, every
  shard has exactly one reader whenever and in whatever order shards land, and
  a restarted reader owns what it owned. Each reader reads its shards in name
  order. ``ShardOwner()`` is the one reader of the whole stream.
  """
  index: int = 0
  count: int = 1

  def __post_init__(self):
    if not 0 <= self.index < self.count:
      raise ValueError(f"reader index must be in [0, {self.count}), got {self.index}")

  def owns(self, shard: str) -> bool:
    if self.count == 1:
      return True
    digest = hashlib.blake2b(shard.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % self.count == self.index


@dataclasses.dataclass(frozen=True)
class _Tail:
  """What follows a shard's last whole record: a record the shard ends inside
  (``truncated``) or one that fails TFRecord's checks."""
  truncated: bool
  reason: str


@dataclasses.dataclass
class _ShardCursor:
  """How far a shard is read: its next record and that record's first byte."""
  shard: str
  record: int
  byte: Optional[int] = None  # None: not counted yet (a start inside the shard)
  size: Optional[int] = None  # the shard's bytes at the last read (None: unread)
  tail: Optional[_Tail] = None  # after the last whole record (None: the end)
  grew_at: float = 0.0  # when a read last found new bytes: the landing timeout's start


@dataclasses.dataclass
class _Reading:
  """Where one iteration of a `ShardStream` stands, across polls."""
  position: StreamPosition
  consumed_before_start: set
  done: set = dataclasses.field(default_factory=set)  # shards read to their end
  cursor: Optional[_ShardCursor] = None  # the shard read last (under follow: open)
  pending: "_PendingRecords" = dataclasses.field(
      default_factory=lambda: _PendingRecords())


class ShardStream:
  """Iterates a stream folder's shards as batches, from a position, once.

  Args:
    directory: the stream folder (shards and ``schema.json``).
    batch_size: B. Batches are cut across shards; the last one of a finite
      stream, and the last before waiting for new shards under ``follow``, may be
      smaller.
    lengths: history lengths kept (L, M, S).
    schema: the data's schema; by default ``directory/schema.json``.
    start: where to begin (`StreamPosition`); the default is the start.
    follow: when every landed shard is consumed, wait for new ones (polling
      every ``poll_seconds``) instead of stopping. The newest shard stays open:
      each poll reads on in it if it grew, and a record it ends inside is not
      landed yet (see the module docstring).
    idle_timeout: under ``follow``, stop after this many seconds without a new
      shard or new bytes in the open one (None: wait forever).
    landing_timeout: under ``follow``, how long the newest shard may end inside
      a record without growing before that record is bad input (None: until a
      newer shard lands).
    done_suffix: read a shard only once ``<shard><done_suffix>`` exists beside
      it (then it is complete); None or "": every landed shard.
    on_bad: "stop" raises `BadShardRecordError`; "skip" skips and counts.
    pattern: glob of shard names in ``directory``.
    fingerprints: compute every record's fingerprint (for audit logs).
    shards_before_start: `StreamBatch.shards_before_end` of the batch that
      ended at ``start``; more shards before ``start`` than that means some
      landed out of order while the stream was not read (bad input).
    sleep: the wait function (tests replace it).
    clock: the monotonic clock of both timeouts (tests replace it).
    owner: which shards this reader reads (`ShardOwner`; default: all). The
      start position, ``shards_before_start`` and out-of-order checks are of
      this reader's shards; any newer shard makes its newest one final.
    should_stop: checked before every poll under ``follow``; when it returns
      True the iteration ends (e.g. on a signal).
  """

  def __init__(self, directory: str, batch_size: int,
               lengths: reader.SequenceLengths = reader.SequenceLengths(),
               schema: Optional[schema_lib.DatasetSchema] = None,
               start: StreamPosition = StreamPosition(),
               follow: bool = False, poll_seconds: float = 10.0,
               idle_timeout: Optional[float] = None, on_bad: str = "stop",
               pattern: str = DEFAULT_PATTERN, fingerprints: bool = False,
               shards_before_start: Optional[int] = None,
               sleep: Callable[[float], None] = time.sleep,
               should_stop: Callable[[], bool] = lambda: False,
               landing_timeout: Optional[float] = 600.0,
               done_suffix: Optional[str] = None,
               clock: Callable[[], float] = time.monotonic,
               owner: ShardOwner = ShardOwner()):
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if on_bad not in ON_BAD_CHOICES:
      raise ValueError(f"on_bad must be one of {ON_BAD_CHOICES}, got {on_bad!r}")
    if not tf.io.gfile.isdir(directory):
      raise FileNotFoundError(f"stream folder {directory} does not exist")
    self.directory = directory
    self.batch_size = batch_size
    self.lengths = lengths
    self.schema = schema or schema_lib.DatasetSchema.load(directory)
    self.start = start
    self.follow = follow
    self.poll_seconds = poll_seconds
    self.idle_timeout = idle_timeout
    self.landing_timeout = landing_timeout
    self.done_suffix = done_suffix or None
    self.on_bad = on_bad
    self.pattern = pattern
    self.fingerprints = fingerprints
    self.shards_before_start = shards_before_start
    self._known: set = set()
    self._sleep = sleep
    self._should_stop = should_stop
    self._clock = clock
    self.owner = owner
    self.skipped: List[SkippedRecords] = []
    self.records_read = 0
    # The record an open shard ends inside, while the stream waits for its rest.
    self.waiting_for: Optional[StreamPosition] = None
    spec = reader.feature_spec(self.schema)
    schema_, lengths_ = self.schema, lengths
    self._parse = tf.function(
        lambda records: reader.dense_batch(tf.io.parse_example(records, spec),
                                           schema_, lengths_),
        input_signature=[tf.TensorSpec([None], tf.string)])

  @property
  def num_skipped_records(self) -> int:
    """Skipped records whose count is known (unreadable shard tails are not)."""
    return sum(s.count or 0 for s in self.skipped)

  def skip_summary(self) -> str:
    if not self.skipped:
      return "no bad records"
    return f"{len(self.skipped)} skip(s):\n" + "\n".join(f"  {s}" for s in self.skipped)

  def _bad(self, shard: str, record: int, reason: str, kind: str,
           count: Optional[int]) -> None:
    error = BadShardRecordError(os.path.join(self.directory, shard), record, reason, kind)
    if self.on_bad == "stop":
      raise error
    self.skipped.append(SkippedRecords(os.path.join(self.directory, shard), record,
                                       count, kind, reason))

  def _parse_checked(self, records: List[bytes], shards: List[str],
                     offsets: List[int]) -> Tuple[Optional[Dict[str, tf.Tensor]],
                                                  List[int]]:
    """Parses a batch; a failing batch is parsed record by record to name the bad one.

    Returns the features and the indices of the records kept.
    """
    try:
      return self._parse(tf.constant(records, tf.string)), list(range(len(records)))
    except tf.errors.InvalidArgumentError:
      pass
    keep = []
    for i, record in enumerate(records):
      try:
        self._parse(tf.constant([record], tf.string))
        keep.append(i)
      except tf.errors.InvalidArgumentError as e:
        self._bad(shards[i], offsets[i], "not an impression of this stream's "
                  f"schema: {reader.tf_error_reason(e)}", "invalid_record", 1)
    if not keep:
      return None, keep
    return self._parse(tf.constant([records[i] for i in keep], tf.string)), keep

  def _emit(self, records: List[bytes], shards: List[str], offsets: List[int]
            ) -> Optional[StreamBatch]:
    end = StreamPosition(shards[-1], offsets[-1] + 1)
    features, keep = self._parse_checked(records, shards, offsets)
    if features is None:
      return None
    if len(keep) != len(records):
      records = [records[i] for i in keep]
      shards = [shards[i] for i in keep]
      offsets = [offsets[i] for i in keep]
    fingerprints = None
    if self.fingerprints:
      fingerprints = np.array([record_fingerprint(r) for r in records], np.uint64)
    before = sum(1 for known in self._known if known < end.shard)
    return StreamBatch(features, shards, np.asarray(offsets, np.int64), fingerprints,
                       records, end, before)

  def __iter__(self) -> Iterator[StreamBatch]:
    reading = _Reading(self.start, self._consumed_before_start())
    idle_since = self._clock()
    while True:
      active = yield from self._read_landed(reading)
      if active:
        idle_since = self._clock()
      if len(reading.pending):
        # Caught up with what has landed: train on the remainder now rather than
        # holding it until more data lands.
        batch = self._emit(*reading.pending.take(len(reading.pending)))
        if batch is not None:
          reading.position = batch.end
          yield batch
      if self._stops(active, idle_since):
        return
      self._sleep(self.poll_seconds)

  def _read_landed(self, reading: _Reading) -> Generator[StreamBatch, None, bool]:
    """One poll: reads the landed shards from the position on, in name order.

    Returns whether a shard was new or grew.
    """
    active = False
    shards = list_shards(self.directory, self.pattern, self.done_suffix)
    for shard in shards:
      if (not self.owner.owns(shard) or shard in reading.done
          or self._passed(shard, reading)):
        continue
      cursor = reading.cursor
      if cursor is None or cursor.shard != shard:
        self._known.add(shard)
        first = reading.position.offset if shard == reading.position.shard else 0
        cursor = reading.cursor = _ShardCursor(shard, first, grew_at=self._clock())
      # Under follow the newest shard may still be written in place; a newer
      # shard (names sort in time order) or its done marker says it is complete.
      final = not self.follow or shard != shards[-1] or self.done_suffix is not None
      grew, ended = yield from self._read_on(cursor, final, reading)
      active = active or grew
      if ended:
        reading.done.add(shard)
      reading.position = max(reading.position, StreamPosition(shard, 0))
    return active

  def _passed(self, shard: str, reading: _Reading) -> bool:
    """Whether ``shard`` sorts before the position: consumed before the start,
    or landed out of order (bad input)."""
    if shard >= reading.position.shard:
      return False
    if shard not in reading.consumed_before_start:
      reading.done.add(shard)
      self._landed_out_of_order(shard, reading.position)
    return True

  def _read_on(self, cursor: _ShardCursor, final: bool, reading: _Reading
               ) -> Generator[StreamBatch, None, Tuple[bool, bool]]:
    """Reads the cursor's shard on from its next record if it grew since the last read.

    Returns (whether it grew, whether it ended). A final shard ends here, what
    follows its last whole record being bad input; an open one waits for a
    record it ends inside until ``landing_timeout``.
    """
    path = self._path(cursor.shard)
    grew = False
    while _size(path) != cursor.size:
      grew = True
      yield from self._read_whole_records(cursor, reading)
      cursor.size, cursor.grew_at = _size(path), self._clock()
      cursor.tail = self._tail(cursor)
      if cursor.tail is None and cursor.byte < cursor.size:
        cursor.size = None  # its next record was completed while it was read: read on
    self.waiting_for = None
    if cursor.tail is None:
      return grew, final
    if not final and cursor.tail.truncated and not self._landing_timed_out(cursor):
      # Not landed yet: wait for the rest of the record.
      self.waiting_for = StreamPosition(cursor.shard, cursor.record)
      return grew, False
    self._bad_tail(cursor, final)
    return grew, True

  def _read_whole_records(self, cursor: _ShardCursor, reading: _Reading
                          ) -> Iterator[StreamBatch]:
    """Adds the shard's whole records from the cursor on to the pending ones;
    yields the full batches.

    Reading stops before the first record that cannot be read (cut short or
    corrupted: TFRecord framing cannot resynchronize); `_tail` says which.
    """
    path = self._path(cursor.shard)
    if cursor.byte is None:
      cursor.byte = _bytes_of_records(path, cursor.record)
    chunks = (tf.data.TFRecordDataset(path).skip(cursor.record)
              .ignore_errors(log_warning=False).batch(self.batch_size))
    for chunk in chunks:
      records = chunk.numpy().tolist()
      reading.pending.add(records, cursor.shard, cursor.record)
      cursor.record += len(records)
      cursor.byte += sum(map(len, records)) + reader.FRAMING_BYTES * len(records)
      self.records_read += len(records)
      while len(reading.pending) >= self.batch_size:
        batch = self._emit(*reading.pending.take(self.batch_size))
        if batch is not None:
          reading.position = batch.end
          yield batch

  def _tail(self, cursor: _ShardCursor) -> Optional[_Tail]:
    """What follows the cursor's last whole record: None at the shard's end, or
    when that record has become whole since it was read."""
    if cursor.byte >= cursor.size:
      return None
    records = tf.data.TFRecordDataset(self._path(cursor.shard)).skip(cursor.record)
    try:
      if list(records.take(1)):
        return None
    except tf.errors.DataLossError as e:
      # TF says "truncated record at <byte>" when the file ends inside the
      # record, "corrupted record at <byte>" when a CRC check fails.
      reason = reader.tf_error_reason(e)
      return _Tail(reason.startswith("truncated record"), reason)
    # TF reads a record header cut short (under 12 bytes) as the end of the file.
    return _Tail(True, f"the shard ends inside the record's header: its records "
                 f"stop at byte {cursor.byte} of {cursor.size}")

  def _landing_timed_out(self, cursor: _ShardCursor) -> bool:
    return (self.landing_timeout is not None
            and self._clock() - cursor.grew_at >= self.landing_timeout)

  def _bad_tail(self, cursor: _ShardCursor, final: bool) -> None:
    """The record after the cursor's last whole one cannot be read: bad input
    (skipping skips the rest of the shard)."""
    note = ""
    if self.follow and cursor.tail.truncated:
      complete = ("its done marker exists" if self.done_suffix
                  else "a newer shard has landed")
      note = (f"; {complete}, so it will not be completed" if final else
              f"; not completed {self.landing_timeout:g} s after the shard last grew "
              "(landing_timeout)")
    self._bad(cursor.shard, cursor.record, "unreadable TFRecord (truncated or "
              f"corrupted): {cursor.tail.reason}{note}", "unreadable_record", None)

  def _path(self, shard: str) -> str:
    return os.path.join(self.directory, shard)

  def _consumed_before_start(self) -> set:
    """The shards before the start position (consumed); too many are bad input.

    Any other shard that shows up before the position landed out of order.
    """
    consumed = {s for s in list_shards(self.directory, self.pattern, self.done_suffix)
                if s < self.start.shard and self.owner.owns(s)}
    self._known = set(consumed)
    if (self.shards_before_start is not None
        and len(consumed) > self.shards_before_start):
      newest = sorted(consumed, key=lambda s: -paths_lib.mtime_ns(
          os.path.join(self.directory, s)))
      extra = len(consumed) - self.shards_before_start
      self._bad(newest[0], 0, f"{extra} shard(s) sorting before the resume position "
                f"({self.start}) landed after it was checkpointed ({len(consumed)}"
                f" there now, {self.shards_before_start} then), so they would never "
                f"be read; the most recently modified: {', '.join(newest[:extra])}",
                "out_of_order_shard", None)
    return consumed

  def _landed_out_of_order(self, shard: str, position: StreamPosition) -> None:
    self._bad(shard, 0, f"landed out of order: its name sorts before the "
              f"stream's position ({position}), so it would never be read; "
              "shard names must sort in landing order", "out_of_order_shard",
              None)

  def _stops(self, active: bool, idle_since: float) -> bool:
    """Whether the iteration ends now that every landed shard is consumed."""
    if not self.follow:
      return True
    if (not active and self.idle_timeout is not None
        and self._clock() - idle_since >= self.idle_timeout):
      return True
    return self._should_stop()


class _PendingRecords:
  """Records read but not yet batched, with their shard and offset."""

  def __init__(self):
    self.records: List[bytes] = []
    self.shards: List[str] = []
    self.offsets: List[int] = []

  def __len__(self) -> int:
    return len(self.records)

  def add(self, records: List[bytes], shard: str, first: int) -> None:
    """Appends ``records``, the records ``first``, ``first + 1``, ... of ``shard``."""
    self.records.extend(records)
    self.shards.extend([shard] * len(records))
    self.offsets.extend(range(first, first + len(records)))

  def take(self, n: int) -> Tuple[List[bytes], List[str], List[int]]:
    """Removes and returns the first ``n`` (records, shards, offsets)."""
    taken = self.records[:n], self.shards[:n], self.offsets[:n]
    del self.records[:n], self.shards[:n], self.offsets[:n]
    return taken


def _size(path: str) -> int:
  return tf.io.gfile.stat(path).length


def _bytes_of_records(path: str, count: int) -> int:
  """Bytes of the first ``count`` records of a TFRecord file, framing included
  (a stream resumed inside a shard: where its next record starts)."""
  if count == 0:
    return 0
  lengths = (tf.data.TFRecordDataset(path).take(count).map(tf.strings.length)
             .batch(_PROGRESS_RECORDS))
  payload = sum(int(np.sum(chunk.numpy(), dtype=np.int64)) for chunk in lengths)
  return payload + reader.FRAMING_BYTES * count


def stream_shard_name(prefix: str, index: int) -> str:
  return f"{prefix}-{index:06d}.tfrecord"


# Records between progress reports while a pass reads or writes (one chunk).
_PROGRESS_RECORDS = 4096


def records_in_files(files: Sequence[str]) -> Optional[int]:
  """Records in these shards by their folders' ``schema.json`` split counts.

  Exact for whole splits; part of a split counts its share of the split's files
  (the writer deals records round-robin, so they differ by one record at most).
  None when a file is listed in no split of its folder's schema (unknown).
  """
  names_by_folder: Dict[str, set] = {}
  for path in files:
    names_by_folder.setdefault(os.path.dirname(path) or ".", set()).add(
        os.path.basename(path))
  total = 0
  for folder, names in names_by_folder.items():
    try:
      splits = schema_lib.DatasetSchema.load(folder).splits
    except (OSError, ValueError):
      return None
    listed = set()
    for split in splits.values():
      split_files = set(split.get("files", []))
      matched = names & split_files
      if matched and "impressions" not in split:
        return None
      if matched:
        total += split["impressions"] * len(matched) // len(split_files)
      listed |= matched
    if listed != names:
      return None
  return total


class RecordProgress:
  """Records of passes over TFRecords, reported to a `text_input.ProgressCallback`.

  The callback gets what the converters' `text_input.ReadProgress` gives it:
  (records so far, the total or None, the share done or None). ``total`` may be
  an estimate while reading (`records_in_files`); `end` reports the count as the
  total, known once the work is done.
  """

  def __init__(self, progress: Optional[ProgressCallback],
               total: Optional[int] = None):
    self.progress = progress
    self.total = total
    self.count = 0
    self._reported: Optional[int] = None

  def add(self, records: int) -> None:
    self.count += records
    if self.progress is None:
      return
    share = None
    if self.total is not None:
      share = min(1.0, self.count / self.total) if self.total else 1.0
    self.progress(self.count, self.total, share)
    self._reported = self.count

  def end(self) -> None:
    """Reports (count, count, 1.0) unless that was the last report."""
    if self._reported == self.count == self.total:
      return
    self.total = self.count
    self.add(0)


def _read_time_ordered(files: List[str], progress: RecordProgress
                       ) -> Tuple[List[bytes], np.ndarray, np.ndarray]:
  """Every record of ``files``, their order by time (stable) and their labels."""
  spec = {schema_lib.TIME: tf.io.FixedLenFeature([1], tf.int64),
          schema_lib.LABEL: tf.io.FixedLenFeature([1], tf.int64)}
  records, times, labels = [], [np.zeros([0], np.int64)], [np.zeros([0], np.int64)]
  for chunk in tf.data.TFRecordDataset(files).batch(_PROGRESS_RECORDS):
    parsed = tf.io.parse_example(chunk, spec)
    records.extend(chunk.numpy().tolist())
    times.append(parsed[schema_lib.TIME].numpy().reshape(-1))
    labels.append(parsed[schema_lib.LABEL].numpy().reshape(-1))
    progress.add(int(chunk.shape[0]))
  order = np.argsort(np.concatenate(times), kind="stable")
  return records, order, np.concatenate(labels)


def _write_shards(folder: str, records: List[bytes], order: np.ndarray,
                  records_per_shard: int, prefix: str,
                  progress: RecordProgress) -> List[str]:
  """Writes ``records`` in ``order`` as shards of ``records_per_shard``: their names."""
  names = []
  for index, start in enumerate(range(0, len(order), records_per_shard)):
    names.append(stream_shard_name(prefix, index))
    shard = order[start:start + records_per_shard]
    with tf.io.TFRecordWriter(os.path.join(folder, names[-1])) as w:
      for part in range(0, len(shard), _PROGRESS_RECORDS):
        for i in shard[part:part + _PROGRESS_RECORDS]:
          w.write(records[i])
        progress.add(len(shard[part:part + _PROGRESS_RECORDS]))
  return names


def write_time_ordered(file_pattern: str, out_dir: str, records_per_shard: int,
                       prefix: str = "impressions", overwrite: bool = False,
                       progress: Optional[ProgressCallback] = None) -> List[str]:
  """Rewrites a dataset's records as a stream folder: shards in impression-time order.

  Replays a converted (or simulated) log as the stream a live system would have
  produced: records sorted by their ``time`` feature (stable, so equal times keep
  file order) and cut into ``prefix-000000.tfrecord``, ... of
  ``records_per_shard`` records, with the source's ``schema.json`` (its
  ``splits`` replaced by one "stream" split). Holds every record in memory. The
  folder appears atomically (temporary folder, then rename).

  ``progress(count, total, share)`` (`text_input.ProgressCallback`) counts the
  records read, then written, over both passes as the converters count lines: the
  total is twice the records (from ``schema.json`` while reading, None if it does
  not list the files); the last call is (2 N, 2 N, 1.0).

  Returns:
    The shard paths, in stream order.
  """
  if records_per_shard < 1:
    raise ValueError(f"records_per_shard must be >= 1, got {records_per_shard}")
  files = reader.match_files(file_pattern)
  schema = schema_lib.schema_for_files(files)
  out_dir = paths_lib.abspath(out_dir)
  if tf.io.gfile.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} already exists")
  expected = records_in_files(files)
  counter = RecordProgress(progress, None if expected is None else 2 * expected)
  records, order, labels = _read_time_ordered(files, counter)
  if not records:
    raise ValueError(f"{file_pattern}: no records")
  counter.total = 2 * len(records)
  tf.io.gfile.makedirs(os.path.dirname(out_dir))
  # A hidden sibling (as the writer's): not a string prefix of out_dir's name,
  # which filesystems matching folders by prefix (TF's ram://) would confuse.
  tmp = os.path.join(os.path.dirname(out_dir),
                     f".{os.path.basename(out_dir)}.tmp-stream")
  if tf.io.gfile.exists(tmp):
    paths_lib.rmtree(tmp)
  tf.io.gfile.mkdir(tmp)
  names = _write_shards(tmp, records, order, records_per_shard, prefix, counter)
  schema = dataclasses.replace(schema, splits={"stream": {
      "files": names, "impressions": len(records),
      "positives": int((labels == 1).sum())}})
  schema.save(tmp)
  if tf.io.gfile.exists(out_dir):
    paths_lib.rmtree(out_dir)
  paths_lib.rename_dir(tmp, out_dir)
  counter.end()
  return [os.path.join(out_dir, n) for n in names]
