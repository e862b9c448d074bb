"""Every command with bad values of its flags: one line naming the flag, exit
status 2, no traceback, nothing done. Each command's cases run in one process
(tests/cli_flag_sweep.py); `egin-tf train --print_config` and --config files."""

import json
import os
import subprocess
import sys

import pytest

SWEEP = os.path.join(os.path.dirname(__file__), "cli_flag_sweep.py")


def sweep(cases):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, SWEEP, json.dumps(cases)], env=env,
                        capture_output=True, text=True, timeout=900)
  line = [line for line in proc.stdout.splitlines() if line.startswith("SWEEP ")]
  assert line, f"the sweep failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
  return json.loads(line[-1][len("SWEEP "):])


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  root = tmp_path_factory.mktemp("flags")
  (root / "stream").mkdir()
  (root / "x.tfrecord").write_bytes(b"")
  (root / "bad.json").write_text("{\"model\": {\"alpha\": 0.5},,}")
  (root / "run.json").write_text(json.dumps({"model": {"name": "egin", "alpha": -2}}))
  (root / "log.jsonl").write_text("{}\n")
  (root / "list.json").write_text("[1, 2]")
  return {k: str(v) for k, v in {
      "tmp": root, "stream": root / "stream", "tfrecord": root / "x.tfrecord",
      "bad_json": root / "bad.json", "bad_value_json": root / "run.json",
      "list_json": root / "list.json",
      "log": root / "log.jsonl", "missing": root / "missing"}.items()}


def _train_cases(p):
  md = ["--model_dir", os.path.join(p["tmp"], "m")]
  cases = [
      (["--alpha", "-1"], "--alpha=-1.0: must be >= 0.0"),
      (["--alpha", "abc"], "--alpha=abc"),
      (["--batch_size", "0"], "--batch_size=0: must be >= 1"),
      (["--learning_rate", "0"], "--learning_rate=0.0: must be > 0.0"),
      (["--optimizer", "sgd"], "--optimizer='sgd': must be one of lazy_adam, adam"),
      (["--graph_optimizer", "rmsprop"], "--graph_optimizer='rmsprop'"),
      (["--seeds_fraction", "2"], "--seeds_fraction=2.0: must be <= 1.0"),
      (["--hidden_units", "64,x"], "--hidden_units=64,x"),
      (["--hidden_units", "64,0"], "--hidden_units=0: must be >= 1"),
      (["--binning", "fuzzy"], "--binning='fuzzy'"),
      (["--pooling", "max"], "--pooling='max': must be one of sum, mean"),
      (["--model", "bst", "--pooling", "target,max"], "--pooling='max'"),
      (["--model", "bst", "--max_positions", "1"], "--max_positions=1: must be >= 2"),
      (["--share_tables"], "--graph_folds=2: (the default) share_tables needs"),
      (["--model", "dnn", "--top_k", "3"], "--top_k does not apply to --model dnn"),
      (["--model", "dnn", "--no_graph"], "--no_graph does not apply to --model dnn"),
      (["--model", "xgboost"], "--model"),
      (["--follow"], "--follow applies only with --stream"),
      (["--progressive_window", "5"], "--progressive_window applies only with"),
      (["--stream", p["stream"], "--progressive_window", "0"],
       "--progressive_window=0: must be >= 1"),
      (["--stream", p["stream"], "--model", "eges"], "--model eges"),
      (["--stream", p["stream"], "--verbose", "line"], "--verbose applies to offline"),
      (["--stream", p["missing"]], f"--stream={p['missing']}: no such folder"),
      (["--stream", p["stream"], "--train", p["tfrecord"]], "--stream and --train"),
      (["--train", os.path.join(p["missing"], "*")], "--train="),
      (["--train", p["tfrecord"], "--eval", os.path.join(p["missing"], "*")],
       "--eval="),
      (["--eval", p["tfrecord"]], "--eval needs --train or --stream"),
      (["--train", p["tfrecord"], "--sim_users", "5"], "--sim_users applies only"),
      (["--item_buckets", "1"], "--item_buckets"),
      (["--strategy", "ring"], "--strategy"),
      (["--config", p["missing"]], f"--config={p['missing']}: cannot read it"),
      (["--config", p["bad_json"]], "--config=" + p["bad_json"] + ": not JSON: line 1"),
      (["--config", p["bad_value_json"]],
       p["bad_value_json"] + ": model.alpha=-2.0: must be >= 0.0"),
      (["--config", p["bad_value_json"], "--model", "dnn"],
       p["bad_value_json"] + ": model.alpha=-2: does not apply to model dnn"),
      (["--config", p["list_json"]],
       p["list_json"] + ": config: must be a JSON object of sections"),
      (["positional"], "unexpected arguments: positional"),
  ]
  return [(["train", *args, *md], message) for args, message in cases]


