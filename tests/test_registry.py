"""The Python API end to end, and bad input leaving everything as it was."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.blockstore.sqlite import DB_NAME
from halodb.errors import (
    BlockNotFoundError,
    CarError,
    InputError,
    InvalidItemError,
    MissingParentError,
    NameNotFoundError,
    NothingToCommitError,
    PathConflictError,
    TimeOrderError,
    UnknownKeyError,
    VerificationError,
)
from halodb.index.history import write_commit
from halodb.index.model import Commit
from halodb.ipld import CID
from halodb.testing.blockstore import damage_row

from .conftest import cid_for, make_item


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under home except the cache (compared separately) and the block database,
    whose log index changes with every reader: its blocks instead, each CID and its bytes."""
    out = {}
    for p in sorted(home.rglob("*")):
        if p.is_file() and "cache.duckdb" not in p.name and not p.name.startswith(("blocks.sqlite3", ".migrate.lock")):
            out[str(p.relative_to(home))] = p.read_bytes()
    db = home / "blocks" / DB_NAME
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for cid, data in con.execute("SELECT cid, data FROM blocks ORDER BY cid"):
                out[f"block {bytes(cid).hex()}"] = bytes(data)
        finally:
            con.close()
    return out


def build_three_versions(reg: Any) -> list[CID]:
    reg.add([make_item("f1", cid_for("a1"), path="products/HALO/f1.zarr"), make_item("f2", cid_for("b1"))])
    c1 = reg.commit("two flights", time="2024-08-12T00:00:00Z")
    reg.add([make_item("f1", cid_for("a2"), path="products/HALO/f1.zarr")])
    c2 = reg.commit("reprocess f1", time="2024-08-20T00:00:00Z")
    reg.remove(["halo/f2"])
    reg.add([make_item("f3", cid_for("c1"))])
    c3 = reg.commit("withdraw f2, add f3", time="2024-09-01T00:00:00Z")
    return [c1, c2, c3]


def test_round_trip_log_diff_sync_time_travel(registry: Any) -> None:
    c1, c2, c3 = build_three_versions(registry)
    assert registry.head == c3
    log = list(registry.log())
    assert [(e.added, e.changed, e.removed) for e in log] == [(1, 0, 1), (0, 1, 0), (2, 0, 0)]
    assert [e.cid for e in log] == [c3, c2, c1]
    changes = registry.diff(str(c1), str(c3))
    assert [(c.key, c.kind) for c in changes] == [("halo/f1", "changed"), ("halo/f2", "removed"), ("halo/f3", "added")]
    registry.publish("latest")
    r = registry.sync("latest")
    assert (r.commits, r.reset) == (3, False)
    assert registry.sync("latest").up_to_date
    _, rows = registry.sql("SELECT key, data_cid FROM items ORDER BY key")
    assert rows == [("halo/f1", cid_for("a2")), ("halo/f3", cid_for("c1"))]
    assert registry.cid_at("halo/f1", "2024-08-15", name="latest") == cid_for("a1")
    assert registry.cid_at("products/HALO/f1.zarr", "2024-08-25", name="latest") == cid_for("a2")
    assert registry.cid_at("halo/f2", "2024-09-02", name="latest") is None
    assert registry.cid_at("halo/f1", "2024-08-01", name="latest") is None
    assert registry.cid_at_dag("halo/f1", "2024-08-15", "latest") == cid_for("a1")
    # NAME@TIME references
    assert registry.resolve("latest@2024-08-25T00:00:00Z") == c2
    _, rows = registry.sql("SELECT count(*) FROM items_at(TIMESTAMPTZ '2024-08-15')")
    assert rows == [(2,)]


def test_incremental_sync_after_the_name_moves(registry: Any) -> None:
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest", c1)
    assert registry.sync("latest").commits == 1
    registry.publish("latest", c3)
    r = registry.sync("latest")
    assert (r.commits, r.changes, r.reset) == (2, 3, False)
    _, rows = registry.sql("SELECT key, valid_from_commit, valid_to_commit FROM item_versions WHERE key='halo/f1' ORDER BY valid_from")
    assert rows == [("halo/f1", str(c1), str(c2)), ("halo/f1", str(c2), None)]


