"""Opening the cache file: short-lived connections, retried while another process holds it,
and read-only connections locked down for queries.

DuckDB lets ONE process open a database file read-write, or any number of processes open
it read-only, never both at once (an OS file lock; see the DuckDB concurrency docs). The
cache therefore never keeps a connection open between operations: every operation opens
a connection, does its work and closes it, so a writer holds the file only while it
applies a sync (or migrates), and readers only for the length of one query. A process
that finds the file locked retries with backoff until ``timeout`` and then raises
:class:`~halodb.errors.CacheError` with ``.locked = True`` (and ``.path``, ``.timeout``).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.duckdb"
>>> con = open_connection(path, read_only=False, timeout=1.0)
>>> scalar(con, "SELECT current_setting('TimeZone')")
'UTC'
>>> con.close()

A read-only connection is what every reader of the cache gets (``halodb sql``, ``halodb at``,
:func:`halodb.cache.open_for_queries` for a server): besides refusing every write (DuckDB's
``read_only``), it has :data:`QUERY_SETTINGS`: no file or network access (no ``COPY ... TO``,
``read_text``, ``ATTACH``, ``INSTALL``, ``LOAD``, replacement scans of Python objects), no
automatic extension installs or loads, and then its configuration locked, so no query can
``SET`` any of it back. The cache needs no loadable extension: JSON, ICU (time zones) and
Parquet are built into the duckdb wheel.

>>> con = open_connection(path, read_only=True, timeout=1.0)
>>> con.execute("SET enable_external_access = true")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
_duckdb.InvalidInputException: Invalid Input Error: Cannot change configuration option "enable_external_access" - the configuration has been locked
>>> con.close()
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

from halodb.cache._boundary import DUCKDB
from halodb.errors import CacheError

__all__ = ["QUERY_SETTINGS", "WRITE_MEMORY_LIMIT", "execute_over", "is_lock_conflict", "open_connection", "registered",
           "rollback_quietly", "scalar", "sql_literal", "write_memory_limit"]

_LOCK_MARKERS = ("could not set lock on file", "conflicting lock is held")

#: DuckDB settings of every read-only connection (given when the database is opened; then
#: ``lock_configuration`` is set, so a query cannot change them or any other setting)
QUERY_SETTINGS: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,  # files, URLs, ATTACH, INSTALL/LOAD, scans of Python objects
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}


def is_lock_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is DuckDB saying another process holds the file lock.

    >>> is_lock_conflict(duckdb.IOException('IO Error: Could not set lock on file "x"'))
    True
    """
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(marker in text for marker in _LOCK_MARKERS)


#: DuckDB's memory for a connection that writes the cache (a sync), unless
#: ``HALODB_CACHE_MEMORY`` says otherwise: past it DuckDB spills to ``<cache>.tmp/``, so a
#: sync of a million items stays near it instead of holding its whole transaction (DuckDB's
#: default is 80 % of the machine's memory; at 300,000 items the peak RSS went 1,260 -> 957 MiB
#: with 256 MB, no slower). A 1M-item first sync, whose items are one INSERT: peak RSS
#: 917-942 MiB with 384 MB against 975 with 512 MB (951-1,030 in bench_scale.py), the
#: wall 0.3-1.5 s longer; with 256 MB 837-858 MiB, 1-2.5 s longer
WRITE_MEMORY_LIMIT = "384MB"


def write_memory_limit() -> str:
    """The memory limit of a writing connection: ``HALODB_CACHE_MEMORY`` or :data:`WRITE_MEMORY_LIMIT`.

    >>> WRITE_MEMORY_LIMIT  # the default; tests/test_cache.py syncs under another
    '384MB'
    """
    return os.environ.get("HALODB_CACHE_MEMORY") or WRITE_MEMORY_LIMIT


