"""The id hash is stable across processes; the package insists on Keras 2."""

import subprocess
import sys

import pytest

from data_pipeline.ids import stable_id

# Fixed values of the documented hash (BLAKE2b-64, low 63 bits): a change here
# silently re-keys every converted dataset and trained table.
_SCRIPT = ("from data_pipeline.ids import stable_id; "
           "print([stable_id(x) for x in ['item-42', 42, '42', '', 'é']])")


def test_hash_is_stable_across_processes():
  outputs = set()
  for seed in ("0", "1", "random"):
    out = subprocess.run([sys.executable, "-c", _SCRIPT], check=True,
                         capture_output=True, text=True,
                         env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
    outputs.add(out.strip())
  assert len(outputs) == 1
  assert outputs.pop() == str([stable_id(x) for x in ["item-42", 42, "42", "", "é"]])


def test_hash_definition():
  import hashlib
  digest = hashlib.blake2b(b"item-42", digest_size=8).digest()
  assert stable_id("item-42") == int.from_bytes(digest, "little") & (2**63 - 1)
  assert stable_id(42) == stable_id("42")
  values = [stable_id(f"x{i}") for i in range(10_000)]
  assert all(0 < v < 2**63 for v in values)
  assert len(set(values)) == len(values)


@pytest.mark.parametrize("bad", [True, 1.5, None, ["a"]])
def test_hash_rejects_non_ids(bad):
  with pytest.raises(TypeError, match="string or an int"):
    stable_id(bad)


def _python(script: str, check: bool = False) -> subprocess.CompletedProcess:
  """Runs ``script`` in a fresh Python without TF_USE_LEGACY_KERAS."""
  return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        check=check, env={"PATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_a_trainer_package_after_keras3_is_a_one_line_error_naming_it():
  proc = _python("import tensorflow as tf; tf.keras.layers\nimport egin_tf.models")
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("ImportError: egin_tf.models needs TensorFlow's Keras 2"), last
  assert "egin_tf.layers alone works with Keras 3" in last


def test_importing_the_layers_leaves_keras3_as_it_is():
  proc = _python("import os, keras, tensorflow as tf\nimport egin_tf, egin_tf.layers\n"
                 "print(tf.keras.__name__, os.environ.get('TF_USE_LEGACY_KERAS'))\n"
                 "print(egin_tf.layers.SimExtract.__mro__[1].__module__)", check=True)
  keras_name, legacy, layer_base = proc.stdout.split()
  assert keras_name.startswith("keras") and legacy == "None", proc.stdout
  assert layer_base.startswith("keras.src"), proc.stdout  # Keras 3's Layer


def test_a_trainer_package_imported_first_binds_keras2():
  proc = _python("import egin_tf.models, tensorflow as tf, tensorflow_recommenders as tfrs\n"
                 "print(tf.keras.__name__)", check=True)
  assert proc.stdout.strip().startswith("tf_keras")
