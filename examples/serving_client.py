"""A TF Serving client for an exported egin-tf model: gRPC and REST, both signatures.

Usage (TF Serving running as in the README's "Serving with TF Serving"):
  python examples/serving_client.py --data 'data/sim/test-*' --candidates 100 \
      --grpc localhost:8500 --rest http://localhost:8501 --model_name egin \
      [--signature serving_context|serving_default] [--print_body]

The request is one user and --candidates candidate items taken from impression
TFRecords (--data): the first impression gives the user, time, query and
histories (the context), the first --candidates impressions their items.
`egin_tf.serve.requests` builds it in either form:

* ``serving_context`` (default): the context Example once plus one small
  Example per candidate, as TF-Ranking's context + examples;
* ``serving_default``: one full Example per candidate (the histories N times).

It is sent through gRPC (``PredictionService.Predict`` of tensorflow-serving-api)
to --grpc and/or as the JSON body of REST ``:predict`` to --rest, and the
candidates are printed best first. --print_body prints the REST body instead of
sending anything (no server needed).
"""

import time
import urllib.request
from typing import List, Tuple

from absl import app
from absl import flags

from data_pipeline import reader
from data_pipeline.tf_env import tf
from egin_tf.serve import requests as serving_requests
# After the Keras 2 guard above: these import TensorFlow.
import grpc  # pylint: disable=g-bad-import-order
import numpy as np
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The script's flags; defined only when run as a script, so importing this
  module (tests, your own code) never collides with other absl flags."""
  flags.DEFINE_string("data", None, "Impression TFRecord glob the request comes "
                      "from (the model's schema, e.g. its test split).")
  flags.DEFINE_integer("candidates", 100, "Candidate items in the request (N).")
  flags.DEFINE_enum("signature", serving_requests.CONTEXT_SIGNATURE,
                    [serving_requests.CONTEXT_SIGNATURE,
                     serving_requests.SIGNATURE], "Signature to call.")
  flags.DEFINE_string("model_name", "egin", "Model name in models.config.")
  flags.DEFINE_integer("version", None, "Version to call; default: the newest "
                       "the server serves.")
  flags.DEFINE_string("grpc", None, "host:port of TF Serving's gRPC API.")
  flags.DEFINE_string("rest", None, "http://host:port of TF Serving's REST API.")
  flags.DEFINE_float("timeout", 5.0, "Seconds per request.")
  flags.DEFINE_bool("print_body", False, "Print the REST JSON body and stop.")
  flags.mark_flag_as_required("data")


def request_from_data(pattern: str,
                      num_candidates: int) -> serving_requests.ContextRequest:
  """The first impression's context with the first num_candidates' items."""
  files = reader.match_files(pattern)
  records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(num_candidates)]
  if len(records) < num_candidates:
    raise ValueError(f"{pattern}: {len(records)} impressions, fewer than "
                     f"--candidates={num_candidates}")
  return serving_requests.split_request(records)


def build_requests(request: serving_requests.ContextRequest, signature: str,
                   model_name: str, version=None
                   ) -> Tuple[predict_pb2.PredictRequest, str]:
  """The gRPC PredictRequest and the REST body of a request, for a signature."""
  form = (request if signature == serving_requests.CONTEXT_SIGNATURE
          else serving_requests.flatten_request(request))
  return (serving_requests.predict_request(form, model_name, version),
          serving_requests.rest_predict_body(form))


def predict_grpc(target: str, request: predict_pb2.PredictRequest,
                 timeout: float) -> np.ndarray:
  with grpc.insecure_channel(target) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return serving_requests.grpc_scores(stub.Predict(request, timeout=timeout))


def predict_rest(base_url: str, model_name: str, version, body: str,
                 timeout: float) -> np.ndarray:
  path = f"/v1/models/{model_name}" + (
      f"/versions/{version}" if version is not None else "") + ":predict"
  http = urllib.request.Request(base_url.rstrip("/") + path,
                                data=body.encode("utf-8"), method="POST",
                                headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(http, timeout=timeout) as answer:
    return serving_requests.rest_scores(answer.read().decode("utf-8"))


def _print_ranking(api: str, scores: np.ndarray, item_ids: List[int],
                   seconds: float) -> None:
  scores = scores.reshape(-1)  # serving_context answers [1, N]
  best = np.argsort(-scores)[:5]
  print(f"{api}: {len(scores)} scores in {1000 * seconds:.1f} ms; best: " +
        ", ".join(f"item {item_ids[i]} ({scores[i]:.4f})" for i in best))


def main(argv):
  del argv
  request = request_from_data(FLAGS.data, FLAGS.candidates)
  grpc_request, body = build_requests(request, FLAGS.signature, FLAGS.model_name,
                                      FLAGS.version)
  if FLAGS.print_body:
    print(body)
    return
  if not (FLAGS.grpc or FLAGS.rest):
    raise app.UsageError("give --grpc and/or --rest (or --print_body)")
  item_ids = [tf.train.Example.FromString(e).features.feature["item_id"]
              .int64_list.value[0] for e in request.examples]
  print(f"{FLAGS.signature}: {len(item_ids)} candidates, "
        f"{grpc_request.ByteSize():,} bytes (gRPC), {len(body):,} bytes (REST)")
  if FLAGS.grpc:
    start = time.perf_counter()
    scores = predict_grpc(FLAGS.grpc, grpc_request, FLAGS.timeout)
    _print_ranking("gRPC", scores, item_ids, time.perf_counter() - start)
  if FLAGS.rest:
    start = time.perf_counter()
    scores = predict_rest(FLAGS.rest, FLAGS.model_name, FLAGS.version, body,
                          FLAGS.timeout)
    _print_ranking("REST", scores, item_ids, time.perf_counter() - start)


if __name__ == "__main__":
  define_flags()
  app.run(main)