def open_connection(path: Path, *, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
    """Connect to the cache file, retrying for up to ``timeout`` seconds while it is locked.

    The session time zone is set to UTC so that TIMESTAMPTZ values and bare date literals
    mean the same on every machine. A read-only connection is locked down for queries (see
    the module's docstring).

    >>> import tempfile, pathlib
    >>> open_connection(pathlib.Path(tempfile.mkdtemp()) / "absent.duckdb", read_only=True, timeout=0.1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    halodb.errors.CacheError: no cache at .../absent.duckdb
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if read_only and not path.exists():
            raise CacheError(f"no cache at {path}", path=path, locked=False)
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config=QUERY_SETTINGS if read_only else {"memory_limit": write_memory_limit()})
        except DUCKDB.caught as exc:
            remaining = deadline - time.monotonic()
            if not is_lock_conflict(exc):
                setting = "" if read_only or "memory" not in str(exc).lower() else (
                    f" (HALODB_CACHE_MEMORY={write_memory_limit()!r}: give a size such as 512MB)")
                if "not a valid DuckDB database" in str(exc):  # the cache holds nothing the blocks do not
                    setting = f" (the cache is rebuilt from the blocks: remove {path} and run `halodb sync NAME`)"
                raise DUCKDB.translate(exc, f"cannot open cache {path}: {exc}{setting}", path=path,
                                       locked=False) from exc
            if remaining <= 0:
                mode = "read-only" if read_only else "read-write"
                raise DUCKDB.translate(
                    exc,
                    f"cache {path} is locked by another process (a sync writing it, or readers while a "
                    f"sync waits); could not open it {mode} within {timeout:g} s: {exc}",
                    path=path,
                    timeout=timeout,
                    locked=True,
                ) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.2)
            continue
        try:
            if not read_only:
                con.execute("SET TimeZone = 'UTC'")
            elif not scalar(con, "SELECT current_setting('lock_configuration')"):
                # the first connection to the database in this process (later ones share it, locked):
                # UTC for every connection, then nothing can be changed any more
                con.execute("SET GLOBAL TimeZone = 'UTC'")
                con.execute("SET lock_configuration = true")
        except DUCKDB.caught as exc:
            con.close()
            raise DUCKDB.translate(exc, f"cannot configure cache connection to {path}: {exc}", path=path) from exc
        return con


def scalar(con: duckdb.DuckDBPyConnection, query: str, params: Any = None) -> Any:
    """The first column of the first row of ``query`` (None without rows).

    Always fetches the whole result: DuckDB refuses new work on a connection whose previous
    result was not read to the end (``fetchone`` on a one-row result is not enough).

    >>> scalar(duckdb.connect(), "SELECT 40 + ?", [2])
    42
    """
    rows = con.execute(query, params).fetchall()
    return rows[0][0] if rows else None


def rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if there is one (a failure in BEGIN leaves none, and a
    failed commit may have ended it already); the error that led here is the one to raise."""
    try:
        con.rollback()
    except duckdb.Error:
        pass


def execute_over(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table | pa.RecordBatchReader, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` with ``table`` visible to it as ``name``, for that statement only; its rows
    (for an INSERT or UPDATE, the count DuckDB returns). ``sql`` takes no parameters: quote
    values into it with :func:`sql_literal`.

    Unlike :func:`registered`, no view is made: a view dropped inside a transaction stays in
    DuckDB's catalog until the transaction ends (so that a rollback could restore it), and
    with it the Arrow table it scans, so a sync that registered each batch of items held
    every batch's item JSON in memory until its commit.

    >>> import pyarrow as pa
    >>> con = duckdb.connect()
    >>> execute_over(con, "t", pa.table({"x": [1, 2]}), "SELECT sum(x) FROM t")
    [(3,)]
    """
    result = con.from_arrow(table).query(name, sql)
    return [] if result is None else result.fetchall()


def sql_literal(value: str | datetime) -> str:
    """``value`` as a DuckDB literal: a string in single quotes (each one in it doubled), a
    time (aware) as a ``TIMESTAMPTZ``.

    >>> sql_literal("it's"), sql_literal(datetime(2024, 8, 12, tzinfo=timezone.utc))
    ("'it''s'", "TIMESTAMPTZ '2024-08-12T00:00:00+00:00'")
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("sql_literal: a time without a time zone")
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """``table`` visible to SQL on ``con`` as ``name`` for the duration of the block.

    >>> import pyarrow as pa
    >>> con = duckdb.connect()
    >>> with registered(con, "t", pa.table({"x": [1, 2]})):
    ...     con.execute("SELECT sum(x) FROM t").fetchall()
    [(3,)]
    """
    con.register(name, table)
    try:
        yield
    finally:
        try:
            con.unregister(name)
        except duckdb.Error:
            pass  # the connection is gone; nothing to clean up
