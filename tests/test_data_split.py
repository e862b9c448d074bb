"""DataSplit: a pattern resolved once into files, schema, lengths, size and oracle."""

import json
import os

import pytest

from data_pipeline import reader
from data_pipeline.data_split import ORACLE_FILE, DataSplit
from data_pipeline.schema import Event, Impression
from data_pipeline.writer import DatasetWriter
from egin_tf.train import config as train_config
from egin_tf.train import offline

LENGTHS = reader.SequenceLengths(2, 2, 2)


def _dataset(tmp_path, train=6, test=3):
  """``train`` + ``test`` impressions over two shards per split."""
  out = str(tmp_path / "data")
  with DatasetWriter(out, num_cats=1, num_shards=2) as w:
    for split, count in (("train", train), ("test", test)):
      for i in range(count):
        w.write(split, Impression(label=i % 2, user_id=1 + i % 3, time=i,
                                  item_id=10 + i, item_cats=[3],
                                  clicks=[Event(20 + i, i, [4])]))
    w.commit(source="test")
  return out


def test_a_folder_stands_for_its_split(tmp_path):
  data = _dataset(tmp_path)
  train = DataSplit.resolve(data, "train", LENGTHS)
  assert [os.path.basename(f) for f in train.files] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert train.pattern == ",".join(train.files)
  assert train.impressions == 6
  assert train.lengths == LENGTHS
  assert train.schema.num_cats == 1
  assert train.oracle is None
  assert DataSplit.resolve(data, "test").impressions == 3


def test_a_glob_counts_only_its_files(tmp_path):
  data = _dataset(tmp_path, train=6)
  # One of two train shards: half of the split's 6 impressions.
  one = DataSplit.resolve(os.path.join(data, "train-00000-*"), "train", LENGTHS)
  assert len(one.files) == 1
  assert one.impressions == 3
  assert one.pattern == os.path.join(data, "train-00000-*")


def test_dataset_reads_the_files_with_the_split_lengths(tmp_path):
  data = _dataset(tmp_path)
  train = DataSplit.resolve(data, "train", LENGTHS)
  batches = list(train.dataset(4).as_numpy_iterator())
  assert [len(b["label"]) for b in batches] == [4, 2]
  assert batches[0]["click_ids"].shape == (4, LENGTHS.max_clicks)


def test_the_oracle_beside_the_files_is_read(tmp_path):
  data = _dataset(tmp_path)
  with open(os.path.join(data, ORACLE_FILE), "w", encoding="utf-8") as f:
    json.dump({"test_auc": 0.75}, f)
  assert DataSplit.resolve(data, "test").oracle == {"test_auc": 0.75}


def test_a_pattern_of_no_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no files match"):
    DataSplit.resolve(str(tmp_path / "nothing-*"), "train")


def test_offline_training_globs_each_pattern_once(tmp_path, monkeypatch):
  data = _dataset(tmp_path)
  globbed = []
  match_files = reader.match_files
  monkeypatch.setattr(reader, "match_files",
                      lambda pattern, *a, **k: globbed.append(pattern) or
                      match_files(pattern, *a, **k))
  config = train_config.TrainConfig(model="dnn", batch_size=2, steps=2, log_every=2,
                                    max_clicks=2, max_queries=2, max_seeds=2)
  result = offline.train(data, str(tmp_path / "m"), config, eval_pattern=data,
                         verbose=0, print_fn=lambda _: None)
  assert result["eval"]["impressions"] == 3
  # The train split once, the test split once: nothing globs either again.
  assert len(globbed) == 2, globbed
