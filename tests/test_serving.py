"""Serving: what saved_model_cli shows, warm-up records, odd requests, the context
+ candidates signature, pruning."""

import os
import shutil
import subprocess
import sys
from typing import List, NamedTuple

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.schema import Event
from data_pipeline.tf_env import tf
from egin_tf.serve import export
from egin_tf.serve import requests as serving_requests
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib

L, M, S = 6, 4, 3  # the served models' max_clicks, max_queries, max_seeds
T0 = 1_700_000_000
UNSEEN = 2**62 + 5  # no id of the simulator is near this


class Served(NamedTuple):
  model_name: str
  path: str
  model: tf.keras.Model
  schema: schema_lib.DatasetSchema
  lengths: object
  loaded: object  # keeps the signature's variables alive
  warmup: List[bytes]

  def score(self, examples: List[bytes]) -> np.ndarray:
    out = self.loaded.signatures["serving_default"](examples=tf.constant(examples))
    return out["pctr"].numpy()

  def score_lists(self, requests: List[serving_requests.ContextRequest]) -> np.ndarray:
    """serving_context's pctr [B, N] of B requests of N candidates each."""
    out = self.loaded.signatures["serving_context"](
        context=tf.constant([r.context for r in requests]),
        examples=tf.constant([r.examples for r in requests]))
    return out["pctr"].numpy()


def _events(first_id: int, n: int, cats=(1,)) -> List[Event]:
  """n history entries with ids first_id.. and times T0 - n .. T0 - 1, oldest first."""
  return [Event(first_id + j, T0 - n + j, list(cats)) for j in range(n)]


def _request_args(num_candidates=5, clicks=None, queries=None, seeds=None, **kwargs):
  """Arguments of a search request of the simulated data's shape (items 1..10000,
  C = 2)."""
  item_ids = [11 + 7 * i for i in range(num_candidates)]
  args = dict(
      num_cats=2, item_ids=item_ids, item_cats=[[1 + i % 50, 51] for i in item_ids],
      dense={"price": [10.0 + i for i in range(num_candidates)]},
      categorical={"position": list(range(1, num_candidates + 1))},
      user_id=3, time=T0, query_id=8, query_cats=[2, 51],
      clicks=_events(100, 4) if clicks is None else clicks,
      queries=_events(20, 3) if queries is None else queries,
      seeds=_events(300, 2) if seeds is None else seeds)
  args.update(kwargs)
  return args


def _request(**kwargs) -> List[bytes]:
  return serving_requests.search_request(**_request_args(**kwargs))


@pytest.fixture(scope="module", params=["dnn", "egin"])
def served(request, sim_data, tmp_path_factory):
  data, _ = sim_data
  root = tmp_path_factory.mktemp(f"serving_{request.param}")
  kwargs = ({"num_negatives": 8, "queue_capacity": 64}
            if request.param == "egin" else {})
  config = train_config.TrainConfig(model=request.param, batch_size=32, steps=3,
                                    log_every=3, max_clicks=L, max_queries=M,
                                    max_seeds=S, model_kwargs=kwargs)
  model_dir = str(root / "model")
  offline.train(os.path.join(data, "train-*"), model_dir, config, verbose=0,
                print_fn=lambda _: None)
  model, _, schema, lengths = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  warmup = _request(num_candidates=7)
  path = export.export_saved_model(model, schema, lengths, str(root / "serving"),
                                   warmup_examples=warmup, num_warmup_requests=3)
  return Served(request.param, path, model, schema, lengths,
                tf.saved_model.load(path), warmup)


def _assert_valid_scores(pctr: np.ndarray, n: int) -> None:
  assert pctr.shape == (n,)
  assert np.all(np.isfinite(pctr))
  assert np.all((pctr >= 0.0) & (pctr <= 1.0))


