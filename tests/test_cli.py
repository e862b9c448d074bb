"""The egin-tf command line, run as a user would (subprocesses)."""

import json
import os
import subprocess
import sys

import pytest

COMMANDS = ["generate", "convert", "train", "replay", "evaluate", "export",
            "neighbors", "audit", "cluster-local"]


def _run(*args, check=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "egin_tf.cli.main", *args],
                        capture_output=True, text=True, env=env, timeout=600)
  if check and proc.returncode != 0:
    raise AssertionError(f"egin-tf {' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stdout}\n{proc.stderr}")
  return proc


def test_top_level_help_lists_every_command():
  out = _run("--help").stdout
  for command in COMMANDS:
    assert f"\n  {command} " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_its_own_flags(command):
  proc = _run(command, "--help")
  assert f"egin-tf {command}" in proc.stdout
  flags_by_command = {"generate": "--users", "convert": "--on_bad",
                      "train": "--model_dir", "evaluate": "--data",
                      "export": "--export_dir", "neighbors": "--item",
                      "replay": "--records_per_shard", "audit": "--show",
                      "cluster-local": "--workers"}
  assert flags_by_command[command] in proc.stdout


def test_unknown_command_is_a_usage_error():
  proc = _run("frobnicate", check=False)
  assert proc.returncode == 2
  assert "unknown command 'frobnicate'" in proc.stderr


def test_convert_bad_line_names_file_and_line_and_writes_nothing(tmp_path):
  src = tmp_path / "log.jsonl"
  src.write_text('{"user": 1, "time": 10, "item": 5, "label": 1}\n'
                 '{"user": 1, "time": 11, "item": 6, "label": 2}\n')
  out = tmp_path / "out"
  proc = _run("convert", "--format", "jsonl", "--input", str(src), "--out",
              str(out), check=False)
  assert proc.returncode == 1
  assert f"{src}:2:" in proc.stderr and "label" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(tmp_path)) == ["log.jsonl"]

  proc = _run("convert", "--format", "jsonl", "--input", str(src), "--out",
              str(out), "--on_bad", "skip")
  assert "read 2 lines, wrote 1 impressions" in proc.stdout
  assert "skipped 1 x" in proc.stdout
  assert os.path.exists(out / "schema.json")


def test_convert_taobao_with_category_negatives(tmp_path):
  src = tmp_path / "UserBehavior.csv"
  # User 2's positives (50 at 3, 60 at 5) draw 20, the cat-2 click before them it
  # did not make. User 1's lack earlier cat-1 clicks: 10 at 2 falls back to
  # uniform (only 20 was clicked before), 30 at 4 to popularity (40 or 50).
  src.write_text("1,20,2,pv,1\n1,10,1,pv,2\n1,30,1,pv,4\n"
                 "2,40,2,pv,2\n2,50,2,pv,3\n2,60,2,pv,5\n")
  out = tmp_path / "out"
  proc = _run("convert", "--format", "taobao", "--input", str(src), "--out",
              str(out), "--split", "last_click", "--negative_sampling", "category")
  assert "wrote 8 impressions (4 positive)" in proc.stdout
  assert ("  negative_sampling category: items of the positive's category by their "
          "clicks before the impression, untouched by the user by then; from the "
          "fallback (too few candidates): popularity 1, uniform 1") in proc.stdout
  schema = json.loads((out / "schema.json").read_text())
  assert schema["source"].endswith("; negative_sampling category")


def test_generate_train_evaluate_export_end_to_end(tmp_path):
  data = tmp_path / "data"
  proc = _run("generate", "--out", str(data), "--users", "150", "--seed", "2")
  assert "oracle test AUC" in proc.stdout
  oracle = json.loads((data / "oracle.json").read_text())

  model_dir = tmp_path / "model"
  proc = _run("train", "--train", str(data / "train-*"), "--eval",
              str(data / "test-*"), "--model", "egin", "--model_dir",
              str(model_dir), "--steps", "20", "--log_every", "10",
              "--batch_size", "64", "--max_clicks", "20", "--max_queries", "20",
              "--verbose", "line")
  assert "oracle (true p)" in proc.stdout
  assert f"{oracle['test_auc']:.4f}" in proc.stdout
  assert "trained 20 steps" in proc.stdout

  proc = _run("evaluate", "--model_dir", str(model_dir), "--data",
              str(data / "test-*"), "--output_json", str(tmp_path / "m.json"))
  metrics = json.loads((tmp_path / "m.json").read_text())
  assert f"{metrics['eval']['auc']:.4f}" in proc.stdout
  trained = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["eval"]["auc"] == trained["eval"]["auc"]

  proc = _run("export", "--model_dir", str(model_dir), "--export_dir",
              str(tmp_path / "serving"), "--version", "7", "--warmup_examples", "5")
  assert (tmp_path / "serving" / "7" / "saved_model.pb").exists()
  assert (tmp_path / "serving" / "7" / "assets.extra" /
          "tf_serving_warmup_requests").exists()
  assert (tmp_path / "serving" / "7" / "assets.extra" /
          "items_embeddings.tsv").exists()

  first_item = (tmp_path / "serving" / "7" / "assets.extra" /
                "items_embeddings.tsv").read_text().split("\t", 1)[0]
  proc = _run("neighbors", "--model_dir", str(model_dir), "--item", first_item,
              "--k", "3")
  lines = proc.stdout.splitlines()
  assert lines[0].startswith(f"item {first_item} (categories")
  items_at = lines.index("nearest items:")
  queries_at = lines.index("nearest queries:")
  assert queries_at - items_at - 2 == 4  # header line + 3 neighbors + blank
  proc = _run("neighbors", "--model_dir", str(model_dir), "--item", "abc",
              check=False)
  assert proc.returncode == 1 and "pass --raw" in proc.stderr


