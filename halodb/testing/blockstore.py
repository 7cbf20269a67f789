"""The conformance suite every block-store backend must pass.

Needs pytest (see :mod:`halodb.testing`). Use it from a test module::

    from halodb.testing.blockstore import BlockStoreTests

Subclass :class:`BlockStoreTests` once per backend and implement :meth:`make_store`
(an empty store). Read-only backends also override :meth:`populate` (a store pre-filled
with given blocks); backends whose stored bytes can be damaged override :meth:`corrupt`,
and set :attr:`~BlockStoreTests.corrupt_damages_storage` when it damages the stored copy
itself (not only what reads return): a put of the right bytes must then repair it.
Tests pick themselves by the store's capability flags (``supports_writes``,
``supports_deletes``, ``supports_listing``, ``supports_quarantine``).

Example::

    class TestMemoryStore(BlockStoreTests):
        corrupt_damages_storage = True

        def make_store(self, tmp_path: Path) -> BlockStore:
            return MemoryStore()

        def corrupt(self, store: BlockStore, cid: CID) -> None:
            store._blocks[cid] = b"garbage"
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from halodb.blockstore import Block, BlockStore
from halodb.errors import BlockNotFoundError, ReadOnlyStoreError, VerificationError
from halodb.ipld import CID, DAG_CBOR, RAW, make_block


def raw_block(i: int, size: int = 32) -> Block:
    """A deterministic raw block number ``i`` of ``size`` bytes."""
    data = (f"block-{i}-".encode() * (size // 8 + 2))[:size]
    return CID.for_bytes(data, RAW), data


def cbor_block(i: int) -> Block:
    """A deterministic DAG-CBOR block number ``i`` that links to a raw block."""
    return make_block({"i": i, "name": f"item {i}", "link": raw_block(i)[0], "raw": b"\x00\x01"})


def damage_row(db_path: Path, cid: CID) -> bytes:
    """Flip one byte of the stored copy of ``cid`` in the database of a
    :class:`~halodb.blockstore.sqlite.SqliteStore` (as a bad disk would: same size, other
    bytes, no trace in its quarantine); returns the damaged bytes."""
    db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        (data,) = db.execute("SELECT data FROM blocks WHERE cid = ?", (cid.buffer,)).fetchone()
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x01
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM blocks WHERE cid = ?", (cid.buffer,))  # not an UPDATE: no evidence kept
        db.execute("INSERT INTO blocks (cid, data) VALUES (?, ?)", (cid.buffer, bytes(bad)))
        db.execute("COMMIT")
    finally:
        db.close()
    return bytes(bad)


def absent_cid() -> CID:
    return CID.for_bytes(b"never stored anywhere", RAW)


class BlockStoreTests:
    """Shared tests; a subclass named ``Test...`` runs them against one backend."""

    #: :meth:`corrupt` damages the stored copy (a file, a dict entry), not only what reads
    #: return (a fault on the wire): a put of the right bytes must repair it
    corrupt_damages_storage = False

    # -- hooks -----------------------------------------------------------------------------
    def make_store(self, tmp_path: Path) -> BlockStore:
        """An empty store of the backend under test."""
        raise NotImplementedError

    def populate(self, tmp_path: Path, blocks: list[Block]) -> BlockStore:
        """A store holding ``blocks`` (read-only backends build it pre-filled)."""
        store = self.make_store(tmp_path)
        store.put_many(blocks)
        store.stats.reset()
        return store

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        """Damage the stored bytes of ``cid``; skip for backends that cannot be damaged."""
        pytest.skip(f"{type(store).__name__} blocks cannot be corrupted from a test")

    # -- helpers ---------------------------------------------------------------------------
    def writable(self, tmp_path: Path) -> BlockStore:
        store = self.make_store(tmp_path)
        if not store.supports_writes:
            pytest.skip("store does not support writes")
        return store

    # -- reads -----------------------------------------------------------------------------
    def test_get_returns_stored_bytes(self, tmp_path: Path) -> None:
        blocks = [raw_block(1), cbor_block(2)]
        store = self.populate(tmp_path, blocks)
        for cid, data in blocks:
            assert store.get(cid) == data

    def test_get_absent_raises_with_cid(self, tmp_path: Path) -> None:
        store = self.populate(tmp_path, [raw_block(1)])
        with pytest.raises(BlockNotFoundError) as info:
            store.get(absent_cid())
        assert info.value.cid == absent_cid()

    def test_get_absent_from_empty_store(self, tmp_path: Path) -> None:
        store = self.populate(tmp_path, [])
        with pytest.raises(BlockNotFoundError):
            store.get(absent_cid())
        assert not store.has(absent_cid())

    def test_has(self, tmp_path: Path) -> None:
        cid, data = raw_block(1)
        store = self.populate(tmp_path, [(cid, data)])
        assert store.has(cid)
        assert not store.has(absent_cid())

    def test_has_many(self, tmp_path: Path) -> None:
        blocks = [raw_block(i) for i in range(5)]
        store = self.populate(tmp_path, blocks)
        wanted = [c for c, _ in blocks[:3]] + [absent_cid()]
        assert store.has_many(wanted) == {c for c, _ in blocks[:3]}

    def test_get_many_leaves_out_absent(self, tmp_path: Path) -> None:
        blocks = [raw_block(i) for i in range(5)]
        store = self.populate(tmp_path, blocks)
        wanted = [blocks[0][0], absent_cid(), blocks[3][0], blocks[0][0]]
        assert store.get_many(wanted) == {blocks[0][0]: blocks[0][1], blocks[3][0]: blocks[3][1]}

    def test_get_many_accepts_an_iterator(self, tmp_path: Path) -> None:
        blocks = [raw_block(i) for i in range(3)]
        store = self.populate(tmp_path, blocks)
        assert store.get_many(c for c, _ in blocks) == dict(blocks)

    def test_empty_batches(self, tmp_path: Path) -> None:
        store = self.populate(tmp_path, [raw_block(1)])
        assert store.get_many([]) == {}
        assert store.has_many([]) == set()
        if store.supports_writes:
            assert store.put_many([]) == 0

    def test_codecs_raw_and_dag_cbor(self, tmp_path: Path) -> None:
        blocks = [raw_block(1), cbor_block(1)]
        store = self.populate(tmp_path, blocks)
        assert {c.codec for c, _ in blocks} == {RAW, DAG_CBOR}
        assert store.get_many(c for c, _ in blocks) == dict(blocks)

    def test_large_block(self, tmp_path: Path) -> None:
        block = raw_block(7, size=1 << 20)
        store = self.populate(tmp_path, [block, raw_block(8)])
        assert store.get(block[0]) == block[1]
        assert store.get_many([block[0]]) == {block[0]: block[1]}

    def test_many_blocks(self, tmp_path: Path) -> None:
        blocks = [raw_block(i) for i in range(2000)]
        store = self.populate(tmp_path, blocks)
        assert store.get_many(c for c, _ in blocks) == dict(blocks)
        assert store.has_many(c for c, _ in blocks) == {c for c, _ in blocks}
        if store.supports_listing:
            assert set(store.iter_cids()) == {c for c, _ in blocks}

    def test_stats_count_reads(self, tmp_path: Path) -> None:
        blocks = [raw_block(1, 10), raw_block(2, 20), raw_block(3, 30)]
        store = self.populate(tmp_path, blocks)
        store.stats.reset()
        store.get(blocks[0][0])
        store.get_many([blocks[1][0], blocks[2][0], absent_cid()])
        assert store.stats.blocks_read == 3
        assert store.stats.bytes_read == 60
        assert store.stats.blocks_written == 0

    # -- corruption ------------------------------------------------------------------------
    def test_corrupt_block_detected_by_get(self, tmp_path: Path) -> None:
        cid, data = cbor_block(1)
        store = self.populate(tmp_path, [(cid, data), raw_block(2)])
        self.corrupt(store, cid)
        with pytest.raises(VerificationError) as info:
            store.get(cid)
        assert info.value.cid == cid

    def test_corrupt_block_detected_by_get_many(self, tmp_path: Path) -> None:
        cid, data = raw_block(1)
        other = raw_block(2)
        store = self.populate(tmp_path, [(cid, data), other])
        self.corrupt(store, cid)
        with pytest.raises(VerificationError):
            store.get_many([other[0], cid])

    # -- damaged copies: repair and quarantine ---------------------------------------------
    def _damaged(self, tmp_path: Path) -> tuple[BlockStore, Block, Block]:
        """A store holding two blocks, the first one damaged (skips where that cannot be)."""
        damaged, intact = cbor_block(1), raw_block(2)
        store = self.populate(tmp_path, [damaged, intact])
        self.corrupt(store, damaged[0])
        return store, damaged, intact

    def _repairable(self, tmp_path: Path) -> tuple[BlockStore, Block, Block]:
        if not self.corrupt_damages_storage:
            pytest.skip("corrupt() does not damage the stored copy")
        store, damaged, intact = self._damaged(tmp_path)
        if not store.supports_writes:
            pytest.skip("store does not support writes")
        return store, damaged, intact

    def test_put_block_over_a_damaged_copy_repairs_it(self, tmp_path: Path) -> None:
        store, (cid, data), intact = self._repairable(tmp_path)
        store.put_block(cid, data)
        assert store.get(cid) == data
        assert store.get_many([cid, intact[0]]) == {cid: data, intact[0]: intact[1]}

    def test_put_many_over_a_damaged_copy_repairs_it(self, tmp_path: Path) -> None:
        """What importing a good CAR does: trusted bytes, put without re-hashing."""
        store, (cid, data), intact = self._repairable(tmp_path)
        store.put_many([intact, (cid, data)], verify=False)
        assert store.get_many([cid, intact[0]]) == {cid: data, intact[0]: intact[1]}

    def _quarantining(self, tmp_path: Path) -> tuple[BlockStore, Block, Block]:
        store, damaged, intact = self._damaged(tmp_path)
        if not store.supports_quarantine:
            pytest.skip("store does not support quarantine")
        return store, damaged, intact

    def test_a_damaged_copy_read_by_get_is_quarantined(self, tmp_path: Path) -> None:
        store, (cid, data), intact = self._quarantining(tmp_path)
        with pytest.raises(VerificationError) as info:
            store.get(cid)
        assert info.value.cid == cid
        assert not store.has(cid)  # set aside: missing from now on
        with pytest.raises(BlockNotFoundError):
            store.get(cid)
        assert store.get(intact[0]) == intact[1]
        if store.supports_writes:
            store.put_block(cid, data)
            assert store.get(cid) == data

    def test_a_damaged_copy_read_by_get_many_is_quarantined(self, tmp_path: Path) -> None:
        store, (cid, _), intact = self._quarantining(tmp_path)
        with pytest.raises(VerificationError) as info:
            store.get_many([intact[0], cid])
        assert info.value.cid == cid
        assert store.get_many([intact[0], cid]) == {intact[0]: intact[1]}

    def test_quarantine_leaves_an_intact_copy_alone(self, tmp_path: Path) -> None:
        store, _, (cid, data) = self._quarantining(tmp_path)
        assert store.quarantine(cid) is None
        assert store.quarantine(absent_cid()) is None
        assert store.get(cid) == data

    # -- writes ----------------------------------------------------------------------------
    def test_put_returns_cid(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        cid = store.put(b"hello", codec=RAW)
        assert cid == CID.for_bytes(b"hello", RAW)
        assert store.get(cid) == b"hello"
        assert store.put(b"\xa0") == CID.for_bytes(b"\xa0", DAG_CBOR)

    def test_put_is_idempotent(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        cid = store.put(b"same", codec=RAW)
        assert store.put(b"same", codec=RAW) == cid
        store.put_block(cid, b"same")
        store.put_many([(cid, b"same")])
        assert store.get(cid) == b"same"
        if store.supports_listing:
            assert list(store.iter_cids()) == [cid]

    def test_put_block(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        cid, data = cbor_block(3)
        store.put_block(cid, data)
        assert store.get(cid) == data

    def test_put_block_wrong_bytes_stores_nothing(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        cid, _ = raw_block(1)
        with pytest.raises(VerificationError) as info:
            store.put_block(cid, b"not the bytes of that cid")
        assert info.value.cid == cid
        assert not store.has(cid)
        assert store.stats.blocks_written == 0

    def test_put_many(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        blocks = [raw_block(i) for i in range(10)] + [cbor_block(i) for i in range(10)]
        assert store.put_many(iter(blocks)) == 20
        assert store.get_many(c for c, _ in blocks) == dict(blocks)

    def test_put_many_with_one_bad_block_writes_nothing(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        blocks = [raw_block(i) for i in range(5)]
        bad = (raw_block(99)[0], b"wrong")
        with pytest.raises(VerificationError) as info:
            store.put_many(blocks[:3] + [bad] + blocks[3:])
        assert info.value.cid == bad[0]
        assert store.has_many(c for c, _ in blocks + [bad]) == set()
        if store.supports_listing:
            assert list(store.iter_cids()) == []

    def test_put_many_without_verification(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        blocks = [cbor_block(i) for i in range(3)]
        store.put_many(blocks, verify=False)
        assert store.get_many(c for c, _ in blocks) == dict(blocks)

    def test_stats_count_writes(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        store.put(b"12345", codec=RAW)
        store.put_block(*raw_block(1, 10))
        store.put_many([raw_block(2, 20), raw_block(3, 30)])
        assert store.stats.blocks_written == 4
        assert store.stats.bytes_written == 65
        store.stats.reset()
        assert store.stats.blocks_written == 0

    def test_written_block_survives_flush_and_close(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        cid = store.put(b"durable", codec=RAW)
        store.flush()
        store.flush()
        assert store.get(cid) == b"durable"
        with store:
            pass

    def test_read_only_store_rejects_writes(self, tmp_path: Path) -> None:
        cid, data = raw_block(1)
        store = self.populate(tmp_path, [(cid, data)])
        if store.supports_writes:
            pytest.skip("store supports writes")
        with pytest.raises(ReadOnlyStoreError):
            store.put(b"x", codec=RAW)
        with pytest.raises(ReadOnlyStoreError):
            store.put_block(*raw_block(2))
        with pytest.raises(ReadOnlyStoreError):
            store.put_many([raw_block(2)])
        with pytest.raises(ReadOnlyStoreError):
            store.put_many([])
        assert not store.has(raw_block(2)[0])
        assert store.stats.blocks_written == 0

    # -- listing ---------------------------------------------------------------------------
    def test_iter_cids(self, tmp_path: Path) -> None:
        blocks = [raw_block(i) for i in range(20)] + [cbor_block(1)]
        store = self.populate(tmp_path, blocks)
        if not store.supports_listing:
            with pytest.raises(ReadOnlyStoreError):
                list(store.iter_cids())
            return
        cids = list(store.iter_cids())
        assert len(cids) == len(blocks)
        assert set(cids) == {c for c, _ in blocks}
        assert all(isinstance(c, CID) for c in cids)

    def test_iter_cids_of_empty_store(self, tmp_path: Path) -> None:
        store = self.populate(tmp_path, [])
        if not store.supports_listing:
            pytest.skip("store does not support listing")
        assert list(store.iter_cids()) == []

    # -- deletes ---------------------------------------------------------------------------
    def test_delete(self, tmp_path: Path) -> None:
        blocks = [raw_block(1), raw_block(2)]
        store = self.populate(tmp_path, blocks)
        if not store.supports_deletes:
            with pytest.raises(ReadOnlyStoreError):
                store.delete(blocks[0][0])
            assert store.has(blocks[0][0])
            return
        store.delete(blocks[0][0])
        assert not store.has(blocks[0][0])
        with pytest.raises(BlockNotFoundError):
            store.get(blocks[0][0])
        assert store.get(blocks[1][0]) == blocks[1][1]
        if store.supports_listing:
            assert list(store.iter_cids()) == [blocks[1][0]]

    def test_delete_absent_is_a_no_op(self, tmp_path: Path) -> None:
        store = self.populate(tmp_path, [raw_block(1)])
        if not store.supports_deletes:
            pytest.skip("store does not support deletes")
        store.delete(absent_cid())
        assert store.has(raw_block(1)[0])

    def test_put_after_delete(self, tmp_path: Path) -> None:
        store = self.writable(tmp_path)
        if not store.supports_deletes:
            pytest.skip("store does not support deletes")
        cid = store.put(b"again", codec=RAW)
        store.delete(cid)
        assert store.put(b"again", codec=RAW) == cid
        assert store.get(cid) == b"again"
