"""Every public layer of `egin_tf.layers` in a small CTR model of the user's own,
built both ways from one recipe: functional (`functional`) and subclassed
(`Subclassed`), for test_layer_saving.py under tf-keras and Keras 3.

A recipe makes its layers once (``parts``) and says how a batch flows through
them (``forward``); the functional model runs ``forward`` on ``tf.keras.Input``s,
the subclassed one in ``call``. ``forward`` calls only layers on the batch (a
Keras 3 functional model allows no TF op outside a layer), so the same code
serves both. Every model predicts the pCTR of `layer_batch.two_rows` from the
target item's and query's embeddings plus what the recipe's layers add.
"""

from typing import Callable, Dict, NamedTuple, Optional

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf import layers
import graph_oracle
from keras_steps import AddLosses

CLICKS = schema_lib.CLICKS
QUERIES = schema_lib.QUERIES
ITEM_ID = schema_lib.ITEM_ID
QUERY_ID = schema_lib.QUERY_ID


class Recipe(NamedTuple):
  """parts() -> the layers by name; forward(parts, batch, training) -> output.

  stateful: the model has non-trainable state that training moves (queues,
  graph counts, batch-norm statistics).
  """
  parts: Callable[[], Dict[str, tf.keras.layers.Layer]]
  forward: Callable
  stateful: bool = False


def tables():
  """The item and the query table every model here reads."""
  return (layers.IdEmbedding(10, 4, name="items"),
          layers.IdEmbedding(6, 4, name="queries"))


def _ctr_parts(**more):
  items, queries = tables()
  return {"items": items, "queries": queries,
          "join": tf.keras.layers.Concatenate(name="join"),
          "head": tf.keras.layers.Dense(1, activation="sigmoid", name="pctr"),
          **more}


def _pctr(parts, batch, *more_features):
  """The CTR part every model shares: target item ++ query (++ more) -> sigmoid."""
  return parts["head"](parts["join"]([parts["items"](batch[ITEM_ID]),
                                      parts["queries"](batch[QUERY_ID]),
                                      *more_features]))


def _with_losses(parts, output, losses, training):
  return parts["add_losses"](output, losses, training=training)


# SimExtract ------------------------------------------------------------------

def _sim_extract_parts():
  return _ctr_parts(sim=layers.SimExtract(k=2, num_bins=3, embedding_dim=2,
                                          max_positions=4, binning="soft",
                                          name="sim_i2i"))


def _sim_extract(parts, batch, training):
  items = parts["items"]
  # Clicks 1, 2 and 3 masked out: row 0's history is empty, so fit trains the
  # empty history's embedding too; row 1 keeps clicks 4 and 5.
  interest = parts["sim"](items(batch[ITEM_ID]), items(batch[CLICKS.ids]),
                          batch[CLICKS.ids] > 3)
  return _pctr(parts, batch, interest)


# QueryItemGraph + GraphSoftmaxLoss ----------------------------------------------

@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class DenseWindowEdges(tf.keras.layers.Layer):
  """A user's layer that returns the dense `Edges` of the clicks' i2i window."""

  def call(self, click_ids):
    return graph_oracle.window_edges(click_ids, window=2)


def _graph_loss_parts(dense: bool = False):
  """``dense``: the i2i edges are a user layer's dense `Edges`."""
  losses = {name: layers.GraphSoftmaxLoss(name=name)
            for name in ("i2i", "q2q", "q2i", "i2q")}
  return _ctr_parts(
      graph=layers.QueryItemGraph(window=2, q2q_timespan=60, q2i_timespan=60,
                                  subsample_threshold=0.5, seed=3, name="graph"),
      item_queue=layers.NegativeQueue(16, 4, seed=1, logq_buckets=8, name="item_queue"),
      query_queue=layers.NegativeQueue(16, 4, seed=2, name="query_queue"),
      add_losses=AddLosses(name="graph_losses"),
      **({"dense_i2i": DenseWindowEdges(name="dense_i2i")} if dense else {}),
      **losses)


