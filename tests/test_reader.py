"""The reader turns impression records into the documented padded tensors."""

import os
import re

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline.bad_input import BadShardRecordError
from data_pipeline.schema import DatasetSchema, Event, Impression
from data_pipeline.writer import DatasetWriter


def _write(tmp_path, impressions, num_cats=2, shards=1):
  out = str(tmp_path / "ds")
  with DatasetWriter(out, num_cats=num_cats, num_shards=shards) as writer:
    for imp in impressions:
      writer.write("train", imp)
    writer.commit(source="test")
  return out


IMPRESSIONS = [
    Impression(label=1, user_id=7, time=100, item_id=5, item_cats=[3],
               clicks=[Event(1, 10, [3]), Event(2, 20, [4, 5]), Event(3, 30, [])],
               queries=[Event(9, 15, [3])],
               seeds=[Event(1, 10, [3])],
               dense={"price": 2.5}, categorical={"position": 3}),
    Impression(label=0, user_id=8, time=200, item_id=6, item_cats=[3, 4],
               query_id=4, query_cats=[7], seeds=[]),
]


def test_padded_tensors_match_hand_computed(tmp_path):
  out = _write(tmp_path, IMPRESSIONS)
  ds = reader.make_dataset(out + "/train-*", batch_size=4, max_clicks=2,
                           max_queries=3, max_seeds=2)
  (batch,) = list(ds)
  got = {k: v.numpy().tolist() for k, v in batch.items()}
  assert got["label"] == [1, 0]
  assert got["user_id"] == [7, 8]
  assert got["time"] == [100, 200]
  assert got["item_id"] == [5, 6]
  assert got["item_cats"] == [[3, 0], [3, 4]]
  assert got["query_id"] == [0, 4]
  assert got["query_cats"] == [[0, 0], [7, 0]]
  # Three clicks truncated to the two most recent, oldest first.
  assert got["click_ids"] == [[2, 3], [0, 0]]
  assert got["click_times"] == [[20, 30], [0, 0]]
  assert got["click_cats"] == [[[4, 5], [0, 0]], [[0, 0], [0, 0]]]
  assert got["query_hist_ids"] == [[9, 0, 0], [0, 0, 0]]
  assert got["query_hist_times"] == [[15, 0, 0], [0, 0, 0]]
  assert got["query_hist_cats"] == [[[3, 0], [0, 0], [0, 0]],
                                    [[0, 0], [0, 0], [0, 0]]]
  assert got["seed_ids"] == [[1, 0], [0, 0]]
  assert got["seed_cats"] == [[[3, 0], [0, 0]], [[0, 0], [0, 0]]]
  # A feature an example lacks reads as 0.
  assert got["dense/price"] == [2.5, 0.0]
  assert got["cat/position"] == [3, 0]


def test_static_shapes_and_dtypes(tmp_path):
  out = _write(tmp_path, IMPRESSIONS * 3)
  ds = reader.make_dataset(out + "/train-*", batch_size=4, max_clicks=5,
                           max_queries=6, max_seeds=7, drop_remainder=True)
  spec = ds.element_spec
  assert spec["click_ids"].shape.as_list() == [4, 5]
  assert spec["click_cats"].shape.as_list() == [4, 5, 2]
  assert spec["query_hist_cats"].shape.as_list() == [4, 6, 2]
  assert spec["seed_times"].shape.as_list() == [4, 7]
  assert spec["label"].shape.as_list() == [4]
  assert spec["dense/price"].dtype.name == "float32"
  assert spec["cat/position"].dtype.name == "int64"
  assert len(list(ds)) == 1  # 6 examples, the partial batch dropped


def test_truncation_keeps_most_recent_for_long_histories(tmp_path):
  clicks = [Event(100 + i, 1000 + i, [i % 3 + 1]) for i in range(150)]
  imp = Impression(label=0, user_id=1, time=5000, item_id=1, clicks=clicks)
  out = _write(tmp_path, [imp], num_cats=1)
  (batch,) = list(reader.make_dataset(out + "/train-*", batch_size=1,
                                      max_clicks=100))
  np.testing.assert_array_equal(batch["click_ids"].numpy()[0],
                                np.arange(150, 250))
  np.testing.assert_array_equal(batch["click_times"].numpy()[0],
                                np.arange(1050, 1150))
  np.testing.assert_array_equal(batch["click_cats"].numpy()[0, :, 0],
                                np.arange(50, 150) % 3 + 1)


