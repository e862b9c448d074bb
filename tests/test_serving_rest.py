"""TF Serving's REST and gRPC requests, decoded the way TF Serving decodes them
and scored by the exported signatures in-process (there is no server here).

`_tensors_like_tf_serving` follows TF Serving's JSON rules
(tensorflow_serving/util/json_tensor.cc, FillPredictRequestFromJson): a body
has ``instances`` (row format) or ``inputs`` (columnar), not both; rows are
bare values only when the signature has one input, else objects whose keys are
exactly the input names, every row of one shape, stacked along a new first
dimension; ``{"b64": ...}`` is a base64 string.
"""

import base64
import importlib.util
import json
import os
import re

import numpy as np
import pytest

from data_pipeline.schema import Event
from data_pipeline.tf_env import tf
from egin_tf.serve import export
from egin_tf.serve import requests as serving_requests
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib
from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-bad-import-order

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1_700_000_000


def _readme_request() -> serving_requests.ContextRequest:
  """The request of the README's "Serving with TF Serving" (keep them equal)."""
  return serving_requests.context_request(
      num_cats=2, item_ids=[11, 18], item_cats=[[12, 51], [19, 51]],
      user_id=3, time=1_700_000_000, query_id=8, query_cats=[2, 51],
      clicks=[Event(100, 1_699_999_000, [1])])


def _request() -> serving_requests.ContextRequest:
  return serving_requests.context_request(
      num_cats=2, item_ids=[11 + 7 * i for i in range(6)],
      item_cats=[[1 + i, 51] for i in range(6)],
      dense={"price": [10.0 + i for i in range(6)]},
      categorical={"position": list(range(1, 7))}, user_id=3, time=T0,
      query_id=8, query_cats=[2, 51],
      clicks=[Event(100 + j, T0 - 10 + j, [1]) for j in range(4)],
      queries=[Event(20 + j, T0 - 5 + j, [2]) for j in range(2)])


@pytest.fixture(scope="module")
def loaded(sim_data, tmp_path_factory):
  data, _ = sim_data
  root = tmp_path_factory.mktemp("serving_rest")
  config = train_config.TrainConfig(model="egin", batch_size=32, steps=2, log_every=2,
                                    max_clicks=6, max_queries=4, max_seeds=3,
                                    model_kwargs={"num_negatives": 8,
                                                  "queue_capacity": 64})
  offline.train(os.path.join(data, "train-*"), str(root / "model"), config,
                verbose=0, print_fn=lambda _: None)
  model, _, schema, lengths = model_dir_lib.load_model(str(root / "model"),
                                                       train_config.TrainConfig)
  return tf.saved_model.load(export.export_saved_model(
      model, schema, lengths, str(root / "serving")))


def _b64_decoded(value):
  if isinstance(value, dict):
    assert set(value) == {"b64"}, value
    return base64.b64decode(value["b64"])
  assert isinstance(value, list), value
  return [_b64_decoded(v) for v in value]


def _is_named_row(value) -> bool:
  return isinstance(value, dict) and set(value) != {"b64"}


def _named_from_rows(rows, names):
  if not _is_named_row(rows[0]):
    assert len(names) == 1, "a plain instances list needs a one-input signature"
    return {names[0]: [_b64_decoded(r) for r in rows]}
  for row in rows:
    assert _is_named_row(row) and sorted(row) == names, (sorted(row), names)
  return {name: [_b64_decoded(row[name]) for row in rows] for name in names}


def _tensors_like_tf_serving(body: str, loaded_model):
  """(signature name, its keyword inputs) of a REST :predict body."""
  doc = json.loads(body)
  signature = doc.get("signature_name", "serving_default")
  names = sorted(loaded_model.signatures[signature].structured_input_signature[1])
  assert ("instances" in doc) != ("inputs" in doc)
  if "instances" in doc:
    assert doc["instances"], "no values in instances"
    named = _named_from_rows(doc["instances"], names)
  elif _is_named_row(doc["inputs"]):
    assert sorted(doc["inputs"]) == names
    named = {name: _b64_decoded(doc["inputs"][name]) for name in names}
  else:
    assert len(names) == 1
    named = {names[0]: _b64_decoded(doc["inputs"])}
  # tf.constant refuses ragged nesting: rows of unequal shapes fail here too.
  return signature, {k: tf.constant(v, tf.string) for k, v in named.items()}


def _direct_scores(loaded_model, request: serving_requests.ContextRequest):
  """serving_default's scores of the flattened request, [N]."""
  out = loaded_model.signatures["serving_default"](
      examples=tf.constant(serving_requests.flatten_request(request)))
  return out["pctr"].numpy()


