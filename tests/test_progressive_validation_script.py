"""The progressive-validation experiment script: its helpers by hand, and one run
of the whole script on a tiny simulated stream."""


import json
import math
import os
import shutil

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline import stream as stream_lib
from data_pipeline.tf_env import tf
from data_pipeline import ranking_metrics as metrics
from experiments import progressive_validation as pv

TINY_USERS = 20
TINY_SEED = 1
RECORDS_PER_SHARD = 500


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory):
  """``out`` with a tiny simulated dataset and its stream folder (data/, stream/)."""
  out = str(tmp_path_factory.mktemp("progressive"))
  pv.simulate_dataset(os.path.join(out, "data"), TINY_USERS, TINY_SEED)
  pv.make_stream(os.path.join(out, "data"), os.path.join(out, "stream"),
                 RECORDS_PER_SHARD)
  return out


def test_examples_at_steps_counts_full_batches_and_the_last_partial_one():
  # 7 examples in batches of 3: steps 1, 2, 3 end after 3, 6 and 7 examples.
  np.testing.assert_array_equal(pv.examples_at_steps([1, 2, 3], 3, 7), [3, 6, 7])
  with pytest.raises(ValueError, match=r"step 4 is not a step .* \(steps 1..3\)"):
    pv.examples_at_steps([2, 4], 3, 7)
  with pytest.raises(ValueError, match="step 0"):
    pv.examples_at_steps([0], 3, 7)


def test_auc_at_scores_the_last_window_and_the_whole_prefix_by_hand():
  labels = np.array([1, 0, 1, 0, 0, 1, 0])
  probs = np.array([.9, .1, .3, .4, .2, .8, .85])
  window = pv.auc_at(labels, probs, [3, 6, 7], window=4)
  # [0:3]: positives .9 .3 both above the negative .1 -> 1.
  # [2:6]: positives .3 .8, negatives .4 .2: .3 > .2, .8 > both -> 3 of 4.
  # [3:7]: positive .8, negatives .4 .2 .85 -> 2 of 3.
  np.testing.assert_allclose(window, [1.0, 0.75, 2 / 3])
  # Whole prefix of 7: .9 beats 4 negatives, .3 beats .1 .2, .8 beats .1 .4 .2.
  np.testing.assert_allclose(pv.auc_at(labels, probs, [7]), [9 / 12])
  # One label only in the window: no AUC.
  assert np.isnan(pv.auc_at(labels, probs, [4], window=1)[0])


def test_read_scalars_keeps_the_last_write_of_a_step_and_only_the_prefix(tmp_path):
  log_dir = str(tmp_path)
  first = tf.summary.create_file_writer(log_dir)
  with first.as_default():
    tf.summary.scalar("progressive/window_auc", 0.5, step=1)
    tf.summary.scalar("progressive/window_auc", 0.6, step=2)
    tf.summary.scalar("train/loss", 9.0, step=2)
  first.close()
  # A resumed run writes step 2 again into a second event file, then step 3.
  resumed = tf.summary.create_file_writer(log_dir, filename_suffix=".resumed")
  with resumed.as_default():
    tf.summary.scalar("progressive/window_auc", 0.65, step=2)
    tf.summary.scalar("progressive/window_auc", 0.7, step=3)
  resumed.close()
  assert len(os.listdir(log_dir)) == 2
  scalars = pv.read_scalars(log_dir)
  assert list(scalars) == ["window_auc"]
  steps, values = scalars["window_auc"]
  np.testing.assert_array_equal(steps, [1, 2, 3])
  np.testing.assert_allclose(values, [0.5, 0.65, 0.7], rtol=1e-6)
  with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
    pv.read_scalars(str(tmp_path / "missing"))


def test_markdown_table_rows_by_hand():
  curve = pv.Curve(np.array([10, 20]), np.array([.6, .7]), np.array([.6, .75]))
  row = pv.ModelResult("dnn", curve, running_auc=0.71234, window_auc=0.75,
                       stream_test_auc=0.7, offline_test_auc=0.72,
                       stream_examples_per_second=1234.4,
                       offline_examples_per_second=5000.0, stream_steps=2,
                       offline_steps=1)
  oracle = pv.Curve(np.array([10, 20]), np.array([.8, .81]), np.array([.8, .82]))
  lines = pv.markdown_table([row], oracle, 0.83, window=10_000).splitlines()
  assert "progressive AUC, last 10,000" in lines[0]
  assert lines[2] == ("| dnn | 0.7123 | 0.7500 | 0.7000 | 0.7200 | 0.8300 | 1,234 "
                      "| 5,000 |")
  assert lines[3] == "| oracle (true p) | 0.8100 | 0.8200 | - | - | 0.8300 | - | - |"


