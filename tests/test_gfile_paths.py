"""Every file the library reads or writes goes through tf.io.gfile: datasets, raw
converter inputs and stream folders on a non-local filesystem (TF's ``ram://``).
"""

import egin_tf  # noqa: F401  (first: Keras 2 before tensorflow loads)

import json
import os
import uuid

import pytest

from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline.tf_env import tf


# --- egin_tf: training, evaluation, export, streaming, caches on ram:// -------
# (egin_tf's tests are the ``test_egin_*`` functions.)

import numpy as np  # noqa: E402

from data_pipeline import stream as _egin_stream_lib  # noqa: E402
from egin_tf import audit_log  # noqa: E402
from egin_tf import eges  # noqa: E402
from egin_tf import embeddings  # noqa: E402
from egin_tf import export  # noqa: E402
from egin_tf import gfile_io  # noqa: E402
from egin_tf import serving_requests  # noqa: E402
from egin_tf import streaming  # noqa: E402
from egin_tf import training  # noqa: E402

_EGIN_SMALL = dict(batch_size=32, max_clicks=10, max_queries=10, max_seeds=10,
                   embedding_dim=4)


def _egin_ram(name: str) -> str:
  return f"ram://egin-{uuid.uuid4().hex[:12]}/{name}"


def _egin_copy_tree(src: str, dst: str) -> None:
  """Copies a local folder's files into ``dst`` (any filesystem)."""
  tf.io.gfile.makedirs(dst)
  for name in tf.io.gfile.listdir(src):
    tf.io.gfile.copy(os.path.join(src, name), os.path.join(dst, name))


def _egin_ram_dataset(tmp_path) -> str:
  """A small simulated dataset under ram://: generated there (data_pipeline's
  gfile writer), or else generated locally and copied."""
  config = simulator.SimulatorConfig(num_users=60, seed=1)
  data = _egin_ram("data")
  try:
    simulator.generate(config, data)
    if tf.io.gfile.exists(os.path.join(data, schema_lib.SCHEMA_FILE)):
      return data
  except Exception:  # pylint: disable=broad-except
    pass
  local = str(tmp_path / "local_data")
  simulator.generate(config, local)
  data = _egin_ram("data")
  _egin_copy_tree(local, data)
  return data


def test_egin_train_evaluate_export_on_ram(tmp_path):
  data = _egin_ram_dataset(tmp_path)
  model_dir = _egin_ram("model")
  config = training.TrainConfig(model="dnn", seed=0, steps=4, log_every=2,
                                **_EGIN_SMALL)
  result = training.train(data, model_dir, config, eval_pattern=data, verbose=0,
                          print_fn=lambda s: None)
  assert result["steps"] == 4 and result["eval"]["impressions"] > 0
  for name in (training.CONFIG_FILE, training.DATA_SCHEMA_FILE,
               training.METRICS_FILE):
    assert tf.io.gfile.exists(os.path.join(model_dir, name)), name
  with tf.io.gfile.GFile(os.path.join(model_dir, training.METRICS_FILE)) as f:
    assert json.load(f)["steps"] == 4
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if tf.io.gfile.exists(os.path.join(data, training.ORACLE_FILE)):
    assert result["oracle"] is not None

  trained = training.load_model(model_dir)
  assert trained.config.steps == 4
  pattern = training.train_pattern(model_dir)
  assert pattern.startswith("ram://")
  evaluated = training.evaluate(model_dir, data)
  assert abs(evaluated["eval"]["auc"] - result["eval"]["auc"]) < 1e-6

  seen = embeddings.seen_ids(pattern, trained.lengths, cache_dir=model_dir)
  assert tf.io.gfile.exists(os.path.join(model_dir, embeddings.SEEN_IDS_FILE))
  cached = embeddings.seen_ids("ram://nothing-here/*", trained.lengths,
                               cache_dir=model_dir)
  np.testing.assert_array_equal(cached["items"].ids, seen["items"].ids)

  export_dir = _egin_ram("export")
  warmup = serving_requests.examples_from_files(pattern, 5)
  path = export.export_saved_model(trained.model, trained.schema, trained.lengths,
                                   export_dir, version=7, seen=seen,
                                   warmup_examples=warmup, num_warmup_requests=2,
                                   extra_assets={"info.json": "{}\n"})
  assert path == os.path.join(export_dir, "7")
  extra = os.path.join(path, serving_requests.ASSETS_EXTRA)
  assert sorted(gfile_io.listdir(extra)) == sorted(
      ["info.json", "items_embeddings.tsv", "queries_embeddings.tsv",
       serving_requests.WARMUP_FILE])
  assert len(serving_requests.read_warmup_file(
      os.path.join(extra, serving_requests.WARMUP_FILE))) == 4
  with tf.io.gfile.GFile(os.path.join(extra, "items_embeddings.tsv")) as f:
    assert len(f.read().splitlines()) == seen["items"].ids.size
  # Only the version folder: the temporary folder was renamed away.
  assert gfile_io.listdir(export_dir) == ["7"]
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
  assert gfile_io.listdir(export_dir) == [os.path.basename(newer)]


def test_egin_stream_training_on_ram(sim_data, tmp_path):
  local_data, _ = sim_data
  local = str(tmp_path / "stream")
  _egin_stream_lib.write_time_ordered(os.path.join(local_data, "train-*"), local, 200)
  stream_dir = _egin_ram("stream")
  tf.io.gfile.makedirs(stream_dir)
  for name in [schema_lib.SCHEMA_FILE] + _egin_stream_lib.list_shards(local)[:2]:
    tf.io.gfile.copy(os.path.join(local, name), os.path.join(stream_dir, name))
  model_dir, export_dir = _egin_ram("stream_model"), _egin_ram("stream_export")
  config = training.TrainConfig(model="dnn", seed=0, **_EGIN_SMALL)
  stream_config = streaming.StreamConfig(
      checkpoint_every_steps=5, audit_log=True, export_dir=export_dir,
      export_every_steps=10, keep_exports=1, progressive_window=200)
  result = streaming.train_stream(stream_dir, model_dir, config, stream_config,
                                  print_fn=lambda s: None)
  assert result["steps"] > 0
  assert tf.io.gfile.exists(os.path.join(model_dir, "stream_metrics.json"))
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  versions = gfile_io.listdir(export_dir)
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
  assert gfile_io.listdir(os.path.dirname(path)) == ["eges.npz"]
  got_ids, got_vectors = eges.load_embeddings(path)
  np.testing.assert_array_equal(got_ids, ids)
  np.testing.assert_array_equal(got_vectors, vectors)
