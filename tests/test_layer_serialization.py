"""Every registered layer survives tf.keras.layers.serialize -> deserialize
(the same class and config), as a user lifting it into a saved model needs."""

import egin_tf  # noqa: F401  (must precede any TensorFlow import)
from data_pipeline.tf_env import tf
import pytest

from egin_tf import layers
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings


def _feature_embeddings():
  return FeatureEmbeddings(FeatureConfig(item_buckets=50, query_buckets=20,
                                         user_buckets=10, category_buckets=8,
                                         embedding_dim=4, cat_features=["position"]))


LAYERS = {
    "MLP": lambda: layers.MLP(hidden_units=(8, 4), dropout=0.1, use_batch_norm=True),
    "NegativeQueue": lambda: layers.NegativeQueue(capacity=30, num_negatives=5,
                                                  seed=2, logq_buckets=64),
    "MaskedPooling": lambda: layers.MaskedPooling(mode="mean"),
    "QueryItemGraph": lambda: layers.QueryItemGraph(window=3, q2q_timespan=60,
                                                    q2i_timespan=120, seed=4),
    "SimExtract": lambda: layers.SimExtract(k=3, num_bins=5, embedding_dim=4,
                                            max_positions=10),
    "TargetAttention": lambda: layers.TargetAttention(hidden_units=(6,),
                                                      activation="prelu"),
    "TransformerBlock": lambda: layers.TransformerBlock(num_heads=1, ffn_units=8),
    "BehaviorSequenceTransformer": lambda: layers.BehaviorSequenceTransformer(),
    "FeatureEmbeddings": _feature_embeddings,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_serialize_deserialize_round_trip(name):
  layer = LAYERS[name]()
  serialized = tf.keras.layers.serialize(layer)
  assert serialized["registered_name"] == f"egin_tf>{name}"
  again = tf.keras.layers.deserialize(serialized)
  assert type(again) is type(layer)
  assert again.get_config() == layer.get_config()
