"""Deadlines for queries: one watchdog thread interrupts every cursor that runs too long.

A request registers its cursor with :meth:`Watchdog.watch` and releases it when done; the
one thread of the watchdog sleeps until the earliest deadline and interrupts the cursors
whose deadline passed and that are still held (a thread per request cost ~5 % of a busy
server's time). A cursor is never interrupted after it was released: both happen under one
lock. A cursor still held after its deadline is interrupted again every
:data:`REPEAT_INTERRUPT` seconds until it is released: DuckDB forgets an interrupt that
arrives before a query starts, so a deadline that passed while the request was still in
Python (a loaded machine) would otherwise leave the query that follows unbounded.

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
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import duckdb

from halodb.errors import RequestError
from halodb.serve._boundary import DUCKDB_REQUEST

__all__ = ["REPEAT_INTERRUPT", "WATCHDOG", "Deadline", "Interruptible", "Ticket", "Watchdog", "bounded"]

log = logging.getLogger("halodb.serve")

#: seconds between the interrupts of a cursor held past its deadline
REPEAT_INTERRUPT = 0.05


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
                due: list[Ticket] = []
                while self._heap and (self._heap[0][2].cursor is None or self._heap[0][0] <= now):
                    _, _, ticket = heapq.heappop(self._heap)
                    if ticket.cursor is not None:
                        ticket.cursor.interrupt()
                        due.append(ticket)
                for ticket in due:  # again soon, until released (see the module docstring)
                    heapq.heappush(self._heap, (now + REPEAT_INTERRUPT, next(self._order), ticket))
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


#: the watchdog of this process's server
WATCHDOG = Watchdog()


class Deadline:
    """The deadline of work that runs in Python, not in DuckDB (no cursor to interrupt): the
    work calls :meth:`check` now and then, which stops it as the watchdog stops a query.

    >>> Deadline(0.0).check()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: the query ran longer than 0 s and was stopped; narrow the search
    """

    __slots__ = ("end", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() >= self.end:
            raise RequestError(f"the query ran longer than {self.seconds:g} s and was stopped; narrow the search",
                               status=503)


@contextmanager
def bounded(cursor: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Use ``cursor`` for at most ``seconds``, then close it: a query still running then is
    interrupted and becomes a :class:`~halodb.errors.RequestError` with status 503 (any other
    DuckDB failure one with status 400: see :mod:`halodb.serve._boundary`).

    >>> with bounded(duckdb.connect().cursor(), 0.05) as cur:  # doctest: +ELLIPSIS
    ...     cur.execute("SELECT count(*) FROM range(100000000000) AS a")
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: the query ran longer than 0.05 s and was stopped; narrow the search
    """
    ticket = WATCHDOG.watch(cursor, seconds)
    try:
        yield cursor
    except DUCKDB_REQUEST.caught as exc:
        if isinstance(exc, duckdb.InterruptException):
            raise DUCKDB_REQUEST.translate(exc, f"the query ran longer than {seconds:g} s and was stopped; narrow "
                                           "the search", status=503) from None
        log.warning("a query of a request failed: %s", exc)
        raise DUCKDB_REQUEST.translate(exc, f"the search could not be run: {exc}") from None
    finally:
        WATCHDOG.release(ticket)
        cursor.close()
