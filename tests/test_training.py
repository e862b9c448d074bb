"""Short seeded training runs on simulated data: real learning, exact reporting."""

import json
import os

import numpy as np

from data_pipeline import ranking_metrics as metrics
from data_pipeline import reader
from data_pipeline.data_split import DataSplit
from egin_tf.train import actions
from egin_tf.train import config as train_config
from egin_tf.train import model_input
from egin_tf.train import evaluation
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib
from fake_fit import Model, SavesRecorded


def test_short_dnn_run_learns_but_stays_below_the_oracle(sim_data, tmp_path):
  data, oracle = sim_data
  config = train_config.TrainConfig(model="dnn", batch_size=128, epochs=2,
                                    log_every=100, max_clicks=50, max_queries=50,
                                    seed=1)
  result = offline.train(os.path.join(data, "train-*"), str(tmp_path / "m"),
                         config, eval_pattern=os.path.join(data, "test-*"),
                         verbose=0, print_fn=lambda _: None)
  auc = result["eval"]["auc"]
  assert result["oracle"]["test_auc"] == oracle["test_auc"]
  assert 0.55 < auc < oracle["test_auc"]
  assert result["eval"]["impressions"] == oracle["test_impressions"]
  with open(tmp_path / "m" / model_dir_lib.METRICS_FILE) as f:
    assert json.load(f)["eval"]["auc"] == auc


def test_a_cached_run_trains_through_its_replayed_epoch(sim_data, tmp_path):
  data, _ = sim_data
  pattern = os.path.join(data, "train-*")
  config = train_config.TrainConfig(model="dnn", batch_size=1024, epochs=2,
                                    log_every=1000, max_clicks=10, max_queries=10,
                                    max_seeds=10, cache=True)
  lines = []
  result = offline.train(pattern, str(tmp_path / "m"), config, verbose=0,
                         print_fn=lines.append)
  per_epoch = DataSplit.resolve(pattern, "train").impressions // 1024
  assert result["steps"] == 2 * per_epoch
  assert len(result["chunk_seconds"]) == 1  # one progress chunk (log_every)
  assert any("kept in memory after the first epoch" in line for line in lines)
  assert np.isfinite(result["history"]["loss"]).all()


def test_evaluate_reproduces_the_training_report_from_checkpoints(sim_data,
                                                                  tmp_path):
  data, _ = sim_data
  config = train_config.TrainConfig(model="dnn", batch_size=128, steps=30,
                                    log_every=10, max_clicks=20, max_queries=20)
  model_dir = str(tmp_path / "m")
  result = offline.train(os.path.join(data, "train-*"), model_dir, config,
                         eval_pattern=os.path.join(data, "test-*"), verbose=0,
                         print_fn=lambda _: None)
  assert result["steps"] == 30
  again = evaluation.evaluate(model_dir, os.path.join(data, "test-*"))
  assert again["eval"] == result["eval"]
  assert os.path.exists(os.path.join(model_dir, "logs", "train"))
  checkpoints = sorted(os.listdir(os.path.join(model_dir, "checkpoints")))
  # Three progress chunks, well within the default 600 s: one save, at the end.
  assert [c for c in checkpoints if c.endswith(".index")] == ["ckpt-30.index"]


def _fit_callbacks(manager, tmp_path, every_seconds, print_fn=print):
  """The offline fit's callbacks, and its `actions.ChunkEndActions` on a fake
  model whose optimizer has taken no step yet."""
  callbacks = offline._callbacks(manager, str(tmp_path), every_seconds, print_fn)
  (chunk_end,) = [c for c in callbacks if isinstance(c, actions.ChunkEndActions)]
  chunk_end.model = Model()
  return callbacks, chunk_end


def _chunks_with_checkpoints(every_seconds, seconds_per_chunk, monkeypatch, tmp_path):
  """The steps the offline fit saves over 3 chunks of 10 steps."""
  clock = [0.0]
  monkeypatch.setattr(offline.time, "monotonic", lambda: clock[0])
  manager = SavesRecorded()
  _, callback = _fit_callbacks(manager, tmp_path, every_seconds)
  for chunk in range(3):
    callback.model.optimizer.iterations.step += 10
    clock[0] += seconds_per_chunk
    callback.on_epoch_end(chunk)
  callback.on_train_end()
  return manager.saved


def test_checkpoints_follow_the_clock_and_close_the_run(monkeypatch, tmp_path):
  assert _chunks_with_checkpoints(None, 1.0, monkeypatch, tmp_path) == [10, 20, 30]
  assert _chunks_with_checkpoints(600.0, 1.0, monkeypatch, tmp_path) == [30]
  # 250 s chunks: saves once 600 s have passed (after chunk 3), none after it.
  assert _chunks_with_checkpoints(600.0, 250.0, monkeypatch, tmp_path) == [30]
  assert _chunks_with_checkpoints(400.0, 250.0, monkeypatch, tmp_path) == [20, 30]


