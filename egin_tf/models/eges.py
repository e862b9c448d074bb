"""EGES, stage 2: EGIN's CTR network on frozen EGES item vectors (paper section 4.2).

EGES is two-stage: `egin_tf.eges.train_eges` first learns item vectors on an item
graph of click co-occurrence; this model then consumes them, frozen, in the SAME
CTR network as EGIN: the DNN features f_o and SimExtract multi-interest features
into the MLP. Only the table SimExtract reads changes: the EGES vectors instead of
EGIN's jointly trained graph tables, and there are no graph losses.

EGES has item vectors only (its graph has no query nodes), so only
f_i2i = SimExtract(target item, clicks) is used; f_q2q and f_q2i are left out (as
in EGIN's item-only mode). Queries still enter f_o through the CTR network's own
query embeddings when the data has them.
"""

import os
from typing import Dict, Optional

import numpy as np

from data_pipeline.tf_env import tf
from egin_tf import eges
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding
from egin_tf.models.base import resolve_config
from egin_tf.models.configs import EGESConfig, EginConfig, SimExtractConfig
from egin_tf.models.egin import EGIN


class FrozenIdEmbedding(tf.keras.layers.Layer):
  """A fixed id -> vector table, looked up like `IdEmbedding`; never trained.

  Input: int64 ids of any shape [...]. Output: float32 [..., dim]; padding (0) and
  ids not in the table give the zero vector. Ids are arbitrary int64 (hashed), so
  they are found by binary search in the sorted ``ids`` rather than by bucket;
  unlike `IdEmbedding`, different ids never share a row.

  Args:
    num_ids: rows of the table.
    dim: size of the vectors.
    ids: int64 [num_ids], positive, sorted, distinct (None: zeros, to be
      restored from a checkpoint or `set_weights`).
    vectors: float [num_ids, dim].

  Weights (non-trainable, in ``get_weights`` order): ``ids`` int64 [num_ids],
  ``embeddings`` float32 [num_ids, dim].
  """

  def __init__(self, num_ids: int, dim: int, ids: Optional[np.ndarray] = None,
               vectors: Optional[np.ndarray] = None, **kwargs):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    if num_ids < 1 or dim < 1:
      raise ValueError(f"FrozenIdEmbedding: num_ids and dim must be >= 1, got "
                       f"{num_ids} and {dim}")
    if (ids is None) != (vectors is None):
      raise ValueError("FrozenIdEmbedding: give both ids and vectors, or neither")
    if ids is not None and (np.shape(ids) != (num_ids,) or
                            np.shape(vectors) != (num_ids, dim)):
      raise ValueError(
          f"FrozenIdEmbedding: ids {np.shape(ids)} and vectors "
          f"{np.shape(vectors)} do not match num_ids={num_ids}, dim={dim}")
    self.num_ids = num_ids
    self.dim = dim
    self._initial = (ids, vectors)

  @classmethod
  def from_file(cls, path: str, **kwargs) -> "FrozenIdEmbedding":
    """The table of an EGES ``.npz`` (see `egin_tf.eges.load_embeddings`)."""
    ids, vectors = eges.load_embeddings(path)
    return cls(ids.size, vectors.shape[1], ids=ids, vectors=vectors, **kwargs)

  def build(self, input_shape):
    ids, vectors = self._initial
    self.ids = self.add_weight(
        name="ids", shape=[self.num_ids], dtype=tf.int64, trainable=False,
        initializer=(tf.keras.initializers.Constant(ids) if ids is not None
                     else "zeros"))
    self.embeddings = self.add_weight(
        name="embeddings", shape=[self.num_ids, self.dim], trainable=False,
        initializer=(tf.keras.initializers.Constant(vectors)
                     if vectors is not None else "zeros"))
    self._initial = (None, None)
    super().build(input_shape)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.cast(ids, tf.int64)
    flat = tf.reshape(ids, [-1])
    row = tf.minimum(tf.searchsorted(self.ids, flat, side="left"),
                     self.num_ids - 1)
    found = (tf.gather(self.ids, row) == flat) & (flat > 0)
    vectors = tf.gather(self.embeddings, row) * tf.cast(
        found, self.embeddings.dtype)[:, tf.newaxis]
    return tf.reshape(vectors, tf.concat([tf.shape(ids), [self.dim]], axis=0))

  def get_config(self):
    config = super().get_config()
    config.update(num_ids=self.num_ids, dim=self.dim)
    return config


class EGES(EGIN):
  """EGES baseline. Input: the reader's batch dict; output pctr float32 [B].

  The CTR network of `EGIN` with ``use_graph=False, use_query=False`` whose
  SimExtract reads a `FrozenIdEmbedding` of the EGES vectors.

  Args:
    features: table sizes and feature names (`FeatureConfig.from_schema`).
    config: the hyperparameters, an `EGESConfig` (its fields may also be given
      as keyword arguments); ``eges_embeddings_path`` is required here: the
      ``.npz`` of `egin_tf.eges.train_eges` (the vectors are also saved in the
      model's checkpoints).
  """

  CONFIG = EGESConfig

  def __init__(self, features: FeatureConfig, config: Optional[EGESConfig] = None,
               **kwargs):
    features, config, kwargs = resolve_config(EGESConfig, features, config, kwargs)
    if config.eges_embeddings_path is None:
      raise ValueError("EGES needs eges_embeddings_path (the vectors of stage 1; "
                       "egin-tf train makes them)")
    super().__init__(features, _egin_network(config), **kwargs)
    self._model_config = config
    # EGIN's "w/o graph" wiring points SimExtract at the CTR item table; EGES
    # points it at the frozen EGES vectors instead.
    self.graph_items = OutOfFoldEmbedding(
        table=FrozenIdEmbedding.from_file(config.eges_embeddings_path,
                                          name="eges_items"),
        name="eges_item_folds")

  EMBEDDINGS_FILE = "eges_embeddings.npz"

  @classmethod
  def prepare(cls, train_pattern: str, model_dir: str, seed: int,
              model_kwargs, stage_progress=None) -> Dict[str, object]:
    """Stage 1: trains the EGES vectors on the training data (unless given)."""
    config = EGESConfig.from_dict(model_kwargs)
    if config.eges_embeddings_path is not None:
      return {}
    path = os.path.join(model_dir, cls.EMBEDDINGS_FILE)
    eges.train_eges(train_pattern, path, eges.EgesConfig(dim=config.slot_dim,
                                                         seed=seed),
                    progress=stage_progress)
    return {"eges_embeddings_path": path}

  def embedding_tables(self) -> Dict[str, tf.keras.layers.Layer]:
    return {"items": self.graph_items.table, "queries": self.features.queries}


def _egin_network(config: EGESConfig) -> EginConfig:
  """EGIN's CTR network without graph or queries, SimExtract slots of slot_dim."""
  shared = {k: v for k, v in config.to_dict().items()
            if k in SimExtractConfig().to_dict()}
  return EginConfig(graph_dim=config.slot_dim, use_graph=False, use_query=False,
                    **shared)