def test_shuffled_reading_is_deterministic_by_seed(tmp_path):
  imps = [Impression(label=i % 2, user_id=i + 1, time=i, item_id=i + 1)
          for i in range(200)]
  out = _write(tmp_path, imps, shards=3)

  def users(seed):
    ds = reader.make_dataset(out + "/train-*", batch_size=50, shuffle=True,
                             shuffle_buffer=64, seed=seed)
    return np.concatenate([b["user_id"].numpy() for b in ds]).tolist()

  assert users(1) == users(1)
  assert users(1) != users(2)
  assert sorted(users(1)) == list(range(1, 201))  # nothing lost or repeated


def _passes(dataset, batches_per_pass):
  """User ids of each batch, grouped by pass."""
  batches = [tuple(b["user_id"].numpy().tolist()) for b in dataset]
  return [batches[i:i + batches_per_pass]
          for i in range(0, len(batches), batches_per_pass)]


def test_a_cached_ordered_read_repeats_the_uncached_pass(tmp_path):
  imps = [Impression(label=i % 2, user_id=i + 1, time=i, item_id=i + 1)
          for i in range(10)]
  out = _write(tmp_path, imps, shards=2)
  plain = reader.make_dataset(out + "/train-*", batch_size=4)
  cached = reader.make_dataset(out + "/train-*", batch_size=4, num_epochs=3,
                               cache=True)
  (first,) = _passes(plain, 3)
  assert _passes(cached, 3) == [first] * 3  # a partial batch kept, like plain


def test_a_cached_shuffled_read_replays_its_batches_in_new_orders(tmp_path):
  imps = [Impression(label=i % 2, user_id=i + 1, time=i, item_id=i + 1)
          for i in range(200)]
  out = _write(tmp_path, imps, shards=3)

  def passes(seed):
    return _passes(reader.make_dataset(
        out + "/train-*", batch_size=10, shuffle=True, shuffle_buffer=64,
        seed=seed, num_epochs=4, drop_remainder=True, cache=True), 20)

  runs = passes(1)
  assert len(runs) == 4
  assert sorted(u for batch in runs[0] for u in batch) == list(range(1, 201))
  for later in runs[1:]:
    assert sorted(later) == sorted(runs[0])  # the same batches ...
    assert later != runs[0]  # ... in another order
  assert runs[1] != runs[2]
  assert passes(1) == runs  # repeatable by seed


def test_cached_example_bytes_is_the_padded_example(tmp_path):
  out = _write(tmp_path, IMPRESSIONS)  # num_cats 2, price, position
  schema = DatasetSchema.load(out)
  lengths = reader.SequenceLengths(max_clicks=3, max_queries=4, max_seeds=5)
  # int64: 5 scalars, item and query cats (2 each), per history ids and times
  # (L each) and cats (2L); category "position"; float32: "price".
  longs = 5 + 2 * 2 + (3 + 4 + 5) * (1 + 1 + 2) + 1
  assert reader.cached_example_bytes(schema, lengths) == 8 * longs + 4


def test_missing_files_and_schema_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no files match"):
    reader.make_dataset(str(tmp_path / "nothing-*"), batch_size=2)
  (tmp_path / "orphan.tfrecord").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="schema.json"):
    reader.make_dataset(str(tmp_path / "orphan.tfrecord"), batch_size=2)


