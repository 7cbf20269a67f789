"""Index format 3 (issue 15, part 6): items of at most 2 KiB travel inline in their dataset
entries. The same history written in format 2 and in format 3 syncs to the same cache; a
history that moves from format 2 to 3 still syncs, collects, exports and proves; an inline
item is checked as a fetched item block is; and a change stays O(log n) blocks. Real
SQLite block stores and DuckDB caches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.api.registry import Registry
from halodb.blockstore import MemoryStore
from halodb.blockstore.base import BlockStore
from halodb.errors import SchemaError
from halodb.index.commit import commit_changes
from halodb.index.history import load_commit
from halodb.index.index import Index
from halodb.index.model import INLINE_MAX, Entry
from halodb.index.proof import verify_proof
from halodb.index.reachable import reachable
from halodb.ipld import CID, encode, make_block
from halodb.util.times import parse_time

from .conftest import cid_for, make_item

LARGE = "a description longer than an inline item may be. " * 50  #: makes an item link, not inline


def items(n: int, version: int = 1, large_every: int = 5) -> list[dict[str, Any]]:
    """``n`` items, every ``large_every``-th larger than INLINE_MAX."""
    out = []
    for i in range(n):
        item = make_item(f"f{i:03d}", cid_for(f"v{version}-{i}"), path=f"products/HALO/f{i:03d}.zarr")
        if i % large_every == 0:
            item["properties"]["description"] = LARGE
        out.append(item)
    return out


def writing_format(reg: Registry, inline_items: bool) -> Registry:
    """The registry, writing index format 3 (``inline_items``) or formats 1 and 2."""
    reg.index = Index(reg.store, reg.node_cache, inline_items=inline_items)
    return reg


def history(reg: Registry) -> list[CID]:
    """Three versions: 60 items; 10 changed and one removed; 5 added."""
    c1 = (reg.add(items(60)), reg.commit("60", time="2024-08-12T00:00:00Z"))[1]
    reg.add(items(10, version=2))
    reg.remove(["halo/f059"])
    c2 = reg.commit("10 changed, one removed", time="2024-08-20T00:00:00Z")
    reg.add([make_item(f"g{i}", cid_for(f"g{i}")) for i in range(5)])
    c3 = reg.commit("5 added", time="2024-09-01T00:00:00Z")
    return [c1, c2, c3]


def cache_rows(reg: Registry) -> tuple[list[Any], list[Any]]:
    versions = reg.sql("SELECT key, item_cid, data_cid, path, valid_from, valid_to FROM item_versions "
                       "ORDER BY key, valid_from")[1]
    current = reg.sql("SELECT key, item_cid, CAST(item AS VARCHAR) FROM items ORDER BY key")[1]
    return versions, current


def test_formats_2_and_3_sync_to_the_same_cache(tmp_path: Path) -> None:
    rows = []
    for inline_items in (False, True):
        with writing_format(halodb.open(tmp_path / f"home-{inline_items}", create=True), inline_items) as reg:
            heads = history(reg)
            root = reg.index.load_root(load_commit(reg.store, heads[-1]).index)
            assert root.version == (3 if inline_items else 1)
            entries = dict(reg.index.entries(root))
            held = {k for k, e in entries.items() if e.inline is not None}
            assert held == ({k for k in entries if not k.startswith("halo/f") or int(k[-3:]) % 5} if inline_items
                            else set())
            reg.publish("n")
            reg.sync("n")
            rows.append(cache_rows(reg))
            assert reg.get("halo/f001")[2]["id"] == "f001" and reg.get("halo/f000")[2]["id"] == "f000"
    assert rows[0] == rows[1] and len(rows[0][1]) == 64


def test_a_history_that_moves_from_format_2_to_3_syncs_collects_exports_and_proves(tmp_path: Path) -> None:
    with writing_format(halodb.open(tmp_path / "home", create=True), False) as reg:
        c1, c2, _ = history(reg)
    with halodb.open(tmp_path / "home") as reg:  # a HaloDB of now: its next commit is format 3
        reg.add(items(3, version=3))
        c4 = reg.commit("3 changed", time="2024-09-10T00:00:00Z")
        versions = [reg.index.load_root(load_commit(reg.store, c).index).version for c in (c1, c2, c4)]
        assert versions == [1, 1, 3]
        assert [(c.key, c.kind) for c in reg.diff(str(c2), str(c4))][:3] == [
            ("halo/f000", "changed"), ("halo/f001", "changed"), ("halo/f002", "changed")]
        reg.publish("n")
        reg.sync("n")
        expected = cache_rows(reg)
        kept, _ = reg.gc()
        assert kept > 0
        for c in (c1, c4):  # every version still reads after gc: linked items kept, inline ones in leaves
            root = reg.index.load_root(load_commit(reg.store, c).index)
            for _, entry in reg.index.entries(root):
                assert reg.index.item(entry)["type"] == "Feature"
        root4 = reg.index.load_root(load_commit(reg.store, c4).index)
        walked = set(reachable(reg.store, reg.index, c4))
        small, large = (reg.index.get(root4, k) for k in ("halo/f001", "halo/f000"))
        assert small is not None and small.inline is not None and small.item not in walked  # in its leaf only
        assert large is not None and large.inline is None and large.item in walked  # a block, kept
        head, count = reg.export_car("n", tmp_path / "all.car")
        assert count == len(walked)
        blocks = reg.prove("products/HALO/f001.zarr", "2024-09-15", tmp_path / "new.car")
        old_blocks = reg.prove("products/HALO/f001.zarr", "2024-08-25", tmp_path / "old.car")
    answer, old = verify_proof(str(tmp_path / "new.car")), verify_proof(str(tmp_path / "old.car"))
    assert (answer.key, answer.data, answer.blocks) == ("halo/f001", cid_for("v3-1"), blocks)
    assert (old.key, old.data, old.blocks) == ("halo/f001", cid_for("v2-1"), old_blocks)
    with halodb.open(tmp_path / "other", create=True) as other:  # the CAR alone: a new home syncs it
        assert other.import_car(tmp_path / "all.car") == [head]
        other.names.publish("n", head)
        other.sync("n")
        assert cache_rows(other) == expected


def put_item(store: BlockStore, value: Any) -> CID:
    cid, data = make_block(value)
    store.put_block(cid, data)
    return cid


def test_an_inline_item_that_is_no_stac_item_is_skipped_as_a_block_would_be(tmp_path: Path) -> None:
    with halodb.open(tmp_path / "home", create=True) as reg:
        good = put_item(reg.store, make_item("ok", cid_for("ok")))  
        bad = put_item(reg.store, {"id": "no feature"})  
        head = commit_changes(reg.store, reg.index, None, {"c/ok": Entry(good), "c/bad": Entry(bad)}, set(),
                              time=parse_time("2024-08-12"), author="mallory", message="one bad item")
        entries = dict(reg.index.entries(reg.index.load_root(load_commit(reg.store, head).index)))
        assert entries["c/bad"].inline is not None and entries["c/bad"].item == bad
        reg.names.publish("n", head)
        result = reg.sync("n")
        assert [(s.key, s.item_cid, s.reason) for s in result.skipped] == [
            ("c/bad", str(bad), "not a STAC item: 'type' is missing, not 'Feature'")]
        assert reg.sql("SELECT key FROM items")[1] == [("c/ok",)]


def test_inline_bytes_are_refused_when_too_large_or_in_an_older_format() -> None:
    with pytest.raises(SchemaError, match="inline items take 1 to 2048 bytes"):
        Entry.from_ipld({"item": b"\xa0" * (INLINE_MAX + 1)}, cid=None)
    with pytest.raises(SchemaError, match="only index format 3 allows"):
        Entry.from_ipld({"item": b"\xa0"}, cid=None, inline=False)
    store = MemoryStore()
    index = Index(store)
    root = index.apply(index.empty(), {"c/a": Entry(store.put(b"\xa0"))}, [])
    disguised = type(root)(root.datasets, root.by_path, root.by_data, root.count)  # declared format 1
    with pytest.raises(SchemaError, match="only index format 3 allows"):
        list(index.diff(None, disguised))


def test_an_item_over_the_limit_is_linked_and_its_block_kept() -> None:
    store = MemoryStore()
    index = Index(store)
    small = put_item(store, {"type": "Feature", "id": "s", "properties": {}})
    large = put_item(store, {"type": "Feature", "id": "l", "properties": {"d": "x" * INLINE_MAX}})
    root = index.apply(index.empty(), {"c/s": Entry(small), "c/l": Entry(large)}, [])
    assert index.get(root, "c/s").inline == store.get(small)  # type: ignore[union-attr]
    assert index.get(root, "c/l").inline is None  # type: ignore[union-attr]
    leaf = store.get(root.datasets)
    assert store.get(small) in leaf and store.get(large) not in leaf and bytes(large) in leaf


def test_ten_changes_on_5000_items_write_and_read_few_blocks() -> None:
    """O(log n): a commit of 10 changes rewrites about 10 leaves per tree and their parents,
    and the diff that follows reads about as many; a sync then reads no item block."""
    store = MemoryStore()
    index = Index(store)
    blocks = [make_block({"type": "Feature", "id": f"i{i}", "properties": {"title": f"item {i} " * 60}})
              for i in range(5000)]
    store.put_many(blocks)
    upserts = {f"c/{i:05d}": Entry(cid, cid_for(f"d{i}"), f"p/{i:05d}.zarr") for i, (cid, _) in enumerate(blocks)}
    t = parse_time("2024-08-12")
    c1 = commit_changes(store, index, None, upserts, set(), time=t, author="a", message="5000")
    changed = [make_block({"type": "Feature", "id": f"i{i}", "properties": {"title": "new"}}) for i in range(10)]
    store.put_many(changed)
    before = store.stats.blocks_written
    keys = [f"c/{i * 499:05d}" for i in range(10)]
    c2 = commit_changes(store, index, c1, {k: Entry(cid, cid_for(k), upserts[k].path) for k, (cid, _) in
                                           zip(keys, changed)}, set(), time=t, author="a", message="10")
    written = store.stats.blocks_written - before
    root1, root2 = (index.load_root(load_commit(store, c).index) for c in (c1, c2))
    leaves = sum(1 for c in index.datasets.node_cids(root2.datasets) if index.datasets.load(c).level == 0)
    assert 30 <= leaves <= 120, leaves  # ~64 KiB leaves of ~750-byte entries: ~57
    # two trees change (datasets, by_data): per tree about 10 leaves (a value that moves a
    # boundary takes its neighbour along) and their parents; the index root, commit, history leaf
    assert written <= 2 * (2 * 10 + 6) + 3, written
    fresh = Index(store)  # a cold node cache: count the reads the diff makes
    reads = store.stats.blocks_read
    assert [c.key for c in fresh.diff(root1, root2)] == keys
    read = store.stats.blocks_read - reads
    assert read <= 2 * (2 * 10 + 3), read  # both sides: the changed leaves (and neighbours) and their parents


def test_a_publisher_keeps_writing_format_2_for_readers_not_yet_updated(tmp_path: Path) -> None:
    """HALODB_INDEX_FORMAT=2: versions stay readable by HaloDB before format 3 (every item a
    linked block); switching back to 3 upgrades the next version; a format-2 writer on a
    format-3 head, and a bad value, are exit 2 naming what to do."""
    from .conftest import run_cli_in_process

    home = tmp_path / "home"
    items = tmp_path / "items.ndjson"
    items.write_text("\n".join(json.dumps(make_item(f"f{i}", cid_for(f"d{i}"))) for i in range(3)))
    old = {"HALODB_INDEX_FORMAT": "2"}
    assert run_cli_in_process(home, "init", env=old).code == 0
    assert run_cli_in_process(home, "add", str(items), "--collection", "halo", env=old).code == 0
    assert run_cli_in_process(home, "commit", "-m", "v1", "--time", "2024-09-01T00:00:00Z", env=old).code == 0
    with halodb.open(home) as reg:
        assert reg.head is not None
        root = reg.index.load_root(load_commit(reg.store, reg.head).index)
        assert root.version == 1 and not root.inline_items
        assert all(entry.inline is None and reg.store.has(entry.item) for _, entry in reg.index.entries(root))
    bad = run_cli_in_process(home, "log", env={"HALODB_INDEX_FORMAT": "4"})
    assert bad.code == 2 and bad.err.count("\n") == 1 and "HALODB_INDEX_FORMAT='4'" in bad.err
    assert run_cli_in_process(home, "rm", "halo/f0").code == 0
    assert run_cli_in_process(home, "commit", "-m", "v2", "--time", "2024-09-02T00:00:00Z").code == 0
    with halodb.open(home) as reg:
        assert reg.head is not None
        assert reg.index.load_root(load_commit(reg.store, reg.head).index).version == 3
    assert run_cli_in_process(home, "rm", "halo/f1", env=old).code == 0
    refused = run_cli_in_process(home, "commit", "-m", "v3", env=old)
    assert refused.code == 2 and "cannot be changed by a writer of formats 1 and 2" in refused.err
