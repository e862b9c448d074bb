"""Helpers shared by the CLI commands."""

import functools
import sys

from absl import app

from data_pipeline.bad_input import BadRecordError, NoImpressionsError


class InputError(Exception):
  """A user's input (flag value, id, file) cannot be used; printed, no traceback."""


# Failures caused by the user's input: printed as one line, exit status 1.
BAD_INPUT_ERRORS = (InputError, BadRecordError, NoImpressionsError,
                    FileNotFoundError, FileExistsError)


def no_extra_args(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def clean_errors(main):
  """Reports expected failures (bad input, missing files) without a traceback."""

  @functools.wraps(main)
  def wrapper(argv):
    try:
      return main(argv)
    except app.UsageError:
      raise
    except BAD_INPUT_ERRORS as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  return wrapper


def keras_verbosity(choice: str) -> int:
  """Keras ``verbose`` for --verbose: bar=1, line=2, quiet=0; auto by terminal."""
  if choice == "auto":
    return 1 if sys.stdout.isatty() else 2
  return {"bar": 1, "line": 2, "quiet": 0}[choice]


def progress_printer(what: str, every_seconds: float = 5.0):
  """A progress callback printing ``N what`` at most every few seconds."""
  import time  # pylint: disable=g-import-not-at-top
  last = [0.0]

  def report(count: int) -> None:
    now = time.monotonic()
    if now - last[0] >= every_seconds:
      last[0] = now
      print(f"  {count:,} {what}", flush=True)

  return report
