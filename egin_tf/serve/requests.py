"""Requests to a served model: search requests, their gRPC / REST encodings and
TF Serving warm-up records.

A search request scores N candidate items for one user and one query. It has
two forms, one per signature of `egin_tf.serve.export`:

* ``serving_default``: one serialized ``tf.train.Example`` per candidate
  (schema of `data_pipeline.schema`), N examples that share the user, time,
  query and histories and differ in the item fields (``item_id``,
  ``item_cats``, ``dense/*``, ``cat/*``): `search_request`;
* ``serving_context``: like TF-Ranking's ``ExampleListWithContext``, one
  context Example (user, time, query, histories) and N candidate Examples of
  the item fields only: `context_request` (a `ContextRequest`). The histories
  dominate a request's size, so this form is about N times smaller.

  request = context_request(num_cats=2, item_ids=[11, 12], item_cats=[[3], [4]],
                            user_id=7, time=1_700_000_000, query_id=5,
                            query_cats=[3], clicks=[Event(9, 1_699_999_000, [3])])
  pctr = loaded.signatures["serving_context"](
      context=tf.constant([request.context]),
      examples=tf.constant([request.examples]))["pctr"][0]
  same = loaded.signatures["serving_default"](
      examples=tf.constant(flatten_request(request)))["pctr"]

`predict_request` wraps either form in a gRPC ``PredictRequest``,
`rest_predict_body` in the JSON body of TF Serving's REST ``:predict``;
`grpc_scores` and `rest_scores` read the answers.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` of a version
folder (a TFRecord file of ``PredictionLog`` protos, at most
`MAX_WARMUP_RECORDS` read) before it serves the version, so the first real
requests do not pay for graph optimization and memory allocation;
`warmup_requests` builds those records and `write_warmup_file` writes them.
"""

import base64
import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
# The serving protos import tensorflow: only after the Keras 2 guard above.
from tensorflow_serving.apis import model_pb2  # pylint: disable=g-bad-import-order
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

WARMUP_FILE = "tf_serving_warmup_requests"
ASSETS_EXTRA = "assets.extra"
# TF Serving stops reading the warm-up file after this many records.
MAX_WARMUP_RECORDS = 1000
SIGNATURE = "serving_default"
CONTEXT_SIGNATURE = "serving_context"
EXAMPLES_INPUT = "examples"
CONTEXT_INPUT = "context"
OUTPUT = "pctr"


def is_candidate_feature(key: str) -> bool:
  """Whether a feature describes the candidate (item) rather than the context.

  The candidate's: ``item_id``, ``item_cats``, ``dense/*`` and ``cat/*``; the
  rest (user, time, query, histories, label) is the context that every
  candidate of a request shares.
  """
  return key in (schema_lib.ITEM_ID, schema_lib.ITEM_CATS) or key.startswith(
      (schema_lib.DENSE_PREFIX, schema_lib.CAT_PREFIX))


@dataclasses.dataclass(frozen=True)
class ContextRequest:
  """A search request in the form of the ``serving_context`` signature.

  Like TF-Ranking's ``ExampleListWithContext``: the context (user, time,
  query, histories) once, and per candidate only its item features.

  Attributes:
    context: one serialized ``tf.train.Example`` of the context features.
    examples: N serialized ``tf.train.Example``s of the candidate features.
  """
  context: bytes
  examples: List[bytes]


def _check_column(name: str, values: Sequence, num_candidates: int) -> None:
  if len(values) != num_candidates:
    raise ValueError(f"{name} has {len(values)} values but there are "
                     f"{num_candidates} candidates (item_ids); give one per "
                     "candidate")


def _serialized_part(example: tf.train.Example, keep) -> bytes:
  """example with only the features for which keep(key) holds, serialized."""
  out = tf.train.Example()
  for key, feature in example.features.feature.items():
    if keep(key):
      out.features.feature[key].CopyFrom(feature)
  # Deterministic (features in key order): the same request is the same bytes
  # in every process, e.g. to cache or compare them.
  return out.SerializeToString(deterministic=True)


