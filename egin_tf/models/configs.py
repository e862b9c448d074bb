"""The hyperparameters of every model: one frozen `Config` per model.

Each model's constructor takes its config (or the config's fields as keyword
arguments) and nothing else defines a default: these declarations are the single
source of the defaults, ranges and help texts that the constructors, the model
directory's ``config.json``, ``egin-tf train --config`` files and the command
line's flags all use. Fields shared by several models are declared once, in the
base they share.
"""

from typing import Optional, Tuple

from egin_tf.configs import Config, param
import dataclasses


@dataclasses.dataclass(frozen=True)
class HeadConfig(Config):
  """The MLP on top of every model's features."""
  hidden_units: Tuple[int, ...] = param((200, 80), "Widths of the MLP's hidden "
                                        "layers (comma-separated).", min=1)
  dropout: float = param(0.0, "Dropout rate in the MLP.", min=0.0, below=1.0)
  match_features: bool = param(True, "Add the explicit target-match features "
                               "(layers.TargetMatch: the target's repeats and "
                               "category matches in the clicks, query-target "
                               "category match) to the MLP; the same for every "
                               "model, so comparisons stay fair.")


@dataclasses.dataclass(frozen=True)
class DNNConfig(HeadConfig):
  pooling: str = param("sum", "Pooling of the click and query histories in f_o.",
                       choices=("sum", "mean"))


@dataclasses.dataclass(frozen=True)
class DNNCrossConfig(DNNConfig):
  cross_buckets: int = param(100_000, "Hash buckets of the (history item x "
                             "target item) cross embeddings.", min=2)


@dataclasses.dataclass(frozen=True)
class DINConfig(HeadConfig):
  attention_units: Tuple[int, ...] = param((36,), "Widths of DIN's activation "
                                           "unit (comma-separated).", min=1)
  attention_activation: str = param("sigmoid", "Activation of DIN's activation "
                                    "unit: a Keras activation name or prelu.")


@dataclasses.dataclass(frozen=True)
class BSTConfig(HeadConfig):
  num_blocks: int = param(1, "BST's transformer blocks.", min=1)
  num_heads: int = param(2, "Attention heads per transformer block.", min=1)
  ffn_units: int = param(64, "Width of the transformer's feed-forward layer.",
                         min=1)
  max_positions: int = param(128, "Rows of the positional table (SimExtract's "
                             "for EGIN/EGES, the transformer's for BST).", min=2)
  pooling: Tuple[str, ...] = param(("target", "mean"), "BST: transformer outputs "
                                   "pooled (comma-separated subset of target,mean).",
                                   choices=("target", "mean"))

  def check(self) -> None:
    if not self.pooling:
      self.fail("pooling", "must name at least one of target, mean")


@dataclasses.dataclass(frozen=True)
class SimExtractConfig(DNNConfig):
  """EGIN's CTR network: f_o, the SimExtract interests, the MLP (EGIN and EGES)."""
  top_k: int = param(10, "Elements SimExtract keeps (paper: 10).", min=1)
  num_bins: int = param(20, "Equal-width similarity bins in SimExtract.", min=1)
  binning: str = param("hard", "SimExtract's binning: hard (paper; no CTR gradient "
                       "reaches the graph tables) or soft (differentiable).",
                       choices=("hard", "soft"))
  positional: bool = param(True, "Positional embeddings in SimExtract (ablation: "
                           "--no_positional).", negated_flag="no_positional")
  position: str = param("recency", "SimExtract's position of an element: its "
                        "recency rank or its index.", choices=("recency", "index"))
  max_positions: int = param(100, "Rows of the positional table (SimExtract's "
                             "for EGIN/EGES, the transformer's for BST).", min=1)


