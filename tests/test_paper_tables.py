"""Helpers of the paper-table scripts: RelaImpr, mean +- std, the validation split
by time, the record decoder, pair sampling and cosine means."""


import glob
import math
import os
import types

import numpy as np
import pytest

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from data_pipeline.writer import DatasetWriter
from experiments import cluster_recovery
from experiments import common
from experiments import embedding_similarity
from experiments import paper_tables
from experiments import seeds_mixture
from experiments import simulator_signal
from experiments import trivago_signal
from experiments import tuning
from egin_tf import eges
from egin_tf.models import MODELS


def test_rela_impr_matches_the_papers_table_2():
  # Paper, Table 2: DNN-cross 0.8715 is the base; DIN 0.8833 is +3.18%,
  # EGIN 0.9184 is +12.62%, DNN 0.8709 is -0.16%.
  assert paper_tables.rela_impr(0.8833, 0.8715) == pytest.approx(0.0318, abs=5e-5)
  assert paper_tables.rela_impr(0.9184, 0.8715) == pytest.approx(0.1262, abs=5e-5)
  assert paper_tables.rela_impr(0.8709, 0.8715) == pytest.approx(-0.0016, abs=5e-5)
  # By hand: (0.7 - 0.5) / (0.6 - 0.5) - 1 = 1.
  assert paper_tables.rela_impr(0.7, 0.6) == pytest.approx(1.0)
  assert paper_tables.rela_impr(0.6, 0.6) == 0.0


def test_rela_impr_rejects_a_base_at_chance():
  with pytest.raises(ValueError, match="above 0.5"):
    paper_tables.rela_impr(0.7, 0.5)


def test_mean_std_is_the_sample_std():
  mean, std = common.mean_std([0.6, 0.7, 0.8])
  assert mean == pytest.approx(0.7)
  assert std == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
  assert math.isnan(common.mean_std([0.5])[1])
  assert common.mean_pm_std([0.6, 0.7, 0.8]) == "0.7000 ± 0.1000"
  assert common.mean_pm_std([0.5]) == "0.5000"


def test_format_number_shows_missing_values_as_a_dash():
  assert common.format_number(0.71234) == "0.7123"
  assert common.format_number(0.71234, digits=2) == "0.71"
  assert common.format_number(None) == common.format_number(math.nan) == "-"


def test_markdown_table_aligns_the_number_columns_right():
  table = common.markdown_table(["model", "lr", "AUC"], [["egin", "0.001", "0.7000"]],
                                left_columns=2)
  assert table.splitlines() == ["| model | lr | AUC |", "|---|---|---:|",
                                "| egin | 0.001 | 0.7000 |"]
  assert common.markdown_table(["a", "b"], []).splitlines()[1] == "|---|---:|"


def test_validation_start_takes_the_latest_fraction_by_time():
  times = [5, 1, 9, 3, 7, 2, 10, 4, 8, 6]
  assert paper_tables.validation_start(times, 0.2) == 9   # 9 and 10
  assert paper_tables.validation_start(times, 0.25) == 8  # ceil(2.5) = 3
  # Impressions of the same second stay together, in validation.
  assert paper_tables.validation_start([1, 2, 3, 3, 3], 0.2) == 3


@pytest.mark.parametrize("times, fraction, message", [
    ([4, 4, 4], 0.5, "none would stay in train"),
    ([1, 2], 0.0, r"in \(0, 1\)"),
    ([1, 2], 1.0, r"in \(0, 1\)"),
    ([], 0.1, "no impressions"),
])
def test_validation_start_rejects_impossible_splits(times, fraction, message):
  with pytest.raises(ValueError, match=message):
    paper_tables.validation_start(times, fraction)


def _impression(time: int, label: int) -> schema_lib.Impression:
  return schema_lib.Impression(
      label=label, user_id=7, time=time, item_id=100 + time, item_cats=(3,),
      query_id=5, query_cats=(3, 4),
      clicks=[schema_lib.Event(11, time - 2, (3, 4)),
              schema_lib.Event(12, time - 1, (6,))],
      queries=[schema_lib.Event(5, time - 3, (3,))],
      seeds=[schema_lib.Event(11, time - 2, (3, 4))],
      dense={"price": 1.5}, categorical={"device": 2})


