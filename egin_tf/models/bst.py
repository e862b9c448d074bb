"""BST: the paper's transformer baseline (section 4.2; Chen et al., 2019).

`BehaviorSequenceTransformer` encodes the click history with the target item
appended as its last element (learned recency positions, padding masked); when
the data has queries, a second encoder does the same for the query history with
the current query appended. The pooled outputs (the target position's output and
the masked mean of the history's outputs, by default) are concatenated with the
other features f_o into the MLP.
"""

from typing import Optional

from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.transformer import BehaviorSequenceTransformer
from egin_tf.models.base import TargetInterestModel, resolve_config
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

  def __init__(self, features: FeatureConfig, config: Optional[BSTConfig] = None,
               **kwargs):
    features, config, kwargs = resolve_config(self.CONFIG, features, config, kwargs)
    super().__init__(model_config=config, feature_config=features, **kwargs)
    self.features = FeatureEmbeddings(features, name="features")

    def encoder(name):
      return BehaviorSequenceTransformer(
          num_blocks=config.num_blocks, num_heads=config.num_heads,
          ffn_units=config.ffn_units, dropout=config.dropout,
          max_positions=config.max_positions, pooling=config.pooling, name=name)

    self.interests = self.per_history(features, encoder, "transformer")
    self.mlp = MLP(config.hidden_units, dropout=config.dropout, name="mlp")
