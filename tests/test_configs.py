"""Typed configs: validation, JSON round trips, the models built from them, and
how `run_config.resolve` stacks defaults, a file and flags."""

import json

import pytest

from egin_tf.train import run_config
from egin_tf.train import config as train_config
from egin_tf.configs import ConfigError
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import MODELS, build_model
from egin_tf.models.configs import BSTConfig, DNNConfig, EGESConfig, EginConfig

CONFIGS = [model.CONFIG for model in MODELS.values()] + [
    train_config.TrainConfig, train_config.StreamConfig]


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_round_trip_through_json(config_cls):
  config = config_cls()
  assert config_cls.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("bad, field, allowed", [
    (dict(alpha=-0.5), "alpha", "must be >= 0.0"),
    (dict(seeds_fraction=1.5), "seeds_fraction", "must be <= 1.0"),
    (dict(dropout=1.0), "dropout", "must be < 1.0"),
    (dict(subsample_threshold=0.0), "subsample_threshold", "must be > 0.0"),
    (dict(binning="fuzzy"), "binning", "must be one of hard, soft"),
    (dict(hidden_units=(200, 0)), "hidden_units", "must be >= 1"),
    (dict(hidden_units="200"), "hidden_units", "must be a list of int"),
    (dict(top_k=2.5), "top_k", "must be an integer"),
    (dict(top_k=True), "top_k", "must be an integer"),
    (dict(use_graph=1), "use_graph", "must be true or false"),
    (dict(window=None), "window", "must be set"),
    (dict(share_tables=True), "graph_folds", "share_tables needs graph_folds=1"),
])
def test_egin_config_names_the_field_and_what_is_allowed(bad, field, allowed):
  with pytest.raises(ConfigError) as raised:
    EginConfig(**bad)
  assert (raised.value.owner, raised.value.field) == ("EginConfig", field)
  assert allowed in raised.value.allowed
  assert str(raised.value).startswith(f"EginConfig.{field}=")


def test_values_are_normalized_to_the_declared_types():
  config = EginConfig(hidden_units=[64, 8], alpha=2, top_k=3.0)
  assert config.hidden_units == (64, 8) and config.alpha == 2.0
  assert isinstance(config.alpha, float) and config.top_k == 3
  assert config.to_dict()["hidden_units"] == [64, 8]  # JSON: a list again
  with pytest.raises(ConfigError, match="unknown field"):
    DNNConfig.from_dict({"hiden_units": [8]})
  with pytest.raises(dataclass_error()):
    config.alpha = 0.0  # frozen


def dataclass_error():
  import dataclasses  # pylint: disable=g-import-not-at-top
  return dataclasses.FrozenInstanceError


def test_bst_and_train_configs_check_their_own_rules():
  with pytest.raises(ConfigError, match="pooling='mean_max'"):
    BSTConfig(pooling=("target", "mean_max"))
  with pytest.raises(ConfigError, match="at least one"):
    BSTConfig(pooling=())
  with pytest.raises(ConfigError, match="TrainConfig.model='xgboost'"):
    train_config.TrainConfig(model="xgboost")
  with pytest.raises(ConfigError, match="the tables are item, query"):
    train_config.TrainConfig(table_sizes={"items": 8})


FEATURES = FeatureConfig(item_buckets=50, user_buckets=20, query_buckets=30,
                         category_buckets=10, embedding_dim=4)


@pytest.mark.parametrize("name, fields", [
    ("dnn", dict(hidden_units=(8,), pooling="mean")),
    ("dnn_cross", dict(hidden_units=(8,), cross_buckets=64)),
    ("din", dict(hidden_units=(8,), attention_units=(4, 2))),
    ("bst", dict(hidden_units=(8,), num_heads=1, pooling=("mean",))),
    ("egin", dict(hidden_units=(8,), graph_dim=4, alpha=0.5, queue_capacity=64,
                  use_query=False, top_k=3)),
])
def test_models_are_built_from_their_config_and_rebuilt_from_get_config(name, fields):
  model = build_model(name, FEATURES, **fields)
  config = model.model_config
  assert type(config) is MODELS[name].CONFIG
  for key, value in fields.items():
    assert getattr(config, key) == value
  saved = json.loads(json.dumps(model.get_config()))
  assert saved["features"]["item_buckets"] == 50
  rebuilt = MODELS[name](**saved)
  assert rebuilt.model_config == config
  assert build_model(name, FEATURES, config=config).model_config == config


