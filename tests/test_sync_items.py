"""Item blocks read during a full sync of several batches: a bad block anywhere fails the
whole sync with an error naming it, and nothing of the sync lands. Real directory store,
real DuckDB."""

from __future__ import annotations

from pathlib import Path

import pytest

import halodb
from halodb.blockstore import SqliteStore
from halodb.blockstore.sqlite import DB_NAME
from halodb.cache import materialize
from halodb.demo.campaign import generate_items
from halodb.errors import BlockNotFoundError, VerificationError
from halodb.testing.blockstore import damage_row

BATCH = 64  #: items per batch in these tests (300 items: five batches, the last one partial)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry home whose name "n" holds 300 items in two commits (the second changes 40);
    each item is larger than INLINE_MAX, so that it has a block of its own (index format 3)."""
    monkeypatch.setattr(materialize, "ITEM_BATCH", BATCH)
    items = generate_items(300, seed=3)
    for item in items:
        item["properties"]["description"] = "a description longer than an inline item may be. " * 50
    reg = halodb.open(tmp_path / "home", create=True)
    reg.add(items)
    reg.commit("300 items", time="2024-09-01T00:00:00Z")
    for item in items[:40]:
        item["properties"]["title"] += " (revised)"
    reg.add(items[:40])
    reg.commit("40 revised", time="2024-09-02T00:00:00Z")
    reg.publish("n")
    reg.close()
    return tmp_path / "home"


def _item_cids(home: Path) -> list[str]:
    reg = halodb.open(home, cache=home / "probe.duckdb")
    try:
        reg.sync("n")
        return [str(row[0]) for row in reg.sql("SELECT item_cid FROM items ORDER BY key")[1]]
    finally:
        reg.close()


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
def test_a_bad_item_block_in_a_later_batch_fails_the_sync_and_nothing_lands(home: Path, tmp_path: Path, fault: str) -> None:
    cids = _item_cids(home)
    assert len(cids) == 300
    victim = cids[2 * BATCH + 5]  # in the third batch
    cid = halodb.CID.parse(victim)
    if fault == "corrupt":
        damage_row(home / "blocks" / DB_NAME, cid)
    else:
        with SqliteStore(home / "blocks") as blocks:
            assert blocks.has(cid)
            blocks.delete(cid)
    cache = tmp_path / "fresh.duckdb"
    reg = halodb.open(home, cache=cache)
    try:
        with pytest.raises((VerificationError, BlockNotFoundError)) as info:
            reg.sync("n")
        assert type(info.value) is (VerificationError if fault == "corrupt" else BlockNotFoundError)
        assert victim in str(info.value)
        assert reg.sql("SELECT count(*) FROM commits")[1] == [(0,)]
        assert reg.sql("SELECT count(*) FROM items")[1] == [(0,)]
    finally:
        reg.close()


@pytest.mark.parametrize("group", [1, 2, 8])
def test_a_full_sync_of_several_batches_holds_every_item_once(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              group: int) -> None:
    # five batches inserted one, two (the last statement one) or all a statement
    monkeypatch.setattr(materialize, "STREAM_ITEMS", group * BATCH)
    reg = halodb.open(home, cache=tmp_path / "c.duckdb")
    try:
        result = reg.sync("n")
        assert (result.commits, result.changes) == (2, 340)
        assert reg.sql("SELECT count(*), count(DISTINCT key) FROM items")[1] == [(300, 300)]
        revised = reg.sql("SELECT count(*) FROM items WHERE title LIKE '%(revised)'")[1]
        assert revised == [(40,)]
    finally:
        reg.close()


def _versions(reg: halodb.Registry) -> list[tuple[object, ...]]:
    return reg.sql("SELECT key, item_cid, data_cid, path, valid_from_commit, valid_from, valid_to_commit, valid_to "
                   "FROM item_versions ORDER BY ALL")[1]


@pytest.mark.parametrize("chunk", [7, 100, 333])
def test_a_sync_applied_in_chunks_caches_what_one_chunk_does(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chunk: int) -> None:
    """Chunks end inside a commit, between commits, and a version opened in one chunk is
    closed in a later one: the cache holds exactly what an unchunked apply writes, and the
    change count is the same. Then an incremental sync, chunked too."""
    whole = halodb.open(home, cache=tmp_path / "whole.duckdb")
    chunked = halodb.open(home, cache=tmp_path / "chunked.duckdb")
    try:
        first = whole.sync("n")
        monkeypatch.setattr(materialize, "VERSION_BATCH", chunk)
        assert chunked.sync("n").changes == first.changes == 340
        assert _versions(chunked) == _versions(whole)
        assert chunked.sql("SELECT count(*) FROM stac_items")[1] == whole.sql("SELECT count(*) FROM stac_items")[1]
        writer = halodb.open(home)
        items = generate_items(300, seed=3)
        for item in items[100:160]:
            item["properties"]["title"] += " (again)"
        writer.add(items[100:160])
        writer.remove([f"{i['collection']}/{i['id']}" for i in items[200:230]])
        writer.commit("60 changed, 30 removed", time="2024-09-03T00:00:00Z")
        writer.publish("n")
        writer.close()
        assert chunked.sync("n").changes == 90
        monkeypatch.undo()
        assert whole.sync("n").changes == 90
        assert _versions(chunked) == _versions(whole)
        assert chunked.sql("SELECT count(*) FROM items")[1] == [(270,)]
    finally:
        whole.close()
        chunked.close()


def test_a_long_commit_out_of_key_order_is_refused_once_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit longer than a chunk must list its keys in increasing order (a diff does), since
    a key of an earlier chunk cannot be checked for a repeat; shorter ones may come in any
    order. Nothing lands."""
    from halodb.cache import Cache
    from halodb.errors import CacheError

    from .test_cache_helpers import commit, plan, put, rec

    monkeypatch.setattr(materialize, "VERSION_BATCH", 4)
    with Cache(tmp_path / "c.duckdb") as cache:
        assert cache.apply(plan("short", [commit("s1", [put(rec("b")), put(rec("a"))], day=0)])) == 2
        with pytest.raises(CacheError, match="out of key order"):
            cache.apply(plan("long", [commit("l1", [put(rec(k)) for k in "abcdeab"], day=0)]))
        with pytest.raises(CacheError, match="changes twice"):
            cache.apply(plan("long", [commit("l1", [put(rec(k)) for k in "bab"], day=0)]))
        assert cache.sync_state("long") is None


