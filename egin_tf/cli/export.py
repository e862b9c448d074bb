"""egin-tf export: write a trained model as a SavedModel for TF Serving.

Usage: egin-tf export --model_dir DIR --export_dir OUT [--version N]

Writes OUT/<version>/ (TF Serving's layout) with the signatures `serving_default`
(serialized tf.Example impressions -> pctr) and `predict_padded` (padded tensors
-> pctr), and the item and query embeddings (EGIN: the graph tables) with their ids
in OUT/<version>/assets.extra/{items,queries}_embeddings.tsv. Inspect it with
`saved_model_cli show --all --dir OUT/<version>`.
"""

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory written by `egin-tf train`.")
flags.DEFINE_string("export_dir", None, "Base folder; the model goes to a new "
                    "numbered version folder inside it.")
flags.DEFINE_integer("version", None, "Version number; default: the time, or one "
                     "more than the newest version there.")
flags.DEFINE_bool("embeddings", True, "Also write the embedding tables with the "
                  "ids seen in the training data (one pass over it, cached).")
flags.mark_flags_as_required(["model_dir", "export_dir"])


@common.clean_errors
def main(argv):
  common.no_extra_args(argv)
  from egin_tf import embeddings, export, training  # pylint: disable=g-import-not-at-top
  trained = training.load_model(FLAGS.model_dir)
  seen = None
  if FLAGS.embeddings:
    seen = embeddings.seen_ids(training.train_pattern(FLAGS.model_dir),
                               trained.lengths, cache_dir=FLAGS.model_dir)
  path = export.export_saved_model(trained.model, trained.schema, trained.lengths,
                                   FLAGS.export_dir, version=FLAGS.version,
                                   seen=seen)
  print(f"exported {trained.config.model} to {path}")
