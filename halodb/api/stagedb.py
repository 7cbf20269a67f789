"""The local head and the stage on disk: ``HOME/stage.sqlite3``, one SQLite database.

A stage of a million items is a million rows here, not a dict in memory and a JSON file
rewritten whole on every ``add``: an add writes its rows a batch at a time inside one
transaction, and a commit reads them back in key order (and in path, data and DOI
order, sorted by SQLite), so neither holds the stage in memory.

Layout::

    meta      (name TEXT PRIMARY KEY, value TEXT)     'head' -> the local head's CID,
                                                      'pack' -> '<generation>:<size>', 'adds'
    upserts   (key TEXT PRIMARY KEY, item BLOB NOT NULL, data TEXT, path TEXT, doi TEXT,
               added INTEGER, source TEXT, at INTEGER, size INTEGER)
    inline    (key TEXT PRIMARY KEY, bytes BLOB NOT NULL)     (read only: see below)
    removals  (key TEXT PRIMARY KEY)

The pack, ``HOME/stage.<generation>.pack``: the item block's bytes of each staged upsert whose
item an index of format 3 holds inline (at most ``INLINE_MAX`` bytes), at ``at``, ``size``
bytes long: ``add`` stages them here instead of writing the block to the block store, and
the commit reads them with their upserts (not the block store at random), checked against
``item`` when read. An upsert with ``at`` NULL has its block in the block store. A plain
file, appended to, not a table: the bytes are most of a stage (750 MB of 1 GB for a
million items), and a table of them cost ``add`` a B-tree and its write-ahead log, and the
commit seconds to read them and to delete them after. The pack is written and fsync'ed
before the transaction that records its new size (``meta`` 'pack') commits; a writer cuts
it back to that size first (the tail an add killed before its commit left). A new stage
(``replace``: a commit, ``reset``) gets a pack of a new generation and the old one is
deleted after the transaction; packs of no committed generation (a writer killed in
between) are deleted by the next writer. A reader opens the pack its snapshot names; if a
writer deleted it first, the reader takes a new snapshot (:meth:`StageDB._snapshots`); one
that has it open reads it whole, deleted or not.

``inline``: where the version before the pack kept those bytes; still read (an upsert with
a row there holds those bytes) and emptied as its keys are staged again. A stage database
from before it gets it (empty) with its next write.

``added`` and ``source``: which add (and batch of it) staged an upsert, and what named its
item there (``<stdin>:17``, a file): how an add finds a key given twice across its batches
(:class:`StageWriter`); NULL for upserts staged otherwise. A stage database from before
these columns gets them with its next add.

Atomicity: every change of the head or the stage is one SQLite transaction (write-ahead
log, ``synchronous=FULL``): a writer killed mid-way (``kill -9``) leaves the last
committed state, which SQLite recovers from its log on the next open; readers read the
last commit, never a part of one. Writers also hold the home's lock
(:meth:`halodb.api.home.Home.locked`), so two never interleave.

Keys sort by SQLite's ``BINARY`` collation, byte order of their UTF-8, which is code
point order: the order of Python's ``sorted`` and of the prolly trees.

>>> import tempfile, pathlib
>>> from halodb.ipld import CID
>>> db = StageDB(pathlib.Path(tempfile.mkdtemp()))
>>> db.create()
>>> cid = CID.for_bytes(b"x")
>>> db.replace(None, Stage(upserts={"c/b": Entry(cid, path="p/b"), "c/a": Entry(cid)}, removals={"c/z"}))
>>> [k for k, _ in db.upserts()], db.counts(), db.head()
(['c/a', 'c/b'], (2, 1), None)
>>> db.set_head(cid)
>>> db.head() == cid, list(db.paths())
(True, [('p/b', 'c/b')])
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from halodb.blockstore.sqlite import read_only_connection
from halodb.errors import InvalidItemError, RegistryError, VerificationError
from halodb.index.model import Entry, EntryBatch, EntryBatches
from halodb.ipld import CID
from halodb.util.native import native

__all__ = ["DB_NAME", "Stage", "StageDB", "StageWriter"]

#: the database file in the home
DB_NAME = "stage.sqlite3"
#: seconds a connection waits for another's write (writers hold the home's lock anyway)
BUSY_TIMEOUT = 120.0
#: rows fetched from SQLite at a time
FETCH = 4096
#: keys per ``IN (…)`` query (SQLite allows 32,766 parameters)
_IN_CHUNK = 10_000
#: SQLite's page cache per connection (KiB); sorts larger than it spill to temporary files
CACHE_KIB = 32 << 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS upserts (key TEXT PRIMARY KEY, item BLOB NOT NULL, data TEXT, path TEXT, doi TEXT,
    added INTEGER, source TEXT, at INTEGER, size INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inline (key TEXT PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS removals (key TEXT PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass
class Stage:
    """Changes staged for the next commit, in memory (:meth:`StageDB.stage`)."""

    upserts: dict[str, Entry] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals)


def _entry(row: tuple[Any, ...], pack: int | None) -> tuple[str, Entry]:
    key, _, data, path, doi, _, _, _ = row
    cid, inline = _item_bytes(row, pack)
    return key, Entry(cid, data, path, doi, inline=inline)


def _item_bytes(row: tuple[Any, ...], pack: int | None) -> tuple[CID, bytes | None]:
    """An upsert row's item CID and the bytes the stage holds of it (None: none), checked."""
    key, item, _, _, _, inline, at, size = row
    cid = CID.parse(item)  # (the binary CID: no multibase to decode)
    if at is not None:
        inline = os.pread(pack, size, at) if pack is not None else b""
    if inline is not None and not cid.verify(inline):  # a damaged row: never a wrong item in a version
        raise VerificationError(f"the stage database holds damaged bytes for {key!r} (they do not hash to {cid}); "
                                "add that item again, or `halodb reset`", cid=cid, source=DB_NAME)
    return cid, inline


