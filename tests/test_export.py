"""A trained model exported for TF Serving scores exactly like the in-memory one."""

import os

import numpy as np
import pytest

from data_pipeline.data_split import DataSplit
from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.schema import Event, Impression
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter
from egin_tf.serve import embeddings
from egin_tf.serve import export
from egin_tf.serve import requests as serving_requests
from egin_tf.train import config as train_config
from egin_tf.train import offline
from egin_tf.train import model_dir as model_dir_lib


def _dataset(out, n=96, seed=0):
  rng = np.random.default_rng(seed)
  with DatasetWriter(out, num_cats=2) as w:
    for i in range(n):
      clicks = [Event(int(x), 10 + j, [int(x) % 5 + 1])
                for j, x in enumerate(rng.integers(1, 40, rng.integers(0, 8)))]
      queries = [Event(int(q), 10 + j, [int(q) % 5 + 1])
                 for j, q in enumerate(rng.integers(1, 9, rng.integers(0, 4)))]
      w.write("train", Impression(
          label=int(rng.random() < 0.3), user_id=int(rng.integers(1, 10)),
          time=100, item_id=int(rng.integers(1, 40)), item_cats=[1, 2],
          query_id=int(rng.integers(0, 9)), query_cats=[3], clicks=clicks,
          queries=queries, dense={"price": float(rng.random())},
          categorical={"position": int(rng.integers(1, 5))}))
    w.commit(source="export test")


@pytest.fixture(scope="module", params=["dnn", "egin"])
def trained(request, tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  data = str(root / "data")
  _dataset(data)
  model_dir = str(root / "model")
  kwargs = {"num_negatives": 8, "queue_capacity": 64} if request.param == "egin" else {}
  config = train_config.TrainConfig(model=request.param, batch_size=16, steps=4,
                                    log_every=2, max_clicks=5, max_queries=3,
                                    max_seeds=2, model_kwargs=kwargs)
  offline.train(os.path.join(data, "train-*"), model_dir, config, verbose=0)
  return root, data, model_dir


def test_reloaded_savedmodel_scores_like_the_model(trained):
  root, data, model_dir = trained
  model, config, schema, lengths = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  path = export.export_saved_model(model, schema, lengths, str(root / "serving"))
  assert os.path.basename(path).isdigit()
  assert os.path.exists(os.path.join(path, "saved_model.pb"))
  loaded = tf.saved_model.load(path)
  assert set(loaded.signatures) == {"serving_default", "serving_context",
                                    "predict_padded"}
  # The model's weights are saved, the optimizer's state is not (no use to a server).
  saved = tf.train.list_variables(os.path.join(path, "variables", "variables"))
  saved_values = sum(int(np.prod(shape)) for name, shape in saved
                     if "OBJECT_GRAPH" not in name)
  assert not [name for name, _ in saved if "optimizer" in name]
  assert saved_values == sum(int(np.prod(v.shape)) for v in model.variables)

  files = reader.match_files(os.path.join(data, "train-*"))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
  batch = next(iter(reader.make_dataset(
      os.path.join(data, "train-*"), batch_size=len(records), max_clicks=5,
      max_queries=3, max_seeds=2)))
  expected = model(batch, training=False).numpy()

  # To float precision, not bit for bit: the traced serving graph may fuse ops
  # differently from the eager call (1-ulp differences seen on some CPUs).
  served = loaded.signatures["serving_default"](examples=tf.constant(records))
  np.testing.assert_allclose(served["pctr"].numpy(), expected, rtol=1e-6, atol=0)

  # Every record as its own list of one candidate: B contexts of B users.
  lists = [serving_requests.split_request([r]) for r in records]
  served = loaded.signatures["serving_context"](
      context=tf.constant([r.context for r in lists]),
      examples=tf.constant([r.examples for r in lists]))
  assert served["pctr"].shape == (len(records), 1)
  np.testing.assert_allclose(served["pctr"].numpy()[:, 0], expected, rtol=1e-6,
                             atol=0)

  padded = {k.replace("/", "_"): v for k, v in batch.items() if k != "label"}
  served = loaded.signatures["predict_padded"](**padded)
  np.testing.assert_allclose(served["pctr"].numpy(), expected, rtol=1e-6, atol=0)


def test_serving_odd_requests_give_valid_scores(trained):
  root, _, model_dir = trained
  model, _, schema, lengths = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  loaded = tf.saved_model.load(
      export.export_saved_model(model, schema, lengths, str(root / "odd")))
  num_cats = schema.num_cats
  requests = [
      # only the item: no label, user, query or history
      Impression(label=0, user_id=0, time=0, item_id=3),
      # unseen, huge ids and an over-long history (longer than max_clicks=5)
      Impression(label=0, user_id=2**62, time=10**9, item_id=2**61 + 7,
                 item_cats=[2**40], query_id=2**50,
                 clicks=[Event(2**45 + i, i, [1]) for i in range(50)]),
  ]
  serialized = [schema_lib.to_example(r, num_cats) for r in requests]
  for example in serialized:
    del example.features.feature["label"]
  examples = tf.constant([e.SerializeToString() for e in serialized])
  pctr = loaded.signatures["serving_default"](examples=examples)["pctr"].numpy()
  assert pctr.shape == (2,)
  assert np.all(np.isfinite(pctr)) and np.all((pctr > 0) & (pctr < 1))


def test_versions_increase_and_never_overwrite(trained, tmp_path):
  _, _, model_dir = trained
  model, _, schema, lengths = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  base = str(tmp_path / "serving")
  first = export.export_saved_model(model, schema, lengths, base, version=5)
  second = export.export_saved_model(model, schema, lengths, base)
  assert int(os.path.basename(second)) > int(os.path.basename(first))
  with pytest.raises(FileExistsError):
    export.export_saved_model(model, schema, lengths, base, version=5)
  assert sorted(os.listdir(base)) == sorted(
      [os.path.basename(first), os.path.basename(second)])


def test_embedding_tables_are_exported_with_their_ids(trained):
  root, data, model_dir = trained
  model, _, schema, lengths = model_dir_lib.load_model(model_dir, train_config.TrainConfig)
  train = DataSplit.resolve(os.path.join(data, "train-*"), "train", lengths)
  seen = embeddings.seen_ids(train)
  path = export.export_saved_model(model, schema, lengths, str(root / "emb"),
                                   seen=seen)
  tables = model.embedding_tables()
  for kind in ("items", "queries"):
    rows = open(os.path.join(path, "assets.extra", f"{kind}_embeddings.tsv")
                ).read().splitlines()
    assert len(rows) == seen[kind].ids.size > 0
    first_id, cats, vector = rows[0].split("\t")
    assert int(first_id) == seen[kind].ids[0]
    expected = tables[kind](tf.constant([int(first_id)], tf.int64)).numpy()[0]
    np.testing.assert_allclose([float(v) for v in vector.split()], expected,
                               rtol=1e-5)
  # The data's items: every target and history id, nothing else.
  all_items = set()
  for r in tf.data.TFRecordDataset(reader.match_files(os.path.join(data, "*.tfrecord"))):
    f = tf.train.Example.FromString(r.numpy()).features.feature
    all_items.update(f["item_id"].int64_list.value)
    all_items.update(f["click_ids"].int64_list.value)
  assert set(seen["items"].ids.tolist()) == all_items
