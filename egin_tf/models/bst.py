"""BST: the paper's transformer baseline (section 4.2; Chen et al., 2019).

`BehaviorSequenceTransformer` encodes the click history with the target item
appended as its last element (learned recency positions, padding masked); when
the data has queries, a second encoder does the same for the query history with
the current query appended. The pooled outputs (the target position's output and
the masked mean of the history's outputs, by default) are concatenated with the
other features f_o into the MLP.
"""

import dataclasses
import json
from typing import Sequence

from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.transformer import BehaviorSequenceTransformer
from egin_tf.models.base import TargetInterestModel


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

  def __init__(self, features: FeatureConfig,
               hidden_units: Sequence[int] = (200, 80),
               num_blocks: int = 1, num_heads: int = 2, ffn_units: int = 64,
               max_positions: int = 128,
               pooling: Sequence[str] = ("target", "mean"),
               dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if isinstance(features, dict):
      features = FeatureConfig(**features)
    # Kept as JSON text: Keras would wrap a dict attribute into a trackable.
    self._config_json = json.dumps({
        "features": dataclasses.asdict(features),
        "hidden_units": list(hidden_units), "num_blocks": num_blocks,
        "num_heads": num_heads, "ffn_units": ffn_units,
        "max_positions": max_positions, "pooling": list(pooling),
        "dropout": dropout})
    self.features = FeatureEmbeddings(features, name="features")

    def encoder(name):
      return BehaviorSequenceTransformer(
          num_blocks=num_blocks, num_heads=num_heads, ffn_units=ffn_units,
          dropout=dropout, max_positions=max_positions, pooling=pooling,
          name=name)

    self.interests = self.per_history(features, encoder, "transformer")
    self.mlp = MLP(hidden_units, dropout=dropout, name="mlp")


  def get_config(self):
    return json.loads(self._config_json)