def _is_context_feature(key: str) -> bool:
  return not is_candidate_feature(key)


def _candidate_examples(num_cats: int, item_ids: Sequence[int],
                        item_cats: Optional[Sequence[Sequence[int]]],
                        dense: Mapping[str, Sequence[float]],
                        categorical: Mapping[str, Sequence[int]]) -> List[bytes]:
  """Per candidate, an Example of only its item features."""
  n = len(item_ids)
  if n == 0:
    raise ValueError("a search request needs at least one candidate item id")
  item_cats = [()] * n if item_cats is None else item_cats
  _check_column("item_cats", item_cats, n)
  for name, values in dense.items():
    _check_column(schema_lib.DENSE_PREFIX + name, values, n)
  for name, values in categorical.items():
    _check_column(schema_lib.CAT_PREFIX + name, values, n)
  out = []
  for i in range(n):
    try:
      example = schema_lib.to_example(schema_lib.Impression(
          label=0, user_id=0, time=0, item_id=int(item_ids[i]),
          item_cats=item_cats[i],
          dense={name: float(v[i]) for name, v in dense.items()},
          categorical={name: int(v[i]) for name, v in categorical.items()}),
                                      num_cats)
    except ValueError as e:
      raise ValueError(f"candidate {i} (item_id {item_ids[i]}): {e}") from None
    out.append(_serialized_part(example, is_candidate_feature))
  return out


def context_request(num_cats: int,
                    item_ids: Sequence[int],
                    item_cats: Optional[Sequence[Sequence[int]]] = None,
                    dense: Optional[Mapping[str, Sequence[float]]] = None,
                    categorical: Optional[Mapping[str, Sequence[int]]] = None,
                    user_id: int = 0,
                    time: int = 0,
                    query_id: int = 0,
                    query_cats: Sequence[int] = (),
                    clicks: Sequence[schema_lib.Event] = (),
                    queries: Sequence[schema_lib.Event] = (),
                    seeds: Optional[Sequence[schema_lib.Event]] = None
                    ) -> ContextRequest:
  """One search request: its context once and its N candidates' item features.

  The context carries label 0 and the user, time, query and histories (oldest
  first; the model keeps the most recent L / M / S entries). Features left out
  read as 0 (unknown / padding) in the served model.

  Args:
    num_cats: C of the model's data schema (``schema.json``).
    item_ids: the N candidate item ids.
    item_cats: N lists of at most C categories; None: no categories.
    dense: feature name -> N values of ``dense/<name>``; a name left out reads
      as 0.0.
    categorical: feature name -> N values of ``cat/<name>``; a name left out
      reads as 0 (missing).
    user_id, time, query_id, query_cats, clicks, queries, seeds: as in
      `schema.Impression`; ``query_id`` 0 means no query.

  Returns:
    The ``context`` and ``examples`` inputs of the ``serving_context``
    signature (one list); `flatten_request` makes the ``serving_default`` one.

  Raises:
    ValueError: no candidates, a per-candidate column whose length is not N, or
      more than C categories somewhere.
  """
  examples = _candidate_examples(num_cats, item_ids, item_cats, dense or {},
                                 categorical or {})
  context = schema_lib.to_example(schema_lib.Impression(
      label=0, user_id=user_id, time=time, item_id=0, query_id=query_id,
      query_cats=query_cats, clicks=clicks, queries=queries, seeds=seeds),
                                  num_cats)
  return ContextRequest(_serialized_part(context, _is_context_feature), examples)


def flatten_request(request: ContextRequest) -> List[bytes]:
  """The ``serving_default`` form: per candidate, its features plus the context.

  Their features are disjoint, so merging the two Examples loses nothing.
  """
  context = tf.train.Example.FromString(request.context)
  out = []
  for candidate in request.examples:
    example = tf.train.Example()
    example.CopyFrom(context)
    example.MergeFromString(candidate)
    out.append(example.SerializeToString(deterministic=True))
  return out


