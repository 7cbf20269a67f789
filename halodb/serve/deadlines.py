"""Deadlines for queries: one watchdog thread interrupts every cursor that runs too long.

A request registers its cursor with :meth:`Watchdog.watch` and releases it when done; the
one thread of the watchdog sleeps until the earliest deadline and interrupts the cursors
whose deadline passed and that are still held (a thread per request cost ~5 % of a busy
server's time). A cursor is never interrupted after it was released: both happen under one
lock.

>>> import duckdb
>>> dog = Watchdog()
>>> cur = duckdb.connect().cursor()
>>> ticket = dog.watch(cur, 0.05)
>>> cur.execute("SELECT count(*) FROM range(100000000000) AS a")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
_duckdb.InterruptException: INTERRUPT Error: Interrupted!
>>> dog.release(ticket)
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Protocol

__all__ = ["WATCHDOG", "Interruptible", "Ticket", "Watchdog"]


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class Ticket:
    """One watched cursor, until released."""

    __slots__ = ("cursor", "deadline")

    def __init__(self, cursor: Interruptible | None, deadline: float) -> None:
        self.cursor = cursor
        self.deadline = deadline


class Watchdog:
    """Interrupts watched cursors past their deadline, from one daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, cursor: Interruptible, seconds: float) -> Ticket:
        """Interrupt ``cursor`` if it is still held ``seconds`` from now."""
        ticket = Ticket(cursor, time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, (ticket.deadline, next(self._order), ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="halodb-serve-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is ticket:
                self._cond.notify()
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The cursor is done: never interrupt it (its heap entry is dropped when due)."""
        with self._cond:
            ticket.cursor = None

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].cursor is None or self._heap[0][0] <= now):
                    _, _, ticket = heapq.heappop(self._heap)
                    if ticket.cursor is not None:
                        ticket.cursor.interrupt()
                        ticket.cursor = None
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


#: the watchdog of this process's server
WATCHDOG = Watchdog()