def test_a_model_refuses_an_argument_that_is_not_its_field():
  with pytest.raises(ConfigError, match=r"DNNConfig.top_k=3: unknown field"):
    build_model("dnn", FEATURES, top_k=3)
  with pytest.raises(ConfigError, match="DINConfig.dropout=-0.1"):
    build_model("din", FEATURES, dropout=-0.1)
  with pytest.raises(TypeError, match="must be a EginConfig"):
    build_model("egin", FEATURES, config=DNNConfig())


def test_egin_alpha_beta_gamma_are_the_graph_loss_weights():
  model = build_model("egin", FEATURES, alpha=0.5, beta=0.25, gamma=2.0,
                      graph_dim=4, queue_capacity=64, category_graph=False)
  assert model.aux_loss_weights == {"i2i": 0.5, "q2q": 0.25, "q2i": 2.0}
  ablated = build_model("egin", FEATURES, use_graph=False, graph_dim=4)
  assert ablated.aux_loss_weights == {}


def test_model_config_takes_the_run_seed_unless_given():
  egin = train_config.TrainConfig(model="egin", seed=7, model_kwargs={"alpha": 0.5})
  assert train_config.model_config(egin).seed == 7
  assert train_config.model_config(egin.replace(model_kwargs={"seed": 3})).seed == 3
  dnn = train_config.TrainConfig(model="dnn", seed=7)
  assert train_config.model_config(dnn) == DNNConfig()
  eges = train_config.TrainConfig(model="eges", model_kwargs={"slot_dim": 6})
  assert train_config.model_config(eges) == EGESConfig(slot_dim=6)


DEFAULTS = ("defaults", {"model": {"name": "egin"}, "train": {"epochs": 2}})


def test_resolve_stacks_sources_later_ones_winning_key_by_key():
  file = ("run.json", {"model": {"name": "egin", "alpha": 0.5, "top_k": 5},
                       "train": {"batch_size": 64, "table_sizes": {"item": 100}}})
  flags = ("command line", {"model": {"top_k": 7},
                            "train": {"table_sizes": {"query": 40}}})
  run = run_config.resolve([DEFAULTS, file, flags], stream=False)
  model = train_config.model_config(run.train)
  assert (model.alpha, model.top_k, model.beta) == (0.5, 7, 1.0)
  assert (run.train.batch_size, run.train.epochs) == (64, 2)
  assert run.train.table_sizes == {"item": 100, "query": 40}
  assert run.stream is None
  printed = run.to_dict()
  assert printed["model"]["name"] == "egin" and printed["model"]["top_k"] == 7
  assert "model_kwargs" not in printed["train"] and "stream" not in printed
  # What --print_config prints is a config file that gives the same run.
  again = run_config.resolve([("printed", printed)], stream=False)
  assert again.to_dict() == printed
  assert train_config.model_config(again.train) == model


def test_resolve_names_the_source_of_a_bad_value():
  file = ("run.json", {"model": {"name": "egin", "alpha": -1}})
  with pytest.raises(run_config.RunConfigError) as raised:
    run_config.resolve([DEFAULTS, file, ("command line", {})], stream=False)
  error = raised.value
  assert (error.source, error.section, error.field) == ("run.json", "model", "alpha")
  assert str(error) == "run.json: model.alpha=-1.0: must be >= 0.0"
  # The file's EGIN field does not apply once the command line picks DNN.
  with pytest.raises(run_config.RunConfigError,
                     match="run.json: model.alpha=.*does not apply to model dnn"):
    run_config.resolve([DEFAULTS, ("run.json", {"model": {"alpha": 0.5}}),
                        ("command line", {"model": {"name": "dnn"}})], stream=False)


