"""The reader turns impression records into the documented padded tensors."""

import os

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline.schema import Event, Impression
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
