"""Reading raw text logs line by line, shared by the converters.

`numbered_lines` yields 1-based line numbers with each line's bytes (line breaks
and a leading UTF-8 byte-order mark removed), so every converter reports bad rows
as ``file:line: reason``; a file that cannot be read on (a corrupt or truncated
``.gz``) is a `BadRecordError` of kind ``unreadable_file``, which skipping cannot
fix. `ReadProgress` reports, through `numbered_lines`, the lines read over a
conversion's passes with the total and the share done when they can be known
cheaply (the files' sizes; a file's lines once a pass has read it).
"""

import codecs
import functools
import gzip
import zlib
from typing import BinaryIO, Callable, Dict, Iterator, Optional, Sequence, Tuple

from data_pipeline import paths as paths_lib
from data_pipeline.bad_input import BadRecordError
from data_pipeline.ids import RawId, stable_id

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
FLOAT32_MAX = 3.4028234663852886e38


class _GzipReader(gzip.GzipFile):
  """A `gzip.GzipFile` over a file object it closes with itself."""

  def __init__(self, source: BinaryIO):
    super().__init__(fileobj=source, mode="rb")
    self._source = source

  def close(self) -> None:
    try:
      super().close()
    finally:
      self._source.close()


def open_binary(path: str) -> BinaryIO:
  """Opens a file (any `tf.io.gfile` path) for reading bytes, decompressing ``.gz``.

  Raises:
    FileNotFoundError: no such file, as ``open``.
  """
  source = paths_lib.open_read_binary(path)
  if path.endswith(".gz"):
    return _GzipReader(source)
  return source


# progress(lines, total_lines, fraction); see `ReadProgress`.
ProgressCallback = Callable[[int, Optional[int], Optional[float]], None]


def _bytes_read(f: BinaryIO) -> int:
  """Bytes of the file on disk consumed so far (compressed bytes of a .gz)."""
  return getattr(f, "fileobj", f).tell()


class ReadProgress:
  """Reports the lines read over a conversion's passes to a progress callback.

  Each pass reads one of ``paths`` through `numbered_lines`, which calls `report`
  every ``every`` lines and `end_pass` at the end of the file. The callback gets
  (lines read so far over all passes, the lines of all passes or None while a file
  is still unread, the share of the work done or None): the share is by lines once
  the total is known, else by bytes read of the files' sizes (compressed bytes for
  ``.gz``), None if a size is unknown.
  """

  def __init__(self, progress: Optional[ProgressCallback], paths: Sequence[str],
               every: int = 10_000):
    self._progress = progress
    self._paths = list(paths)
    self._sizes = [paths_lib.size(path) for path in self._paths]
    self.every = every
    self._pass = 0
    self._done_lines = 0
    self._done_bytes = 0
    self._lines_of: Dict[str, int] = {}

  def report(self, lines_in_pass: int, f: BinaryIO) -> None:
    if self._progress is not None:
      self._progress(*self._state(lines_in_pass, _bytes_read(f)))

  def end_pass(self, lines_in_pass: int) -> None:
    if self._pass < len(self._paths):
      self._lines_of[self._paths[self._pass]] = lines_in_pass
      self._done_bytes += self._sizes[self._pass] or 0
    self._pass += 1
    self._done_lines += lines_in_pass
    if self._progress is not None:
      self._progress(*self._state(0, 0))

  def _state(self, lines: int, bytes_read: int
             ) -> Tuple[int, Optional[int], Optional[float]]:
    done = self._done_lines + lines
    known = [self._lines_of.get(path) for path in self._paths]
    if None not in known:
      total = sum(known)
      return done, total, min(1.0, done / total) if total else 1.0
    if None in self._sizes or not sum(self._sizes):
      return done, None, None
    return done, None, min(1.0, (self._done_bytes + bytes_read) / sum(self._sizes))


def numbered_lines(f: BinaryIO, path: str,
                   progress: Optional[ReadProgress] = None
                   ) -> Iterator[Tuple[int, bytes]]:
  """Yields (1-based line number, line without its line break).

  With ``progress``, reports every ``progress.every`` lines and at the end.
  """
  line = 0
  while True:
    try:
      raw = f.readline()
    except (OSError, EOFError, zlib.error) as e:
      # A corrupt or truncated .gz cannot be read past this point: not skippable.
      raise BadRecordError(path, line + 1, f"cannot read the file: {e}",
                           "unreadable_file") from e
    if not raw:
      if progress is not None:
        progress.end_pass(line)
      return
    line += 1
    if progress is not None and line % progress.every == 0:
      progress.report(line, f)
    if raw.endswith(b"\n"):
      raw = raw[:-1]
      if raw.endswith(b"\r"):
        raw = raw[:-1]
    if line == 1 and raw.startswith(codecs.BOM_UTF8):
      raw = raw[len(codecs.BOM_UTF8):]
    yield line, raw


def cached_stable_id(max_size: int = 1 << 18) -> Callable[[RawId], int]:
  """`stable_id` behind a bounded LRU cache.

  Raw ids repeat a lot in logs (an item clicked once sits in every later
  impression's history); the cache skips most hashing and keeps memory flat.
  """
  return functools.lru_cache(maxsize=max_size)(stable_id)
