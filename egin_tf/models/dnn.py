"""DNN: the paper's pooling baseline (section 4.2).

Sum-pooled click-history embeddings (and query-history embeddings when the data
has queries) concatenated with the target item, user, query and other features,
into an MLP with a sigmoid.
"""

import dataclasses
import json
from typing import Sequence

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.mlp import MLP
from egin_tf.layers.pooling import MaskedPooling
from egin_tf.models.base import CTRModel


class DNN(CTRModel):
  """Pooling baseline. Input: the reader's batch dict; output pctr [B]."""

  def __init__(self, features: FeatureConfig,
               hidden_units: Sequence[int] = (200, 80),
               pooling: str = "sum", dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if isinstance(features, dict):
      features = FeatureConfig(**features)
    # Kept as JSON text: Keras would wrap a dict attribute into a trackable.
    self._config_json = json.dumps({
        "features": dataclasses.asdict(features),
        "hidden_units": list(hidden_units), "pooling": pooling,
        "dropout": dropout})
    self.features = FeatureEmbeddings(features, name="features")
    self.pool = MaskedPooling(pooling)
    self.mlp = MLP(hidden_units, dropout=dropout, name="mlp")

  def forward(self, batch, training=None):
    f = self.features
    clicks = f.embed_items(batch[schema_lib.CLICKS.ids], batch[schema_lib.CLICKS.cats])
    parts = [f.context(batch, training=training),
             self.pool(clicks, batch[schema_lib.CLICKS.ids] > 0)]
    if f.config.has_queries:
      queries = f.embed_queries(batch[schema_lib.QUERIES.ids],
                                batch[schema_lib.QUERIES.cats])
      parts.append(self.pool(queries, batch[schema_lib.QUERIES.ids] > 0))
    logits = self.mlp(tf.concat(parts, axis=-1), training=training)
    return logits, {}

  def get_config(self):
    return json.loads(self._config_json)
