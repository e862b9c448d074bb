"""Stream training: progressive validation, exactly-once resume (kill -9), faults."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from egin_tf.train import audit_log
from data_pipeline import ranking_metrics as metrics
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train.progressive import ProgressiveMetrics

SMALL = dict(batch_size=64, max_clicks=10, max_queries=10, max_seeds=10,
             embedding_dim=4)


def test_progressive_metrics_by_hand():
  m = ProgressiveMetrics(window=4, num_thresholds=1001)
  m.update(tf.constant([1, 0, 1]), tf.constant([0.9, 0.2, 0.4]))
  r = m.result()
  assert r["examples"] == 3
  assert r["window_auc"] == 1.0
  expected = -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3
  assert r["running_logloss"] == pytest.approx(expected, rel=1e-6)
  assert r["window_logloss"] == pytest.approx(expected, rel=1e-6)
  m.update(tf.constant([0, 0, 1]), tf.constant([0.5, 0.95, 0.1]))
  r = m.result()
  # Window: the last 4 examples: labels 1, 0, 0, 1 with scores .4, .5, .95, .1.
  assert r["window_auc"] == metrics.auc([1, 0, 0, 1], [0.4, 0.5, 0.95, 0.1]) == 0.0
  # Running over all 6: positives .9 .4 .1, negatives .2 .5 .95: 3 of 9 pairs.
  assert r["running_auc"] == pytest.approx(3 / 9, abs=2e-3)
  # A batch larger than the window keeps its last 4.
  m.update(tf.constant([0, 1, 0, 1, 0, 1]), tf.constant([.3, .1, .2, .8, .6, .7]))
  assert m.result()["window_auc"] == metrics.auc([0, 1, 0, 1], [.2, .8, .6, .7])
  assert m.result()["examples"] == 12


def test_audit_log_rolls_back_segments_of_uncompleted_checkpoints(tmp_path):
  log = audit_log.TrainedExamplesLog(str(tmp_path))
  log.add(["a", "a"], [0, 1], np.array([11, 12], np.uint64))
  log.commit(2)
  log.add(["b"], [0], np.array([13], np.uint64))
  log.commit(3)
  log.add(["b"], [1], np.array([14], np.uint64))  # pending, never committed
  assert log.read() == [("a", 0, 11), ("a", 1, 12), ("b", 0, 13)]
  removed = log.rollback_to(2)
  assert [os.path.basename(p) for p in removed] == ["segment-000000000003.tsv"]
  assert log.read() == [("a", 0, 11), ("a", 1, 12)]
  log.commit(3)  # the pending line was dropped by the rollback
  assert log.read() == [("a", 0, 11), ("a", 1, 12)]


def _first_shards(sim_stream, directory, count):
  """A stream folder with the first ``count`` shards of sim_stream."""
  os.makedirs(directory)
  shutil.copy(os.path.join(sim_stream, schema_lib.SCHEMA_FILE), directory)
  names = stream_lib.list_shards(sim_stream)[:count]
  for name in names:
    shutil.copy(os.path.join(sim_stream, name), directory)
  return directory, names


def _stream_records(directory):
  rows = []
  for name in stream_lib.list_shards(directory):
    for offset, record in enumerate(tf.data.TFRecordDataset(os.path.join(directory,
                                                                         name))):
      rows.append((name, offset, stream_lib.record_fingerprint(record.numpy())))
  return rows


def test_scores_are_made_before_training_on_the_batch(sim_stream, tmp_path):
  directory, _ = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  config = train_config.TrainConfig(model="dnn", seed=5, learning_rate=0.05,
                                    **dict(SMALL, batch_size=500))
  streaming.train_stream(directory, str(tmp_path / "m"), config,
                         train_config.StreamConfig(progressive_window=500), print_fn=lambda s: None)
  # The same seed builds the same initial model; its scores of the one batch
  # must be what the progressive metrics saw.
  tf.keras.utils.set_random_seed(5)
  features = model_dir_lib.read_config(str(tmp_path / "m")).features
  fresh = config.build_model(features)
  batch = next(iter(stream_lib.ShardStream(directory, 500,
                                           reader.SequenceLengths(10, 10, 10))))
  expected = fresh(batch.features, training=False).numpy()
  progressive = ProgressiveMetrics(window=500)
  tf.train.Checkpoint(progressive=progressive).restore(
      tf.train.latest_checkpoint(str(tmp_path / "m" / "checkpoints"))).expect_partial()
  np.testing.assert_allclose(progressive.window_scores.numpy(), expected, rtol=1e-5)
  trained = model_dir_lib.load_model(str(tmp_path / "m"), train_config.TrainConfig).model
  assert not np.allclose(trained(batch.features, training=False).numpy(), expected,
                         rtol=1e-3)


def test_resume_after_stop_equals_one_uninterrupted_run(sim_stream, tmp_path):
  # EGIN (queues included) is the kill -9 test's model; DNN keeps this one fast.
  config = train_config.TrainConfig(model="dnn", seed=1, **SMALL)
  stream = train_config.StreamConfig(checkpoint_every_steps=4, audit_log=True,
                                     progressive_window=1000, log_every=5)
  one, names = _first_shards(sim_stream, str(tmp_path / "one"), 3)
  whole = streaming.train_stream(one, str(tmp_path / "m1"), config, stream,
                                 print_fn=lambda s: None)
  two, _ = _first_shards(sim_stream, str(tmp_path / "two"), 1)
  lines = []
  first = streaming.train_stream(two, str(tmp_path / "m2"), config, stream,
                                 print_fn=lines.append)
  for name in names[1:]:
    shutil.copy(os.path.join(sim_stream, name), two)
  second = streaming.train_stream(two, str(tmp_path / "m2"), config, stream,
                                  print_fn=lines.append)
  # 500 records: 7 full batches of 64 and the remainder 52 before waiting.
  assert first["steps"] == 8 and first["position"] == {"shard": names[0],
                                                       "offset": 500}
  assert any("resuming from" in line and f"{names[0]} record 500" in line for line in lines)
  assert second["examples"] == whole["examples"] == 1500
  assert second["examples_this_run"] == 1000
  # Progress lines fall on absolute multiples of log_every across the resume
  # (8 steps, then 24 total: steps 5; 10, 15, 20), not on 8 + 5k.
  logged = [int(line.split()[1]) for line in lines if line.startswith("step ")]
  assert logged == [5, 10, 15, 20] and second["steps"] == 24
  assert (audit_log.TrainedExamplesLog(str(tmp_path / "m1" / "trained_examples")).read()
          == audit_log.TrainedExamplesLog(str(tmp_path / "m2" / "trained_examples")).read()
          == _stream_records(one))
  # Batches differ (the first run trained a 52-record batch), so the models do
  # too; but every example went in once, and the metrics cover all of them.
  assert second["progressive"]["examples"] == 1500


def test_stream_trainer_restores_trains_summarizes_and_resumes(sim_stream, tmp_path):
  directory, names = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  model_dir = str(tmp_path / "m")
  config = train_config.TrainConfig(model="dnn", seed=0, **dict(SMALL, batch_size=100))
  stream = train_config.StreamConfig(checkpoint_every_steps=1000, audit_log=True)
  lines = []
  first = streaming.StreamTrainer(directory, model_dir, config, stream,
                                  print_fn=lines.append)
  # An empty model directory: the stream's top, a fresh model.
  assert first.restore() == streaming.RunStart(stream_lib.StreamPosition(), None, 0,
                                               None)
  first.train()
  result = first.summary()
  # One shard of 500 records in batches of 100: 5 steps, checkpointed at the end.
  assert result["steps"] == 5
  assert result["examples"] == result["examples_this_run"] == 500
  assert result["position"] == {"shard": names[0], "offset": 500}
  assert lines[-1].startswith(f"stopped (end of stream) at step 5, {names[0]} "
                              "record 500: trained 500 examples in this run")
  shutil.copy(os.path.join(sim_stream, stream_lib.list_shards(sim_stream)[1]), directory)
  second = streaming.StreamTrainer(directory, model_dir, config, stream,
                                   print_fn=lines.append)
  start = second.restore()
  assert start.position == stream_lib.StreamPosition(names[0], 500)
  # The position is in the stream's first shard: no shard before it.
  assert start.step == 5 and start.shards_before == 0
  assert start.checkpoint == os.path.join(model_dir, "checkpoints", "ckpt-5")
  second.train()
  again = second.summary()
  assert again["steps"] == 10
  assert again["examples"] == 1000 and again["examples_this_run"] == 500
  assert (audit_log.TrainedExamplesLog(os.path.join(model_dir, "trained_examples")).read()
          == _stream_records(directory))


def test_non_finite_loss_stops_before_anything_is_saved(sim_stream, tmp_path):
  # A diverging run: with an absurd learning rate the weights blow up after the
  # first update and the second step's loss is NaN. (Input-borne NaN and Inf
  # are stopped earlier, by the reader: see test_stream.py.)
  directory, names = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  model_dir = str(tmp_path / "m")
  config = train_config.TrainConfig(model="dnn", seed=0, learning_rate=1e20,
                                    **dict(SMALL, batch_size=100))
  stream = train_config.StreamConfig(checkpoint_every_steps=1, export_dir=str(
      tmp_path / "exports"), export_every_steps=1)
  with pytest.raises(streaming.NonFiniteLossError) as e:
    streaming.train_stream(directory, model_dir, config, stream,
                           print_fn=lambda s: None)
  message = str(e.value)
  assert "became non-finite (nan) at step 2" in message
  assert f"{names[0]} record 100 to {names[0]} record 199" in message
  checkpoints = os.path.join(model_dir, "checkpoints")
  assert message.endswith("Last good checkpoint: " + os.path.join(checkpoints,
                                                                  "ckpt-1"))
  assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-1")
  exports = sorted(os.listdir(tmp_path / "exports"))
  assert len(exports) == 1  # step 1's, none after
  info = json.load(open(tmp_path / "exports" / exports[0] / "assets.extra" /
                        streaming.EXPORT_INFO_FILE))
  assert info["step"] == 1
  assert os.path.exists(tmp_path / "exports" / exports[0] / "assets.extra" /
                        "tf_serving_warmup_requests")
  # The refused update left the weights finite: the last state is intact.
  model = model_dir_lib.load_model(model_dir, train_config.TrainConfig).model
  assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


_FULL_DISK_SCRIPT = r"""
import resource, signal, sys
import egin_tf
from egin_tf.train import stream as streaming
from egin_tf.train import config as train_config
from egin_tf.train import offline
stream_dir, model_dir, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = train_config.TrainConfig(model="dnn", seed=0, batch_size=100, max_clicks=10,
                              max_queries=10, max_seeds=10, embedding_dim=4)
