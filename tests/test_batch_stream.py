"""The hand-over of Arrow tables to one running DuckDB statement (halodb.cache.batch_stream):
every table arrives once and in order; a statement that fails, or a producer that gives up,
never leaves the other side waiting. Real DuckDB, real threads (every wait bounded here, so
that a hang fails the test instead of the run)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import duckdb
import pyarrow as pa
import pytest

from halodb.cache.batch_stream import BatchStream, StreamEnded

SCHEMA = pa.schema([("x", pa.string())])
WAIT = 30.0  #: seconds a thread of these tests may take at most (each takes milliseconds)


def _table(values: list[str]) -> pa.Table:
    return pa.table({"x": pa.array(values, pa.string())})


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _insert(con: duckdb.DuckDBPyConnection, stream: BatchStream, sql: str) -> object:
    try:
        result = con.from_arrow(stream.reader()).query("t", sql)
        return None if result is None else result.fetchall()
    finally:
        stream.end()


def test_every_table_arrives_once_in_order_while_few_wait() -> None:
    stream = BatchStream(SCHEMA, depth=2)
    con = duckdb.connect()
    con.execute("CREATE TABLE dst (x VARCHAR)")
    statement, out = _in_thread(lambda: _insert(con, stream, "INSERT INTO dst SELECT x FROM t"))
    for lo in range(0, 1000, 7):
        stream.put(_table([str(i) for i in range(lo, min(lo + 7, 1000))]))
        assert len(stream._tables) <= 2  # (never more than depth wait)
    stream.close()
    statement.join(WAIT)
    assert not statement.is_alive() and "error" not in out
    assert con.execute("SELECT count(*), count(DISTINCT x), min(CAST(x AS INT)), max(CAST(x AS INT)) FROM dst").fetchall() \
        == [(1000, 1000, 0, 999)]
    assert stream.rows == 1000


def test_a_statement_that_fails_mid_stream_wakes_the_producer() -> None:
    stream = BatchStream(SCHEMA, depth=1)
    con = duckdb.connect()
    statement, out = _in_thread(lambda: _insert(con, stream, "SELECT sum(CAST(x AS INTEGER)) FROM t"))
    stream.put(_table(["1", "2"]))
    stream.put(_table(["three"]))  # DuckDB fails on this one

    def put_more() -> None:
        for _ in range(100):
            stream.put(_table(["4"]))

    producer, produced = _in_thread(put_more)
    producer.join(WAIT)
    statement.join(WAIT)
    assert not producer.is_alive() and not statement.is_alive()
    assert isinstance(produced["error"], StreamEnded)
    assert isinstance(out["error"], duckdb.ConversionException) and "three" in str(out["error"])


def test_a_producer_that_gives_up_fails_the_statement_with_its_error() -> None:
    stream = BatchStream(SCHEMA, depth=4)
    con = duckdb.connect()
    con.execute("CREATE TABLE dst (x VARCHAR)")
    con.begin()
    statement, out = _in_thread(lambda: _insert(con, stream, "INSERT INTO dst SELECT x FROM t"))
    stream.put(_table(["a", "b"]))
    stream.close(RuntimeError("the sync failed elsewhere"))
    statement.join(WAIT)
    assert not statement.is_alive()
    assert stream.aborted and isinstance(out["error"], duckdb.Error)  # (DuckDB names its own error)
    con.rollback()
    assert con.execute("SELECT count(*) FROM dst").fetchall() == [(0,)]


def test_a_statement_that_never_ran_wakes_the_producer() -> None:
    """The writer skipped the statement (an earlier step failed): end() alone wakes a producer
    waiting for room."""
    stream = BatchStream(SCHEMA, depth=1)
    stream.put(_table(["a"]))
    producer, produced = _in_thread(lambda: stream.put(_table(["b"])))
    producer.join(0.2)
    assert producer.is_alive()  # waiting for room
    stream.end()
    producer.join(WAIT)
    assert not producer.is_alive() and isinstance(produced["error"], StreamEnded)


def test_a_table_of_another_schema_is_cast_or_refused() -> None:
    stream = BatchStream(pa.schema([("x", pa.int64())]), depth=4)
    stream.put(pa.table({"x": pa.array([1, 2], pa.int32())}))  # cast
    with pytest.raises(ValueError, match="field names"):
        stream.put(pa.table({"y": [1]}))
    stream.close()
    assert [b.schema for b in stream.reader()] == [stream.schema]
