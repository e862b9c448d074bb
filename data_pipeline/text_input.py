"""Reading raw text logs line by line, shared by the converters.

`numbered_lines` yields 1-based line numbers with each line's bytes (line breaks
and a leading UTF-8 byte-order mark removed), so every converter reports bad rows
as ``file:line: reason``; a file that cannot be read on (a corrupt or truncated
``.gz``) is a `BadRecordError` of kind ``unreadable_file``, which skipping cannot
fix.
"""

import codecs
import functools
import gzip
import zlib
from typing import BinaryIO, Callable, Iterator, Tuple

from data_pipeline.bad_input import BadRecordError
from data_pipeline.ids import RawId, stable_id

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
FLOAT32_MAX = 3.4028234663852886e38


def open_binary(path: str) -> BinaryIO:
  """Opens a file for reading bytes, decompressing ``.gz``."""
  if path.endswith(".gz"):
    return gzip.open(path, "rb")
  return open(path, "rb")


def numbered_lines(f: BinaryIO, path: str) -> Iterator[Tuple[int, bytes]]:
  """Yields (1-based line number, line without its line break)."""
  line = 0
  while True:
    try:
      raw = f.readline()
    except (OSError, EOFError, zlib.error) as e:
      # A corrupt or truncated .gz cannot be read past this point: not skippable.
      raise BadRecordError(path, line + 1, f"cannot read the file: {e}",
                           "unreadable_file") from e
    if not raw:
      return
    line += 1
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