def _saved_model_cli(path: str) -> str:
  command = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
  if shutil.which("saved_model_cli"):
    command = ["saved_model_cli"]
  result = subprocess.run(command + ["show", "--all", "--dir", path],
                          capture_output=True, text=True, check=False, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


def _signature_section(cli_output: str, name: str) -> str:
  """The text of one signature_def in `saved_model_cli show --all` output."""
  marker = f"signature_def['{name}']:"
  assert marker in cli_output, cli_output[:3000]
  section = cli_output.split(marker, 1)[1]
  return section.split("signature_def['", 1)[0]


def test_saved_model_cli_shows_the_three_signatures(served):
  out = _saved_model_cli(served.path)
  examples = _signature_section(out, "serving_default")
  assert "inputs['examples']" in examples
  assert "dtype: DT_STRING" in examples and "shape: (-1)" in examples
  assert "outputs['pctr']" in examples and "dtype: DT_FLOAT" in examples
  padded = _signature_section(out, "predict_padded")
  assert "outputs['pctr']" in padded
  # Padded inputs have the served lengths: [N, L], [N, M, C], [N, S].
  for name, shape in (("click_ids", f"(-1, {L})"), ("query_hist_cats", f"(-1, {M}, 2)"),
                      ("seed_times", f"(-1, {S})"), ("item_id", "(-1)")):
    entry = padded.split(f"inputs['{name}']", 1)[1].split("inputs['", 1)[0]
    assert f"shape: {shape}" in entry, (name, entry)
  context = _signature_section(out, "serving_context")
  for name, shape in (("context", "(-1)"), ("examples", "(-1, -1)")):
    entry = context.split(f"inputs['{name}']", 1)[1].split("inputs['", 1)[0]
    assert "dtype: DT_STRING" in entry and f"shape: {shape}" in entry, (name, entry)
  output = context.split("outputs['pctr']", 1)[1]
  assert "dtype: DT_FLOAT" in output and "shape: (-1, -1)" in output


def test_warmup_file_holds_replayable_predict_requests(served):
  path = os.path.join(served.path, "assets.extra", "tf_serving_warmup_requests")
  # A TFRecord file: read with the plain TFRecord reader, every record a PredictionLog.
  logs = serving_requests.read_warmup_file(path)
  assert len(logs) == 6  # 3 per Example signature
  for log in logs[:3]:
    assert log.WhichOneof("log_type") == "predict_log"
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["examples"]
    examples = serving_requests.request_examples(log)
    assert examples == served.warmup
    pctr = served.score(examples)
    _assert_valid_scores(pctr, 7)
    np.testing.assert_array_equal(pctr, served.score(served.warmup))
  for log in logs[3:]:
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_context"
    inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    assert {k: v.shape for k, v in inputs.items()} == {"context": (1,),
                                                       "examples": (1, 7)}
    replayed = served.loaded.signatures["serving_context"](
        **{k: tf.constant(v) for k, v in inputs.items()})["pctr"].numpy()
    np.testing.assert_allclose(replayed[0], served.score(served.warmup),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", ["empty_histories", "unseen_ids",
                                  "missing_optional_features"])
def test_odd_requests_get_one_valid_score_per_candidate(served, case):
  if case == "empty_histories":
    examples = _request(clicks=[], queries=[], seeds=[])
  elif case == "unseen_ids":
    examples = serving_requests.search_request(
        num_cats=2, item_ids=[UNSEEN, UNSEEN + 1, 4], item_cats=[[UNSEEN], [], [1]],
        user_id=UNSEEN, time=T0, query_id=UNSEEN, query_cats=[UNSEEN],
        clicks=_events(UNSEEN, 3, cats=[UNSEEN]), queries=_events(UNSEEN, 2),
        seeds=_events(UNSEEN, 2))
  else:
    # Only item ids: no user, time, query, categories, dense/cat features or seeds.
    examples = serving_requests.search_request(num_cats=2, item_ids=[5, 6, 7, 8])
  pctr = served.score(examples)
  _assert_valid_scores(pctr, len(examples))


def test_over_long_histories_score_like_their_most_recent_entries(served):
  clicks, queries, seeds = _events(100, 3 * L), _events(20, 3 * M), _events(300, 3 * S)
  long = served.score(_request(clicks=clicks, queries=queries, seeds=seeds))
  _assert_valid_scores(long, 5)
  recent = served.score(_request(clicks=clicks[-L:], queries=queries[-M:],
                                 seeds=seeds[-S:]))
  np.testing.assert_array_equal(long, recent)
  # The clicks do matter: keeping the oldest L instead scores differently.
  oldest = served.score(_request(clicks=clicks[:L], queries=queries[-M:],
                                 seeds=seeds[-S:]))
  assert not np.array_equal(long, oldest)


@pytest.mark.parametrize("case", ["typical", "empty_histories",
                                  "over_long_histories", "only_items"])
def test_serving_context_scores_like_serving_default_on_the_flattened_request(
        served, case):
  args = {
      "typical": lambda: _request_args(num_candidates=9),
      "empty_histories": lambda: _request_args(clicks=[], queries=[], seeds=[]),
      "over_long_histories": lambda: _request_args(
          clicks=_events(100, 3 * L), queries=_events(20, 3 * M),
          seeds=_events(300, 3 * S)),
      "only_items": lambda: {"num_cats": 2, "item_ids": [5, 6, 7, 8]},
  }[case]()
  n = len(args["item_ids"])
  request = serving_requests.context_request(**args)
  flat = served.score(serving_requests.flatten_request(request))
  _assert_valid_scores(flat, n)
  assert len(set(flat.tolist())) > 1  # the candidates' scores differ
  lists = served.score_lists([request])
  assert lists.shape == (1, n)
  np.testing.assert_allclose(lists[0], flat, rtol=1e-6, atol=0)


