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

Beyond the paper (each measured in experiments/RESULTS.md, "EGIN's graph earns its
keep"; the defaults are the winners on validation splits, ``graph_folds=2``,
``category_graph=True``, ``category_interest=True`` and
``query_target_interest=True``; the paper's model is ``graph_folds=1,
category_graph=False, category_interest=False, query_target_interest=False``):

* ``graph_folds`` > 1: out-of-fold graph tables (`egin_tf.layers.out_of_fold`): a
  row's features read tables that its own user's edges never trained, which
  removes the label leak of a graph trained on the same users' later clicks;
* ``share_tables``: the graph losses train the CTR network's own item and query
  id tables (one table per node type) instead of separate graph tables;
* ``interest_pooling``: the similarity-weighted sum of the top-k graph vectors of
  f_i2i (and f_q2i) as extra interest features;
* ``category_graph``: a category graph beside the item graph: c2c edges join the
  categories of clicks within the window (co-clicked categories), trained like
  i2i, and SimExtract(target category, click categories) on its vectors;
* ``category_interest``: SimExtract(target categories, click categories) on the
  CTR category table, and with queries SimExtract(query categories, target
  categories): the target-aware category comparison DIN and BST make;
* ``query_target_interest``: the graph cosine of the current query and the target;
* ``graph_vector_features``: the target's and the query's graph vectors themselves
  as MLP inputs.

