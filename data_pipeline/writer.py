"""Writes a dataset's TFRecord shards and ``schema.json``, atomically.

Everything goes to a temporary sibling folder that is renamed to the output folder
only on success, so a failed or interrupted run leaves no half-written dataset.
"""

import os
from typing import Dict, List, Optional

from data_pipeline import paths as paths_lib
from data_pipeline import schema as schema_lib
from data_pipeline.tf_env import tf


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


class DatasetWriter:
  """Writes impressions into ``{split}-XXXXX-of-NNNNN.tfrecord`` shards.

  Records go round-robin over a split's shards, so the layout is deterministic.
  Use as a context manager: an exception inside the block removes everything.

  Example:
    with DatasetWriter(out_dir, num_cats=2, num_shards=4) as writer:
      for imp in impressions:
        writer.write("train", imp)
      writer.commit(source="my converter")
  """

  def __init__(self, out_dir: str, num_cats: int, num_shards: int = 1,
               overwrite: bool = False):
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_cats < 1:
      raise ValueError(f"num_cats must be >= 1, got {num_cats}")
    self.out_dir = paths_lib.abspath(out_dir)
    if tf.io.gfile.exists(self.out_dir) and not overwrite:
      raise FileExistsError(
          f"{self.out_dir} already exists; choose another output folder or "
          "pass overwrite")
    self.num_cats = num_cats
    self.num_shards = num_shards
    self.overwrite = overwrite
    parent = os.path.dirname(self.out_dir)
    tf.io.gfile.makedirs(parent)
    self._tmp_dir = paths_lib.make_temp_dir(
        parent, prefix=f".{os.path.basename(self.out_dir)}.tmp-")
    self._writers: Dict[str, List[tf.io.TFRecordWriter]] = {}
    self._next: Dict[str, int] = {}
    self.stats = schema_lib.SchemaStats()
    self._done = False

  def write(self, split: str, imp: schema_lib.Impression) -> None:
    """Encodes and writes one impression to ``split`` (ValueError if malformed)."""
    # deterministic=True sorts map keys, so equal data gives equal bytes.
    record = schema_lib.to_example(imp, self.num_cats).SerializeToString(
        deterministic=True)
    self.write_serialized(split, imp, record)

  def write_serialized(self, split: str, imp: schema_lib.Impression,
                       record: bytes) -> None:
    """Writes an already encoded impression; ``imp`` feeds the statistics."""
    writers = self._writers.get(split)
    if writers is None:
      writers = [
          tf.io.TFRecordWriter(
              os.path.join(self._tmp_dir, shard_name(split, i, self.num_shards)))
          for i in range(self.num_shards)
      ]
      self._writers[split] = writers
      self._next[split] = 0
    writers[self._next[split] % self.num_shards].write(record)
    self._next[split] += 1
    self.stats.add(split, imp)

  def _close(self) -> None:
    for writers in self._writers.values():
      for w in writers:
        w.close()
    self._writers = {}

  def commit(self, source: str, extra_files: Optional[Dict[str, str]] = None
             ) -> schema_lib.DatasetSchema:
    """Writes ``schema.json`` (and ``extra_files``: name -> text), then renames.

    Returns:
      The dataset's schema.
    """
    self._close()
    files = {
        split: [shard_name(split, i, self.num_shards)
                for i in range(self.num_shards)]
        for split in self._next
    }
    schema = self.stats.schema(self.num_cats, files, source)
    schema.save(self._tmp_dir)
    for name, text in (extra_files or {}).items():
      paths_lib.write_text(os.path.join(self._tmp_dir, name), text)
    if not paths_lib.is_url(self._tmp_dir):
      # Give the folder the permissions a plain mkdir would have (gfile's local
      # mkdir asks for 0755, not 0777, before the umask).
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(self._tmp_dir, 0o777 & ~umask)
    if tf.io.gfile.exists(self.out_dir):
      if not self.overwrite:
        raise FileExistsError(f"{self.out_dir} appeared while writing")
      paths_lib.rmtree(self.out_dir)
    paths_lib.rename_dir(self._tmp_dir, self.out_dir)
    self._done = True
    return schema

  def abort(self) -> None:
    """Discards everything written so far."""
    self._close()
    if not self._done:
      paths_lib.rmtree(self._tmp_dir, ignore_errors=True)
      self._done = True

  def __enter__(self) -> "DatasetWriter":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is not None or not self._done:
      self.abort()
