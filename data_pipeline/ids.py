"""The one stable hash that turns raw ids (strings or ints) into int64 ids.

Every converter maps users, items, queries and categories through `stable_id`, so the
same raw id gets the same int64 id in every process, machine and Python version
(unlike Python's salted ``hash``). 0 is reserved for padding and never returned.

Definition (public, do not change): take the id's canonical text (``str(x)`` for ints,
the string itself otherwise), encode it as UTF-8, take the 8-byte BLAKE2b digest,
read it as a little-endian unsigned integer and keep the low 63 bits; a result of 0
becomes 1. Ints and their decimal strings therefore share an id (5 and "5").
"""

import hashlib
from typing import Union

RawId = Union[str, int]

_MASK_63 = (1 << 63) - 1


def stable_id(raw: RawId) -> int:
  """Maps a raw id to a positive int64 id; 0 is never returned (it is padding).

  Args:
    raw: a string or an int (bools are rejected: they are not ids).

  Returns:
    An int in [1, 2**63 - 1].
  """
  if isinstance(raw, bool) or not isinstance(raw, (str, int)):
    raise TypeError(f"an id must be a string or an int, got {type(raw).__name__}")
  text = str(raw)
  digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
  value = int.from_bytes(digest, "little") & _MASK_63
  return value or 1
