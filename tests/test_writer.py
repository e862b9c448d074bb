"""The dataset writer is atomic, deterministic and reports correct counts."""

import os

import pytest

from data_pipeline.schema import (DatasetSchema, Event, Impression, from_example,
                                  to_example)
from data_pipeline.writer import DatasetWriter
from data_pipeline.tf_env import tf


def _imp(i, label=0, **kw):
  return Impression(label=label, user_id=i % 3 + 1, time=100 + i, item_id=i + 1,
                    item_cats=[i % 2 + 1], **kw)


def test_round_robin_shards_and_schema_counts(tmp_path):
  out = str(tmp_path / "ds")
  with DatasetWriter(out, num_cats=2, num_shards=2) as w:
    for i in range(5):
      w.write("train", _imp(i, label=int(i == 0),
                            clicks=[Event(50 + i, 1, [7])]))
    w.write("test", _imp(9, query_id=4, query_cats=[3]))
    w.commit(source="unit test")
  assert sorted(os.listdir(out)) == [
      "schema.json", "test-00000-of-00002.tfrecord",
      "test-00001-of-00002.tfrecord", "train-00000-of-00002.tfrecord",
      "train-00001-of-00002.tfrecord"]

  def items(name):
    return [tf.train.Example.FromString(r.numpy()).features.feature["item_id"]
            .int64_list.value[0]
            for r in tf.data.TFRecordDataset(os.path.join(out, name))]
  assert items("train-00000-of-00002.tfrecord") == [1, 3, 5]
  assert items("train-00001-of-00002.tfrecord") == [2, 4]
  schema = DatasetSchema.load(out)
  assert schema.num_cats == 2
  assert schema.splits["train"]["impressions"] == 5
  assert schema.splits["train"]["positives"] == 1
  assert schema.splits["test"]["impressions"] == 1
  assert schema.has_queries and not schema.has_seeds
  # items 1..5 and 10 as targets, 50..54 in histories
  assert schema.vocab["items"] == 11
  assert schema.vocab["max_items"] == 54
  assert schema.vocab["categories"] == 4  # 1, 2, 7 and the query's 3
  assert schema.vocab["users"] == 3
  assert schema.max_lengths["clicks"] == 1


def test_failure_leaves_nothing(tmp_path):
  out = str(tmp_path / "ds")
  with pytest.raises(ValueError, match="more than num_cats=1"):
    with DatasetWriter(out, num_cats=1) as w:
      w.write("train", _imp(0))
      w.write("train", Impression(label=0, user_id=1, time=1, item_id=1,
                                  item_cats=[1, 2]))
      w.commit(source="never")
  assert os.listdir(tmp_path) == []


def test_existing_output_is_not_clobbered(tmp_path):
  out = tmp_path / "ds"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="already exists"):
    DatasetWriter(str(out), num_cats=1)
  assert (out / "keep.txt").read_text() == "mine"
  with DatasetWriter(str(out), num_cats=1, overwrite=True) as w:
    w.write("train", _imp(0))
    w.commit(source="replace")
  assert not (out / "keep.txt").exists()
  assert sorted(os.listdir(tmp_path)) == ["ds"]


@pytest.mark.parametrize("imp", [
    Impression(label=1, user_id=7, time=50, item_id=3, item_cats=(1, 2),
               query_id=5, query_cats=(3, 4),
               clicks=[Event(11, 48, (3, 4)), Event(12, 49, (6,))],
               queries=[Event(5, 47, (3,))], seeds=[Event(11, 48, (3, 4))],
               dense={"price": 1.5}, categorical={"device": 2}),
    # Decoded histories are lists, as the converters build them.
    Impression(label=0, user_id=1, time=0, item_id=9, item_cats=(2,),
               clicks=[], queries=[]),
    Impression(label=0, user_id=2, time=3, item_id=4, item_cats=(),
               clicks=[Event(8, 1, ())], queries=[], seeds=[]),
], ids=["every_feature", "no_history", "empty_cats_and_seeds"])
def test_from_example_inverts_to_example(imp):
  assert from_example(to_example(imp, num_cats=2), num_cats=2) == imp