def test_rewritten_history_resets_the_name(registry: Any) -> None:
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest")
    registry.sync("latest")
    registry.publish("latest", c1, force=True)  # the name moved back: not a descendant of the synced head
    r = registry.sync("latest", allow_rewind=True)  # followed on purpose (refused otherwise: tests/test_rewind.py)
    assert r.reset
    _, rows = registry.sql("SELECT key FROM items ORDER BY key")
    assert rows == [("halo/f1",), ("halo/f2",)]


def test_same_items_in_any_order_give_the_same_index(tmp_path: Path) -> None:
    items = [make_item(f"f{i}", cid_for(str(i))) for i in range(60)]
    roots = []
    for n, order in enumerate((items, list(reversed(items)))):
        reg = halodb.open(tmp_path / f"h{n}", create=True)
        for i in range(0, 60, 13):
            reg.add(order[i:i + 13])
            reg.commit(f"batch {i}", time="2024-08-12T00:00:00Z")
        roots.append(reg.index.load_root(halodb.index.history.load_commit(reg.store, reg.head).index))
        reg.close()
    assert roots[0] == roots[1]


def test_invalid_item_stages_nothing(registry: Any, home: Path) -> None:
    registry.add([make_item("ok", cid_for("ok"))])
    before = snapshot(home)
    bad = make_item("bad", cid_for("x"))
    bad["properties"]["datetime"] = "yesterday"
    with pytest.raises(InvalidItemError) as info:
        registry.add([("items/bad.json", bad)])
    assert "items/bad.json" in str(info.value) and "datetime" in str(info.value)
    assert snapshot(home) == before


def test_unknown_key_removal(registry: Any, home: Path) -> None:
    build_three_versions(registry)
    before = snapshot(home)
    with pytest.raises(UnknownKeyError) as info:
        registry.remove(["halo/nope"])
    assert info.value.key == "halo/nope"
    assert snapshot(home) == before


def test_time_going_backwards(registry: Any, home: Path) -> None:
    build_three_versions(registry)
    registry.add([make_item("late", cid_for("late"))])
    before = snapshot(home)
    with pytest.raises(TimeOrderError) as info:
        registry.commit("too early", time="2024-08-01T00:00:00Z")
    assert "2024-08-01" in str(info.value) and "2024-09-01" in str(info.value)
    assert snapshot(home) == before


def test_nothing_to_commit(registry: Any) -> None:
    with pytest.raises(NothingToCommitError):
        registry.commit("empty")


def test_path_conflict(registry: Any) -> None:
    registry.add([make_item("a", cid_for("a"), path="p/x.zarr")])
    registry.commit("a", time="2024-08-12T00:00:00Z")
    registry.add([make_item("b", cid_for("b"), path="p/x.zarr")])
    with pytest.raises(PathConflictError) as info:
        registry.commit("b", time="2024-08-13T00:00:00Z")
    assert "p/x.zarr" in str(info.value)


def test_commit_with_missing_parent(registry: Any) -> None:
    build_three_versions(registry)
    head = halodb.index.history.load_commit(registry.store, registry.head)
    ghost = CID.for_bytes(b"no such commit")
    with pytest.raises(MissingParentError) as info:
        write_commit(registry.store, Commit(head.index, datetime(2024, 9, 2, tzinfo=timezone.utc), "x", "y", (ghost,)))
    assert str(ghost) in str(info.value)


def test_sync_of_a_history_with_a_missing_block_changes_nothing(registry: Any, home: Path) -> None:
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest", c1)
    registry.sync("latest")
    _, before = registry.sql("SELECT * FROM item_versions ORDER BY key, valid_from")
    registry.publish("latest", c3)
    registry.store.delete(c2)  # a commit in the middle of the chain is gone
    with pytest.raises(MissingParentError):
        registry.sync("latest")
    _, after = registry.sql("SELECT * FROM item_versions ORDER BY key, valid_from")
    assert after == before and registry.cache.sync_state("latest").head == str(c1)


