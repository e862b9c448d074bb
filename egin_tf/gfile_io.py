"""Small `tf.io.gfile` helpers: the library's files on any TF filesystem.

Every file egin_tf reads or writes goes through `tf.io.gfile`, so model
directories, exports and caches may be local paths or ``gs://``, ``hdfs://``,
``ram://`` URLs. What `tf.io.gfile` does not give the same way everywhere is
here: absolute paths, fsync of local files, and renaming a whole folder (TF's
``ram://`` filesystem renames only the folder's own entry, not its files).
"""

import io
import os
from typing import List

import numpy as np

from data_pipeline.tf_env import tf


def is_local(path: str) -> bool:
  """True for a path of the local filesystem (no ``scheme://``)."""
  return "://" not in path


def absolute(path: str) -> str:
  """A local path made absolute; a filesystem URL (``gs://...``) as given."""
  return os.path.abspath(path) if is_local(path) else path


def fsync(path: str) -> None:
  """Forces a written local file to disk (other filesystems: nothing to do;
  their files are complete once closed)."""
  if is_local(path):
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def _files_under(directory: str) -> List[str]:
  """Paths of the files under ``directory``, relative to it."""
  out = []
  for root, _, files in tf.io.gfile.walk(directory):
    rel = os.path.relpath(root, directory) if root != directory else ""
    out.extend(os.path.join(rel, name) if rel not in ("", ".") else name
               for name in files)
  return out


def rename_dir(src: str, dst: str) -> None:
  """Renames folder ``src`` to ``dst``, which must not exist (or, locally, be an
  empty folder: rename(2)).

  Local paths: one rename(2), atomic; errors as `os.rename`'s (OSError with
  errno ENOTEMPTY/EEXIST when ``dst`` has files). Elsewhere: `tf.io.gfile.rename`
  (hdfs: atomic; gcs: object by object), raising ``FileExistsError`` when ``dst``
  exists; files the filesystem left behind (``ram://`` moves only the folder's
  own entry) are then moved one by one.
  """
  if is_local(src):
    os.rename(src, dst)
    return
  files = _files_under(src)
  try:
    tf.io.gfile.rename(src, dst, overwrite=False)
  except tf.errors.AlreadyExistsError:
    raise FileExistsError(f"{dst} already exists") from None
  for rel in files:
    old, new = os.path.join(src, rel), os.path.join(dst, rel)
    if tf.io.gfile.exists(old) and not tf.io.gfile.exists(new):
      tf.io.gfile.makedirs(os.path.dirname(new))
      tf.io.gfile.rename(old, new)
  try:  # what is left of src: its (now empty) subfolders' entries
    if tf.io.gfile.exists(src):
      tf.io.gfile.rmtree(src)
  except tf.errors.NotFoundError:
    pass


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
