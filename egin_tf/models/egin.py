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

Beyond the paper (each measured in experiments/RESULTS.md; the defaults are the
winners on validation splits, ``graph_folds=2`` and ``category_graph=True``; the
paper's model is ``graph_folds=1, category_graph=False, match_features=False``):

* ``graph_folds`` > 1: out-of-fold graph tables (`egin_tf.layers.out_of_fold`): a
  row's features read tables that its own user's edges never trained, which
  removes the label leak of a graph trained on the same users' later clicks;
* ``share_tables``: the graph losses train the CTR network's own item and query
  id tables (one table per node type) instead of separate graph tables;
* ``interest_pooling``: the similarity-weighted sum of the top-k graph vectors of
  f_i2i (and f_q2i) as extra interest features;
* ``category_graph``: a category graph beside the item graph: c2c edges join the
  categories of clicks within the window (co-clicked categories), trained like
  i2i, and SimExtract(target category, click categories) on its vectors. Equal
  categories read the same row, so their cosine is 1 before any training: it is
  a target-match feature, and is on only with ``match_features`` (the block every
  model gets, `egin_tf.layers.target_match`), so EGIN never sees a category
  match that its baselines lack;
* ``graph_vector_features``: the target's and the query's graph vectors themselves
  as MLP inputs.

Ablations (paper, Table 4): ``use_graph=False`` drops the graph losses and lets
SimExtract read the CTR network's own item/query embeddings; ``use_query=False``
keeps only item nodes and i2i edges and drops f_q2q and f_q2i (also the item-only
mode, automatic for data without queries such as Taobao); ``positional=False``
drops SimExtract's positional embedding.
"""

from typing import Dict, List, Optional, Tuple

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.graph_learning import GraphLearning
from egin_tf.layers.mlp import MLP
from egin_tf.layers.negative_queue import NegativeQueue
from egin_tf.layers.out_of_fold import OutOfFoldEmbedding, user_folds
from egin_tf.layers.pooling import MaskedPooling
from egin_tf.layers.sim_extract import SimExtract
from egin_tf.models.base import CTRModel, resolve_config
from egin_tf.models.configs import EginConfig, SimExtractConfig
from egin_tf.models.dnn import dnn_inputs


class EGIN(CTRModel):
  """EGIN. Input: the reader's batch dict; output pctr float32 [B].

  Args:
    features: table sizes and feature names (`FeatureConfig.from_schema`).
    config: the hyperparameters, an `EginConfig` (its fields may also be given
      as keyword arguments; each field's help says what it does).
    item_table: with ``use_graph=False``, the item table SimExtract reads
      instead of the CTR network's own (ids [...] -> [..., graph_dim]; EGES
      passes its frozen pretrained vectors). None: the CTR item table.
  """

  CONFIG = EginConfig

  def __init__(self, features: FeatureConfig, config: Optional[EginConfig] = None,
               *, item_table: Optional[tf.keras.layers.Layer] = None, **kwargs):
    features, config, kwargs = resolve_config(EginConfig, features, config, kwargs)
    c = config
    use_query = c.use_query and features.has_queries
    super().__init__(aux_loss_weights=_loss_weights(c, use_query),
                     model_config=config, feature_config=features, **kwargs)
    self.use_graph = c.use_graph
    self.use_query = use_query
    self.interest_pooling = c.interest_pooling
    self.graph_vector_features = c.graph_vector_features
    self.category_graph = _uses_category_graph(c)

    self.features = FeatureEmbeddings(features, name="features")
    self.pool = MaskedPooling(c.pooling)
    self.mlp = MLP(c.hidden_units, dropout=c.dropout, name="mlp")
    self._make_graph_tables(features, c.graph_dim, c.graph_folds, c.share_tables,
                            item_table)
    if c.use_graph:
      self.graph_learning = GraphLearning(
          self.graph_items, self.graph_queries, use_query=use_query,
          window=c.window, q2q_timespan=c.q2q_timespan, q2i_timespan=c.q2i_timespan,
          seeds_fraction=c.seeds_fraction, subsample_threshold=c.subsample_threshold,
          num_negatives=c.num_negatives, queue_capacity=c.queue_capacity,
          logq_buckets=c.logq_buckets, per_edge_negatives=c.per_edge_negatives,
          seed=c.seed, name="graph_learning")
    if self.category_graph:
      self.graph_categories = OutOfFoldEmbedding(
          features.category_buckets, c.graph_dim, c.graph_folds,
          name="graph_category")
      self.category_learning = GraphLearning(
          self.graph_categories, self.graph_categories, use_query=False,
          window=c.window, num_negatives=c.num_negatives,
          queue_capacity=c.queue_capacity,
          per_edge_negatives=c.per_edge_negatives, seed=c.seed + 1,
          name="category_graph_learning")
    self._make_extracts(c, c.graph_dim)

  def _make_graph_tables(self, features: FeatureConfig, graph_dim: int,
                         graph_folds: int, share_tables: bool,
                         item_table: Optional[tf.keras.layers.Layer]) -> None:
    """The item and query tables the graph trains and SimExtract reads."""
    if item_table is not None and self.use_graph:
      raise ValueError("EGIN: item_table stands in for the graph's item table; it "
                       "needs use_graph=False")
    if share_tables or not self.use_graph:
      if share_tables and graph_dim != features.embedding_dim:
        raise ValueError(
            f"EGIN: share_tables needs graph_dim ({graph_dim}) equal to the CTR "
            f"embedding size ({features.embedding_dim})")
      # "w/o graph" or shared: SimExtract reads the CTR network's id embeddings
      # (or the given item_table).
      self.graph_items = OutOfFoldEmbedding(
          table=self.features.items if item_table is None else item_table,
          name="graph_item")
      self.graph_queries = OutOfFoldEmbedding(table=self.features.queries,
                                              name="graph_query")
      return
    self.graph_items = OutOfFoldEmbedding(
        features.item_buckets, graph_dim, graph_folds, name="graph_item")
    self.graph_queries = OutOfFoldEmbedding(
        features.query_buckets, graph_dim, graph_folds, name="graph_query")

  def _make_extracts(self, c: SimExtractConfig, slot_dim: int) -> None:
    def extract(name):
      return SimExtract(k=c.top_k, num_bins=c.num_bins, positional=c.positional,
                        embedding_dim=slot_dim, max_positions=c.max_positions,
                        binning=c.binning, position=c.position, name=name)

    self.i2i_extract = extract("sim_i2i")
    if self.use_query:
      self.q2q_extract = extract("sim_q2q")
      self.q2i_extract = extract("sim_q2i")
    if self.category_graph:
      self.c2c_extract = extract("sim_c2c")

  @property
  def graph_folds(self) -> int:
    return self.graph_items.num_folds

  def forward(self, batch: Dict[str, tf.Tensor], training=None
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    f_o = dnn_inputs(self.features, self.pool, batch, training)
    interests = self.interest_features(batch)
    logits = self.mlp(self.head_input(f_o + interests, batch), training=training)
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

  def graph_losses(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """L_i2i, L_q2q, L_q2i of a batch; updates the negative queues.

    With K folds, each row's edges train the tables of the row's own fold.
    """
    folds = None
    if self.graph_folds > 1:
      folds = user_folds(batch[schema_lib.USER_ID], self.graph_folds)
    # Explicitly a training call: GraphLearning treats an unset `training` as
    # inference (no losses, no queue updates), and this runs only when training.
    losses = self.graph_learning(batch, folds=folds, training=True)
    if self.category_graph:
      losses["c2c"] = self.category_learning(_first_category_batch(batch),
                                             folds=folds, training=True)["i2i"]
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


def _loss_weights(c: EginConfig, use_query: bool) -> Dict[str, float]:
  """Equation 1's weights of the graph losses this configuration trains."""
  if not c.use_graph:
    return {}
  weights = {"i2i": c.alpha}
  if _uses_category_graph(c):
    weights["c2c"] = c.alpha
  if use_query:
    weights.update(q2q=c.beta, q2i=c.gamma)
  return weights


def _uses_category_graph(c: EginConfig) -> bool:
  """The category graph's SimExtract is a match feature (module docstring): it is
  on only with the graph and ``match_features``."""
  return c.category_graph and c.use_graph and c.match_features


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
