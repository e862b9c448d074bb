"""The ``tf.data`` reader: impression TFRecords -> batches of dense, padded tensors.

Each batch is a dict (B = batch size, C = categories per entry from ``schema.json``):

=======================================  =======  ============================
key                                      dtype    shape
=======================================  =======  ============================
label, user_id, time, item_id, query_id  int64    [B]
item_cats, query_cats                    int64    [B, C]
click_ids, click_times                   int64    [B, L]     L = max_clicks
click_cats                               int64    [B, L, C]
query_hist_ids, query_hist_times         int64    [B, M]     M = max_queries
query_hist_cats                          int64    [B, M, C]
seed_ids, seed_times                     int64    [B, S]     S = max_seeds
seed_cats                                int64    [B, S, C]
dense/<name>                             float32  [B]
cat/<name>                               int64    [B]
=======================================  =======  ============================

Histories are right-padded with 0 and stay oldest first; a history longer than its
maximum keeps its MOST RECENT entries. A dense or categorical feature that an example
lacks reads as 0 (categorical 0 means "missing", like padding).

Batches are parsed with one vectorized ``tf.io.parse_example`` call per batch.

What to read (`match_files`): comma-separated globs of shards, or dataset folders
(``data/sim``: the folder of ``schema.json``), each standing for the shards of ONE
of its splits as ``schema.json`` lists them: the split asked for, or the folder's
only split. An unreadable record (not a TFRecord file, truncated or corrupted)
fails naming its file and 0-based record: `BadShardRecordError` when the first
record of a file is bad (checked before reading starts), else, while reading, a
``tf.errors.InvalidArgumentError`` with the same ``path: record N: reason`` text.
"""

import dataclasses
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from data_pipeline import schema as schema_lib
from data_pipeline.bad_input import BadShardRecordError
from data_pipeline.tf_env import tf

UNREADABLE_RECORD = ("unreadable TFRecord (not a TFRecord file, or the record is "
                     "truncated or corrupted)")
# TFRecord framing around a record's data: its length (8 bytes) and the length's
# CRC (4) before it, the data's CRC (4) after it.
FRAMING_BYTES = 16
_CHUNK_RECORDS = 1024
# Batches of a cached dataset shuffled at once (more than any cache that fits).
_MAX_CACHED_BATCHES = 1_000_000


@dataclasses.dataclass(frozen=True)
class SequenceLengths:
  """Maximum history lengths kept per impression (the most recent ones)."""
  max_clicks: int = 100
  max_queries: int = 100
  max_seeds: int = 100

  def of(self, seq: schema_lib.SequenceFeatures) -> int:
    return {"clicks": self.max_clicks, "queries": self.max_queries,
            "seeds": self.max_seeds}[seq.name]


def feature_spec(schema: schema_lib.DatasetSchema,
                 serving: bool = False) -> Dict[str, object]:
  """The ``tf.io.parse_example`` spec of a dataset (sequences as ragged).

  Args:
    schema: the dataset schema.
    serving: requests to a served model carry no label and may leave out the
      user, time, query and categories; then only ``item_id`` is required and the
      rest read as 0 (padding / unknown).
  """
  c = schema.num_cats
  optional = serving
  spec = {}
  for name in schema_lib.SCALAR_FEATURES:
    default = [0] if optional and name != schema_lib.ITEM_ID else None
    spec[name] = tf.io.FixedLenFeature([1], tf.int64, default_value=default)
  for name in (schema_lib.ITEM_CATS, schema_lib.QUERY_CATS):
    spec[name] = tf.io.FixedLenFeature([c], tf.int64,
                                       default_value=[0] * c if optional else None)
  for seq in schema_lib.SEQUENCES:
    for key in (seq.ids, seq.times, seq.cats):
      spec[key] = tf.io.RaggedFeature(tf.int64)
  for name in schema.dense_features:
    spec[schema_lib.DENSE_PREFIX + name] = tf.io.FixedLenFeature(
        [1], tf.float32, default_value=[0.0])
  for name in schema.cat_features:
    spec[schema_lib.CAT_PREFIX + name] = tf.io.FixedLenFeature(
        [1], tf.int64, default_value=[0])
  return spec