def test_corrupt_block_is_detected_and_cache_unchanged(registry: Any, home: Path) -> None:
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest", c1)
    registry.sync("latest")
    registry.publish("latest", c3)
    root = registry.index.load_root(halodb.index.history.load_commit(registry.store, c3).index)
    assert registry.index.get(root, "halo/f3").inline is not None  # index format 3: the item is in the leaf
    assert registry.index.datasets.height(root.datasets) == 0
    registry.store.flush()
    registry.node_cache.clear()  # (decoded when written: read the block again)
    damage_row(home / "blocks" / DB_NAME, root.datasets)  # wrong bytes under the CID of the leaf holding the item
    with pytest.raises(VerificationError) as info:
        registry.sync("latest")
    assert str(root.datasets) in str(info.value)
    assert registry.cache.sync_state("latest").head == str(c1)


def test_unknown_name(registry: Any) -> None:
    with pytest.raises(NameNotFoundError) as info:
        registry.sync("nope")
    assert info.value.name == "nope"


@pytest.mark.parametrize("ref", ["bafyreinotacid", "bafyreinotacid@2024-09-01", "QmTooShort"])
def test_a_mistyped_cid_is_said_to_be_neither_a_name_nor_a_cid(registry: Any, ref: str) -> None:
    with pytest.raises(NameNotFoundError, match=r"unknown name '(bafyreinotacid|QmTooShort)'.*; and not a CID: ") as info:
        registry.resolve(ref)
    assert info.value.name == ref.partition("@")[0]
    with pytest.raises(NameNotFoundError) as plain:  # a name that looks like none keeps the plain message
        registry.resolve("nope@2024-09-01")
    assert "not a CID" not in plain.value.message


def test_car_round_trip_into_a_fresh_registry(registry: Any, tmp_path: Path) -> None:
    c1, c2, c3 = build_three_versions(registry)
    root, count = registry.export_car(str(c3), tmp_path / "out.car")
    assert root == c3 and count > 6
    other = halodb.open(tmp_path / "other", create=True)
    assert other.import_car(tmp_path / "out.car") == [c3]
    other.names.publish("imported", c3)
    assert other.sync("imported").commits == 3
    assert other.cid_at("halo/f1", "2024-08-15", name="imported") == cid_for("a1")
    other.close()


def test_truncated_car_imports_nothing(registry: Any, tmp_path: Path) -> None:
    build_three_versions(registry)
    registry.export_car("HEAD", tmp_path / "out.car")
    data = (tmp_path / "out.car").read_bytes()
    (tmp_path / "cut.car").write_bytes(data[: len(data) - 7])
    other = halodb.open(tmp_path / "other", create=True)
    with pytest.raises(CarError):
        other.import_car(tmp_path / "cut.car")
    assert list(other.store.iter_cids()) == []  # not one block of it stored
    other.close()


def test_get_reads_back_the_item(registry: Any) -> None:
    build_three_versions(registry)
    key, entry, item = registry.get("products/HALO/f1.zarr")
    assert key == "halo/f1" and item["id"] == "f1" and entry.data == cid_for("a2")
    with pytest.raises(UnknownKeyError):
        registry.get("halo/none")
    with pytest.raises(BlockNotFoundError):
        registry.store.get(CID.for_bytes(b"absent"))


def test_registry_missing_home(tmp_path: Path) -> None:
    reg = halodb.open(tmp_path / "nowhere")
    with pytest.raises(halodb.RegistryError) as info:
        _ = reg.head
    assert "halodb init" in str(info.value)
    reg.close()
    assert not os.path.exists(tmp_path / "nowhere" / "state.json")


