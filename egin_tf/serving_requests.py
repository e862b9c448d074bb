"""Requests to a served model: search requests and TF Serving warm-up records.

A search request scores N candidate items for one user and one query. Our
``serving_default`` signature takes one serialized ``tf.train.Example`` per
candidate (schema of `data_pipeline.schema`), so a request is N examples that
share the user, time, query and histories and differ in the item fields
(``item_id``, ``item_cats``, ``dense/*``, ``cat/*``):

  examples = search_request(num_cats=2, item_ids=[11, 12], item_cats=[[3], [4]],
                            user_id=7, time=1_700_000_000, query_id=5,
                            query_cats=[3], clicks=[Event(9, 1_699_999_000, [3])])
  pctr = loaded.signatures["serving_default"](examples=tf.constant(examples))

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` of a version
folder (a TFRecord file of ``PredictionLog`` protos, at most
`MAX_WARMUP_RECORDS` read) before it serves the version, so the first real
requests do not pay for graph optimization and memory allocation;
`warmup_requests` builds those records and `write_warmup_file` writes them.
"""

import dataclasses
import os
from typing import List, Mapping, Optional, Sequence

from data_pipeline import reader
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
EXAMPLES_INPUT = "examples"

_ITEM_KEYS = (schema_lib.ITEM_ID, schema_lib.ITEM_CATS)


def _check_column(name: str, values: Sequence, num_candidates: int) -> None:
  if len(values) != num_candidates:
    raise ValueError(f"{name} has {len(values)} values but there are "
                     f"{num_candidates} candidates (item_ids); give one per "
                     "candidate")


def search_request(num_cats: int,
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
                   seeds: Optional[Sequence[schema_lib.Event]] = None) -> List[bytes]:
  """One search request as serialized ``tf.train.Example``s, one per candidate.

  Every example carries label 0 and the same user, time, query and histories
  (oldest first; the model keeps the most recent L / M / S entries). Features
  left out read as 0 (unknown / padding) in the served model.

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
    N serialized examples, in candidate order: the ``examples`` input [N] of
    the ``serving_default`` signature.

  Raises:
    ValueError: no candidates, a per-candidate column whose length is not N, or
      more than C categories somewhere.
  """
  n = len(item_ids)
  if n == 0:
    raise ValueError("a search request needs at least one candidate item id")
  item_cats = [()] * n if item_cats is None else item_cats
  dense = dense or {}
  categorical = categorical or {}
  _check_column("item_cats", item_cats, n)
  for name, values in dense.items():
    _check_column(schema_lib.DENSE_PREFIX + name, values, n)
  for name, values in categorical.items():
    _check_column(schema_lib.CAT_PREFIX + name, values, n)

  def candidate(i: int) -> schema_lib.Impression:
    return schema_lib.Impression(
        label=0, user_id=user_id, time=time, item_id=int(item_ids[i]),
        item_cats=item_cats[i],
        dense={name: float(v[i]) for name, v in dense.items()},
        categorical={name: int(v[i]) for name, v in categorical.items()})

  # The shared part (histories dominate the size) is encoded once; each
  # candidate copies it and overwrites only its own item features.
  shared = schema_lib.to_example(dataclasses.replace(
      candidate(0), item_cats=(), query_id=query_id, query_cats=query_cats,
      clicks=clicks, queries=queries, seeds=seeds), num_cats)
  item_keys = _ITEM_KEYS + tuple(schema_lib.DENSE_PREFIX + k for k in dense) + tuple(
      schema_lib.CAT_PREFIX + k for k in categorical)
  out = []
  for i in range(n):
    try:
      own = schema_lib.to_example(candidate(i), num_cats).features.feature
    except ValueError as e:
      raise ValueError(f"candidate {i} (item_id {item_ids[i]}): {e}") from None
    example = tf.train.Example()
    example.CopyFrom(shared)
    for key in item_keys:
      example.features.feature[key].CopyFrom(own[key])
    out.append(example.SerializeToString())
  return out


def warmup_requests(serialized_examples: Sequence[bytes], num_requests: int,
                    examples_per_request: Optional[int] = None,
                    model_name: str = "") -> List[bytes]:
  """Serialized ``PredictionLog``s of Predict requests to ``serving_default``.

  Request r holds ``examples_per_request`` examples (default: all of them),
  taken cyclically from ``serialized_examples`` starting at example
  ``r * examples_per_request``, as the string tensor input ``examples`` [n].

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
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE))
    request.inputs[EXAMPLES_INPUT].CopyFrom(
        tf.make_tensor_proto(batch, dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
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
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
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


def examples_from_files(file_pattern: str, num_examples: int) -> List[bytes]:
  """The first ``num_examples`` serialized records of impression TFRecords.

  Logged impressions are valid requests as they are (the served model ignores
  the label), so a slice of the training data makes realistic warm-up examples.
  """
  if num_examples < 1:
    raise ValueError(f"num_examples={num_examples} must be at least 1")
  files = reader.match_files(file_pattern)
  return [r.numpy() for r in tf.data.TFRecordDataset(files).take(num_examples)]