def test_serving_context_scores_each_list_with_its_own_context(served):
  first = serving_requests.context_request(**_request_args())
  second = serving_requests.context_request(**_request_args(
      user_id=9, query_id=2, clicks=_events(500, L), queries=_events(40, M)))
  both = served.score_lists([first, second])
  assert both.shape == (2, 5)
  for request, scores in zip((first, second), both):
    np.testing.assert_allclose(
        scores, served.score(serving_requests.flatten_request(request)),
        rtol=1e-6, atol=0)
  # Same candidates, other user: the context does reach the scores.
  assert not np.allclose(both[0], both[1])


def test_serving_context_reads_only_item_features_of_the_candidates(served):
  own = serving_requests.context_request(**_request_args())
  # Whole Examples of another user as candidates: their user part is ignored.
  other_user = _request(user_id=9, query_id=2, clicks=_events(500, L))
  mixed = serving_requests.ContextRequest(own.context, other_user)
  np.testing.assert_array_equal(served.score_lists([mixed]),
                                served.score_lists([own]))
  # split_request of a flattened request is the same request again.
  split = serving_requests.split_request(serving_requests.flatten_request(own))
  np.testing.assert_array_equal(served.score_lists([split]),
                                served.score_lists([own]))


def test_serving_context_refuses_lists_without_their_context(served):
  request = serving_requests.context_request(**_request_args())
  with pytest.raises(tf.errors.InvalidArgumentError, match="one context per list"):
    served.loaded.signatures["serving_context"](
        context=tf.constant([request.context]),
        examples=tf.constant([request.examples, request.examples]))


def test_export_refuses_warmup_examples_the_model_cannot_parse(served, tmp_path):
  # Three categories per item for a model trained with C = 2.
  bad = serving_requests.search_request(num_cats=3, item_ids=[1], item_cats=[[1, 2, 3]])
  base = str(tmp_path / "serving")
  with pytest.raises(ValueError, match="warm-up examples are not valid"):
    export.export_saved_model(served.model, served.schema, served.lengths, base,
                              warmup_examples=bad)
  assert os.listdir(base) == []  # no version and no temporary folder left


def test_search_request_shares_the_user_part_and_varies_the_items():
  examples = serving_requests.search_request(
      num_cats=2, item_ids=[7, 9], item_cats=[[1], [2, 3]],
      dense={"price": [1.5, 2.5]}, categorical={"position": [1, 2]},
      user_id=4, time=50, query_id=6, query_cats=[3],
      clicks=[Event(7, 10, [1]), Event(8, 20, [2, 3])], queries=[Event(6, 30)])
  parsed = [tf.train.Example.FromString(e).features.feature for e in examples]

  def values(f, key):
    return list(getattr(f[key], f[key].WhichOneof("kind")).value)

  for f, item, cats, price, position in zip(parsed, [7, 9], [[1, 0], [2, 3]],
                                            [1.5, 2.5], [1, 2]):
    assert values(f, "label") == [0]
    assert values(f, "item_id") == [item]
    assert values(f, "item_cats") == cats
    assert values(f, "dense/price") == [price]
    assert values(f, "cat/position") == [position]
    assert values(f, "user_id") == [4] and values(f, "time") == [50]
    assert values(f, "query_id") == [6] and values(f, "query_cats") == [3, 0]
    assert values(f, "click_ids") == [7, 8]
    assert values(f, "click_cats") == [1, 0, 2, 3]
    assert values(f, "query_hist_ids") == [6]
    assert "seed_ids" not in f  # seeds=None: the request has no seeds sequence