def test_same_seed_same_model(sim_data, tmp_path):
  data, _ = sim_data

  def run(name, seed):
    config = train_config.TrainConfig(model="dnn", batch_size=64, steps=12,
                                      log_every=12, max_clicks=10, max_queries=10,
                                      seed=seed)
    return offline.train(os.path.join(data, "train-*"), str(tmp_path / name),
                         config, eval_pattern=os.path.join(data, "test-*"),
                         verbose=0, print_fn=lambda _: None)["eval"]["auc"]

  assert run("a", 5) == run("b", 5)
  assert run("c", 6) != run("a", 5)


def test_format_report_shows_the_oracle_beside_the_model():
  text = evaluation.format_report(
      {"auc": 0.7, "gauc": 0.65, "logloss": 0.5, "impressions": 10},
      {"test_auc": 0.8, "test_gauc": 0.75, "test_logloss": 0.4,
       "test_impressions": 10})
  lines = text.splitlines()
  assert lines[1].split()[-4:] == ["0.7000", "0.6500", "0.5000", "10"]
  assert lines[2].startswith("oracle (true p)")
  assert lines[2].split()[-4:] == ["0.8000", "0.7500", "0.4000", "10"]


def test_exact_report_uses_rank_auc(sim_data, tmp_path):
  data, _ = sim_data
  config = train_config.TrainConfig(model="dnn", batch_size=64, steps=5,
                                    log_every=5, max_clicks=10, max_queries=10)
  model_dir = str(tmp_path / "m")
  offline.train(os.path.join(data, "train-*"), model_dir, config, verbose=0,
                print_fn=lambda _: None)
  trained = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  ds = model_input.model_dataset(
      DataSplit.resolve(os.path.join(data, "test-*"), "test", trained.lengths),
      config, False)
  out = evaluation.predict(trained.model, ds)
  report = evaluation.exact_report(trained.model, ds)
  assert report["auc"] == metrics.auc(out["label"], out["pctr"])
  assert report["gauc"] == metrics.grouped_auc(out["label"], out["pctr"],
                                               out["user_id"])
  assert report["positives"] == int(np.sum(out["label"]))


def test_every_registered_model_trains_and_reloads(sim_data, tmp_path):
  from egin_tf.models import MODELS  # pylint: disable=g-import-not-at-top
  data, _ = sim_data
  for name in sorted(MODELS):
    kwargs = ({"num_negatives": 8, "queue_capacity": 256}
              if name == "egin" else {})
    config = train_config.TrainConfig(model=name, batch_size=64, steps=4,
                                      log_every=4, max_clicks=10, max_queries=10,
                                      model_kwargs=kwargs)
    model_dir = str(tmp_path / name)
    result = offline.train(os.path.join(data, "train-*"), model_dir, config,
                           eval_pattern=os.path.join(data, "test-*"),
                           verbose=0, print_fn=lambda _: None)
    assert 0.0 < result["eval"]["auc"] < 1.0, name
    # The model directory alone rebuilds it (two-stage EGES finds its vectors).
    again = evaluation.evaluate(model_dir, os.path.join(data, "test-*"))
    assert again["eval"] == result["eval"], name


def test_cache_fits_in_half_the_available_memory(sim_data, monkeypatch):
  data, _ = sim_data
  split = DataSplit.resolve(os.path.join(data, "train-*"), "train",
                            reader.SequenceLengths(10, 10, 10))
  needed = split.impressions * reader.cached_example_bytes(split.schema, split.lengths)
  assert needed > 0
  lines = []
  monkeypatch.setattr(model_input, "available_memory_bytes", lambda: 2 * needed)
  assert model_input.cache_fits(split, lines.append)
  monkeypatch.setattr(model_input, "available_memory_bytes", lambda: 2 * needed - 1)
  assert not model_input.cache_fits(split, lines.append)
  assert "kept in memory after the first epoch" in lines[0]
  assert "every epoch reads and parses the files" in lines[1]


def test_available_memory_is_a_positive_byte_count():
  assert model_input.available_memory_bytes() > 2**20


def test_the_nan_stop_acts_at_a_chunk_end_and_no_callback_runs_per_step(tmp_path):
  lines = []
  callbacks, stop = _fit_callbacks(SavesRecorded(), tmp_path, 600.0, lines.append)
  stop.on_epoch_end(0, {"loss": 0.5})
  assert not stop.model.stop_training
  stop.on_epoch_end(1, {"loss": float("nan")})
  assert stop.model.stop_training
  assert lines == ["the loss or its gradients became non-finite (nan) at chunk 2; "
                   "stopping"]
  # A per-step hook would make Keras fetch every metric after every step.
  assert not any(c._implements_train_batch_hooks() for c in callbacks)
