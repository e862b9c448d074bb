"""`NegativeQueue`: a ring buffer of recent ids for cross-batch negative sampling.

EGIN's graph loss (paper, section 3.2) draws its negatives from "a query queue and an
item queue of size 1 million" that are refreshed every batch. The queue holds ids,
not vectors: callers embed the sampled ids with the CURRENT embedding tables, so a
negative is never scored with a stale vector. Duplicates are kept, so an id is drawn
in proportion to how often it appeared in the last ``capacity`` enqueued ids (the
unigram distribution of recent traffic, as in word2vec-style negative sampling).

All state lives in non-trainable variables created in `build` (no Python-side
state), so the queue works inside `tf.function`, is saved by `tf.train.Checkpoint`,
and its variables can be placed by a distribution strategy's scope. Sampling uses
the stateless RNG keyed by (seed, sampling step), so a restored queue draws exactly
the samples the original would have drawn.

Why not TFRS: `tfrs.tasks.Retrieval` and `tfrs.layers.factorized_top_k` sample
negatives from the current batch (or score a fixed candidate set); TFRS keeps no
cross-batch queue of recent ids, which is what the paper's loss draws from.
"""

from typing import NamedTuple, Optional

from data_pipeline.arg_checks import check_int
from data_pipeline.tf_env import tf
from egin_tf.layers.id_embedding import bucketize_ids
from egin_tf.layers.state import add_state, training_mode, variable_of


class NegativeSample(NamedTuple):
  """The negatives drawn by one `NegativeQueue.sample` call.

  In a functional model take its fields (``sample.ids``, ...): a model config
  keeps no NamedTuple type, so a loaded model would pass the whole sample to a
  layer as a plain list (``NegativeSample(*sample)`` rebuilds it).
  """
  # [N], or [count, N] when drawn per edge (`NegativeQueue.sample`).
  ids: tf.Tensor    # int64 [N]; 0 where `valid` is False
  valid: tf.Tensor  # bool [N]; all False when nothing was ever enqueued
  # float32 [N] log of the probability of drawing each id (0 where not valid); for
  # a queue built without logQ counts, None from `sample` and 0 from a layer call.
  log_q: Optional[tf.Tensor]