def test_split_by_time_holds_out_the_latest_impressions(tmp_path):
  source = str(tmp_path / "source")
  with DatasetWriter(source, num_cats=2, num_shards=2) as writer:
    for t in (10, 40, 20, 50, 30):
      writer.write("train", _impression(t, label=int(t >= 40)))
    writer.commit(source="test")
  out = str(tmp_path / "split")
  schema = paper_tables.split_by_time(os.path.join(source, "train-*"), out, 0.4)

  def times(split):
    return sorted(
        tf.train.Example.FromString(raw).features.feature["time"].int64_list.value[0]
        for f in glob.glob(os.path.join(out, f"{split}-*"))
        for raw in tf.data.TFRecordDataset(f).as_numpy_iterator())

  assert times("train") == [10, 20, 30]
  assert times("valid") == [40, 50]
  assert schema.splits["train"]["impressions"] == 3
  assert schema.splits["valid"] == {
      "impressions": 2, "positives": 2,
      "files": ["valid-00000-of-00002.tfrecord", "valid-00001-of-00002.tfrecord"]}
  assert schema.has_queries and schema.has_seeds
  assert schema.dense_features == ["price"]


def test_sample_pairs_respects_categories():
  cats = np.array([1, 2, 1, 3, 2, 1])  # category 3 has a single item
  rng = np.random.default_rng(0)
  intra = embedding_similarity.sample_pairs(cats, 500, rng, same=True)
  inter = embedding_similarity.sample_pairs(cats, 500, rng, same=False)
  assert intra.shape == inter.shape == (500, 2)
  assert np.all(cats[intra[:, 0]] == cats[intra[:, 1]])
  assert np.all(intra[:, 0] != intra[:, 1])
  assert 3 not in set(cats[intra].ravel())
  assert np.all(cats[inter[:, 0]] != cats[inter[:, 1]])
  # Every item of categories 1 and 2 can be drawn.
  assert set(intra.ravel()) == {0, 1, 2, 4, 5}


def test_sample_pairs_without_such_pairs_is_empty():
  rng = np.random.default_rng(0)
  assert embedding_similarity.sample_pairs(np.array([1, 2]), 5, rng, True).shape == (0, 2)
  assert embedding_similarity.sample_pairs(np.array([1, 1]), 5, rng, False).shape == (0, 2)


def test_mean_cosine_by_hand():
  vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
  pairs = np.array([[0, 1], [0, 2], [0, 3]])  # cosines 1, 0, -1
  assert embedding_similarity.mean_cosine(vectors, pairs) == pytest.approx(0.0)
  assert embedding_similarity.mean_cosine(vectors, pairs[:2]) == pytest.approx(0.5)


def test_heatmap_items_groups_the_most_frequent_categories():
  cats = np.array([5, 5, 5, 7, 7, 9, 5, 7])
  chosen = embedding_similarity.heatmap_items(cats, 2, 2, np.random.default_rng(1))
  assert list(cats[chosen]) == [5, 5, 7, 7]
  assert len(set(chosen)) == 4


def test_fraction_variants_reuse_plain_egin_for_zero():
  variants = seeds_mixture.fraction_variants([0.0, 0.2, 1.0])
  assert variants == {"egin": ("egin", {}),
                      "egin_seeds0.2": ("egin", {"seeds_fraction": 0.2}),
                      "egin_seeds1": ("egin", {"seeds_fraction": 1.0})}


def test_markdown_table_reports_rela_impr_against_dnn():
  def result(variant, aucs):
    return {"variant": variant, "best_lr": 1e-3, "choice": "lr 0.001, top_k 5",
            "best_valid_auc": 0.7, "trials": 4,
            "runs": [{"test": {"auc": a, "gauc": a, "logloss": 0.5},
                      "examples_per_second": 100.0, "steps": 10} for a in aucs]}
  table = paper_tables.markdown_table(
      [result("dnn", [0.6, 0.6]), result("egin", [0.65, 0.75])],
      oracle={"test_auc": 0.9, "test_gauc": 0.8, "test_logloss": 0.4},
      reference="egin")
  rows = table.splitlines()
  assert rows[0].startswith("| model | chosen (valid AUC) |")
  assert rows[2].startswith("| dnn | lr 0.001, top_k 5 (0.7000) | 0.6000 ± 0.0000 |")
  assert "| +0.00% | -0.1000 |" in rows[2]
  # mean 0.7: (0.7 - 0.5) / (0.6 - 0.5) - 1 = +100%.
  assert "| 0.7000 ± 0.0707 |" in rows[3] and "| +100.00% | +0.0000 |" in rows[3]
  assert rows[4].startswith("| oracle (true p) | - | 0.9000 | 0.8000 | 0.4000 | +300.00% |")


