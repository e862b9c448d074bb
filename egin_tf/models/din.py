"""DIN: the paper's attention baseline (section 4.2; Zhou et al., 2018).

The click history is pooled by `TargetAttention` with the target item as the
query; when the data has queries, the query history is pooled likewise with the
current query as the target. The pooled interests are concatenated with the other
features f_o (user, target item, query, ``cat/`` and ``dense/`` features) into the
MLP.
"""

from egin_tf.layers.target_attention import TargetAttention
from egin_tf.models.base import TargetInterestModel
from egin_tf.models.configs import DINConfig


class DIN(TargetInterestModel):
  """Attention baseline. Input: the reader's batch dict; output pctr [B].

  One activation unit per history: clicks and queries live in different
  embedding spaces, so their relevance functions are learned separately.

  Args:
    features: the embedding tables (see `FeatureConfig`).
    hidden_units: the final MLP's hidden widths.
    attention_units: hidden widths of DIN's activation unit.
    attention_activation: their activation (``"sigmoid"``, ``"prelu"``, ...).
    dropout: dropout rate of the final MLP.
  """

  CONFIG = DINConfig
  INTEREST_KIND = "attention"

  def interest_layer(self, config: DINConfig, name: str) -> TargetAttention:
    return TargetAttention(config.attention_units, config.attention_activation,
                           name=name)