def _batch(rows: list[tuple[Any, ...]], pack: int | None) -> EntryBatch:
    """Upsert rows as an :class:`EntryBatch`, their bytes read and checked (in compiled code,
    ``halodb_native.staged_bytes``, up to a row it leaves to :func:`_item_bytes`)."""
    keys, items, data, paths, dois, inline, at, size = zip(*rows)
    read = getattr(native(), "staged_bytes", None)
    held, done = read(pack, items, inline, at, size) if read is not None else ([], 0)
    held.extend(_item_bytes(row, pack)[1] for row in rows[done:])
    return EntryBatch(keys, items, data, paths, dois, held)


class _UpsertBatches:
    """:meth:`StageDB.upsert_batches`: read when :meth:`batches` is first iterated (so by a
    forked child in its own connection)."""

    def __init__(self, db: StageDB, start: str | None) -> None:
        self.db, self.start = db, start

    def batches(self) -> Iterator[EntryBatch]:
        where, params = ("", ()) if self.start is None else (" WHERE u.key >= ?", (self.start,))
        for con, pack in self.db._snapshots():
            columns = self.db._columns(con, joined=self.db._holds_inline_rows(con))
            cur = con.execute(f"SELECT {columns}{where} ORDER BY u.key", params)
            while rows := cur.fetchmany(FETCH):
                yield _batch(rows, pack)
            return
        raise self.db._changing()