def _slice_rows(values: tf.RaggedTensor, start: tf.Tensor) -> tf.RaggedTensor:
  """Row-wise ``values[b, start[b]:]`` of a ragged [B, None, ...] tensor."""
  lengths = values.row_lengths()
  new_lengths = lengths - start
  # Absolute positions of the kept entries in the flat values.
  row_starts = values.row_starts() + start
  positions = tf.ragged.range(row_starts, row_starts + new_lengths).flat_values
  flat = tf.gather(values.values, positions)
  return tf.RaggedTensor.from_row_lengths(flat, new_lengths, validate=False)


def dense_batch(parsed: Dict[str, tf.Tensor], schema: schema_lib.DatasetSchema,
                lengths: SequenceLengths) -> Dict[str, tf.Tensor]:
  """Turns a parsed batch (ragged sequences) into the padded dense dict."""
  c = schema.num_cats
  out = {}
  for name in schema_lib.SCALAR_FEATURES:
    out[name] = tf.squeeze(parsed[name], axis=1)
  out[schema_lib.ITEM_CATS] = parsed[schema_lib.ITEM_CATS]
  out[schema_lib.QUERY_CATS] = parsed[schema_lib.QUERY_CATS]
  for seq in schema_lib.SEQUENCES:
    max_len = lengths.of(seq)
    ids, times, cats = parsed[seq.ids], parsed[seq.times], parsed[seq.cats]
    start = tf.maximum(ids.row_lengths() - max_len, 0)
    ids = _slice_rows(ids, start)
    times = _slice_rows(times, start)
    # [B, None * C] -> [B, None, C]: C values per history entry.
    cats = tf.RaggedTensor.from_row_lengths(
        tf.reshape(cats.values, [-1, c]), cats.row_lengths() // c,
        validate=False)
    cats = _slice_rows(cats, start)
    out[seq.ids] = ids.to_tensor(default_value=0, shape=[None, max_len])
    out[seq.times] = times.to_tensor(default_value=0, shape=[None, max_len])
    out[seq.cats] = cats.to_tensor(default_value=0, shape=[None, max_len, c])
  for name in schema.dense_features:
    key = schema_lib.DENSE_PREFIX + name
    # NaN or Inf would silently destroy a model's weights; stop at the input.
    out[key] = tf.debugging.assert_all_finite(
        tf.squeeze(parsed[key], axis=1), f"feature {key} is NaN or infinite")
  for name in schema.cat_features:
    key = schema_lib.CAT_PREFIX + name
    out[key] = tf.squeeze(parsed[key], axis=1)
  return out


def zeros_batch(schema: schema_lib.DatasetSchema, lengths: SequenceLengths,
                batch_size: int = 1) -> Dict[str, tf.Tensor]:
  """A batch of the module docstring's shapes, all zeros (all padding).

  For building a model's variables before restoring them from a checkpoint.
  """
  c, b = schema.num_cats, batch_size
  out = {name: tf.zeros([b], tf.int64) for name in schema_lib.SCALAR_FEATURES}
  for name in (schema_lib.ITEM_CATS, schema_lib.QUERY_CATS):
    out[name] = tf.zeros([b, c], tf.int64)
  for seq in schema_lib.SEQUENCES:
    n = lengths.of(seq)
    out[seq.ids] = tf.zeros([b, n], tf.int64)
    out[seq.times] = tf.zeros([b, n], tf.int64)
    out[seq.cats] = tf.zeros([b, n, c], tf.int64)
  for name in schema.dense_features:
    out[schema_lib.DENSE_PREFIX + name] = tf.zeros([b], tf.float32)
  for name in schema.cat_features:
    out[schema_lib.CAT_PREFIX + name] = tf.zeros([b], tf.int64)
  return out


