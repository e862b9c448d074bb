"""BST's transformer over a behavior sequence with the target appended.

`TransformerBlock` is one post-norm transformer layer (multi-head self-attention
and a position-wise feed-forward network, each with a residual connection and
layer normalization) over a padded sequence. `BehaviorSequenceTransformer` is the
BST (Chen et al., 2019) encoder: it appends the target to the history, adds a
learned positional embedding and pools the transformer's outputs.

Positions are RECENCY ranks, not indices: the target is position 0, the most
recent history entry 1, the one before it 2, and so on (clipped at
``max_positions - 1``). Because histories are right-padded and oldest first, an
index would give the latest click a different position in every row; a recency
rank gives it the same one. (The BST paper uses the time difference instead.)
"""

from typing import Sequence

from data_pipeline.tf_env import tf

_POOLINGS = ("target", "mean")


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class TransformerBlock(tf.keras.layers.Layer):
  """One transformer layer over a padded sequence.

  Inputs: ``x`` float [B, T, D] and ``mask`` bool [B, T] (True = real entry).
  Output: float [B, T, D]. Padded entries are masked as attention keys, so they
  never change a real entry's output; their own outputs are meaningless.

  Args:
    num_heads: attention heads; each head has ``ceil(D / num_heads)`` dims.
    ffn_units: hidden width of the feed-forward network.
    dropout: dropout after attention and after the feed-forward network.

  Example:

  ```python
  block = TransformerBlock(num_heads=2, ffn_units=16)
  x = tf.random.normal([2, 3, 8])  # a history of vectors [B, T, D]
  mask = tf.constant([[True, True, False], [True, False, False]])
  encoded = block(x, mask)  # float32 [2, 3, 8]
  ```
  """

  def __init__(self, num_heads: int = 2, ffn_units: int = 64,
               dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = num_heads
    self.ffn_units = ffn_units
    self.dropout = dropout

  def build(self, input_shape):
    width = int(input_shape[-1])
    self.attention = tf.keras.layers.MultiHeadAttention(
        self.num_heads, key_dim=-(-width // self.num_heads), dropout=self.dropout,
        name="attention")
    self.ffn_hidden = tf.keras.layers.Dense(self.ffn_units, activation="relu",
                                            name="ffn_hidden")
    self.ffn_out = tf.keras.layers.Dense(width, name="ffn_out")
    self.attention_norm = tf.keras.layers.LayerNormalization(name="attention_norm")
    self.ffn_norm = tf.keras.layers.LayerNormalization(name="ffn_norm")
    self.attention_dropout = tf.keras.layers.Dropout(self.dropout)
    self.ffn_dropout = tf.keras.layers.Dropout(self.dropout)
    super().build(input_shape)

  def call(self, x: tf.Tensor, mask: tf.Tensor, training=None) -> tf.Tensor:
    # [B, T, T]: every query position may attend to every real key. Only keys are
    # masked, so no row is fully masked as long as the sequence has one real entry.
    attention_mask = tf.broadcast_to(mask[:, tf.newaxis, :],
                                     [tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[1]])
    attended = self.attention(x, x, attention_mask=attention_mask,
                              training=training)
    x = self.attention_norm(
        x + self.attention_dropout(attended, training=training))
    ffn = self.ffn_out(self.ffn_hidden(x))
    return self.ffn_norm(x + self.ffn_dropout(ffn, training=training))

  def get_config(self):
    config = super().get_config()
    config.update({"num_heads": self.num_heads, "ffn_units": self.ffn_units,
                   "dropout": self.dropout})
    return config


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class BehaviorSequenceTransformer(tf.keras.layers.Layer):
  """BST's encoder: transformer over [history..., target] with recency positions.

  Inputs:
    target: float [B, D], the target item (or current query).
    history: float [B, L, D], right-padded, oldest first.
    mask: bool [B, L], True for real entries.
  Output: float [B, D * len(pooling)]: for ``"target"`` the transformer output at
  the target's position, for ``"mean"`` the mean of the outputs at the real
  history positions (zeros for an empty history), concatenated in that order.

  Args:
    num_blocks: stacked `TransformerBlock`s (BST uses 1).
    num_heads, ffn_units, dropout: of each block.
    max_positions: rows of the positional table; older entries share the last.
    pooling: which outputs to pool, a subset of ``("target", "mean")``.

  Example:

  ```python
  bst = BehaviorSequenceTransformer(num_heads=2, ffn_units=16, max_positions=8)
  target = tf.random.normal([2, 8])      # the target item's vector [B, D]
  clicks = tf.random.normal([2, 3, 8])   # the click history [B, L, D]
  mask = tf.constant([[True, True, False], [True, False, False]])
  encoded = bst(target, clicks, mask)  # float32 [2, 16]: target and mean pooling
  ```
  """

  def __init__(self, num_blocks: int = 1, num_heads: int = 2,
               ffn_units: int = 64, dropout: float = 0.0,
               max_positions: int = 128,
               pooling: Sequence[str] = ("target", "mean"), **kwargs):
    super().__init__(**kwargs)
    unknown = [p for p in pooling if p not in _POOLINGS]
    if unknown or not pooling:
      raise ValueError(f"pooling must be a non-empty subset of {_POOLINGS}, "
                       f"got {list(pooling)}")
    if max_positions < 2:
      raise ValueError(f"max_positions must be >= 2, got {max_positions}")
    self.num_blocks = num_blocks
    self.num_heads = num_heads
    self.ffn_units = ffn_units
    self.dropout = dropout
    self.max_positions = max_positions
    self.pooling = list(pooling)
    self.blocks = [TransformerBlock(num_heads, ffn_units, dropout,
                                    name=f"block_{i}") for i in range(num_blocks)]

  def build(self, input_shape):
    width = int(input_shape[-1])
    self.positions = self.add_weight(
        name="positions", shape=[self.max_positions, width],
        initializer="uniform", trainable=True)
    super().build(input_shape)

  def recency(self, mask: tf.Tensor) -> tf.Tensor:
    """bool [B, L] -> int32 [B, L + 1]: recency rank of each entry, target last.

    A real entry at index j of a row with n real entries has rank n - j (the
    latest is 1); the appended target has rank 0; padding gets 0 (masked anyway).
    """
    n = tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1, keepdims=True)
    index = tf.range(tf.shape(mask)[1], dtype=tf.int32)[tf.newaxis, :]
    ranks = tf.where(mask, n - index, tf.zeros_like(mask, tf.int32))
    ranks = tf.concat([ranks, tf.zeros_like(n)], axis=-1)
    return tf.minimum(ranks, self.max_positions - 1)

  def call(self, target: tf.Tensor, history: tf.Tensor, mask: tf.Tensor,
           training=None) -> tf.Tensor:
    x = tf.concat([history, target[:, tf.newaxis, :]], axis=1)
    x += tf.gather(self.positions, self.recency(mask))
    full_mask = tf.concat([mask, tf.ones_like(mask[:, :1])], axis=-1)
    for block in self.blocks:
      x = block(x, full_mask, training=training)
    pooled = []
    for mode in self.pooling:
      if mode == "target":
        pooled.append(x[:, -1, :])
      else:
        weights = tf.cast(mask, x.dtype)[..., tf.newaxis]
        pooled.append(tf.math.divide_no_nan(
            tf.reduce_sum(x[:, :-1, :] * weights, axis=1),
            tf.reduce_sum(weights, axis=1)))
    return tf.concat(pooled, axis=-1)

  def get_config(self):
    config = super().get_config()
    config.update({
        "num_blocks": self.num_blocks, "num_heads": self.num_heads,
        "ffn_units": self.ffn_units, "dropout": self.dropout,
        "max_positions": self.max_positions, "pooling": self.pooling})
    return config
