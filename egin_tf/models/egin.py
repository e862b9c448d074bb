"""EGIN: the Light-weight End-to-End Graph Interest Network (paper, section 3).

One forward pass serves both halves of Figure 1 from the same batch:

* the **query-item graph** (`QueryItemGraph`) turns the batch's click and query
  sequences into i2i, q2q and q2i edges; their sampled-softmax losses
  (`GraphSoftmaxLoss`) train an item table and a query table of dimension
  ``graph_dim`` against negatives drawn from cross-batch `NegativeQueue`s;
* the **multi-interest network** reads the same tables: f_i2i = SimExtract(target
  item, clicks), f_q2q = SimExtract(query, query history), f_q2i = SimExtract(query,
  clicks), concatenated with the DNN's features f_o (target item, user, query,
  other features and the sum-pooled histories) into an MLP giving pctr.

The joint objective (equation 1) is L = L_CTR + alpha L_i2i + beta L_q2q + gamma L_q2i;
`CTRModel.train_step` sums it and reports every term. Graph losses (and queue
updates) happen only in training steps; evaluation and serving score pctr alone.

Ablations (paper, Table 4): ``use_graph=False`` drops the graph losses and lets
SimExtract read the CTR network's own item/query embeddings; ``use_query=False``
keeps only item nodes and i2i edges and drops f_q2q and f_q2i (also the item-only
mode, automatic for data without queries such as Taobao); ``positional=False``
drops SimExtract's positional embedding.
"""

import dataclasses
import json
from typing import Dict, Sequence, Tuple

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.graph_learning import GraphLearning
from egin_tf.layers.id_embedding import IdEmbedding
from egin_tf.layers.mlp import MLP
from egin_tf.layers.negative_queue import NegativeQueue
from egin_tf.layers.pooling import MaskedPooling
from egin_tf.layers.sim_extract import SimExtract
from egin_tf.models.base import CTRModel
from egin_tf.models.dnn import dnn_inputs




