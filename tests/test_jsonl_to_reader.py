"""JSONL -> TFRecord -> reader gives the hand-computed padded tensors."""

import json

import numpy as np

from data_pipeline import jsonl, reader
from data_pipeline.ids import stable_id as h

LINES = [
    {"user": "u1", "time": 100, "label": 1, "item": "i9", "item_cats": ["c1"],
     "query": "shoes", "query_cats": ["c1", "c2"],
     "clicks": [["i1", 10, ["c1"]], ["i2", 20, ["c2"]], ["i3", 30, []],
                ["i4", 40, ["c1", "c3"]]],
     "queries": [["boots", 5, ["c1"]]],
     "features": {"price": 9.5, "device": "ios"}},
    {"user": 7, "time": 50, "label": 0, "item": 3, "query": None},
]


def test_jsonl_through_reader_equals_hand_computed_tensors(tmp_path):
  src = tmp_path / "log.jsonl"
  src.write_text("".join(json.dumps(line) + "\n" for line in LINES))
  out = str(tmp_path / "ds")
  jsonl.convert_jsonl(str(src), out, max_cats=2)
  (batch,) = list(reader.make_dataset(out + "/*.tfrecord", batch_size=8,
                                      max_clicks=3, max_queries=2, max_seeds=1))
  got = {k: v.numpy() for k, v in batch.items()}

  np.testing.assert_array_equal(got["label"], [1, 0])
  np.testing.assert_array_equal(got["user_id"], [h("u1"), h(7)])
  np.testing.assert_array_equal(got["time"], [100, 50])
  np.testing.assert_array_equal(got["item_id"], [h("i9"), h(3)])
  np.testing.assert_array_equal(got["item_cats"], [[h("c1"), 0], [0, 0]])
  np.testing.assert_array_equal(got["query_id"], [h("shoes"), 0])
  np.testing.assert_array_equal(got["query_cats"], [[h("c1"), h("c2")], [0, 0]])
  # Four clicks, max_clicks=3: the three most recent, oldest first.
  np.testing.assert_array_equal(got["click_ids"],
                                [[h("i2"), h("i3"), h("i4")], [0, 0, 0]])
  np.testing.assert_array_equal(got["click_times"], [[20, 30, 40], [0, 0, 0]])
  np.testing.assert_array_equal(
      got["click_cats"],
      [[[h("c2"), 0], [0, 0], [h("c1"), h("c3")]], [[0, 0], [0, 0], [0, 0]]])
  np.testing.assert_array_equal(got["query_hist_ids"], [[h("boots"), 0], [0, 0]])
  np.testing.assert_array_equal(got["query_hist_times"], [[5, 0], [0, 0]])
  np.testing.assert_array_equal(got["query_hist_cats"],
                                [[[h("c1"), 0], [0, 0]], [[0, 0], [0, 0]]])
  np.testing.assert_array_equal(got["seed_ids"], [[0], [0]])
  np.testing.assert_array_equal(got["seed_cats"], np.zeros([2, 1, 2]))
  # Features the second line lacks read as 0.
  np.testing.assert_allclose(got["dense/price"], [9.5, 0.0])
  np.testing.assert_array_equal(got["cat/device"], [h("ios"), 0])
  assert set(got) == {
      "label", "user_id", "time", "item_id", "item_cats", "query_id",
      "query_cats", "click_ids", "click_times", "click_cats", "query_hist_ids",
      "query_hist_times", "query_hist_cats", "seed_ids", "seed_times",
      "seed_cats", "dense/price", "cat/device"}
