"""The model directory (`egin_tf.train.model_dir`): config.json written and read back,
the resume check, clear errors for what is not a model directory, and a model
rebuilt from its directory."""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.train import model_dir
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models.configs import DINConfig, DNNConfig

FEATURES = FeatureConfig(item_buckets=50, user_buckets=20, query_buckets=30,
                         category_buckets=10, embedding_dim=4)
SCHEMA = schema_lib.DatasetSchema(num_cats=2, vocab={"items": 40, "max_items": 49},
                                  source="by hand")
SMALL = dict(max_clicks=3, max_queries=3, max_seeds=3, embedding_dim=4)


def _write(directory, config, pattern="data/train-*"):
  model_dir.write_config(str(directory), config, train_config.model_config(config),
                         FEATURES, SCHEMA, pattern)


def test_config_round_trips_on_ram():
  # ram:// as a stand-in for gs:// and hdfs://: every access goes through tf.io.gfile.
  directory = "ram://model_dir_round_trip"
  tf.io.gfile.makedirs(directory)
  config = train_config.TrainConfig(model="dnn", batch_size=32, seed=5,
                                    table_sizes={"item": 64}, **SMALL)
  assert not model_dir.exists(directory)
  _write(directory, config, "ram://data/train-*")
  assert model_dir.exists(directory)
  saved = model_dir.read_config(directory)
  assert saved.train == config.to_dict()
  assert saved.train["table_sizes"] == {"item": 64}
  assert saved.model_config == DNNConfig().to_dict()
  assert saved.features == FEATURES
  assert saved.train_pattern == "ram://data/train-*"
  assert model_dir.saved_train_pattern(directory) == "ram://data/train-*"
  assert model_dir.train_config(saved, train_config.TrainConfig) == config.replace(
      model_kwargs=DNNConfig().to_dict())
  assert model_dir.read_data_schema(directory) == SCHEMA


def test_config_json_holds_the_full_model_config(tmp_path):
  config = train_config.TrainConfig(model="din", model_kwargs={"attention_units": [6]})
  _write(tmp_path, config)
  saved = json.loads((tmp_path / model_dir.CONFIG_FILE).read_text())
  assert saved["model_config"] == DINConfig(attention_units=(6,)).to_dict()
  assert saved["train"]["model_kwargs"] == {"attention_units": [6]}
  reloaded = model_dir.train_config(model_dir.read_config(str(tmp_path)),
                                    train_config.TrainConfig)
  assert train_config.model_config(reloaded) == DINConfig(attention_units=(6,))
  del saved["model_config"]  # a model directory from before: today's defaults
  (tmp_path / model_dir.CONFIG_FILE).write_text(json.dumps(saved))
  before = model_dir.read_config(str(tmp_path))
  assert before.model_config is None
  assert train_config.model_config(model_dir.train_config(
      before, train_config.TrainConfig)) == DINConfig(attention_units=(6,))


def test_not_a_model_directory_is_named(tmp_path):
  missing = str(tmp_path / "nowhere")
  assert not model_dir.exists(missing)
  expected = (f"{os.path.join(missing, 'config.json')} not found: {missing} is not a "
              "model directory written by `egin-tf train`")
  for read in (model_dir.read_config, model_dir.saved_train_pattern,
               lambda d: model_dir.load_model(d, train_config.TrainConfig)):
    with pytest.raises(FileNotFoundError) as info:
      read(missing)
    assert str(info.value) == expected
  # A config but no checkpoint yet (a run that died before its first save).
  _write(tmp_path, train_config.TrainConfig(model="dnn", **SMALL))
  with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path}/checkpoints"):
    model_dir.load_model(str(tmp_path), train_config.TrainConfig)


def _pair(config):
  return config, train_config.model_config(config)


def test_resume_check_names_every_differing_setting(tmp_path):
  saved = train_config.TrainConfig(model="dnn", **SMALL)
  model_dir.check_resume(str(tmp_path), _pair(saved), _pair(saved))  # the same: fine
  # Run settings outside MODEL_DEFINING (rates, batch, seed) may change.
  model_dir.check_resume(str(tmp_path), _pair(saved),
                         _pair(saved.replace(learning_rate=0.1, batch_size=8)))
  wider = saved.replace(embedding_dim=8, max_clicks=5)
  with pytest.raises(model_dir.ResumeMismatchError) as info:
    model_dir.check_resume(str(tmp_path), _pair(saved), _pair(wider))
  assert str(info.value) == (
      f"{tmp_path}/config.json: this model directory was trained with "
      "embedding_dim=4, not 8; max_clicks=3, not 5; resume with the same settings "
      "or use a new --model_dir")
  # The run settings agree: the model's own config is compared, field by field.
  deeper = saved.replace(model_kwargs={"hidden_units": [16], "dropout": 0.5})
  with pytest.raises(model_dir.ResumeMismatchError,
                     match=r"trained with hidden_units=\[200, 80\], not \[16\]; "
                           r"dropout=0.0, not 0.5; resume"):
    model_dir.check_resume(str(tmp_path), _pair(saved), _pair(deeper))


