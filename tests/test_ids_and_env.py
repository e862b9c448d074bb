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


def test_keras3_already_imported_is_a_clear_error():
  script = ("import tensorflow as tf; tf.keras.layers\n"
            "import egin_tf")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                        text=True, env={"PATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.returncode != 0
  assert "ImportError: egin-tf needs TensorFlow with Keras 2" in proc.stderr


def test_importing_egin_tf_first_binds_keras2():
  script = ("import egin_tf, tensorflow as tf, tensorflow_recommenders as tfrs\n"
            "print(tf.keras.__name__)")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                        text=True, check=True,
                        env={"PATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.stdout.strip().startswith("tf_keras")
