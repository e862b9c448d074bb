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

What a row reads follows the stage-1 leak guard of the vectors file
(``eges_leak_guard``, `egin_tf.eges` says why), in training and serving alike:

* ``out_of_fold``: the file holds K sets; a row of user fold k
  (`egin_tf.layers.out_of_fold.user_folds`, as EGIN's) reads set (k + 1) mod K,
  which no session of its user trained (EGIN's out-of-fold routing: the table is
  wrapped by `OutOfFoldEmbedding` as K folds);
* ``time_cut``: one set, from the clicks before the cut time T. A row at or
  after T reads it; a row before T reads its target as unknown (the zero vector,
  as for an item the graph never saw), because its clicked target is in the
  graph, right after its recent clicks. Its clicks, f_o and every other feature
  stay: such rows still train the rest of the network. Time 0 (a serving request
  without a time) counts as after T;
* ``none``: one set, every row reads it (the paper's two-stage model; leaks).

The file's guard must be the config's (a model never silently reads vectors of
another guard).

Stage 1 itself (sessions, graph, walks, skip-gram, the vectors file and the
frozen table that reads it) lives in `egin_tf.eges`, which sits below this
package and never imports it; this module is the CTR side: the model and
`stage1_config`, the stage-1 settings a model config implies.
"""

import os
from typing import Dict, List, Optional

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.configs import field_specs
from egin_tf.eges.config import OUT_OF_FOLD, TIME_CUT, EgesPretrainConfig
from egin_tf.eges.frozen_table import FrozenIdEmbedding
from egin_tf.eges.pretrain import train_eges
from egin_tf.eges.vectors_file import EgesVectors, read_vectors
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models.base import resolve_config
from egin_tf.models.configs import EGESConfig, EginConfig, SimExtractConfig
from egin_tf.models.egin import EGIN


class EGES(EGIN):
  """EGES baseline. Input: the reader's batch dict; output pctr float32 [B].

  The CTR network of `EGIN` with ``use_graph=False, use_query=False`` whose
  SimExtract reads a `FrozenIdEmbedding` of the EGES vectors (EGIN's
  ``item_table``), routed by the leak guard (module docstring).

  Args:
    features: table sizes and feature names (`FeatureConfig.from_schema`).
    config: the hyperparameters, an `EGESConfig` (its fields may also be given
      as keyword arguments); ``eges_embeddings_path`` is required here: the
      ``.npz`` of `egin_tf.eges.train_eges` made with the config's leak guard
      (the vectors are also saved in the model's checkpoints).
  """

  CONFIG = EGESConfig
  EMBEDDINGS_FILE = "eges_embeddings.npz"
  # Stage 1 (`prepare`) builds its graph from the whole training data before
  # the first CTR step; a stream has no whole to read and the frozen vectors
  # would never see its later items.
  STREAMABLE = False

  def __init__(self, features: FeatureConfig, config: Optional[EGESConfig] = None,
               **kwargs):
    features, config, kwargs = resolve_config(EGESConfig, features, config, kwargs)
    if config.eges_embeddings_path is None:
      raise ValueError("EGES needs eges_embeddings_path (the vectors of stage 1; "
                       "egin-tf train makes them)")
    network = _egin_network(config)
    table = read_vectors(config.eges_embeddings_path)
    _check_guard(config, table)
    items = FrozenIdEmbedding.from_vectors(table, name="eges_items")
    super().__init__(features, network, item_table=items, **kwargs)
    self._model_config = config
    # time_cut: rows before it read no target vector (module docstring).
    self.cut_time = table.cut_time

  @classmethod
  def prepare(cls, train_pattern: str, model_dir: str, seed: int,
              model_kwargs, stage_progress=None) -> Dict[str, object]:
    """Stage 1: trains the EGES vectors on the training data (unless given)."""
    config = EGESConfig.from_dict(model_kwargs)
    if config.eges_embeddings_path is not None:
      return {}
    path = os.path.join(model_dir, cls.EMBEDDINGS_FILE)
    train_eges(train_pattern, path, stage1_config(config, seed),
               progress=stage_progress)
    return {"eges_embeddings_path": path}

  def interest_features(self, batch: Dict[str, tf.Tensor]) -> List[tf.Tensor]:
    """EGIN's, with ``time_cut``'s rows before the cut reading no target vector."""
    if self.cut_time is None:
      return super().interest_features(batch)
    target = batch[schema_lib.ITEM_ID]
    # Time 0 is unknown (a serving request may leave it out): read as now.
    time = batch[schema_lib.TIME]
    before = (time > 0) & (time < self.cut_time)
    return super().interest_features(
        {**batch, schema_lib.ITEM_ID: tf.where(before, tf.zeros_like(target),
                                               target)})

  def embedding_tables(self) -> Dict[str, tf.keras.layers.Layer]:
    """The EGES vectors (set 0 of ``out_of_fold``'s K) and the query table."""
    return {"items": self.graph_items.table, "queries": self.features.queries}


def stage1_config(config: EGESConfig, seed: int) -> EgesPretrainConfig:
  """Stage 1's settings of a model config: vector size, seed and leak guard."""
  return EgesPretrainConfig(dim=config.slot_dim, seed=seed,
                            leak_guard=config.eges_leak_guard,
                            folds=config.eges_folds,
                            time_cut=config.eges_time_cut)


def _check_guard(config: EGESConfig, table: EgesVectors) -> None:
  """Raises ValueError naming the file unless it was made with the config's
  leak guard (and its number of folds, or share after the cut)."""
  made = _guard_text(table.leak_guard, table.num_sets, table.time_cut)
  wanted = _guard_text(config.eges_leak_guard, config.eges_folds,
                       config.eges_time_cut)
  if made != wanted:
    raise ValueError(
        f"{config.eges_embeddings_path}: EGES vectors made with leak guard "
        f"{made}, but the model asks for {wanted} (eges_leak_guard, eges_folds, "
        "eges_time_cut); leave eges_embeddings_path unset to make matching "
        "vectors")


def _guard_text(guard: str, num_sets: int, share: Optional[float]) -> str:
  """A leak guard with its setting, e.g. ``out_of_fold (2 sets)``."""
  if guard == OUT_OF_FOLD:
    return f"{guard} ({num_sets} sets)"
  if guard == TIME_CUT:
    return f"{guard} (share {share:g} after the cut)"
  return guard


def _egin_network(config: EGESConfig) -> EginConfig:
  """EGIN's CTR network without graph or queries, SimExtract slots of slot_dim."""
  shared = {spec.name: getattr(config, spec.name)
            for spec in field_specs(SimExtractConfig)}
  return EginConfig(graph_dim=config.slot_dim, use_graph=False, use_query=False,
                    **shared)
