"""The server's query deadlines (:mod:`halodb.serve.deadlines`) on real DuckDB cursors."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from halodb.errors import RequestError
from halodb.serve.deadlines import REPEAT_INTERRUPT, Watchdog, bounded

#: a query that runs for tens of seconds unless interrupted
LONG = "SELECT count(*) FROM range(100000000000) AS a"


def test_a_deadline_that_passed_before_the_query_started_still_stops_it() -> None:
    """DuckDB forgets an interrupt that arrives while the cursor is idle: the watchdog must
    keep interrupting a cursor held past its deadline, or the query after it runs unbounded
    (this failed on a loaded machine, where the request was still in Python at its deadline)."""
    dog = Watchdog()
    cursor = duckdb.connect().cursor()
    ticket = dog.watch(cursor, 0.0)
    time.sleep(10 * REPEAT_INTERRUPT)  # the first interrupts hit the idle cursor
    started = time.monotonic()
    with pytest.raises(duckdb.InterruptException):
        cursor.execute(LONG)
    assert time.monotonic() - started < 30  # interrupted, not run to its end (~40 s here)
    dog.release(ticket)


def test_a_released_cursor_is_never_interrupted() -> None:
    dog = Watchdog()
    cursor = duckdb.connect().cursor()
    ticket = dog.watch(cursor, 0.0)
    dog.release(ticket)
    time.sleep(10 * REPEAT_INTERRUPT)
    assert cursor.execute("SELECT count(*) FROM range(1000000)").fetchall() == [(1000000,)]


def test_bounded_turns_the_interrupt_into_a_503() -> None:
    with pytest.raises(RequestError) as info, bounded(duckdb.connect().cursor(), 0.05) as cursor:
        cursor.execute(LONG)
    assert info.value.status == 503 and "longer than 0.05 s" in str(info.value)


def test_many_cursors_each_stopped_at_its_own_deadline() -> None:
    dog = Watchdog()
    errors: list[BaseException] = []

    def run(seconds: float) -> None:
        cursor = duckdb.connect().cursor()
        ticket = dog.watch(cursor, seconds)
        try:
            cursor.execute(LONG)
        except duckdb.InterruptException as exc:
            errors.append(exc)
        finally:
            dog.release(ticket)

    threads = [threading.Thread(target=run, args=(0.05 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(errors) == 4 and not any(thread.is_alive() for thread in threads)
