"""One split of a dataset, resolved once: its files, schema, lengths, size and oracle.

A file pattern (comma-separated globs or dataset folders, `reader.match_files`)
is globbed once, into a `DataSplit`; training, evaluation, export and the
embedding scan take the split, so nothing globs the same pattern again or
reads ``schema.json`` twice.

Example:

```python
train = DataSplit.resolve("data/sim", "train", reader.SequenceLengths(50, 50, 50))
train.impressions                        # from schema.json's split counts
batches = train.dataset(256, shuffle=True, num_epochs=None, seed=0)
train.oracle                             # the simulator's oracle.json, or None
```
"""

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from data_pipeline import reader
from data_pipeline import schema as schema_lib
from data_pipeline.simulator.config import ORACLE_FILE
from data_pipeline.tf_env import tf


@dataclasses.dataclass(frozen=True)
class DataSplit:
  """The shards of one split and what is known of them before a record is read.

  Attributes:
    pattern: the pattern with each dataset folder replaced by its split's
      shards (`reader.split_pattern`); what a model directory records.
    files: the shards, in `reader.match_files` order.
    schema: the ``schema.json`` beside them (one schema for all).
    lengths: the history lengths the records are padded to.
    impressions: impressions in the files, from ``schema.json``'s split counts
      (0 when it does not list them).
    oracle: the simulator's ``oracle.json`` beside the files, or None.
  """
  pattern: str
  files: Tuple[str, ...]
  schema: schema_lib.DatasetSchema
  lengths: reader.SequenceLengths
  impressions: int
  oracle: Optional[Dict[str, Any]]

  @classmethod
  def resolve(cls, pattern: str, split: str,
              lengths: reader.SequenceLengths = reader.SequenceLengths()
              ) -> "DataSplit":
    """Globs ``pattern`` (a dataset folder stands for its ``split``) once.

    Raises:
      FileNotFoundError: as `reader.match_files`.
    """
    pattern = reader.split_pattern(pattern, split)
    files = tuple(reader.match_files(pattern))
    schema = schema_lib.schema_for_files(files)
    return cls(pattern, files, schema, lengths, count_impressions(files, schema),
               load_oracle(files))

  def dataset(self, batch_size: int, **options) -> tf.data.Dataset:
    """`reader.make_dataset` of these files, schema and lengths; ``options`` are
    its other arguments (shuffle, num_epochs, seed, shard, cache, ...)."""
    return reader.make_dataset(
        list(self.files), batch_size, max_clicks=self.lengths.max_clicks,
        max_queries=self.lengths.max_queries, max_seeds=self.lengths.max_seeds,
        schema=self.schema, **options)


def count_impressions(files: Sequence[str], schema: schema_lib.DatasetSchema) -> int:
  """Impressions in ``files``, from ``schema.json``'s split counts (a split's
  impressions spread evenly over its files)."""
  names = {os.path.basename(f) for f in files}
  total = 0.0
  for split in schema.splits.values():
    for name in split.get("files", []):
      if name in names:
        total += split["impressions"] / max(len(split["files"]), 1)
  return int(total)


def load_oracle(files: Sequence[str]) -> Optional[Dict[str, Any]]:
  """The simulator's ``oracle.json`` beside the first of ``files``, if there is one."""
  path = os.path.join(os.path.dirname(files[0]), ORACLE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)
