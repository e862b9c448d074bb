"""Tests of the search-log simulator: determinism, oracle, split, histories, files."""


import collections
import dataclasses
import glob
import json
import math
import os

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline import simulator
from data_pipeline.tf_env import tf
from data_pipeline import ranking_metrics as metrics

# A small catalog keeps every test fast; 40 users give ~4k impressions.
SMALL = simulator.SimulatorConfig(
    num_users=40, seed=7, num_items=600, num_categories=12,
    num_parent_categories=4, num_clusters=40, num_queries=60)


def _small(**overrides) -> simulator.SimulatorConfig:
  return dataclasses.replace(SMALL, **overrides)


@pytest.fixture(scope="module")
def simulated():
  return list(simulator.simulate(SMALL))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  out_dir = str(tmp_path_factory.mktemp("sim") / "data")
  oracle = simulator.generate(SMALL, out_dir, num_shards=2)
  return out_dir, oracle


def _read_split(out_dir: str, split: str):
  files = sorted(glob.glob(os.path.join(out_dir, f"{split}-*.tfrecord")))
  return [[tf.train.Example.FromString(r.numpy())
           for r in tf.data.TFRecordDataset(f)] for f in files]


def _int_feature(example, name):
  return list(example.features.feature[name].int64_list.value)


def test_click_probability_matches_hand_computed_values():
  log3 = math.log(3.0)  # sigmoid(log 3) = 0.75, sigmoid(-log 3) = 0.25
  config = simulator.SimulatorConfig(
      bias=0.0, position_bias_exponent=0.5, w_interest=log3, w_taste=log3,
      w_match=2 * log3, w_focus=log3, w_related=log3, related_cap=3,
      w_quality=log3, w_price=log3)
  zeros = np.zeros(7)
  got = simulator.click_probability(
      config,
      position=np.array([1, 4, 1, 9, 1, 1, 1]),
      user_bias=0.0,
      interest=np.array([0, 1, 0, 0, 0, 0, 0]),
      taste=zeros,
      match=np.array([0, 0, 0, 0.5, 0, 0, 0]),
      focus=np.array([0, 0, 0, 0, 0, 0, 1]),
      related_count=np.array([0, 0, 5, 0, 0, 0, 0]),  # capped at 3 -> full weight
      quality=np.array([0, 0, 0, 0, 0, 1, 0]),
      price_z=np.array([0, 0, 0, 0, 1, 0, 0]))
  # position 1: 1.0, position 4: 1/2, position 9: 1/3 (exponent 0.5).
  np.testing.assert_allclose(
      got, [0.5, 0.5 * 0.75, 0.75, 0.75 / 3, 0.25, 0.75, 0.75], rtol=1e-12)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
  config = _small(num_users=12)
  paths = {}
  for name, seed in (("a", 3), ("b", 3), ("c", 4)):
    simulator.generate(dataclasses.replace(config, seed=seed),
                       str(tmp_path / name))
    paths[name] = tmp_path / name
  names = sorted(os.listdir(paths["a"]))
  assert names == sorted(os.listdir(paths["b"]))
  assert "oracle.json" in names and "schema.json" in names
  for name in names:
    assert (paths["a"] / name).read_bytes() == (paths["b"] / name).read_bytes(), name
  shards = [n for n in names if n.endswith(".tfrecord")]
  assert all((paths["a"] / n).read_bytes() != (paths["c"] / n).read_bytes()
             for n in shards)


def test_oracle_auc_is_high_and_not_just_position():
  rows = list(simulator.simulate(_small(num_users=150)))
  test = [(imp.label, p, imp.categorical["position"]) for split, imp, p in rows
          if split == simulator.TEST]
  labels, probs, positions = (np.array(c) for c in zip(*test))
  oracle = metrics.auc(labels, probs)
  assert oracle > 0.7
  assert oracle > metrics.auc(labels, -positions) + 0.05