@tf.keras.utils.register_keras_serializable(package="egin_tf")
class NegativeQueue(tf.keras.layers.Layer):
  """A fixed-capacity FIFO of ids from which negatives are drawn uniformly.

  Usage per training step: ``queue.enqueue(batch_ids)`` then ``queue.sample()``
  (or ``queue(batch_ids, training=True)``, which does both), and embed
  ``sample.ids`` with the current table. Enqueueing first means the very first
  step already draws in-batch negatives. Called as a layer in inference
  (``training`` False or None, as in `predict` and `evaluate`) it only samples.

  Variables (all non-trainable, created by `build`, which the constructor calls):
    ids: int64 [capacity], the ring buffer; 0 marks a slot never written.
    write_position: int64 [], how many ids were ever enqueued; the next id goes
      to slot ``write_position mod capacity``.
    filled: int64 [], also counts enqueued ids; `size` is min(filled, capacity).
    sample_step: int64 [], how many times `sample` ran; keys the stateless RNG.
    logq_counts: int64 [logq_buckets] (only with ``logq_buckets``), how many
      queued ids fall in each hash bucket (`bucketize_ids`). Colliding ids share a
      count, so log q is over-estimated for them; use many more buckets than the
      queue holds distinct ids to keep collisions rare.
  The counters only ever grow by ``assign_add``, so concurrent writers never
  lose an increment (see below); checkpoints written when they wrapped at
  ``capacity`` restore to the same slots.

  Under a synchronous strategy (Mirrored, MultiWorkerMirrored) every replica
  enqueues the ids of all replicas (all-gathered, in replica order) and samples
  with the same RNG key, so each replica holds and draws what one process
  training the global batch would.

  Under parameter servers there is ONE queue per node type: its variables live
  on the ps tasks (``ids`` sharded row-wise like a table) and every worker's
  steps enqueue into it and draw from it, as asynchronous workers update the
  shared tables (Hogwild-style, no lock):
    * a worker's draw sees every id enqueued by steps that finished before it,
      from any worker; ids of a step running at the same time may or may not be
      in it, and a drawn slot may still hold the id it held before;
    * the write position and counts advance by every step's ids (``assign_add``
      on the ps never loses an increment), so the queue fills and wraps at the
      rate of all workers together;
    * two steps whose reservations interleave (between one's ``assign_add`` and
      its read) can write the same slots, so some ids of one of them are
      overwritten early: the queue then holds slightly fewer than ``capacity``
      of the most recent ids, all of them real ids of recent batches;
    * the RNG step is shared, so workers draw different slots; a draw is no
      longer reproducible run to run (the order of steps is not);
    * logQ counts (off by default) are then an estimate: an overlapped slot's
      eviction is counted by both writers.

  Example:

  ```python
  items = IdEmbedding(num_buckets=1000, dim=8)
  queue = NegativeQueue(capacity=100, num_negatives=4, seed=0)
  click_ids = tf.constant([[11, 12, 0], [13, 0, 0]], tf.int64)  # 0 is padding
  sample = queue(click_ids, training=True)  # enqueues 11, 12, 13, then draws
  sample.ids, sample.valid       # int64 [4] and bool [4] (all True here)
  negatives = items(sample.ids)  # float32 [4, 8], with the current table
  queue.size()                   # 3
  ```
  """

  def __init__(self,
               capacity: int = 1_000_000,
               num_negatives: int = 100,
               seed: int = 0,
               logq_buckets: Optional[int] = None,
               **kwargs):
    """Creates the queue.

    Args:
      capacity: number of ids kept (the paper uses 1,000,000).
      num_negatives: ids drawn by each `sample` call (the paper uses 100).
      seed: seed of the stateless RNG. Give the item and query queues different
        seeds, or they draw the same slot positions at every step.
      logq_buckets: number of hash buckets counting the queued ids, so `sample`
        can return log q; None (the default) turns the logQ counts off.
      **kwargs: base Layer arguments.
    """
    super().__init__(**kwargs)
    check_int("capacity", capacity, minimum=1, owner="NegativeQueue")
    check_int("num_negatives", num_negatives, minimum=1, owner="NegativeQueue")
    check_int("seed", seed, minimum=0, owner="NegativeQueue")
    if logq_buckets is not None:
      # bucketize_ids keeps bucket 0 for padding, so one bucket holds no ids.
      check_int("logq_buckets", logq_buckets, minimum=2, owner="NegativeQueue")
    self.capacity = capacity
    self.num_negatives = num_negatives
    self.seed = seed
    self.logq_buckets = logq_buckets
    # The state depends on no input, so it exists from construction (in the
    # caller's strategy scope): a model that calls the queue only in its
    # train_step still has every variable when `load_model` assigns the
    # saved values (Keras builds a loaded model by calling it in inference).
    self.build(None)

  def build(self, input_shape=None):
    if self.built:  # the constructor built it; a second build would duplicate
      return

    # Under a synchronous strategy every replica writes the same values into
    # its own copy (the ids of all replicas, see `enqueue`), so no aggregation.
    def state(name, shape):
      return add_state(self, name, shape)

    self.ids = state("ids", [self.capacity])
    self.write_position = state("write_position", [])
    self.filled = state("filled", [])
    self.sample_step = state("sample_step", [])
    self.logq_counts = None
    if self.logq_buckets is not None:
      self.logq_counts = state("logq_counts", [self.logq_buckets])
    super().build(input_shape)

  def call(self, ids, mask: Optional[tf.Tensor] = None,
           training=None) -> NegativeSample:
    """Enqueues ``ids`` (see `enqueue`) when training, then returns `sample()`.

    ``training`` follows Keras: only True enqueues and moves ``sample_step``
    on. False or None (inference: `predict`, `evaluate`, a call with
    ``training`` unset) changes no variable: the ring buffer, its counters and
    the logQ counts stay as they were, and the draw uses the step the next
    training draw will use. A bool tensor is resolved when the graph runs.
    Explicit `enqueue` and `sample` calls ignore the mode.
    """
    mode = training_mode(training)
    if mode is None:  # only known when the graph runs
      tf.cond(tf.cast(training, tf.bool), lambda: self._enqueued(ids, mask),
              lambda: tf.constant(False))
    elif mode:
      self.enqueue(ids, mask)
    sample = self.sample(advance=training if mode is None else mode)
    if sample.log_q is None:
      # A layer's outputs must all be tensors (Keras 3 functional models refuse
      # None): without logQ counts a call gives log q 0, i.e. no correction.
      sample = sample._replace(log_q=tf.zeros_like(sample.ids, tf.float32))
    return sample

  def _draw_step(self, advance) -> tf.Tensor:
    """The step a draw is keyed by: the counter, then moved on by ``advance``."""
    if isinstance(advance, bool) and not advance:
      return variable_of(self.sample_step).read_value()
    increment = tf.cast(advance, tf.int64)
    return variable_of(self.sample_step).assign_add(increment) - increment

  def _enqueued(self, ids, mask: Optional[tf.Tensor]) -> tf.Tensor:
    """`enqueue` as a `tf.cond` branch (a branch must return a tensor)."""
    self.enqueue(ids, mask)
    return tf.constant(True)

  def enqueue(self, ids, mask: Optional[tf.Tensor] = None) -> None:
    """Appends the valid ids of a batch, overwriting the oldest ones when full.

    The result is the same as writing the valid ids one at a time into the ring,
    so a batch with more valid ids than ``capacity`` keeps its last ``capacity``
    ids and advances the write position by its full count.

    Args:
      ids: int64 ids of any shape (e.g. click_ids [B, L]), or a list of such
        tensors enqueued one after the other; 0 is padding and is never
        enqueued. Entries are appended in row-major order, so with oldest-first
        histories the most recent ids of the last row go in last. Under a
        synchronous strategy each tensor is all-gathered over the replicas (the
        global batch's rows in order) before the next one.
      mask: optional bool, same shape as ``ids`` (a single tensor); False
        entries are skipped.
    """
    self._build_once()
    parts = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    if mask is not None and len(parts) != 1:
      raise ValueError("NegativeQueue.enqueue: a mask goes with a single ids tensor, "
                       f"got {len(parts)} tensors")
    new_ids = tf.concat(
        [_from_all_replicas(_valid_ids(part, mask)) for part in parts], axis=0)
    # The result equals writing the ids one at a time: ids that a later id of the
    # same batch would overwrite are dropped, so at most `capacity` ids remain,
    # the slots written below are distinct and the scatter order does not matter.
    total = tf.size(new_ids, out_type=tf.int64)
    skipped = tf.maximum(total - self.capacity, 0)
    new_ids = new_ids[skipped:]
    # assign_add, not read-then-assign: a concurrent worker's reservation can
    # then never roll the position back. The read after the add is a separate
    # op, so it may include such a reservation too (the overlap in the doc).
    start = variable_of(self.write_position).assign_add(total) - total
    slots = tf.math.floormod(
        start + skipped + tf.range(total - skipped, dtype=tf.int64), self.capacity)
    if self.logq_counts is not None:
      # Gathers from the variables read only the rows needed (not the whole
      # buffer, which may live on a parameter server).
      evicted = tf.nn.embedding_lookup(self.ids, slots)  # 0 for never-written slots
      self._add_counts(evicted, -1)
      self._add_counts(new_ids, +1)
    variable_of(self.ids).scatter_update(tf.IndexedSlices(new_ids, slots))
    variable_of(self.filled).assign_add(total)

  def size(self) -> tf.Tensor:
    """How many slots hold an id: int64 [], min(ids ever enqueued, capacity)."""
    self._build_once()
    return tf.minimum(variable_of(self.filled).read_value(), self.capacity)

  def sample(self, count: Optional[tf.Tensor] = None,
             advance=True) -> NegativeSample:
    """Draws ``num_negatives`` ids uniformly (with replacement) from the filled slots.

    With ``count`` (an int scalar), draws ``count`` independent sets: every
    field is then [count, num_negatives] (one set per edge, the paper's
    Algorithm 1).

    The slots written so far are always [0, size()), because writing starts at
    slot 0 and only wraps once the queue is full; so no empty slot is ever drawn
    (in one process; see the class doc for parameter servers). The draw depends
    only on (seed, sample_step) and the queue's contents. ``advance`` (a bool
    or a bool tensor) moves ``sample_step`` on, so the next draw differs; an
    inference draw (`call` outside training) does not, and changes no variable.

    Returns:
      A `NegativeSample`; if nothing was ever enqueued, all ids are 0 and all
      ``valid`` are False.
    """
    self._build_once()
    filled = self.size()
    # After reading `filled`, so after this step's enqueue: an increment with no
    # input dependency can run before a step's batch arrives, and a step that
    # then finds no batch (the end of an epoch under MirroredStrategy) would
    # count. Concurrent workers (parameter servers) may read the same step and
    # draw the same slots, which is harmless.
    with tf.control_dependencies([filled]):
      step = self._draw_step(advance)
    step_seed = tf.stack([tf.constant(self.seed, tf.int64), step])
    shape = tf.constant([self.num_negatives], tf.int64)
    if count is not None:
      shape = tf.stack([tf.cast(count, tf.int64), shape[0]])
    slots = tf.random.stateless_uniform(
        shape, seed=step_seed, minval=0,
        maxval=tf.maximum(filled, 1), dtype=tf.int64)
    ids = tf.nn.embedding_lookup(self.ids, slots)
    # A slot below `size` is 0 only while another worker's step, which reserved
    # it, has not written it yet; drawing it gives no negative.
    valid = ids != 0
    log_q = None
    if self.logq_counts is not None:
      counts = tf.nn.embedding_lookup(self.logq_counts, bucketize_ids(ids, self.logq_buckets))
      # A drawn id is in the queue, so its bucket count is >= 1 where valid.
      log_q = tf.where(
          valid,
          tf.math.log(tf.cast(tf.maximum(counts, 1), tf.float32))
          - tf.math.log(tf.cast(tf.maximum(filled, 1), tf.float32)),
          tf.zeros(shape, tf.float32))
    return NegativeSample(ids=ids, valid=valid, log_q=log_q)

  def _add_counts(self, ids: tf.Tensor, delta: int) -> None:
    """Adds ``delta`` to the logQ count of each non-zero id (duplicates add up)."""
    variable_of(self.logq_counts).scatter_add(tf.IndexedSlices(
        values=tf.cast(ids != 0, tf.int64) * delta,
        indices=bucketize_ids(ids, self.logq_buckets)))

  def _build_once(self) -> None:
    # enqueue/sample are public entry points besides __call__, so they build too.
    if not self.built:
      self.build(None)

  def get_config(self):
    config = super().get_config()
    config.update({
        "capacity": self.capacity,
        "num_negatives": self.num_negatives,
        "seed": self.seed,
        "logq_buckets": self.logq_buckets,
    })
    return config