def make_dataset(file_pattern: Union[str, Sequence[str]], batch_size: int, max_clicks: int = 100,
                 max_queries: int = 100, max_seeds: int = 100,
                 schema: Optional[schema_lib.DatasetSchema] = None,
                 shuffle: bool = False, shuffle_buffer: int = 10_000,
                 num_epochs: Optional[int] = 1, seed: Optional[int] = None,
                 drop_remainder: bool = False, cycle_length: int = 4,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 deterministic: Optional[bool] = None,
                 shard: Optional[Tuple[int, Any]] = None,
                 split: Optional[str] = None,
                 cache: bool = False) -> tf.data.Dataset:
  """Reads impression TFRecords into batches of padded tensors.

  Args:
    file_pattern: comma-separated globs of TFRecord shards or dataset folders
      (`match_files`), or a list of shards read as given (`DataSplit.files`).
    batch_size: B.
    max_clicks, max_queries, max_seeds: L, M, S; longer histories keep their
      most recent entries.
    schema: the dataset schema; by default the ``schema.json`` beside the files.
    shuffle: shuffle file order and records (training); off keeps file order.
    shuffle_buffer: records in the shuffle buffer.
    num_epochs: passes over the data; None repeats forever.
    seed: seed of the shuffles; with a seed, the order is deterministic.
    drop_remainder: drop a last partial batch, making B static.
    cycle_length: shards read in parallel (interleaved).
    num_parallel_calls: parallelism of reading and parsing.
    deterministic: order guarantee; defaults to True when a seed is given or
      shuffle is off, else lets tf.data trade order for speed.
    shard: ``(num_shards, index)``: read only shard ``index`` (an int or a
      scalar tensor, e.g. a parameter-server worker's index known only when the
      dataset is built on that worker). Files are dealt round-robin when there
      are at least ``num_shards`` of them, else records are.
    split: the split a dataset folder in ``file_pattern`` stands for.
    cache: parse and pad the records once and keep the batches in memory:
      later passes read no file and parse nothing (`cached_example_bytes` says
      how much memory that takes). With ``shuffle`` the first pass reads the
      records through the shuffle buffer, as without a cache; later passes
      replay the same batches, each pass in a new order.

  Returns:
    A dataset of dicts as in the module docstring.

  Raises:
    FileNotFoundError: see `match_files`.
    BadShardRecordError: a file's first record is unreadable (e.g. the file is
      no TFRecord file); a later unreadable record fails the iteration.
  """
  files = (match_files(file_pattern, split) if isinstance(file_pattern, str)
           else list(file_pattern))
  check_first_records(files)
  if schema is None:
    schema = schema_lib.schema_for_files(files)
  if deterministic is None:
    deterministic = seed is not None or not shuffle
  ds = _records(files, shard, shuffle, seed, cycle_length, num_parallel_calls,
                deterministic)
  lengths = SequenceLengths(max_clicks, max_queries, max_seeds)
  if cache:
    return _cached(ds, schema, lengths, batch_size, drop_remainder, shuffle,
                   shuffle_buffer, seed, num_epochs, num_parallel_calls,
                   deterministic)
  ds = _batched(ds, batch_size, drop_remainder, shuffle, shuffle_buffer, seed,
                num_epochs)
  return _parsed(ds, schema, lengths, num_parallel_calls, deterministic)


def _cached(records: tf.data.Dataset, schema: schema_lib.DatasetSchema,
            lengths: SequenceLengths, batch_size: int, drop_remainder: bool,
            shuffle: bool, shuffle_buffer: int, seed: Optional[int],
            num_epochs: Optional[int], num_parallel_calls: int,
            deterministic: bool) -> tf.data.Dataset:
  """`make_dataset` with ``cache``: parsed batches kept in memory, reordered per pass.

  Whole batches are cached because on the trivago sample (2 cores, B = 256)
  anything finer costs about what parsing does: parsing gives 32k examples/s,
  re-batching cached examples 23k, permuting cached blocks of 20k examples 64k,
  regrouping cached 32-example pieces 24k; reordering cached batches gives 250k+.
  """
  # One pass is read, shuffled as without a cache, and kept.
  first_pass = _batched(records, batch_size, drop_remainder, shuffle,
                        shuffle_buffer, seed, num_epochs=1)
  batches = _parsed(first_pass, schema, lengths, num_parallel_calls,
                    deterministic).cache()
  if num_epochs == 1:
    return batches
  if not shuffle:
    return batches.repeat(num_epochs)
  # Every cached batch in the buffer: they are in memory already.
  later = batches.shuffle(_MAX_CACHED_BATCHES, seed=seed,
                          reshuffle_each_iteration=True)
  later = later.repeat(None if num_epochs is None else num_epochs - 1)
  return batches.concatenate(later).prefetch(tf.data.AUTOTUNE)


def cached_example_bytes(schema: schema_lib.DatasetSchema,
                         lengths: SequenceLengths) -> int:
  """Bytes one padded example takes in `make_dataset`'s cache."""
  example = zeros_batch(schema, lengths, batch_size=1)
  return sum(int(tf.size(value)) * value.dtype.size for value in example.values())


