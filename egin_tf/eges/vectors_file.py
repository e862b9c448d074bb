"""The ``.npz`` file of EGES item vectors that stage 1 writes and the CTR model reads.

It holds ``ids`` int64 [n] (positive, distinct, sorted) and ``vectors`` float32
[n, dim] (H_v of every graph node).
"""

import os
import uuid
from typing import Tuple

import numpy as np

from data_pipeline import paths
from data_pipeline.tf_env import tf
from egin_tf import gfile_io


def save_embeddings(path: str, ids: np.ndarray, vectors: np.ndarray) -> str:
  """Writes ``ids`` [n] and ``vectors`` [n, d] to ``path`` (.npz) atomically."""
  directory = os.path.dirname(paths.abspath(path))
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".eges-{uuid.uuid4().hex[:12]}.npz")
  try:
    gfile_io.save_npz(tmp, ids=np.asarray(ids, np.int64),
                      vectors=np.asarray(vectors, np.float32))
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


def load_embeddings(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads and checks an EGES ``.npz``: ids int64 [n] sorted, vectors float32 [n, d].

  Raises:
    FileNotFoundError, ValueError: naming the file and what is wrong.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no EGES embeddings file (made by train_eges)")
  with gfile_io.load_npz(path) as saved:
    missing = sorted({"ids", "vectors"} - set(saved.files))
    if missing:
      raise ValueError(f"{path}: not an EGES embeddings file, missing {missing}")
    ids, vectors = saved["ids"], saved["vectors"]
  _check_table(path, ids, vectors)
  return ids.astype(np.int64), vectors.astype(np.float32)


def _check_table(path: str, ids: np.ndarray, vectors: np.ndarray) -> None:
  """Raises ValueError naming ``path`` unless ids and vectors form a table."""
  if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{path}: ids must be a 1-D integer array, got "
                     f"{ids.dtype} {ids.shape}")
  if vectors.ndim != 2 or vectors.shape[0] != ids.size:
    raise ValueError(f"{path}: vectors must be [{ids.size}, d] like ids, got "
                     f"{vectors.shape}")
  if ids.size == 0:
    raise ValueError(f"{path}: the table is empty")
  if np.any(ids <= 0) or np.any(np.diff(ids) <= 0):
    raise ValueError(f"{path}: ids must be positive, distinct and sorted")
  if not np.all(np.isfinite(vectors)):
    raise ValueError(f"{path}: vectors hold NaN or infinity")
