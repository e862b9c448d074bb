"""Every file the library reads or writes goes through tf.io.gfile: datasets, raw
converter inputs and stream folders on a non-local filesystem (TF's ``ram://``).

data_pipeline tests are the ``test_data_pipeline_*`` functions.
"""

import egin_tf  # noqa: F401  (first: Keras 2 before tensorflow loads)

import gzip
import json
import os
import uuid

import pytest

from data_pipeline import paths as paths_lib
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import stream
from data_pipeline.bad_input import BadShardRecordError
from data_pipeline.jsonl import convert_jsonl
from data_pipeline.text_input import numbered_lines, open_binary
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter

SMALL_SIM = simulator.SimulatorConfig(
    num_users=20, seed=5, num_items=300, num_categories=8,
    num_parent_categories=4, num_clusters=20, num_queries=30)

JSONL_LINES = [
    {"user": "alice", "time": 1000, "item": "i1", "item_cats": ["c1"], "label": 1,
     "clicks": [["i0", 900, ["c1"]]]},
    {"user": "bob", "time": 2000, "item": "i2", "label": 0, "query": "shoes"},
    {"user": "alice", "time": 3000, "item": "i3", "label": 0},
]


def _ram(name: str) -> str:
  """A fresh ``ram://`` folder path, unique per call (nothing is created)."""
  return f"ram://{uuid.uuid4().hex}/{name}"


def _records(pattern: str) -> int:
  return sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)))


def _write_text(path: str, text: str, compress: bool = False) -> None:
  data = text.encode("utf-8")
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(gzip.compress(data) if compress else data)


def test_data_pipeline_simulator_writes_to_ram_and_reader_reads_it_back():
  out = _ram("sim")
  oracle = simulator.generate(SMALL_SIM, out)
  names = sorted(tf.io.gfile.listdir(out))
  assert "schema.json" in names and simulator.ORACLE_FILE in names
  # Nothing but the dataset folder: the temporary folder was renamed.
  assert tf.io.gfile.listdir(os.path.dirname(out)) == ["sim"]
  schema = schema_lib.DatasetSchema.load(out)
  assert json.loads(paths_lib.read_text(os.path.join(out, simulator.ORACLE_FILE))
                    ) == json.loads(json.dumps(oracle))
  for split in ("train", "test"):
    expected = schema.splits[split]["impressions"]
    assert expected > 0
    ds = reader.make_dataset(out, batch_size=64, split=split)
    assert sum(int(b["label"].shape[0]) for b in ds) == expected
  # A glob of shards and the folder's schema found through gfile too.
  ds = reader.make_dataset(os.path.join(out, "train-*"), batch_size=1000)
  assert sum(int(b["label"].shape[0]) for b in ds) == \
      schema.splits["train"]["impressions"]


def test_data_pipeline_writer_overwrite_and_abort_on_ram():
  out = _ram("data")
  imp = schema_lib.Impression(label=1, user_id=1, time=1, item_id=2,
                              item_cats=[3])
  with DatasetWriter(out, num_cats=1) as w:
    w.write("train", imp)
    w.commit(source="first", extra_files={"note.txt": "héllo\n"})
  assert paths_lib.read_text(os.path.join(out, "note.txt")) == "héllo\n"
  with pytest.raises(FileExistsError, match="already exists"):
    DatasetWriter(out, num_cats=1)
  with pytest.raises(RuntimeError, match="boom"):
    with DatasetWriter(out, num_cats=1, overwrite=True) as w:
      w.write("train", imp)
      raise RuntimeError("boom")
  # The failed overwrite left the old dataset and no temporary folder.
  assert schema_lib.DatasetSchema.load(out).source == "first"
  parent = os.path.dirname(out)
  assert [n.rstrip("/") for n in tf.io.gfile.listdir(parent)] == ["data"]
  with DatasetWriter(out, num_cats=1, overwrite=True) as w:
    w.write("train", imp)
    w.write("train", imp)
    w.commit(source="second")
  assert schema_lib.DatasetSchema.load(out).splits["train"]["impressions"] == 2
  assert not tf.io.gfile.exists(os.path.join(out, "note.txt"))


