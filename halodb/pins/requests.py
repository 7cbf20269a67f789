"""The pin requests a Pinning Service API server holds, persisted in SQLite (WAL mode), so a
restart loses none: what was queued or pinning is resumed.

A request is a row: its id (a UUID), ``created`` in milliseconds (unique and increasing, so
paging by ``before`` is exact at the API's precision), its status (``queued`` → ``pinning`` →
``pinned`` or ``failed``), the Pin, ``info``, and two fields the API never shows: ``removed``
(deleted or replaced by the client, but still holding its CID until the server has released
it on the node) and ``replaced_by`` (the request that replaced it: the old pin is kept until
the new one is made, so blocks both share are never collected in between). Removed rows are
invisible to every read of the API. CIDs are compared by their binary form (``cid_key``), as
Kubo keys its pins: a CIDv0 and its CIDv1 are two pins.

All access goes through one connection under one lock; each change is one transaction.

>>> import tempfile
>>> store = RequestStore(Path(tempfile.mkdtemp()) / "requests.sqlite")
>>> row = store.add(Pin("QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm", "v0"))
>>> row.status, store.claim(row.requestid).status, store.finish(row.requestid, "pinned").status
('queued', 'pinning', 'pinned')
>>> store.query(PinQuery(name="V", match="ipartial")).count
1
>>> store.close()
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from halodb.errors import PinError
from halodb.ipld import CID
from halodb.pins.model import STATUSES, Pin

__all__ = ["LIVE", "PinQuery", "QueryPage", "RequestRow", "RequestStore", "cid_key"]

LIVE = ("queued", "pinning", "pinned")  #: statuses of a request that holds its CID on the node
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    requestid   TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'pinning', 'pinned', 'failed')),
    cid         TEXT NOT NULL,
    cid_key     BLOB NOT NULL,
    name        TEXT,
    name_fold   TEXT,
    pin         TEXT NOT NULL,
    meta        TEXT NOT NULL,
    info        TEXT NOT NULL,
    removed     INTEGER NOT NULL DEFAULT 0,
    replaced_by TEXT
);
CREATE INDEX IF NOT EXISTS requests_cid ON requests (cid_key);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status, created_ms);
CREATE INDEX IF NOT EXISTS requests_replaced_by ON requests (replaced_by);
"""

_COLUMNS = "requestid, created_ms, status, cid, pin, info, removed, replaced_by"


def cid_key(cid: str) -> bytes:
    """The binary form of a CID: two spellings of one CID have one key."""
    return CID.parse(cid).buffer


@dataclass(frozen=True)
class RequestRow:
    """One stored request."""

    requestid: str
    created: datetime
    status: str
    pin: Pin
    info: Mapping[str, str] = field(default_factory=dict, hash=False)
    removed: bool = False
    replaced_by: str | None = None

    @property
    def cid_key(self) -> bytes:
        return cid_key(self.pin.cid)


@dataclass(frozen=True)
class PinQuery:
    """The filters of ``GET /pins``, checked: every one given must hold."""

    cids: Sequence[str] = ()
    name: str | None = None
    match: str = "exact"
    statuses: Sequence[str] = ("pinned",)
    before: datetime | None = None
    after: datetime | None = None
    limit: int = 10
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class QueryPage:
    """``count`` requests match in all; ``rows`` are the newest ``limit`` of them."""

    count: int
    rows: list[RequestRow]


