"""Exact evaluation of a trained model: AUC, gAUC and logloss beside the oracle's.

The metrics are pure numpy and live in `data_pipeline.ranking_metrics`, the lower
layer, so the simulator computes its oracle with the same code.
"""

import json
import os
from typing import Any, Callable, Dict, Optional

import numpy as np

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.ranking_metrics import ctr_report
from data_pipeline.tf_env import tf
from egin_tf.models.base import CTRModel
from egin_tf.train import model_dir as model_dir_lib
from egin_tf.train.config import TrainConfig
from egin_tf.train.data_split import model_dataset

ORACLE_FILE = "oracle.json"


def predict(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
  """pctr, label and user_id of every example, in dataset order."""
  out = model.predict(dataset, verbose=0)
  return {k: np.asarray(v).reshape(-1) for k, v in out.items()}


def exact_report(model: CTRModel, dataset: tf.data.Dataset) -> Dict[str, float]:
  """Exact AUC, gAUC and logloss of a model on a dataset."""
  out = predict(model, dataset)
  return ctr_report(out["label"], out["pctr"], out["user_id"])


def load_oracle(pattern: str) -> Optional[Dict[str, Any]]:
  """The simulator's ``oracle.json`` beside the files, if there is one."""
  directory = os.path.dirname(reader.match_files(pattern)[0])
  path = os.path.join(directory, ORACLE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


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


def evaluate_and_print(model: CTRModel, eval_pattern: str, config: TrainConfig,
                       schema: schema_lib.DatasetSchema,
                       print_fn: Callable[[str], None] = print) -> Dict[str, Any]:
  """Exact metrics on ``eval_pattern``, printed beside the oracle's:
  ``{"eval": report, "oracle": oracle or None}`` (offline and stream training)."""
  report = exact_report(model, model_dataset(eval_pattern, config, False, schema))
  oracle = load_oracle(eval_pattern)
  print_fn(format_report(report, oracle, title=f"test ({config.model})"))
  return {"eval": report, "oracle": oracle}


def evaluate(model_dir: str, data_pattern: str,
             batch_size: Optional[int] = None) -> Dict[str, Any]:
  """Exact metrics of a trained model on data; ``oracle`` if the data has one."""
  model, config, _, _ = model_dir_lib.load_model(model_dir, TrainConfig)
  data_pattern = reader.split_pattern(data_pattern, "test")
  schema = schema_lib.schema_for_files(reader.match_files(data_pattern))
  report = exact_report(model, model_dataset(data_pattern, config, False, schema,
                                             batch_size=batch_size))
  return {"eval": report, "oracle": load_oracle(data_pattern)}
