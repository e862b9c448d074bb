"""How shards land under --follow: written in place, done markers, the landing
timeout; and which reader of several reads which shard (ShardOwner)."""

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream
from data_pipeline.tf_env import tf
from egin_tf.train import audit_log
from egin_tf.train import stream as streaming

LENGTHS = reader.SequenceLengths(3, 3, 3)
# The error of issue 28: a shard read while it was written in place.
ISSUE_28_MESSAGE = (
    "{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/"
    "replica:0/task:0/device:CPU:0}} truncated record at 816819' failed with Read less "
    "bytes than requested [Op:IteratorGetNext] name:")


def _impression(item_id):
  return schema_lib.Impression(
      label=item_id % 2, user_id=7, time=item_id, item_id=item_id, item_cats=[5],
      clicks=[schema_lib.Event(90 + i, i, [5]) for i in range(item_id % 4)],
      dense={"price": 1.0})


def _shard_bytes(tmp_path, items):
  """The bytes of a TFRecord file of these items and every record's (start, end)."""
  path = str(tmp_path / f".bytes-{items[0]}")
  with tf.io.TFRecordWriter(path) as w:
    for item in items:
      w.write(schema_lib.to_example(_impression(item), 1).SerializeToString())
  data = open(path, "rb").read()
  os.remove(path)
  bounds, at = [], 0
  while at < len(data):
    end = at + 8 + 4 + int.from_bytes(data[at:at + 8], "little") + 4
    bounds.append((at, end))
    at = end
  return data, bounds


def _stream_dir(tmp_path, items):
  """An empty stream folder whose schema covers these items."""
  directory = str(tmp_path / "stream")
  os.makedirs(directory)
  stats = schema_lib.SchemaStats()
  for item in items:
    stats.add("stream", _impression(item))
  stats.schema(1, {"stream": []}, "test").save(directory)
  return directory


def _land(directory, name, data):
  """Lands a whole shard: written under a hidden name, renamed into place."""
  tmp = os.path.join(directory, f".{name}")
  open(tmp, "wb").write(data)
  os.rename(tmp, os.path.join(directory, name))


def _append(path, data):
  """Appends in place, as a log shipper writing a shard does."""
  with open(path, "ab") as f:
    f.write(data)


def _items(batches):
  return [b.features["item_id"].numpy().tolist() for b in batches]


class FakeTime:
  """A clock that moves only when the stream sleeps; ``on_sleep`` runs each poll."""

  def __init__(self, on_sleep=lambda: None):
    self.now = 0.0
    self.on_sleep = on_sleep
    self.sleeps = 0

  def sleep(self, seconds):
    self.now += seconds
    self.sleeps += 1
    assert self.sleeps < 1000, "the stream never stopped"
    self.on_sleep()

  def clock(self):
    return self.now


def _follow(directory, fake, batch_size=100, **options):
  return stream.ShardStream(directory, batch_size, LENGTHS, follow=True,
                            poll_seconds=1.0, sleep=fake.sleep, clock=fake.clock,
                            **options)


def test_clean_tf_message_keeps_the_human_part_of_the_issue_28_error():
  assert (reader.clean_tf_message(ISSUE_28_MESSAGE)
          == "truncated record at 816819 failed with Read less bytes than requested")
  assert reader.clean_tf_message(
      "{{function_node __inference_f_12}}\nFeature: label (data type: int64) is "
      "required but could not be found.\n\t [[{{node ParseExample}}]] [Op:f]"
  ) == "Feature: label (data type: int64) is required but could not be found."
  assert reader.clean_tf_message("corrupted record at 36") == "corrupted record at 36"


