"""egin-tf export: write a trained model as a SavedModel for TF Serving.

Usage: egin-tf export --model_dir DIR --export_dir OUT [--version N]

Writes OUT/<version>/ (TF Serving's layout) with the signatures `serving_default`
(serialized tf.Example impressions -> pctr), `serving_context` (one context
Example + N candidate Examples -> pctr) and `predict_padded` (padded tensors
-> pctr), and the item and query embeddings (EGIN: the graph tables) with their ids
in OUT/<version>/assets.extra/{items,queries}_embeddings.tsv, and TF Serving
warm-up requests (the first --warmup_examples training impressions as one
request, repeated --warmup_requests times for serving_default and as many for
serving_context) in
OUT/<version>/assets.extra/tf_serving_warmup_requests. Inspect it with
`saved_model_cli show --all --dir OUT/<version>`.
"""

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory written by `egin-tf train`.")
flags.DEFINE_string("export_dir", None, "Base folder; the model goes to a new "
                    "numbered version folder inside it.")
flags.DEFINE_integer("version", None, "Version number; default: the time, or one "
                     "more than the newest version there.", lower_bound=1)
flags.DEFINE_bool("embeddings", True, "Also write the embedding tables with the "
                  "ids seen in the training data (one pass over it, cached).")
flags.DEFINE_integer("warmup_examples", 100, "Impressions (candidates) per warm-up "
                     "request, taken from the training data; 0 writes no warm-up "
                     "file.", lower_bound=0)
flags.DEFINE_integer("warmup_requests", 10, "Warm-up requests per Example "
                     "signature TF Serving replays before serving the version "
                     "(1 to 500).", lower_bound=1, upper_bound=500)
flags.DEFINE_integer("keep", None, "Afterwards keep only the newest KEEP versions "
                     "in --export_dir (default: remove nothing).", lower_bound=1)


@common.command(required=["model_dir", "export_dir"])
def main(argv):
  common.require_model_dir()
  # pylint: disable=g-import-not-at-top
  from data_pipeline.data_split import DataSplit
  from egin_tf.serve import embeddings
  from egin_tf.serve import export
  from egin_tf.train import model_dir
  from egin_tf.serve import requests as serving_requests
  from egin_tf.train import config as train_config
  trained = model_dir.load_model(FLAGS.model_dir, train_config.TrainConfig)
  data = DataSplit.resolve(model_dir.saved_train_pattern(FLAGS.model_dir), "train",
                           trained.lengths)
  seen = None
  if FLAGS.embeddings:
    seen = embeddings.seen_ids(data, cache_dir=FLAGS.model_dir,
                               progress=common.progress_printer("records scanned"))
  warmup = (serving_requests.examples_from_files(data.files, FLAGS.warmup_examples)
            if FLAGS.warmup_examples > 0 else None)
  path = export.export_saved_model(trained.model, trained.schema, trained.lengths,
                                   FLAGS.export_dir, version=FLAGS.version,
                                   seen=seen, warmup_examples=warmup,
                                   num_warmup_requests=FLAGS.warmup_requests)
  print(f"exported {trained.config.model} to {path}")
  if FLAGS.keep is not None:
    for removed in export.prune_versions(FLAGS.export_dir, FLAGS.keep):
      print(f"removed {removed}")
