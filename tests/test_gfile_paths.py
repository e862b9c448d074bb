"""Every file the library reads or writes goes through tf.io.gfile: datasets, raw
converter inputs and stream folders on a non-local filesystem (TF's ``ram://``).

data_pipeline tests are the ``test_data_pipeline_*`` functions.
"""


import dataclasses
import gzip
import json
import os
import uuid

import pytest

from data_pipeline.data_split import DataSplit
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
  assert (sum(int(b["label"].shape[0]) for b in ds)
          == schema.splits["train"]["impressions"])


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


# --- egin_tf: training, evaluation, export, streaming, caches on ram:// -------
# (egin_tf's tests are the ``test_egin_*`` functions.)

import numpy as np  # noqa: E402

from data_pipeline import stream as _egin_stream_lib  # noqa: E402
from egin_tf.train import audit_log  # noqa: E402
from egin_tf import eges  # noqa: E402
from egin_tf.serve import embeddings  # noqa: E402
from egin_tf.serve import export  # noqa: E402
from egin_tf.train import model_dir as model_dir_lib  # noqa: E402
from egin_tf.serve import requests as serving_requests  # noqa: E402
from egin_tf.train import stream as streaming  # noqa: E402
from egin_tf.train import config as train_config  # noqa: E402
from egin_tf.train import evaluation  # noqa: E402
from egin_tf.train import offline  # noqa: E402

_EGIN_SMALL = dict(batch_size=32, max_clicks=10, max_queries=10, max_seeds=10,
                   embedding_dim=4)


def _egin_ram(name: str) -> str:
  return f"ram://egin-{uuid.uuid4().hex[:12]}/{name}"


def _egin_ram_dataset() -> str:
  """A small simulated dataset written straight to ram:// (the gfile writer)."""
  data = _egin_ram("data")
  simulator.generate(simulator.SimulatorConfig(num_users=60, seed=1), data)
  return data


def test_egin_train_evaluate_export_on_ram(tmp_path):
  data = _egin_ram_dataset()
  model_dir = _egin_ram("model")
  config = train_config.TrainConfig(model="dnn", seed=0, steps=4, log_every=2,
                                    **_EGIN_SMALL)
  result = offline.train(data, model_dir, config, eval_pattern=data, verbose=0,
                         print_fn=lambda s: None)
  assert result["steps"] == 4 and result["eval"]["impressions"] > 0
  for name in (model_dir_lib.CONFIG_FILE, model_dir_lib.DATA_SCHEMA_FILE,
               model_dir_lib.METRICS_FILE):
    assert tf.io.gfile.exists(os.path.join(model_dir, name)), name
  with tf.io.gfile.GFile(os.path.join(model_dir, model_dir_lib.METRICS_FILE)) as f:
    assert json.load(f)["steps"] == 4
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  assert tf.io.gfile.exists(os.path.join(data, simulator.ORACLE_FILE))
  assert result["oracle"] is not None

  trained = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  assert trained.config.steps == 4
  pattern = model_dir_lib.saved_train_pattern(model_dir)
  assert pattern.startswith("ram://")
  evaluated = evaluation.evaluate(model_dir, data)
  assert abs(evaluated["eval"]["auc"] - result["eval"]["auc"]) < 1e-6

  train = DataSplit.resolve(pattern, "train", trained.lengths)
  seen = embeddings.seen_ids(train, cache_dir=model_dir)
  assert tf.io.gfile.exists(os.path.join(model_dir, embeddings.SEEN_IDS_FILE))
  # The cache is read, not the files: a split of no file still gets the tables.
  cached = embeddings.seen_ids(dataclasses.replace(train, files=()), cache_dir=model_dir)
  np.testing.assert_array_equal(cached["items"].ids, seen["items"].ids)

  export_dir = _egin_ram("export")
  warmup = serving_requests.examples_from_files(train.files, 5)
  path = export.export_saved_model(trained.model, trained.schema, trained.lengths,
                                   export_dir, version=7, seen=seen,
                                   warmup_examples=warmup, num_warmup_requests=2,
                                   extra_assets={"info.json": "{}\n"})
  assert path == os.path.join(export_dir, "7")
  extra = os.path.join(path, serving_requests.ASSETS_EXTRA)
  assert sorted(paths_lib.listdir(extra)) == sorted(
      ["info.json", "items_embeddings.tsv", "queries_embeddings.tsv",
       serving_requests.WARMUP_FILE])
  assert len(serving_requests.read_warmup_file(
      os.path.join(extra, serving_requests.WARMUP_FILE))) == 4
  with tf.io.gfile.GFile(os.path.join(extra, "items_embeddings.tsv")) as f:
    assert len(f.read().splitlines()) == seen["items"].ids.size
  # Only the version folder: the temporary folder was renamed away.
  assert paths_lib.listdir(export_dir) == ["7"]
  with pytest.raises(FileExistsError, match="7 already exists"):
    export.export_saved_model(trained.model, trained.schema, trained.lengths,
                              export_dir, version=7)

  loaded = tf.saved_model.load(path)
  scores = loaded.signatures[serving_requests.SIGNATURE](
      examples=tf.constant(warmup[:3]))
  pctr = next(iter(scores.values())).numpy()
  assert pctr.shape[0] == 3 and np.all((pctr > 0) & (pctr < 1))

  newer = export.export_saved_model(trained.model, trained.schema, trained.lengths,
                                    export_dir)
  assert int(os.path.basename(newer)) > 7
  assert tf.io.gfile.exists(os.path.join(newer, "saved_model.pb"))
  assert export.prune_versions(export_dir, 1) == [path]
  assert paths_lib.listdir(export_dir) == [os.path.basename(newer)]


