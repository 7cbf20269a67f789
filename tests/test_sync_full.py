"""A full sync's fast path (a first version read leaf by leaf as :class:`AddedBatch` columns,
items decoded a batch at a time) against the general one (the diff, one ChangeRecord per
key, items one by one): the same plan, the same cache, whatever the entries hold — inline
items, linked ones, DOIs, blocks that are not items, blocks that are not canonical."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halodb.blockstore import MemoryStore
from halodb.cache import AddedBatch, Cache, ChangeRecord, CommitRecord, ItemRecord, SyncPlan
from halodb.cache.materialize import apply_plan, plan_chunks
from halodb.errors import CacheError
from halodb.cache.migrate import migrate
from halodb.cache.stac_columns import item_columns
from halodb.index.history import write_commit
from halodb.index.index import Index
from halodb.index.model import Commit, Entry
from halodb.ipld import CID, DAG_CBOR, make_block
from halodb.sync import sync
from halodb.sync.pipeline import build_plan
from halodb.util.times import parse_time

#: what an entry holds: a small STAC item (inline), one with a DOI, a large one (linked), a
#: block that is not a STAC item, one that is not canonical DAG-CBOR ({"a": 1}, 1 in 2 bytes)
KINDS = ["item", "doi", "large", "not-an-item", "not-canonical"]
NOT_CANONICAL = b"\xa1\x61a\x19\x00\x01"


def _entry(store: MemoryStore, i: int, kind: str) -> Entry:
    item: dict[str, Any] = {"type": "Feature", "id": f"i{i}", "bbox": [0, 1, 2, i],
                            "properties": {"datetime": "2024-09-01T00:00:00Z", "title": f"t{i}", "keywords": ["a"]}}
    if kind == "large":
        item["properties"]["description"] = "x" * 3000
    if kind == "not-an-item":
        item = {"id": f"y{i}"}
    if kind == "not-canonical":
        return Entry(CID.for_bytes(NOT_CANONICAL, DAG_CBOR), f"bafkdata{i}", None, inline=NOT_CANONICAL)
    cid, data = make_block(item)
    store.put_block(cid, data)
    return Entry(cid, f"bafkdata{i}", f"p/{i}.zarr", doi=f"10.82246/i{i}" if kind == "doi" else None)


def _head(store: MemoryStore, kinds: list[str], inline_items: bool) -> CID:
    index = Index(store, inline_items=inline_items)
    root = index.apply(index.empty(), {f"c/{i:04d}": _entry(store, i, k) for i, k in enumerate(kinds)}, [])
    return write_commit(store, Commit(index.write_root(root), parse_time("2024-09-01T00:00:00Z"), "me", "m"))


def _rows(changes: Any) -> list[tuple[Any, ...]]:
    out = []
    for change in changes:
        for record in change.records() if isinstance(change, AddedBatch) else [change]:
            new = record.new
            out.append((record.key, new and new.item_cid, new and new.data_cid, new and new.path))
    return out


kinds_lists = st.lists(st.sampled_from(KINDS), max_size=200).map(lambda ks: ks + ["item"] * 150)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds_lists, st.booleans())
def test_the_leaves_of_a_first_version_plan_as_the_diff_does(kinds: list[str], inline_items: bool) -> None:
    store = MemoryStore()
    head = _head(store, kinds, inline_items)
    fast = build_plan(store, Index(store), "n", head, None)
    slow = build_plan(store, Index(store), "n", head, None, prefix="c/")  # a partial sync diffs
    changes = list(fast.commits[0].changes)
    assert any(isinstance(c, AddedBatch) for c in changes) == inline_items
    assert _rows(changes) == _rows(slow.commits[0].changes)
    cids = list(dict.fromkeys(r[1] for r in _rows(changes) if r[1] is not None))
    assert fast.load_item_columns is not None and slow.load_item_columns is not None
    for lo in range(0, len(cids), 64):
        a, b = fast.load_item_columns(cids[lo:lo + 64]), slow.load_item_columns(cids[lo:lo + 64])
        assert (a.cids, a.columns, a.skipped) == (b.cids, b.columns, b.skipped)


def _dump(path: Path) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [con.execute(sql).fetchall() for sql in (
            "SELECT * FROM stac_items ORDER BY item_cid",
            "SELECT * EXCLUDE (name) FROM item_versions ORDER BY key, valid_from",
            "SELECT item_cid, reason FROM skipped_items ORDER BY item_cid",
            "SELECT * FROM commits ORDER BY cid",
        )]
    finally:
        con.close()


def test_a_full_sync_fills_the_cache_as_the_diff_does(tmp_path: Path) -> None:
    store = MemoryStore()
    head = _head(store, (KINDS * 60)[:290], True)
    full, partial = Cache(tmp_path / "full.duckdb"), Cache(tmp_path / "partial.duckdb")
    a = sync(store, Index(store), full, "n", head)
    b = sync(store, Index(store), partial, "n", head, prefix="c/")
    assert (a.changes, a.skipped, a.reset) == (b.changes, b.skipped, b.reset)
    assert len(a.skipped) == 2 * 58
    full.close()
    partial.close()
    assert _dump(tmp_path / "full.duckdb") == _dump(tmp_path / "partial.duckdb")


def _commit(cid: str, changes: list[Any], day: int) -> CommitRecord:
    return CommitRecord(cid, [], "bafyindex", datetime(2024, 9, day, tzinfo=timezone.utc), "me", "m", changes)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=60, unique=True), st.lists(st.integers(0, 40), max_size=20),
       st.integers(1, 30), st.sampled_from([None, 3, 7, 50]))
def test_added_batches_flatten_as_their_records_do(first: list[int], second: list[int], split: int,
                                                   limit: int | None) -> None:
    """Batches of keys new in a commit give the versions (and the cache) their records give;
    they add no close rows (a key new in the commit had no version to close)."""
    keys = sorted(f"k{i:02d}" for i in first)
    batches = [AddedBatch(keys[lo:lo + split], [f"bafyi{k}" for k in keys[lo:lo + split]],
                          [None] * len(keys[lo:lo + split]), [f"p/{k}" for k in keys[lo:lo + split]])
               for lo in range(0, len(keys), split)]
    later = [ChangeRecord(k, None if i % 3 == 0 else ItemRecord(k, f"bafyj{k}", None, None))
             for i, k in enumerate(sorted({f"k{i:02d}" for i in second}))]
    plans = [SyncPlan("n", "c2", False, [_commit("c1", changes, 1), _commit("c2", later, 2)])
             for changes in (batches, [r for b in batches for r in b.records()])]
    chunks = [list(plan_chunks(p, limit)) for p in plans]
    assert sum(c.changes for c in chunks[0]) == sum(c.changes for c in chunks[1])
    assert [v for c in chunks[0] for v in c.version_key] == [v for c in chunks[1] for v in c.version_key]
    if limit is None:  # (with a limit the chunks end elsewhere: the batches add no close rows)
        closes = [[(k, at) for c in cs for k, at in zip(c.close_key, c.close_at)] for cs in chunks]
        assert closes[0] == [(k, at) for k, at in closes[1] if at > 0]  # (a key new in c1 had nothing to close)
    tables = []
    for plan in plans:
        con = duckdb.connect()
        migrate(con)

        def load(cids: list[str]) -> Any:
            return item_columns(cids, [{"type": "Feature", "id": c, "properties": {}} for c in cids])

        apply_plan(con, SyncPlan(plan.name, plan.head, False, plan.commits, load_item_columns=load),
                   now=datetime.now(timezone.utc))
        tables.append(con.execute("SELECT key, item_cid, path, valid_from, valid_to FROM item_versions"
                                  " ORDER BY key, valid_from").fetchall())
    assert tables[0] == tables[1]


def test_an_added_batch_out_of_order_is_taken_key_by_key() -> None:
    """A batch that does not continue its commit's keys in order is checked as records are."""
    batch = AddedBatch(["b", "a"], ["bafyb", "bafya"], [None, None], [None, None])
    plan = SyncPlan("n", "c1", False, [_commit("c1", [batch], 1)])
    assert next(plan_chunks(plan, None)).version_key == ["b", "a"]
    twice = SyncPlan("n", "c1", False, [_commit("c1", [batch, batch], 1)])
    with pytest.raises(Exception, match="changes twice"):
        list(plan_chunks(twice, None))


