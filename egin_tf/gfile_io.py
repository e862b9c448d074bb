"""Small `tf.io.gfile` helpers: the library's files on any TF filesystem.

Every file egin_tf reads or writes goes through `tf.io.gfile`, so model
directories, exports and caches may be local paths or ``gs://``, ``hdfs://``,
``ram://`` URLs. Beside `data_pipeline.paths` (absolute paths, renaming a whole
folder, reading and writing text), what egin_tf adds: fsync of local files,
folder listings without object stores' trailing ``/``, ``.npz`` files.
"""

import io
import os
from typing import List

import numpy as np

from data_pipeline import paths
from data_pipeline.tf_env import tf


def fsync(path: str) -> None:
  """Forces a written local file to disk (other filesystems: nothing to do;
  their files are complete once closed)."""
  if not paths.is_url(path):
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def listdir(directory: str) -> List[str]:
  """Names in ``directory`` (without the trailing ``/`` some object stores give
  folders)."""
  return [name.rstrip("/") for name in tf.io.gfile.listdir(directory)]


def save_npz(path: str, **arrays: np.ndarray) -> None:
  """`np.savez` of ``arrays`` to ``path`` (any filesystem; not atomic)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buffer.getvalue())


def load_npz(path: str) -> "np.lib.npyio.NpzFile":
  """`np.load` of an ``.npz`` at ``path`` (any filesystem)."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return np.load(io.BytesIO(f.read()))