@pytest.mark.parametrize("sections, message", [
    ({"modle": {}}, "run.json: modle: unknown section"),
    ({"train": 3}, "run.json: train: must be a JSON object"),
    ({"stream": {"follow": True}}, "run.json: stream: applies only with --stream"),
    ({"train": {"model": "dnn"}}, "set the model in the model section"),
    ({"model": {"name": "gbdt"}}, "run.json: model.name='gbdt': must be one of"),
    ({"train": {"epochs": "two"}}, "run.json: train.epochs='two': must be an integer"),
    ([1, 2], "run.json: config: must be a JSON object of sections"),
])
def test_resolve_refuses_malformed_files(sections, message):
  with pytest.raises(run_config.RunConfigError, match=message.replace(".", r"\.")
                     .replace("(", r"\(").replace("*", r"\*")):
    run_config.resolve([DEFAULTS, ("run.json", sections)], stream=False)


def test_stream_section_only_with_stream():
  run = run_config.resolve(
      [DEFAULTS, ("run.json", {"stream": {"progressive_window": 500}})], stream=True)
  assert run.stream == train_config.StreamConfig(progressive_window=500)
  assert run.to_dict()["stream"]["progressive_window"] == 500


def _graph_folds(layers, stream):
  return train_config.model_config(run_config.resolve(layers, stream=stream).train).graph_folds


def test_stream_defaults_apply_with_stream_and_not_offline():
  stream = run_config.stream_defaults("egin")
  assert stream == (run_config.STREAM_DEFAULTS, {"model": {"graph_folds": 1}})
  assert _graph_folds([DEFAULTS, stream], stream=True) == 1
  assert _graph_folds([DEFAULTS], stream=False) == 2  # EginConfig's own default
  # Only fields of the model's config: DNN has no graph_folds (nor an unknown name).
  assert run_config.stream_defaults("dnn") == (run_config.STREAM_DEFAULTS, {"model": {}})
  assert run_config.stream_defaults("gbdt")[1] == {"model": {}}
  dnn = run_config.resolve([DEFAULTS, run_config.stream_defaults("dnn"),
                            ("command line", {"model": {"name": "dnn"}})], stream=True)
  assert "graph_folds" not in dnn.to_dict()["model"]


def test_a_file_or_a_flag_overrides_the_stream_default():
  stream = run_config.stream_defaults("egin")
  file = ("run.json", {"model": {"graph_folds": 3}})
  assert _graph_folds([DEFAULTS, stream, file], stream=True) == 3
  flags = ("command line", {"model": {"graph_folds": 2}})
  assert _graph_folds([DEFAULTS, stream, file, flags], stream=True) == 2
  # With one fold on the stream, share_tables needs no --graph_folds there.
  share = ("command line", {"model": {"share_tables": True}})
  run = run_config.resolve([DEFAULTS, stream, share], stream=True)
  assert train_config.model_config(run.train).share_tables
  with pytest.raises(run_config.RunConfigError,
                     match=r"^command line: model\.graph_folds=2: \(the default\) "
                           "share_tables needs graph_folds=1"):
    run_config.resolve([DEFAULTS, share], stream=False)


def test_errors_name_their_source_beside_the_stream_defaults(monkeypatch):
  stream = run_config.stream_defaults("egin")
  with pytest.raises(run_config.RunConfigError,
                     match=r"^run\.json: model\.graph_folds=0: must be >= 1$"):
    run_config.resolve([DEFAULTS, stream, ("run.json", {"model": {"graph_folds": 0}}),
                        ("command line", {})], stream=True)
  # A bad value that comes from the stream defaults is reported as a default:
  # against the last source, as the library defaults are.
  monkeypatch.setattr(train_config, "STREAM_MODEL_DEFAULTS", {"graph_folds": 2})
  with pytest.raises(run_config.RunConfigError) as raised:
    run_config.resolve([DEFAULTS, run_config.stream_defaults("egin"),
                        ("command line", {"model": {"share_tables": True}})],
                       stream=True)
  assert (raised.value.source, raised.value.field) == ("command line", "graph_folds")
  assert str(raised.value) == ("command line: model.graph_folds=2: (the --stream "
                               "default) share_tables needs graph_folds=1 (the CTR "
                               "network has one table per node type)")