def test_shard_written_in_place_is_read_as_its_records_complete(tmp_path):
  # Items 1-8 in one shard, appended in place one chunk per poll; the cuts fall
  # inside record 0's 12-byte header, in record 1's payload, exactly at the end
  # of record 3 (the shard looks complete), in record 4's last CRC byte and
  # right after record 5's header.
  data, bounds = _shard_bytes(tmp_path, list(range(1, 9)))
  directory = _stream_dir(tmp_path, range(1, 9))
  cuts = [bounds[0][0] + 5, (bounds[1][0] + bounds[1][1]) // 2, bounds[3][1],
          bounds[4][1] - 1, bounds[5][0] + 12, len(data)]
  path = os.path.join(directory, "s-000.tfrecord")
  written = [0]

  def write_next_chunk():
    if len(written) <= len(cuts):
      cut = cuts[len(written) - 1]
      _append(path, data[written[-1]:cut])
      written.append(cut)

  fake = FakeTime(write_next_chunk)
  batches = list(_follow(directory, fake, idle_timeout=2.0, landing_timeout=1.5))
  # Every poll trains on the records completed since the last one; a cut
  # inside a record waits for its rest (the 1.5 s landing timeout counts from
  # the last growth, so a poll every second never reaches it).
  assert _items(batches) == [[1], [2, 3, 4], [5], [6, 7, 8]]
  assert [b.offsets.tolist() for b in batches] == [[0], [1, 2, 3], [4], [5, 6, 7]]
  assert batches[-1].end == stream.StreamPosition("s-000.tfrecord", 8)
  # Polls: the 6 chunks, then 2 idle seconds.
  assert fake.sleeps == 6 + 2
  assert not batches[-1].shards_before_end


def test_shard_written_in_place_by_a_thread_is_read_once_in_order(tmp_path):
  # A real writer thread appends 40 records in arbitrary byte chunks (most cuts
  # fall inside records) while the stream polls every 10 ms, then lands a newer
  # shard by rename, which makes the first one final. After each chunk the
  # writer waits for two polls, so the stream reads every cut-off state.
  first, _ = _shard_bytes(tmp_path, list(range(1, 41)))
  second, _ = _shard_bytes(tmp_path, [1001, 1002])
  directory = _stream_dir(tmp_path, list(range(1, 41)) + [1001, 1002])
  path = os.path.join(directory, "s-000.tfrecord")
  cuts = [0] + [len(first) * k // 9 + k * 7 for k in range(1, 9)] + [len(first)]
  polls = threading.Semaphore(0)

  def write():
    for start, end in zip(cuts, cuts[1:]):
      _append(path, first[start:end])
      for _ in range(2):
        assert polls.acquire(timeout=10)
      time.sleep(0.01)
    _land(directory, "s-001.tfrecord", second)

  writer = threading.Thread(target=write, daemon=True)
  state = {"writer_done": False, "deadline": time.monotonic() + 20}
  sizes = []

  def sleep(seconds):
    time.sleep(seconds)
    sizes.append(os.path.getsize(path) if os.path.exists(path) else 0)
    polls.release()
    # Stop after one more full poll once the writer has finished.
    state["writer_done"] = not writer.is_alive()

  reading = stream.ShardStream(
      directory, 4, LENGTHS, follow=True, poll_seconds=0.01, sleep=sleep,
      should_stop=lambda: state["writer_done"] or time.monotonic() > state["deadline"])
  writer.start()
  batches = list(reading)
  writer.join()
  assert set(cuts[1:]) <= set(sizes)  # the stream polled at every cut
  rows = [(s, int(o)) for b in batches for s, o in zip(b.shards, b.offsets)]
  assert rows == ([("s-000.tfrecord", i) for i in range(40)]
                  + [("s-001.tfrecord", 0), ("s-001.tfrecord", 1)])
  assert sum(_items(batches), []) == list(range(1, 41)) + [1001, 1002]
  assert not reading.skipped


def test_resume_inside_a_shard_being_written_in_place(tmp_path):
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3, 4, 5])
  directory = _stream_dir(tmp_path, [1, 2, 3, 4, 5])
  path = os.path.join(directory, "s-000.tfrecord")
  _append(path, data[:bounds[3][0] + 20])  # records 0-2 and a piece of record 3
  fake = FakeTime(lambda: _append(path, data[os.path.getsize(path):]))
  batches = list(_follow(directory, fake, idle_timeout=1.0,
                         start=stream.StreamPosition("s-000.tfrecord", 1)))
  assert _items(batches) == [[2, 3], [4, 5]]


