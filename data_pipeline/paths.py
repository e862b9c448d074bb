"""File access through `tf.io.gfile`, so datasets live on any TF filesystem.

Every file data_pipeline reads or writes goes through `tf.io.gfile` (plain local
paths as before, and ``gs://``, ``hdfs://``, ``ram://`` ... URLs). These helpers
keep the few things where gfile and Python's own file functions differ in one
place: absolute paths (only local paths are made absolute), a missing file being a
`FileNotFoundError` as with ``open``, fast buffered line reading (a bare
``GFile.readline`` is many times slower than ``open``'s), temporary sibling folders,
renaming a whole folder (``ram://`` renames only the folder's own entry), sizes,
fsync of local files, folder listings without object stores' trailing ``/`` and
``.npz`` files (egin_tf's model directories, exports and caches use them too).

TF's ``ram://`` also matches folders by string prefix (``ram://d/x`` "exists" while
``ram://d/x.tmp`` does), so temporary folders are hidden siblings (``.x.tmp-*``).
"""

import errno
import io
import os
import uuid
from typing import BinaryIO, List, Optional

import numpy as np

from data_pipeline.tf_env import tf

_READ_BUFFER = 1 << 20


def is_url(path: str) -> bool:
  """True for ``scheme://...`` paths (``gs://``, ``hdfs://``, ``ram://``, ...)."""
  return "://" in path


def abspath(path: str) -> str:
  """``os.path.abspath`` for local paths; URLs unchanged."""
  return path if is_url(path) else os.path.abspath(path)


def _missing(path: str) -> FileNotFoundError:
  return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


def check_readable_file(path: str) -> None:
  """Raises what ``open(path, "rb")`` would for a missing path or a folder."""
  if not tf.io.gfile.exists(path):
    raise _missing(path)
  if tf.io.gfile.isdir(path):
    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)


class _GFileRaw(io.RawIOBase):
  """A read-only `tf.io.gfile.GFile` as raw IO, so `io.BufferedReader` can wrap it.

  TF errors while reading become `OSError`s, as a local file's would be.
  """

  def __init__(self, path: str):
    super().__init__()
    self._file = tf.io.gfile.GFile(path, "rb")

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    try:
      data = self._file.read(len(buffer))
    except tf.errors.OpError as e:
      raise OSError(e.message) from e
    buffer[:len(data)] = data
    return len(data)

  def tell(self) -> int:
    return self._file.tell()

  def close(self) -> None:
    if not self.closed:
      self._file.close()
    super().close()


def open_read_binary(path: str) -> BinaryIO:
  """Opens ``path`` for reading bytes through gfile, buffered.

  Raises:
    FileNotFoundError: no such file (IsADirectoryError: a folder), as ``open``.
  """
  check_readable_file(path)
  return io.BufferedReader(_GFileRaw(path), _READ_BUFFER)


def read_text(path: str) -> str:
  """A text file's contents (UTF-8); FileNotFoundError if it does not exist."""
  check_readable_file(path)
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path``, replacing it."""
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(text.encode("utf-8"))


def size(path: str) -> Optional[int]:
  """The file's size in bytes, None if it cannot be read."""
  try:
    return tf.io.gfile.stat(path).length
  except tf.errors.OpError:
    return None


def mtime_ns(path: str) -> int:
  """The file's modification time in nanoseconds (0 where a filesystem has none)."""
  return tf.io.gfile.stat(path).mtime_nsec


def make_temp_dir(parent: str, prefix: str) -> str:
  """Creates a new, uniquely named folder ``parent/prefix<random>``: its path."""
  while True:
    path = os.path.join(parent, prefix + uuid.uuid4().hex[:12])
    if not tf.io.gfile.exists(path):
      tf.io.gfile.mkdir(path)
      return path


def rename_dir(src: str, dst: str) -> None:
  """Renames the folder ``src`` to ``dst`` (which must not exist).

  Local paths: one ``os.rename``, atomic, with its errors. Elsewhere: one
  `tf.io.gfile.rename` (HDFS: atomic; GCS: object by object), FileExistsError if
  ``dst`` exists; a filesystem whose rename moves only the folder's own entry
  (TF's ``ram://``) leaves ``src``'s files behind: they are then moved one by one
  and ``src`` removed.
  """
  if not is_url(src):
    os.rename(src, dst)
    return
  files = _files_under(src)  # before: after the rename, src's listing is undefined
  try:
    tf.io.gfile.rename(src, dst, overwrite=False)
  except tf.errors.AlreadyExistsError:
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
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


def _files_under(directory: str) -> List[str]:
  """Paths of the files under ``directory``, relative to it."""
  out = []
  for root, _, names in tf.io.gfile.walk(directory):
    rel = os.path.relpath(root, directory)
    out.extend(name if rel == "." else os.path.join(rel, name) for name in names)
  return out


def rmtree(path: str, ignore_errors: bool = False) -> None:
  """Removes a folder and everything in it (``shutil.rmtree``)."""
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.OpError:
    if not ignore_errors:
      raise


def fsync(path: str) -> None:
  """Forces a written local file to disk (other filesystems: nothing to do;
  their files are complete once closed)."""
  if not is_url(path):
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