def test_replay_then_stream_training_with_exports(tmp_path):
  data = tmp_path / "data"
  _run("generate", "--out", str(data), "--users", "60", "--seed", "4")
  stream = tmp_path / "stream"
  proc = _run("replay", "--data", str(data / "train-*"), "--out", str(stream),
              "--records_per_shard", "1000")
  shards = sorted(p for p in os.listdir(stream) if p.endswith(".tfrecord"))
  assert shards[0] == "impressions-000000.tfrecord"
  assert f"wrote {len(shards)} shards" in proc.stdout
  exports = tmp_path / "exports"
  proc = _run("train", "--stream", str(stream), "--eval", str(data / "test-*"),
              "--model", "dnn", "--model_dir", str(tmp_path / "m"), "--batch_size",
              "128", "--max_clicks", "10", "--max_queries", "10", "--log_every", "10",
              "--export_dir", str(exports), "--export_every_steps", "20",
              "--keep_exports", "2")
  assert "progressive AUC" in proc.stdout and "test (dnn)" in proc.stdout
  assert "stopped (end of stream)" in proc.stdout
  versions = sorted(os.listdir(exports))
  assert len(versions) == 2 and all(v.isdigit() for v in versions)
  # A shard landing (while no trainer ran) with a name before the position
  # would never be read: reported, with its name.
  (stream / "aaa.tfrecord").write_bytes(
      (stream / "impressions-000000.tfrecord").read_bytes())
  proc = _run("train", "--stream", str(stream), "--model", "dnn", "--model_dir",
              str(tmp_path / "m"), "--max_clicks", "10", "--max_queries", "10",
              check=False)
  assert proc.returncode == 1
  assert "resuming from" in proc.stdout
  assert ("aaa.tfrecord: record 0: 1 shard(s) sorting before the resume position"
          in proc.stderr)
  assert "the most recently modified: aaa.tfrecord" in proc.stderr


def test_missing_model_dir_is_a_clean_error(tmp_path):
  proc = _run("evaluate", "--model_dir", str(tmp_path / "none"), "--data",
              str(tmp_path / "x-*"), check=False)
  assert proc.returncode == 2  # a bad flag
  assert "not a model directory" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--strategy", "parameter_server", "--steps", "1"],
     "--strategy parameter_server needs TF_CONFIG with a chief"),
    (["train", "--strategy", "mirrored", "--stream", "x"],
     "--stream trains in one process"),
    (["train", "--item_buckets", "1"], "--item_buckets"),
    (["cluster-local", "--", "--steps", "5"], "with --model_dir"),
    # Zero would divide by zero deep in training; refused at parse time.
    (["train", "--batch_size", "0"], "--batch_size"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--log_every", "0"], "--log_every"),
])
def test_bad_training_flags_are_one_clear_line(tmp_path, args, message):
  env_args = [*args, "--model_dir", str(tmp_path / "m")] if args[0] == "train" else args
  proc = _run(*env_args, check=False)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


def test_a_shard_truncated_mid_file_is_one_line_naming_it(tmp_path):
  data = tmp_path / "data"
  _run("generate", "--out", str(data), "--users", "30", "--seed", "2", "--shards", "1")
  shard = data / "train-00000-of-00001.tfrecord"
  shard.write_bytes(shard.read_bytes()[:-7])  # the last record loses 7 bytes
  proc = _run("train", "--train", str(shard), "--model", "dnn", "--model_dir",
              str(tmp_path / "m"), "--steps", "40", "--batch_size", "64",
              "--max_clicks", "5", "--max_queries", "5", "--log_every", "40",
              "--verbose", "quiet", check=False)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and errors[0].startswith(f"error: {shard}: record ")
  assert "unreadable TFRecord" in errors[0]