def test_context_request_sends_the_context_once_and_the_items_per_candidate():
  args = dict(num_cats=2, item_ids=[7, 9], item_cats=[[1], [2, 3]],
              dense={"price": [1.5, 2.5]}, categorical={"position": [1, 2]},
              user_id=4, time=50, query_id=6, query_cats=[3],
              clicks=[Event(7, 10, [1]), Event(8, 20, [2, 3])],
              queries=[Event(6, 30)])
  request = serving_requests.context_request(**args)
  context = tf.train.Example.FromString(request.context).features.feature
  assert sorted(context) == sorted([
      "label", "user_id", "time", "query_id", "query_cats", "click_ids",
      "click_times", "click_cats", "query_hist_ids", "query_hist_times",
      "query_hist_cats"])
  assert context["user_id"].int64_list.value == [4]
  assert context["click_cats"].int64_list.value == [1, 0, 2, 3]
  assert len(request.examples) == 2
  for serialized, item, cats in zip(request.examples, [7, 9], [[1, 0], [2, 3]]):
    f = tf.train.Example.FromString(serialized).features.feature
    assert sorted(f) == ["cat/position", "dense/price", "item_cats", "item_id"]
    assert f["item_id"].int64_list.value == [item]
    assert f["item_cats"].int64_list.value == cats
  # The histories are sent once: the request is smaller than the flattened one.
  flat = serving_requests.search_request(**args)
  assert [tf.train.Example.FromString(e) for e in flat] == [
      tf.train.Example.FromString(e)
      for e in serving_requests.flatten_request(request)]
  sent = len(request.context) + sum(len(e) for e in request.examples)
  assert sent < sum(len(e) for e in flat)
  split = serving_requests.split_request(flat)
  assert tf.train.Example.FromString(split.context) == tf.train.Example.FromString(
      request.context)
  assert [tf.train.Example.FromString(e) for e in split.examples] == [
      tf.train.Example.FromString(e) for e in request.examples]


def test_search_request_names_what_is_wrong():
  with pytest.raises(ValueError, match=r"dense/price has 1 values but there are 2"):
    serving_requests.search_request(num_cats=1, item_ids=[1, 2],
                                    dense={"price": [1.0]})
  with pytest.raises(ValueError, match=r"item_cats has 3 values"):
    serving_requests.search_request(num_cats=1, item_ids=[1, 2],
                                    item_cats=[[1], [1], [1]])
  with pytest.raises(ValueError, match=r"candidate 1 \(item_id 2\).*2 categories"):
    serving_requests.search_request(num_cats=1, item_ids=[1, 2],
                                    item_cats=[[1], [1, 2]])
  with pytest.raises(ValueError, match="at least one candidate"):
    serving_requests.search_request(num_cats=1, item_ids=[])


def test_warmup_requests_take_examples_cyclically_and_respect_the_limit(tmp_path):
  logs = serving_requests.warmup_requests([b"a", b"b", b"c"], num_requests=3,
                                          examples_per_request=2)
  path = serving_requests.write_warmup_file(str(tmp_path / "x" / "warm"), logs)
  read = serving_requests.read_warmup_file(path)
  assert [serving_requests.request_examples(log) for log in read] == [
      [b"a", b"b"], [b"c", b"a"], [b"b", b"c"]]
  default = serving_requests.warmup_requests([b"a", b"b"], num_requests=1)
  assert serving_requests.request_examples(
      serving_requests.read_warmup_file(serving_requests.write_warmup_file(
          str(tmp_path / "warm2"), default))[0]) == [b"a", b"b"]
  with pytest.raises(ValueError, match="1 to 1000"):
    serving_requests.warmup_requests([b"a"], num_requests=1001)
  with pytest.raises(ValueError, match="at most 1000"):
    serving_requests.write_warmup_file(str(tmp_path / "w3"), [b""] * 1001)


def test_prune_versions_keeps_the_largest_numbers_and_other_names(tmp_path):
  for name in ("1", "2", "10", "11", "notes", ".tmp-12"):
    os.makedirs(tmp_path / name / "variables")
  removed = export.prune_versions(str(tmp_path), keep=2)
  # Numeric order, not string order: "10" and "11" are newer than "2".
  assert removed == [str(tmp_path / n) for n in ("1", "2", ".tmp-12")]
  assert sorted(os.listdir(tmp_path)) == ["10", "11", "notes"]
  with pytest.raises(ValueError, match="keep at least one"):
    export.prune_versions(str(tmp_path), keep=0)


def test_publish_never_replaces_a_version(tmp_path, monkeypatch):
  def staged():
    tmp = tmp_path / ".tmp-next-x"
    os.makedirs(tmp / "variables")
    return str(tmp)

  publish = export._publish  # pylint: disable=protected-access
  os.makedirs(tmp_path / "5" / "variables")  # a finished version
  # Another export took 5 after next_version chose it: the rename fails and
  # the export takes the next free number instead.
  choices = iter([5, 6])
  monkeypatch.setattr(export, "next_version", lambda _: next(choices))
  assert publish(staged(), str(tmp_path), None) == str(tmp_path / "6")
  with pytest.raises(FileExistsError, match="5 already exists"):
    publish(staged(), str(tmp_path), 5)
  assert os.listdir(tmp_path / "5") == ["variables"]  # version 5 untouched