def test_head_of_a_reader_home_points_to_its_names(registry: Any) -> None:
    """A home that only follows names has no HEAD: the error says which names to ask."""
    with pytest.raises(NameNotFoundError, match="no commits of its own yet$"):
        registry.resolve("HEAD")
    registry.names.publish("mirror", cid_for("anything"))
    with pytest.raises(NameNotFoundError, match=r"ask a name instead \(--name NAME\): this home knows mirror"):
        registry.resolve("HEAD@2024-09-01")


def test_name_at_a_commit_cid_is_that_version_of_the_name(registry: Any) -> None:
    """`latest@<commit CID>` names that version when it is on the name's main line (the error
    for an unknown tag offers it); a commit not on it is an error naming both."""
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest", c2)
    assert registry.resolve(f"latest@{c1}") == c1 and registry.resolve(f"latest@{c2}~1") == c1
    assert registry.resolve(f"HEAD@{c2}") == c2
    with pytest.raises(NameNotFoundError, match=f"commit {c3} is not a version of latest"):
        registry.resolve(f"latest@{c3}")  # newer than the name's head
    with pytest.raises(NameNotFoundError, match="has no tag v9"):
        registry.resolve("latest@v9")


def test_gc_keeps_what_heads_reach_and_drops_the_rest(registry: Any, home: Path) -> None:
    c1, c2, c3 = build_three_versions(registry)
    registry.publish("latest", c3)
    orphan = registry.store.put(b"garbage nobody links to", codec=0x55)
    # a small item is staged with its bytes (no block); a large one (linked from the index) as a block
    registry.add([make_item("staged", cid_for("staged")), make_item("large", cid_for("large"), title="x" * 3000)])
    small, large = (registry.staged().upserts[f"halo/{k}"] for k in ("staged", "large"))
    assert small.inline is not None and not registry.store.has(small.item) and large.inline is None
    kept, would = registry.gc(dry_run=True)
    assert would >= 1 and registry.store.has(orphan)  # (the orphan, and the empty tree the first commit started from)
    kept, deleted = registry.gc()
    assert deleted == would and not registry.store.has(orphan) and registry.store.has(large.item)
    assert registry.staged().upserts["halo/staged"].inline == small.inline
    assert registry.gc() == (kept, 0)
    registry.reset_stage()
    registry.sync("latest")  # the whole history is still there
    assert registry.cid_at("halo/f1", "2024-08-15", name="latest") == cid_for("a1")
    assert registry.diff(str(c1), str(c3))
    assert registry.gc()[1] == 1 and not registry.store.has(large.item)  # unstaged: garbage now


def test_gc_keeps_the_data_that_versions_and_the_stage_name(registry: Any, home: Path) -> None:
    """A dataset scanned (or read and cached) into the home's store is not garbage: gc keeps
    the data DAG of every dataset a kept version or the stage names — the whole DAG, CIDv0
    spelling too — and drops the data no version names any more."""
    from halodb.unixfs.build import put_directory, put_file

    def zarr(tag: bytes) -> CID:
        return put_directory(registry.store, {".zgroup": put_file(registry.store, b"{}" + tag),
                                              "x": put_directory(registry.store, {"0": put_file(registry.store, tag * 70_000,
                                                                                                chunk=65_536)})})

    def dag(root: CID) -> set[CID]:
        from halodb.api.gc import local_dag

        return local_dag(registry.store, [root])

    committed, v0_spelled, staged, dropped = zarr(b"c"), zarr(b"v"), zarr(b"s"), zarr(b"d")
    # 2 folders, .zgroup (one raw block), x/0 (2 chunks under a root node)
    assert len(dag(committed)) == 6 and CID(v0_spelled.multihash).version == 0
    registry.add([make_item("f1", str(committed)), make_item("f2", str(CID(v0_spelled.multihash))),
                  make_item("f3", str(dropped))])
    registry.commit("data", time="2024-08-12T00:00:00Z")
    registry.add([make_item("f3", cid_for("elsewhere"))])
    registry.commit("f3 moved away", time="2024-08-13T00:00:00Z")
    registry.add([make_item("f4", str(staged))])
    kept_blocks = dag(committed) | dag(v0_spelled) | dag(staged)
    dropped_blocks = dag(dropped)
    registry.gc()
    assert all(registry.store.has(c) for c in kept_blocks)
    assert all(registry.store.has(c) for c in dropped_blocks)  # f3 had it in the first version: history keeps it
    registry.reset_stage()
    registry.gc()
    assert not any(registry.store.has(c) for c in dag(staged) - kept_blocks) and not registry.store.has(staged)
    assert all(registry.store.has(c) for c in dag(committed) | dag(v0_spelled))


