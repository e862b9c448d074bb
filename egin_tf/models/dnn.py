"""DNN: the paper's pooling baseline (section 4.2).

Sum-pooled click-history embeddings (and query-history embeddings when the data
has queries) concatenated with the target item, user, query and other features,
into an MLP with a sigmoid.
"""

from typing import Dict, List, Optional

from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.pooling import MaskedPooling
from egin_tf.models.base import CTRModel, resolve_config
from egin_tf.models.configs import DNNConfig


def dnn_inputs(features: FeatureEmbeddings, pool: MaskedPooling,
               batch: Dict[str, tf.Tensor], training=None) -> List[tf.Tensor]:
  """The DNN's inputs: f_o [B, F] and each pooled history [B, 2d].

  The pooled histories are the clicks and, with queries, the query history (see
  `FeatureEmbeddings.targets_and_histories`). Other models add to these.
  """
  parts = [features.context(batch, training=training)]
  parts += [pool(pair.history, pair.mask)
            for pair in features.targets_and_histories(batch)]
  return parts


class DNN(CTRModel):
  """Pooling baseline. Input: the reader's batch dict; output pctr [B]."""

  CONFIG = DNNConfig

  def __init__(self, features: FeatureConfig, config: Optional[DNNConfig] = None,
               **kwargs):
    """``config``'s fields (`DNNConfig`) may also be given as keyword arguments."""
    features, config, kwargs = resolve_config(self.CONFIG, features, config, kwargs)
    super().__init__(model_config=config, feature_config=features, **kwargs)
    self.features = FeatureEmbeddings(features, name="features")
    self.pool = MaskedPooling(config.pooling)
    self.mlp = MLP(config.hidden_units, dropout=config.dropout, name="mlp")

  def forward(self, batch, training=None):
    parts = dnn_inputs(self.features, self.pool, batch, training)
    logits = self.mlp(self.head_input(parts, batch), training=training)
    return logits, {}
