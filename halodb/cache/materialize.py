"""Applying a :class:`~halodb.cache.records.SyncPlan` to the cache in one transaction.

The plan is first turned into columns in Python (one pass over the changes, no SQL), then
written with a handful of set-based statements over registered Arrow tables:

1. ``reset``: forget the name's history (``name_commits``, ``item_versions``, ``sync_state``);
   otherwise check that no commit of the plan is synced already.
2. ``commits`` (shared, ``INSERT OR IGNORE``) and ``name_commits`` (appended after the old head).
3. ``stac_items``: only item CIDs the cache does not hold yet are encoded and inserted.
4. ``item_versions``: ONE ``UPDATE ... FROM`` closes the versions the plan changes that were
   open before it; then ONE ``INSERT`` adds every version the plan opens, those that the
   plan itself closes again already carrying their ``valid_to``.
5. ``sync_state`` upsert; after a reset, items and commits no name uses are deleted.

Everything runs in ONE DuckDB transaction: on any error it is rolled back and a
:class:`~halodb.errors.CacheError` raised, leaving the cache exactly as before.

>>> import duckdb
>>> from datetime import datetime, timezone
>>> from halodb.cache.migrate import migrate
>>> from halodb.cache.records import ChangeRecord, CommitRecord, ItemRecord, SyncPlan
>>> con = duckdb.connect(); _ = migrate(con)
>>> item = ItemRecord("k", "bafyitem", "bafydata", "a/b.zarr", {"id": "b"})
>>> commit = CommitRecord("bafyc1", [], "bafyi1", datetime(2024, 9, 1, tzinfo=timezone.utc), "me", "add",
...                       [ChangeRecord("k", item)])
>>> apply_plan(con, SyncPlan("demo", "bafyc1", False, [commit]), now=datetime.now(timezone.utc))
>>> con.execute("SELECT key, id, data_cid FROM items").fetchall()
[('k', 'b', 'bafydata')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from halodb.cache.records import SyncPlan
from halodb.cache.stac_columns import items_table
from halodb.errors import CacheError

__all__ = ["PlanColumns", "apply_plan", "plan_columns"]

_T_COMMITS = "_halodb_plan_commits"
_T_VERSIONS = "_halodb_plan_versions"
_T_CLOSES = "_halodb_plan_closes"
_T_CANDIDATES = "_halodb_plan_item_cids"
_T_ITEMS = "_halodb_plan_items"
_TS = pa.timestamp("us", tz="UTC")


@dataclass
class PlanColumns:
    """A plan flattened into columns (indices into the plan's commits, 0 = oldest)."""

    commit_cid: list[str] = field(default_factory=list)
    commit_parents: list[list[str]] = field(default_factory=list)
    commit_index: list[str] = field(default_factory=list)
    commit_time: list[datetime] = field(default_factory=list)
    commit_author: list[str] = field(default_factory=list)
    commit_message: list[str] = field(default_factory=list)
    #: versions the plan opens; ``to`` is None when still open at the end of the plan
    version_key: list[str] = field(default_factory=list)
    version_item_cid: list[str] = field(default_factory=list)
    version_data_cid: list[str | None] = field(default_factory=list)
    version_path: list[str | None] = field(default_factory=list)
    version_from: list[int] = field(default_factory=list)
    version_to: list[int | None] = field(default_factory=list)
    #: keys whose version open before the plan is closed, and by which commit
    close_key: list[str] = field(default_factory=list)
    close_at: list[int] = field(default_factory=list)
    #: distinct item blocks the plan references, first occurrence wins
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_columns(plan: SyncPlan) -> PlanColumns:
    """Flatten and validate ``plan`` in one pass; raises :class:`CacheError` on a malformed plan.

    >>> from halodb.cache.records import SyncPlan
    >>> plan_columns(SyncPlan("n", "h", False, [])).version_key
    []
    """
    if not isinstance(plan.name, str) or not plan.name:
        raise CacheError(f"sync plan has no valid name: {plan.name!r}", name=plan.name)
    if not isinstance(plan.head, str) or not plan.head:
        raise CacheError(f"sync plan for {plan.name} has no valid head: {plan.head!r}", name=plan.name)
    cols = PlanColumns()
    seen_commits: set[str] = set()
    open_row: dict[str, int] = {}  # key -> row in version_* opened by this plan and still open
    closed_before: set[str] = set()  # keys whose pre-plan version is already being closed
    v_key, v_item, v_data, v_path = cols.version_key, cols.version_item_cid, cols.version_data_cid, cols.version_path
    v_from, v_to, items = cols.version_from, cols.version_to, cols.items
    for seq, commit in enumerate(plan.commits):
        if commit.cid in seen_commits:
            raise CacheError(f"commit {commit.cid} appears twice in the plan for {plan.name}", cid=commit.cid, name=plan.name)
        seen_commits.add(commit.cid)
        t = commit.time
        if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
            raise CacheError(f"commit {commit.cid} has no timezone-aware time: {t!r}", cid=commit.cid)
        cols.commit_cid.append(commit.cid)
        cols.commit_parents.append(list(commit.parents))
        cols.commit_index.append(commit.index)
        cols.commit_time.append(t.astimezone(timezone.utc))
        cols.commit_author.append(commit.author)
        cols.commit_message.append(commit.message)
        keys_here: set[str] = set()
        for change in commit.changes:
            key = change.key
            if key in keys_here:
                raise CacheError(f"key {key!r} changes twice in commit {commit.cid}", key=key, cid=commit.cid)
            keys_here.add(key)
            row = open_row.pop(key, None)
            if row is not None:
                v_to[row] = seq
            elif key not in closed_before:
                closed_before.add(key)
                cols.close_key.append(key)
                cols.close_at.append(seq)
            new = change.new
            if new is None:
                continue
            if new.key != key:
                raise CacheError(f"change of key {key!r} carries an item for key {new.key!r}", key=key, cid=commit.cid)
            open_row[key] = len(v_key)
            v_key.append(key)
            v_item.append(new.item_cid)
            v_data.append(new.data_cid)
            v_path.append(new.path)
            v_from.append(seq)
            v_to.append(None)
            if new.item_cid not in items:
                items[new.item_cid] = new.item
    return cols


def apply_plan(con: duckdb.DuckDBPyConnection, plan: SyncPlan, *, now: datetime) -> None:
    """Apply ``plan`` through ``con`` in ONE transaction; on error roll back and raise CacheError.

    ``now`` is recorded as the sync time. See the module docstring for the steps.
    """
    cols = plan_columns(plan)  # before BEGIN: a malformed plan never touches the database
    commits = _commits_table(cols)
    registered: list[str] = []
    try:
        con.begin()
        _register(con, registered, _T_COMMITS, commits)
        start = _forget(con, plan.name) if plan.reset else _next_seq(con, plan.name)
        _insert_commits(con, plan.name, start)
        _insert_items(con, registered, cols)
        if not plan.reset:
            _close_versions(con, registered, plan.name, cols, commits)
        _insert_versions(con, registered, plan.name, cols, commits)
        if plan.reset:
            _collect_garbage(con)
        _write_sync_state(con, plan, now)
        con.commit()
    except Exception as exc:
        _rollback(con)
        if isinstance(exc, CacheError):
            raise
        raise CacheError(f"sync of {plan.name} to {plan.head} failed, cache unchanged: {exc}", name=plan.name) from exc
    except BaseException:
        _rollback(con)
        raise
    finally:
        for name in registered:
            _unregister(con, name)


# -- steps --------------------------------------------------------------------------------
def _commits_table(cols: PlanColumns) -> pa.Table:
    return pa.table(
        {
            "idx": pa.array(range(len(cols.commit_cid)), type=pa.int32()),
            "cid": pa.array(cols.commit_cid, type=pa.string()),
            "parents": pa.array(cols.commit_parents, type=pa.list_(pa.string())),
            "index_cid": pa.array(cols.commit_index, type=pa.string()),
            "time": pa.array(cols.commit_time, type=_TS),
            "author": pa.array(cols.commit_author, type=pa.string()),
            "message": pa.array(cols.commit_message, type=pa.string()),
        }
    )


def _forget(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """Delete everything cached for ``name`` (reset plans); the history starts at seq 0."""
    con.execute("DELETE FROM item_versions WHERE name = ?", [name])
    con.execute("DELETE FROM name_commits WHERE name = ?", [name])
    con.execute("DELETE FROM sync_state WHERE name = ?", [name])
    return 0


def _next_seq(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """The seq after the synced head; refuses plans that re-apply synced commits."""
    dup = con.execute(
        f"SELECT p.cid FROM {_T_COMMITS} AS p JOIN name_commits AS n ON n.cid = p.cid AND n.name = ? ORDER BY p.idx LIMIT 1",
        [name],
    ).fetchone()
    if dup is not None:
        raise CacheError(
            f"commit {dup[0]} is already synced for {name}; a plan must start after the synced head (or reset)",
            cid=dup[0],
            name=name,
        )
    row = con.execute("SELECT coalesce(max(seq) + 1, 0) FROM name_commits WHERE name = ?", [name]).fetchone()
    return int(row[0]) if row else 0


def _insert_commits(con: duckdb.DuckDBPyConnection, name: str, start: int) -> None:
    con.execute(f"INSERT OR IGNORE INTO commits SELECT cid, parents, index_cid, time, author, message FROM {_T_COMMITS}")
    con.execute(f"INSERT INTO name_commits SELECT ?, cid, idx + ? FROM {_T_COMMITS}", [name, start])


def _insert_items(con: duckdb.DuckDBPyConnection, registered: list[str], cols: PlanColumns) -> None:
    """Insert the item blocks the cache does not hold yet (encode only those)."""
    if not cols.items:
        return
    candidates = list(cols.items)
    _register(con, registered, _T_CANDIDATES, pa.table({"item_cid": pa.array(candidates, type=pa.string())}))
    present = {
        row[0]
        for row in con.execute(
            f"SELECT c.item_cid FROM {_T_CANDIDATES} AS c SEMI JOIN stac_items AS s ON s.item_cid = c.item_cid"
        ).fetchall()
    }
    new = [cid for cid in candidates if cid not in present] if present else candidates
    if not new:
        return
    _register(con, registered, _T_ITEMS, items_table(new, [cols.items[cid] for cid in new]))
    con.execute(
        f"""INSERT INTO stac_items
        SELECT item_cid, id, collection,
               TRY_CAST(datetime_text AS TIMESTAMPTZ), TRY_CAST(start_datetime_text AS TIMESTAMPTZ),
               TRY_CAST(end_datetime_text AS TIMESTAMPTZ),
               bbox, platform, instruments, title, keywords, item
        FROM {_T_ITEMS}"""
    )


def _close_versions(
    con: duckdb.DuckDBPyConnection, registered: list[str], name: str, cols: PlanColumns, commits: pa.Table
) -> None:
    """Close, in one UPDATE, the versions open before the plan whose keys the plan changes."""
    if not cols.close_key:
        return
    has_open = con.execute(
        "SELECT EXISTS (SELECT 1 FROM item_versions WHERE name = ? AND valid_to IS NULL)", [name]
    ).fetchone()
    if not has_open or not has_open[0]:
        return  # a new (or emptied) name: nothing to close
    at = pa.array(cols.close_at, type=pa.int32())
    closes = pa.table(
        {
            "key": pa.array(cols.close_key, type=pa.string()),
            "cid": commits.column("cid").take(at),
            "time": commits.column("time").take(at),
        }
    )
    _register(con, registered, _T_CLOSES, closes)
    con.execute(
        f"""UPDATE item_versions SET valid_to_commit = c.cid, valid_to = c.time
        FROM {_T_CLOSES} AS c
        WHERE item_versions.name = ? AND item_versions.key = c.key AND item_versions.valid_to IS NULL""",
        [name],
    )


def _insert_versions(
    con: duckdb.DuckDBPyConnection, registered: list[str], name: str, cols: PlanColumns, commits: pa.Table
) -> None:
    """Insert, in one INSERT, every version the plan opens (closed ones with their valid_to)."""
    if not cols.version_key:
        return
    start = pa.array(cols.version_from, type=pa.int32())
    end = pa.array(cols.version_to, type=pa.int32())
    cid, time = commits.column("cid"), commits.column("time")
    versions = pa.table(
        {
            "key": pa.array(cols.version_key, type=pa.string()),
            "item_cid": pa.array(cols.version_item_cid, type=pa.string()),
            "data_cid": _nullable_strings(cols.version_data_cid, "data_cid"),
            "path": _nullable_strings(cols.version_path, "path"),
            "from_cid": cid.take(start),
            "from_time": time.take(start),
            "to_cid": cid.take(end),
            "to_time": time.take(end),
        }
    )
    _register(con, registered, _T_VERSIONS, versions)
    con.execute(
        f"""INSERT INTO item_versions
        SELECT ?, key, item_cid, data_cid, path, from_cid, from_time, to_cid, to_time FROM {_T_VERSIONS}""",
        [name],
    )


def _collect_garbage(con: duckdb.DuckDBPyConnection) -> None:
    """After a reset: drop item blocks and commits no name's history uses any more."""
    con.execute("DELETE FROM stac_items WHERE item_cid NOT IN (SELECT item_cid FROM item_versions)")
    con.execute("DELETE FROM commits WHERE cid NOT IN (SELECT cid FROM name_commits)")


def _write_sync_state(con: duckdb.DuckDBPyConnection, plan: SyncPlan, now: datetime) -> None:
    con.execute(
        """INSERT INTO sync_state (name, head, synced_at, commits, items)
        SELECT $name, $head, $now,
               (SELECT count(*) FROM name_commits WHERE name = $name),
               (SELECT count(*) FROM item_versions WHERE name = $name AND valid_to IS NULL)
        ON CONFLICT (name) DO UPDATE SET head = excluded.head, synced_at = excluded.synced_at,
               commits = excluded.commits, items = excluded.items""",
        {"name": plan.name, "head": plan.head, "now": now},
    )


# -- helpers ------------------------------------------------------------------------------
def _nullable_strings(values: list[str | None], what: str) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CacheError(f"a {what} in the plan is not a string: {exc}") from exc


def _register(con: duckdb.DuckDBPyConnection, registered: list[str], name: str, table: pa.Table) -> None:
    con.register(name, table)
    registered.append(name)


def _unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        con.unregister(name)
    except duckdb.Error:
        pass  # the connection is gone; nothing to clean up


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.rollback()
    except duckdb.Error:
        pass  # no transaction open (BEGIN itself failed)
