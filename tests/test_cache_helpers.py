"""Shared helpers of the cache tests (no tests here): items, commits, plans, table dumps."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from halodb.cache import ChangeRecord, CommitRecord, ItemRecord, SyncPlan
from halodb.cache.stac_columns import ItemColumns, item_columns

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 9, 1, tzinfo=timezone.utc)

#: every table of the schema, with what makes a dump of it deterministic
TABLES = ("schema_migrations", "commits", "name_commits", "stac_items", "item_versions", "sync_state")


def cid(text: str) -> str:
    """A stand-in CID string (the cache stores CIDs as text and never parses them)."""
    return "bafy" + hashlib.sha256(text.encode()).hexdigest()[:40]


def stac(key: str, rev: int = 0, **props: Any) -> dict[str, Any]:
    """A small STAC item for ``key`` at revision ``rev``."""
    properties: dict[str, Any] = {
        "datetime": None,
        "start_datetime": "2024-08-10T12:00:00Z",
        "end_datetime": "2024-08-10T20:00:00Z",
        "platform": "HALO",
        "instruments": ["dropsonde", "radar"],
        "title": f"{key} revision {rev}",
        "keywords": ["ORCESTRA", "HALO"],
    }
    properties.update(props)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"{key}-r{rev}",
        "collection": "HALO",
        "bbox": [-59.5, 13.0, -57.0, 14.5],
        "geometry": None,
        "properties": properties,
        "links": [],
        "assets": {},
    }


@dataclass(frozen=True)
class Rec(ItemRecord):
    """An ItemRecord that carries its STAC item JSON, for plans built without a block store:
    :func:`plan` reads the items of its commits' records from here."""

    item: Any = field(default=None, compare=False)


def rec(key: str, rev: int = 0, *, path: str | None = None, data: str | None = None) -> Rec:
    """The record of ``key`` at revision ``rev`` (same inputs -> same item CID)."""
    return Rec(
        key=key,
        item_cid=cid(f"item:{key}:{rev}"),
        data_cid=data if data is not None else cid(f"data:{key}:{rev}"),
        path=path if path is not None else f"products/{key}.zarr",
        item=stac(key, rev),
    )


def put(item: ItemRecord) -> ChangeRecord:
    return ChangeRecord(item.key, item)


def drop(key: str) -> ChangeRecord:
    return ChangeRecord(key, None)


def commit(
    label: str,
    changes: list[ChangeRecord],
    *,
    at: datetime | None = None,
    day: float = 0,
    parents: list[str] | None = None,
    after: str | None = None,
) -> CommitRecord:
    """A commit named by ``label`` at ``at`` (default T0 + ``day`` days); ``after`` names its parent."""
    time = at if at is not None else T0 + timedelta(days=day)
    if after is not None:
        parents = [cid(f"commit:{after}")]
    return CommitRecord(cid(f"commit:{label}"), parents or [], cid(f"index:{label}"), time, "tester", label, changes)


def plan(name: str, commits: list[CommitRecord], *, reset: bool = False, head: str | None = None) -> SyncPlan:
    """A plan whose items are read from its :class:`Rec` records (the last one of a CID wins);
    ``head`` defaults to the last commit."""
    if head is None:
        head = commits[-1].cid if commits else cid("empty")
    items = {c.new.item_cid: c.new.item for commit in commits for c in commit.changes
             if isinstance(c, ChangeRecord) and isinstance(c.new, Rec)}

    def load_item_columns(cids: list[str]) -> ItemColumns:
        return item_columns(cids, [items[c] for c in cids])

    return SyncPlan(name, head, reset, commits, load_item_columns=load_item_columns)


def dump(path: Path) -> dict[str, Any]:
    """Every row of every table plus the catalog: equal dumps = identical caches."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out: dict[str, Any] = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}
        out["catalog"] = con.execute(
            "SELECT 'table', table_name FROM duckdb_tables() UNION ALL "
            "SELECT 'view', view_name FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT 'macro', function_name FROM duckdb_functions() WHERE function_type = 'table_macro' AND NOT internal "
            "ORDER BY ALL"
        ).fetchall()
        return out
    finally:
        con.close()


def child_env() -> dict[str, str]:
    """Environment for a child ``python`` that must import halodb from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


PYTHON = sys.executable
