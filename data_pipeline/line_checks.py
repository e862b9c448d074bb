"""What the line-based converters (jsonl, taobao, jdsearch, trivago) check alike.

A converter's parser raises `InvalidLine` for a line that breaks its format; the
converter, which knows the file and line number, turns it into a
`bad_input.BadRecordError`. One home for the UTF-8 check and the split-name check
keeps their messages the same in every format.
"""

import dataclasses
import re

from data_pipeline.bad_input import BadRecordPolicy, NoImpressionsError

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class InvalidLine(Exception):
  """A line breaks the format; becomes a `BadRecordError` once the line is known.

  Not a ValueError on purpose: it must pass through ``json.loads`` hooks untouched.

  Attributes:
    kind: the bad-line kind the report counts (e.g. "not_utf8").
    reason: what is wrong, in words.
  """

  def __init__(self, kind: str, reason: str):
    super().__init__(reason)
    self.kind = kind
    self.reason = reason

  def within(self, subject: str) -> "InvalidLine":
    """The same problem, its reason prefixed with what it is about."""
    sep = "" if self.reason.startswith("[") else " "
    return InvalidLine(self.kind, f"{subject}{sep}{self.reason}")


def decode_utf8(raw: bytes) -> str:
  """``raw`` decoded as UTF-8; raises `InvalidLine` naming the first bad byte."""
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise InvalidLine("not_utf8", f"not UTF-8: byte 0x{raw[e.start]:02x} at column "
                      f"{e.start + 1}") from None


def check_split_name(split: str) -> None:
  """Raises ValueError unless ``split`` is a plain name (it names shard files)."""
  if not _SPLIT_NAME.fullmatch(split):
    raise ValueError(f"split {split!r} is not a plain name (letters, digits, _ . -)")


@dataclasses.dataclass
class WriteCounts:
  """What a converter's pass has read and written so far."""
  lines_read: int = 0
  written: int = 0
  positives: int = 0


def check_some_written(written: int, input_path: str, read: str,
                       policy: BadRecordPolicy) -> None:
  """Raises `NoImpressionsError` if nothing was written; ``read`` says what was read."""
  if not written:
    raise NoImpressionsError(f"{input_path}: no impressions to convert "
                             f"({read}; {policy.summary()})")
