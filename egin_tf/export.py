"""SavedModel export for TF Serving.

`export_saved_model` writes ``EXPORT_DIR/<version>/`` (TF Serving's layout; the
version is a number larger than any already there) with two signatures:

* ``serving_default``: ``examples`` string [N], serialized ``tf.train.Example``
  impressions of our schema (no label needed) -> ``pctr`` float32 [N];
* ``predict_padded``: the reader's padded tensors (``item_id`` [N], ``click_ids``
  [N, L], ...) -> ``pctr`` [N], for callers that build tensors themselves.

Optionally the item and query embedding tables (EGIN: the graph tables) go to
``assets.extra/{items,queries}_embeddings.tsv`` with the ids they belong to.

The version folder is written under a temporary name and renamed when complete, so
a server polling EXPORT_DIR never loads a half-written model.
"""

import os
import shutil
import time
from typing import Dict, Optional

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf import embeddings


class ServingModule(tf.Module):
  """Wraps a CTR model with the parsing needed to serve raw impressions."""

  def __init__(self, model: tf.keras.Model, schema: schema_lib.DatasetSchema,
               lengths: reader.SequenceLengths):
    super().__init__(name="egin_serving")
    self.model = model
    self._schema = schema
    self._lengths = lengths
    self._spec = reader.feature_spec(schema, serving=True)

  def padded_signature(self) -> Dict[str, tf.TensorSpec]:
    """TensorSpecs of the padded inputs (batch dimension unknown)."""
    c = self._schema.num_cats
    specs = {name: tf.TensorSpec([None], tf.int64, name=name)
             for name in schema_lib.SCALAR_FEATURES if name != schema_lib.LABEL}
    for name in (schema_lib.ITEM_CATS, schema_lib.QUERY_CATS):
      specs[name] = tf.TensorSpec([None, c], tf.int64, name=name)
    for seq in schema_lib.SEQUENCES:
      n = self._lengths.of(seq)
      specs[seq.ids] = tf.TensorSpec([None, n], tf.int64, name=seq.ids)
      specs[seq.times] = tf.TensorSpec([None, n], tf.int64, name=seq.times)
      specs[seq.cats] = tf.TensorSpec([None, n, c], tf.int64, name=seq.cats)
    for name in self._schema.dense_features:
      key = schema_lib.DENSE_PREFIX + name
      specs[key] = tf.TensorSpec([None], tf.float32, name=key.replace("/", "_"))
    for name in self._schema.cat_features:
      key = schema_lib.CAT_PREFIX + name
      specs[key] = tf.TensorSpec([None], tf.int64, name=key.replace("/", "_"))
    return specs

  def score_padded(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    batch = dict(batch)
    batch.setdefault(schema_lib.LABEL, tf.zeros_like(batch[schema_lib.ITEM_ID]))
    return {"pctr": self.model(batch, training=False)}

  def score_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._spec)
    batch = reader.dense_batch(parsed, self._schema, self._lengths)
    return {"pctr": self.model(batch, training=False)}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    serve_examples = tf.function(self.score_examples).get_concrete_function(
        tf.TensorSpec([None], tf.string, name="examples"))
    serve_padded = tf.function(self.score_padded).get_concrete_function(
        self.padded_signature())
    return {"serving_default": serve_examples, "predict_padded": serve_padded}


def next_version(export_dir: str) -> int:
  """A version number larger than every numeric folder already in export_dir."""
  existing = [int(n) for n in (os.listdir(export_dir)
                               if os.path.isdir(export_dir) else [])
              if n.isdigit()]
  return max([int(time.time())] + [v + 1 for v in existing])


def export_saved_model(model: tf.keras.Model, schema: schema_lib.DatasetSchema,
                       lengths: reader.SequenceLengths, export_dir: str,
                       version: Optional[int] = None,
                       seen: Optional[Dict[str, embeddings.IdTable]] = None) -> str:
  """Writes ``export_dir/<version>/`` atomically and returns its path.

  With ``seen`` (`embeddings.seen_ids` of the training data), the model's item
  and query embeddings are also written, with their ids and categories, to
  ``assets.extra/{items,queries}_embeddings.tsv`` (see `embeddings.write_tsv`).
  """
  os.makedirs(export_dir, exist_ok=True)
  version = next_version(export_dir) if version is None else version
  final = os.path.join(export_dir, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} already exists")
  tmp = os.path.join(export_dir, f".tmp-{version}")
  shutil.rmtree(tmp, ignore_errors=True)
  module = ServingModule(model, schema, lengths)
  tf.saved_model.save(module, tmp, signatures=module.signatures())
  if seen is not None:
    extra = os.path.join(tmp, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    for kind, layer in model.embedding_tables().items():
      table = seen[kind]
      embeddings.write_tsv(os.path.join(extra, f"{kind}_embeddings.tsv"), table,
                           embeddings.embed(layer, table.ids))
  os.rename(tmp, final)
  return final