def test_record_completed_after_the_read_stopped_is_read(tmp_path, monkeypatch):
  # The writer completes the shard right after a read stopped at a cut-off
  # record: the size then covers more than the records read, so the stream reads
  # on instead of taking the shard as ending there.
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  directory = _stream_dir(tmp_path, [1, 2, 3])
  path = os.path.join(directory, "s-000.tfrecord")
  _append(path, data[:bounds[1][0] + 20])
  real_size, calls = stream._size, []

  def size_while_writing(shard_path):
    calls.append(shard_path)
    if len(calls) == 2:  # the check after the first read
      _append(path, data[os.path.getsize(path):])
    return real_size(shard_path)

  monkeypatch.setattr(stream, "_size", size_while_writing)
  assert _items(stream.ShardStream(directory, 10, LENGTHS)) == [[1, 2, 3]]


def test_cut_off_record_that_never_completes_is_bad_input_after_the_timeout(tmp_path):
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  directory = _stream_dir(tmp_path, [1, 2, 3])
  path = os.path.join(directory, "s-000.tfrecord")
  _append(path, data[:bounds[2][0] + 30])  # the writer died inside record 2
  fake = FakeTime()
  got = []
  with pytest.raises(stream.BadShardRecordError) as e:
    for batch in _follow(directory, fake, landing_timeout=2.5):
      got.append(batch)
  assert _items(got) == [[1, 2]]
  # Read at 0 s; still cut short at the polls of 1 and 2 s; timed out at 3 s.
  assert fake.now == 3.0
  message = str(e.value)
  assert message == (
      f"{path}: record 2: unreadable TFRecord (truncated or corrupted): truncated "
      f"record at {bounds[2][0]} failed with Read less bytes than requested; not "
      "completed 2.5 s after the shard last grew (landing_timeout)")
  assert not any(internal in message for internal in ("{{", "[Op:", "name:"))
  # Skipping skips the rest of the shard, reported, and keeps following.
  fake = FakeTime()
  skipping = _follow(directory, fake, landing_timeout=2.5, idle_timeout=5.0,
                     on_bad="skip")
  assert _items(skipping) == [[1, 2]]
  assert [(s.shard, s.record, s.count, s.kind) for s in skipping.skipped] == [
      (path, 2, None, "unreadable_record")]


def test_newer_shard_makes_the_cut_off_one_final(tmp_path):
  old, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  new, _ = _shard_bytes(tmp_path, [1001])
  directory = _stream_dir(tmp_path, [1, 2, 3, 1001])
  path = os.path.join(directory, "s-000.tfrecord")
  # Completed in the poll the newer shard lands in: read to its end first.
  _append(path, old[:bounds[1][0] + 3])

  def complete_then_land():
    if not os.path.exists(os.path.join(directory, "s-001.tfrecord")):
      _append(path, old[os.path.getsize(path):])
      _land(directory, "s-001.tfrecord", new)

  batches = list(_follow(directory, FakeTime(complete_then_land), idle_timeout=1.0))
  assert _items(batches) == [[1], [2, 3, 1001]]
  # Still cut short when the newer shard lands: bad input at once, as without
  # --follow (the timeout is far).
  os.remove(os.path.join(directory, "s-001.tfrecord"))
  with open(path, "r+b") as f:
    f.truncate(bounds[1][0] + 3)  # inside record 1's header
  got = []
  with pytest.raises(stream.BadShardRecordError) as e:
    for batch in _follow(directory, FakeTime(
        lambda: _land(directory, "s-001.tfrecord", new))):  # a landing far from the timeout
      got.append(batch)
  assert _items(got) == [[1]]
  assert str(e.value) == (
      f"{path}: record 1: unreadable TFRecord (truncated or corrupted): the shard "
      f"ends inside the record's header: its records stop at byte {bounds[1][0]} "
      f"of {bounds[1][0] + 3}; a newer shard has landed, so it will not be completed")
  skipping = _follow(directory, FakeTime(), idle_timeout=1.0, on_bad="skip")
  assert _items(skipping) == [[1, 1001]]
  assert [(s.record, s.count) for s in skipping.skipped] == [(1, None)]