def test_egin_stream_training_on_ram(sim_data, tmp_path):
  local_data, _ = sim_data
  local = str(tmp_path / "stream")
  _egin_stream_lib.write_time_ordered(os.path.join(local_data, "train-*"), local, 200)
  stream_dir = _egin_ram("stream")
  tf.io.gfile.makedirs(stream_dir)
  for name in [schema_lib.SCHEMA_FILE] + _egin_stream_lib.list_shards(local)[:2]:
    tf.io.gfile.copy(os.path.join(local, name), os.path.join(stream_dir, name))
  model_dir, export_dir = _egin_ram("stream_model"), _egin_ram("stream_export")
  config = train_config.TrainConfig(model="dnn", seed=0, **_EGIN_SMALL)
  stream_config = train_config.StreamConfig(
      checkpoint_every_steps=5, audit_log=True, export_dir=export_dir,
      export_every_steps=10, keep_exports=1, progressive_window=200)
  result = streaming.train_stream(stream_dir, model_dir, config, stream_config,
                                  print_fn=lambda s: None)
  assert result["steps"] > 0
  assert tf.io.gfile.exists(os.path.join(model_dir, "stream_metrics.json"))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  versions = paths_lib.listdir(export_dir)
  assert len(versions) == 1 and versions[0].isdigit()
  # Resuming reads config.json and the checkpoint back; nothing left to train.
  again = streaming.train_stream(stream_dir, model_dir, config, stream_config,
                                 print_fn=lambda s: None)
  assert again["steps"] == result["steps"] and again["examples_this_run"] == 0


def test_egin_audit_log_and_eges_npz_on_ram():
  log = audit_log.TrainedExamplesLog(_egin_ram("audit"))
  log.add(["a", "a"], [0, 1], np.array([11, 12]))
  segment = log.commit(3)
  log.add(["b"], [0], np.array([13]))
  log.commit(5)
  assert log.read() == [("a", 0, 11), ("a", 1, 12), ("b", 0, 13)]
  assert log.rollback_to(3) == [segment.replace("3.tsv", "5.tsv")]
  assert [path for _, path in log.segments()] == [segment]

  path = os.path.join(_egin_ram("eges"), "sub", "eges.npz")
  ids, vectors = np.array([1, 2, 5]), np.arange(6, dtype=np.float32).reshape(3, 2)
  assert eges.save_embeddings(path, ids, vectors) == path
  assert paths_lib.listdir(os.path.dirname(path)) == ["eges.npz"]
  got_ids, got_vectors = eges.load_embeddings(path)
  np.testing.assert_array_equal(got_ids, ids)
  np.testing.assert_array_equal(got_vectors, vectors)
