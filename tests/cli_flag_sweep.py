"""Runs one egin-tf command many times in this process and prints every run's
exit status and output as JSON: a sweep of bad flags without a process start
(and a TensorFlow import) per case. Usage: python cli_flag_sweep.py CASES_JSON
where CASES_JSON is a list of argv lists (without the program name)."""

import contextlib
import io
import json
import sys
import traceback

from absl import app
from absl import flags

from egin_tf.cli import main


def run_case(argv):
  flags.FLAGS.unparse_flags()
  # absl parses flags once per process; each case is a fresh command line.
  app._register_and_parse_flags_with_usage.done = False  # pylint: disable=protected-access
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      main.run(["egin-tf", *argv])
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      code = "raised"
  return {"argv": argv, "code": code, "stdout": out.getvalue(),
          "stderr": err.getvalue()}


if __name__ == "__main__":
  print("SWEEP " + json.dumps([run_case(case) for case in json.loads(sys.argv[1])]))
