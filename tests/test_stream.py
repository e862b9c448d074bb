"""The stream reader: shard order, batches across shards, resume, landing, bad records."""

import os

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream
from data_pipeline.tf_env import tf

LENGTHS = reader.SequenceLengths(3, 3, 3)


def _impression(item_id, time=None, dense=None):
  return schema_lib.Impression(
      label=item_id % 2, user_id=7, time=time if time is not None else item_id,
      item_id=item_id, item_cats=[5],
      clicks=[schema_lib.Event(90 + i, i, [5]) for i in range(item_id % 4)],
      dense=dense if dense is not None else {"price": 1.0})


def _write_shard(directory, name, item_ids, landed=True):
  """Writes impressions with these item ids; lands it by rename when ``landed``."""
  tmp = os.path.join(directory, f".{name}.tmp")
  with tf.io.TFRecordWriter(tmp) as w:
    for item in item_ids:
      w.write(schema_lib.to_example(_impression(item), 1).SerializeToString())
  if landed:
    os.rename(tmp, os.path.join(directory, name))
  return os.path.join(directory, name)


def _stream_dir(tmp_path, shards):
  """A stream folder: {name: item ids}; items are 1000 * shard + record + 1."""
  directory = str(tmp_path / "stream")
  os.makedirs(directory)
  stats = schema_lib.SchemaStats()
  for name, items in shards.items():
    _write_shard(directory, name, items)
    for item in items:
      stats.add("stream", _impression(item))
  stats.schema(1, {"stream": list(shards)}, "test").save(directory)
  return directory


def _items(batches):
  return [b.features["item_id"].numpy().tolist() for b in batches]


SHARDS = {"s-000.tfrecord": [1, 2, 3, 4, 5],
          "s-001.tfrecord": [1001, 1002, 1003],
          "s-002.tfrecord": [2001, 2002, 2003, 2004]}


def test_batches_cross_shards_in_name_order_and_end_positions(tmp_path):
  directory = _stream_dir(tmp_path, dict(reversed(list(SHARDS.items()))))
  # Hidden, temporary and non-matching files are not shards.
  _write_shard(directory, "s-003.tfrecord", [9999], landed=False)
  open(os.path.join(directory, "_SUCCESS"), "w").close()
  batches = list(stream.ShardStream(directory, 4, LENGTHS))
  assert _items(batches) == [[1, 2, 3, 4], [5, 1001, 1002, 1003],
                             [2001, 2002, 2003, 2004]]
  assert [b.end for b in batches] == [
      stream.StreamPosition("s-000.tfrecord", 4),
      stream.StreamPosition("s-001.tfrecord", 3),
      stream.StreamPosition("s-002.tfrecord", 4)]
  assert batches[1].shards == ["s-000.tfrecord"] + ["s-001.tfrecord"] * 3
  assert batches[1].offsets.tolist() == [4, 0, 1, 2]
  assert [b.shards_before_end for b in batches] == [0, 1, 2]
  # The padded features are the reader's: 3 clicks kept, item 3 has 3 clicks.
  assert batches[0].features["click_ids"].numpy()[2].tolist() == [90, 91, 92]