class EGIN(CTRModel):
  """EGIN. Input: the reader's batch dict; output pctr float32 [B].

  Args:
    features: table sizes and feature names (`FeatureConfig.from_schema`).
    graph_dim: dimension of the graph item and query tables (paper: 10).
    window: i2i window (paper: 2).
    q2q_timespan, q2i_timespan: seconds; see `QueryItemGraph`.
    seeds_fraction: share of rows whose i2i edges come from the seeds sequence
      (paper section 4.6; 0 = clicks only).
    subsample_threshold: word2vec-style subsampling of frequent items in i2i
      edges (None = off).
    num_negatives: negatives per batch and node type (paper: 100).
    queue_capacity: ids kept per negative queue (paper: 1,000,000).
    logq_buckets: hash buckets for the logQ correction (None = off).
    top_k: elements SimExtract keeps (paper: 10).
    num_bins: equal-width similarity bins in SimExtract.
    binning: "hard" (paper; no CTR gradient reaches the graph tables through
      SimExtract) or "soft" (differentiable interpolation between bins).
    positional: positional embeddings in SimExtract (ablation: False).
    position: "recency" or "index"; see `SimExtract`.
    max_positions: rows of SimExtract's positional table.
    alpha, beta, gamma: weights of L_i2i, L_q2q, L_q2i.
    use_graph: train the graph tables with graph losses (ablation: False).
    use_query: query nodes, q2q/q2i edges and features (False = item-only;
      forced off when the data has no queries).
    hidden_units, dropout: the MLP.
    pooling: pooling of histories in f_o ("sum" as in the DNN baseline).
    seed: seeds the queues' sampling and the graph's random options.
  """

  def __init__(self, features: FeatureConfig,
               graph_dim: int = 10,
               window: int = 2,
               q2q_timespan: int = 30 * 60,
               q2i_timespan: int = 60 * 60,
               seeds_fraction: float = 0.0,
               subsample_threshold: float = None,
               num_negatives: int = 100,
               queue_capacity: int = 1_000_000,
               logq_buckets: int = None,
               top_k: int = 10,
               num_bins: int = 20,
               binning: str = "hard",
               positional: bool = True,
               position: str = "recency",
               max_positions: int = 100,
               alpha: float = 1.0,
               beta: float = 1.0,
               gamma: float = 1.0,
               use_graph: bool = True,
               use_query: bool = True,
               hidden_units: Sequence[int] = (200, 80),
               dropout: float = 0.0,
               pooling: str = "sum",
               seed: int = 0,
               **kwargs):
    if isinstance(features, dict):
      features = FeatureConfig(**features)
    use_query = use_query and features.has_queries
    weights = {}
    if use_graph:
      weights["i2i"] = alpha
      if use_query:
        weights.update(q2q=beta, q2i=gamma)
    super().__init__(aux_loss_weights=weights, **kwargs)
    config = {k: v for k, v in locals().items()
              if k not in ("self", "kwargs", "weights", "__class__")}
    config.update(features=dataclasses.asdict(features),
                  hidden_units=list(hidden_units))
    # Kept as JSON text: Keras would wrap a dict attribute into a trackable.
    self._config_json = json.dumps(config)
    self.use_graph = use_graph
    self.use_query = use_query

    self.features = FeatureEmbeddings(features, name="features")
    self.pool = MaskedPooling(pooling)
    self.mlp = MLP(hidden_units, dropout=dropout, name="mlp")
    if use_graph:
      self.graph_items = IdEmbedding(features.item_buckets, graph_dim,
                                     name="graph_item")
      self.graph_queries = IdEmbedding(features.query_buckets, graph_dim,
                                       name="graph_query")
      self.graph_learning = GraphLearning(
          self.graph_items, self.graph_queries, use_query=use_query,
          window=window, q2q_timespan=q2q_timespan, q2i_timespan=q2i_timespan,
          seeds_fraction=seeds_fraction, subsample_threshold=subsample_threshold,
          num_negatives=num_negatives, queue_capacity=queue_capacity,
          logq_buckets=logq_buckets, seed=seed, name="graph_learning")
    else:
      # "w/o graph": SimExtract reads the CTR network's own id embeddings.
      self.graph_items = self.features.items
      self.graph_queries = self.features.queries

    def extract(name):
      return SimExtract(k=top_k, num_bins=num_bins, positional=positional,
                        embedding_dim=graph_dim, max_positions=max_positions,
                        binning=binning, position=position, name=name)

    self.i2i_extract = extract("sim_i2i")
    if use_query:
      self.q2q_extract = extract("sim_q2q")
      self.q2i_extract = extract("sim_q2i")

  def forward(self, batch: Dict[str, tf.Tensor], training=None
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    click_ids = batch[schema_lib.CLICKS.ids]
    click_mask = click_ids > 0
    f_o = dnn_inputs(self.features, self.pool, batch, training)

    target = self.graph_items(batch[schema_lib.ITEM_ID])
    click_vectors = self.graph_items(click_ids)
    interests = [self.i2i_extract(target, click_vectors, click_mask)]
    if self.use_query:
      query_hist_ids = batch[schema_lib.QUERIES.ids]
      query = self.graph_queries(batch[schema_lib.QUERY_ID])
      query_hist = self.graph_queries(query_hist_ids)
      interests.append(self.q2q_extract(query, query_hist, query_hist_ids > 0))
      interests.append(self.q2i_extract(query, click_vectors, click_mask))
    logits = self.mlp(tf.concat(f_o + interests, axis=-1), training=training)

    aux = {}
    if training and self.use_graph:
      aux = self.graph_losses(batch)
    return logits, aux

  def graph_losses(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """L_i2i, L_q2q, L_q2i of a batch; updates the negative queues."""
    return self.graph_learning(batch)

  @property
  def item_queue(self) -> NegativeQueue:
    return self.graph_learning.item_queue

  @property
  def query_queue(self) -> NegativeQueue:
    return self.graph_learning.query_queue

  def embedding_tables(self):
    return {"items": self.graph_items, "queries": self.graph_queries}

  def get_config(self):
    return json.loads(self._config_json)
