"""BST: the paper's transformer baseline (section 4.2; Chen et al., 2019).

`BehaviorSequenceTransformer` encodes the click history with the target item
appended as its last element (learned recency positions, padding masked); when
the data has queries, a second encoder does the same for the query history with
the current query appended. The pooled outputs (the target position's output and
the masked mean of the history's outputs, by default) are concatenated with the
other features f_o into the MLP.
"""

from egin_tf.layers.transformer import BehaviorSequenceTransformer
from egin_tf.models.base import TargetInterestModel
from egin_tf.models.configs import BSTConfig


class BST(TargetInterestModel):
  """Transformer baseline. Input: the reader's batch dict; output pctr [B].

  Args:
    features: the embedding tables (see `FeatureConfig`).
    hidden_units: the final MLP's hidden widths.
    num_blocks, num_heads, ffn_units, max_positions, pooling: of each
      `BehaviorSequenceTransformer` (max_positions should exceed the longest
      history kept, else the oldest entries share one position).
    dropout: dropout of the transformer and the final MLP.
  """

  CONFIG = BSTConfig
  INTEREST_KIND = "transformer"

  def interest_layer(self, config: BSTConfig, name: str) -> BehaviorSequenceTransformer:
    return BehaviorSequenceTransformer(
        num_blocks=config.num_blocks, num_heads=config.num_heads,
        ffn_units=config.ffn_units, dropout=config.dropout,
        max_positions=config.max_positions, pooling=config.pooling, name=name)