@dataclasses.dataclass(frozen=True)
class EginConfig(SimExtractConfig):
  """EGIN (paper, section 3; equation 1: L_CTR + alpha L_i2i + beta L_q2q + gamma L_q2i).

  See `egin_tf.models.egin.EGIN` for what each option adds beyond the paper.
  """
  graph_dim: int = param(10, "Dimension of the graph item/query tables (paper: "
                         "10).", min=1)
  window: int = param(2, "i2i window: clicks this close in a history are joined "
                      "(paper: 2).", min=1)
  q2q_timespan: int = param(30 * 60, "Seconds within which two queries of a user "
                            "form a q2q edge.", min=1)
  q2i_timespan: int = param(60 * 60, "Seconds within which a query and a click form "
                            "a q2i edge.", min=1)
  seeds_fraction: float = param(0.0, "Share of rows whose i2i edges come from the "
                                "seeds sequence (paper 4.6; 0 = clicks only).",
                                min=0.0, max=1.0)
  subsample_threshold: Optional[float] = param(
      None, "word2vec-style subsampling of frequent items in i2i edges (unset: off).",
      above=0.0)
  num_negatives: int = param(100, "Negatives per batch and node type (paper: 100).",
                             min=1)
  per_edge_negatives: bool = param(False, "Every graph edge draws its own "
                                   "num_negatives (the paper's Algorithm 1; use a "
                                   "small num_negatives) instead of one draw per "
                                   "batch shared by all edges.")
  queue_capacity: int = param(1_000_000, "Ids kept per cross-batch negative queue "
                              "(paper: 1,000,000).", min=1)
  logq_buckets: Optional[int] = param(None, "Hash buckets of the logQ correction of "
                                      "the sampled softmax (unset: off).", min=2)
  alpha: float = param(1.0, "Weight of L_i2i (and of L_c2c).", min=0.0)
  beta: float = param(1.0, "Weight of L_q2q.", min=0.0)
  gamma: float = param(1.0, "Weight of L_q2i.", min=0.0)
  use_graph: bool = param(True, "Train the graph tables with the graph losses "
                          "(ablation: --no_graph).", negated_flag="no_graph")
  use_query: bool = param(True, "Query nodes, q2q/q2i edges and features "
                          "(ablation: --no_query; off for data without queries).",
                          negated_flag="no_query")
  graph_folds: int = param(2, "Users' folds of out-of-fold graph tables (1 = the "
                           "paper's single table).", min=1)
  share_tables: bool = param(False, "The graph losses train the CTR network's own "
                             "item/query tables (needs --graph_folds 1).")
  interest_pooling: bool = param(False, "Add the similarity-weighted top-k graph "
                                 "vectors as interest features.")
  graph_vector_features: bool = param(False, "Add the target's (and query's) graph "
                                      "vectors to the MLP input.")
  category_graph: bool = param(True, "Also learn a category graph (c2c edges, "
                               "weight alpha) and its SimExtract. Equal categories "
                               "read one row (cosine 1 untrained): a match feature, "
                               "on only with match_features.")
  seed: int = param(0, "Seed of the queues' sampling and the graph's random "
                    "options (egin-tf train sets it from --seed).", min=0)

  def check(self) -> None:
    if self.share_tables and self.graph_folds != 1:
      self.fail("graph_folds", "share_tables needs graph_folds=1 (the CTR network "
                "has one table per node type)")


@dataclasses.dataclass(frozen=True)
class EGESConfig(SimExtractConfig):
  """EGES (two-stage): EGIN's CTR network on frozen EGES item vectors.

  The leak guards are described in `egin_tf.eges` (package docstring).
  """
  eges_embeddings_path: Optional[str] = param(
      None, "The EGES vectors (.npz of egin_tf.eges.train_eges); unset: egin-tf "
      "train runs stage 1 into the model directory.")
  slot_dim: int = param(10, "Dimension of the EGES vectors (EGIN's graph_dim).",
                        min=1)
  eges_leak_guard: str = param(
      "time_cut", "How stage 1 keeps a row's own label out of the vectors it "
      "reads: out_of_fold (a set of vectors per users' fold; a row reads another "
      "fold's set), time_cut (stage 1 reads the clicks before a cut time; rows "
      "before it read no target vector) or none (the paper's; leaks labels).",
      choices=("out_of_fold", "time_cut", "none"))
  eges_folds: int = param(2, "out_of_fold: users' folds, one set of vectors "
                          "each.", min=2)
  eges_time_cut: float = param(0.5, "time_cut: share of the training impressions "
                               "at or after the cut.", above=0.0, below=1.0)
