"""Prefetcher: order, exceptions in place, early close."""

import threading
import time

import pytest

from data_pipeline.prefetch import Prefetcher


def test_items_in_order_then_stop():
  with Prefetcher(range(7), depth=2) as items:
    assert list(items) == list(range(7))
    with pytest.raises(StopIteration):
      next(items)


def test_an_exception_comes_where_its_item_would_have():
  def source():
    yield 1
    yield 2
    raise ValueError("shard x: record 3: bad")

  items = Prefetcher(source())
  assert next(items) == 1 and next(items) == 2
  with pytest.raises(ValueError, match="record 3"):
    next(items)
  items.close()


def test_reads_ahead_while_the_consumer_works_and_close_stops_the_thread():
  produced = []

  def source():
    for i in range(100):
      produced.append(i)
      yield i

  items = Prefetcher(source(), depth=3)
  assert next(items) == 0
  time.sleep(0.3)
  # 1 consumed + 3 queued + at most 1 being put.
  assert 4 <= len(produced) <= 5
  items.close()
  assert not any(t.name == "prefetcher" and t.is_alive()
                 for t in threading.enumerate() if t is items._thread)  # pylint: disable=protected-access