def _other_cases(p):
  tf, missing, tmp = p["tfrecord"], p["missing"], p["tmp"]
  return [
      (["generate", "--users", "0", "--out", missing], "--users"),
      (["generate", "--shards", "0", "--out", missing], "--shards"),
      (["generate"], "--out"),
      (["convert", "--input", p["log"]], "--out"),
      (["convert", "--out", missing], "--input"),
      (["convert", "--input", missing, "--out", os.path.join(tmp, "c")], "--input"),
      (["convert", "--input", tmp, "--out", os.path.join(tmp, "c")],
       f"--input={tmp}: a folder, not a file"),
      (["convert", "--input", p["log"], "--out", missing, "--shards", "0"], "--shards"),
      (["convert", "--input", p["log"], "--out", missing, "--max_hist", "0"],
       "--max_hist"),
      (["convert", "--input", p["log"], "--out", missing, "--format", "csv"],
       "--format"),
      (["convert", "--input", p["log"], "--out", missing, "--negatives", "3"],
       "--negatives applies only to --format taobao"),
      (["convert", "--input", p["log"], "--out", missing, "--negative_sampling",
        "category"], "--negative_sampling applies only to --format taobao"),
      (["convert", "--input", p["log"], "--out", missing, "--format", "taobao",
        "--negative_sampling", "random"],
       "--negative_sampling=random: value should be one of "
       "<uniform|popularity|category>"),
      (["convert", "--input", p["log"], "--out", missing, "--format", "trivago",
        "--test_fraction", "1.5"], "--test_fraction"),
      (["replay", "--out", missing], "--data"),
      (["replay", "--data", os.path.join(missing, "*"), "--out", missing], "--data="),
      (["replay", "--data", tf, "--out", missing, "--records_per_shard", "0"],
       "--records_per_shard"),
      (["evaluate", "--data", tf], "--model_dir"),
      (["evaluate", "--model_dir", missing, "--data", tf],
       f"--model_dir={missing}: not a model directory"),
      (["evaluate", "--model_dir", missing, "--data", tf, "--batch_size", "0"],
       "--batch_size"),
      (["export", "--model_dir", missing, "--export_dir", missing],
       f"--model_dir={missing}: not a model directory"),
      (["export", "--model_dir", missing], "--export_dir"),
      (["export", "--model_dir", missing, "--export_dir", missing, "--keep", "0"],
       "--keep"),
      (["neighbors", "--model_dir", missing, "--item", "3"],
       f"--model_dir={missing}: not a model directory"),
      (["neighbors", "--model_dir", missing], "--item"),
      (["neighbors", "--model_dir", missing, "--item", "3", "--k", "0"], "--k"),
      (["audit"], "--model_dir"),
      (["audit", "--model_dir", missing], f"--model_dir={missing}: not a model directory"),
      (["audit", "--model_dir", missing, "--show", "-1"], "--show"),
      (["cluster-local", "--workers", "0", "--", "--model_dir", missing],
       "--workers"),
      (["cluster-local", "--ps", "-1", "--", "--model_dir", missing], "--ps"),
      (["cluster-local", "--", "--steps", "5"], "--model_dir"),
  ]