class StageDB:
    """The head and stage database of the home ``home`` (see the module)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / DB_NAME
        self._has_inline = self._has_pack = self._columns_seen = False

    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        if not create and not self.path.exists():
            raise RegistryError(f"the stage database {self.path} is missing (state.json says it holds the "
                                "head and the stage)", home=self.home)
        if self.path.exists() and not os.access(self.home, os.W_OK):  # a read-only home: read as it is
            return read_only_connection(self.path, self._error)
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            con.execute("PRAGMA temp_store=FILE")
            # (Debian builds SQLite with secure_delete on: every freed page overwritten with zeros,
            # which made emptying a stage of a million rows after a commit 0.9 s instead of 0.25;
            # a stage holds items on their way to being published, nothing to erase)
            con.execute("PRAGMA secure_delete=OFF")
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the stage database {self.path}: {exc}", home=self.home) from None
        return con

    def _error(self, exc: sqlite3.Error) -> RegistryError:
        return RegistryError(f"cannot read or write the stage database {self.path}: {exc}", home=self.home)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection reading one snapshot (a read transaction) for the block."""
        try:
            with closing(self._connect()) as con:
                con.execute("BEGIN")
                try:
                    yield con
                finally:
                    con.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    @contextmanager
    def _write(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends without an error, else rolled back
        (and so, by SQLite, when the process is killed before the commit)."""
        try:
            with closing(self._connect(create=create)) as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    con.execute(_INLINE_TABLE)  # (a stage database from before it)
                    yield con
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def create(self) -> None:
        """Create the database (idempotent); the head stays what it was (none when new)."""
        with self._write(create=True) as con:
            _create(con)

    # -- reading -----------------------------------------------------------------------------
    def head(self) -> CID | None:
        with self._read() as con:
            row = con.execute("SELECT value FROM meta WHERE name = 'head'").fetchone()
        return CID.parse(row[0]) if row and row[0] else None

    def counts(self) -> tuple[int, int]:
        """How many upserts and removals are staged."""
        with self._read() as con:
            upserts = con.execute("SELECT count(*) FROM upserts").fetchone()[0]
            removals = con.execute("SELECT count(*) FROM removals").fetchone()[0]
        return int(upserts), int(removals)

    def stage(self) -> Stage:
        """The whole stage in memory (for small stages: ``scan``, a small commit)."""
        for con, pack in self._snapshots():
            upserts = dict(_entry(row, pack) for row in con.execute(f"SELECT {self._columns(con)}"))
            removals = {key for (key,) in con.execute("SELECT key FROM removals")}
            return Stage(upserts, removals)
        raise self._changing()

    def _snapshots(self) -> Iterator[tuple[sqlite3.Connection, int | None]]:
        """A read snapshot with its pack file open (None: it has none); again, up to a few
        times, when the pack it names was replaced before it could be opened (a commit that
        emptied the stage meanwhile). The caller returns after the first it reads whole."""
        for _ in range(_SNAPSHOT_TRIES):
            with self._read() as con:
                state = _pack_state(con)
                try:
                    pack = None if state is None else os.open(self._pack_path(state[0]), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise RegistryError(f"cannot read the stage's item bytes {self._pack_path(state[0])}: "  # type: ignore[index]
                                        f"{exc.strerror or exc}", home=self.home) from None
                try:
                    yield con, pack
                finally:
                    if pack is not None:
                        os.close(pack)

    def _changing(self) -> RegistryError:
        return RegistryError(f"the stage of {self.home} changed {_SNAPSHOT_TRIES} times while it was read; "
                             "try again", home=self.home)

    def _pack_path(self, generation: str) -> Path:
        return self.home / f"{_PACK_PREFIX}{generation}{_PACK_SUFFIX}"

    def _entries(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[str, Entry]]:
        for con, pack in self._snapshots():
            cur = con.execute(sql, params)
            while rows := cur.fetchmany(FETCH):
                for row in rows:
                    yield _entry(row, pack)
            return
        raise self._changing()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        with self._read() as con:
            cur = con.execute(sql, params)
            while rows := cur.fetchmany(FETCH):
                yield from rows

    def upserts(self, start: str | None = None) -> Iterator[tuple[str, Entry]]:
        """The staged upserts in key order (from key ``start`` on), read a few thousand at a time."""
        with self._read() as con:
            columns = self._columns(con)
        if start is None:
            return self._entries(f"SELECT {columns} ORDER BY u.key")
        return self._entries(f"SELECT {columns} WHERE u.key >= ? ORDER BY u.key", (start,))

    def upsert_batches(self, start: str | None = None) -> EntryBatches:
        """:meth:`upserts` as :class:`EntryBatch` es of a few thousand, their item bytes read
        and checked a batch at a time: what a large commit builds from."""
        return _UpsertBatches(self, start)

    def _columns(self, con: sqlite3.Connection, *, joined: bool = True) -> str:
        """What to select (and from where) for the upsert rows :func:`_entry` reads: each with
        its staged bytes — in the pack (``at``, ``size``), or in the ``inline`` table of a
        stage written before the pack — or NULLs (a stage database from before either).
        ``joined`` False: that table is known to be empty (in this snapshot), so not read."""
        self._schema(con)
        held = "i.bytes" if self._has_inline and joined else "NULL"
        packed = "u.at, u.size" if self._has_pack else "NULL, NULL"
        join = " LEFT JOIN inline i ON i.key = u.key" if self._has_inline and joined else ""
        return f"u.key, u.item, u.data, u.path, u.doi, {held}, {packed} FROM upserts u{join}"

    def _schema(self, con: sqlite3.Connection) -> None:
        """Which of the ``inline`` table and the pack's columns the database has."""
        if not self._columns_seen:
            self._has_inline = con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inline'").fetchone() is not None
            self._has_pack = "at" in {row[1] for row in con.execute("PRAGMA table_info(upserts)")}
            self._columns_seen = self._has_pack  # (a database never loses them; until then look again)

    def _holds_inline_rows(self, con: sqlite3.Connection) -> bool:
        """Whether the ``inline`` table (of a stage written before the pack) holds a row, in
        the snapshot of ``con``."""
        self._schema(con)
        return self._has_inline and con.execute("SELECT 1 FROM inline LIMIT 1").fetchone() is not None

    def key_at(self, n: int) -> str | None:
        """The ``n``-th staged upsert's key in key order (from 0); None past the last."""
        with self._read() as con:
            row = con.execute("SELECT key FROM upserts ORDER BY key LIMIT 1 OFFSET ?", (n,)).fetchone()
        return None if row is None else str(row[0])

    def staged_keys(self, keys: Iterable[str], *, removals: bool = False) -> set[str]:
        """Which of ``keys`` are staged upserts (``removals``: staged removals); looked up,
        not read whole.

        >>> import tempfile, pathlib
        >>> db = StageDB(pathlib.Path(tempfile.mkdtemp())); db.create()
        >>> db.replace(None, Stage(upserts={"c/a": Entry(CID.for_bytes(b"x"))}, removals={"c/z"}))
        >>> db.staged_keys(["c/a", "c/b", "c/z"]), db.staged_keys(["c/a", "c/z"], removals=True)
        ({'c/a'}, {'c/z'})
        """
        wanted = list(dict.fromkeys(keys))
        table = "removals" if removals else "upserts"
        found: set[str] = set()
        with self._read() as con:
            for start in range(0, len(wanted), _IN_CHUNK):
                part = wanted[start:start + _IN_CHUNK]
                found.update(k for (k,) in con.execute(
                    f"SELECT key FROM {table} WHERE key IN ({','.join('?' * len(part))})", part))
        return found

    def removal_keys(self) -> Iterator[str]:
        """The staged removals in key order."""
        return (r[0] for r in self._rows("SELECT key FROM removals ORDER BY key"))

    def paths(self) -> Iterator[tuple[str, str]]:
        """``(path, key)`` of the staged upserts that have a path, in path order (then key)."""
        return self._rows("SELECT path, key FROM upserts WHERE path IS NOT NULL ORDER BY path, key")

    def data_keys(self) -> Iterator[str]:
        """``"<data cid>/<key>"`` of the staged upserts that have a data CID, in order."""
        return (r[0] for r in self._rows(
            "SELECT data || '/' || key AS k FROM upserts WHERE data IS NOT NULL ORDER BY k"))

    def dois(self) -> Iterator[tuple[str, str]]:
        """``(doi, key)`` of the staged upserts that have a DOI, in DOI order (then key)."""
        return self._rows("SELECT doi, key FROM upserts WHERE doi IS NOT NULL ORDER BY doi, key")

    # -- writing -----------------------------------------------------------------------------
    def replace(self, head: CID | None, stage: Stage) -> None:
        """Record ``head`` and ``stage`` (the whole stage) in one transaction. The staged bytes
        go into a pack file of a new generation, named by the transaction; the old one is
        deleted after it (by the next writer, if this one is killed first)."""
        with self._write(create=True) as con:
            _create(con)
            _add_columns(con)
            old = _pack_state(con)
            _set_head(con, head)
            con.execute("DELETE FROM upserts")
            con.execute("DELETE FROM inline")
            con.execute("DELETE FROM removals")
            upserts = list(stage.upserts.items())
            con.execute("DELETE FROM meta WHERE name = 'pack'")
            with _PackWriter(self.home, con, fresh=True) as pack:
                places = iter(pack.append([e.inline for _, e in upserts if e.inline is not None]))
                con.executemany(
                    "INSERT INTO upserts (key, item, data, path, doi, at, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((k, e.item.buffer, e.data, e.path, e.doi, *(next(places) if e.inline is not None else (None, None)))
                     for k, e in upserts))
            con.executemany("INSERT INTO removals VALUES (?)", ((k,) for k in stage.removals))
        if old is not None:  # (the new stage's pack, if any, has a generation of its own)
            self._pack_path(old[0]).unlink(missing_ok=True)

    def unstage(self, unstaged: Iterable[str], removed: Iterable[str]) -> None:
        """In one transaction: forget the staged upserts of ``unstaged``, and stage the removal
        of ``removed`` (their upserts forgotten too); the rest of the stage stays."""
        removed = list(removed)
        with self._write() as con:
            gone = [(k,) for k in [*unstaged, *removed]]
            con.executemany("DELETE FROM upserts WHERE key = ?", gone)
            con.executemany("DELETE FROM inline WHERE key = ?", gone)
            con.executemany("INSERT INTO removals VALUES (?) ON CONFLICT(key) DO NOTHING", ((k,) for k in removed))

    def set_head(self, head: CID | None) -> None:
        """Record ``head``; the stage stays."""
        with self._write() as con:
            _set_head(con, head)

    @contextmanager
    def writer(self) -> Iterator[StageWriter]:
        """A transaction that adds to the stage (:meth:`StageWriter.add`), committed when the
        block ends without an error; on an error (or a kill) the stage stays as it was."""
        with self._write() as con, _PackWriter(self.home, con) as pack:
            yield StageWriter(con, pack)