def test_without_follow_a_shard_cut_inside_a_record_header_is_bad_input(tmp_path):
  # TF reads a header cut short as the end of the file; the stream counts bytes.
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  directory = _stream_dir(tmp_path, [1, 2, 3])
  _land(directory, "s-000.tfrecord", data[:bounds[2][0] + 11])
  with pytest.raises(stream.BadShardRecordError,
                     match=r"s-000.tfrecord: record 2: unreadable TFRecord \(truncated "
                     rf"or corrupted\): the shard ends inside the record's header: its "
                     rf"records stop at byte {bounds[2][0]} of {bounds[2][0] + 11}$"):
    list(stream.ShardStream(directory, 2, LENGTHS))


def test_done_marker_lands_a_shard_and_is_never_read_as_one(tmp_path):
  first, _ = _shard_bytes(tmp_path, [1, 2])
  second, bounds = _shard_bytes(tmp_path, [1001, 1002])
  directory = _stream_dir(tmp_path, [1, 2, 1001, 1002])
  _land(directory, "s-000.tfrecord", first)
  # A marker that is no TFRecord: read as a shard it would be bad input.
  open(os.path.join(directory, "s-000.tfrecord.done"), "w").write("ok\n")
  path = os.path.join(directory, "s-001.tfrecord")
  _append(path, second[:bounds[1][0] + 20])  # in place, unmarked, cut off
  assert stream.list_shards(directory) == [
      "s-000.tfrecord", "s-000.tfrecord.done", "s-001.tfrecord"]
  assert stream.list_shards(directory, done_suffix=".done") == ["s-000.tfrecord"]
  assert _items(stream.ShardStream(directory, 10, LENGTHS, done_suffix=".done")) == [
      [1, 2]]
  # Following: the unmarked shard is not read (no timeout applies) until its
  # writer completes it and writes the marker.
  polls = []

  def poll():
    polls.append(1)
    if len(polls) == 3:
      _append(path, second[os.path.getsize(path):])
      open(path + ".done", "w").close()

  reading = _follow(directory, FakeTime(poll), landing_timeout=0.5, idle_timeout=5.0,
                    done_suffix=".done")
  assert _items(reading) == [[1, 2], [1001, 1002]]
  assert not reading.skipped


