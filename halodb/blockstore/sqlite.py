"""The embedded default block store: every block a row of one SQLite database.

A million item-sized blocks as files took 4.4 GB in 1.05M files (a 1 kB block fills a
4 kB file-system block); as rows of one database they take about 1.1x their bytes in three
files (``benchmarks/bench_blockstore.py``). SQLite (the standard library's ``sqlite3``)
brings what a pack format would have to rebuild by hand: atomic commits, a write-ahead log
that survives ``kill -9`` at any point, readers that never block and are never blocked,
writers in several processes at once, and space freed and reused by deletes.

Layout of ``<root>``::

    blocks.sqlite3        blocks (id INTEGER PRIMARY KEY, cid BLOB UNIQUE, data BLOB)
                          quarantine (cid, data, at): damaged copies, kept as evidence
    blocks.sqlite3-wal    the write-ahead log (committed writes not yet checkpointed)
    blocks.sqlite3-shm    the log's shared-memory index (rebuilt from the log if lost)

* Pages are 16 kB, so ~15 item blocks share a page (4 kB pages hold three 1.1 kB rows and
  waste a quarter); rows are appended in ``id`` order, so data pages fill completely; the
  key is the CID's binary form, in its own index.
* ``auto_vacuum=INCREMENTAL``: after a batch of deletes (``gc``) the free pages are moved
  to the end of the file and cut off, so the file shrinks.

Writes: every ``put``/``put_many`` is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``). A
block already stored is compared with the bytes put, in SQLite (an upsert that updates only
when they differ): a damaged copy is replaced, and a trigger copies the damaged bytes into
``quarantine`` first. A batch goes in as plain inserts first, the upsert only when one of
its blocks was stored already (an upsert runs with a statement journal: ~64 kB of copied
pages a block). Writers in other processes wait for each other's commits: they take
turns by a lock on ``.write.lock`` in the root, asked for every millisecond or so, so the
next one begins as soon as one ends (SQLite's own busy handler, the fallback behind it
with :data:`BUSY_TIMEOUT`, sleeps up to 100 ms between tries: with three processes writing
one commit's trees that was seconds of sleep); readers read the last commit, never a
partial one.

Durability: commits run with ``synchronous=NORMAL``, so a committed block survives the
process being killed (it is in the log, which SQLite replays); :meth:`SqliteStore.flush`
fsyncs the log and the database file, so after it returns blocks also survive a power loss.
A log torn by a crash ends at its last whole commit: SQLite checksums every frame.

Directory stores (the layout before, :mod:`~halodb.blockstore.directory`): a root that
holds shard folders is migrated when the store is opened — the blocks (verified; damaged
ones go to ``quarantine``) are copied in batches, each batch committed and fsync'ed before
its files are removed, so a crash mid-way loses nothing and the next open goes on. Until
then, and while another process migrates, blocks are read from the files first and the
database second (a file is removed only once its row is committed, so no block is ever
missed between the two).

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = SqliteStore(Path(tmp))
...     cid = store.put(b"hello", codec=0x55)
...     store.flush()
...     print(store.get(cid), sorted(p.name for p in Path(tmp).iterdir()))
...     store.close()
b'hello' ['.write.lock', 'blocks.sqlite3', 'blocks.sqlite3-shm', 'blocks.sqlite3-wal']
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from halodb.blockstore.base import Block, BlockStore
from halodb.blockstore.directory import DirectoryStore, block_name, cid_from_name
from halodb.errors import BlockStoreError, VerificationError
from halodb.ipld import CID

__all__ = ["BUSY_TIMEOUT", "DB_NAME", "SqliteStore", "read_only_connection"]

log = logging.getLogger(__name__)

#: the database file in the store's root
DB_NAME = "blocks.sqlite3"
#: seconds a writer waits for another process's commit before it fails
BUSY_TIMEOUT = 120.0
PAGE_SIZE = 16384
#: the lock file a migration from a directory store holds
_MIGRATE_LOCK = ".migrate.lock"
#: the file whose lock writers of other processes take turns by (see the module)
_WRITE_LOCK = ".write.lock"
#: CIDs per ``IN (…)`` query (SQLite allows 32,766 parameters)
_CHUNK = 500
#: blocks of a directory store migrated per commit
_MIGRATE_BATCH = 20_000
_UNLINK_THREADS = 8
#: bytes the write-ahead log is cut back to once checkpointed
_LOG_LIMIT = 64 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY, cid BLOB NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, cid BLOB NOT NULL, data BLOB NOT NULL,
                                       at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS quarantine_cid ON quarantine (cid);
CREATE TABLE IF NOT EXISTS flushed (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS keep_damaged_copy BEFORE UPDATE OF data ON blocks
    WHEN old.data IS NOT new.data
BEGIN
    INSERT INTO quarantine (cid, data, at) VALUES (old.cid, old.data, julianday('now'));
END;
"""
#: store a block; a stored copy with other bytes (damaged) is replaced (the trigger keeps it)
_UPSERT = ("INSERT INTO blocks (cid, data) VALUES (?, ?)"
           " ON CONFLICT (cid) DO UPDATE SET data = excluded.data WHERE data IS NOT excluded.data")