def test_labels_are_drawn_from_the_true_probabilities(simulated):
  labels = np.array([imp.label for _, imp, _ in simulated], np.float64)
  probs = np.array([p for _, _, p in simulated])
  assert 0.1 < labels.mean() < 0.4
  # Within each probability quartile the click count is Binomial-like around sum(p).
  for part in np.array_split(np.argsort(probs), 4):
    expected = probs[part].sum()
    spread = math.sqrt((probs[part] * (1 - probs[part])).sum())
    assert abs(labels[part].sum() - expected) < 4 * spread


def test_train_is_earlier_than_test(simulated):
  times = collections.defaultdict(list)
  for split, imp, _ in simulated:
    times[split].append(imp.time)
  split_time = SMALL.start_time + int(0.9 * SMALL.days * 86400)
  assert sorted(times) == [simulator.TEST, simulator.TRAIN]
  assert max(times[simulator.TRAIN]) < split_time <= min(times[simulator.TEST])


def test_histories_are_exactly_the_earlier_searches_and_clicks(simulated):
  by_user = collections.defaultdict(list)
  for _, imp, _ in simulated:
    by_user[imp.user_id].append(imp)
  checked = 0
  for imps in by_user.values():
    times = [imp.time for imp in imps]
    assert times == sorted(times), "a user's impressions go forward in time"
    searches = collections.OrderedDict()
    for imp in imps:  # impressions of one search share the time
      searches.setdefault(imp.time, []).append(imp)
    earlier_clicks, earlier_queries = [], []
    for t, shown in searches.items():
      for imp in shown:
        assert [e.id for e in imp.clicks] == earlier_clicks
        assert [e.id for e in imp.queries] == earlier_queries
        for events in (imp.clicks, imp.queries, imp.seeds):
          event_times = [e.time for e in events]
          assert all(a < b for a, b in zip(event_times, event_times[1:]))
          assert all(e < t for e in event_times), "history must be earlier"
        checked += 1
      positions = [imp.categorical["position"] for imp in shown]
      assert positions == list(range(1, len(shown) + 1))
      earlier_clicks += [imp.item_id for imp in shown if imp.label]
      earlier_queries.append(shown[0].query_id)
  assert checked == len(simulated)


def test_seeds_are_the_clicks_sharing_a_category_with_the_query(simulated):
  some_filtered = False
  for _, imp, _ in simulated:
    assert len(imp.clicks) < SMALL.max_history  # nothing cut in this config
    wanted = set(imp.query_cats)
    expected = [e for e in imp.clicks if wanted & set(e.cats)]
    assert list(imp.seeds) == expected
    some_filtered |= 0 < len(imp.seeds) < len(imp.clicks)
  assert some_filtered


def test_history_cap_keeps_the_most_recent_entries(simulated):
  cap = 4
  capped = list(simulator.simulate(_small(max_history=cap)))
  assert len(capped) == len(simulated)
  cut = 0
  for (_, full, p_full), (_, short, p_short) in zip(simulated, capped):
    assert (full.user_id, full.time, full.item_id, full.label) == (
        short.user_id, short.time, short.item_id, short.label)
    assert p_full == p_short
    wanted = set(full.query_cats)
    all_seeds = [e for e in full.clicks if wanted & set(e.cats)]
    assert list(short.clicks) == list(full.clicks)[-cap:]
    assert list(short.queries) == list(full.queries)[-cap:]
    assert list(short.seeds) == all_seeds[-cap:]
    cut += len(full.clicks) > cap
  assert cut > 0


