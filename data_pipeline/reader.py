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
"""

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf


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


def make_dataset(file_pattern: str,
                 batch_size: int,
                 max_clicks: int = 100,
                 max_queries: int = 100,
                 max_seeds: int = 100,
                 schema: Optional[schema_lib.DatasetSchema] = None,
                 shuffle: bool = False,
                 shuffle_buffer: int = 10_000,
                 num_epochs: Optional[int] = 1,
                 seed: Optional[int] = None,
                 drop_remainder: bool = False,
                 cycle_length: int = 4,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 deterministic: Optional[bool] = None,
                 shard: Optional[Tuple[int, Any]] = None) -> tf.data.Dataset:
  """Reads impression TFRecords into batches of padded tensors.

  Args:
    file_pattern: glob of TFRecord shards, or comma-separated globs.
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

  Returns:
    A dataset of dicts as in the module docstring.
  """
  files = match_files(file_pattern)
  if schema is None:
    schema = schema_lib.schema_for_files(files)
  if deterministic is None:
    deterministic = seed is not None or not shuffle
  lengths = SequenceLengths(max_clicks, max_queries, max_seeds)
  spec = feature_spec(schema)

  ds = tf.data.Dataset.from_tensor_slices(files)
  by_file = shard is not None and len(files) >= shard[0]
  if by_file:
    ds = ds.shard(*shard)
  if shuffle:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = ds.interleave(
      tf.data.TFRecordDataset,
      cycle_length=min(cycle_length, len(files)),
      num_parallel_calls=num_parallel_calls,
      deterministic=deterministic)
  if shard is not None and not by_file:
    ds = ds.shard(*shard)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(lambda records: dense_batch(
      tf.io.parse_example(records, spec), schema, lengths),
              num_parallel_calls=num_parallel_calls,
              deterministic=deterministic)
  return ds.prefetch(tf.data.AUTOTUNE)


def match_files(file_pattern: str) -> List[str]:
  """The record files of comma-separated globs, sorted per glob.

  A glob such as ``data/sim/*`` also matches the dataset's own metadata
  (``schema.json``, ``oracle.json``: JSON is never a TFRecord) and folders;
  those are left out rather than read as records.
  """
  files: List[str] = []
  for pattern in file_pattern.split(","):
    matched = [f for f in sorted(tf.io.gfile.glob(pattern.strip()))
               if not f.endswith(".json") and not tf.io.gfile.isdir(f)]
    if not matched:
      raise FileNotFoundError(f"no files match {pattern.strip()!r}")
    files.extend(matched)
  return files