def test_last_partial_batch_and_resume_from_every_position(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  all_items = [i for items in SHARDS.values() for i in items]
  batches = list(stream.ShardStream(directory, 5, LENGTHS))
  assert _items(batches) == [all_items[:5], all_items[5:10], all_items[10:]]
  # Resuming at any batch end yields exactly the records after it.
  seen = 0
  for batch in batches:
    seen += batch.size
    rest = list(stream.ShardStream(directory, 5, LENGTHS, start=batch.end))
    assert sum(_items(rest), []) == all_items[seen:]
  # A position inside a shard (any record offset) resumes at that record.
  rest = list(stream.ShardStream(directory, 100, LENGTHS,
                                 start=stream.StreamPosition("s-001.tfrecord", 2)))
  assert _items(rest) == [[1003, 2001, 2002, 2003, 2004]]


def test_follow_reads_shards_as_they_land_and_stops_when_idle(tmp_path):
  directory = _stream_dir(tmp_path, {"s-000.tfrecord": [1, 2, 3]})
  to_land = [("s-001.tfrecord", [1001, 1002]), ("s-002.tfrecord", [2001])]
  polls = []

  def sleep(seconds):
    polls.append(seconds)
    if to_land:
      _write_shard(directory, *to_land.pop(0))

  batches = stream.ShardStream(directory, 2, LENGTHS, follow=True, poll_seconds=7,
                               idle_timeout=0, sleep=sleep)
  # idle_timeout=0 stops at the first poll that finds nothing new; the caught-up
  # remainder of a shard is trained on instead of waiting for more data.
  assert _items(batches) == [[1, 2], [3], [1001, 1002], [2001]]
  assert polls == [7, 7, 7]


def test_shard_landing_out_of_order_is_an_error_or_reported(tmp_path):
  directory = _stream_dir(tmp_path, {"s-005.tfrecord": [1, 2]})

  def land_late_old_shard(_):
    _write_shard(directory, "s-001.tfrecord", [7])

  with pytest.raises(stream.BadShardRecordError, match=r"s-001.tfrecord: record 0: "
                     r"landed out of order"):
    list(stream.ShardStream(directory, 2, LENGTHS, follow=True, idle_timeout=0,
                            sleep=land_late_old_shard))
  os.remove(os.path.join(directory, "s-001.tfrecord"))
  batches = stream.ShardStream(directory, 2, LENGTHS, follow=True, idle_timeout=0,
                               sleep=land_late_old_shard, on_bad="skip")
  assert _items(batches) == [[1, 2]]
  assert [s.kind for s in batches.skipped] == ["out_of_order_shard"]
  # Shards before the start position are consumed, not out of order...
  os.remove(os.path.join(directory, "s-001.tfrecord"))
  batch = next(iter(stream.ShardStream(directory, 2, LENGTHS)))
  assert batch.shards_before_end == 0
  late = stream.ShardStream(directory, 2, LENGTHS,
                            start=stream.StreamPosition("s-005.tfrecord", 0),
                            shards_before_start=batch.shards_before_end)
  assert _items(late) == [[1, 2]] and not late.skipped
  # ... unless more of them are there than when the position was reached: one
  # landed before it while nobody read the stream.
  _write_shard(directory, "s-002.tfrecord", [8])
  with pytest.raises(stream.BadShardRecordError, match=r"s-002.tfrecord: record 0: 1 "
                     r"shard\(s\) sorting before the resume position"):
    list(stream.ShardStream(directory, 2, LENGTHS,
                            start=stream.StreamPosition("s-005.tfrecord", 0),
                            shards_before_start=0))


def _record_bounds(path):
  """(start, end) byte offsets of every record of a TFRecord file."""
  data = open(path, "rb").read()
  bounds, at = [], 0
  while at < len(data):
    length = int.from_bytes(data[at:at + 8], "little")
    end = at + 8 + 4 + length + 4
    bounds.append((at, end))
    at = end
  return bounds


def test_truncated_shard_names_shard_and_record_or_skips_the_tail(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  path = os.path.join(directory, "s-001.tfrecord")
  start, end = _record_bounds(path)[2]
  with open(path, "r+b") as f:
    f.truncate(start + (end - start) // 2)  # cut inside record 2
  with pytest.raises(stream.BadShardRecordError) as e:
    list(stream.ShardStream(directory, 4, LENGTHS))
  assert str(e.value).startswith(f"{path}: record 2: unreadable TFRecord")
  skipping = stream.ShardStream(directory, 4, LENGTHS, on_bad="skip")
  assert _items(skipping) == [[1, 2, 3, 4], [5, 1001, 1002, 2001],
                              [2002, 2003, 2004]]
  assert [(s.shard, s.record, s.count, s.kind) for s in skipping.skipped] == [
      (path, 2, None, "unreadable_record")]
  assert "record 2: skipped the rest of the shard" in skipping.skip_summary()


def test_corrupted_record_is_caught_by_its_crc(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  path = os.path.join(directory, "s-000.tfrecord")
  start, end = _record_bounds(path)[3]
  data = bytearray(open(path, "rb").read())
  data[start + 12 + 5] ^= 0xFF  # a byte of record 3's payload
  open(path, "wb").write(bytes(data))
  with pytest.raises(stream.BadShardRecordError,
                     match=r"s-000.tfrecord: record 3: unreadable TFRecord"):
    list(stream.ShardStream(directory, 2, LENGTHS))
  skipping = stream.ShardStream(directory, 2, LENGTHS, on_bad="skip")
  assert (sum(_items(skipping), [])
          == [1, 2, 3] + SHARDS["s-001.tfrecord"] + SHARDS["s-002.tfrecord"])


def test_unparsable_record_is_named_and_only_it_is_skipped(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  path = os.path.join(directory, "s-002.tfrecord")
  records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
  no_label = tf.train.Example.FromString(records[1])
  del no_label.features.feature["label"]
  records[1] = no_label.SerializeToString()
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r)
  with pytest.raises(stream.BadShardRecordError,
                     match=r"s-002.tfrecord: record 1: not an impression of "
                     r"this stream's schema: .*label"):
    list(stream.ShardStream(directory, 4, LENGTHS))
  skipping = stream.ShardStream(directory, 4, LENGTHS, on_bad="skip")
  batches = list(skipping)
  assert _items(batches) == [[1, 2, 3, 4], [5, 1001, 1002, 1003], [2001, 2003, 2004]]
  assert batches[-1].offsets.tolist() == [0, 2, 3]
  assert skipping.num_skipped_records == 1


def test_fingerprints_identify_records(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  batches = list(stream.ShardStream(directory, 4, LENGTHS, fingerprints=True))
  path = os.path.join(directory, "s-000.tfrecord")
  first = next(iter(tf.data.TFRecordDataset(path))).numpy()
  assert int(batches[0].fingerprints[0]) == stream.record_fingerprint(first)
  all_prints = np.concatenate([b.fingerprints for b in batches])
  assert len(set(all_prints.tolist())) == 12


def test_write_time_ordered_sorts_by_time_and_cuts_shards(tmp_path):
  source = str(tmp_path / "source")
  from data_pipeline.writer import DatasetWriter  # pylint: disable=g-import-not-at-top
  times = [50, 10, 30, 10, 40]
  with DatasetWriter(source, num_cats=1, num_shards=2) as w:
    for i, t in enumerate(times):
      w.write("train", _impression(i + 1, time=t))
    w.commit(source="test")
  paths = stream.write_time_ordered(source + "/train-*", str(tmp_path / "out"), 2)
  assert [os.path.basename(p) for p in paths] == [
      "impressions-000000.tfrecord", "impressions-000001.tfrecord",
      "impressions-000002.tfrecord"]
  batches = list(stream.ShardStream(str(tmp_path / "out"), 10, LENGTHS))
  got = batches[0].features
  assert got["time"].numpy().tolist() == [10, 10, 30, 40, 50]
  # Round-robin shards put items 1, 3, 5 before 2, 4: the stable sort keeps that
  # file order for the equal times of items 2 and 4.
  assert got["item_id"].numpy().tolist() == [2, 4, 3, 5, 1]
  schema = schema_lib.DatasetSchema.load(str(tmp_path / "out"))
  assert schema.splits["stream"]["impressions"] == 5


def test_nan_or_infinite_dense_feature_is_bad_input(tmp_path):
  directory = _stream_dir(tmp_path, SHARDS)
  path = os.path.join(directory, "s-001.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    for item, price in ((1001, 2.0), (1002, float("inf")), (1003, float("nan"))):
      w.write(schema_lib.to_example(_impression(item, dense={"price": price}),
                                    1).SerializeToString())
  with pytest.raises(stream.BadShardRecordError,
                     match=r"s-001.tfrecord: record 1: .*dense/price is NaN or "
                     "infinite"):
    list(stream.ShardStream(directory, 4, LENGTHS))
  skipping = stream.ShardStream(directory, 4, LENGTHS, on_bad="skip")
  assert sum(_items(skipping), []) == [1, 2, 3, 4, 5, 1001, 2001, 2002, 2003, 2004]
  assert [(s.record, s.count) for s in skipping.skipped] == [(1, 1), (2, 1)]


def test_write_time_ordered_reports_records_read_then_written(tmp_path):
  source = str(tmp_path / "source")
  from data_pipeline.writer import DatasetWriter  # pylint: disable=g-import-not-at-top
  with DatasetWriter(source, num_cats=1, num_shards=2) as w:
    for i, t in enumerate([50, 10, 30, 10, 40]):
      w.write("train", _impression(i + 1, time=t))
    w.commit(source="test")
  calls = []
  stream.write_time_ordered(source + "/train-*", str(tmp_path / "out"), 2,
                            progress=lambda *state: calls.append(state))
  # One read chunk of all 5 records (total 2 x 5 from schema.json), then shards
  # of 2, 2 and 1 written.
  assert calls == [(5, 10, 0.5), (7, 10, 0.7), (9, 10, 0.9), (10, 10, 1.0)]


def test_record_progress_ends_at_the_count_when_the_estimate_was_off():
  calls = []
  counter = stream.RecordProgress(lambda *state: calls.append(state), total=4)
  counter.add(3)
  counter.add(2)
  counter.end()
  assert calls == [(3, 4, 0.75), (5, 4, 1.0), (5, 5, 1.0)]
  unknown = []
  counter = stream.RecordProgress(lambda *state: unknown.append(state))
  counter.add(2)
  counter.end()
  assert unknown == [(2, None, None), (2, 2, 1.0)]


def test_records_in_files_from_schema_split_counts(tmp_path):
  source = str(tmp_path / "source")
  from data_pipeline.writer import DatasetWriter  # pylint: disable=g-import-not-at-top
  with DatasetWriter(source, num_cats=1, num_shards=2) as w:
    for i in range(5):
      w.write("train", _impression(i + 1))
    w.write("test", _impression(9))
    w.commit(source="test")
  files = reader.match_files(source + "/train-*")
  assert stream.records_in_files(files) == 5
  assert stream.records_in_files(files[:1]) == 2  # half the split's files
  assert stream.records_in_files(reader.match_files(source + "/*-*")) == 6
  unlisted = os.path.join(source, "extra.tfrecord")
  assert stream.records_in_files(files + [unlisted]) is None
