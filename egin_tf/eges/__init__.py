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
   and reads the resulting ``.npz`` of ids and vectors.

Stage 2 (`model.EGES`): EGIN's CTR network whose SimExtract reads the vectors,
frozen (`frozen_table.FrozenIdEmbedding`). `config.EgesConfig` holds stage 1's
settings.

The graph, walks and pairs live in memory (numpy).
"""

# First: egin_tf.models imports egin_tf.eges.model (to register EGES), which
# imports egin_tf.models' submodules; importing the models package before this
# package's model module lets either package be imported first.
import egin_tf.models  # noqa: F401
from egin_tf.eges.config import EgesConfig
from egin_tf.eges.frozen_table import FrozenIdEmbedding
from egin_tf.eges.graph import ItemGraph, build_graph, graph_from_sessions, side_index
from egin_tf.eges.model import EGES
from egin_tf.eges.pretrain import (READ_STAGE, TRAIN_STAGE, WALK_STAGE, StageProgress,
                                   train_eges, train_embeddings, training_steps)
from egin_tf.eges.sessions import Sessions, read_sessions
from egin_tf.eges.skipgram import EgesEmbedding, EgesSkipGram
from egin_tf.eges.vectors_file import load_embeddings, save_embeddings
from egin_tf.eges.walks import random_walks, skipgram_pairs

__all__ = [
    "EGES", "EgesConfig", "EgesEmbedding", "EgesSkipGram", "FrozenIdEmbedding",
    "ItemGraph", "READ_STAGE", "Sessions", "StageProgress", "TRAIN_STAGE",
    "WALK_STAGE", "build_graph", "graph_from_sessions", "load_embeddings",
    "random_walks", "read_sessions", "save_embeddings", "side_index",
    "skipgram_pairs", "train_eges", "train_embeddings", "training_steps",
]
