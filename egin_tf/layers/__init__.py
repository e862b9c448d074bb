"""Keras layers of egin-tf; each can be lifted into another CTR model on its own."""

from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.id_embedding import IdEmbedding, bucketize_ids
from egin_tf.layers.mlp import MLP
from egin_tf.layers.pooling import MaskedPooling
from egin_tf.layers.sim_extract import SimExtract
from egin_tf.layers.graph_edges import Edges
from egin_tf.layers.graph_loss import GraphSoftmaxLoss, reverse_edges
from egin_tf.layers.negative_queue import NegativeQueue, NegativeSample
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
from egin_tf.layers.query_item_graph import QueryItemGraph
from egin_tf.layers.graph_learning import GraphLearning
from egin_tf.layers.target_attention import TargetAttention
from egin_tf.layers.target_match import TargetMatch
from egin_tf.layers.transformer import BehaviorSequenceTransformer, TransformerBlock
