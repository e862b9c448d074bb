"""Helpers shared by the CLI commands."""

import functools
import re
import sys
import time
from typing import Callable, Optional, Sequence

from absl import app
from absl import flags

from data_pipeline.bad_input import BadRecordError, NoImpressionsError


class InputError(Exception):
  """A user's input (flag value, id, file) cannot be used; printed, no traceback."""


class FlagError(InputError):
  """A flag's value, or flags together, cannot be used: exit status 2 (usage)."""


# Failures caused by the user's input: printed as one line, exit status 1 (2 for
# a bad flag).
BAD_INPUT_ERRORS = (InputError, BadRecordError, NoImpressionsError,
                    FileNotFoundError, FileExistsError)


def no_extra_args(argv) -> None:
  if len(argv) > 1:
    raise FlagError(f"unexpected arguments: {' '.join(argv[1:])} (flags are "
                    "--name=value; see --help)")


def command(required: Sequence[str] = ()):
  """Decorates a command's ``main``: ``required`` flags must be given, no
  positional arguments are accepted, and expected failures are one line
  (`clean_errors`)."""
  if required:
    flags.mark_flags_as_required(list(required))

  def decorate(main):

    @functools.wraps(main)
    def without_extra_args(argv):
      no_extra_args(argv)
      return main(argv)

    return clean_errors(without_extra_args)

  return decorate


def require_file(flag: str) -> None:
  """--flag names an existing file."""
  from data_pipeline import paths  # pylint: disable=g-import-not-at-top
  path = flags.FLAGS[flag].value
  if path is None:
    return
  try:
    paths.check_readable_file(path)
  except FileNotFoundError:
    raise FlagError(f"--{flag}={path}: no such file") from None
  except IsADirectoryError:
    raise FlagError(f"--{flag}={path}: a folder, not a file") from None


def require_pattern(flag: str, split: Optional[str] = None) -> None:
  """--flag's globs or dataset folders (of ``split``) match record files."""
  from data_pipeline import reader  # pylint: disable=g-import-not-at-top
  pattern = flags.FLAGS[flag].value
  if pattern is None:
    return
  try:
    reader.match_files(pattern, split)
  except (FileNotFoundError, ValueError) as e:
    raise FlagError(f"--{flag}={pattern}: {e}") from None


def require_model_dir(flag: str = "model_dir") -> None:
  """--flag is a model directory written by `egin-tf train`."""
  from egin_tf.train import model_dir  # pylint: disable=g-import-not-at-top
  path = flags.FLAGS[flag].value
  if path is not None and not model_dir.exists(path):
    raise FlagError(f"--{flag}={path}: not a model directory written by `egin-tf "
                    f"train` (no {model_dir.CONFIG_FILE})")


def refuse_outside(flag: str, choice_flag: str, applies_to) -> None:
  """--flag given while --choice_flag is none of ``applies_to``: refused."""
  values = flags.FLAGS
  if values[flag].present and values[choice_flag].value not in applies_to:
    raise FlagError(f"--{flag} applies only to --{choice_flag} "
                    f"{' or '.join(applies_to)}, not {values[choice_flag].value}")


def tf_io_exists(path: str) -> bool:
  from data_pipeline.tf_env import tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile.exists(path)


def clean_errors(main):
  """Reports expected failures (bad input, missing files) without a traceback."""

  @functools.wraps(main)
  def wrapper(argv):
    try:
      return main(argv)
    except app.UsageError:
      raise
    except FlagError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except BAD_INPUT_ERRORS as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except Exception as e:  # pylint: disable=broad-except
      line = unreadable_record_line(e) or checkpoint_mismatch_line(e)
      if line is None:
        raise
      print(f"error: {line}", file=sys.stderr)
      sys.exit(1)

  return wrapper


def unreadable_record_line(error: Exception) -> Optional[str]:
  """The reader's "FILE: record N: unreadable TFRecord ..." line inside a TF
  error raised while reading (mid-training, wrapped by Keras), or None."""
  from data_pipeline import reader  # pylint: disable=g-import-not-at-top
  found = re.search(r"([^\[\]\n]*" + re.escape(reader.UNREADABLE_RECORD) +
                    r"[^\[\]\n]*)", str(error))
  return found.group(1).strip() if found else None


def checkpoint_mismatch_line(error: Exception) -> Optional[str]:
  """The message of a model directory whose checkpoint does not fit its model,
  or None. (Looked up, not imported: importing the trainer here would slow
  every command's --help; if it raised the error, it is loaded.)"""
  model_dir = sys.modules.get("egin_tf.train.model_dir")
  if model_dir and isinstance(error, model_dir.CheckpointMismatchError):
    return str(error)
  return None


def keras_verbosity(choice: str) -> int:
  """Keras ``verbose`` for --verbose: bar=1, line=2, quiet=0; auto by terminal."""
  if choice == "auto":
    return 1 if sys.stdout.isatty() else 2
  return {"bar": 1, "line": 2, "quiet": 0}[choice]


def duration_text(seconds: float) -> str:
  """``45s``, ``1m54s`` or ``2h03m``."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(count: int, what: str, seconds: float,
                  total: Optional[int] = None,
                  fraction: Optional[float] = None) -> str:
  """``  120,000 rows of 3,000,000 (4.0%)  25,300 rows/s  ETA 1m54s``.

  ``total`` and ``fraction`` (share done, e.g. by bytes read) are left out when
  unknown; the ETA needs the fraction.
  """
  line = f"  {count:,} {what}"
  if total is not None:
    line += f" of {total:,}"
  if fraction is not None:
    line += f" ({100 * fraction:.1f}%)"
  if seconds > 0:
    line += f"  {count / seconds:,.0f} {what}/s"
    if fraction is not None and 0 < fraction < 1:
      line += f"  ETA {duration_text(seconds * (1 - fraction) / fraction)}"
  return line


def progress_printer(what: str, every_seconds: float = 5.0,
                     clock: Callable[[], float] = time.monotonic):
  """A progress callback printing a `progress_line` at most every few seconds.

  Called as ``report(count)`` or ``report(count, total, fraction)`` (the
  converters' `data_pipeline.text_input.ReadProgress` calls); rates and the ETA
  count from the printer's creation.
  """
  start = clock()
  last = [start]

  def report(count: int, total: Optional[int] = None,
             fraction: Optional[float] = None) -> None:
    now = clock()
    if now - last[0] >= every_seconds:
      last[0] = now
      print(progress_line(count, what, now - start, total, fraction), flush=True)

  return report
