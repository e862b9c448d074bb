"""DIN: the paper's attention baseline (section 4.2; Zhou et al., 2018).

The click history is pooled by `TargetAttention` with the target item as the
query; when the data has queries, the query history is pooled likewise with the
current query as the target. The pooled interests are concatenated with the other
features f_o (user, target item, query, ``cat/`` and ``dense/`` features) into the
MLP.
"""

import dataclasses
import json
from typing import Sequence

from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.target_attention import TargetAttention
from egin_tf.models.base import TargetInterestModel


class DIN(TargetInterestModel):
  """Attention baseline. Input: the reader's batch dict; output pctr [B].

  Args:
    features: the embedding tables (see `FeatureConfig`).
    hidden_units: the final MLP's hidden widths.
    attention_units: hidden widths of DIN's activation unit.
    attention_activation: their activation (``"sigmoid"``, ``"prelu"``, ...).
    dropout: dropout rate of the final MLP.
  """

  def __init__(self, features: FeatureConfig,
               hidden_units: Sequence[int] = (200, 80),
               attention_units: Sequence[int] = (36,),
               attention_activation: str = "sigmoid",
               dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if isinstance(features, dict):
      features = FeatureConfig(**features)
    # Kept as JSON text: Keras would wrap a dict attribute into a trackable.
    self._config_json = json.dumps({
        "features": dataclasses.asdict(features),
        "hidden_units": list(hidden_units),
        "attention_units": list(attention_units),
        "attention_activation": attention_activation, "dropout": dropout})
    self.features = FeatureEmbeddings(features, name="features")

    def attention(name):
      return TargetAttention(attention_units, attention_activation, name=name)

    # One activation unit per history: clicks and queries live in different
    # embedding spaces, so their relevance functions are learned separately.
    self.interests = self.per_history(features, attention, "attention")
    self.mlp = MLP(hidden_units, dropout=dropout, name="mlp")


  def get_config(self):
    return json.loads(self._config_json)