def test_ids_are_positive_and_in_range(simulated):
  k, p = SMALL.num_categories, SMALL.num_parent_categories
  for _, imp, _ in simulated:
    assert 1 <= imp.user_id <= SMALL.num_users
    assert 1 <= imp.item_id <= SMALL.num_items
    assert 1 <= imp.query_id <= SMALL.num_queries
    leaf, parent = imp.item_cats
    assert 1 <= leaf <= k < parent <= k + p
    assert 1 <= len(imp.query_cats) <= simulator.NUM_CATS
    assert all(1 <= c <= k + p for c in imp.query_cats)
    for e in list(imp.clicks) + list(imp.seeds):
      assert 1 <= e.id <= SMALL.num_items and len(e.cats) == 2 and min(e.cats) > 0
    for e in imp.queries:
      assert 1 <= e.id <= SMALL.num_queries and min(e.cats) > 0
    assert 1 <= imp.categorical["position"] <= SMALL.results_per_search
    assert imp.dense["price"] > 0
    assert imp.label in (0, 1)


def test_files_hold_what_simulate_yields_and_schema_counts_match(generated,
                                                                 simulated):
  out_dir, _ = generated
  schema = schema_lib.DatasetSchema.load(out_dir)
  assert schema.num_cats == simulator.NUM_CATS
  assert schema.dense_features == ["price"]
  assert schema.cat_features == ["position"]
  assert schema.has_queries and schema.has_seeds
  for split in (simulator.TRAIN, simulator.TEST):
    shards = _read_split(out_dir, split)
    assert len(shards) == 2
    records = [ex for shard in shards for ex in shard]
    labels = [_int_feature(ex, "label")[0] for ex in records]
    assert schema.splits[split]["impressions"] == len(records)
    assert schema.splits[split]["positives"] == sum(labels)
    # Round-robin sharding: record i of the split is in shard i % 2.
    expected = [imp for s, imp, _ in simulated if s == split]
    assert len(expected) == len(records)
    for i, imp in enumerate(expected):
      got = shards[i % 2][i // 2]
      assert got == schema_lib.to_example(imp, simulator.NUM_CATS)


def test_oracle_json_equals_metrics_of_the_true_probabilities(generated,
                                                              simulated):
  out_dir, returned = generated
  with open(os.path.join(out_dir, simulator.ORACLE_FILE), encoding="utf-8") as f:
    oracle = json.load(f)
  assert oracle == json.loads(json.dumps(returned))
  for split in (simulator.TRAIN, simulator.TEST):
    rows = [(imp.label, p, imp.user_id) for s, imp, p in simulated if s == split]
    labels, probs, users = (np.array(c) for c in zip(*rows))
    assert oracle[f"{split}_auc"] == pytest.approx(metrics.auc(labels, probs),
                                                   abs=1e-12)
    assert oracle[f"{split}_impressions"] == len(labels)
    assert oracle[f"{split}_positives"] == int(labels.sum())
    if split == simulator.TEST:
      assert oracle["test_gauc"] == pytest.approx(
          metrics.grouped_auc(labels, probs, users), abs=1e-12)
      assert oracle["test_logloss"] == pytest.approx(
          metrics.logloss(labels, probs), abs=1e-12)
  assert oracle["config"] == dataclasses.asdict(SMALL)


def test_progress_reports_counts_written(tmp_path):
  calls = []
  oracle = simulator.generate(_small(num_users=10), str(tmp_path / "data"),
                              progress=calls.append, progress_every=200)
  total = oracle["train_impressions"] + oracle["test_impressions"]
  assert total > 400
  expected = list(range(200, total + 1, 200))
  if expected[-1] != total:
    expected.append(total)
  assert calls == expected


def test_existing_output_folder_is_refused(tmp_path):
  with pytest.raises(FileExistsError, match="already exists"):
    simulator.generate(_small(num_users=2), str(tmp_path))


@pytest.mark.parametrize("overrides, knob", [
    (dict(test_fraction=1.0), "test_fraction"),
    (dict(num_users=0), "num_users"),
    (dict(num_queries=5), "num_queries"),
    (dict(explore_prob=1.5), "explore_prob"),
    (dict(num_parent_categories=13), "num_parent_categories"),
])
def test_bad_config_names_the_knob(overrides, knob):
  with pytest.raises(ValueError, match=knob):
    next(simulator.simulate(_small(**overrides)))
