"""SavedModel export for TF Serving.

`export_saved_model` writes ``EXPORT_DIR/<version>/`` (TF Serving's layout; the
version is a number larger than any already there) with three signatures, all
scoring through the same `ServingModule.score_batch`:

* ``serving_default``: ``examples`` string [N], serialized ``tf.train.Example``
  impressions of our schema (no label needed) -> ``pctr`` float32 [N];
* ``serving_context``: TF-Ranking's context + examples convention for B lists
  of N candidates: ``context`` string [B], one Example per list with the
  shared features (user, time, query, histories), and ``examples`` string
  [B, N], the candidates' item features (``item_id``, ``item_cats``,
  ``dense/*``, ``cat/*``, see `serving_requests.is_candidate_feature`; other
  features there are ignored, as are item features in the context) ->
  ``pctr`` [B, N], equal to ``serving_default`` on the merged Examples, with
  the histories sent and parsed once per list instead of once per candidate;
* ``predict_padded``: the reader's padded tensors (``item_id`` [N], ``click_ids``
  [N, L], ...) -> ``pctr`` [N], for callers that build tensors themselves.

Optionally the item and query embedding tables (EGIN: the graph tables) go to
``assets.extra/{items,queries}_embeddings.tsv`` with the ids they belong to, and
warm-up requests (`egin_tf.serve.requests`) to
``assets.extra/tf_serving_warmup_requests``, which TF Serving replays before it
serves the version.

The version folder is written under a temporary name (``.tmp-<version>-*``) and
renamed when complete, so a server polling EXPORT_DIR never loads a half-written
model. A version is never overwritten: an explicit ``version`` that exists
raises FileExistsError; without one, the export takes the next free number even
if another export claims its first choice meanwhile. `prune_versions` removes
old versions.
"""

import errno
import os
import time
import uuid
from typing import Dict, List, Optional, Sequence

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline import paths
from data_pipeline.tf_env import tf
from egin_tf.serve import embeddings
from egin_tf.serve import requests as serving_requests

TMP_PREFIX = ".tmp-"


class _Untracked:
  """Holds an object without making it a SavedModel dependency."""

  def __init__(self, value):
    self.value = value


