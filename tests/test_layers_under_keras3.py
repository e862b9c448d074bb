"""The layer test modules under Keras 3 (issue 27): this suite binds tf-keras
(conftest.py), so test_layer_saving.py, test_layer_training_state.py and
test_layer_examples.py run again in a subprocess without TF_USE_LEGACY_KERAS
and with EGIN_TF_TEST_KERAS=3, where tf.keras is Keras 3; here they run under
tf-keras.
"""

import os
import re
import subprocess
import sys

from conftest import REPO_ROOT

MODULES = ["tests/test_layer_saving.py", "tests/test_layer_training_state.py",
           "tests/test_layer_examples.py"]
# Keras 3 saves only .keras files: the SavedModel-format tests skip there.
KERAS2_ONLY = 2


def test_the_layer_modules_pass_under_keras3():
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_USE_LEGACY_KERAS", "PYTEST_XDIST_TESTRUNUID")}
  env["EGIN_TF_TEST_KERAS"] = "3"
  run = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
       "-rs", *MODULES],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
  out = run.stdout + run.stderr
  assert run.returncode == 0, out[-5000:]
  summary = run.stdout.strip().splitlines()[-1]
  assert not re.search(r"failed|error", summary), out[-5000:]
  passed = re.search(r"(\d+) passed", summary)
  skipped = re.search(r"(\d+) skipped", summary)
  assert passed and int(passed.group(1)) > 0, summary
  assert skipped and int(skipped.group(1)) == KERAS2_ONLY, summary
  assert re.search(rf"SKIPPED \[{KERAS2_ONLY}\] .*Keras 3 saves only .keras files",
                   run.stdout), out[-5000:]
