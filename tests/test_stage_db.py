"""The stage database (``HOME/stage.sqlite3``, issue 15 part 4): an add writes its batches
into one transaction and a commit onto the empty version builds its trees from the stage
read in sorted order. Real homes, real processes for the kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb import stac
from halodb.api import registry as registry_module
from halodb.api.registry import Registry
from halodb.errors import DoiConflictError, InvalidItemError, PathConflictError, RegistryError, VerificationError
from halodb.ipld import CID
from halodb.ipld.codec import encode_json

from .conftest import cid_for, make_item, run_cli
from .waiting import wait_until


def items(prefix: str, n: int, **kw: str) -> list[dict[str, object]]:
    return [make_item(f"{prefix}{i}", cid_for(f"{prefix}{i}"), path=f"p/{prefix}{i}.zarr", **kw) for i in range(n)]


def legacy_home(tmp_path: Path) -> tuple[Path, str, str]:
    """A home as HaloDB wrote it before the stage database: a commit of halo/a, and halo/b
    staged, both in ``state.json``. Returns the home, the head and the staged item's CID."""
    home = tmp_path / "old"
    with halodb.open(home, create=True) as reg:
        reg.add([make_item("a", cid_for("a"))])
        head = str(reg.commit("first", time="2024-08-12T00:00:00Z"))
        reg.add([make_item("b", cid_for("b"), path="p/b.zarr")])
        entry = reg.staged().upserts["halo/b"]
        assert entry.inline is not None
        reg.store.put_many([(entry.item, entry.inline)])  # (before the stage held bytes, add wrote the block)
        item = str(entry.item)
    (home / "stage.sqlite3").unlink()
    for extra in ("stage.sqlite3-wal", "stage.sqlite3-shm"):
        (home / extra).unlink(missing_ok=True)
    (home / "state.json").write_text(json.dumps({"version": 1, "head": head, "staged": {
        "upserts": {"halo/b": {"item": item, "data": cid_for("b"), "path": "p/b.zarr"}}, "removals": []}}))
    return home, head, item


def test_an_old_state_file_is_read_then_moved_into_the_database_by_the_first_writer(tmp_path: Path) -> None:
    home, head, item = legacy_home(tmp_path)
    with halodb.open(home) as reg:
        assert str(reg.head) == head and set(reg.staged().upserts) == {"halo/b"}
        assert not (home / "stage.sqlite3").exists()  # reading changes nothing
        cid = reg.commit("second", time="2024-08-13T00:00:00Z")
        assert reg.head == cid and not reg.staged()
        assert reg.get("halo/b")[1].path == "p/b.zarr" and reg.get("halo/a")
    assert json.loads((home / "state.json").read_text()) == {"version": 2, "staged": "stage.sqlite3"}


def test_an_old_state_file_is_moved_by_an_add_and_keeps_its_stage(tmp_path: Path) -> None:
    home, head, _ = legacy_home(tmp_path)
    with halodb.open(home) as reg:
        reg.add([make_item("c", cid_for("c"))])
        assert str(reg.head) == head and set(reg.staged().upserts) == {"halo/b", "halo/c"}


def test_a_garbage_stage_database_is_one_line_exit_2(tmp_path: Path) -> None:
    home = tmp_path / "home"
    halodb.open(home, create=True).close()
    (home / "stage.sqlite3").write_bytes(b"\x00garbage" * 1000)
    for args in (["status"], ["log"], ["commit", "-m", "x"]):
        r = run_cli(home, *args)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "stage.sqlite3" in r.err, (args, r.err)
    with pytest.raises(RegistryError):
        halodb.open(home).staged()


def test_a_key_given_twice_in_two_batches_stages_nothing(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "ADD_BATCH", 2)
    registry.add([make_item("old", cid_for("old"))])
    first, *rest = items("x", 5)
    other = make_item("x0", cid_for("other"))
    with pytest.raises(InvalidItemError, match=r"item #6: dataset key 'halo/x0' is also given by item #1"):
        registry.add([first, *rest, other])
    assert set(registry.staged().upserts) == {"halo/old"}
    # the same item twice, in different batches: staged once
    assert registry.add([first, *rest, first]) == [f"halo/x{i}" for i in range(5)]
    assert registry.stage_counts() == (6, 0)
    # a later add gives the key another item: that one is staged (no clash across adds)
    assert registry.add([*rest[:2], other]) == ["halo/x1", "halo/x2", "halo/x0"]
    assert registry.staged().upserts["halo/x0"].item == CID.for_bytes(encode_json(stac.parse_item(other, "x")))