def split_request(serialized_examples: Sequence[bytes]) -> ContextRequest:
  """The ``serving_context`` form of flattened examples (`flatten_request`'s
  inverse).

  The context is taken from the first example: a request's examples share it
  (those of `search_request` do; logged impressions of several users do not,
  and then all candidates get the first one's user and histories).
  """
  if not serialized_examples:
    raise ValueError("a request needs at least one serialized example")
  parsed = [tf.train.Example.FromString(e) for e in serialized_examples]
  return ContextRequest(_serialized_part(parsed[0], _is_context_feature), [
      _serialized_part(e, is_candidate_feature) for e in parsed])


def search_request(*args, **kwargs) -> List[bytes]:
  """One search request as serialized ``tf.train.Example``s, one per candidate.

  Takes the arguments of `context_request`; every example carries label 0,
  its candidate's item features and the same user, time, query and histories
  (so the request repeats the histories N times; `context_request` sends them
  once, to ``serving_context``).

  Returns:
    N serialized examples, in candidate order: the ``examples`` input [N] of
    the ``serving_default`` signature.

  Raises:
    ValueError: as `context_request`.
  """
  return flatten_request(context_request(*args, **kwargs))


# Either form of a request: serving_default's examples or a ContextRequest.
Request = Union[Sequence[bytes], ContextRequest]


def signature_inputs(request: Request) -> Tuple[str, Dict[str, list]]:
  """The signature a request is for and its inputs as nested lists of bytes.

  ``serving_default``: ``examples`` [N]; ``serving_context``: ``context`` [1]
  and ``examples`` [1, N] (one list: the batch dimension is the list, as in
  TF-Ranking, so TF Serving can batch requests of equal N).
  """
  if isinstance(request, ContextRequest):
    return CONTEXT_SIGNATURE, {CONTEXT_INPUT: [request.context],
                               EXAMPLES_INPUT: [list(request.examples)]}
  if not request:
    raise ValueError("a request needs at least one serialized example")
  return SIGNATURE, {EXAMPLES_INPUT: list(request)}


def predict_request(request: Request, model_name: str = "",
                    version: Optional[int] = None) -> predict_pb2.PredictRequest:
  """A gRPC ``PredictRequest`` of a request, to its signature.

  ``version`` None lets TF Serving choose (the newest it serves).
  """
  signature, inputs = signature_inputs(request)
  out = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
      name=model_name, signature_name=signature))
  if version is not None:
    out.model_spec.version.value = version
  for name, values in inputs.items():
    out.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
  return out


def _b64(values):
  """Nested lists of bytes with each bytes as TF Serving's {"b64": ...}."""
  if isinstance(values, bytes):
    return {"b64": base64.b64encode(values).decode("ascii")}
  return [_b64(v) for v in values]


def rest_predict_body(request: Request, columnar: bool = False) -> str:
  """The JSON body of TF Serving's REST ``POST /v1/models/NAME:predict``.

  String tensors travel as base64 (``{"b64": ...}``). The row format
  (``instances``) has one entry per row of the inputs' batch dimension: a
  bare value when the signature has one input (``serving_default``: one per
  candidate), else an object of the named inputs (``serving_context``: one
  ``{"context": ..., "examples": [...]}`` per list). The columnar format
  (``inputs``) names each input's whole tensor.
  """
  signature, inputs = signature_inputs(request)
  body = {"signature_name": signature}
  if columnar:
    body["inputs"] = {name: _b64(values) for name, values in inputs.items()}
  elif len(inputs) == 1:
    body["instances"] = _b64(next(iter(inputs.values())))
  else:
    rows = zip(*inputs.values())
    body["instances"] = [dict(zip(inputs, _b64(list(row)))) for row in rows]
  return json.dumps(body)


def grpc_scores(response: predict_pb2.PredictResponse) -> np.ndarray:
  """pctr of a ``PredictResponse``: [N] (serving_default) or [1, N]."""
  return tf.make_ndarray(response.outputs[OUTPUT])


def rest_scores(response_body: str) -> np.ndarray:
  """pctr of a REST ``:predict`` answer, row (``predictions``) or columnar
  (``outputs``) format; a one-output signature's answer holds no names."""
  answer = json.loads(response_body)
  if "error" in answer:
    raise ValueError(f"TF Serving answered an error: {answer['error']}")
  scores = answer["predictions"] if "predictions" in answer else answer["outputs"]
  if isinstance(scores, dict):
    scores = scores[OUTPUT]
  return np.asarray(scores, np.float32)


