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

Imports name this package's modules, never the package: `egin_tf.models` imports
this module while `egin_tf.eges` may still be initializing.
"""

import os
from typing import Dict, Optional

from data_pipeline.tf_env import tf
from egin_tf.configs import field_specs
from egin_tf.eges.config import EgesConfig
from egin_tf.eges.frozen_table import FrozenIdEmbedding
from egin_tf.eges.pretrain import train_eges
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models.base import resolve_config
from egin_tf.models.configs import EGESConfig, EginConfig, SimExtractConfig
from egin_tf.models.egin import EGIN


class EGES(EGIN):
  """EGES baseline. Input: the reader's batch dict; output pctr float32 [B].

  The CTR network of `EGIN` with ``use_graph=False, use_query=False`` whose
  SimExtract reads a `FrozenIdEmbedding` of the EGES vectors (EGIN's
  ``item_table``).

  Args:
    features: table sizes and feature names (`FeatureConfig.from_schema`).
    config: the hyperparameters, an `EGESConfig` (its fields may also be given
      as keyword arguments); ``eges_embeddings_path`` is required here: the
      ``.npz`` of `egin_tf.eges.train_eges` (the vectors are also saved in the
      model's checkpoints).
  """

  CONFIG = EGESConfig
  EMBEDDINGS_FILE = "eges_embeddings.npz"

  def __init__(self, features: FeatureConfig, config: Optional[EGESConfig] = None,
               **kwargs):
    features, config, kwargs = resolve_config(EGESConfig, features, config, kwargs)
    if config.eges_embeddings_path is None:
      raise ValueError("EGES needs eges_embeddings_path (the vectors of stage 1; "
                       "egin-tf train makes them)")
    network = _egin_network(config)
    items = FrozenIdEmbedding.from_file(config.eges_embeddings_path,
                                        name="eges_items")
    super().__init__(features, network, item_table=items, **kwargs)
    self._model_config = config

  @classmethod
  def prepare(cls, train_pattern: str, model_dir: str, seed: int,
              model_kwargs, stage_progress=None) -> Dict[str, object]:
    """Stage 1: trains the EGES vectors on the training data (unless given)."""
    config = EGESConfig.from_dict(model_kwargs)
    if config.eges_embeddings_path is not None:
      return {}
    path = os.path.join(model_dir, cls.EMBEDDINGS_FILE)
    train_eges(train_pattern, path, EgesConfig(dim=config.slot_dim, seed=seed),
               progress=stage_progress)
    return {"eges_embeddings_path": path}

  def embedding_tables(self) -> Dict[str, tf.keras.layers.Layer]:
    return {"items": self.graph_items.table, "queries": self.features.queries}


def _egin_network(config: EGESConfig) -> EginConfig:
  """EGIN's CTR network without graph or queries, SimExtract slots of slot_dim."""
  shared = {spec.name: getattr(config, spec.name)
            for spec in field_specs(SimExtractConfig)}
  return EginConfig(graph_dim=config.slot_dim, use_graph=False, use_query=False,
                    **shared)
