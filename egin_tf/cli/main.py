"""egin-tf: train and serve EGIN CTR models on search impression logs.

Usage: egin-tf COMMAND [--flags]   (egin-tf COMMAND --help lists a command's flags)
       egin-tf --version

Commands:
  generate   simulate search logs with known click probabilities (TFRecords)
  convert    convert raw logs (JSONL interchange format, ...) to TFRecords
  train      train a CTR model; with no --train, simulate data and train on it;
             with --stream, train once over log shards as they land
  replay     rewrite a dataset as a stream folder (shards in time order)
  evaluate   exact AUC, gAUC and logloss of a trained model on data
  export     write a trained model as a SavedModel for TF Serving
  neighbors  an item's nearest items and queries in the learned embeddings
  audit      did a stream run train every record once? (its --audit_log)
  cluster-local  run `train` on a tf.distribute cluster of local processes
"""

import importlib
from importlib import metadata
import sys

from absl import app
from absl import flags
from absl import logging

_HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")
# The distribution name in setup.py.
PACKAGE = "egin-tf"

COMMANDS = {
    "generate": "egin_tf.cli.generate",
    "convert": "egin_tf.cli.convert",
    "train": "egin_tf.cli.train",
    "replay": "egin_tf.cli.replay",
    "evaluate": "egin_tf.cli.evaluate",
    "export": "egin_tf.cli.export",
    "neighbors": "egin_tf.cli.neighbors",
    "audit": "egin_tf.cli.audit",
    "cluster-local": "egin_tf.cli.cluster_local",
}


def run(argv=None) -> None:
  """Console-script entry point: dispatches to one command's absl app."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(__doc__.strip())
    sys.exit(0 if len(argv) >= 2 else 2)
  if argv[1] == "--version":
    print(f"egin-tf {version()}")
    sys.exit(0)
  command = argv[1]
  if command not in COMMANDS:
    print(f"egin-tf: unknown command {command!r}\n\n{__doc__.strip()}",
          file=sys.stderr)
    sys.exit(2)
  module = importlib.import_module(COMMANDS[command])
  # absl's --help prints the __main__ module's docstring and the key flags of
  # the module named sys.argv[0]; make both the command's own.
  sys.modules["__main__"].__doc__ = module.__doc__
  for flag in flags.FLAGS.get_flags_for_module(module.__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  wants_help = any(a in _HELP_FLAGS for a in argv[2:])
  try:
    app.run(_quiet(module.main), argv=[f"egin-tf {command}"] + argv[2:],
            flags_parser=_parse_flags)
  except SystemExit as e:
    # absl exits with 1 after printing --help; asking for help is no failure.
    if wants_help and e.code == 1:
      sys.exit(0)
    raise


def _parse_flags(argv):
  """absl's parser with a bad flag as one line and exit status 2 (usage), not
  absl's status 1 and help hint."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    sys.exit(2)


def version() -> str:
  """The installed package's version (setup.py's), or a note if not installed."""
  try:
    return metadata.version(PACKAGE)
  except metadata.PackageNotFoundError:
    return "(not installed: no package metadata)"


def _quiet(main):
  """absl's INFO log would interleave TF's checkpoint chatter with our output."""

  def wrapper(argv):
    logging.set_verbosity(logging.WARNING)
    return main(argv)

  return wrapper


if __name__ == "__main__":
  run()