stream = train_config.StreamConfig(checkpoint_every_steps=2)
# Writes past `limit` bytes fail with EFBIG, like writes to a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
  streaming.train_stream(stream_dir, model_dir, config, stream, print_fn=print)
except streaming.CheckpointWriteError as e:
  print("CheckpointWriteError:", e)
  sys.exit(3)
"""


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(sim_stream, tmp_path):
  directory, names = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  model_dir = str(tmp_path / "m")
  config = train_config.TrainConfig(model="dnn", seed=0, **dict(SMALL, batch_size=100))
  streaming.train_stream(directory, model_dir, config,
                         train_config.StreamConfig(checkpoint_every_steps=2),
                         print_fn=lambda s: None)
  checkpoints = os.path.join(model_dir, "checkpoints")
  data = [f for f in os.listdir(checkpoints) if f.startswith("ckpt-5.data")]
  size = os.path.getsize(os.path.join(checkpoints, data[0]))
  # New data lands; the next checkpoint cannot be written completely.
  shutil.copy(os.path.join(sim_stream, stream_lib.list_shards(sim_stream)[1]),
              directory)
  run = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, directory, model_dir,
                        str(size // 2)], capture_output=True, text=True, timeout=300)
  assert run.returncode == 3, run.stdout + run.stderr
  assert "could not write the checkpoint of step 7" in run.stdout
  assert f"{os.path.join(checkpoints, 'ckpt-5')}, is intact" in run.stdout
  assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-5")
  # The intact checkpoint loads, and a run with room resumes from it.
  lines = []
  result = streaming.train_stream(directory, model_dir, config,
                                  train_config.StreamConfig(checkpoint_every_steps=2),
                                  print_fn=lines.append)
  assert "resuming from " + os.path.join(checkpoints, "ckpt-5") in lines[0]
  assert result["examples"] == 1000 and result["steps"] == 10


_PROGRESS = "step "


def _run_until_killed(command, checkpoints, rng):
  """Starts a training process, waits for a checkpoint, kills it with SIGKILL."""
  before = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline:
    now = set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()
    if any(n.endswith(".index") for n in now - before):
      break
    if process.poll() is not None:
      raise AssertionError("the run ended before it could be killed:\n" +
                           process.stdout.read())
    time.sleep(0.05)
  time.sleep(rng.uniform(0.0, 1.5))  # kill at an arbitrary moment, mid-shard
  process.send_signal(signal.SIGKILL)
  output = process.communicate()[0]
  assert process.returncode == -signal.SIGKILL, output
  return output


def test_kill_9_mid_shard_then_resume_trains_every_example_exactly_once(
        sim_stream, tmp_path):
  directory, _ = _first_shards(sim_stream, str(tmp_path / "s"), 6)
  model_dir = str(tmp_path / "m")
  command = [sys.executable, "-m", "egin_tf.cli.main", "train", "--stream", directory,
             "--model", "egin", "--model_dir", model_dir, "--batch_size", "32",
             "--max_clicks", "10", "--max_queries", "10", "--embedding_dim", "4",
             "--checkpoint_every_steps", "3", "--log_every", "5", "--audit_log"]
  checkpoints = os.path.join(model_dir, "checkpoints")
  rng = random.Random(0)
  _run_until_killed(command, checkpoints, rng)
  final = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stdout + final.stderr
  assert "resuming from" in final.stdout
  expected = _stream_records(directory)
  trained = audit_log.TrainedExamplesLog(os.path.join(model_dir,
                                                      "trained_examples")).read()
  # Every record of the input, once, in stream order: none twice, none skipped.
  assert audit_log.delivery(trained, expected) == audit_log.Delivery(3000, 3000, 0, [], [], [])
  assert trained == expected
  stats = json.load(open(os.path.join(model_dir, "stream_metrics.json")))
  assert stats["examples"] == 3000
  assert stats["position"] == {"shard": expected[-1][0], "offset": 500}


def test_sigterm_while_following_checkpoints_and_exits_cleanly(sim_stream, tmp_path):
  directory, _ = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  model_dir = str(tmp_path / "m")
  process = subprocess.Popen(
      [sys.executable, "-m", "egin_tf.cli.main", "train", "--stream", directory,
       "--follow", "--poll_seconds", "30", "--model", "dnn", "--model_dir", model_dir,
       "--batch_size", "100", "--max_clicks", "10", "--max_queries", "10",
       "--checkpoint_every_steps", "1000", "--log_every", "1"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  # Wait until the one shard is trained (5 steps) and the run idles, polling.
  lines = []
  for line in process.stdout:
    lines.append(line)
    if line.startswith("step 5 "):
      break
  time.sleep(1.0)
  process.send_signal(signal.SIGTERM)
  output = "".join(lines) + process.communicate(timeout=120)[0]
  # It stops within a nap, not after the 30 s poll interval, with a checkpoint.
  assert process.returncode == 0, output
  assert "stopped (SIGTERM) at step 5" in output
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith(
      "ckpt-5")


def test_offline_model_directory_is_a_warm_start(sim_stream, sim_data, tmp_path):
  data, _ = sim_data
  model_dir = str(tmp_path / "m")
  config = train_config.TrainConfig(model="egin", seed=0, steps=6, log_every=3, **SMALL)
  offline.train(os.path.join(data, "train-*"), model_dir, config, verbose=0)
  offline_model = model_dir_lib.load_model(model_dir, train_config.TrainConfig).model
  directory, _ = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  lines = []
  result = streaming.train_stream(directory, model_dir, config,
                                  train_config.StreamConfig(progressive_window=500),
                                  print_fn=lines.append)
  assert lines[0].startswith("warm start from the offline checkpoint "
                             + os.path.join(model_dir, "checkpoints", "ckpt-6"))
  # The stream starts at its beginning, the steps continue the offline count.
  assert result["examples"] == 500 and result["steps"] == 6 + 8
  # The first batch was scored by the offline model, not a fresh one.
  batch = next(iter(stream_lib.ShardStream(
      directory, 64, reader.SequenceLengths(10, 10, 10))))
  progressive = ProgressiveMetrics(window=500)
  tf.train.Checkpoint(progressive=progressive).restore(
      tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  ).expect_partial()
  np.testing.assert_allclose(progressive.window_scores.numpy()[:64],
                             offline_model(batch.features, training=False).numpy(),
                             rtol=1e-5)


def _audit(model_dir):
  return subprocess.run([sys.executable, "-m", "egin_tf.cli.main", "audit",
                         "--model_dir", model_dir, "--show", "1"],
                        capture_output=True, text=True, timeout=300, check=False)


def test_audit_counts_every_record_once_then_a_duplicate_and_a_gap(sim_stream, tmp_path):
  directory, names = _first_shards(sim_stream, str(tmp_path / "s"), 1)
  model_dir = str(tmp_path / "m")
  config = train_config.TrainConfig(model="dnn", seed=0, **dict(SMALL, batch_size=100))
  streaming.train_stream(directory, model_dir, config,
                         train_config.StreamConfig(audit_log=True), print_fn=lambda s: None)
  ok = _audit(model_dir)
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert f"(checkpoint ckpt-5, at {names[0]} record 500) against the stream" in ok.stdout
  assert ("500 records: 500 trained once, 0 duplicate trainings, 0 never trained, "
          "0 trained rows not of the stream") in ok.stdout
  # Record 7 trained twice, record 9 never: as an at-least-once run would log.
  [(_, segment)] = audit_log.TrainedExamplesLog(
      os.path.join(model_dir, streaming.AUDIT_DIR)).segments()
  lines = open(segment).read().splitlines(keepends=True)
  lines[9] = lines[7]
  open(segment, "w").write("".join(lines))
  bad = _audit(model_dir)
  assert bad.returncode == 1, bad.stdout + bad.stderr
  assert ("500 records: 498 trained once, 1 duplicate trainings, 1 never trained, "
          "0 trained rows not of the stream") in bad.stdout
  assert f"trained more than once (shard, record, times): {names[0]} 7 2" in bad.stdout
  assert f"never trained: {names[0]} 9" in bad.stdout


def test_checkpoint_position_reads_a_stream_checkpoint_and_refuses_others(tmp_path):
  state = streaming.StreamState()
  state.shard.assign("s-007.tfrecord")
  state.offset.assign(42)
  stream_checkpoint = tf.train.Checkpoint(stream=state, other=tf.Variable(1.0)).save(
      str(tmp_path / "stream" / "ckpt"))
  assert streaming.checkpoint_position(stream_checkpoint) == stream_lib.StreamPosition(
      "s-007.tfrecord", 42)
  offline = tf.train.Checkpoint(model=tf.Variable(1.0)).save(str(tmp_path / "off" / "ckpt"))
  with pytest.raises(ValueError, match=r"ckpt-1: not a stream run's checkpoint"):
    streaming.checkpoint_position(offline)