#: store a block that is not stored yet. Unlike :data:`_UPSERT` SQLite runs it without a
#: statement journal: an upsert may abort half-way through writing more than one row, so
#: each execution first copies every page it changes (the table's last leaf, the cid index's
#: page, their parents, the pointer map: ~64 kB) into a temporary file, which was 2.3 GB of
#: writes for a commit of 1,000,000 items (1.1 GB of blocks)
_INSERT_NEW = "INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)"


class SqliteStore(BlockStore):
    """Blocks as rows of ``<root>/blocks.sqlite3`` (``root`` created if missing); a directory
    store found in ``root`` is migrated. See the module docstring.

    ``create=False`` opens a database that exists and nothing else (a
    :class:`~halodb.errors.BlockStoreError` when there is none): a reader that should neither
    create a store nor wait for a writer's lock to check its schema. With ``lazy=True`` a
    database (and folder) that does not exist yet is created by the first write, not here:
    a new home's block cache, whose first read does not wait for its creation (~10-40 ms of
    fsyncs), and the store of a home opened to read, which a command run on a mistyped
    ``--home`` does not leave behind; until then every read finds nothing.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     store = SqliteStore(Path(tmp) / "blocks")
    ...     cid = store.put(b"x", codec=0x55)
    ...     print(list(store.iter_cids()) == [cid])
    ...     store.close()
    True
    """

    supports_deletes = True
    supports_listing = True
    supports_quarantine = True
    takes_buffers = True  # (sqlite3 binds any buffer as a BLOB)

    def __init__(self, root: Path | str, *, migrate: bool = True, create: bool = True, lazy: bool = False) -> None:
        super().__init__()
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        #: a lazy store's database not created yet: reads find nothing, the first write creates it
        self._absent = create and lazy and not self.db_path.exists() and not _has_shards(self.root)
        if create and not self._absent:
            self._make_root()
        elif not create and not self.db_path.is_file():
            raise BlockStoreError(f"no block store at {self.db_path}", path=self.db_path)
        self._db = os.fspath(self.db_path)
        #: the database can be read but its folder not written (a read-only mount: a campaign's
        #: shared home): opened read-only, without the ``-shm`` file SQLite would create
        self.read_only = not self._absent and self.db_path.is_file() and not os.access(self.root, os.W_OK)
        self._lock = threading.Lock()  # guards the pools
        self._write_lock = threading.Lock()  # one writing transaction at a time in this process
        self._idle: list[sqlite3.Connection] = []
        self._writer: sqlite3.Connection | None = None
        self._dirty = False  # committed since the last flush
        self._pid = os.getpid()
        self._turns: int | None = None  # this process's descriptor of the root's .write.lock
        self._empty: sqlite3.Connection | None = None  # (an empty database in memory, read meanwhile)
        self._create_lock = threading.Lock()
        self._empty_lock = threading.RLock()
        if create and not self._absent and not self.read_only:
            self._create()
        #: the directory store in the same root, while it holds blocks (read first)
        self._legacy: DirectoryStore | None = DirectoryStore(self.root) if _has_shards(self.root) else None
        if self._legacy is not None and migrate and not self.read_only:
            self.migrate()

    def describe(self) -> str:
        return f"block store {self.db_path}"

    @property
    def reads_directory_store(self) -> bool:
        """Whether blocks are still read from the files of a directory store in the root."""
        return self._legacy is not None

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return read_only_connection(self.db_path, lambda exc: self._error("open", exc))
        try:
            db = sqlite3.connect(self._db, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={_LOG_LIMIT}")  # a big batch's log is cut back
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        return db

    def _create(self) -> None:
        """Create the database (16 kB pages, incremental vacuum, WAL) unless it exists."""
        db = self._connect()
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only take effect on a new database
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            db.executescript(_SCHEMA)  # commits
        except sqlite3.Error as exc:
            db.close()
            raise self._error("open", exc) from exc
        self._idle.append(db)

    def _fork_check(self) -> None:
        if os.getpid() != self._pid:  # a forked child must not use its parent's connections
            self._pid = os.getpid()
            if self._turns is not None:  # (the child holds no lock on it: closing drops none)
                os.close(self._turns)
            self._idle, self._writer, self._empty, self._turns = [], None, None, None
            self._lock, self._write_lock, self._create_lock = threading.Lock(), threading.Lock(), threading.Lock()
            self._empty_lock = threading.RLock()

    def _make_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlockStoreError(f"cannot create block store directory {self.root}: {exc}", path=self.root) from exc

    def _ensure(self, *, wait: bool = True) -> bool:
        """Create the database of a lazy store that has none yet (before its first write);
        without ``wait``, False when another thread is creating it (True: it is there)."""
        if not self._absent:
            return True
        if not self._create_lock.acquire(blocking=wait):
            return False
        try:
            if self._absent:
                self._make_root()
                self._create()
                self._absent = False
        finally:
            self._create_lock.release()
        return True

    def _none_yet(self) -> bool:
        """Whether a lazy store still has no database to read: none on disk, or one another
        thread is creating (a read does not wait for it); one another process made is opened."""
        if not self._absent:
            return False
        if not self.db_path.exists():
            return True
        return not self._ensure(wait=False)

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        self._fork_check()
        if self._none_yet():  # nothing stored yet: an empty database with the same tables answers
            with self._empty_lock:
                if self._empty is None:
                    self._empty = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                    self._empty.executescript(_SCHEMA)
                yield self._empty
            return
        with self._lock:
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
        try:
            yield db
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc
        finally:
            with self._lock:
                self._idle.append(db)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (committed at the end, rolled back on an error)."""
        self._fork_check()
        self._ensure()
        with self._write_lock, self._turn():
            if self._writer is None:
                self._writer = self._connect()
            db = self._writer
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("write", exc) from exc
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise self._error("write", exc) from exc
                raise
            self._dirty = True

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This process's turn among the writers of the store (a POSIX lock on ``.write.lock``,
        asked for every 0.5-5 ms; after :data:`BUSY_TIMEOUT` the transaction goes on without
        it and SQLite's busy handler decides). A lock file that cannot be opened: no turns."""
        if self._turns is None:
            try:
                self._turns = os.open(self.root / _WRITE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                yield
                return
        fd, pause = self._turns, 0.0005
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    yield
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _error(self, doing: str, exc: sqlite3.Error) -> BlockStoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            why = f"another process held it for over {BUSY_TIMEOUT:.0f} s ({text})"
        elif isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
            why = (f"the file is damaged ({text}); move it aside and re-import the blocks"
                   " (halodb import-car) or sync them again from a store that has them")
        else:
            why = text
        return BlockStoreError(f"cannot {doing} {self.describe()}: {why}", store=self.describe(), path=self._db)

    # -- reads -----------------------------------------------------------------------------
    def _get(self, cid: CID) -> bytes | None:
        legacy = self._legacy
        if legacy is not None:
            data = legacy._get(cid)
            if data is not None:
                return data
        with self._reader() as db:
            row = db.execute("SELECT data FROM blocks WHERE cid = ?", (cid.buffer,)).fetchone()
        return None if row is None else bytes(row[0])

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        out: dict[CID, bytes] = {}
        legacy = self._legacy
        if legacy is not None:
            out = legacy._get_many(cids)
            cids = [c for c in cids if c not in out]
        by_buffer = {c.buffer: c for c in cids}
        keys = list(by_buffer)
        with self._reader() as db:
            for start in range(0, len(keys), _CHUNK):
                part = keys[start:start + _CHUNK]
                query = f"SELECT cid, data FROM blocks WHERE cid IN ({','.join('?' * len(part))})"
                for key, data in db.execute(query, part):
                    out[by_buffer[bytes(key)]] = bytes(data)
        return out

    def _has_many(self, cids: list[CID]) -> set[CID]:
        """One query per :data:`_CHUNK` CIDs (a commit asks for every staged item's)."""
        legacy = self._legacy
        out = {c for c in cids if legacy._has(c)} if legacy is not None else set()
        by_buffer = {c.buffer: c for c in cids if c not in out}
        keys = list(by_buffer)
        with self._reader() as db:
            for start in range(0, len(keys), _CHUNK):
                part = keys[start:start + _CHUNK]
                query = f"SELECT cid FROM blocks WHERE cid IN ({','.join('?' * len(part))})"
                out.update(by_buffer[bytes(key)] for (key,) in db.execute(query, part))
        return out

    def _has(self, cid: CID) -> bool:
        legacy = self._legacy
        if legacy is not None and legacy._has(cid):
            return True
        with self._reader() as db:
            return db.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid.buffer,)).fetchone() is not None

    def _iter_cids(self) -> Iterator[CID]:
        last = 0
        while True:  # in slices, so that no read stays open while the caller works
            with self._reader() as db:
                rows = db.execute("SELECT id, cid FROM blocks WHERE id > ? ORDER BY id LIMIT 10000",
                                  (last,)).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            for _, key in rows:
                yield CID(bytes(key))
        legacy = self._legacy
        if legacy is not None:
            for cid in legacy._iter_cids():
                with self._reader() as db:
                    if db.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid.buffer,)).fetchone() is None:
                        yield cid

    # -- writes ----------------------------------------------------------------------------
    def _put(self, cid: CID, data: bytes) -> None:
        self._put_many([(cid, data)])

    def _put_many(self, blocks: list[Block]) -> None:
        # in CID order: random CIDs into the cid index touch its pages one after the other, not
        # at random (at 300,000 blocks a batch of 10,000 costs ~40 % less CPU)
        rows = sorted(((cid.buffer, data) for cid, data in blocks), key=_first)
        with self._transaction() as db:
            # the new blocks first; only when some were stored already (or a CID came twice)
            # the upsert, which compares their bytes (and replaces a damaged copy)
            if db.executemany(_INSERT_NEW, rows).rowcount != len(rows):
                db.executemany(_UPSERT, rows)
        legacy = self._legacy
        if legacy is not None:  # a damaged file of the old layout would be read first: set it aside
            for cid, data in blocks:
                path = legacy._path(cid)
                stored = legacy._read(path, cid)
                if stored is not None and stored != data:
                    legacy._keep_evidence(cid, path)
                    legacy._delete(cid)

    def _delete(self, cid: CID) -> None:
        self._delete_many([cid])

    def _delete_many(self, cids: list[CID]) -> None:
        keys = [c.buffer for c in cids]
        with self._transaction() as db:
            for start in range(0, len(keys), _CHUNK):
                part = keys[start:start + _CHUNK]
                db.execute(f"DELETE FROM blocks WHERE cid IN ({','.join('?' * len(part))})", part)
        if len(keys) > 1:
            self.compact()
        legacy = self._legacy
        if legacy is not None:
            for cid in cids:
                legacy._delete(cid)

    def compact(self) -> None:
        """Give the pages that deletes freed back to the file system (the file shrinks once
        the log is checkpointed); readers meanwhile go on reading.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = SqliteStore(Path(tmp))
        ...     store.delete_many([store.put(bytes(20_000), codec=0x55)])
        ...     store.compact()
        ...     store.close()
        """
        self._fork_check()
        if self._none_yet():
            return
        with self._write_lock:
            if self._writer is None:
                self._writer = self._connect()
            try:
                self._writer.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                raise self._error("compact", exc) from exc
            self._dirty = True

    def flush(self) -> None:
        """Make every commit so far durable: one small commit with ``synchronous=FULL``,
        which fsyncs the whole log (every earlier commit's frames with it), then a passive
        checkpoint, which keeps the log short.

        The files are never opened here: closing any descriptor of a SQLite file drops every
        POSIX lock the process holds on it, after which another process may take this one's
        log for unused and delete it ("How To Corrupt An SQLite Database", section 2.2).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = SqliteStore(Path(tmp))
        ...     _ = store.put(b"x", codec=0x55)
        ...     store.flush()
        ...     store.close()
        """
        if self._legacy is not None:
            self._legacy.flush()
        if not self._dirty:
            return
        self._fork_check()
        with self._write_lock:
            if self._writer is None:
                self._writer = self._connect()
            try:
                self._writer.execute("PRAGMA synchronous=FULL")
                try:
                    self._writer.execute("BEGIN IMMEDIATE")
                    self._writer.execute("INSERT OR REPLACE INTO flushed (id, at) VALUES (1, julianday('now'))")
                    self._writer.execute("COMMIT")
                finally:
                    if self._writer.in_transaction:
                        self._writer.execute("ROLLBACK")
                    self._writer.execute("PRAGMA synchronous=NORMAL")
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                raise self._error("flush", exc) from exc
            self._dirty = False

    def close(self) -> None:
        """Flush and close the connections (the store opens new ones if used again)."""
        self.flush()
        self._fork_check()
        with self._write_lock, self._lock:
            conns, self._idle = self._idle, []
            if self._writer is not None:
                conns.append(self._writer)
                self._writer = None
            if self._empty is not None:
                conns.append(self._empty)
                self._empty = None
            turns, self._turns = self._turns, None
        for db in conns:
            db.close()
        if turns is not None:
            os.close(turns)

    # -- damaged copies ---------------------------------------------------------------------
    def _quarantine(self, cid: CID) -> str | None:
        legacy = self._legacy
        if legacy is not None and legacy._has(cid):
            return legacy._quarantine(cid)
        with self._transaction() as db:
            row = db.execute("SELECT data FROM blocks WHERE cid = ?", (cid.buffer,)).fetchone()
            if row is None or cid.verify(bytes(row[0])):
                return None  # gone, or repaired meanwhile
            db.execute("INSERT INTO quarantine (cid, data, at) VALUES (?, ?, julianday('now'))",
                       (cid.buffer, row[0]))
            db.execute("DELETE FROM blocks WHERE cid = ?", (cid.buffer,))
        return f"the quarantine table of {self._db}"

    def quarantined(self, cid: CID) -> list[bytes]:
        """The damaged copies of ``cid`` set aside so far, oldest first.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = SqliteStore(Path(tmp))
        ...     print(store.quarantined(CID.for_bytes(b"x", 0x55)))
        ...     store.close()
        []
        """
        with self._reader() as db:
            rows = db.execute("SELECT data FROM quarantine WHERE cid = ? ORDER BY id", (cid.buffer,)).fetchall()
        return [bytes(r[0]) for r in rows]

    def _missing_note(self, cid: CID) -> str:
        if self._legacy is not None:
            note = self._legacy._missing_note(cid)
            if note:
                return note
        if not self.quarantined(cid):
            return ""
        return (f" (a damaged copy of it was set aside in the quarantine table of {self._db}: re-import the"
                " block with halodb import-car, or fetch it again from a store that has it with --store)")

    def _damaged(self, cid: CID, moved_to: str | None) -> VerificationError:
        legacy = self._legacy
        if legacy is not None and moved_to is not None and not moved_to.startswith("the quarantine"):
            return legacy._damaged(cid, moved_to)
        where = f"; moved it to {moved_to}" if moved_to else ""
        return VerificationError(
            f"the copy of block {cid} in {self._db} is damaged: it does not hash to its CID{where}. Re-import"
            " the block (halodb import-car) or fetch it again from a store that has it (--store with a"
            " gateway or Kubo)", cid=cid, source=self.describe(), path=self._db,
        )

    def remove_stale_temp_files(self) -> int:
        """Remove the temporary files killed writes of a directory store in the same root left
        behind (SQLite's own writes leave none: its log is replayed)."""
        if not _has_shards(self.root):
            return 0
        removed = DirectoryStore(self.root).remove_stale_temp_files()
        if self._legacy is not None:
            self.migrate()  # what is left, and the shard folders that are empty now
        return removed

    # -- migration from a directory store ----------------------------------------------------
    def migrate(self) -> int:
        """Move the blocks of a directory store in the same root into the database; returns
        how many were moved. Each batch is committed and fsync'ed before its files go, so it
        can be killed at any point; a migration already running in another process is left
        to finish (this store reads the files meanwhile).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     cid = DirectoryStore(Path(tmp)).put(b"old", codec=0x55)
        ...     store = SqliteStore(Path(tmp))  # migrates on open
        ...     print(store.get(cid), store.path_of_legacy(cid).exists())
        ...     store.close()
        b'old' False
        """
        legacy = self._legacy
        if legacy is None:
            return 0
        lock_path = self.root / _MIGRATE_LOCK
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise BlockStoreError(f"cannot open {lock_path}: {exc}", path=lock_path) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process migrates: read the files until it is done
            moved = self._migrate_shards(legacy)
            if not _has_shards(self.root):
                self._legacy = None
            return moved
        finally:
            os.close(fd)

    def path_of_legacy(self, cid: CID) -> Path:
        """Where a directory store in the same root keeps (or kept) ``cid``."""
        return DirectoryStore(self.root).path_of(cid)

    def _migrate_shards(self, legacy: DirectoryStore) -> int:
        moved = 0
        started = time.monotonic()
        batch: list[tuple[CID, bytes, str]] = []
        shards = sorted(e.path for e in os.scandir(self.root) if _is_shard(e))
        for shard in shards:
            try:
                entries = list(os.scandir(shard))
            except FileNotFoundError:
                continue
            for entry in entries:
                cid = None if entry.name.startswith(".") else cid_from_name(entry.name)
                if cid is None or block_name(cid) != entry.name:
                    continue  # a temporary file (gc removes it) or a foreign file: left alone
                data = legacy._read(entry.path, cid)
                if data is not None:
                    batch.append((cid, data, entry.path))
                if len(batch) >= _MIGRATE_BATCH:
                    moved += self._migrate_batch(batch)
                    batch = []
        if batch:
            moved += self._migrate_batch(batch)
        for shard in shards:
            try:
                os.rmdir(shard)
            except OSError:
                pass  # not empty: a temporary or foreign file stays
        if moved:
            _fsync(os.fspath(self.root), directory=True)
            log.info("moved %d blocks of the directory store %s into %s in %.1f s",
                     moved, self.root, self._db, time.monotonic() - started)
        return moved

    def _migrate_batch(self, batch: list[tuple[CID, bytes, str]]) -> int:
        good = [(cid.buffer, data) for cid, data, _ in batch if cid.verify(data)]
        damaged = [(cid.buffer, data) for cid, data, _ in batch if not cid.verify(data)]
        with self._transaction() as db:
            db.executemany(_UPSERT, good)
            db.executemany("INSERT INTO quarantine (cid, data, at) VALUES (?, ?, julianday('now'))", damaged)
        self.flush()  # durable before any file goes
        # removing a file costs a journal round trip; the syscall releases the GIL: in threads
        with ThreadPoolExecutor(_UNLINK_THREADS) as pool:
            for _ in pool.map(_unlink, (path for _, _, path in batch), chunksize=256):
                pass
        return len(good)


