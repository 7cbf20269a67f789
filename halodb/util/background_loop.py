"""One asyncio event loop on a daemon thread, for synchronous code that runs coroutines.

The trustless-gateway store talks HTTP with aiohttp, which is async; the block store API is
synchronous and called from many threads at once (zarr's readers, the sync pipeline). Every
caller hands its coroutine to this one loop and waits for the result, so hundreds of requests
share one thread and a few connections instead of a thread each. Unlike ``asyncio.run``, this
also works from a thread whose own loop is running (a notebook).

The loop belongs to the process: after a ``fork`` the child gets a new one on first use (the
parent's thread does not exist there).

>>> async def add(a: int, b: int) -> int:
...     return a + b
>>> BackgroundLoop.shared().run(add(1, 2))
3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

__all__ = ["BackgroundLoop"]

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running forever on a daemon thread (see the module docstring)."""

    _shared: ClassVar[BackgroundLoop | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="halodb-loop", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> BackgroundLoop:
        """This process's loop (started on first use)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared.pid != os.getpid():
                cls._shared = cls()
            return cls._shared

    @property
    def alive(self) -> bool:
        """Whether this loop can still run coroutines (in this process)."""
        return self.pid == os.getpid() and self._thread.is_alive() and not self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (its exception is raised here).

        Past ``timeout`` seconds the coroutine is cancelled and :class:`TimeoutError` raised;
        an interrupt of the waiting thread (Ctrl-C) cancels it too.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop: await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout} s") from None
        except BaseException:
            future.cancel()
            raise
