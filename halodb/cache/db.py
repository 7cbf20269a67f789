"""The :class:`Cache`: a DuckDB file holding the materialized index and its history.

Concurrency: DuckDB allows one read-write process OR many read-only processes per file.
A :class:`Cache` therefore holds no connection between calls (unless inside
:meth:`Cache.session`): each call opens the file, works, and closes it. A sync holds the
file only while :meth:`Cache.apply` runs (not while it fetches blocks); a ``halodb sql``
in another process that finds the file locked retries until ``lock_timeout`` and then
raises :class:`~halodb.errors.CacheError` with ``.locked = True``. See ``halodb/cache/connect.py``.

>>> import tempfile, pathlib
>>> from datetime import datetime, timezone
>>> from halodb.cache.records import ChangeRecord, CommitRecord, ItemRecord, SyncPlan
>>> from halodb.cache.stac_columns import item_columns
>>> path = pathlib.Path(tempfile.mkdtemp()) / "cache.duckdb"
>>> item = ItemRecord("halo/flight-1", "bafyitem", "bafydata", "products/HALO/f1.zarr")
>>> commit = CommitRecord("bafyc1", [], "bafyi1", datetime(2024, 9, 1, tzinfo=timezone.utc), "me", "add",
...                       [ChangeRecord(item.key, item)])
>>> with Cache(path) as cache:
...     _ = cache.apply(SyncPlan("orcestra", "bafyc1", False, [commit],
...                              load_item_columns=lambda cids: item_columns(cids, [{"id": "f1"}])))
...     cache.sql("SELECT key, data_cid FROM items")
(['key', 'data_cid'], [('halo/flight-1', 'bafydata')])
>>> with Cache(path, read_only=True) as cache:
...     cache.cid_at("products/HALO/f1.zarr", datetime(2024, 9, 2, tzinfo=timezone.utc))
'bafydata'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from halodb.cache._boundary import DUCKDB, DUCKDB_QUERY
from halodb.cache.connect import open_connection, rollback_quietly, scalar
from halodb.cache.migrate import latest_version, load_migrations, migrate, pending
from halodb.cache.records import SyncPlan, SyncState
from halodb.errors import CacheError, MigrationError, QueryError

__all__ = ["QUERY_STATEMENTS", "Cache", "open_for_queries"]

#: default seconds to wait for another process to release the file
DEFAULT_LOCK_TIMEOUT = 30.0

#: the kinds of statement :meth:`Cache.sql` runs: queries (``DESCRIBE``, ``SHOW``, ``SUMMARIZE``
#: and ``FROM ...`` are SELECTs too), their plans, and PRAGMAs that read (one that changes a
#: setting meets a locked configuration)
QUERY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA})


def open_for_queries(path: Path | str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT, create: bool = False) -> Cache:
    """The cache as every reader should open it — ``halodb sql``, ``halodb at``, a server
    answering queries: read-only, with no file or network access and no extensions, its
    DuckDB configuration locked (see :mod:`halodb.cache.connect`), and :meth:`Cache.sql`
    running one query statement at a time.

    ``create``: make the file, or migrate an old one, first (opening it read-write once);
    without it a missing file or an old schema is a :class:`~halodb.errors.CacheError`. The
    connection that checked the schema serves the first call (one open, not two); until that
    call, or :meth:`Cache.close`, it holds the file.

    >>> import tempfile, pathlib
    >>> with open_for_queries(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb", create=True) as cache:
    ...     cache.sql("SELECT count(*) FROM items")
    (['count_star()'], [(0,)])
    """
    path = Path(path)
    if create and not path.exists():
        Cache(path, lock_timeout=lock_timeout).close()
    try:
        return Cache(path, read_only=True, lock_timeout=lock_timeout, keep_open=True)._opened()
    except MigrationError:
        if not create:
            raise
    Cache(path, lock_timeout=lock_timeout).close()  # migrates
    return Cache(path, read_only=True, lock_timeout=lock_timeout, keep_open=True)._opened()


class Cache:
    """The local DuckDB cache of one or more HaloDB names.

    ``Cache(path)`` creates the file if needed and applies pending migrations;
    ``Cache(path, read_only=True)`` never writes and requires an up-to-date schema.

    >>> import tempfile, pathlib
    >>> with Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb") as cache:
    ...     cache.sync_states()
    []
    """

    def __init__(
        self,
        path: Path | str,
        *,
        read_only: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        keep_open: bool = False,
    ) -> None:
        """``keep_open``: open (and migrate) the file on a background thread and let that
        connection serve the first call, which waits for it and then closes it as usual: one
        open of the file instead of two, overlapped with whatever the caller does first (a
        sync diffs the trees meanwhile). Errors of the opening (a locked file, a failed
        migration) are raised by that first call. Until it, other processes wait for the
        file, so use it only when a call follows.
        """
        self.path = Path(path)
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self._held: duckdb.DuckDBPyConnection | None = None
        self._opening: Future[duckdb.DuckDBPyConnection] | None = None
        self._closed = False
        self._fresh = not read_only and not self.path.exists()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_open:
            self._opening = Future()
            threading.Thread(target=self._open_into, args=(self._opening,), name="halodb-cache-open", daemon=True).start()
        else:
            self._open_checked().close()

    @property
    def fresh(self) -> bool:
        """True while nothing can be cached yet: the file did not exist when this object was
        made, and nothing was applied through it since (so a sync may plan before asking)."""
        return self._fresh

    def _open_checked(self) -> duckdb.DuckDBPyConnection:
        """A connection to an up-to-date schema: migrated (read-write) or checked (read-only)."""
        migrations = load_migrations()
        con = open_connection(self.path, read_only=self.read_only, timeout=self.lock_timeout)
        try:
            if self.read_only:
                todo = pending(con, migrations)
                if todo:
                    raise MigrationError(
                        f"cache {self.path} has an old schema (needs migration {todo[0].version:03d}"
                        f"..{latest_version(migrations):03d}); open it read-write once to migrate",
                        path=self.path, version=todo[0].version,
                    )
            else:
                migrate(con, migrations)
                _check_respellings(con, self.path)
        except BaseException:
            con.close()
            raise
        return con

    def _opened(self) -> Cache:
        """Wait for a ``keep_open`` opening and raise its error now, not at the first call."""
        opening = self._opening
        if opening is not None and opening.exception() is not None:
            self._opening = None
            self._closed = True
            opening.result()  # raises
        return self

    def _open_into(self, future: Future[duckdb.DuckDBPyConnection]) -> None:
        try:
            future.set_result(self._open_checked())
        except BaseException as exc:  # handed to the first call
            future.set_exception(exc)

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Release the cache (and the connection of an open :meth:`session`). Idempotent.

        >>> import tempfile, pathlib
        >>> cache = Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb")
        >>> cache.close(); cache.close()
        """
        opening, self._opening = self._opening, None
        if opening is not None and opening.exception() is None:  # waits for the opening thread
            opening.result().close()
        if self._held is not None:
            held, self._held = self._held, None
            held.close()
        self._closed = True

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"Cache({str(self.path)!r}, {mode})"

    @property
    def in_session(self) -> bool:
        """Whether a :meth:`session` holds the file open now."""
        return self._held is not None

    @contextmanager
    def session(self) -> Iterator[Cache]:
        """Keep one connection open for many calls (faster, but blocks other processes).

        Opening a connection costs ~15 ms; a loop of :meth:`cid_at` calls should run in a
        session. While it is open, other processes cannot write (read-only session) or do
        anything (read-write session) with the file.

        >>> import tempfile, pathlib
        >>> from datetime import datetime, timezone
        >>> cache = Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb")
        >>> with cache.session():
        ...     [cache.cid_at(k, datetime.now(timezone.utc)) for k in ("a", "b")]
        [None, None]
        """
        if self._held is not None:
            yield self
            return
        self._check_open()
        self._held = self._take_spare() or open_connection(self.path, read_only=self.read_only, timeout=self.lock_timeout)
        try:
            yield self
        finally:
            held, self._held = self._held, None
            if held is not None:
                held.close()

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self._check_open()
        if self._held is not None:
            yield self._held
            return
        con = self._take_spare() or open_connection(self.path, read_only=self.read_only, timeout=self.lock_timeout)
        try:
            yield con
        finally:
            con.close()

    def _take_spare(self) -> duckdb.DuckDBPyConnection | None:
        """The connection made at construction (``keep_open``), once; raises its error."""
        opening, self._opening = self._opening, None
        return None if opening is None else opening.result()

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"cache {self.path} is closed", path=self.path)

    # -- writing --------------------------------------------------------------------------
    def apply(self, plan: SyncPlan, progress: Callable[[int], None] | None = None) -> int:
        """Apply a sync plan in ONE transaction; on error the cache is unchanged (CacheError).
        Returns the number of changes applied (the plan's changes are read once);
        ``progress(n)``: the items materialized so far, after each batch.

        >>> import tempfile, pathlib
        >>> cache = Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb")
        >>> cache.apply(SyncPlan("empty", "bafyhead", reset=True, commits=[]))
        0
        >>> cache.current_head("empty")
        'bafyhead'
        """
        if self.read_only:
            raise CacheError(f"cache {self.path} is open read-only; cannot apply a sync", path=self.path)
        with self._connection() as con:
            self._fresh = False
            from halodb.cache import materialize  # Arrow: only for those who write

            return materialize.apply_plan(con, plan, now=datetime.now(timezone.utc), progress=progress)

    # -- reading --------------------------------------------------------------------------
    def sql(self, query: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL; return (column names, rows). :class:`QueryError` (``.sql``) on failure.

        On a read-only cache (:func:`open_for_queries`: how ``halodb sql`` and servers read it)
        that is one query statement (see :data:`QUERY_STATEMENTS`), and anything else is a
        :class:`QueryError` too: the cache is derived from the synced index, and only a sync
        changes it. A read-write cache (the sync's own) runs any SQL.

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.duckdb"
        >>> Cache(path).sql("SELECT ? + 1 AS n", [41])
        (['n'], [(42,)])
        >>> open_for_queries(path).sql("DELETE FROM items")
        Traceback (most recent call last):
        ...
        halodb.errors.QueryError: DELETE statements are not run: the cache is read-only for SQL (it holds what syncs derived from the verified index); halodb sql runs one SELECT, EXPLAIN or PRAGMA
        """
        with self._connection() as con:
            try:
                if self.read_only:
                    _check_query(con, query)
                cursor = con.execute(query, params)
                if cursor.description is None:
                    return [], []
                columns = [d[0] for d in cursor.description]
                return columns, cursor.fetchall()
            except DUCKDB_QUERY.caught as exc:
                raise DUCKDB_QUERY.translate(exc, f"query failed: {exc}", sql=query, params=params) from exc

    def sql_arrow(self, query: str, params: list[Any] | None = None) -> Any:
        """Run one query (as :meth:`sql`) and return its result as a ``pyarrow.Table``: columnar,
        without a Python object per value (how a server copies a name's rows out of the file).

        >>> import tempfile, pathlib
        >>> Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb").sql_arrow("SELECT ? AS n", [42]).to_pylist()
        [{'n': 42}]
        """
        with self._connection() as con:
            try:
                if self.read_only:
                    _check_query(con, query)
                return con.sql(query, params=params).to_arrow_table()
            except DUCKDB_QUERY.caught as exc:
                raise DUCKDB_QUERY.translate(exc, f"query failed: {exc}", sql=query, params=params) from exc

    def sync_state(self, name: str) -> SyncState | None:
        """What the cache holds for ``name``, or None if it was never synced.

        >>> import tempfile, pathlib
        >>> Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb").sync_state("nobody") is None
        True
        """
        states = self._sync_states(name)
        return states[0] if states else None

    def sync_states(self) -> list[SyncState]:
        """What the cache holds for every synced name, by name.

        >>> import tempfile, pathlib
        >>> cache = Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb")
        >>> _ = cache.apply(SyncPlan("b", "bafyb", True, [])); _ = cache.apply(SyncPlan("a", "bafya", True, []))
        >>> [(s.name, s.head, s.items) for s in cache.sync_states()]
        [('a', 'bafya', 0), ('b', 'bafyb', 0)]
        """
        return self._sync_states(None)

    def _sync_states(self, name: str | None) -> list[SyncState]:
        with self._connection() as con:
            rows = con.execute(
                "SELECT name, head, synced_at, commits, items, scope FROM sync_state"
                " WHERE $name IS NULL OR name = $name ORDER BY name",
                {"name": name},
            ).fetchall()
        return [SyncState(r[0], r[1], _utc(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]

    def synced_commits(self, name: str) -> set[str]:
        """The CIDs of the commits already applied for ``name``.

        >>> import tempfile, pathlib
        >>> Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb").synced_commits("nobody")
        set()
        """
        with self._connection() as con:
            return {r[0] for r in con.execute("SELECT cid FROM name_commits WHERE name = ?", [name]).fetchall()}

    def current_head(self, name: str) -> str | None:
        """The head commit CID the cache is synced to for ``name``, or None.

        >>> import tempfile, pathlib
        >>> Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb").current_head("nobody") is None
        True
        """
        with self._connection() as con:
            head = scalar(con, "SELECT head FROM sync_state WHERE name = ?", [name])
        return None if head is None else str(head)

    def cid_at(self, key_or_path: str, when: datetime, name: str | None = None) -> str | None:
        """The data CID the dataset had at ``when``, per the synced history; None if none.

        ``key_or_path`` is a dataset key, or, when no version of any dataset has that key,
        a path in the campaign tree. A naive ``when`` is taken as UTC. Without ``name`` all
        names are searched; if they disagree a :class:`CacheError` says which names to pick.
        CIDs are compared by content (multihash and codec): names that hold one content under two spellings
        (``Qm…`` and ``bafy…``) agree, and the first name's spelling is returned.

        >>> import tempfile, pathlib
        >>> from datetime import datetime, timezone
        >>> Cache(pathlib.Path(tempfile.mkdtemp()) / "c.duckdb").cid_at("x", datetime(2024, 9, 1)) is None
        True
        """
        if when.tzinfo is None or when.utcoffset() is None:
            when = when.replace(tzinfo=timezone.utc)
        params: dict[str, Any] = {"x": key_or_path, "ts": when, "name": name}
        with self._connection() as con:
            # two simple queries: ~10x faster than one query with `key = $x OR path = $x`
            by_key = scalar(
                con,
                "SELECT EXISTS (SELECT 1 FROM item_versions WHERE key = $x AND ($name IS NULL OR name = $name))",
                {"x": key_or_path, "name": name},
            )
            column = "key" if by_key else "path"
            rows = con.execute(
                f"""SELECT DISTINCT name, data_cid FROM item_versions
                WHERE {column} = $x AND ($name IS NULL OR name = $name)
                  AND valid_from <= $ts AND (valid_to IS NULL OR $ts < valid_to)
                ORDER BY name, data_cid""",
                params,
            ).fetchall()
        cids = {r[1] for r in rows}
        if len(cids) > 1:
            from halodb.ipld.spelling import same_content

            first = rows[0][1]
            if all(same_content(first, other) for other in cids):
                return str(first)
            found = ", ".join(f"{r[0]}: {r[1]}" for r in rows)
            raise CacheError(
                f"{key_or_path!r} had different data CIDs at {when.isoformat()} ({found}); pass a name",
                key=key_or_path,
                names=sorted({r[0] for r in rows}),
            )
        return None if not rows else rows[0][1]


def _check_respellings(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Mark the rows a cache older than migration 004 holds unchecked (one transaction)."""
    if not scalar(con, "SELECT EXISTS (SELECT 1 FROM item_versions WHERE respelled IS NULL)"):
        return
    from halodb.cache.respellings import mark_respellings  # Arrow: only for an old cache

    try:
        con.begin()
        mark_respellings(con)
        con.commit()
    except DUCKDB.caught as exc:
        rollback_quietly(con)
        raise DUCKDB.translate(exc, f"cache {path}: marking respelled CIDs failed: {exc}", path=path) from exc


def _check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise :class:`QueryError` unless ``query`` is exactly one statement of :data:`QUERY_STATEMENTS`."""
    try:
        statements = con.extract_statements(query)
    except ValueError as exc:  # a statement the duckdb module cannot name (UPDATE EXTENSIONS)
        raise QueryError(f"not a query: {exc}", sql=query) from None
    if not statements:
        raise QueryError("no SQL statement given", sql=query)
    if len(statements) > 1:
        raise QueryError(f"{len(statements)} statements given; halodb sql runs one at a time", sql=query)
    kind = statements[0].type
    if kind not in QUERY_STATEMENTS:
        raise QueryError(
            f"{kind.name} statements are not run: the cache is read-only for SQL (it holds what syncs derived "
            "from the verified index); halodb sql runs one SELECT, EXPLAIN or PRAGMA", sql=query)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    raise CacheError(f"expected a timestamp in the cache, found {value!r}")