def _first(row: tuple[bytes, bytes]) -> bytes:
    return row[0]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BlockStoreError(f"cannot remove the migrated block file {path}: {exc}", path=path) from exc


def _is_shard(entry: os.DirEntry[str]) -> bool:
    return len(entry.name) == 2 and entry.is_dir(follow_symlinks=False)


def _has_shards(root: Path) -> bool:
    """Whether ``root`` holds the shard folders of a directory store."""
    try:
        return any(_is_shard(e) for e in os.scandir(root))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BlockStoreError(f"cannot list {root}: {exc}", path=root) from exc


def _fsync(path: str, *, directory: bool) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except FileNotFoundError:
        return  # checkpointed and removed (the log), or never made
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_only_connection(path: Path, error: Callable[[sqlite3.Error], Exception]) -> sqlite3.Connection:
    """A read-only connection to the SQLite database ``path`` in a folder this process cannot
    write (a read-only mount), where SQLite cannot create the ``-shm`` file WAL readers share:
    with a log beside it (``-wal`` and ``-shm`` exist) read as it is; without one the file
    is all there is, opened ``immutable`` (nothing can change it: its folder is read-only).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     SqliteStore(Path(tmp)).close()
    ...     db = read_only_connection(Path(tmp) / DB_NAME, RuntimeError)
    ...     db.execute("SELECT count(*) FROM blocks").fetchone(), db.close()
    ((0,), None)
    """
    log = Path(f"{path}-wal")
    shared = log.exists() and log.stat().st_size > 0
    if shared and not Path(f"{path}-shm").exists():
        raise error(sqlite3.OperationalError(
            f"its write-ahead log holds changes not yet in {path.name}, and the folder is read-only: open it "
            "once where it can be written (any command does), then read it read-only"))
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if shared else "&immutable=1")
    try:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise error(exc) from exc
