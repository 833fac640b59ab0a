"""The next batch, fetched and put on the mesh while the device computes the current step.

`Prefetch(iterator, put)` draws batches from a data iterator in one background thread, `size`
ahead of the loop, and applies `put` there (e.g. `mesh.global_batch`: the host-to-device copy
overlaps the step as well). It stands in for the iterator in checkpoints: `get_state()` is the
state from which the *next batch the loop takes* would be drawn, so a run resumed from a
checkpoint takes exactly the batches an uninterrupted one would, however far ahead the thread
has read.
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
from collections.abc import Callable, Iterator


class Prefetch:
    """An iterator over `put(batch)` for the batches of `iterator`, `size` of them fetched ahead
    (0: none, in the caller's thread).

    Only the background thread touches `iterator` (grain iterators are not thread-safe). Restore
    the iterator's state before wrapping it. An error in the data pipeline is raised by the
    `next()` that would have returned that batch.
    """

    def __init__(self, iterator: Iterator, put: Callable = lambda batch: batch, size: int = 1):
        if size < 0:
            raise ValueError(f"prefetch size must be >= 0, got {size}")
        self._iterator, self._put = iterator, put
        self._pool = (futures.ThreadPoolExecutor(1, thread_name_prefix="vidmix-prefetch")
                      if size else None)  # 0: no thread, each batch read when asked for
        self._pending: collections.deque[futures.Future] = collections.deque()
        for _ in range(size):
            self._submit()

    def _fetch(self):
        state = self._iterator.get_state()  # before the batch: where a resume starts from
        return state, self._put(next(self._iterator))

    def _submit(self) -> None:
        self._pending.append(self._pool.submit(self._fetch))

    def __iter__(self):
        return self

    def __next__(self):
        if self._pool is None:
            return self._fetch()[1]
        _, batch = self._pending.popleft().result()
        self._submit()
        return batch

    def get_state(self):
        """The iterator state before the next batch `next()` returns (waits for its fetch)."""
        return self._pending[0].result()[0] if self._pending else self._iterator.get_state()

    def set_state(self, state) -> None:
        raise TypeError("restore the wrapped iterator's state before wrapping it in Prefetch")

    def close(self) -> None:
        """Stops the thread after the fetch in flight; the wrapped iterator stays open."""
        for future in self._pending:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
