"""The hand-made batch the layer tests count by (test_layer_saving.py,
test_layer_training_state.py): every expected count is worked out from it."""

import numpy as np

from data_pipeline import schema as schema_lib

CLICKS = schema_lib.CLICKS
QUERIES = schema_lib.QUERIES


def two_rows():
  """Two rows: clicks 1, 2, 3 and 4, 5; query histories 1, 2 and 3; the
  histories' category 1; targets of categories 1 and 2; row 0's query of
  category 1, row 1's of none."""
  click_ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]], np.int64)
  query_ids = np.array([[1, 2, 0], [3, 0, 0]], np.int64)
  return {
      schema_lib.ITEM_ID: np.array([6, 7], np.int64),
      schema_lib.ITEM_CATS: np.array([[1], [2]], np.int64),
      schema_lib.QUERY_ID: np.array([2, 3], np.int64),
      schema_lib.QUERY_CATS: np.array([[1], [0]], np.int64),
      CLICKS.ids: click_ids,
      CLICKS.times: np.array([[10, 20, 30, 0], [10, 20, 0, 0]], np.int64),
      CLICKS.cats: (click_ids > 0).astype(np.int64)[..., None],
      QUERIES.ids: query_ids,
      QUERIES.times: np.array([[5, 15, 0], [5, 0, 0]], np.int64),
      QUERIES.cats: (query_ids > 0).astype(np.int64)[..., None],
  }