def _flatten(plan: SyncPlan, limit: int | None, added: Collection[tuple[str, int]] = ()) -> Any:
    """What ``plan_chunks`` makes of ``plan``: every chunk's rows in order of value (less the
    close rows of ``added``: keys new in their commit, which records cannot tell from keys
    held before), or the error it raises."""
    try:
        chunks = list(plan_chunks(plan, limit))
    except CacheError as exc:
        return f"error: {exc.message.split(' (')[0]}"
    versions = [(k, i, f, t) for c in chunks for k, i, f, t in zip(c.version_key, c.version_item_cid, c.version_from,
                                                                  c.version_to)]
    if limit is not None:  # (the chunks end elsewhere: a batch is cut only at its end)
        return sorted(v[:3] for v in versions), sum(c.changes for c in chunks)
    closes = sorted((k, at) for c in chunks for k, at in zip(c.close_key, c.close_at) if (k, at) not in added)
    return sorted(versions, key=repr), closes, sorted(i for c in chunks for i in c.items), sum(c.changes for c in chunks)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 12), st.booleans()), max_size=14), min_size=1, max_size=3),
       st.lists(st.integers(1, 5), min_size=1, max_size=6), st.sampled_from([None, 2, 5, 40]))
def test_batches_mixed_with_records_flatten_as_records_do(commits: list[list[tuple[int, bool]]], cuts: list[int],
                                                          limit: int | None) -> None:
    """Commits of changes in any order (keys repeated, removed, added again in a later
    commit), each given as records, and again with its keys new in the commit (not held by
    the version before) as added batches cut anywhere, in the order given, then the rest as
    records: the same versions, closes, items and errors — a batch noted late (its keys and
    rows only once a record or the next commit asks) checks what the records check. With a
    limit, each commit's keys in order (a commit split between chunks must list them so)."""
    plans: list[SyncPlan] = []
    added: set[tuple[str, int]] = set()
    live: set[str] = set()
    for as_batches in (False, True):
        made = []
        for day, changes in enumerate(commits, start=1):
            if limit is not None:
                changes = sorted(dict(changes).items())
            records = [ChangeRecord(f"k{k:02d}", ItemRecord(f"k{k:02d}", f"bafyi{k}.{day}", None, None) if keep else None)
                       for k, keep in changes]
            out: list[Any] = list(records)
            if as_batches:  # each run of keys new in the commit: batches of ``cuts`` keys, in turn
                out, run, turn = [], [], 0
                for r in [*records, None]:
                    if r is not None and r.new is not None and r.key not in live:
                        run.append(r)
                        continue
                    while run:
                        size = cuts[turn % len(cuts)]
                        turn += 1
                        part, run = run[:size], run[size:]
                        out.append(AddedBatch([p.key for p in part], [p.new.item_cid for p in part if p.new],
                                              [None] * len(part), [None] * len(part)))
                        added.update((p.key, day - 1) for p in part)
                    if r is not None:
                        out.append(r)
                live |= {r.key for r in records if r.new is not None}
                live -= {r.key for r in records if r.new is None}
            made.append(_commit(f"c{day}", out, day))
        plans.append(SyncPlan("n", f"c{len(commits)}", False, made))
    assert _flatten(plans[1], limit, added) == _flatten(plans[0], limit, added)