def test_a_stage_database_from_before_the_add_columns_gets_them(registry: Registry,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "ADD_BATCH", 2)
    registry.add([make_item("old", cid_for("old"))])
    with closing(sqlite3.connect(registry.home / "stage.sqlite3")) as con:
        con.execute("ALTER TABLE upserts DROP COLUMN added")
        con.execute("ALTER TABLE upserts DROP COLUMN source")
        con.commit()
    first, *rest = items("x", 5)
    with pytest.raises(InvalidItemError, match=r"item #6: dataset key 'halo/x0' is also given by item #1"):
        registry.add([first, *rest, make_item("x0", cid_for("other"))])
    assert registry.add([first, *rest, first]) == [f"halo/x{i}" for i in range(5)]
    assert registry.stage_counts() == (6, 0)


def test_a_commit_onto_the_empty_version_builds_the_same_trees_as_one_by_changes(tmp_path: Path) -> None:
    every = items("s", 300) + [make_item("d", cid_for("d"))]
    every[-1]["properties"]["sci:doi"] = "10.82246/D"  # type: ignore[index]
    with halodb.open(tmp_path / "one", create=True) as one, halodb.open(tmp_path / "two", create=True) as two:
        one.add(every)
        whole = one.index.load_root(one.version(one.commit("all", time="2024-08-12T00:00:00Z"))[1].index)
        two.add(every[:100])
        two.commit("part", time="2024-08-12T00:00:00Z")
        two.add(every[100:])  # onto a version that is not empty: by changes
        stepped = two.index.load_root(two.version(two.commit("rest", time="2024-08-12T00:00:00Z"))[1].index)
    assert whole == stepped and whole.count == 301 and whole.by_doi is not None


@pytest.mark.parametrize("field", ["path", "doi"])
def test_an_initial_commit_with_a_claim_twice_commits_nothing(registry: Registry, field: str) -> None:
    a, b = make_item("a", cid_for("a"), path="p/same.zarr"), make_item("b", cid_for("b"), path="p/same.zarr")
    if field == "doi":
        a, b = make_item("a", cid_for("a")), make_item("b", cid_for("b"))
        a["properties"]["sci:doi"] = b["properties"]["sci:doi"] = "10.82246/same"
    registry.add([a, b])
    error = PathConflictError if field == "path" else DoiConflictError
    with pytest.raises(error, match=f"datasets 'halo/a' and 'halo/b' both claim the {field if field == 'path' else 'DOI'}"):
        registry.commit("x", time="2024-08-12T00:00:00Z")
    assert registry.head is None and registry.stage_counts() == (2, 0)