def test_a_glob_over_a_dataset_folder_skips_its_metadata(sim_data, tmp_path):
  data, _ = sim_data
  (tmp_path / "sub").mkdir()
  files = reader.match_files(f"{data}/*")
  # schema.json and oracle.json are there too, but only the shards are records.
  assert [os.path.basename(f) for f in files] == [
      "test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord",
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  with pytest.raises(FileNotFoundError, match="no files match"):
    reader.match_files(f"{tmp_path}/*")  # a folder alone is no record file


def test_a_dataset_folder_stands_for_the_split_asked_for(sim_data, tmp_path):
  data, oracle = sim_data
  names = lambda files: [os.path.basename(f) for f in files]  # noqa: E731
  assert names(reader.match_files(data, "train")) == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert names(reader.match_files(data, "test")) == [
      "test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord"]
  ds = reader.make_dataset(data, batch_size=1000, split="test")
  assert sum(int(b["label"].shape[0]) for b in ds) == oracle["test_impressions"]
  # split_pattern: a folder becomes its split's shards, a glob stays a glob.
  assert reader.split_pattern(f"{data}, {tmp_path}/x-*", "train") == (
      f"{data}/train-00000-of-00002.tfrecord,{data}/train-00001-of-00002.tfrecord,"
      f"{tmp_path}/x-*")


def test_a_folder_of_one_split_needs_no_split_name(tmp_path):
  out = _write(tmp_path, IMPRESSIONS, shards=2)
  assert [os.path.basename(f) for f in reader.match_files(out)] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  (batch,) = list(reader.make_dataset(out, batch_size=4))
  assert sorted(batch["user_id"].numpy().tolist()) == [7, 8]


def test_a_folder_that_does_not_say_which_files_is_a_clear_error(sim_data, tmp_path):
  data, _ = sim_data
  with pytest.raises(FileNotFoundError,
                     match="dataset folder with the splits test, train: name"):
    reader.match_files(data)
  with pytest.raises(FileNotFoundError,
                     match=r"has no split 'valid' \(its splits: test, train\)"):
    reader.make_dataset(data, batch_size=2, split="valid")
  (tmp_path / "plain").mkdir()
  with pytest.raises(FileNotFoundError, match="no schema.json"):
    reader.match_files(str(tmp_path / "plain"), "train")
  out = _write(tmp_path, IMPRESSIONS, shards=2)
  os.remove(os.path.join(out, "train-00001-of-00002.tfrecord"))
  with pytest.raises(FileNotFoundError, match="train-00001-of-00002.tfrecord: missing, "
                     "but .*schema.json lists it in split 'train'"):
    reader.match_files(out)


def _records_of(path):
  from data_pipeline.tf_env import tf  # pylint: disable=g-import-not-at-top
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def test_a_text_file_named_tfrecord_is_named_before_reading(tmp_path):
  out = _write(tmp_path, IMPRESSIONS)
  text = os.path.join(out, "x.tfrecord")
  with open(text, "w", encoding="utf-8") as f:
    f.write("user,item,label\n7,5,1\n")
  with pytest.raises(BadShardRecordError) as caught:
    reader.make_dataset(out + "/*", batch_size=2)
  assert str(caught.value).startswith(f"{text}: record 0: unreadable TFRecord")
  assert "Is this even a TFRecord file?" in str(caught.value)
  assert (caught.value.path, caught.value.line) == (text, 0)


def _fails_naming(pattern, message):
  from data_pipeline.tf_env import tf  # pylint: disable=g-import-not-at-top
  ds = reader.make_dataset(pattern, batch_size=2)
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    for _ in ds:
      pass


def test_a_truncated_record_fails_naming_file_record_and_byte(tmp_path):
  imps = [Impression(label=i % 2, user_id=i + 1, time=i, item_id=i + 1)
          for i in range(3)]
  shard = os.path.join(_write(tmp_path, imps), "train-00000-of-00001.tfrecord")
  lengths = [len(r) for r in _records_of(shard)]
  size = sum(lengths) + 16 * 3  # 12 framing bytes before a record, 4 after
  with open(shard, "rb") as f:
    data = f.read()
  assert len(data) == size
  with open(shard, "wb") as f:
    f.write(data[:-5])  # the last record loses its data CRC and a byte
  good = lengths[0] + lengths[1] + 32
  _fails_naming(shard, f"{shard}: record 2: unreadable TFRecord (not a TFRecord "
                f"file, or the record is truncated or corrupted): its records stop "
                f"at byte {good} of {size - 5}")
  with open(shard, "wb") as f:
    f.write(data[:good + 5])  # 5 bytes of record 2's header, which TF reads as EOF
  _fails_naming(shard, f"{shard}: record 2: unreadable TFRecord")
  _fails_naming(shard, f"its records stop at byte {good} of {good + 5}")


def test_a_corrupted_record_fails_naming_file_and_record(tmp_path):
  imps = [Impression(label=i % 2, user_id=i + 1, time=i, item_id=i + 1)
          for i in range(3)]
  out = _write(tmp_path, imps)
  shard = os.path.join(out, "train-00000-of-00001.tfrecord")
  first = len(_records_of(shard)[0]) + 16
  with open(shard, "r+b") as f:
    f.seek(first + 12 + 3)  # a byte of record 1's data: its CRC fails
    byte = f.read(1)
    f.seek(first + 12 + 3)
    f.write(bytes([byte[0] ^ 0xFF]))
  _fails_naming(out, f"{shard}: record 1: unreadable TFRecord")
  _fails_naming(out, f"its records stop at byte {first} of")


def test_an_unreadable_file_is_one_line_in_the_cli(tmp_path, capsys):
  from egin_tf.cli import common  # pylint: disable=g-import-not-at-top
  out = _write(tmp_path, IMPRESSIONS)
  text = os.path.join(out, "notatfrecord.txt")
  with open(text, "w", encoding="utf-8") as f:
    f.write("hello\n")  # shorter than a record header: TF alone reads no records
  main = common.clean_errors(lambda argv: reader.make_dataset(text, batch_size=2))
  with pytest.raises(SystemExit) as caught:
    main([])
  assert caught.value.code == 1
  assert capsys.readouterr().err.splitlines() == [
      f"error: {text}: record 0: unreadable TFRecord (not a TFRecord file, or the "
      "record is truncated or corrupted): its records stop at byte 0 of 6"]