Ablations (paper, Table 4): ``use_graph=False`` drops the graph losses and lets
SimExtract read the CTR network's own item/query embeddings; ``use_query=False``
keeps only item nodes and i2i edges and drops f_q2q and f_q2i (also the item-only
mode, automatic for data without queries such as Taobao); ``positional=False``
drops SimExtract's positional embedding.
"""

import dataclasses
import json
from typing import Dict, List, Sequence, Tuple

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.graph_learning import GraphLearning
from egin_tf.layers.mlp import MLP
from egin_tf.layers.negative_queue import NegativeQueue
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
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
    graph_folds: K users' folds of out-of-fold graph tables (1 = the paper's
      single table, which leaks labels in shuffled multi-epoch training); see
      `egin_tf.layers.out_of_fold`.
    share_tables: the graph losses train the CTR network's item and query id
      tables (needs ``graph_dim`` = the CTR embedding size and one fold).
    interest_pooling: add the similarity-weighted top-k graph vectors.
    category_interest: add the target-aware category SimExtracts.
    query_target_interest: add the graph cosine of query and target (queries).
    graph_vector_features: add the target's (and the query's) graph vectors to
      the MLP input, as two-stage graph methods (EGES) feed theirs.
    category_graph: also learn a category graph (c2c edges between the
      categories of clicks within the window, weight ``alpha``) and add
      SimExtract(target category, click categories) on its vectors.
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
               graph_folds: int = 2,
               share_tables: bool = False,
               interest_pooling: bool = False,
               category_interest: bool = True,
               query_target_interest: bool = True,
               graph_vector_features: bool = False,
               category_graph: bool = True,
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
      if category_graph:
        weights["c2c"] = alpha
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
    self.interest_pooling = interest_pooling
    self.category_interest = category_interest
    self.query_target_interest = query_target_interest and use_query
    self.graph_vector_features = graph_vector_features
    self.category_graph = category_graph and use_graph

    self.features = FeatureEmbeddings(features, name="features")
    self.pool = MaskedPooling(pooling)
    self.mlp = MLP(hidden_units, dropout=dropout, name="mlp")
    self._make_graph_tables(features, graph_dim, graph_folds, share_tables)
    if use_graph:
      self.graph_learning = GraphLearning(
          self.graph_items, self.graph_queries, use_query=use_query,
          window=window, q2q_timespan=q2q_timespan, q2i_timespan=q2i_timespan,
          seeds_fraction=seeds_fraction, subsample_threshold=subsample_threshold,
          num_negatives=num_negatives, queue_capacity=queue_capacity,
          logq_buckets=logq_buckets, seed=seed, name="graph_learning")
    if self.category_graph:
      self.graph_categories = OutOfFoldEmbedding(
          features.category_buckets, graph_dim, graph_folds, name="graph_category")
      self.category_learning = GraphLearning(
          self.graph_categories, self.graph_categories, use_query=False,
          window=window, num_negatives=num_negatives,
          queue_capacity=queue_capacity, seed=seed + 1,
          name="category_graph_learning")
    self._make_extracts(top_k, num_bins, positional, graph_dim, max_positions,
                        binning, position)

  def _make_graph_tables(self, features: FeatureConfig, graph_dim: int,
                         graph_folds: int, share_tables: bool) -> None:
    """The item and query tables the graph trains and SimExtract reads."""
    if share_tables or not self.use_graph:
      if share_tables and graph_folds != 1:
        raise ValueError("EGIN: share_tables needs graph_folds=1 (the CTR network "
                         f"has one table per node type), got {graph_folds}")
      if share_tables and graph_dim != features.embedding_dim:
        raise ValueError(
            f"EGIN: share_tables needs graph_dim ({graph_dim}) equal to the CTR "
            f"embedding size ({features.embedding_dim})")
      # "w/o graph" or shared: SimExtract reads the CTR network's id embeddings.
      self.graph_items = OutOfFoldEmbedding(table=self.features.items,
                                            name="graph_item")
      self.graph_queries = OutOfFoldEmbedding(table=self.features.queries,
                                              name="graph_query")
      return
    self.graph_items = OutOfFoldEmbedding(
        features.item_buckets, graph_dim, graph_folds, name="graph_item")
    self.graph_queries = OutOfFoldEmbedding(
        features.query_buckets, graph_dim, graph_folds, name="graph_query")

  def _make_extracts(self, top_k, num_bins, positional, graph_dim, max_positions,
                     binning, position) -> None:
    def extract(name, k=top_k):
      return SimExtract(k=k, num_bins=num_bins, positional=positional,
                        embedding_dim=graph_dim, max_positions=max_positions,
                        binning=binning, position=position, name=name)

    self.i2i_extract = extract("sim_i2i")
    if self.use_query:
      self.q2q_extract = extract("sim_q2q")
      self.q2i_extract = extract("sim_q2i")
    if self.category_interest:
      self.category_extract = extract("sim_cat_i2i")
      if self.use_query:
        self.query_target_cat_extract = extract("sim_cat_q2t", k=1)
    if self.query_target_interest:
      self.query_target_extract = extract("sim_graph_q2t", k=1)
    if self.category_graph:
      self.c2c_extract = extract("sim_c2c")

  @property
  def graph_folds(self) -> int:
    return self.graph_items.num_folds

  def forward(self, batch: Dict[str, tf.Tensor], training=None
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    f_o = dnn_inputs(self.features, self.pool, batch, training)
    interests = self.interest_features(batch)
    logits = self.mlp(tf.concat(f_o + interests, axis=-1), training=training)
    aux = {}
    if training and self.use_graph:
      aux = self.graph_losses(batch)
    return logits, aux

  def interest_features(self, batch: Dict[str, tf.Tensor]) -> List[tf.Tensor]:
    """f_i2i (and f_q2q, f_q2i) plus the optional interest features, [B, *] each."""
    folds = user_folds(batch[schema_lib.USER_ID], self.graph_folds)
    click_ids = batch[schema_lib.CLICKS.ids]
    click_mask = click_ids > 0
    target = self.graph_items(batch[schema_lib.ITEM_ID], folds)
    clicks = self.graph_items(click_ids, folds)
    parts = self._extract(self.i2i_extract, target, clicks, click_mask)
    if self.use_query:
      query_hist_ids = batch[schema_lib.QUERIES.ids]
      query = self.graph_queries(batch[schema_lib.QUERY_ID], folds)
      query_hist = self.graph_queries(query_hist_ids, folds)
      parts.append(self.q2q_extract(query, query_hist, query_hist_ids > 0))
      parts += self._extract(self.q2i_extract, query, clicks, click_mask)
      if self.query_target_interest:
        has_query = (batch[schema_lib.QUERY_ID] > 0)[:, tf.newaxis]
        parts.append(self.query_target_extract(
            query, target[:, tf.newaxis], has_query))
    if self.category_interest:
      parts += self._category_features(batch, click_mask)
    if self.graph_vector_features:
      parts += [target, query] if self.use_query else [target]
    if self.category_graph:
      category_batch = _first_category_batch(batch)
      clicked = category_batch[schema_lib.CLICKS.ids]
      parts.append(self.c2c_extract(
          self.graph_categories(category_batch[schema_lib.ITEM_ID], folds),
          self.graph_categories(clicked, folds), click_mask & (clicked > 0)))
    return parts

  def _extract(self, layer: SimExtract, target: tf.Tensor, sequence: tf.Tensor,
               mask: tf.Tensor) -> List[tf.Tensor]:
    """SimExtract's output, and with ``interest_pooling`` the pooled vectors."""
    if not self.interest_pooling:
      return [layer(target, sequence, mask)]
    output, details = layer(target, sequence, mask, return_details=True)
    return [output, similarity_weighted_pool(sequence, details)]

  def _category_features(self, batch: Dict[str, tf.Tensor],
                         click_mask: tf.Tensor) -> List[tf.Tensor]:
    embed = self.features.embed_categories
    target_cats = embed(batch[schema_lib.ITEM_CATS])
    parts = [self.category_extract(
        target_cats, embed(batch[schema_lib.CLICKS.cats]), click_mask)]
    if self.use_query:
      has_query = (batch[schema_lib.QUERY_ID] > 0)[:, tf.newaxis]
      parts.append(self.query_target_cat_extract(
          embed(batch[schema_lib.QUERY_CATS]), target_cats[:, tf.newaxis],
          has_query))
    return parts

  def graph_losses(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """L_i2i, L_q2q, L_q2i of a batch; updates the negative queues.

    With K folds, each row's edges train the tables of the row's own fold.
    """
    folds = None
    if self.graph_folds > 1:
      folds = user_folds(batch[schema_lib.USER_ID], self.graph_folds)
    losses = self.graph_learning(batch, folds=folds)
    if self.category_graph:
      losses["c2c"] = self.category_learning(_first_category_batch(batch),
                                             folds=folds)["i2i"]
    return losses

  @property
  def item_queue(self) -> NegativeQueue:
    """The item queue (shared by the folds: it holds ids only)."""
    return self.graph_learning.item_queue

  @property
  def query_queue(self) -> NegativeQueue:
    return self.graph_learning.query_queue

  @property
  def has_graph_variables(self) -> bool:
    return self.use_graph

  def graph_variables(self) -> List[tf.Variable]:
    """The trainable variables of the graph's item and query tables (every fold)."""
    if not self.use_graph:
      return []
    tables = [self.graph_items, self.graph_queries]
    if self.category_graph:
      tables.append(self.graph_categories)
    return [v for table in tables for v in table.trainable_variables]

  def embedding_tables(self):
    """The graph tables of fold 0 (the CTR tables without the graph)."""
    return {"items": self.graph_items.fold_table(0),
            "queries": self.graph_queries.fold_table(0)}

  def get_config(self):
    return json.loads(self._config_json)


def _first_category_batch(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The batch with each click and the target replaced by its first category:
  the sequence whose window edges are the category graph's c2c edges."""
  out = dict(batch)
  out[schema_lib.CLICKS.ids] = batch[schema_lib.CLICKS.cats][:, :, 0]
  out[schema_lib.ITEM_ID] = batch[schema_lib.ITEM_CATS][:, 0]
  return out


def similarity_weighted_pool(sequence: tf.Tensor, details: Dict[str, tf.Tensor]
                             ) -> tf.Tensor:
  """Sum of SimExtract's chosen elements weighted by their cosines: [B, d].

  ``details`` is SimExtract's ``return_details`` dict; empty slots weigh 0.
  """
  index = tf.maximum(details["index"], 0)  # [B, k]; -1 (empty) -> 0, weighted 0
  chosen = tf.gather(sequence, index, batch_dims=1)  # [B, k, d]
  weights = tf.where(details["valid"], details["similarity"],
                     tf.zeros_like(details["similarity"]))
  return tf.einsum("bk,bkd->bd", tf.cast(weights, chosen.dtype), chosen)