def _batched(records: tf.data.Dataset, batch_size: int, drop_remainder: bool,
             shuffle: bool, shuffle_buffer: int, seed: Optional[int],
             num_epochs: Optional[int]) -> tf.data.Dataset:
  """Records shuffled (if asked), repeated and batched."""
  ds = records
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  return ds.batch(batch_size, drop_remainder=drop_remainder)


def _parsed(batches: tf.data.Dataset, schema: schema_lib.DatasetSchema,
            lengths: SequenceLengths, num_parallel_calls: int,
            deterministic: bool) -> tf.data.Dataset:
  """Batches of serialized records -> batches of padded tensors, prefetched."""
  spec = feature_spec(schema)
  ds = batches.map(lambda records: dense_batch(
      tf.io.parse_example(records, spec), schema, lengths),
                   num_parallel_calls=num_parallel_calls,
                   deterministic=deterministic)
  return ds.prefetch(tf.data.AUTOTUNE)


def _records(files: List[str], shard: Optional[Tuple[int, Any]], shuffle: bool,
             seed: Optional[int], cycle_length: int, num_parallel_calls: int,
             deterministic: bool) -> tf.data.Dataset:
  """The serialized records of ``files`` (this shard's), files interleaved."""
  sizes = [tf.io.gfile.stat(f).length for f in files]
  ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
  by_file = shard is not None and len(files) >= shard[0]
  if by_file:
    ds = ds.shard(*shard)
  if shuffle:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = ds.interleave(
      readable_records,
      cycle_length=min(cycle_length, len(files)),
      num_parallel_calls=num_parallel_calls,
      deterministic=deterministic)
  if shard is not None and not by_file:
    ds = ds.shard(*shard)
  return ds


def readable_records(path: tf.Tensor, size: tf.Tensor) -> tf.data.Dataset:
  """The records of the TFRecord file ``path`` of ``size`` bytes; fails naming
  the file and the record where reading stops before the end.

  TF's own error (DataLossError "corrupted record at <byte>") names no file. Its
  reader moves to the next file after a bad record (the framing cannot
  resynchronize), so with ``ignore_errors`` a file simply ends there; the bytes
  its records cover then fall short of its size, and the record after the last
  good one is the bad one (this also catches a file cut inside a record header,
  which TF reads as its end). The error is an InvalidArgumentError whose message
  holds ``path: record N: reason``. Bytes are counted per chunk of records: per
  record, the accounting would cost more than reading.
  """
  chunks = tf.data.TFRecordDataset(path).ignore_errors(log_warning=False).batch(
      _CHUNK_RECORDS)
  # A chunk is never empty, so an empty one marks the end of the file.
  end = tf.data.Dataset.from_tensors(tf.constant([], tf.string))
  zero = tf.constant(0, tf.int64)

  def account(state, chunk):
    count, offset = state
    ended_short = tf.logical_and(tf.equal(tf.size(chunk), 0), offset < size)
    message = tf.strings.join([
        path, ": record ", tf.strings.as_string(count), f": {UNREADABLE_RECORD}: "
        "its records stop at byte ", tf.strings.as_string(offset), " of ",
        tf.strings.as_string(size)])
    with tf.control_dependencies([tf.debugging.Assert(
        tf.logical_not(ended_short), [message])]):
      lengths = tf.cast(tf.strings.length(chunk), tf.int64) + FRAMING_BYTES
    return (count + tf.size(chunk, tf.int64), offset + tf.reduce_sum(lengths)), chunk

  return chunks.concatenate(end).scan((zero, zero), account).unbatch()


def first_unreadable_record(path: str, limit: Optional[int] = None
                            ) -> Optional[Tuple[int, str]]:
  """The first record of ``path`` (among its first ``limit``) that cannot be
  read: ``(0-based index, reason)``, or None if all can.

  Eager twin of `readable_records`: besides TF's DataLossError, records that end
  before the file does are unreadable (TF reads a partial record header, under
  12 bytes, as the end of the file).
  """
  records = tf.data.TFRecordDataset(path)
  if limit is not None:
    records = records.take(limit)
  count, offset = 0, 0
  try:
    for record in records:  # one by one: the failing record's index is the answer
      count += 1
      offset += len(record.numpy()) + FRAMING_BYTES
  except tf.errors.DataLossError as e:
    return count, tf_error_reason(e)
  size = tf.io.gfile.stat(path).length
  if count != limit and offset < size:
    return count, f"its records stop at byte {offset} of {size}"
  return None