def test_stream_resume_with_another_model_is_refused_before_training(tmp_path):
  stream_dir, directory = tmp_path / "stream", tmp_path / "m"
  stream_dir.mkdir()
  directory.mkdir()
  SCHEMA.save(str(stream_dir))
  _write(directory, train_config.TrainConfig(model="dnn", **SMALL))
  with pytest.raises(model_dir.ResumeMismatchError,
                     match="trained with model='dnn', not 'din'; resume"):
    streaming.train_stream(str(stream_dir), str(directory),
                           train_config.TrainConfig(model="din", **SMALL),
                           train_config.StreamConfig(), print_fn=lambda s: None)
  assert not tf.io.gfile.exists(str(directory / model_dir.CHECKPOINT_DIR))


def test_load_model_restores_the_latest_checkpoint(tmp_path):
  config = train_config.TrainConfig(model="dnn", seed=1, **SMALL)
  _write(tmp_path, config)
  model = config.build_model(FEATURES)
  batch = reader.zeros_batch(SCHEMA, config.sequence_lengths(), batch_size=2)
  model(batch)
  for v in model.trainable_variables:  # weights no fresh build would have
    v.assign(tf.fill(v.shape, 0.25))
  tf.train.Checkpoint(model=model).save(str(tmp_path / "checkpoints" / "ckpt"))
  trained = model_dir.load_model(str(tmp_path), train_config.TrainConfig)
  assert trained.config == config.replace(model_kwargs=DNNConfig().to_dict())
  assert trained.schema == SCHEMA
  assert trained.lengths == reader.SequenceLengths(3, 3, 3)
  trained.model(batch)
  assert len(trained.model.trainable_variables) == len(model.trainable_variables)
  for v in trained.model.trainable_variables:
    np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 0.25, np.float32))


def _dir_with_a_dnn_checkpoint(tmp_path):
  """A DIN model directory whose checkpoint a DNN wrote (as a checkpoint of an
  older layout would be: some of the DIN's variables are not in it)."""
  config = train_config.TrainConfig(model="din", seed=1, **SMALL)
  _write(tmp_path, config)
  dnn = train_config.TrainConfig(model="dnn", seed=1, **SMALL).build_model(FEATURES)
  dnn(reader.zeros_batch(SCHEMA, config.sequence_lengths(), batch_size=2))
  tf.train.Checkpoint(model=dnn).save(str(tmp_path / "checkpoints" / "ckpt"))
  return tmp_path


def test_a_checkpoint_without_all_the_models_variables_is_refused(tmp_path):
  directory = _dir_with_a_dnn_checkpoint(tmp_path)
  with pytest.raises(model_dir.CheckpointMismatchError,
                     match=r"ckpt-1: the checkpoint does not hold all of this "
                     r"model's variables \(.+\); was it written by another"):
    model_dir.load_model(str(directory), train_config.TrainConfig)


def test_the_cli_says_so_in_one_line(tmp_path):
  directory = _dir_with_a_dnn_checkpoint(tmp_path)
  (tmp_path / "data.tfrecord").write_bytes(b"")  # never read: the load fails first
  proc = subprocess.run(
      [sys.executable, "-m", "egin_tf.cli.main", "neighbors", "--model_dir",
       str(directory), "--item", "3", "--data", str(tmp_path / "data.tfrecord")],
      capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "does not hold all of this model's variables" in errors[0]
  assert "Traceback" not in proc.stderr


def test_model_dir_sits_below_the_trainers():
  # It reads no TrainConfig of its own: the callers pass the class in.
  tree = ast.parse(open(model_dir.__file__, encoding="utf-8").read())
  imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
  imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) for alias in node.names}
  imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
  upper = ("egin_tf.train.offline", "egin_tf.train.stream", "egin_tf.train.config",
           "egin_tf.serve", "egin_tf.cli")
  assert not [name for name in imported if name.startswith(upper)]
  assert "egin_tf.models.base" in imported  # the parse saw its imports