def _from_all_replicas(ids: tf.Tensor) -> tf.Tensor:
  """The ids of every replica in replica order (this replica's alone without a
  strategy): the global batch's ids, as one process at that batch would enqueue."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return ids
  return context.all_gather(ids, axis=0)


def _valid_ids(ids: tf.Tensor, mask: Optional[tf.Tensor]) -> tf.Tensor:
  """The non-zero (and, with ``mask``, unmasked) ids in row-major order [n]."""
  ids = _as_int64_ids(ids)
  valid = ids != 0
  if mask is not None:
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
      raise TypeError(f"NegativeQueue.enqueue: mask must be bool, got {mask.dtype}")
    tf.debugging.assert_equal(
        tf.shape(mask), tf.shape(ids),
        message="NegativeQueue.enqueue: mask and ids must have the same shape")
    valid &= mask
  # A gather of the valid positions: the same as tf.boolean_mask in 3 ops, not ~18.
  return tf.gather(tf.reshape(ids, [-1]), tf.where(tf.reshape(valid, [-1]))[:, 0])


def _as_int64_ids(ids: tf.Tensor) -> tf.Tensor:
  ids = tf.convert_to_tensor(ids)
  if not ids.dtype.is_integer:
    raise TypeError(f"NegativeQueue.enqueue: ids must be integers, got {ids.dtype}")
  return tf.cast(ids, tf.int64)
