"""`Prefetcher`: runs a Python iterator ahead in a background thread.

The stream trainer's batches come from a Python iterator (`ShardStream`: reading
shards, parsing, padding). Without read-ahead, each step waits for the next batch
to be parsed and the parse waits for the step. The thread keeps up to ``depth``
items ready; TensorFlow releases the GIL inside its ops, so parsing and the
training step overlap on the cores. Items keep their order, and an exception of
the iterator is raised by `next` at the place of the item it replaced, so the
consumer sees exactly what the plain iterator would have given it.
"""

import queue
import threading
from typing import Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class _Raised:
  def __init__(self, error: BaseException):
    self.error = error


class Prefetcher(Generic[T]):
  """Iterates ``source`` in a daemon thread, ``depth`` items ahead.

  Use as an iterator; `close` (or leaving a ``with`` block) stops the thread
  after the item it is producing (items read ahead and not consumed are dropped,
  as a consumer that stops early would drop them).
  """

  def __init__(self, source: Iterable[T], depth: int = 2):
    if depth < 1:
      raise ValueError(f"depth must be >= 1, got {depth}")
    self._items: "queue.Queue" = queue.Queue(maxsize=depth)
    self._closed = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(iter(source),),
                                    daemon=True, name="prefetcher")
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._closed.is_set():
      try:
        self._items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self, source: Iterator[T]) -> None:
    try:
      for item in source:
        if not self._put(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._put(_Raised(e))
      return
    self._put(_END)

  def __iter__(self) -> "Prefetcher[T]":
    return self

  def __next__(self) -> T:
    item = self._items.get()
    if item is _END:
      self._items.put(_END)  # later calls stop too
      raise StopIteration
    if isinstance(item, _Raised):
      self._items.put(item)
      raise item.error
    return item

  def close(self) -> None:
    self._closed.set()
    self._thread.join(timeout=10)

  def __enter__(self) -> "Prefetcher[T]":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
