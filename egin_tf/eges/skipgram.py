"""EGES step 5: the item vector layer and the skip-gram layer that trains it.

Per item an id embedding W_v0 and per side information j (here: the item's
category slots, in the shared category space) an embedding W_vj, combined by
learned per-item attention weights a_vj: H_v = sum_j e^{a_vj} W_vj / sum_j e^{a_vj}
(padding categories left out). H_v is trained to predict the context items' output
embeddings with a sampled softmax against negatives drawn from the context
frequencies ** 0.75 (word2vec).
"""

import numpy as np

from data_pipeline.tf_env import tf

# word2vec's distortion of the negative-sampling distribution.
_UNIGRAM_POWER = 0.75


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class EgesEmbedding(tf.keras.layers.Layer):
  """EGES's item vector H_v: id and side-information embeddings, attention-mixed.

  Inputs:
    nodes: int [...], node indices in [0, num_nodes).
    side: int [..., num_side_slots], side-information values in
      [0, num_side_values); 0 is padding and takes no part in the mix.

  Output: float32 [..., dim], H_v = sum_j m_vj e^{a_vj} W_vj / sum_j m_vj e^{a_vj},
  where j = 0 is the node's own id embedding (always present), j >= 1 the side
  slots' embeddings (from one shared side table), m_vj = 0 for padding and a_v the
  node's row of the attention table [num_nodes, 1 + num_side_slots] (zeros at
  start: a plain average).
  """

  def __init__(self, num_nodes: int, num_side_values: int, num_side_slots: int,
               dim: int, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.num_nodes = num_nodes
    self.num_side_values = num_side_values
    self.num_side_slots = num_side_slots
    self.dim = dim
    self.seed = seed

  def build(self, input_shape):
    scale = 0.5 / self.dim  # word2vec's input initialization
    self.node_embeddings = self.add_weight(
        name="node_embeddings", shape=[self.num_nodes, self.dim],
        initializer=tf.keras.initializers.RandomUniform(-scale, scale, self.seed))
    self.side_embeddings = self.add_weight(
        name="side_embeddings", shape=[self.num_side_values, self.dim],
        initializer=tf.keras.initializers.RandomUniform(-scale, scale,
                                                        self.seed + 1))
    self.attention = self.add_weight(
        name="attention", shape=[self.num_nodes, 1 + self.num_side_slots],
        initializer="zeros")
    super().build(input_shape)

  def call(self, nodes: tf.Tensor, side: tf.Tensor) -> tf.Tensor:
    own = tf.gather(self.node_embeddings, nodes)[..., tf.newaxis, :]
    vectors = tf.concat([own, tf.gather(self.side_embeddings, side)], axis=-2)
    present = tf.concat([tf.ones_like(side[..., :1], tf.bool), side > 0], axis=-1)
    logits = tf.gather(self.attention, nodes)
    # softmax over the present slots = e^{a_vj} / sum_j e^{a_vj} of the formula.
    logits = tf.where(present, logits, tf.fill(tf.shape(logits), -1e9))
    weights = tf.nn.softmax(logits, axis=-1)
    return tf.reduce_sum(weights[..., tf.newaxis] * vectors, axis=-2)

  def get_config(self):
    config = super().get_config()
    config.update(num_nodes=self.num_nodes, num_side_values=self.num_side_values,
                  num_side_slots=self.num_side_slots, dim=self.dim, seed=self.seed)
    return config


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class EgesSkipGram(tf.keras.layers.Layer):
  """Skip-gram over walk pairs with EGES item vectors as the center embedding.

  Input: centers, contexts int [B] node indices. Output: the mean sampled-softmax
  loss (float32 scalar) of predicting each context from its center's H_v, with
  ``num_negatives`` negatives per batch drawn from ``unigram ** 0.75`` (the
  sampling probability is corrected for, accidental hits removed).

  Args:
    node_side: int [num_nodes, C] side-information values of every node (0 pad).
    num_side_values: size of the side table (values are < this).
    unigram: float [num_nodes], how often every node appears as a context.
    dim, num_negatives, seed: see `EgesPretrainConfig`.
  """

  def __init__(self, node_side: np.ndarray, num_side_values: int,
               unigram: np.ndarray, dim: int, num_negatives: int, seed: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    node_side = np.asarray(node_side, np.int64)
    self.num_nodes = int(node_side.shape[0])
    self.num_side_values = num_side_values
    self.dim = dim
    self.num_negatives = num_negatives
    self.seed = seed
    self._unigram = np.asarray(unigram, np.float64)
    self.node_side = tf.constant(node_side)
    probs = self._unigram ** _UNIGRAM_POWER
    probs = probs / probs.sum()
    self.log_probs = tf.constant(np.log(np.maximum(probs, 1e-30)), tf.float32)
    self.cdf = tf.constant(np.cumsum(probs), tf.float64)
    self.items = EgesEmbedding(self.num_nodes, num_side_values,
                               node_side.shape[1], dim, seed=seed, name="items")

  def build(self, input_shape):
    self.context_embeddings = self.add_weight(
        name="context_embeddings", shape=[self.num_nodes, self.dim],
        initializer="zeros")
    self.context_biases = self.add_weight(
        name="context_biases", shape=[self.num_nodes], initializer="zeros")
    # The first call may build inside a tf.function: keep the sampler's state
    # variable outside of it.
    with tf.init_scope():
      self.sampler = tf.random.Generator.from_seed(self.seed)
    super().build(input_shape)

  def vectors(self, nodes: tf.Tensor) -> tf.Tensor:
    """H_v of node indices [...] -> [..., dim]."""
    return self.items(nodes, tf.gather(self.node_side, nodes))

  def _sample(self) -> tf.Tensor:
    u = self.sampler.uniform([self.num_negatives], dtype=tf.float64)
    sampled = tf.searchsorted(self.cdf, u, side="right")
    return tf.minimum(sampled, self.num_nodes - 1)

  def call(self, centers: tf.Tensor, contexts: tf.Tensor) -> tf.Tensor:
    contexts = tf.cast(contexts, tf.int64)
    sampled = tf.cast(self._sample(), tf.int64)
    # Sampling with replacement: expected count = num_negatives * probability.
    log_n = tf.math.log(float(self.num_negatives))
    true_expected = tf.exp(tf.gather(self.log_probs, contexts) + log_n)
    sampled_expected = tf.exp(tf.gather(self.log_probs, sampled) + log_n)
    loss = tf.nn.sampled_softmax_loss(
        weights=self.context_embeddings, biases=self.context_biases,
        labels=contexts[:, tf.newaxis], inputs=self.vectors(centers),
        num_sampled=self.num_negatives, num_classes=self.num_nodes,
        sampled_values=(sampled, true_expected[:, tf.newaxis], sampled_expected),
        remove_accidental_hits=True)
    return tf.reduce_mean(loss)

  def full_softmax_loss(self, centers: tf.Tensor, contexts: tf.Tensor) -> tf.Tensor:
    """The exact softmax loss over all nodes (no sampling), for evaluation."""
    logits = tf.matmul(self.vectors(centers), self.context_embeddings,
                       transpose_b=True) + self.context_biases
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=contexts, logits=logits))

  def get_config(self):
    config = super().get_config()
    config.update(node_side=self.node_side.numpy().tolist(),
                  num_side_values=self.num_side_values,
                  unigram=self._unigram.tolist(), dim=self.dim,
                  num_negatives=self.num_negatives, seed=self.seed)
    return config