class ServingModule(tf.Module):
  """Wraps a CTR model with the parsing needed to serve raw impressions.

  Only the model's variables are saved, not the model object: through it the
  SavedModel would also carry the optimizer, whose Adam slots are twice the
  size of the weights and useless to a server.
  """

  def __init__(self, model: tf.keras.Model, schema: schema_lib.DatasetSchema,
               lengths: reader.SequenceLengths):
    super().__init__(name="egin_serving")
    self._model = _Untracked(model)
    self._schema = schema
    self._lengths = lengths
    self._spec = reader.feature_spec(schema, serving=True)
    self._candidate_spec = {k: v for k, v in self._spec.items()
                            if serving_requests.is_candidate_feature(k)}
    self._context_spec = {k: v for k, v in self._spec.items()
                          if not serving_requests.is_candidate_feature(k)}

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

  def score_batch(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    """pctr [N] of a padded batch: the one scoring path of every signature."""
    batch = dict(batch)
    batch.setdefault(schema_lib.LABEL, tf.zeros_like(batch[schema_lib.ITEM_ID]))
    return self._model.value(batch, training=False)

  def score_padded(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {"pctr": self.score_batch(batch)}

  def score_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    parsed = tf.io.parse_example(examples, self._spec)
    return {"pctr": self.score_batch(
        reader.dense_batch(parsed, self._schema, self._lengths))}

  def score_context(self, context: tf.Tensor,
                    examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """context [B] and examples [B, N] -> pctr [B, N] (see the module doc)."""
    check = tf.debugging.assert_equal(
        tf.shape(context)[0], tf.shape(examples)[0],
        message="serving_context needs one context per list of examples")
    # Before parsing: else the model may fail first, on mismatched shapes.
    with tf.control_dependencies([check]):
      parsed = tf.io.parse_example(tf.reshape(examples, [-1]),
                                   self._candidate_spec)
      shared = tf.io.parse_example(context, self._context_spec)
    # Row i of the flattened candidates belongs to list i // N. The context is
    # repeated while still ragged, so `dense_batch` sees exactly what it sees
    # for serving_default's merged Examples.
    list_of_row = tf.repeat(tf.range(tf.shape(context)[0]), tf.shape(examples)[1])
    for key, value in shared.items():
      parsed[key] = tf.gather(value, list_of_row)
    pctr = self.score_batch(reader.dense_batch(parsed, self._schema, self._lengths))
    return {"pctr": tf.reshape(pctr, tf.shape(examples))}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    serve_examples = tf.function(self.score_examples).get_concrete_function(
        tf.TensorSpec([None], tf.string, name=serving_requests.EXAMPLES_INPUT))
    serve_context = tf.function(self.score_context).get_concrete_function(
        tf.TensorSpec([None], tf.string, name=serving_requests.CONTEXT_INPUT),
        tf.TensorSpec([None, None], tf.string,
                      name=serving_requests.EXAMPLES_INPUT))
    serve_padded = tf.function(self.score_padded).get_concrete_function(
        self.padded_signature())
    # After tracing: a model restored lazily creates its variables in the first call.
    self.model_variables = list(self._model.value.variables)
    return {serving_requests.SIGNATURE: serve_examples,
            serving_requests.CONTEXT_SIGNATURE: serve_context,
            "predict_padded": serve_padded}


def next_version(export_dir: str) -> int:
  """A version number larger than every numeric folder already in export_dir."""
  existing = [int(n) for n in (paths.listdir(export_dir)
                               if tf.io.gfile.isdir(export_dir) else [])
              if n.isdigit()]
  return max([int(time.time())] + [v + 1 for v in existing])


def _check_warmup(module: ServingModule, examples: Sequence[bytes]) -> None:
  """Raises ValueError unless the model scores the warm-up examples.

  TF Serving refuses to load a version whose warm-up request fails, so a bad
  example must fail here, at export time, with the reason.
  """
  try:
    module.score_examples(tf.constant(list(examples), tf.string))
  except tf.errors.InvalidArgumentError as e:
    raise ValueError("warm-up examples are not valid requests for this model: "
                     f"{e.message}") from None


def _publish(tmp: str, export_dir: str, version: Optional[int]) -> str:
  """Renames the complete temporary folder to its version folder.

  A rename onto a non-empty folder fails, so an existing version is never
  replaced, even by a concurrent export.
  """
  while True:
    final = os.path.join(export_dir, str(
        next_version(export_dir) if version is None else version))
    if tf.io.gfile.exists(final) and version is not None:
      raise FileExistsError(f"{final} already exists")
    try:
      paths.rename_dir(tmp, final)
      return final
    except FileExistsError:
      if version is not None:
        raise FileExistsError(f"{final} already exists") from None
    except OSError as e:
      # Another export took the number since we looked.
      if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
        raise
      if version is not None:
        raise FileExistsError(f"{final} already exists") from None


def export_saved_model(model: tf.keras.Model, schema: schema_lib.DatasetSchema,
                       lengths: reader.SequenceLengths, export_dir: str,
                       version: Optional[int] = None,
                       seen: Optional[Dict[str, embeddings.IdTable]] = None,
                       warmup_examples: Optional[Sequence[bytes]] = None,
                       num_warmup_requests: int = 10,
                       extra_assets: Optional[Dict[str, str]] = None) -> str:
  """Writes ``export_dir/<version>/`` atomically and returns its path.

  With ``seen`` (`embeddings.seen_ids` of the training data), the model's item
  and query embeddings are also written, with their ids and categories, to
  ``assets.extra/{items,queries}_embeddings.tsv`` (see `embeddings.write_tsv`).

  With ``warmup_examples`` (serialized ``tf.train.Example``s, e.g. a
  `serving_requests.search_request` or `serving_requests.examples_from_files`),
  ``assets.extra/tf_serving_warmup_requests`` gets ``num_warmup_requests``
  Predict requests to ``serving_default``, each with all of those examples, and
  as many to ``serving_context`` (`serving_requests.split_request` of them).

  ``extra_assets`` (file name -> text) are written to ``assets.extra/`` too,
  before the version appears (e.g. what the model was trained on).

  Raises:
    FileExistsError: ``version`` is given and ``export_dir/<version>`` exists.
    ValueError: the warm-up examples do not parse, or a bad request count
      (1 to `serving_requests.MAX_WARMUP_RECORDS` / 2).
  """
  tf.io.gfile.makedirs(export_dir)
  if version is not None and tf.io.gfile.exists(os.path.join(export_dir, str(version))):
    raise FileExistsError(f"{os.path.join(export_dir, str(version))} already exists")
  module = ServingModule(model, schema, lengths)
  warmup_logs = _warmup_logs(module, warmup_examples, num_warmup_requests)
  tmp = _make_temp_dir(export_dir, version)
  try:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    _write_assets(os.path.join(tmp, serving_requests.ASSETS_EXTRA), model, seen,
                  extra_assets, warmup_logs)
    return _publish(tmp, export_dir, version)
  finally:
    _remove_quietly(tmp)


def _make_temp_dir(export_dir: str, version: Optional[int]) -> str:
  """A new folder ``export_dir/.tmp-<version or next>-<random>`` to write into."""
  # A unique temporary name: two exports never write into the same folder.
  label = "next" if version is None else str(version)
  tmp = os.path.join(export_dir, f"{TMP_PREFIX}{label}-{uuid.uuid4().hex[:12]}")
  tf.io.gfile.mkdir(tmp)
  return tmp


def _write_assets(extra: str, model: tf.keras.Model,
                  seen: Optional[Dict[str, embeddings.IdTable]],
                  extra_assets: Optional[Dict[str, str]],
                  warmup_logs: Optional[list]) -> None:
  """Writes the optional files of ``assets.extra`` (folder ``extra``)."""
  if seen is not None:
    _write_embeddings(extra, model, seen)
  for name, text in (extra_assets or {}).items():
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, name), "w") as f:
      f.write(text)
  if warmup_logs is not None:
    serving_requests.write_warmup_file(
        os.path.join(extra, serving_requests.WARMUP_FILE), warmup_logs)


def _warmup_logs(module: ServingModule, warmup_examples: Optional[Sequence[bytes]],
                 num_warmup_requests: int) -> Optional[list]:
  """The warm-up records of both Example signatures (None without examples),
  checked against the model.

  TF Serving prepares each signature on its first call, so both get requests.
  """
  if warmup_examples is None:
    return None
  warmup_logs = [log for context_form in (False, True)
                 for log in serving_requests.warmup_requests(
                     warmup_examples, num_warmup_requests,
                     context_form=context_form)]
  if len(warmup_logs) > serving_requests.MAX_WARMUP_RECORDS:
    raise ValueError(f"num_warmup_requests={num_warmup_requests}: 2 x that many "
                     f"records, TF Serving reads at most "
                     f"{serving_requests.MAX_WARMUP_RECORDS}")
  _check_warmup(module, warmup_examples)
  return warmup_logs


def _write_embeddings(extra: str, model: tf.keras.Model,
                      seen: Dict[str, embeddings.IdTable]) -> None:
  """Writes ``{kind}_embeddings.tsv`` of each of the model's tables into ``extra``."""
  tf.io.gfile.makedirs(extra)
  for kind, layer in model.embedding_tables().items():
    table = seen[kind]
    embeddings.write_tsv(os.path.join(extra, f"{kind}_embeddings.tsv"), table,
                         embeddings.embed(layer, table.ids))


def _remove_quietly(path: str) -> None:
  """Removes folder ``path`` if it is there, ignoring errors (`shutil.rmtree`'s
  ``ignore_errors``)."""
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  except (OSError, tf.errors.OpError):
    pass


def prune_versions(export_dir: str, keep: int) -> List[str]:
  """Keeps the ``keep`` newest versions of export_dir and removes the rest.

  Removes numeric version folders other than the ``keep`` largest numbers, and
  every ``.tmp-*`` folder (left by exports that died before their rename; do
  not prune while an export into the same folder is running). Other names are
  never touched.

  Returns:
    The removed paths, oldest version first, then the temporary folders.

  Raises:
    ValueError: keep < 1 (a server needs at least one version to serve).
  """
  if keep < 1:
    raise ValueError(f"keep={keep}: keep at least one version; a server would "
                     "unload the model")
  names = paths.listdir(export_dir)
  versions = sorted((n for n in names
                     if n.isdigit() and tf.io.gfile.isdir(os.path.join(export_dir, n))),
                    key=int)
  doomed = versions[:-keep] + sorted(n for n in names if n.startswith(TMP_PREFIX))
  removed = []
  for name in doomed:
    path = os.path.join(export_dir, name)
    tf.io.gfile.rmtree(path)
    removed.append(path)
  return removed