def test_true_click_probabilities_follow_the_stream_and_match_the_oracle(tiny_out):
  data_dir = os.path.join(tiny_out, "data")
  stream_dir = os.path.join(tiny_out, "stream")
  with open(os.path.join(data_dir, simulator.ORACLE_FILE), encoding="utf-8") as f:
    oracle = json.load(f)
  config = simulator.SimulatorConfig(num_users=TINY_USERS, seed=TINY_SEED)
  labels, probs = pv.true_click_probabilities(config, stream_dir)
  assert labels.size == oracle["train_impressions"]
  assert labels.sum() == oracle["train_positives"]
  # The stream is the train split reordered, so the true probabilities give
  # the oracle's train AUC; labels line up with the records, in stream order.
  assert metrics.auc(labels, probs) == pytest.approx(oracle["train_auc"], abs=1e-12)
  assert ((probs > 0) & (probs < 1)).all()
  stream_labels = np.concatenate([
      tf.io.parse_example(chunk, {schema_lib.LABEL: tf.io.FixedLenFeature(
          [1], tf.int64)})[schema_lib.LABEL].numpy().reshape(-1)
      for shard in stream_lib.list_shards(stream_dir)
      for chunk in tf.data.TFRecordDataset(os.path.join(stream_dir, shard)).batch(512)])
  np.testing.assert_array_equal(labels, stream_labels)


def test_true_click_probabilities_name_a_foreign_record_and_a_missing_shard(
    tiny_out, tmp_path):
  stream_dir = os.path.join(tiny_out, "stream")
  other_seed = simulator.SimulatorConfig(num_users=TINY_USERS, seed=TINY_SEED + 1)
  with pytest.raises(ValueError, match=r"impressions-000000\.tfrecord: record 0: "
                     "no simulated train impression of 20 users, seed 2"):
    pv.true_click_probabilities(other_seed, stream_dir)
  partial = str(tmp_path / "partial")
  shutil.copytree(stream_dir, partial)
  last = stream_lib.list_shards(partial)[-1]
  os.remove(os.path.join(partial, last))
  config = simulator.SimulatorConfig(num_users=TINY_USERS, seed=TINY_SEED)
  with pytest.raises(ValueError, match=r"the stream holds \d+ of the \d+ simulated"):
    pv.true_click_probabilities(config, partial)


def test_whole_script_on_a_tiny_stream(tiny_out, capsys):
  config = pv.ExperimentConfig(
      out=tiny_out, figure=os.path.join(tiny_out, "auc.png"), users=TINY_USERS,
      seed=TINY_SEED, models=("dnn",), max_hist=5,
      records_per_shard=RECORDS_PER_SHARD, batch_size=64, window=300, log_every=3,
      verbose=0)
  result = pv.run(config, command="test")
  total = result["stream_examples"]
  (row,) = result["rows"]
  steps = math.ceil(total / 64)
  assert row.stream_steps == steps
  # Logged every 3 steps (192 examples; the last batch may be partial), then
  # the stream's end.
  expected = [min(s * 64, total) for s in range(3, steps + 1, 3)]
  if expected[-1] != total:
    expected.append(total)
  np.testing.assert_array_equal(row.curve.examples, expected)
  np.testing.assert_array_equal(result["oracle"].examples, expected)
  with open(os.path.join(tiny_out, "data", simulator.ORACLE_FILE),
            encoding="utf-8") as f:
    oracle = json.load(f)
  assert result["oracle"].running_auc[-1] == pytest.approx(oracle["train_auc"],
                                                           abs=1e-12)
  assert result["oracle_test_auc"] == oracle["test_auc"]
  assert row.curve.window_auc[-1] == row.window_auc
  assert all(0.0 < a < 1.0 for a in (row.running_auc, row.stream_test_auc,
                                     row.offline_test_auc))
  lines = result["table"].splitlines()
  assert lines[2].startswith("| dnn | ") and lines[3].startswith("| oracle (true p) |")
  with open(config.figure, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(tiny_out, "curves.json"), encoding="utf-8") as f:
    assert json.load(f)["dnn"]["examples"] == expected

  # A second run reuses the data, the stream and both finished model runs.
  capsys.readouterr()
  again = pv.run(config, command="test")
  printed = capsys.readouterr().out
  assert "reusing the finished stream run" in printed
  assert "reusing the finished offline run" in printed
  assert again["table"] == result["table"]