def warmup_requests(serialized_examples: Sequence[bytes], num_requests: int,
                    examples_per_request: Optional[int] = None,
                    model_name: str = "", context_form: bool = False) -> List[bytes]:
  """Serialized ``PredictionLog``s of Predict requests to ``serving_default``.

  Request r holds ``examples_per_request`` examples (default: all of them),
  taken cyclically from ``serialized_examples`` starting at example
  ``r * examples_per_request``, as the string tensor input ``examples`` [n].
  With ``context_form`` the requests go to ``serving_context`` instead, as
  `split_request` of those examples (the first one's context).

  Args:
    serialized_examples: serialized ``tf.train.Example``s, e.g. one
      `search_request`.
    num_requests: records to make, 1 to `MAX_WARMUP_RECORDS`.
    examples_per_request: examples in each request.
    model_name: ``model_spec.name`` of the requests; TF Serving ignores it in
      warm-up, so it may stay empty.

  Raises:
    ValueError: no examples, or a count out of range.
  """
  if not serialized_examples:
    raise ValueError("warm-up requests need at least one serialized example")
  if not 1 <= num_requests <= MAX_WARMUP_RECORDS:
    raise ValueError(f"num_requests={num_requests}: TF Serving reads 1 to "
                     f"{MAX_WARMUP_RECORDS} warm-up records")
  size = len(serialized_examples) if examples_per_request is None else (
      examples_per_request)
  if size < 1:
    raise ValueError(f"examples_per_request={size} must be at least 1")
  logs = []
  for r in range(num_requests):
    batch = [serialized_examples[(r * size + j) % len(serialized_examples)]
             for j in range(size)]
    request = split_request(batch) if context_form else batch
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(
            request=predict_request(request, model_name)))
    logs.append(log.SerializeToString())
  return logs


def write_warmup_file(path: str, logs: Sequence[bytes]) -> str:
  """Writes serialized ``PredictionLog``s as TF Serving's warm-up TFRecord file.

  ``path`` is normally ``<version folder>/assets.extra/tf_serving_warmup_requests``;
  missing folders are made. Returns ``path``.

  Raises:
    ValueError: no logs, or more than TF Serving reads.
  """
  if not logs:
    raise ValueError(f"{path}: no warm-up records to write")
  if len(logs) > MAX_WARMUP_RECORDS:
    raise ValueError(f"{path}: {len(logs)} warm-up records, but TF Serving reads "
                     f"at most {MAX_WARMUP_RECORDS}")
  tf.io.gfile.makedirs(os.path.dirname(path) or ".")
  with tf.io.TFRecordWriter(path) as writer:
    for log in logs:
      writer.write(log)
  return path


def read_warmup_file(path: str) -> List[prediction_log_pb2.PredictionLog]:
  """The ``PredictionLog``s of a warm-up file, in order (to inspect or replay)."""
  return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path)]


def request_examples(log: prediction_log_pb2.PredictionLog) -> List[bytes]:
  """The serialized examples of a warm-up record's ``examples`` input."""
  inputs = log.predict_log.request.inputs
  if EXAMPLES_INPUT not in inputs:
    raise ValueError(f"the request has no {EXAMPLES_INPUT!r} input, only "
                     f"{sorted(inputs)}")
  return list(tf.make_ndarray(inputs[EXAMPLES_INPUT]).reshape(-1))


def examples_from_files(files: Sequence[str], num_examples: int) -> List[bytes]:
  """The first ``num_examples`` serialized records of impression TFRecords.

  Logged impressions are valid requests as they are (the served model ignores
  the label), so a slice of the training data makes realistic warm-up examples.
  """
  if num_examples < 1:
    raise ValueError(f"num_examples={num_examples} must be at least 1")
  return [r.numpy() for r in tf.data.TFRecordDataset(list(files)).take(num_examples)]
