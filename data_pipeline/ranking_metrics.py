"""Exact ranking metrics: rank-based AUC, user-grouped AUC (gAUC) and logloss.

Keras' ``tf.keras.metrics.AUC`` thresholds predictions into buckets and is only an
approximation; the numbers we report come from these numpy functions.
"""

from typing import Optional

import numpy as np


def auc(labels, scores) -> float:
  """Exact ROC AUC by ranks (Mann-Whitney U), ties counted as half.

  Args:
    labels: [N] 0/1.
    scores: [N] any real scores.

  Returns:
    The AUC, or NaN when all labels are equal.
  """
  labels = np.asarray(labels).reshape(-1).astype(bool)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  if labels.shape != scores.shape:
    raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ")
  num_pos = int(labels.sum())
  num_neg = labels.size - num_pos
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(labels.size, dtype=np.float64)
  # Average ranks over runs of tied scores.
  boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [labels.size]])
  avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
  ranks[order] = np.repeat(avg, ends - starts)
  u = ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0
  return float(u / (num_pos * num_neg))


def grouped_auc(labels, scores, groups) -> float:
  """gAUC: per-group AUC weighted by the group's impressions.

  Groups whose labels are all equal have no AUC and are left out, as in DIN.

  Returns:
    The weighted mean, or NaN when no group has both labels.
  """
  labels = np.asarray(labels).reshape(-1)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1)
  groups = np.asarray(groups).reshape(-1)
  order = np.argsort(groups, kind="mergesort")
  labels, scores, groups = labels[order], scores[order], groups[order]
  boundaries = np.flatnonzero(groups[1:] != groups[:-1]) + 1
  total, weight = 0.0, 0
  for lab, sco in zip(np.split(labels, boundaries), np.split(scores, boundaries)):
    value = auc(lab, sco)
    if not np.isnan(value):
      total += value * lab.size
      weight += lab.size
  return total / weight if weight else float("nan")


def logloss(labels, probs, eps: float = 1e-7) -> float:
  """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps]."""
  labels = np.asarray(labels, dtype=np.float64).reshape(-1)
  probs = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1 - eps)
  return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log1p(-probs)))


def ctr_report(labels, probs, users: Optional[np.ndarray] = None) -> dict:
  """The metrics we print for every evaluation: AUC, gAUC, logloss, counts."""
  report = {
      "auc": auc(labels, probs),
      "logloss": logloss(labels, probs),
      "impressions": int(np.size(labels)),
      "positives": int(np.sum(labels)),
  }
  if users is not None:
    report["gauc"] = grouped_auc(labels, probs, users)
  return report