@pytest.mark.parametrize("columnar", [False, True], ids=["instances", "inputs"])
@pytest.mark.parametrize("form", ["serving_default", "serving_context"])
def test_rest_body_scores_like_the_signature_called_directly(loaded, form,
                                                             columnar):
  request = _request()
  sent = (request if form == "serving_context"
          else serving_requests.flatten_request(request))
  body = serving_requests.rest_predict_body(sent, columnar=columnar)
  signature, inputs = _tensors_like_tf_serving(body, loaded)
  assert signature == form
  scores = loaded.signatures[signature](**inputs)["pctr"].numpy()
  expected = _direct_scores(loaded, request)
  assert len(set(expected.tolist())) > 1
  if form == "serving_context":
    assert {k: v.shape for k, v in inputs.items()} == {
        "context": (1,), "examples": (1, 6)}
    assert scores.shape == (1, 6)
    scores = scores[0]
  np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=0)
  # What TF Serving answers: "predictions" (row) or "outputs" (columnar).
  key = "outputs" if columnar else "predictions"
  answer = json.dumps({key: loaded.signatures[signature](**inputs)["pctr"]
                       .numpy().tolist()})
  np.testing.assert_allclose(serving_requests.rest_scores(answer).reshape(-1),
                             expected, rtol=1e-6, atol=0)


def test_rest_body_of_the_context_form_has_one_instance_per_list():
  request = _request()
  doc = json.loads(serving_requests.rest_predict_body(request))
  assert doc["signature_name"] == "serving_context"
  (instance,) = doc["instances"]
  assert base64.b64decode(instance["context"]["b64"]) == request.context
  assert [base64.b64decode(e["b64"]) for e in instance["examples"]] == (
      request.examples)
  flat = json.loads(serving_requests.rest_predict_body(
      serving_requests.flatten_request(request)))
  assert [base64.b64decode(e["b64"]) for e in flat["instances"]] == (
      serving_requests.flatten_request(request))


def test_rest_scores_reads_named_outputs_and_names_errors():
  assert serving_requests.rest_scores(
      '{"outputs": {"pctr": [[0.25, 0.5]]}}').tolist() == [[0.25, 0.5]]
  with pytest.raises(ValueError, match="answered an error: bad input"):
    serving_requests.rest_scores('{"error": "bad input"}')


@pytest.mark.parametrize("form", ["serving_default", "serving_context"])
def test_grpc_predict_request_scores_like_the_signature(loaded, form):
  request = _request()
  sent = (request if form == "serving_context"
          else serving_requests.flatten_request(request))
  grpc_request = serving_requests.predict_request(sent, "egin", version=7)
  assert grpc_request.model_spec.name == "egin"
  assert grpc_request.model_spec.version.value == 7
  assert grpc_request.model_spec.signature_name == form
  # What the server does with the request's TensorProtos.
  inputs = {name: tf.constant(tf.make_ndarray(proto))
            for name, proto in grpc_request.inputs.items()}
  pctr = loaded.signatures[form](**inputs)["pctr"]
  response = predict_pb2.PredictResponse()
  response.outputs["pctr"].CopyFrom(tf.make_tensor_proto(pctr))
  np.testing.assert_allclose(
      serving_requests.grpc_scores(response).reshape(-1),
      _direct_scores(loaded, request), rtol=1e-6, atol=0)


def _readme_section() -> str:
  with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read()
  return text.split("## Serving with TF Serving", 1)[1].split("\n## ", 1)[0]


def test_readme_rest_body_is_the_request_it_shows_and_serves(loaded):
  blocks = re.findall(r"```json\n(.*?)```", _readme_section(), re.S)
  assert len(blocks) == 1, "the README section shows one JSON body"
  body = json.loads(blocks[0])
  assert body == json.loads(serving_requests.rest_predict_body(_readme_request()))
  signature, inputs = _tensors_like_tf_serving(blocks[0], loaded)
  scores = loaded.signatures[signature](**inputs)["pctr"].numpy()
  np.testing.assert_allclose(scores[0], _direct_scores(loaded, _readme_request()),
                             rtol=1e-6, atol=0)


def _serving_client():
  path = os.path.join(REPO_ROOT, "examples", "serving_client.py")
  spec = importlib.util.spec_from_file_location("serving_client", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("signature", ["serving_default", "serving_context"])
def test_example_client_builds_requests_the_server_scores_alike(
        loaded, sim_data, signature):
  client = _serving_client()
  data, _ = sim_data
  request = client.request_from_data(os.path.join(data, "test-*"), 8)
  assert len(request.examples) == 8
  grpc_request, body = client.build_requests(request, signature, "egin")
  expected = _direct_scores(loaded, request)
  inputs = {name: tf.constant(tf.make_ndarray(proto))
            for name, proto in grpc_request.inputs.items()}
  from_grpc = loaded.signatures[signature](**inputs)["pctr"].numpy()
  rest_signature, rest_inputs = _tensors_like_tf_serving(body, loaded)
  assert rest_signature == signature
  from_rest = loaded.signatures[signature](**rest_inputs)["pctr"].numpy()
  for scores in (from_grpc, from_rest):
    np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-6, atol=0)
