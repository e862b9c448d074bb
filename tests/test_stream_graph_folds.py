"""The stream graph_folds experiment's pure helpers, by hand: the difference of
two settings and its noise, the table, and the decision rule."""


import math

import pytest

from experiments import stream_graph_folds as sgf


def _run(auc, logloss, window_auc=0.6, test_auc=0.65, rate=1000.0):
  return {"running_auc": auc, "running_logloss": logloss, "window_auc": window_auc,
          "test_auc": test_auc, "examples_per_second": rate, "examples": 100}


def test_difference_is_two_minus_one_with_two_standard_errors_of_noise():
  # Means 0.71 and 0.73; sample stds 0.01 * sqrt(2) and 0.02 * sqrt(2), so the
  # noise is 2 * sqrt(0.0002 / 2 + 0.0008 / 2) = 2 * sqrt(0.0005) = 0.044721.
  d = sgf.difference([0.70, 0.72], [0.71, 0.75])
  assert d.value == pytest.approx(0.02)
  assert d.noise == pytest.approx(0.0447214, abs=1e-7)
  assert d.inside_noise
  assert sgf.difference_text(d, 4) == "+0.0200 (noise 0.0447: inside)"
  steady = sgf.difference([0.70, 0.70], [0.69, 0.69])  # no spread: any gap counts
  assert steady.noise == 0 and not steady.inside_noise
  assert sgf.difference_text(steady, 4) == "-0.0100 (noise 0.0000: OUTSIDE)"
  single = sgf.difference([0.70], [0.75])
  assert math.isnan(single.noise) and single.inside_noise
  assert sgf.difference_text(single, 4) == "+0.0500 (1 seed: noise unknown)"


def test_run_figures_reads_a_train_stream_result():
  result = {"progressive": {"running_auc": 0.6, "running_logloss": 0.5,
                            "window_auc": 0.7, "examples": 512},
            "eval": {"auc": 0.72}, "examples_this_run": 512, "seconds": 2.0}
  assert sgf.run_figures(result) == {
      "running_auc": 0.6, "running_logloss": 0.5, "window_auc": 0.7,
      "test_auc": 0.72, "examples_per_second": 256.0, "examples": 512}


def test_results_table_has_both_settings_and_their_difference():
  results = {"sim": {1: [_run(0.70, 0.50)], 2: [_run(0.71, 0.49, rate=1200.0)]}}
  lines = sgf.results_table(results).splitlines()
  assert lines[0].startswith("| dataset | graph_folds | seeds | progressive AUC, whole")
  assert lines[1] == "|---|---|---|---:|---:|---:|---:|---:|"
  assert lines[2] == "| sim | graph_folds=1 | 1 | 0.7000 | 0.5000 | 0.6000 | 0.6500 | 1,000 |"
  assert lines[3] == "| sim | graph_folds=2 | 1 | 0.7100 | 0.4900 | 0.6000 | 0.6500 | 1,200 |"
  unknown = "(1 seed: noise unknown)"
  assert lines[4] == (f"| sim | 2 folds - 1 fold |  | +0.0100 {unknown} | -0.0100 "
                      f"{unknown} | +0.0000 {unknown} | +0.0000 {unknown} | +200 "
                      f"{unknown} |")


def _results(one, two):
  """One dataset, two seeds per setting: ``one``/``two`` are (auc, logloss) pairs."""
  return {"sim": {1: [_run(*x) for x in one], 2: [_run(*x) for x in two]}}


@pytest.mark.parametrize("one, two, folds, why", [
    # Differences of 0.001 against a spread of 0.01: inside the noise.
    ([(0.70, 0.50), (0.72, 0.52)], [(0.701, 0.499), (0.721, 0.519)], 1,
     "every progressive difference is inside the noise"),
    # No spread: 2 folds better on AUC, logloss equal.
    ([(0.70, 0.50), (0.70, 0.50)], [(0.71, 0.50), (0.71, 0.50)], 2,
     "2 folds are better beyond the noise on sim progressive AUC, whole stream"),
    ([(0.71, 0.50), (0.71, 0.50)], [(0.70, 0.51), (0.70, 0.51)], 1,
     "1 fold is better beyond the noise on sim progressive AUC, whole stream; sim "
     "progressive logloss, whole stream"),
    # 2 folds rank better but are worse calibrated: the metrics disagree.
    ([(0.70, 0.50), (0.70, 0.50)], [(0.71, 0.52), (0.71, 0.52)], 1,
     "the progressive metrics disagree"),
])
def test_decide_prefers_one_fold_unless_two_win_beyond_the_noise(one, two, folds, why):
  chosen, reason = sgf.decide(_results(one, two))
  assert chosen == folds
  assert reason.startswith(why), reason