def _check(results, cases):
  for result, (argv, message) in zip(results, cases):
    where = f"egin-tf {' '.join(argv)}"
    assert result["code"] == 2, f"{where}: exit {result['code']}\n{result['stderr']}"
    assert "Traceback" not in result["stderr"], where
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1, f"{where}: not one line:\n{result['stderr']}"
    assert message in lines[0], f"{where}: {lines[0]!r} lacks {message!r}"


def test_train_refuses_every_bad_flag_before_any_work(paths):
  cases = _train_cases(paths)
  _check(sweep([argv for argv, _ in cases]), cases)
  assert not os.path.exists(os.path.join(paths["tmp"], "m"))  # nothing done


@pytest.mark.parametrize("command", ["generate", "convert", "replay", "evaluate",
                                     "export", "neighbors", "audit", "cluster-local"])
def test_other_commands_refuse_bad_flags(paths, command):
  cases = [c for c in _other_cases(paths) if c[0][0] == command]
  _check(sweep([argv for argv, _ in cases]), cases)
  assert not os.path.exists(paths["missing"])


def test_print_config_resolves_defaults_file_and_flags(paths, tmp_path):
  config = tmp_path / "run.json"
  config.write_text(json.dumps({"model": {"name": "egin", "alpha": 0.5, "top_k": 5},
                                "train": {"batch_size": 64}}))
  argv = ["train", "--config", str(config), "--top_k", "7", "--no_query",
          "--seed", "3", "--print_config", "--model_dir", str(tmp_path / "m")]
  [result] = sweep([argv])
  assert result["code"] == 0, result["stderr"]
  printed = json.loads(result["stdout"])
  model, train = printed["model"], printed["train"]
  assert (model["name"], model["alpha"], model["top_k"]) == ("egin", 0.5, 7)
  assert (model["use_query"], model["seed"], model["beta"]) == (False, 3, 1.0)
  assert (train["batch_size"], train["epochs"], train["seed"]) == (64, 2, 3)
  assert "stream" not in printed and not (tmp_path / "m").exists()
  # The printed config, fed back, prints itself.
  (tmp_path / "printed.json").write_text(result["stdout"])
  [again] = sweep([["train", "--config", str(tmp_path / "printed.json"),
                    "--print_config", "--model_dir", str(tmp_path / "m")]])
  assert json.loads(again["stdout"]) == printed


def test_print_config_shows_the_stream_default_and_what_overrides_it(paths, tmp_path):
  config = tmp_path / "run.json"
  config.write_text(json.dumps({"model": {"graph_folds": 3}}))
  stream, md = ["--stream", paths["stream"]], ["--model_dir", str(tmp_path / "m")]
  cases = [stream, [], stream + ["--graph_folds", "2"], stream + ["--config", str(config)],
           stream + ["--model", "dnn"]]
  results = sweep([["train", *args, "--print_config", *md] for args in cases])
  assert [r["code"] for r in results] == [0] * 5, [r["stderr"] for r in results]
  printed = [json.loads(r["stdout"])["model"] for r in results]
  assert [m.get("graph_folds") for m in printed] == [1, 2, 2, 3, None]
  assert printed[4]["name"] == "dnn"


def test_help_lists_the_hyperparameter_flags():
  [result] = sweep([["train", "--help"]])
  for flag in ("--alpha", "--beta", "--gamma", "--window", "--q2q_timespan",
               "--q2i_timespan", "--num_negatives", "--queue_capacity", "--top_k",
               "--num_bins", "--graph_dim", "--seeds_fraction", "--[no]no_graph",
               "--[no]no_query", "--[no]no_positional", "--graph_folds",
               "--hidden_units", "--attention_units", "--num_heads",
               "--cross_buckets", "--config", "--[no]print_config",
               "--progressive_window"):
    assert f"  {flag}:" in result["stdout"], flag
  # Which graph_folds each mode defaults to, and why, is in the --stream help.
  stream_help = result["stdout"].split("  --stream:")[1].split("\n  --")[0]
  assert "graph_folds" in " ".join(stream_help.split()), stream_help
