"""seen_ids' progress: records scanned, the total from schema.json, once per batch."""

import numpy as np

from data_pipeline.data_split import DataSplit
from data_pipeline import reader
from data_pipeline.schema import Event, Impression
from data_pipeline.writer import DatasetWriter
from egin_tf.serve import embeddings

LENGTHS = reader.SequenceLengths(3, 3, 3)


def _dataset(tmp_path, num_impressions=5):
  out = str(tmp_path / "data")
  with DatasetWriter(out, num_cats=1, num_shards=2) as w:
    for i in range(num_impressions):
      w.write("train", Impression(label=i % 2, user_id=1, time=i, item_id=10 + i,
                                  item_cats=[3], clicks=[Event(20 + i, i, [4])]))
    w.commit(source="test")
  return out


def test_seen_ids_reports_records_per_batch_ending_at_the_total(tmp_path):
  data = _dataset(tmp_path)
  calls = []
  seen = embeddings.seen_ids(DataSplit.resolve(data, "train", LENGTHS),
                             cache_dir=str(tmp_path),
                             batch_size=2,
                             progress=lambda *state: calls.append(state))
  # 5 records in batches of 2, 2, 1; schema.json says 5.
  assert calls == [(2, 5, 0.4), (4, 5, 0.8), (5, 5, 1.0)]
  np.testing.assert_array_equal(seen["items"].ids, list(range(10, 15)) +
                                list(range(20, 25)))
  # Cached: nothing read, nothing reported, the same tables.
  again = []
  cached = embeddings.seen_ids(DataSplit.resolve(data, "train", LENGTHS),
                               cache_dir=str(tmp_path),
                               progress=lambda *state: again.append(state))
  assert again == []
  np.testing.assert_array_equal(cached["items"].ids, seen["items"].ids)


def test_seen_ids_without_progress_is_unchanged(tmp_path):
  data = _dataset(tmp_path)
  split = DataSplit.resolve(data, "train", LENGTHS)
  quiet = embeddings.seen_ids(split, batch_size=2)
  loud = embeddings.seen_ids(split, batch_size=2,
                             progress=lambda *state: None)
  for kind in ("items", "queries"):
    np.testing.assert_array_equal(quiet[kind].ids, loud[kind].ids)
    np.testing.assert_array_equal(quiet[kind].cats, loud[kind].cats)