def test_chunks_read_on_their_thread_through_a_caching_store(home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks, read on the chunk reader's thread through a store that fetches from a
    remote (a `CachingStore`, as over a gateway), while the main thread reads the linked
    item blocks through the same store: the cache is the one a local sync fills."""
    from halodb.blockstore import MemoryStore
    from halodb.blockstore.caching import CachingStore
    from halodb.cache import Cache
    from halodb.index.index import Index
    from halodb.sync import sync

    with halodb.open(home, cache=tmp_path / "local.duckdb") as reg:
        head = reg.name_head("n")
        reg.sync("n")
        expected = _versions(reg)
    monkeypatch.setattr(materialize, "VERSION_BATCH", 7)
    monkeypatch.setattr(materialize, "FIRST_CHUNK", 3)
    with SqliteStore(home / "blocks") as remote:
        store = CachingStore(MemoryStore(), remote)
        with Cache(tmp_path / "remote.duckdb") as cache:
            result = sync(store, Index(store), cache, "n", head)
        assert result.changes == 340 and sum(1 for _ in store.local.iter_cids()) > 300  # (fetched, and kept)
    with halodb.open(home, cache=tmp_path / "remote.duckdb") as reg:
        assert _versions(reg) == expected
        assert reg.sql("SELECT count(*) FROM items")[1] == [(300,)]
