"""egin-tf neighbors: an item's nearest items and queries in the learned embeddings.

Usage: egin-tf neighbors --model_dir DIR --item ID [--raw] [--k 10]

For EGIN these are the graph tables trained by the i2i, q2q and q2i losses; for
other models the CTR network's own id embeddings. Candidates are the ids seen in
the training data (one pass over it, cached in MODEL_DIR/seen_ids.npz). ID is the
int64 id stored in the TFRecords; with --raw it is a raw id from your logs and is
hashed with the converters' stable hash first.
"""

from absl import flags

from egin_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "Model directory written by `egin-tf train`.")
flags.DEFINE_string("item", None, "The item id.")
flags.DEFINE_bool("raw", False, "--item is a raw log id: hash it as the converters do.")
flags.DEFINE_integer("k", 10, "Neighbors of each kind to print.", lower_bound=1)
flags.DEFINE_string("data", None, "Dataset whose ids are the candidates; default: "
                    "the training data.")


def _item_id(text: str, raw: bool) -> int:
  from data_pipeline.ids import stable_id  # pylint: disable=g-import-not-at-top
  if raw:
    return stable_id(text)
  try:
    return int(text)
  except ValueError:
    raise common.InputError(f"--item {text!r} is not an int64 id; pass --raw "
                            "to hash a raw id") from None


@common.command(required=["model_dir", "item"])
def main(argv):
  common.require_model_dir()
  common.require_pattern("data", split="train")
  # pylint: disable=g-import-not-at-top
  from data_pipeline.data_split import DataSplit
  from egin_tf.serve import embeddings
  from egin_tf.train import model_dir
  from egin_tf.train import config as train_config
  item = _item_id(FLAGS.item, FLAGS.raw)
  trained = model_dir.load_model(FLAGS.model_dir, train_config.TrainConfig)
  data = FLAGS.data or model_dir.saved_train_pattern(FLAGS.model_dir)
  seen = embeddings.seen_ids(DataSplit.resolve(data, "train", trained.lengths),
                             progress=common.progress_printer("records scanned"),
                             cache_dir=None if FLAGS.data else FLAGS.model_dir)
  tables = trained.model.embedding_tables()
  items = seen["items"]
  position = items.ids.searchsorted(item)
  if position >= items.ids.size or items.ids[position] != item:
    raise common.InputError(f"item {item} does not occur in {data}")
  vector = embeddings.embed(tables["items"], items.ids[position:position + 1])[0]
  cats = [int(c) for c in items.cats[position] if c]
  print(f"item {item} (categories {cats}) in {trained.config.model}'s embeddings")
  for kind in ("items", "queries"):
    candidates = seen[kind]
    if candidates.ids.size == 0:
      print(f"\nno {kind} in the data")
      continue
    found = embeddings.nearest(vector, candidates,
                               embeddings.embed(tables[kind], candidates.ids),
                               k=FLAGS.k, exclude=item if kind == "items" else None)
    print(f"\nnearest {kind}:\n  {'id':>20}  {'cosine':>7}  categories")
    for n in found:
      print(f"  {n.id:>20}  {n.similarity:7.4f}  {n.cats}")
