"""Exact evaluation of a trained model: AUC, gAUC and logloss beside the oracle's.

The metrics are pure numpy and live in `data_pipeline.ranking_metrics`, the lower
layer, so the simulator computes its oracle with the same code.
"""

from typing import Any, Callable, Dict, Optional

import numpy as np

from data_pipeline.data_split import DataSplit
from data_pipeline.ranking_metrics import ctr_report
from data_pipeline.tf_env import tf
from egin_tf.models.base import CTRModel
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train.config import TrainConfig
from egin_tf.train.model_input import model_dataset


def predict(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
  """pctr, label and user_id of every example, in dataset order."""
  out = model.predict(dataset, verbose=0)
  return {k: np.asarray(v).reshape(-1) for k, v in out.items()}


def exact_report(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, float]:
  """Exact AUC, gAUC and logloss of a model on a dataset."""
  out = predict(model, dataset)
  return ctr_report(out["label"], out["pctr"], out["user_id"])


def format_report(report: Dict[str, float], oracle: Optional[Dict] = None,
                  title: str = "model") -> str:
  """A small table: the model's exact metrics beside the oracle's."""
  rows = [("", "AUC", "gAUC", "logloss", "impressions")]
  rows.append((title, f"{report['auc']:.4f}", f"{report.get('gauc', float('nan')):.4f}",
               f"{report['logloss']:.4f}", str(report["impressions"])))
  if oracle:
    rows.append(("oracle (true p)", f"{oracle['test_auc']:.4f}",
                 f"{oracle.get('test_gauc', float('nan')):.4f}",
                 f"{oracle.get('test_logloss', float('nan')):.4f}",
                 str(oracle.get("test_impressions", ""))))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)


def evaluate_and_print(model: CTRModel, split: DataSplit, config: TrainConfig,
                       print_fn: Callable[[str], None] = print) -> Dict[str, Any]:
  """Exact metrics on ``split``, printed beside the oracle's:
  ``{"eval": report, "oracle": oracle or None}`` (offline and stream training)."""
  report = exact_report(model, model_dataset(split, config, False))
  print_fn(format_report(report, split.oracle, title=f"test ({config.model})"))
  return {"eval": report, "oracle": split.oracle}


def evaluate(model_dir: str, data_pattern: str,
             batch_size: Optional[int] = None) -> Dict[str, Any]:
  """Exact metrics of a trained model on data; ``oracle`` if the data has one."""
  model, config, _, lengths = model_dir_lib.load_model(model_dir, TrainConfig)
  split = DataSplit.resolve(data_pattern, "test", lengths)
  report = exact_report(model, model_dataset(split, config, False, batch_size=batch_size))
  return {"eval": report, "oracle": split.oracle}