def test_a_killed_add_leaves_the_stage_as_it_was(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add([make_item("kept", cid_for("kept"))])
        reg.commit("first", time="2024-08-12T00:00:00Z")
        reg.add([make_item("staged", cid_for("staged"))])
        head, before = reg.head, reg.staged()
    # a first batch (ADD_BATCH items) and part of a second one, then stdin stays open: the add
    # has staged the first batch, uncommitted, and waits for the rest
    first = registry_module.ADD_BATCH
    lines = "".join(json.dumps(item) + "\n" for item in items("k", first + 10))
    # (index format 2: every item a block in the store, which tells when the first batch is done;
    # in format 3 the batch's rows and bytes sit in the stage's open transaction, unseen)
    proc = subprocess.Popen([sys.executable, "-m", "halodb", "--home", str(home), "add", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HALODB_AUTHOR": "tester", "HALODB_INDEX_FORMAT": "2"})
    assert proc.stdin is not None
    proc.stdin.write(lines.encode())
    proc.stdin.flush()
    last_of_first = items("k", first)[-1]

    def stored() -> bool:  # the first batch's blocks are stored after its rows are staged
        with closing(sqlite3.connect(f"file:{home / 'blocks' / 'blocks.sqlite3'}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT count(*) FROM blocks").fetchone()[0]) > first

    wait_until(stored, timeout=120, what=f"the add to store its first batch (up to {last_of_first['id']})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    with halodb.open(home) as reg:
        assert reg.head == head and reg.staged() == before
        reg.add([make_item("after", cid_for("after"))])  # the lock and the database are free again
        assert set(reg.staged().upserts) == {"halo/staged", "halo/after"}


def test_a_killed_add_of_items_staged_with_their_bytes_leaves_the_stage_and_its_pack(tmp_path: Path) -> None:
    """Index format 3: the bytes go to the pack before the transaction commits. An add killed
    once its first batch is in the pack leaves the stage as it was; the next add cuts the
    pack back to what the stage names and goes on."""
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("s", 3))
        before = reg.staged()
    (pack,) = home.glob("stage.*.pack")
    size = pack.stat().st_size
    first = registry_module.ADD_BATCH
    lines = "".join(json.dumps(item) + "\n" for item in items("k", first + 10))
    proc = subprocess.Popen([sys.executable, "-m", "halodb", "--home", str(home), "add", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HALODB_AUTHOR": "tester"})
    assert proc.stdin is not None
    proc.stdin.write(lines.encode())
    proc.stdin.flush()
    wait_until(lambda: pack.stat().st_size > size, timeout=120, what="the add to write its first batch's bytes")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    assert pack.stat().st_size > size  # (the killed add's tail, named by nothing)
    with halodb.open(home) as reg:
        assert reg.staged() == before
        reg.add(items("after", 2))
        assert pack.stat().st_size < size + 2 * 4096  # cut back, then two items appended
        assert set(reg.staged().upserts) == set(before.upserts) | {"halo/after0", "halo/after1"}
        reg.commit("all", time="2024-08-12T00:00:00Z")
        assert reg.get("halo/after1")[1].inline is not None


def test_build_sorted_in_small_batches_is_apply_on_the_empty_version() -> None:
    from halodb.blockstore import MemoryStore
    from halodb.index.index import Index
    from halodb.index.model import Entry
    from halodb.ipld import CID, make_block

    for inline in (True, False):
        store = MemoryStore()
        index = Index(store, inline_items=inline)
        entries: dict[str, Entry] = {}
        for i in range(700):
            cid, data = make_block({"id": f"i{i}", "pad": "x" * (i % 50)})
            store.put_many([(cid, data)])
            entries[f"c/{i:04d}"] = Entry(cid, f"bafkq{i % 90}", f"p/{i}.zarr", f"10.1/{i}" if i % 3 else None)
        ordered = sorted(entries.items())
        built = index.build_sorted(
            ordered, sorted((e.path, k) for k, e in ordered if e.path), sorted(f"{e.data}/{k}" for k, e in ordered if e.data),
            sorted((e.doi, k) for k, e in ordered if e.doi), batch=7)
        assert built == index.apply(index.empty(), entries, [])
        assert built.count == 700 and isinstance(built.datasets, CID)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the lookup trees are built in a forked child")
@pytest.mark.parametrize("store_kind", ["sqlite", "memory"])
def test_build_sorted_with_its_lookup_trees_in_a_child_builds_the_same_version(
        tmp_path: Path, store_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``parallel``: a child process builds the lookup trees into the store (SQLite: shared);
    the same blocks as built in one process. A store in memory is the child's own copy, so
    the parent builds them again; and a path claimed twice is raised in the parent."""
    import threading

    from halodb.blockstore import MemoryStore, SqliteStore
    from halodb.index import index as index_module
    from halodb.index.index import Index
    from halodb.index.model import Entry
    from halodb.ipld import make_block

    children: list[int] = []

    class Recorded(index_module._Forked):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            children.append(self.pid)

    monkeypatch.setattr(index_module, "_Forked", Recorded)
    # (a pytest-xdist worker runs threads of its own, which the child never touches)
    monkeypatch.setattr(threading, "active_count", lambda: 1)

    alone, store = MemoryStore(), SqliteStore(tmp_path / "blocks") if store_kind == "sqlite" else MemoryStore()
    entries: dict[str, Entry] = {}
    for i in range(3000):
        cid, block = make_block({"id": f"i{i}", "pad": "x" * (i % 50)})
        for s in (alone, store):
            s.put_many([(cid, block)])
        entries[f"c/{i:04d}"] = Entry(cid, f"bafkq{i % 90}", f"p/{i}.zarr", f"10.1/{i}" if i % 3 else None)
    ordered = sorted(entries.items())
    paths = sorted((e.path, k) for k, e in ordered if e.path)
    data = sorted(f"{e.data}/{k}" for k, e in ordered if e.data)
    dois = sorted((e.doi, k) for k, e in ordered if e.doi)

    root = Index(alone).build_sorted(ordered, paths, data, dois)
    assert Index(store).build_sorted(ordered, paths, data, dois, parallel=True) == root
    assert set(store.iter_cids()) == set(alone.iter_cids())  # (in memory: written again by the parent)
    for at in (1, 1700, 2999):  # the second part of the datasets' leaves by another child
        assert Index(store).build_sorted(ordered, paths, data, dois, parallel=True,
                                         tail=(ordered[at][0], ordered[at:])) == root
    assert set(store.iter_cids()) == set(alone.iter_cids())
    claimed_twice = sorted([*paths, ("p/1.zarr", "c/0009")])
    with pytest.raises(PathConflictError, match="p/1.zarr"):
        Index(store).build_sorted(ordered, claimed_twice, data, dois, parallel=True)
    assert len(children) == 8 and all(children)  # every build forked its children
    # item blocks missing on both sides of the split: all of them counted, the first ten named
    gone = [ordered[i] for i in (5, 6, *range(2000, 2020))]
    store.delete_many([e.item for _, e in gone])
    seen: list[tuple[list[tuple[str, Any]], int]] = []

    def refuse(first: list[tuple[str, Any]], count: int) -> None:
        seen.append((first, count))
        raise KeyError("missing")

    for tail in (None, (ordered[1700][0], ordered[1700:]), (ordered[2010][0], ordered[2010:])):
        with pytest.raises(KeyError):
            Index(store).build_sorted(ordered, paths, data, dois, parallel=True, tail=tail, missing=refuse)
        assert seen.pop() == ([(k, e.item) for k, e in gone[:10]], 22), tail
    store.close()


class ListBatches:
    """``(key, entry)`` pairs as :class:`EntryBatch` es of ``size`` (what a stage gives a build)."""

    def __init__(self, pairs: list[tuple[str, Any]], size: int) -> None:
        self.pairs, self.size = pairs, size
        self.read = 0

    def batches(self) -> Any:
        from halodb.index.model import EntryBatch

        self.read += 1
        for start in range(0, len(self.pairs), self.size):
            part = self.pairs[start:start + self.size]
            yield EntryBatch([k for k, _ in part], [e.item.buffer for _, e in part], [e.data for _, e in part],
                             [e.path for _, e in part], [e.doi for _, e in part], [e.inline for _, e in part])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the tail's leaves are built in a forked child")
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_build_sorted_from_batches_builds_what_its_pairs_build(
        tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries in batches of columns (as a commit reads its stage), their values encoded a batch
    at a time, give the version their ``(key, entry)`` pairs give — with entries of every kind
    among them: held inline, held but too large (written and linked), linked and read from the
    store, an item of raw bytes, and absent blocks (counted and named alike); in one process,
    and with a child building the tail's leaves from its own batches."""
    import threading

    from halodb.blockstore import SqliteStore
    from halodb.index.index import Index
    from halodb.index.model import INLINE_MAX, Entry
    from halodb.ipld import make_block

    if not compiled:
        monkeypatch.setenv("HALODB_NATIVE", "0")
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # (an xdist worker's threads never touch the child)
    store = SqliteStore(tmp_path / "blocks")
    entries: dict[str, Entry] = {}
    for i in range(1500):
        cid, block = make_block({"id": f"i{i}", "pad": "x" * (i % 50 if i % 97 else INLINE_MAX)})
        kind = i % 5
        if kind == 4 and i % 3 == 0:  # an item of raw bytes, held
            block = f"raw {i}".encode()
            cid = CID.for_bytes(block, 0x55)
        if kind in (1, 2):
            store.put_many([(cid, block)])
        held = block if kind in (0, 3, 4) else None  # kind 2: linked, in the store; kind 1 too
        if kind == 1 and i % 7 == 0:
            held = None
            store.delete_many([cid])  # absent
        entries[f"c/{i:04d}"] = Entry(cid, f"bafkq{i % 90}" if i % 4 else None, f"p/{i}.zarr" if i % 6 else None,
                                      f"10.1/{i}" if i % 3 else None, inline=held)
    ordered = sorted(entries.items())
    paths = sorted((e.path, k) for k, e in ordered if e.path)
    data = sorted(f"{e.data}/{k}" for k, e in ordered if e.data)
    dois = sorted((e.doi, k) for k, e in ordered if e.doi)
    named: list[tuple[list[tuple[str, CID]], int]] = []

    def note(first: list[tuple[str, CID]], count: int) -> None:
        named.append((first, count))

    expected = Index(store).build_sorted(ordered, paths, data, dois, missing=note)
    assert expected.count < 1500 and named[0][1] == 1500 - expected.count
    for size in (1, 64, 4096):
        assert Index(store).build_sorted(ListBatches(ordered, size), paths, data, dois, missing=note) == expected
        assert named[-1] == named[0], size
    # formats 1 and 2 link every item: batches are read as pairs (their held bytes written as blocks)
    present = [(k, e) for k, e in ordered if e.inline is not None or store.has(e.item)]
    linked = Index(store, inline_items=False)
    assert linked.build_sorted(ListBatches(present, 64), paths, data, dois) == linked.build_sorted(present, paths, data, dois)
    for at in (1, 700, 1499):
        tail = ListBatches(ordered[at:], 100)
        got = Index(store).build_sorted(ListBatches(ordered, 100), paths, data, dois, missing=note, parallel=True,
                                        tail=(ordered[at][0], tail))
        assert got == expected and named[-1] == named[0], at
        assert tail.read == 0  # (read by the child, in its own copy)
    store.close()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_a_stage_read_in_batches_is_its_upserts(tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``upsert_batches`` holds what ``upserts`` reads, row for row, from any key on; a damaged
    staged item is refused there too, naming its key."""
    if not compiled:
        monkeypatch.setenv("HALODB_NATIVE", "0")
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("b", 300))
        db = reg.state.db
        for start in (None, "halo/b150", "halo/c"):
            pairs = [pair for batch in db.upsert_batches(start).batches() for pair in batch.entries()]
            assert [(k, e, e.inline) for k, e in pairs] == [(k, e, e.inline) for k, e in db.upserts(start)], start
    with closing(sqlite3.connect(home / "stage.sqlite3")) as con:
        at, size = con.execute("SELECT at, size FROM upserts WHERE key = 'halo/b7'").fetchone()
    (pack,) = home.glob("stage.*.pack")
    data = bytearray(pack.read_bytes())
    data[at + size // 2] ^= 1
    pack.write_bytes(bytes(data))
    with halodb.open(home) as reg, pytest.raises(VerificationError, match="'halo/b7'"):
        list(reg.state.db.upsert_batches().batches())
    # a pack cut shorter than the stage says (not by HaloDB): not mapped, its rows refused by the Python path
    pack.write_bytes(bytes(data[:at]))
    r = run_cli(home, "commit", "-m", "x", env={"HALODB_NATIVE": "1" if compiled else "0"})
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "damaged" in r.err, r.err


@pytest.mark.parametrize("seed", range(6))
def test_merge_sorted_is_apply(seed: int) -> None:
    import random

    from halodb.blockstore import MemoryStore
    from halodb.errors import UnknownKeyError
    from halodb.index.index import Index
    from halodb.index.model import Entry
    from halodb.ipld import make_block

    rnd = random.Random(seed)
    store = MemoryStore()

    def entry(i: int, v: int) -> Entry:
        cid, data = make_block({"id": f"i{i}", "v": v, "pad": "x" * rnd.randrange(3000)})  # some too large to inline
        store.put_many([(cid, data)])
        return Entry(cid, f"bafkq{v % 7}", f"p/{i}-{v % 3}.zarr", f"10.1/{i}.{v % 2}" if v % 4 else None)

    for old_format in (False, True):
        old_index = Index(store, inline_items=old_format)
        base = old_index.apply(old_index.empty(), {f"c/{i:03d}": entry(i, 0) for i in range(0, 300, 2)}, [])
        index = Index(store)
        upserts = {f"c/{i:03d}": entry(i, rnd.randrange(1, 9)) for i in rnd.sample(range(300), 80)}
        removals = sorted(k for k in (f"c/{i:03d}" for i in range(0, 300, 2)) if k not in upserts and rnd.random() < 0.3)
        merged = index.merge_sorted(base, iter(sorted(upserts.items())), iter(removals))
        assert merged == index.apply(base, upserts, removals), (seed, old_format)
        with pytest.raises(UnknownKeyError, match="c/001"):
            index.merge_sorted(base, iter([]), iter(["c/001"]))


def test_a_large_stage_onto_a_version_is_merged_into_the_same_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = items("m", 120)
    second = items("m", 60, title="changed") + items("n", 40)
    roots = []
    for home, threshold in (("applied", 10**9), ("merged", 1)):
        monkeypatch.setattr(registry_module, "STREAM_COMMIT", threshold)
        with halodb.open(tmp_path / home, create=True) as reg:
            reg.add(first)
            reg.commit("one", time="2024-08-12T00:00:00Z")
            reg.add(second)
            reg.remove([f"halo/m{i}" for i in range(100, 120)])
            cid = reg.commit("two", time="2024-08-13T00:00:00Z")
            roots.append(reg.index.load_root(reg.version(cid)[1].index))
            assert not reg.staged() and reg.head == cid
    assert roots[0] == roots[1] and roots[1].count == 140


def test_a_progress_bar_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit forks only from a process of one thread: its bar (tqdm) must not start one."""
    import io
    import threading

    from halodb.util.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("HALODB_PROGRESS_AFTER", "0")
    threads = threading.active_count()
    with Progress("committing", total=3, stream=Terminal()) as bar:
        bar.update(1, "writing the index")
        assert bar.shown and threading.active_count() == threads


# --- items staged with their bytes (index format 3) -----------------------------------------------
def block_count(home: Path) -> int:
    with closing(sqlite3.connect(f"file:{home / 'blocks' / 'blocks.sqlite3'}?mode=ro", uri=True)) as con:
        return int(con.execute("SELECT count(*) FROM blocks").fetchone()[0])


def test_a_small_item_is_staged_with_its_bytes_and_never_written_as_a_block(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("s", 20))
        reg.commit("first", time="2024-08-12T00:00:00Z")
        before = block_count(home)
        reg.add(items("t", 30))  # onto a version: applied (a small stage)
        assert block_count(home) == before  # the stage holds the items; the store got nothing
        staged = reg.staged().upserts["halo/t3"]
        assert staged.inline is not None and not reg.store.has(staged.item)
        reg.commit("second", time="2024-08-13T00:00:00Z")
        entry = reg.get("halo/t3")[1]
        assert entry.item == staged.item and entry.inline == staged.inline  # held inline by the version
        assert not reg.store.has(staged.item)  # (and only there: no copy to collect)


def test_a_damaged_staged_item_is_refused_naming_its_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("d", 3))
    with closing(sqlite3.connect(home / "stage.sqlite3")) as con:
        at, size = con.execute("SELECT at, size FROM upserts WHERE key = 'halo/d1'").fetchone()
    (pack,) = home.glob("stage.*.pack")
    data = bytearray(pack.read_bytes())
    data[at:at + size] = bytes(data[at:at + size]).replace(b"d1", b"dX")
    pack.write_bytes(bytes(data))
    r = run_cli(home, "commit", "-m", "x")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "'halo/d1'" in r.err and "damaged" in r.err, r.err
    with halodb.open(home) as reg:
        assert reg.head is None and reg.stage_counts() == (3, 0)  # nothing committed, the stage kept


def test_a_stage_database_from_before_the_bytes_table_is_read_and_extended(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("o", 2))
        entry = reg.staged().upserts["halo/o0"]
        assert entry.inline is not None
        reg.store.put_many([(e.item, e.inline) for e in reg.staged().upserts.values() if e.inline is not None])
    with closing(sqlite3.connect(home / "stage.sqlite3")) as con:  # as HaloDB wrote it before the bytes
        con.executescript("DROP TABLE inline; ALTER TABLE upserts DROP COLUMN at; ALTER TABLE upserts DROP COLUMN size; "
                          "DELETE FROM meta WHERE name = 'pack';")
    with halodb.open(home) as reg:
        assert reg.staged().upserts["halo/o0"] == entry and reg.staged().upserts["halo/o0"].inline is None
        reg.add(items("n", 1))  # the first write adds the table and the columns
        assert reg.staged().upserts["halo/n0"].inline is not None
        reg.commit("both kinds", time="2024-08-12T00:00:00Z")
        assert all(reg.get(k) for k in ("halo/o0", "halo/o1", "halo/n0"))
    with closing(sqlite3.connect(home / "stage.sqlite3")) as con:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'inline'").fetchone() == (1,)
    assert not list(home.glob("stage.*.pack"))  # (the commit emptied the stage: no pack is left)


def test_bytes_an_older_halodb_staged_in_the_inline_table_are_read_and_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("o", 3))
        before = reg.staged()
    with closing(sqlite3.connect(home / "stage.sqlite3")) as con:  # as the version before the pack wrote it
        for key, entry in before.upserts.items():
            con.execute("INSERT INTO inline VALUES (?, ?)", (key, entry.inline))
        con.execute("UPDATE upserts SET at = NULL, size = NULL")
        con.execute("DELETE FROM meta WHERE name = 'pack'")
        con.commit()
    for pack in home.glob("stage.*.pack"):
        pack.unlink()
    with halodb.open(home) as reg:
        assert reg.staged() == before
        again = make_item("o1", cid_for("o1"))
        again["properties"]["title"] = "again"  # type: ignore[index]
        reg.add([again])  # its bytes go to the pack, its old row in the table goes
        with closing(sqlite3.connect(home / "stage.sqlite3")) as con:
            assert {k for (k,) in con.execute("SELECT key FROM inline")} == {"halo/o0", "halo/o2"}
        staged = reg.staged().upserts
        assert staged["halo/o0"] == before.upserts["halo/o0"] and staged["halo/o1"] != before.upserts["halo/o1"]
        reg.commit("x", time="2024-08-12T00:00:00Z")
        assert reg.get("halo/o1")[1].inline == staged["halo/o1"].inline


def test_the_pack_of_staged_bytes_survives_kills_and_readers(tmp_path: Path) -> None:
    """A tail a killed add left is cut by the next add; a pack of no committed generation is
    deleted by the next writer; a reader of a snapshot reads its pack to the end while a
    commit empties the stage and deletes it; the commit leaves no pack."""
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("a", 40))
        (pack,) = home.glob("stage.*.pack")
        size = pack.stat().st_size
        with pack.open("ab") as f:
            f.write(b"\xff" * 1000)  # what an add killed before its commit leaves
        stray = home / "stage.0123456789ab.pack"
        stray.write_bytes(b"left by a killed replace")
        reg.add(items("b", 5))
        assert not stray.exists() and pack.exists() and pack.stat().st_size < size + 1000 + 5 * 2048
        assert len(reg.staged().upserts) == 45
        reading = reg.state.db.upserts()
        first = next(reading)
        reg.commit("all", time="2024-08-12T00:00:00Z")  # empties the stage: its pack is deleted
        assert not pack.exists() and not list(home.glob("stage.*.pack"))
        rest = list(reading)  # (the snapshot's pack, open before the commit, reads to its end)
        assert [k for k, _ in [first, *rest]] == sorted([f"halo/a{i}" for i in range(40)] +
                                                        [f"halo/b{i}" for i in range(5)])
        assert all(e.inline is not None for _, e in rest)


def test_index_format_2_writes_the_blocks_of_items_staged_with_their_bytes(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(items("f", 5))  # format 3: staged with their bytes
        staged = reg.staged().upserts["halo/f2"]
    monkeypatch.setenv("HALODB_INDEX_FORMAT", "2")
    with halodb.open(home) as reg:
        reg.commit("linked", time="2024-08-12T00:00:00Z")
        entry = reg.get("halo/f2")[1]
        assert entry.inline is None and reg.store.get(staged.item) == staged.inline  # linked, and its block written


def test_an_add_of_an_item_named_by_a_cid_of_another_size_is_staged_row_by_row(tmp_path: Path) -> None:
    """The writer puts a batch in one statement when every item CID has HaloDB's 36 bytes,
    else row by row: both ways stage the same."""
    from halodb.api.stagedb import StageDB
    from halodb.index.model import Entry

    v0 = CID.parse("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY")
    v1 = CID.for_bytes(b"x")
    db = StageDB(tmp_path)
    db.create()
    for batch in ({"c/a": Entry(v0, path="p/a")}, {"c/b": Entry(v1, data=str(v1), inline=b"x")}):
        with db.writer() as writer:
            assert writer.add(batch, {k: "x.json" for k in batch}) == list(batch)
    assert dict(db.upserts()) == {"c/a": Entry(v0, path="p/a"), "c/b": Entry(v1, data=str(v1), inline=b"x")}
