"""egin-tf audit: did a stream run train every record once? Counted from its log.

Usage: egin-tf audit --model_dir DIR [--stream DIR]

A stream run with --audit_log keeps the ids of the examples its latest
checkpoint's model was trained on. This compares them with the stream's records
up to that checkpoint's position and prints how many were trained once, how many
more than once, which never and which trained rows are not the stream's. Exit
status 0 when every record was trained exactly once, 1 otherwise.
"""

import os

from absl import flags

from data_pipeline.tf_env import tf
from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory of an `egin-tf train --stream "
                    "... --audit_log` run.")
flags.DEFINE_string("stream", None, "The stream folder (default: the one the run "
                    "trained on, from the model directory's config).")
flags.DEFINE_integer("show", 5, "List at most this many records of each kind that "
                     "is not exactly once.", lower_bound=0)


@common.command(required=["model_dir"])
def main(argv):
  common.require_model_dir()
  # pylint: disable=g-import-not-at-top
  from egin_tf.train import audit_log
  from egin_tf.train import model_dir
  from egin_tf.train import stream as streaming
  log_dir = os.path.join(FLAGS.model_dir, streaming.AUDIT_DIR)
  if not tf.io.gfile.isdir(log_dir):
    raise common.InputError(f"{FLAGS.model_dir}: no audit log ({streaming.AUDIT_DIR}/); "
                            "train the stream with --audit_log")
  checkpoint = model_dir.latest_checkpoint(FLAGS.model_dir)
  try:
    position = streaming.checkpoint_position(checkpoint)
  except ValueError as e:
    raise common.InputError(str(e)) from None
  saved = model_dir.saved_train_pattern(FLAGS.model_dir)
  stream_dir = FLAGS.stream or os.path.dirname(saved)
  expected = audit_log.stream_rows(stream_dir, position, os.path.basename(saved),
                                   progress=common.progress_printer("records read"))
  report = audit_log.delivery(audit_log.TrainedExamplesLog(log_dir).read(), expected)
  print(f"{FLAGS.model_dir} (checkpoint {os.path.basename(checkpoint)}, at {position}) "
        f"against the stream in {stream_dir}:\n  {report}")
  _show("trained more than once (shard, record, times)", report.repeated)
  _show("never trained", report.missing)
  _show("trained rows not of the stream", report.foreign)
  if not report.exactly_once:
    raise SystemExit(1)


def _show(what: str, rows) -> None:
  for row in rows[:FLAGS.show]:
    print(f"  {what}: " + " ".join(str(field) for field in row))
  if len(rows) > FLAGS.show:
    print(f"  ... and {len(rows) - FLAGS.show:,} more {what}")