def _graph_loss(parts, batch, training):
  """QueryItemGraph's i2i, q2q and q2i (both ways) edges scored by
  GraphSoftmaxLoss with the queues' negatives; the losses go in by add_loss."""
  items, queries = parts["items"], parts["queries"]
  graph = parts["graph"](batch, training=training)
  item_draw = parts["item_queue"](batch[CLICKS.ids], training=training)
  query_draw = parts["query_queue"](batch[QUERIES.ids], training=training)
  clicks, query_hist = items(batch[CLICKS.ids]), queries(batch[QUERIES.ids])
  item_negatives = (items(item_draw.ids), item_draw.ids, item_draw.log_q, item_draw.valid)
  query_negatives = (queries(query_draw.ids), query_draw.ids, None, query_draw.valid)
  i2i = parts["dense_i2i"](batch[CLICKS.ids]) if "dense_i2i" in parts else graph["i2i"]
  losses = [
      parts["i2i"](clicks, clicks, i2i, *item_negatives),
      parts["q2q"](query_hist, query_hist, graph["q2q"], *query_negatives),
      parts["q2i"](query_hist, clicks, graph["q2i"], *item_negatives),
      parts["i2q"](clicks, query_hist, layers.reverse_edges(graph["q2i"]),
                   *query_negatives),
  ]
  return _with_losses(parts, _pctr(parts, batch), losses, training)


# NegativeQueue -------------------------------------------------------------------

def _queue_parts():
  return _ctr_parts(queue=layers.NegativeQueue(16, 4, seed=1, logq_buckets=8,
                                               name="queue"))


def _queue(parts, batch, training):
  """The queue's draw is an output: equal predictions mean equal draws."""
  draw = parts["queue"](batch[CLICKS.ids], training=training)
  return {"pctr": _pctr(parts, batch), "negatives": draw.ids, "log_q": draw.log_q}


# GraphLearning ---------------------------------------------------------------------

def _graph_learning_parts():
  parts = _ctr_parts(add_losses=AddLosses(name="graph_losses"))
  parts["learning"] = layers.GraphLearning(
      parts["items"], parts["queries"], num_negatives=3, queue_capacity=16,
      logq_buckets=8, subsample_threshold=0.5, seed=1, name="graph_learning")
  return parts


def _graph_learning(parts, batch, training):
  """GraphLearning over the tables the CTR part reads, its losses by add_loss."""
  losses = parts["learning"](batch, training=training)
  return _with_losses(parts, _pctr(parts, batch), list(losses.values()), training)


# OutOfFoldEmbedding + MaskedPooling ---------------------------------------------------

@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class QueryFolds(tf.keras.layers.Layer):
  """The rows' folds, hashed from the query ids (the batch has no user id)."""

  def call(self, query_ids):
    return layers.user_folds(query_ids, 2)


def _out_of_fold_parts():
  return _ctr_parts(folds=QueryFolds(name="folds"),
                    graph_items=layers.OutOfFoldEmbedding(10, 4, num_folds=2,
                                                          name="graph_items"),
                    pool=layers.MaskedPooling(mode="mean", name="pool"))


def _out_of_fold(parts, batch, training):
  """The clicks read in their row's out-of-fold table, mean-pooled."""
  folds = parts["folds"](batch[QUERY_ID])
  clicks = parts["graph_items"](batch[CLICKS.ids], folds)
  return _pctr(parts, batch, parts["pool"](clicks, batch[CLICKS.ids] > 0))


# FeatureEmbeddings -------------------------------------------------------------------

def _feature_embeddings_parts():
  return _ctr_parts(features=layers.FeatureEmbeddings(layers.FeatureConfig(
      item_buckets=10, query_buckets=6, user_buckets=4, category_buckets=3,
      embedding_dim=2, use_user_id=False), name="features"))


def _feature_embeddings(parts, batch, training):
  """The schema's context vector f_o (target item and query with categories)."""
  return _pctr(parts, batch, parts["features"](batch, training=training))


# TargetAttention + MLP ------------------------------------------------------------------

def _attention_parts():
  parts = _ctr_parts(
      attention=layers.TargetAttention(hidden_units=(4,), activation="prelu",
                                       name="attention"),
      mlp=layers.MLP(hidden_units=(6,), use_batch_norm=True, name="mlp"),
      sigmoid=tf.keras.layers.Activation("sigmoid", name="sigmoid"),
      pctr=tf.keras.layers.Reshape((1,), name="pctr"))
  del parts["head"]  # the MLP ends in the logit
  return parts


def _attention(parts, batch, training):
  """DIN: the clicks pooled by attention to the target; an MLP's logit."""
  items = parts["items"]
  pooled = parts["attention"](items(batch[ITEM_ID]), items(batch[CLICKS.ids]),
                              batch[CLICKS.ids] > 0)
  features = parts["join"]([items(batch[ITEM_ID]),
                            parts["queries"](batch[QUERY_ID]), pooled])
  return parts["pctr"](parts["sigmoid"](parts["mlp"](features, training=training)))


