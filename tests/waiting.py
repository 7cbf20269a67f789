"""Waiting in tests for something another thread or process does: a deadline, never a fixed
sleep; and a watcher running in a thread for the length of a block."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from halodb.api.registry import Registry
from halodb.api.watch import WatchEvent, WatchPolicy, watch


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)


@contextmanager
def watching(registry: Registry, name: str, policy: WatchPolicy) -> Iterator[list[WatchEvent]]:
    """Run ``halodb.api.watch.watch`` on ``name`` in a thread for the block; yields the list its
    events are appended to, and stops and joins the thread on the way out."""
    events: list[WatchEvent] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(registry, name),
                              kwargs={"policy": policy, "on_event": events.append, "stop": stop})
    thread.start()
    try:
        yield events
    finally:
        stop.set()
        thread.join(timeout=30)
