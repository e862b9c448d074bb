"""Exact metrics against hand-computed values."""

import math

import numpy as np

from data_pipeline import ranking_metrics as metrics


def test_auc_counts_pairs_with_ties_as_half():
  # Positives 0.9, 0.5; negatives 0.1, 0.5: pairs 1 + 1 + 1 + 0.5 of 4.
  assert metrics.auc([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.5]) == 0.875
  assert metrics.auc([1, 1, 0], [0.1, 0.2, 0.3]) == 0.0
  assert math.isnan(metrics.auc([1, 1], [0.1, 0.2]))


def test_auc_matches_brute_force():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  scores = rng.integers(0, 20, 300) / 20.0  # many ties
  pos, neg = scores[labels == 1], scores[labels == 0]
  brute = ((pos[:, None] > neg[None, :]).sum() +
           0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
  assert abs(metrics.auc(labels, scores) - brute) < 1e-12


def test_grouped_auc_weights_by_impressions_and_skips_one_class_groups():
  labels = [1, 0, 1, 0, 0, 1, 1]
  scores = [0.9, 0.1, 0.2, 0.5, 0.3, 0.3, 0.3]
  users = [1, 1, 2, 2, 2, 3, 3]
  # user 1: AUC 1 (2 imps); user 2: pos 0.2 vs neg 0.5, 0.3 -> 0 (3 imps);
  # user 3: only positives -> left out.
  assert metrics.grouped_auc(labels, scores, users) == (1 * 2 + 0 * 3) / 5


def test_logloss():
  value = metrics.logloss([1, 0], [0.8, 0.4])
  assert abs(value - -(math.log(0.8) + math.log(0.6)) / 2) < 1e-12