def tf_error_reason(error: tf.errors.OpError) -> str:
  """What a TF error says, for a user: `clean_tf_message` of its message."""
  return clean_tf_message(error.message or str(error))


def clean_tf_message(message: str) -> str:
  """The human part of a TF error message: its first line of words, without TF's
  internals.

  Drops the ``{{function_node ...}}`` / ``[[{{node ...}}]]`` names, the
  ``[Op:...]`` tag and what follows it (`` name: ``), and the stray quote of TF's
  record reader ("truncated record at 816819' failed with ...").
  """
  text = re.sub(r"\{\{function_node [^}]*\}\}|\[\[\{\{node [^}]*\}\}\]\]", "", message)
  line = next((line for line in text.splitlines() if line.strip()), "")
  line = re.sub(r"\[Op:[^\]]*\].*$|\s+name:\s*$", "", line)
  line = re.sub(r"(?<=\d)' failed with ", " failed with ", line)
  return " ".join(line.split())


def check_first_records(files: List[str]) -> None:
  """Raises `BadShardRecordError` for the first file whose first record is
  unreadable: one record per file finds a file that is no TFRecord file at all
  before training starts, as one clear error rather than a TF one mid-fit."""
  with tf.init_scope():  # eager even when a strategy traces the dataset function
    for path in files:
      bad = first_unreadable_record(path, limit=1)
      if bad is not None:
        raise BadShardRecordError(path, bad[0], f"{UNREADABLE_RECORD}: {bad[1]}",
                                  "unreadable_record")


def match_files(file_pattern: str, split: Optional[str] = None) -> List[str]:
  """The record files of comma-separated globs or dataset folders.

  A glob gives its matches, sorted. A glob such as ``data/sim/*`` also matches
  the dataset's own metadata (``schema.json``, ``oracle.json``: JSON is never a
  TFRecord) and folders; those are left out rather than read as records.

  A folder stands for the shards of one of its splits, as its ``schema.json``
  lists them: ``split``, or without one the folder's only split. So
  ``data/sim`` with split "train" is ``data/sim/train-*``'s shards; a folder of
  several splits and no split asked for is an error that lists them.

  Raises:
    FileNotFoundError: a glob matches no record file; a folder has no
      ``schema.json``, no such split, or several splits and none is asked for;
      a listed shard is missing.
  """
  files: List[str] = []
  for pattern in _patterns(file_pattern):
    if tf.io.gfile.isdir(pattern):
      files.extend(split_files(pattern, split))
    else:
      files.extend(_glob_records(pattern))
  return files


def split_pattern(file_pattern: str, split: str) -> str:
  """``file_pattern`` with each dataset folder replaced by the shards of its
  ``split`` (comma-separated paths); globs are kept as they are.

  For a caller that knows which split it reads (training: "train", evaluation:
  "test") but hands the pattern on to code that does not.
  """
  return ",".join(",".join(split_files(p, split)) if tf.io.gfile.isdir(p) else p
                  for p in _patterns(file_pattern))


def split_files(folder: str, split: Optional[str] = None) -> List[str]:
  """The shards of a dataset folder's ``split`` (or its only split), in
  ``schema.json``'s order."""
  splits = schema_lib.DatasetSchema.load(folder).splits
  names = ", ".join(sorted(splits)) or "none"
  if split is None:
    if len(splits) != 1:
      example = "train" if "train" in splits or not splits else min(splits)
      raise FileNotFoundError(
          f"{folder} is a dataset folder with the splits {names}: name the "
          f"shards of one, e.g. {os.path.join(folder, example)}-*")
    (split,) = splits
  if split not in splits:
    raise FileNotFoundError(f"{folder} has no split {split!r} (its splits: {names})")
  files = [os.path.join(folder, name) for name in splits[split].get("files", [])]
  if not files:
    raise FileNotFoundError(f"{folder}: split {split!r} lists no files")
  for path in files:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"{path}: missing, but {folder}/"
                              f"{schema_lib.SCHEMA_FILE} lists it in split {split!r}")
  return files


def _patterns(file_pattern: str) -> List[str]:
  return [p.strip() for p in file_pattern.split(",")]


def _glob_records(pattern: str) -> List[str]:
  matched = [f for f in sorted(tf.io.gfile.glob(pattern))
             if not f.endswith(".json") and not tf.io.gfile.isdir(f)]
  if not matched:
    raise FileNotFoundError(f"no files match {pattern!r}")
  return matched
