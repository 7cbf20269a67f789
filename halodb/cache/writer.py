"""Run DuckDB statements in order on one background thread while Python keeps working.

DuckDB releases the GIL while it executes, so the sync can encode the next batch of STAC
items in Python while DuckDB inserts the previous one. :class:`OrderedWriter` runs the
submitted calls one at a time, in submission order, on a single thread (so they share
one connection and one transaction), and skips everything after the first failure.

>>> with OrderedWriter() as w:
...     first = w.submit(lambda: 1)
...     second = w.submit(lambda: first.result() + 1)
...     w.finish()
>>> second.result()
2
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["OrderedWriter", "Skipped"]

T = TypeVar("T")


class Skipped(Exception):
    """A submitted call did not run because an earlier one failed (or the writer was aborted)."""


class OrderedWriter:
    """A one-thread executor that stops at the first error; use as a context manager.

    >>> with OrderedWriter() as w:
    ...     _ = w.submit(lambda: 1 / 0)
    ...     later = w.submit(lambda: "never")
    ...     try:
    ...         w.finish()
    ...     except ZeroDivisionError:
    ...         print("first error re-raised")
    first error re-raised
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halodb-cache-writer")
        self._futures: list[Future[Any]] = []
        self._stop = threading.Event()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)`` after everything submitted before."""

        def run() -> T:
            if self._stop.is_set():
                raise Skipped(getattr(fn, "__name__", repr(fn)))
            try:
                return fn(*args)
            except BaseException:
                self._stop.set()
                raise

        future = self._pool.submit(run)
        self._futures.append(future)
        return future

    def finish(self) -> None:
        """Wait for every queued call; re-raise the first real error (not :class:`Skipped`)."""
        for future in self._futures:
            future.exception()  # waits
        first = self.first_error()
        if first is not None:
            raise first

    def first_error(self) -> BaseException | None:
        """The first error a call that already ended raised (not :class:`Skipped`), if any."""
        for future in self._futures:
            if future.done() and not future.cancelled():
                exc = future.exception()
                if exc is not None and not isinstance(exc, Skipped):
                    return exc
        return None

    def abort(self) -> None:
        """Skip whatever has not started and wait for the running call to end."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=exc is not None)
