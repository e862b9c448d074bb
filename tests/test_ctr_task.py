"""The CTR loss and progress AUC come from TFRS's ranking task."""

import numpy as np
import tensorflow_recommenders as tfrs

from data_pipeline.tf_env import tf
from egin_tf.layers.feature_embeddings import FeatureConfig
from egin_tf.models import build_model


def test_ctr_loss_is_tfrs_ranking_binary_cross_entropy_per_example():
  model = build_model("dnn", FeatureConfig(item_buckets=8, user_buckets=4,
                                           query_buckets=4, category_buckets=4))
  assert isinstance(model.ctr_task, tfrs.tasks.Ranking)
  labels = tf.constant([1.0, 0.0, 1.0])
  logits = tf.constant([2.0, -1.0, -0.5])
  per_example = model._ctr_losses(labels, logits, training=True)  # pylint: disable=protected-access
  # -log(sigmoid(2)), -log(1 - sigmoid(-1)), -log(sigmoid(-0.5)), by hand:
  expected = [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), np.log1p(np.exp(0.5))]
  np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-6)
  assert per_example.shape == (3,)  # the step reduces it over the global batch
  # Both positives score above the negative: the task's AUC is 1.
  assert model.auc_metric.result().numpy() == 1.0
