"""Bad input records: the error every converter raises, the stop|skip policy, the report.

Format-independent: the JSONL, Taobao CSV, trivago and JDsearch converters all point at
a bad record the same way (``path:line: reason``) and count skipped records by a short
``kind`` (e.g. "invalid_json", "missing_key") so a report can say what went wrong how
often and where to look first. Records that look odd but are the dataset as its
authors publish it (e.g. a trivago session id reused with its steps restarting) are
no bad records: they are converted as the authors intend and counted as `Quirks`.
"""

import dataclasses
from typing import Dict, Optional

ON_BAD_CHOICES = ("stop", "skip")


class BadRecordError(ValueError):
  """One input record (line) that cannot be converted.

  ``str(error)`` is exactly ``path:line: reason`` (1-based line), the form editors and
  terminals turn into a link to the offending line.

  Attributes:
    path: the input file as the user named it.
    line: 1-based line (record) number.
    reason: what is wrong, in words, naming the key or field.
    kind: a short stable name of the kind of problem, for counting.
  """

  def __init__(self, path: str, line: int, reason: str, kind: str):
    super().__init__(f"{path}:{line}: {reason}")
    self.path = path
    self.line = line
    self.reason = reason
    self.kind = kind

  def __reduce__(self):
    # Exceptions pickle through their args; keep all four fields across processes.
    return (type(self), (self.path, self.line, self.reason, self.kind))


class BadShardRecordError(BadRecordError):
  """One record of a binary shard (a TFRecord file) that cannot be read or parsed.

  ``str(error)`` is ``path: record N: reason``: binary shards have records, not
  lines, so ``line`` holds N, the 0-based record index.
  """

  def __init__(self, path: str, record: int, reason: str, kind: str):
    super().__init__(path, record, reason, kind)
    self.args = (f"{path}: record {record}: {reason}",)

  def __str__(self) -> str:
    return self.args[0]


class NoImpressionsError(ValueError):
  """The input held no convertible record (empty, or every record was skipped)."""


class BadRecordPolicy:
  """Stops at the first bad record or skips it and counts it, per kind.

  Example:
    policy = BadRecordPolicy("skip")
    for line_number, line in enumerate(lines, 1):
      try:
        record = parse(line)
      except BadRecordError as e:
        policy.handle(e)
        continue
  """

  def __init__(self, on_bad: str = "stop"):
    if on_bad not in ON_BAD_CHOICES:
      raise ValueError(f"on_bad must be one of {ON_BAD_CHOICES}, got {on_bad!r}")
    self.on_bad = on_bad
    self.skipped: Dict[str, int] = {}
    self.first_line: Dict[str, int] = {}

  def handle(self, error: BadRecordError) -> None:
    """Raises ``error`` under "stop"; counts it under "skip"."""
    if self.on_bad == "stop":
      raise error
    self.skipped[error.kind] = self.skipped.get(error.kind, 0) + 1
    self.first_line.setdefault(error.kind, error.line)

  @property
  def num_skipped(self) -> int:
    return sum(self.skipped.values())

  def summary(self) -> str:
    """One line: how many records were skipped, by kind, with the first line of each."""
    if not self.skipped:
      return "no bad records"
    parts = [f"{kind} {count} (first at line {self.first_line[kind]})"
             for kind, count in sorted(self.skipped.items())]
    return f"skipped {self.num_skipped} bad records: " + ", ".join(parts)


class Quirks:
  """Odd-looking records converted as the dataset's authors intend, counted per kind.

  Keeps each kind's first line and what was done with such records, in words.

  Example:
    quirks.count("reused_session_id", 17, "a session_id whose step restarts at 1 "
                 "is a new session")
  """

  def __init__(self):
    self.counts: Dict[str, int] = {}
    self.first_line: Dict[str, int] = {}
    self.meaning: Dict[str, str] = {}

  def count(self, kind: str, line: int, meaning: str) -> None:
    self.counts[kind] = self.counts.get(kind, 0) + 1
    self.first_line.setdefault(kind, line)
    self.meaning.setdefault(kind, meaning)


@dataclasses.dataclass
class ConversionReport:
  """What one conversion of an input file did.

  Attributes:
    input_path: the input file.
    out_dir: the dataset folder written.
    lines_read: records (lines) read from the input, bad ones included.
    impressions_written: impressions written to the dataset.
    positives_written: of those, impressions with label 1.
    skipped: bad-record kind -> records skipped (empty under on_bad="stop").
    first_skipped_line: bad-record kind -> line number of its first occurrence.
    quirks: quirk kind -> records converted as the dataset's authors intend (see
      `Quirks`); ``first_quirk_line`` and ``quirk_meaning`` say where and what.
  """
  input_path: str
  out_dir: str
  lines_read: int
  impressions_written: int
  positives_written: int
  skipped: Dict[str, int] = dataclasses.field(default_factory=dict)
  first_skipped_line: Dict[str, int] = dataclasses.field(default_factory=dict)
  quirks: Dict[str, int] = dataclasses.field(default_factory=dict)
  first_quirk_line: Dict[str, int] = dataclasses.field(default_factory=dict)
  quirk_meaning: Dict[str, str] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_policy(cls, policy: BadRecordPolicy, quirks: Optional[Quirks] = None,
                  **counts) -> "ConversionReport":
    quirks = quirks or Quirks()
    return cls(skipped=dict(policy.skipped),
               first_skipped_line=dict(policy.first_line),
               quirks=dict(quirks.counts), first_quirk_line=dict(quirks.first_line),
               quirk_meaning=dict(quirks.meaning), **counts)

  def summary(self) -> str:
    lines = [
        f"{self.input_path}: read {self.lines_read} lines, wrote "
        f"{self.impressions_written} impressions ({self.positives_written} "
        f"positive) to {self.out_dir}"
    ]
    for kind, count in sorted(self.skipped.items()):
      lines.append(f"  skipped {count} x {kind} (first at "
                   f"{self.input_path}:{self.first_skipped_line[kind]})")
    for kind, count in sorted(self.quirks.items()):
      lines.append(f"  converted {count} x {kind}: {self.quirk_meaning[kind]} "
                   f"(first at {self.input_path}:{self.first_quirk_line[kind]})")
    return "\n".join(lines)