def test_train_follows_a_shard_written_in_place(tmp_path):
  # The real entry point: `egin-tf train --stream DIR --follow` while the shard
  # is appended in place in chunks cut inside records. SIGTERM ends the run once
  # every record is trained (the idle timeout only guards against a hang: the
  # run's start-up time would decide what an idle stop sees).
  items = list(range(1, 61))
  data, bounds = _shard_bytes(tmp_path, items)
  directory = _stream_dir(tmp_path, items)
  path = os.path.join(directory, "s-000.tfrecord")
  _append(path, data[:bounds[20][0] + 9])  # 20 records and a piece of the 21st
  model_dir = str(tmp_path / "m")
  process = subprocess.Popen(
      [sys.executable, "-m", "egin_tf.cli.main", "train", "--stream", directory,
       "--follow", "--poll_seconds", "0.1", "--idle_timeout", "60", "--model", "dnn",
       "--model_dir", model_dir, "--batch_size", "10", "--max_clicks", "3",
       "--max_queries", "3", "--max_seeds", "3", "--embedding_dim", "2",
       "--log_every", "1", "--audit_log"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in process.stdout:
    lines.append(line)
    if line.startswith("step 2 "):  # the whole records are trained: write on
      for cut in [bounds[33][0] + 100, bounds[47][1] - 2, len(data)]:
        _append(path, data[os.path.getsize(path):cut])
        time.sleep(0.3)
    if " at s-000.tfrecord record 60 " in line:
      break
  process.send_signal(signal.SIGTERM)
  output = "".join(lines) + process.communicate(timeout=120)[0]
  assert process.returncode == 0, output
  assert "unreadable" not in output
  assert "stopped (SIGTERM) at step " in output
  trained = audit_log.TrainedExamplesLog(os.path.join(model_dir,
                                                      "trained_examples")).read()
  assert [(shard, offset) for shard, offset, _ in trained] == [
      ("s-000.tfrecord", i) for i in range(60)]


def test_an_idle_stop_while_waiting_for_a_record_says_which(tmp_path):
  # idle_timeout (1 s) under landing_timeout (600 s): the run stops idle with
  # record 2 still cut off. Nothing is lost (the position is before it), and
  # the stream and the trainer's summary say which record it waited for.
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  directory = _stream_dir(tmp_path, [1, 2, 3])
  _append(os.path.join(directory, "s-000.tfrecord"), data[:bounds[2][0] + 7])
  reading = _follow(directory, FakeTime(), idle_timeout=1.0)
  batches = list(reading)
  assert _items(batches) == [[1, 2]] and not reading.skipped
  assert batches[-1].end == stream.StreamPosition("s-000.tfrecord", 2)
  assert reading.waiting_for == stream.StreamPosition("s-000.tfrecord", 2)
  assert streaming._waiting_note(reading) == (  # pylint: disable=protected-access
      "; stopped while waiting for the rest of s-000.tfrecord record 2 (written "
      "in place; a resumed run reads it)")


# Readers: a cluster's workers split a stream by ShardOwner.

def test_shard_owner_is_the_name_hash_mod_the_readers():
  names = [f"impressions-{i:06d}.tfrecord" for i in range(40)]
  for count in (1, 2, 3):
    owners = [[stream.ShardOwner(i, count).owns(n) for i in range(count)]
              for n in names]
    assert all(sum(row) == 1 for row in owners)  # one reader per shard
    for name, row in zip(names, owners):
      digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
      assert row.index(True) == int.from_bytes(digest, "little") % count
  # Both readers get some of 40 shards (a hash, not a round robin).
  assert 0 < sum(stream.ShardOwner(0, 2).owns(n) for n in names) < 40
  with pytest.raises(ValueError, match=r"reader index must be in \[0, 2\), got 2"):
    stream.ShardOwner(2, 2)


def test_two_readers_read_every_record_once_each_its_shards_in_order(tmp_path):
  items = {f"s-{k:03d}.tfrecord": [10 * k + i for i in range(3)] for k in range(8)}
  directory = _stream_dir(tmp_path, sum(items.values(), []))
  for name, shard_items in items.items():
    _land(directory, name, _shard_bytes(tmp_path, shard_items)[0])
  read = []
  for index in range(2):
    owner = stream.ShardOwner(index, 2)
    batches = list(stream.ShardStream(directory, 4, LENGTHS, owner=owner))
    rows = [(s, int(o)) for b in batches for s, o in zip(b.shards, b.offsets)]
    mine = sorted(n for n in items if owner.owns(n))
    assert rows == [(n, i) for n in mine for i in range(3)]
    assert sum(_items(batches), []) == sum((items[n] for n in mine), [])
    # Its positions and shard counts are of its own shards.
    assert batches[-1].end == stream.StreamPosition(mine[-1], 3)
    assert batches[-1].shards_before_end == len(mine) - 1
    read += sum(_items(batches), [])
  assert sorted(read) == sorted(sum(items.values(), []))


def test_another_readers_newer_shard_makes_this_ones_open_shard_final(tmp_path):
  owner = stream.ShardOwner(0, 2)
  names = [f"s-{k:03d}.tfrecord" for k in range(20)]
  mine = next(n for n in names if owner.owns(n))
  theirs = next(n for n in names if n > mine and not owner.owns(n))
  data, bounds = _shard_bytes(tmp_path, [1, 2, 3])
  directory = _stream_dir(tmp_path, [1, 2, 3, 4])
  _append(os.path.join(directory, mine), data[:bounds[2][0] + 5])  # record 2 cut
  polls = []

  def land_theirs():
    polls.append(1)
    if len(polls) == 2:  # a newer shard lands; it is not this reader's
      _land(directory, theirs, _shard_bytes(tmp_path, [4])[0])

  fake = FakeTime(land_theirs)
  reading = _follow(directory, fake, idle_timeout=3.0, on_bad="skip", owner=owner)
  assert sum(_items(list(reading)), []) == [1, 2]
  # Until it landed the cut record was waited for; then it was final: bad input.
  assert [(os.path.basename(s.shard), s.record) for s in reading.skipped] == [(mine, 2)]
  assert "a newer shard has landed" in reading.skipped[0].reason
