"""The oracle report: exact metrics of the true click probabilities, by split."""

import dataclasses

import numpy as np

from data_pipeline import ranking_metrics as metrics
from data_pipeline.simulator.config import TEST, TRAIN, SimulatorConfig, split_time


def oracle_report(config: SimulatorConfig, splits: np.ndarray, labels: np.ndarray,
                  probs: np.ndarray, users: np.ndarray, positions: np.ndarray
                  ) -> dict:
  """The oracle dict: exact metrics of the true probabilities, by split.

  Args:
    config: the simulator's knobs (copied into the report).
    splits, labels, probs, users, positions: [N] per impression.

  Returns:
    ``{split}_auc``, ``{split}_gauc`` (grouped by user), ``{split}_logloss``,
    ``{split}_impressions`` and ``{split}_positives`` for "train" and "test" (NaN
    metrics for an empty split), ``test_position_auc`` (the AUC of the position
    alone, a trivial baseline), ``split_time`` and ``config``.
  """
  report = {}
  for split in (TRAIN, TEST):
    rows = splits == split
    y, p = labels[rows], probs[rows]
    empty = not y.size
    report[f"{split}_auc"] = float("nan") if empty else metrics.auc(y, p)
    report[f"{split}_gauc"] = (float("nan") if empty else
                               metrics.grouped_auc(y, p, users[rows]))
    report[f"{split}_logloss"] = float("nan") if empty else metrics.logloss(y, p)
    report[f"{split}_impressions"] = int(y.size)
    report[f"{split}_positives"] = int(y.sum())
  test = splits == TEST
  report["test_position_auc"] = (metrics.auc(labels[test], -positions[test])
                                 if test.any() else float("nan"))
  report["split_time"] = split_time(config)
  report["config"] = dataclasses.asdict(config)
  return report