def test_fair_summary_states_margins_in_seed_stds():
  def result(variant, aucs):
    return {"variant": variant, "runs": [{"test": {"auc": a}} for a in aucs]}
  summary = paper_tables.fair_summary([
      result("dnn", [0.70, 0.72]), result("din", [0.74, 0.76]),
      result("egin", [0.75, 0.77]), result("egin_no_graph", [0.70, 0.76])])
  # EGIN - DIN: 0.01; both stds 0.0141 -> 0.7 std. Graph: 0.03 over
  # sqrt((0.0002 + 0.0018) / 2) = 0.0316 -> 0.9 std.
  assert summary == ("Test AUC differences: EGIN - best baseline (din): +0.0100 "
                     "(+0.7 std, inside the noise); graph's share (EGIN - EGIN "
                     "w/o graph): +0.0300 (+0.9 std, inside the noise).")
  assert paper_tables.difference_text([0.8, 0.81], [0.7, 0.71]) == (
      "+0.1000 (+14.1 std, outside the noise)")
  assert paper_tables.fair_summary([result("dnn", [0.7])]) == ""
  assert paper_tables.fair_summary([result("egin", [0.7])]) == ""


def test_every_model_gets_the_same_number_of_trials():
  lrs = [3e-4, 1e-3]
  grids = {model: tuning.trials(model, lrs) for model in tuning.ARCH_KNOBS}
  assert {len(grid) for grid in grids.values()} == {4}
  # The model's default is one of the two knob values.
  for model, grid in grids.items():
    knob, values = tuning.ARCH_KNOBS[model]
    default = getattr(MODELS[model].CONFIG(), knob)
    assert default == values[0] and {t.value for t in grid} == set(values)
  egin = grids["egin"]
  # The default's runs are the folders of a rate-only sweep.
  assert [t.tag() for t in egin] == ["lr0.0003", "lr0.001",
                                     "lr0.0003-top_k5", "lr0.001-top_k5"]
  assert egin[3].kwargs() == {"top_k": 5} and egin[3].label() == "lr 0.001, top_k 5"
  assert tuning.trials("din", lrs)[2].tag() == "lr0.0003-attention_units80_40"
  # Without the knob: the rate alone, in the folders of the earlier tables.
  assert [t.tag() for t in tuning.trials("egin", lrs, tune_arch=False)] == [
      "lr0.0003", "lr0.001"]


def test_fair_ablations_reuse_egins_chosen_trial(monkeypatch):
  """egin_no_graph trains no sweep of its own: it runs EGIN's best trial."""
  valid_auc = {("egin", "lr0.001"): 0.70, ("egin", "lr0.003"): 0.72,
               ("egin", "lr0.001-top_k5"): 0.71, ("egin", "lr0.003-top_k5"): 0.69,
               ("egin_no_graph", "lr0.003"): 0.65}
  trained = []

  def fake_run(split, variant, model, kwargs, trial, seed):
    trained.append((variant, trial.tag(), seed))
    auc = valid_auc.get((variant, trial.tag()), 0.6)
    return f"{variant}/{trial.tag()}-seed{seed}", {
        "eval": {"auc": auc}, "examples_per_second": 1.0, "steps": 1}

  monkeypatch.setattr(paper_tables, "FLAGS", types.SimpleNamespace(tune_arch=True))
  monkeypatch.setattr(paper_tables, "_train_run", fake_run)
  monkeypatch.setattr(paper_tables, "_test_report", lambda d, p: {"auc": 0.6})
  monkeypatch.setattr(paper_tables, "_graph_report", lambda d, s: None)
  variants = {name: paper_tables.VARIANTS[name] for name in ("egin", "egin_no_graph")}
  split = types.SimpleNamespace(test="test-*")
  egin, ablation = paper_tables.run_table(split, variants, [1e-3, 3e-3], [0, 1],
                                          paper_tables.FAIR_ABLATIONS)
  assert egin["choice"] == "lr 0.003, top_k 10" and egin["trials"] == 4
  assert ablation["choice"] == "egin's: lr 0.003, top_k 10"
  assert ablation["trials"] == 0 and ablation["best_valid_auc"] == 0.65
  assert [t for t in trained if t[0] == "egin_no_graph"] == [
      ("egin_no_graph", "lr0.003", 0), ("egin_no_graph", "lr0.003", 0),
      ("egin_no_graph", "lr0.003", 1)]


