"""EGES (Wang et al., 2018; paper section 4.2): the two-stage "construct and sample"
baseline that EGIN's end-to-end graph learning replaces.

Stage 1 (`train_eges`) learns item vectors, one module per step:

1. `sessions`: every user's click sessions, rebuilt from the training TFRecords;
2. `graph`: the weighted directed item graph of the sessions, and its nodes'
   categories as side information;
3. `walks`: DeepWalk random walks over the graph and their skip-gram pairs;
4. `skipgram`: `EgesEmbedding` (H_v, id and side embeddings mixed by per-item
   attention) trained by `EgesSkipGram` (sampled softmax);
5. `pretrain`: all of the above, with progress per stage; `vectors_file` writes
   and reads the resulting ``.npz`` of ids and vectors (`EgesVectors`).

Stage 2 (`egin_tf.models.eges.EGES`, registered as model "eges"): EGIN's CTR
network whose SimExtract reads the vectors, frozen
(`frozen_table.FrozenIdEmbedding`). This package is stage 1 and what reads its
vectors file; it sits below `egin_tf.models` and never imports it.
`config.EgesPretrainConfig` holds stage 1's settings (the model's
`egin_tf.models.configs.EGESConfig` implies one: `egin_tf.models.eges.stage1_config`).

Leak guards (``EgesPretrainConfig.leak_guard``; the model's ``eges_leak_guard``). A
positive impression at time t (user u clicked target x after clicks h1..hn)
comes back in u's LATER rows' click histories as the click x right after
h1..hn. Stage 1 reads those histories, so without a guard its graph links
exactly (recent clicks -> target) for every training positive, and stage 2
learns "EGES similarity to the clicks => click" on training rows, which does not
hold on held-out days (Taobao: test logloss 1.10 against EGIN's 0.39). Guards:

* ``out_of_fold``: users are hashed into K folds
  (`egin_tf.layers.out_of_fold.user_folds`, EGIN's folds); set k of the vectors
  is trained on the sessions of fold k's users only, and a row of fold k reads
  set (k + 1) mod K, in training and serving. No row reads vectors that any
  session of its own user trained, so no row reads its own label. Each set
  sees 1/K of the users: fewer items get a vector.
* ``time_cut`` (the default): stage 1 reads only the click events before the cut time T, the
  earliest time of the latest ``time_cut`` share of the training impressions
  (`sessions.cut_time`). Rows before T still have their clicked target in the
  graph, right after their clicks, so in stage 2 they read their target as
  unknown (the zero vector): the EGES features are learned from the rows at or
  after T only, while every row trains the rest of the network (f_o, the MLP).
  Which rows can still leak: none through its own target, provided a positive's
  click is recorded at or after the row's own time, as every data set here does
  (Taobao and trivago record it at the impression's time, the simulator a few
  seconds later). Data that recorded a click before its impression would let a
  row at or after T find its target in the graph. Held-out rows all come after T; the price is
  a graph without the latest ``time_cut`` of the clicks.
* ``none``: the paper's two-stage model, every event read by one set; leaks.

Measured (issue 24; `experiments/paper_tables.py`, seed 0, lr 1e-3, L = 50,
validation AUC / logloss; ``time_cut`` 0.5, ``out_of_fold`` K = 2):

  ============  ===============  ===============  ===============
  variant       Taobao           simulator        trivago
  ============  ===============  ===============  ===============
  none          0.8937 / 0.9149  0.6916 / 0.5407  0.7302 / 0.1688
  out_of_fold   0.8869 / 0.4043  0.7148 / 0.5040  0.7473 / 0.1607
  time_cut      0.8915 / 0.4061  0.7142 / 0.5049  0.7486 / 0.1603
  ============  ===============  ===============  ===============

Both guards bring the logloss back (Taobao 0.91 -> 0.40). ``time_cut`` is the
default: the higher mean validation AUC (0.7848 against 0.7830; ahead on Taobao
and trivago, 0.0006 behind on the simulator), logloss within 0.002 of
``out_of_fold``, and half its stage-1 time (one set from half the clicks).

The graph, walks and pairs live in memory (numpy).
"""

from data_pipeline.tf_env import ensure_legacy_keras

ensure_legacy_keras(__name__)  # first: Keras 2 (tf-keras) before anything uses tf.keras

from egin_tf.eges.config import LEAK_GUARDS, EgesPretrainConfig
from egin_tf.eges.frozen_table import FrozenIdEmbedding
from egin_tf.eges.graph import ItemGraph, build_graph, graph_from_sessions, side_index
from egin_tf.eges.pretrain import (READ_STAGE, TRAIN_STAGE, WALK_STAGE, StageProgress,
                                   train_eges, train_embeddings, training_steps)
from egin_tf.eges.sessions import Sessions, cut_time, fold_sessions, read_sessions
from egin_tf.eges.skipgram import EgesEmbedding, EgesSkipGram
from egin_tf.eges.vectors_file import (EgesVectors, load_embeddings, read_vectors,
                                       save_embeddings, write_vectors)
from egin_tf.eges.walks import random_walks, skipgram_pairs

__all__ = [
    "EgesEmbedding", "EgesPretrainConfig", "EgesSkipGram", "EgesVectors",
    "FrozenIdEmbedding", "ItemGraph", "LEAK_GUARDS", "READ_STAGE", "Sessions",
    "StageProgress", "TRAIN_STAGE", "WALK_STAGE", "build_graph", "cut_time",
    "fold_sessions", "graph_from_sessions", "load_embeddings", "random_walks",
    "read_sessions", "read_vectors", "save_embeddings", "side_index",
    "skipgram_pairs", "train_eges", "train_embeddings", "training_steps",
    "write_vectors",
]
