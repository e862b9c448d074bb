"""`CTRModel`: the training and evaluation loop shared by every CTR model.

A model consumes the reader's batch dict (labels included) and implements
`forward(batch, training) -> (logits [B], auxiliary losses)`. The joint objective is
``L = L_CTR + sum_k weight_k * L_k + regularization``; every term is reported as a
metric, so ``fit`` shows them in its progress bar and TensorBoard logs them.
L_CTR and the progress AUC come from TFRS's `tfrs.tasks.Ranking` (per example,
so the step reduces it over the global batch under a strategy); the graph losses
and queues are EGIN's own (`egin_tf.layers.graph_loss`, `negative_queue` say why).

A compiled model whose tables are a `FeatureEmbeddings` at ``self.features``
also reports the item and query id collision rates of its training traffic
(`IdCollisionRate`, ``item_collisions`` / ``query_collisions``), in one process
and under parameter servers (not under synchronous replicas).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import tensorflow_recommenders as tfrs

from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf
from egin_tf.models import replica_update
from egin_tf.configs import Config, ConfigError
from egin_tf.layers.feature_embeddings import FeatureConfig, FeatureEmbeddings
from egin_tf.layers.id_collisions import IdCollisionRate
from egin_tf.layers.mlp import MLP
from egin_tf.layers.target_match import TargetMatch

# Constructor arguments that are Keras' own, not a model's hyperparameters.
_KERAS_KWARGS = ("name", "trainable", "dtype", "dynamic", "autocast",
                 "aux_loss_weights")


def _ctr_task(auc: tf.keras.metrics.AUC) -> tfrs.tasks.Ranking:
  """TFRS's ranking task: binary cross-entropy on the logits, per example (reduced
  by the caller, strategy-aware: a Keras loss reducing to a mean is refused under
  tf.distribute), updating ``auc``."""
  return tfrs.tasks.Ranking(
      loss=tf.keras.losses.BinaryCrossentropy(
          from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
      metrics=[auc], name="ctr_task")


class CTRModel(tf.keras.Model):
  """Base class: subclasses wire layers in `forward`; this class owns the loop.

  Calling the model returns pctr, float32 [B]. `predict` returns a dict with
  ``pctr``, ``label`` and ``user_id`` so exact metrics can be computed outside.

  A subclass's hyperparameters are a `Config` (``CONFIG``, see
  `egin_tf.models.configs`): its constructor takes ``(features, config=None,
  **fields)``, resolves them with `resolve_config` and hands both to this
  constructor; `get_config` is the features and the config's fields, so
  ``type(model)(**model.get_config())`` rebuilds it.
  """

  CONFIG: type = Config
  # Stream training (`egin_tf.train.stream`, `egin-tf train --stream`) starts at
  # the stream's first batch and reads each example once; a model that needs
  # the whole training data before its first step (a first stage in `prepare`,
  # like EGES's graph) sets this False, and stream training refuses it by this
  # flag (`egin_tf.models.streamable`), never by its name.
  STREAMABLE: bool = True

  @property
  def model_config(self) -> Config:
    """The model's hyperparameters (a frozen `Config`)."""
    return self._model_config

  def get_config(self) -> Dict[str, Any]:
    return {"features": dataclasses.asdict(self._feature_config),
            **self._model_config.to_dict()}

  def __init__(self, aux_loss_weights: Mapping[str, float] = None,
               model_config: Optional[Config] = None,
               feature_config: Optional[FeatureConfig] = None, **kwargs):
    super().__init__(**kwargs)
    self._model_config = model_config or self.CONFIG()
    self._feature_config = feature_config
    self.aux_loss_weights = dict(aux_loss_weights or {})
    self.loss_tracker = tf.keras.metrics.Mean(name="loss")
    self.ctr_loss_tracker = tf.keras.metrics.Mean(name="ctr_loss")
    self.aux_trackers = {
        name: tf.keras.metrics.Mean(name=f"{name}_loss")
        for name in self.aux_loss_weights
    }
    # Thresholded AUC for the progress bar only; reported AUCs are exact.
    self.auc_metric = tf.keras.metrics.AUC(num_thresholds=1000, from_logits=True,
                                           name="auc")
    self.ctr_task = _ctr_task(self.auc_metric)
    self.target_match = None
    if getattr(self._model_config, "match_features", False):
      has_queries = feature_config is None or feature_config.has_queries
      self.target_match = TargetMatch(use_query=has_queries, name="target_match")

  @classmethod
  def prepare(cls, train_pattern: str, model_dir: str, seed: int,
              model_kwargs: Mapping[str, object],
              stage_progress=None) -> Dict[str, object]:
    """Work a model needs done on the training data before it is built.

    Two-stage models (EGES: graph, walks and skip-gram first) do it here and
    return constructor arguments to add (e.g. the path of what they wrote into
    ``model_dir``); `train.offline.train` stores them in the model's config.
    ``stage_progress(label)`` makes the progress callback of each stage.
    """
    del train_pattern, model_dir, seed, model_kwargs, stage_progress
    return {}

  def forward(self, batch: Dict[str, tf.Tensor], training=None
              ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Returns CTR logits [B] and unweighted auxiliary losses (scalars)."""
    raise NotImplementedError

  def head_input(self, parts: List[tf.Tensor], batch: Dict[str, tf.Tensor]
                 ) -> tf.Tensor:
    """The MLP's input: a model's feature ``parts`` [B, *] and, with the config's
    ``match_features``, the target-match block, concatenated: [B, F]."""
    if self.target_match is not None:
      parts = parts + [match_features(self.target_match, batch)]
    return tf.concat(parts, axis=-1)

  def call(self, batch: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    logits, _ = self.forward(batch, training=training)
    return tf.sigmoid(logits)

  def compile(self, *args, **kwargs):
    super().compile(*args, **kwargs)
    # Created here, in the strategy's scope, once the subclass has its tables.
    # Held out of the checkpoint: the rates' bucket owners are a table-sized
    # monitor, not model state (after a restart they refill from new traffic),
    # and checkpoints written before they existed still restore.
    # Under synchronous replicas a metric's variables are per-replica
    # (SyncOnRead), which has no sparse update: no rates there.
    replicated = tf.distribute.get_strategy().num_replicas_in_sync > 1
    self._collision_rates = _Untracked(
        {} if replicated else _collision_rates_of(getattr(self, "features", None)))

  @property
  def collision_rates(self) -> Dict[str, IdCollisionRate]:
    """Batch feature -> its id collision rate (empty before `compile`)."""
    held = getattr(self, "_collision_rates", None)
    return held.value if held is not None else {}

  @property
  def metrics(self):
    return ([self.loss_tracker, self.ctr_loss_tracker] +
            list(self.aux_trackers.values()) + [self.auc_metric] +
            list(self.collision_rates.values()))

  def _ctr_losses(self, labels: tf.Tensor, logits: tf.Tensor,
                  training: bool) -> tf.Tensor:
    """Per-example CTR loss [B] from the TFRS task, which also updates its AUC."""
    return self.ctr_task(labels[:, tf.newaxis], logits[:, tf.newaxis],
                         training=training)

  def _labels(self, batch) -> tf.Tensor:
    return tf.cast(batch[schema_lib.LABEL], tf.float32)

  def train_step(self, batch):
    logs, _ = self.train_step_with_scores(batch)
    return logs

  def train_step_with_scores(self, batch):
    """`train_step`, also returning the training forward's pctr [B] (scores of
    the model BEFORE this update; what progressive validation needs when
    `training_scores_are_inference_scores`)."""
    labels = self._labels(batch)
    with tf.GradientTape() as tape:
      logits, aux = self.forward(batch, training=True)
      per_example = self._ctr_losses(labels, logits, training=True)
      mean_terms = self._mean_terms(aux)
      objective = replica_update.replica_objective(per_example, mean_terms)
    grads = tape.gradient(objective, self.trainable_variables)
    finite = replica_update.apply_if_finite(
        self.optimizer, objective, grads, self.trainable_variables)
    ctr_loss = tf.reduce_mean(per_example)
    total = ctr_loss + mean_terms
    self.loss_tracker.update_state(
        tf.where(finite, total, tf.constant(float("nan"), total.dtype)))
    self.ctr_loss_tracker.update_state(ctr_loss)
    for name, tracker in self.aux_trackers.items():
      if name in aux:
        tracker.update_state(aux[name])
    scores = tf.sigmoid(logits)
    for feature, rate in self.collision_rates.items():
      rate.update_state(batch[feature])
    return {m.name: m.result() for m in self.metrics}, scores

  def _mean_terms(self, aux: Dict[str, tf.Tensor]) -> tf.Tensor:
    """The objective's terms that are means already: sum_k weight_k L_k and
    layer regularization (L = L_CTR + these)."""
    total = tf.constant(0.0)
    for name, weight in self.aux_loss_weights.items():
      if name in aux:
        total += weight * aux[name]
    if self.losses:
      total += tf.add_n(self.losses)
    return total

  @property
  def training_scores_are_inference_scores(self) -> bool:
    """Whether the training forward scores like inference: no batch-dependent
    layers (batch normalization, dropout) anywhere in the model."""
    batch_dependent = (tf.keras.layers.BatchNormalization, tf.keras.layers.Dropout)
    return not any(isinstance(layer, batch_dependent) for layer in self.submodules)

  def test_step(self, batch):
    labels = self._labels(batch)
    logits, _ = self.forward(batch, training=False)
    ctr_loss = tf.reduce_mean(self._ctr_losses(labels, logits, training=False))
    self.loss_tracker.update_state(ctr_loss)
    self.ctr_loss_tracker.update_state(ctr_loss)
    return {m.name: m.result() for m in (self.loss_tracker, self.ctr_loss_tracker,
                                         self.auc_metric)}

  @property
  def has_graph_variables(self) -> bool:
    """Whether `graph_variables` can be non-empty (known before building)."""
    return False

  def graph_variables(self) -> List[tf.Variable]:
    """The variables a graph optimizer trains (`egin_tf.train.optimizers`); none here."""
    return []

  def embedding_tables(self) -> Dict[str, tf.keras.layers.Layer]:
    """The item and query id-embedding layers that `egin-tf neighbors` and the
    SavedModel export report (by default the CTR network's own)."""
    return {"items": self.features.items, "queries": self.features.queries}

  def predict_step(self, batch):
    return {
        "pctr": self(batch, training=False),
        "label": batch[schema_lib.LABEL],
        "user_id": batch[schema_lib.USER_ID],
    }


class TargetInterestModel(CTRModel):
  """A model whose interest features read each history against its target.

  Builds ``self.features`` (`FeatureEmbeddings`), ``self.interests`` (one layer
  per history: the clicks, then the query history when the data has queries,
  named ``click_{INTEREST_KIND}`` / ``query_{INTEREST_KIND}``) and ``self.mlp``
  (``config.hidden_units``, ``config.dropout``). A subclass sets ``CONFIG`` and
  ``INTEREST_KIND`` and implements `interest_layer`; each interest layer is
  called as ``layer(target [B, 2d], history [B, L, 2d], mask [B, L]) -> [B, k]``.
  The MLP reads f_o and every interest vector.
  """

  INTEREST_KIND = "interest"

  def __init__(self, features: FeatureConfig, config: Optional[Config] = None,
               **kwargs):
    features, config, kwargs = resolve_config(self.CONFIG, features, config, kwargs)
    super().__init__(model_config=config, feature_config=features, **kwargs)
    self.features = FeatureEmbeddings(features, name="features")
    self.interests = self.per_history(
        features, lambda name: self.interest_layer(config, name), self.INTEREST_KIND)
    self.mlp = MLP(config.hidden_units, dropout=config.dropout, name="mlp")

  def interest_layer(self, config: Config, name: str) -> tf.keras.layers.Layer:
    """The interest layer called ``name`` for one history, from ``config``."""
    raise NotImplementedError

  @staticmethod
  def per_history(features, make_layer, kind: str):
    """One interest layer per history: ``make_layer(name)`` for clicks (and queries)."""
    layers = [make_layer(f"click_{kind}")]
    if features.has_queries:
      layers.append(make_layer(f"query_{kind}"))
    return layers

  def forward(self, batch, training=None):
    parts = [self.features.context(batch, training=training)]
    for layer, pair in zip(self.interests,
                           self.features.targets_and_histories(batch)):
      parts.append(layer(pair.target, pair.history, pair.mask, training=training))
    logits = self.mlp(self.head_input(parts, batch), training=training)
    return logits, {}


def match_features(layer: TargetMatch, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
  """``layer`` (a `TargetMatch`) applied to a reader batch: [B, F]."""
  query = {}
  if layer.use_query:
    query = {"query_cats": batch[schema_lib.QUERY_CATS],
             "query_ids": batch[schema_lib.QUERY_ID]}
  return layer(batch[schema_lib.ITEM_ID], batch[schema_lib.ITEM_CATS],
               batch[schema_lib.CLICKS.ids], batch[schema_lib.CLICKS.cats], **query)


def resolve_config(config_cls: type, features: Union[FeatureConfig, Mapping],
                   config: Union[None, Config, Mapping[str, Any]],
                   kwargs: Mapping[str, Any]) -> Tuple[FeatureConfig, Any, Dict]:
  """(features, ``config`` with ``kwargs``' fields applied, Keras' kwargs).

  ``config`` may be None (the defaults), a config or its dict; an argument that
  is neither a field nor Keras' own is a `ConfigError` naming it.
  """
  fields, rest = config_cls.split_kwargs(kwargs)
  for key in rest:
    if key not in _KERAS_KWARGS:
      raise ConfigError(config_cls.__name__, key, rest[key], "unknown field; the "
                        f"fields are {', '.join(config_cls().to_dict())}")
  if config is None:
    config = config_cls()
  elif isinstance(config, Mapping):
    config = config_cls.from_dict(config)
  elif not isinstance(config, config_cls):
    raise TypeError(f"config must be a {config_cls.__name__}, got "
                    f"{type(config).__name__}")
  if fields:
    config = config.replace(**fields)
  if isinstance(features, Mapping):
    features = FeatureConfig(**features)
  return features, config, rest


class _Untracked:
  """Holds a value where Keras and tf.train.Checkpoint do not look."""

  def __init__(self, value):
    self.value = value


def _collision_rates_of(features) -> Dict[str, IdCollisionRate]:
  """The rates of the item and query tables of a `FeatureEmbeddings` (None: none)."""
  config = getattr(features, "config", None)
  if config is None or not config.track_collisions:
    return {}
  rates = {schema_lib.ITEM_ID: IdCollisionRate(config.item_buckets, name="item_collisions")}
  if config.has_queries:
    rates[schema_lib.QUERY_ID] = IdCollisionRate(config.query_buckets,
                                                 name="query_collisions")
  return rates