# TargetMatch -------------------------------------------------------------------------------

def _target_match_parts():
  return _ctr_parts(match=layers.TargetMatch(name="match"))


def _target_match(parts, batch, training):
  return _pctr(parts, batch, parts["match"](
      batch[ITEM_ID], batch[schema_lib.ITEM_CATS], batch[CLICKS.ids],
      batch[CLICKS.cats], batch[schema_lib.QUERY_CATS], batch[QUERY_ID]))


# TransformerBlock + MaskedPooling, BehaviorSequenceTransformer --------------------------

def _transformer_block_parts():
  return _ctr_parts(block=layers.TransformerBlock(num_heads=1, ffn_units=8,
                                                  name="block"),
                    pool=layers.MaskedPooling(mode="sum", name="pool"))


def _transformer_block(parts, batch, training):
  mask = batch[CLICKS.ids] > 0
  encoded = parts["block"](parts["items"](batch[CLICKS.ids]), mask, training=training)
  return _pctr(parts, batch, parts["pool"](encoded, mask))


def _bst_parts():
  return _ctr_parts(bst=layers.BehaviorSequenceTransformer(
      num_heads=1, ffn_units=8, max_positions=8, name="bst"))


def _bst(parts, batch, training):
  items = parts["items"]
  return _pctr(parts, batch, parts["bst"](
      items(batch[ITEM_ID]), items(batch[CLICKS.ids]), batch[CLICKS.ids] > 0,
      training=training))


RECIPES = {
    "SimExtract": Recipe(_sim_extract_parts, _sim_extract),
    "QueryItemGraph + GraphSoftmaxLoss": Recipe(_graph_loss_parts, _graph_loss, True),
    "GraphSoftmaxLoss on dense Edges": Recipe(lambda: _graph_loss_parts(dense=True),
                                              _graph_loss, True),
    "NegativeQueue": Recipe(_queue_parts, _queue, True),
    "GraphLearning": Recipe(_graph_learning_parts, _graph_learning, True),
    "OutOfFoldEmbedding + MaskedPooling": Recipe(_out_of_fold_parts, _out_of_fold),
    "FeatureEmbeddings": Recipe(_feature_embeddings_parts, _feature_embeddings),
    "TargetAttention + MLP": Recipe(_attention_parts, _attention, True),
    "TargetMatch": Recipe(_target_match_parts, _target_match),
    "TransformerBlock + MaskedPooling": Recipe(_transformer_block_parts,
                                               _transformer_block),
    "BehaviorSequenceTransformer": Recipe(_bst_parts, _bst),
}


def functional(recipe: str, batch) -> tf.keras.Model:
  """The recipe as a functional model over one ``Input`` per key of ``batch``."""
  inputs = {key: tf.keras.Input(shape=value.shape[1:], dtype=tf.int64, name=key)
            for key, value in batch.items()}
  return tf.keras.Model(inputs, RECIPES[recipe].forward(RECIPES[recipe].parts(),
                                                        inputs, None))


class BuiltOnIds(tf.keras.Model):
  """A subclassed model of id inputs that loads back from `.keras`.

  Keras builds a loaded subclassed model by calling it on float placeholders
  of the saved shapes; the graph layers take only int64 ids, so this builds it
  on int64 ones (any ids will do: only the shapes matter)."""

  def build_from_config(self, config):
    self(int64_batch(config["input_shape"]))


def int64_batch(shapes) -> Dict[str, tf.Tensor]:
  """A batch of padding ids of the saved ``shapes`` (a dict of shapes; None
  dims are 1)."""
  return {key: tf.zeros([1 if d is None else d for d in shape], tf.int64)
          for key, shape in shapes.items()}


@tf.keras.utils.register_keras_serializable(package="egin_tf_tests")
class Subclassed(BuiltOnIds):
  """The recipe as a subclassed model: its layers made in the constructor,
  ``forward`` run in ``call``."""

  def __init__(self, recipe: str, **kwargs):
    super().__init__(**kwargs)
    self.recipe = recipe
    self.parts = RECIPES[recipe].parts()

  def call(self, batch, training: Optional[bool] = None):
    return RECIPES[self.recipe].forward(self.parts, batch, training)

  def get_config(self):
    return {**super().get_config(), "recipe": self.recipe}