@pytest.mark.parametrize("compress", [False, True])
def test_data_pipeline_convert_jsonl_from_ram_to_ram(compress):
  base = _ram("")
  src = os.path.join(base, "log.jsonl" + (".gz" if compress else ""))
  _write_text(src, "".join(json.dumps(line) + "\n" for line in JSONL_LINES),
              compress)
  out = os.path.join(base, "out", "dataset")
  report = convert_jsonl(src, out, num_shards=2)
  assert report.impressions_written == len(JSONL_LINES)
  assert report.out_dir == out and report.lines_read == len(JSONL_LINES)
  schema = schema_lib.DatasetSchema.load(out)
  assert schema.splits["data"]["impressions"] == len(JSONL_LINES)
  assert _records(os.path.join(out, "data-*.tfrecord")) == len(JSONL_LINES)
  batch = next(iter(reader.make_dataset(out, batch_size=8)))
  assert sorted(batch["label"].numpy().tolist()) == [0, 0, 1]


def test_data_pipeline_text_input_on_ram_lines_and_missing_file():
  base = _ram("")
  path = os.path.join(base, "a.txt.gz")
  _write_text(path, "\ufefffirst\r\nsecond\nthird", compress=True)
  with open_binary(path) as f:
    assert list(numbered_lines(f, path)) == [
        (1, b"first"), (2, b"second"), (3, b"third")]
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    open_binary(os.path.join(base, "nope.jsonl"))
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    convert_jsonl(os.path.join(base, "nope.jsonl"), os.path.join(base, "out"))
  assert not tf.io.gfile.exists(os.path.join(base, "out"))


def test_data_pipeline_stream_write_time_ordered_and_shard_stream_on_ram():
  src = _ram("sim")
  simulator.generate(SMALL_SIM, src, num_shards=3)
  total = schema_lib.DatasetSchema.load(src).splits["train"]["impressions"]
  out = os.path.join(os.path.dirname(src), "streams", "replay")
  files = stream.write_time_ordered(os.path.join(src, "train-*"), out,
                                    records_per_shard=100)
  assert all(f.startswith(out + "/") for f in files)
  assert sorted(tf.io.gfile.listdir(os.path.dirname(out))) == ["replay"]
  with pytest.raises(FileExistsError):
    stream.write_time_ordered(os.path.join(src, "train-*"), out, 100)
  files = stream.write_time_ordered(os.path.join(src, "train-*"), out,
                                    records_per_shard=100, overwrite=True)
  assert len(files) == -(-total // 100)
  assert stream.list_shards(out) == [os.path.basename(f) for f in files]

  lengths = reader.SequenceLengths(5, 5, 5)
  batches = list(stream.ShardStream(out, batch_size=64, lengths=lengths))
  assert sum(len(b.records) for b in batches) == total
  times = [t for b in batches for t in b.features["time"].numpy().tolist()]
  assert times == sorted(times)
  # Resume from the middle of the stream: the rest, nothing twice.
  middle = batches[len(batches) // 2 - 1].end
  rest = list(stream.ShardStream(out, batch_size=64, lengths=lengths,
                                 start=middle))
  done = sum(len(b.records) for b in batches[:len(batches) // 2])
  assert sum(len(b.records) for b in rest) == total - done
  # A resumed stream notices a shard that landed before its position.
  with tf.io.gfile.GFile(os.path.join(out, "impressions-000000a.tfrecord"),
                         "wb") as f:
    f.write(b"")
  with pytest.raises(BadShardRecordError, match="landed after it was checkpointed"):
    list(stream.ShardStream(out, batch_size=64, lengths=lengths, start=middle,
                            shards_before_start=batches[len(batches) // 2 - 1]
                            .shards_before_end))