def test_eges_stage_one_runs_once_per_seed_dim_and_guard(tmp_path):
  calls = []

  def fake_train(pattern, path, config):
    calls.append((pattern, config.seed, config.dim, config.leak_guard))
    np.savez(path, ids=np.array([1]), vectors=np.zeros([1, config.dim]))
    return path

  def cached(**fields):
    return paper_tables.cached_eges_embeddings(
        "d/train-*", str(tmp_path), eges.EgesPretrainConfig(**fields), fake_train)

  first = cached(seed=0, dim=10)
  # Another learning rate of the sweep: same seed, so the same vectors.
  again = cached(seed=0, dim=10)
  other_seed = cached(seed=1, dim=10)
  other_dim = cached(seed=0, dim=4)
  other_guard = cached(seed=0, dim=10, leak_guard="out_of_fold")
  unguarded = cached(seed=0, dim=10, leak_guard="none")
  assert first == again and os.path.exists(first)
  assert first.endswith("eges_stage1_d10_seed0_cut0.5.npz")  # the default guard
  assert other_guard.endswith("eges_stage1_d10_seed0_oof2.npz")
  assert unguarded.endswith("eges_stage1_d10_seed0.npz")
  assert len({first, other_seed, other_dim, other_guard, unguarded}) == 5
  assert calls == [("d/train-*", 0, 10, "time_cut"), ("d/train-*", 1, 10, "time_cut"),
                   ("d/train-*", 0, 4, "time_cut"), ("d/train-*", 0, 10, "out_of_fold"),
                   ("d/train-*", 0, 10, "none")]


def test_parse_extra_variants():
  assert paper_tables.parse_extra_variants(None) == {}
  assert paper_tables.parse_extra_variants(
      '{"egin_a0.1": ["egin", {"alpha": 0.1}]}') == {
          "egin_a0.1": ("egin", {"alpha": 0.1})}


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"),
    ('["egin"]', "JSON object"),
    ('{"egin": ["egin", {}]}', "built-in variant"),
    ('{"x": ["nope", {}]}', "must be \\[model"),
    ('{"x": ["egin", 3]}', "must be \\[model"),
])
def test_parse_extra_variants_rejects_bad_specs(text, message):
  with pytest.raises(ValueError, match=message):
    paper_tables.parse_extra_variants(text)


def test_history_counts_counts_matches_in_the_recent_window():
  history = np.array([[3, 5, 3, 3, 0, 0],   # oldest first, right-padded
                      [0, 0, 0, 0, 0, 0],
                      [7, 7, 7, 7, 7, 7]])
  target = np.array([3, 3, 0])
  assert list(simulator_signal.history_counts(history, target)) == [3, 0, 0]
  # The 2 most recent valid entries of row 0 are [3, 3] (positions 2, 3).
  assert list(simulator_signal.history_counts(history, target, window=2)) == [2, 0, 0]
  assert list(simulator_signal.history_counts(history, np.array([5, 3, 7]),
                                              window=2)) == [0, 0, 2]


def test_fit_logistic_recovers_a_known_model():
  rng = np.random.default_rng(0)
  x = np.c_[np.ones(20_000), rng.normal(size=20_000)]
  y = (rng.random(20_000) < 1 / (1 + np.exp(-(x @ [-1.0, 2.0])))).astype(float)
  w = simulator_signal.fit_logistic(x, y)
  np.testing.assert_allclose(w, [-1.0, 2.0], atol=0.1)


def test_last_click_is_the_latest_valid_entry():
  history = np.array([[4, 9, 0], [0, 0, 0], [1, 2, 3]])
  assert list(trivago_signal.last_click(history)) == [9, 0, 3]


def test_pair_kinds_follow_clusters_and_leaves():
  cluster = np.array([1, 1, 1, 2, 2, 3])
  leaf = np.array([5, 5, 6, 5, 6, 7])
  kinds = cluster_recovery.pair_kinds(np.arange(6), cluster, leaf, 200,
                                      np.random.default_rng(0))
  a, b = kinds["same cluster"].T
  assert np.all(cluster[a] == cluster[b]) and np.all(a != b)
  a, b = kinds["same cluster and leaf"].T
  assert np.all((cluster[a] == cluster[b]) & (leaf[a] == leaf[b]))
  assert set(map(tuple, np.sort(kinds["same cluster and leaf"], axis=1))) == {(0, 1)}
  a, b = kinds["same leaf, other cluster"].T
  assert np.all((leaf[a] == leaf[b]) & (cluster[a] != cluster[b]))
  a, b = kinds["other leaf and cluster"].T
  assert np.all((leaf[a] != leaf[b]) & (cluster[a] != cluster[b]))