def test_prefetch_fetches_changed_nodes_one_batch_per_level(tmp_path: Path) -> None:
    """Over a remote store, an incremental diff's nodes arrive in one batch per tree level."""
    from halodb.blockstore import MemoryStore
    from halodb.blockstore.caching import CachingStore
    from halodb.index.index import Index
    from halodb.index.prolly import DELETE
    from halodb.sync import prefetch_changed

    class CountingRemote(MemoryStore):
        batches: list[int] = []

        def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
            self.batches.append(len(cids))
            return super()._get_many(cids)

    remote = CountingRemote()
    writer = Index(remote)
    entries = {f"c/k{i:05d}": {"item": CID.for_bytes(str(i).encode()), "data": f"d{i}"} for i in range(5000)}
    old = writer.datasets.build(entries.items())
    new = writer.datasets.mutate(old, {"c/k00010": DELETE, "c/k02500": {"item": CID.for_bytes(b"x")}, "c/k04999x": {"item": CID.for_bytes(b"y")}})
    local = MemoryStore()
    for cid in writer.datasets.node_cids(old):  # the client has synced `old` already
        local.put_block(cid, remote.get(cid))
    store = CachingStore(local, remote)
    reader = Index(store)
    remote.batches.clear()
    fetched = prefetch_changed(store, reader, old, new)
    height = reader.datasets.height(new)
    assert len([b for b in remote.batches if b]) <= height + 1
    assert 0 < fetched <= 3 * (height + 1)
    remote.stats.reset()
    assert [c.key for c in reader.datasets.diff(old, new)] == ["c/k00010", "c/k02500", "c/k04999x"]
    assert remote.stats.blocks_read == 0  # the diff read everything locally


def test_a_version_reference_with_a_sub_path_is_refused(registry: Any) -> None:
    from halodb.errors import InvalidNameError

    cid = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    with pytest.raises(InvalidNameError, match="names a commit, not a path"):
        registry.resolve(f"ipfs://{cid}/products/x.zarr")


def test_rm_looks_up_its_keys_without_reading_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``rm`` (and import-tree's emptiness check) touch only the keys asked for: a stage of a
    million rows is neither read into memory nor rewritten (it was: 9 s and 600 MB at 1M)."""
    from halodb.api.home import Home
    from halodb.api.stagedb import StageDB

    reg = halodb.open(tmp_path / "home", create=True)
    reg.add([make_item("kept", cid_for("kept")), make_item("old", cid_for("old"))])
    reg.commit("two")
    reg.add([make_item("new", cid_for("new")), make_item("old", cid_for("old2"))])

    def whole(*_: Any) -> Any:
        raise AssertionError("the whole stage was read")

    monkeypatch.setattr(StageDB, "stage", whole)
    monkeypatch.setattr(StageDB, "replace", whole)
    monkeypatch.setattr(Home, "stage", whole)
    reg.remove(["halo/new", "halo/old"])  # staged only: unstaged; committed (and staged anew): removed
    assert [k for k, _ in reg.state.db.upserts()] == [] and list(reg.state.db.removal_keys()) == ["halo/old"]
    with pytest.raises(UnknownKeyError, match="'halo/new'"):  # unstaged, and in no version
        reg.remove(["halo/kept", "halo/new"])
    assert reg.stage_counts() == (0, 1)  # nothing staged by the refused call
    with pytest.raises(InputError, match="stage is not empty"):
        reg.import_tree({"a.zarr": cid_for("a")}, collection="halo")
