"""DIN: the paper's attention baseline (section 4.2; Zhou et al., 2018).

The click history is pooled by `TargetAttention` with the target item as the
query; when the data has queries, the query history is pooled likewise with the
current query as the target. The pooled interests are concatenated with the other
features f_o (user, target item, query, ``cat/`` and ``dense/`` features) into the
MLP.
"""

from typing import Optional

from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.target_attention import TargetAttention
from egin_tf.models.base import TargetInterestModel, resolve_config
from egin_tf.models.configs import DINConfig


class DIN(TargetInterestModel):
  """Attention baseline. Input: the reader's batch dict; output pctr [B].

  Args:
    features: the embedding tables (see `FeatureConfig`).
    hidden_units: the final MLP's hidden widths.
    attention_units: hidden widths of DIN's activation unit.
    attention_activation: their activation (``"sigmoid"``, ``"prelu"``, ...).
    dropout: dropout rate of the final MLP.
  """

  CONFIG = DINConfig

  def __init__(self, features: FeatureConfig, config: Optional[DINConfig] = None,
               **kwargs):
    features, config, kwargs = resolve_config(self.CONFIG, features, config, kwargs)
    super().__init__(model_config=config, feature_config=features, **kwargs)
    self.features = FeatureEmbeddings(features, name="features")

    def attention(name):
      return TargetAttention(config.attention_units, config.attention_activation,
                             name=name)

    # One activation unit per history: clicks and queries live in different
    # embedding spaces, so their relevance functions are learned separately.
    self.interests = self.per_history(features, attention, "attention")
    self.mlp = MLP(config.hidden_units, dropout=config.dropout, name="mlp")
