"""Exact ranking metrics for egin_tf: AUC, gAUC, logloss and the evaluation report.

They are pure numpy and live in `data_pipeline.ranking_metrics`, the lower layer, so the
simulator can use them too; this module keeps ``egin_tf.metrics.<name>`` working.
"""

from data_pipeline.ranking_metrics import auc, ctr_report, grouped_auc, logloss

__all__ = ["auc", "ctr_report", "grouped_auc", "logloss"]