#: the pack files of staged item bytes: ``stage.<generation>.pack`` (see the module)
_PACK_PREFIX, _PACK_SUFFIX = "stage.", ".pack"
#: read snapshots tried before a reader gives up on a stage that keeps changing under it
_SNAPSHOT_TRIES = 5
#: the bits of ``upserts.added`` that number an add's batches (:class:`StageWriter`)
_BATCH_BITS = 32
#: the size of a binary CIDv1 (sha2-256) as HaloDB writes an item's
_CID_SIZE = 36
_UPSERT_SET = ("ON CONFLICT(key) DO UPDATE SET item = excluded.item, data = excluded.data, path = excluded.path, "
               "doi = excluded.doi, added = excluded.added, source = excluded.source, at = excluded.at, "
               "size = excluded.size "
               f"WHERE upserts.added >> {_BATCH_BITS} IS NOT excluded.added >> {_BATCH_BITS}")
#: an add's upsert: a key an earlier batch of the same add wrote is left as it is (see StageWriter)
_UPSERT_ROW = ("INSERT INTO upserts (key, item, data, path, doi, added, source, at, size) "
               f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {_UPSERT_SET}")
#: the same for a batch at once: its text columns as a JSON array of rows, its CIDs as one blob
_UPSERT_BATCH = (
    "INSERT INTO upserts (key, item, data, path, doi, added, source, at, size) "
    f"SELECT r.value ->> 0, substr(:items, r.key * {_CID_SIZE} + 1, {_CID_SIZE}), r.value ->> 1, r.value ->> 2, "
    f"r.value ->> 3, :batch, r.value ->> 4, r.value ->> 5, r.value ->> 6 FROM json_each(:rows) r WHERE true "
    f"{_UPSERT_SET}")
_INLINE_TABLE = "CREATE TABLE IF NOT EXISTS inline (key TEXT PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID"


def _create(con: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)


def _set_head(con: sqlite3.Connection, head: CID | None) -> None:
    con.execute("INSERT INTO meta VALUES ('head', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (str(head) if head else None,))


def _pack_state(con: sqlite3.Connection) -> tuple[str, int] | None:
    """The committed pack file's ``(generation, size)``; None: the stage has none."""
    row = con.execute("SELECT value FROM meta WHERE name = 'pack'").fetchone()
    if row is None or not row[0]:
        return None
    generation, _, size = str(row[0]).partition(":")
    return generation, int(size)


class _PackWriter:
    """Appends staged item bytes to the stage's pack file within a write transaction of the
    stage database (see the module): the file is cut back to its committed size first (the
    tail a killed writer left), written, fsync'ed and its new size recorded in ``meta``
    before the transaction commits. ``fresh``: a pack of a new generation (``replace``)."""

    def __init__(self, home: Path, con: sqlite3.Connection, *, fresh: bool = False) -> None:
        self.home, self.con = home, con
        committed = _pack_state(con)
        if committed is not None and not fresh:
            self.generation, self.size = committed
        else:
            self.generation, self.size = secrets.token_hex(6), 0
        self.fd: int | None = None
        if not fresh:  # packs of no committed generation: left by writers killed before they cleaned up
            for stray in home.glob(f"{_PACK_PREFIX}*{_PACK_SUFFIX}"):
                if committed is None or stray.name != f"{_PACK_PREFIX}{committed[0]}{_PACK_SUFFIX}":
                    stray.unlink(missing_ok=True)

    def __enter__(self) -> _PackWriter:
        return self

    def append(self, blobs: list[bytes]) -> list[tuple[int, int]]:
        """Write ``blobs`` at the end of the pack; their ``(offset, size)``."""
        if not blobs:
            return []
        if self.fd is None:
            path = self.home / f"{_PACK_PREFIX}{self.generation}{_PACK_SUFFIX}"
            try:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                os.ftruncate(self.fd, self.size)
            except OSError as exc:
                raise RegistryError(f"cannot write the stage's item bytes {path}: {exc.strerror or exc}",
                                    home=self.home) from None
        places, at = [], self.size
        for blob in blobs:
            places.append((at, len(blob)))
            at += len(blob)
        data = memoryview(b"".join(blobs))
        while data:
            written = os.pwrite(self.fd, data, self.size)
            data = data[written:]
            self.size += written
        return places

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if kind is None:
                os.fsync(fd)  # durable before the stage that names its bytes commits
                self.con.execute("INSERT INTO meta VALUES ('pack', ?) ON CONFLICT(name) DO UPDATE SET value = "
                                 "excluded.value", (f"{self.generation}:{self.size}",))
        finally:
            os.close(fd)


class StageWriter:
    """Adds batches of validated items to the stage inside one transaction, and checks that
    no key is given twice with different items across the batches of one add.

    Each row an add writes carries its add's number and batch (``added``: the add's number,
    counted in ``meta``, times 2**32 plus the batch's) and what named its item (``source``):
    a key an earlier batch of the same add wrote is not overwritten (the upsert's ``WHERE``),
    which SQLite's count of changed rows reveals — only then are the batch's keys looked up,
    to tell the same item given twice (staged once) from a clash (an error naming both
    sources). Nothing of the add is held in memory beyond its batch, and a batch costs one
    write per row."""

    def __init__(self, con: sqlite3.Connection, pack: _PackWriter) -> None:
        self.con, self.pack = con, pack
        _add_columns(con)
        self.legacy = con.execute("SELECT 1 FROM inline LIMIT 1").fetchone() is not None
        con.execute("INSERT INTO meta VALUES ('adds', '1') ON CONFLICT(name) DO UPDATE SET value = value + 1")
        self.first = int(con.execute("SELECT value FROM meta WHERE name = 'adds'").fetchone()[0]) << _BATCH_BITS
        self.batch = self.first
        self.removals = con.execute("SELECT 1 FROM removals LIMIT 1").fetchone() is not None

    def add(self, upserts: dict[str, Entry], sources: dict[str, str]) -> list[str]:
        """Stage ``upserts`` (key -> entry; ``sources`` names each key's item in errors);
        returns their keys but those an earlier batch of this add gave with the same item.
        :class:`InvalidItemError` when an earlier batch gave a key with another item."""
        con = self.con
        self.batch += 1
        before = con.total_changes
        places = iter(self.pack.append([e.inline for e in upserts.values() if e.inline is not None]))
        rows = [(k, e, *(next(places) if e.inline is not None else (None, None))) for k, e in upserts.items()]
        items = b"".join([e.item.buffer for e in upserts.values()])
        if len(items) == _CID_SIZE * len(upserts):  # (every item's CID is HaloDB's: v1, sha2-256)
            # the batch in one statement (its columns as one JSON text and one blob): SQLite
            # works through it without the GIL, where executemany takes it back for each row
            con.execute(_UPSERT_BATCH, {
                "rows": orjson.dumps([[k, e.data, e.path, e.doi, sources[k], at, size] for k, e, at, size in rows]),
                "items": items, "batch": self.batch})
        else:
            con.executemany(_UPSERT_ROW, ((k, e.item.buffer, e.data, e.path, e.doi, self.batch, sources[k], at, size)
                                          for k, e, at, size in rows))
        again: set[str] = set()
        if con.total_changes - before < len(upserts):  # a key an earlier batch of this add wrote
            again = self._given_before(upserts, sources)
        fresh = [k for k in upserts if k not in again]
        if self.legacy:  # (bytes an older HaloDB staged in the inline table: these keys' are in the pack now)
            con.executemany("DELETE FROM inline WHERE key = ?", ((k,) for k in fresh))
        if self.removals:
            con.executemany("DELETE FROM removals WHERE key = ?", ((k,) for k in fresh))
        return fresh

    def _given_before(self, upserts: dict[str, Entry], sources: dict[str, str]) -> set[str]:
        """The keys of ``upserts`` an earlier batch of this add gave with the same item;
        :class:`InvalidItemError` for the first one it gave with another item."""
        keys = list(upserts)
        again: set[str] = set()
        for start in range(0, len(keys), _IN_CHUNK):
            part = keys[start:start + _IN_CHUNK]
            for key, item, first in self.con.execute(  # (rows of an earlier batch of this add)
                    "SELECT key, item, source FROM upserts WHERE added >= ? AND added < ? "
                    f"AND key IN ({','.join('?' * len(part))}) ORDER BY key", [self.first, self.batch, *part]):
                if item != upserts[key].item.buffer:
                    source = sources[key]
                    detail = (f"dataset key {key!r} is also given by {first}, with another item; which one to "
                              "stage would be arbitrary, so nothing is staged")
                    raise InvalidItemError(f"{source}: {detail}", source=source, detail=detail, field="id")
                again.add(key)
        return again


def _add_columns(con: sqlite3.Connection) -> None:
    """Give ``upserts`` of a stage database from before them the columns an add writes."""
    have = {row[1] for row in con.execute("PRAGMA table_info(upserts)")}
    for column in ("added INTEGER", "source TEXT", "at INTEGER", "size INTEGER"):
        if column.split()[0] not in have:
            con.execute(f"ALTER TABLE upserts ADD COLUMN {column}")