class RequestStore:
    """The requests of one server, in the SQLite file ``path`` (created with its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._last_ms = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")  # a request answered 202 survives a power cut
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise PinError(f"{self.path}: pin requests of schema version {version}; this HaloDB knows "
                               f"{SCHEMA_VERSION}", node=str(self.path))
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            last = self._db.execute("SELECT max(created_ms) FROM requests").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise PinError(f"cannot open the pin requests in {self.path}: {exc}", node=str(self.path)) from None
        self._last_ms = int(last or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading --------------------------------------------------------------------------------
    def get(self, requestid: str, *, removed: bool = False) -> RequestRow | None:
        """The request ``requestid`` (None if unknown, or removed unless ``removed``)."""
        with self._lock:
            row = self._one(f"SELECT {_COLUMNS} FROM requests WHERE requestid = ?"
                            + ("" if removed else " AND removed = 0"), [requestid])
        return row

    def query(self, q: PinQuery) -> QueryPage:
        """The requests matching ``q``, newest first, and how many match in all."""
        where = ["removed = 0", f"status IN ({','.join('?' * len(q.statuses))})"]
        args: list[Any] = list(q.statuses)
        if q.cids:
            where.append(f"cid_key IN ({','.join('?' * len(q.cids))})")
            args.extend(cid_key(c) for c in q.cids)
        if q.name is not None:
            folded = q.match.startswith("i")
            column = "name_fold" if folded else "name"
            text = q.name.casefold() if folded else q.name
            where.append(f"{column} = ?" if q.match.endswith("exact") else f"instr({column}, ?) > 0")
            args.append(text)
        if q.before is not None:
            where.append("created_ms * 1000 < ?")
            args.append(_micros(q.before))
        if q.after is not None:
            where.append("created_ms * 1000 > ?")
            args.append(_micros(q.after))
        for key, value in q.meta.items():
            where.append("EXISTS (SELECT 1 FROM json_each(requests.meta) AS m WHERE m.key = ? AND m.type = 'text' "
                         "AND m.value = ?)")
            args.extend([key, value])
        clause = " AND ".join(where)
        with self._lock:
            count = self._db.execute(f"SELECT count(*) FROM requests WHERE {clause}", args).fetchone()[0]
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM requests WHERE {clause} ORDER BY created_ms DESC LIMIT ?",
                                    [*args, q.limit]).fetchall()
        return QueryPage(count=int(count), rows=[_row(r) for r in rows])

    def holders(self, key: bytes, *, excluding: str) -> int:
        """How many requests other than ``excluding`` hold the CID ``key`` (queued, pinning or
        pinned; removed ones too while they wait to be released)."""
        with self._lock:
            found = self._db.execute("SELECT count(*) FROM requests WHERE cid_key = ? AND requestid <> ? AND status IN "
                                     "('queued', 'pinning', 'pinned')", [key, excluding]).fetchone()[0]
        return int(found)

    def releasable(self, requestid: str) -> bool:
        """Whether the removed request ``requestid`` may be released now: no worker is pinning it,
        and the request that replaced it (if any) is made, failed or gone."""
        with self._lock:
            row = self.get(requestid, removed=True)
            if row is None or not row.removed or row.status == "pinning":
                return False
            if row.replaced_by is None:
                return True
            new = self.get(row.replaced_by, removed=True)
            return new is None or new.status in ("pinned", "failed")

    def replaced(self, requestid: str) -> list[str]:
        """The requests ``requestid`` replaced."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT requestid FROM requests WHERE replaced_by = ?", [requestid])]

    def pending(self) -> tuple[list[str], list[str]]:
        """After a restart: every request that was pinning is queued again; the queued requests
        (oldest first) and the removed ones (to release)."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE requests SET status = 'queued' WHERE status = 'pinning'")
            queued = [r[0] for r in self._db.execute(
                "SELECT requestid FROM requests WHERE status = 'queued' AND removed = 0 ORDER BY created_ms")]
            removed = [r[0] for r in self._db.execute("SELECT requestid FROM requests WHERE removed = 1 ORDER BY created_ms")]
        return queued, removed

    # -- changing -------------------------------------------------------------------------------
    def add(self, pin: Pin, *, replacing: str | None = None) -> RequestRow:
        """Store a new queued request for ``pin``. With ``replacing``, that request is marked
        removed and replaced by the new one in the same transaction; then None is never returned
        but :class:`KeyError` raised when ``replacing`` is unknown."""
        requestid = str(uuid.uuid4())
        pin_json = pin.to_json()
        meta = pin.to_json(strings_only=True).get("meta", {})
        with self._lock, self._transaction():
            if replacing is not None:
                changed = self._db.execute("UPDATE requests SET removed = 1, replaced_by = ? WHERE requestid = ? AND "
                                           "removed = 0", [requestid, replacing]).rowcount
                if changed != 1:
                    raise KeyError(replacing)
            created = max(int(time.time() * 1000), self._last_ms + 1)
            self._db.execute(
                "INSERT INTO requests (requestid, created_ms, status, cid, cid_key, name, name_fold, pin, meta, info) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, '{}')",
                [requestid, created, pin.cid, cid_key(pin.cid), pin.name, None if pin.name is None else pin.name.casefold(),
                 json.dumps(pin_json), json.dumps(meta)])
            self._last_ms = created
        return RequestRow(requestid, _time(created), "queued", pin)

    def claim(self, requestid: str) -> RequestRow | None:
        """Move a queued, not removed request to ``pinning``; None when it is not one (a worker
        took it, or the client removed it)."""
        with self._lock, self._transaction():
            changed = self._db.execute("UPDATE requests SET status = 'pinning' WHERE requestid = ? AND status = 'queued' "
                                       "AND removed = 0", [requestid]).rowcount
            return self.get(requestid) if changed == 1 else None

    def finish(self, requestid: str, status: str, info: Mapping[str, str] | None = None) -> RequestRow | None:
        """Set the outcome of a request a worker pinned (``pinned``, ``failed``, or ``queued``
        to try again later); the row (removed ones too), None when it is gone."""
        if status not in STATUSES:
            raise ValueError(status)
        with self._lock, self._transaction():
            self._db.execute("UPDATE requests SET status = ?, info = ? WHERE requestid = ?",
                             [status, json.dumps(dict(info or {})), requestid])
            return self.get(requestid, removed=True)

    def remove(self, requestid: str) -> RequestRow | None:
        """Mark a request removed (the API no longer shows it); the row, or None when there is no
        such visible request."""
        with self._lock, self._transaction():
            changed = self._db.execute("UPDATE requests SET removed = 1 WHERE requestid = ? AND removed = 0",
                                       [requestid]).rowcount
            return self.get(requestid, removed=True) if changed == 1 else None

    def forget(self, requestid: str) -> None:
        """Delete a released request for good."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM requests WHERE requestid = ?", [requestid])

    # -- helpers --------------------------------------------------------------------------------
    def _one(self, sql: str, args: list[Any]) -> RequestRow | None:
        found = self._db.execute(sql, args).fetchone()
        return None if found is None else _row(found)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception); nests as one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _row(r: tuple[Any, ...]) -> RequestRow:
    requestid, created_ms, status, _cid, pin, info, removed, replaced_by = r
    return RequestRow(requestid=requestid, created=_time(created_ms), status=status,
                      pin=Pin.from_json(json.loads(pin), where=f"stored request {requestid}"),
                      info=json.loads(info), removed=bool(removed), replaced_by=replaced_by)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def _micros(t: datetime) -> int:
    t = t.astimezone(timezone.utc)
    return (int(t.replace(microsecond=0).timestamp()) * 1_000_000) + t.microsecond
