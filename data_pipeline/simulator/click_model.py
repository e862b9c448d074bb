"""The true click probability (the oracle): examination bias times a logit's sigmoid."""

import numpy as np

from data_pipeline.simulator.config import SimulatorConfig


def position_bias(position, exponent: float):
  """Examination probability of 1-based ``position``: ``position^-exponent``."""
  return np.power(np.asarray(position, dtype=np.float64), -exponent)


def click_probability(config: SimulatorConfig, position, user_bias, interest,
                      taste, match, focus, related_count, quality, price_z):
  """The true click probability of the module docstring, elementwise.

  Args:
    config: the weights.
    position: [N] 1-based positions.
    user_bias: b_u (scalar or [N]).
    interest, taste, focus: [N] 0/1 indicators.
    match: [N] query-item match (1, ``partial_match`` or 0).
    related_count: [N] clicks among the user's last ``related_window`` that are in
      the item's cluster.
    quality, price_z: [N] item attributes.

  Returns:
    [N] float64 probabilities.
  """
  related = np.minimum(np.asarray(related_count, np.float64), config.related_cap)
  logit = (config.bias + np.asarray(user_bias, np.float64)
           + config.w_interest * np.asarray(interest, np.float64)
           + config.w_taste * np.asarray(taste, np.float64)
           + config.w_match * np.asarray(match, np.float64)
           + config.w_focus * np.asarray(focus, np.float64)
           + config.w_related * related / config.related_cap
           + config.w_quality * np.asarray(quality, np.float64)
           - config.w_price * np.asarray(price_z, np.float64))
  return position_bias(position, config.position_bias_exponent) / (
      1.0 + np.exp(-logit))
