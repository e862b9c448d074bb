"""EGIN's layers in a user's own Keras model, under Keras 3 and under tf-keras.

examples/keras3_pipeline.py (a user's subclassed model with SimExtract and
GraphLearning) runs in a fresh process: without TF_USE_LEGACY_KERAS,
``tf.keras`` is Keras 3 there and the layers subclass it; with it, tf-keras. The
same checks hold in both (issue 27).
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "keras3_pipeline.py")


def _run(legacy: bool, out_dir: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  if legacy:
    env["TF_USE_LEGACY_KERAS"] = "1"
  proc = subprocess.run([sys.executable, SCRIPT, out_dir], capture_output=True,
                        text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("legacy,keras,layer_base", [
    (False, "keras", "keras.src."), (True, "tf_keras", "tf_keras.")],
    ids=["keras3", "tf_keras"])
def test_a_user_model_trains_predicts_and_reloads(legacy, keras, layer_base, tmp_path):
  seen = _run(legacy, str(tmp_path / "out"))  # not there yet, as in the README
  assert seen["keras"].startswith(keras), seen
  assert seen["layer_base"].startswith(layer_base), seen
  # Items (4 x 64), queries (4 x 32), SimExtract's bins, positions and empty
  # slot, the head's kernel and bias, then the graph step and both queues'
  # ids, write position, filled and sample step.
  assert seen["weights"] == 16, seen
  # Every click is valid, so no slot is empty: only the empty-slot vector is
  # untouched; the query table is trained by the graph losses alone.
  (unchanged,) = seen["unchanged_by_fit"]
  assert "empty_embedding" in unchanged, seen
  # The state's sums: the graph's step, then each queue's ids, write position,
  # filled and sample step. 3 steps of 4 rows: each queue takes 4 x 5 history
  # ids + 4 current ids a step (72 in all) and draws once a step.
  step, item_ids, *item_queue = seen["state_after_fit"][:5]
  query_ids, *query_queue = seen["state_after_fit"][5:]
  assert step == 3 and item_queue == query_queue == [72, 72, 3], seen
  assert item_ids > 0 and query_ids > 0, seen
  assert not seen["state_changed_by_inference"], seen
  assert seen["reloaded_prediction_gap"] <= 1e-6, seen
  assert seen["reloaded_state_equal"], seen
