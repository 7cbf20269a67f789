"""Block-store backends: the shared conformance suite plus backend-specific tests."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import libipld
import pytest

import halodb.blockstore as blockstore_pkg
from halodb.blockstore import (
    Block,
    BlockStore,
    CarStore,
    DirectoryStore,
    MemoryStore,
    import_car,
    open_store,
    read_car,
    write_car,
)
from halodb.blockstore.directory import block_name, cid_from_name
from halodb.blockstore.sqlite import SqliteStore
from halodb.errors import (
    BlockNotFoundError,
    BlockStoreError,
    CarError,
    DecodeError,
    StoreURLError,
    VerificationError,
)
from halodb.ipld import CID, RAW, make_block
from halodb.testing.blockstore import BlockStoreTests, absent_cid, cbor_block, damage_row, raw_block


# == conformance ============================================================================
class TestMemoryStore(BlockStoreTests):
    corrupt_damages_storage = True

    def make_store(self, tmp_path: Path) -> BlockStore:
        return MemoryStore()

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        assert isinstance(store, MemoryStore)
        store._blocks[cid] = b"corrupted " + store._blocks[cid]


class TestDirectoryStore(BlockStoreTests):
    corrupt_damages_storage = True

    def make_store(self, tmp_path: Path) -> BlockStore:
        return DirectoryStore(tmp_path / "blocks")

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        assert isinstance(store, DirectoryStore)
        path = store.path_of(cid)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


class TestSqliteStore(BlockStoreTests):
    corrupt_damages_storage = True

    def make_store(self, tmp_path: Path) -> BlockStore:
        return SqliteStore(tmp_path / "blocks")

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        assert isinstance(store, SqliteStore)
        damage_row(store.db_path, cid)


class TestSqliteStoreReadingADirectoryStore(BlockStoreTests):
    """Blocks still in the files of a directory store in the same root (a migration that
    another process runs, or one not run): read, listed, deleted, quarantined alike."""

    corrupt_damages_storage = True

    def make_store(self, tmp_path: Path) -> BlockStore:
        return self.populate(tmp_path, [])

    def populate(self, tmp_path: Path, blocks: list[Block]) -> BlockStore:
        old = DirectoryStore(tmp_path / "blocks")
        old.delete(old.put(b"leaves a shard folder", codec=RAW))  # the old layout, even when empty
        old.put_many(blocks)
        store = SqliteStore(tmp_path / "blocks", migrate=False)
        assert store.reads_directory_store
        return store

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        assert isinstance(store, SqliteStore)
        path = store.path_of_legacy(cid)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


class TestCarStore(BlockStoreTests):
    def make_store(self, tmp_path: Path) -> BlockStore:
        return self.populate(tmp_path, [])

    def populate(self, tmp_path: Path, blocks: list[Block]) -> BlockStore:
        path = tmp_path / "store.car"
        write_car(path, [blocks[0][0]] if blocks else [], blocks)
        return CarStore(path)

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        assert isinstance(store, CarStore)
        loc = store.locate(cid)
        assert loc is not None
        offset, length = loc
        with open(store.path, "r+b") as f:
            f.seek(offset + length // 2)
            byte = f.read(1)
            f.seek(offset + length // 2)
            f.write(bytes([byte[0] ^ 0xFF]))


# == DirectoryStore =========================================================================
def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_directory_layout(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "blocks")
    cid, data = cbor_block(1)
    store.put_block(cid, data)
    name = str(cid)
    assert name.startswith("bafyrei")
    expected = tmp_path / "blocks" / name[-3:-1] / name
    assert store.path_of(cid) == expected
    assert expected.read_bytes() == data
    assert _all_files(tmp_path / "blocks") == [expected]


def test_directory_shards_spread(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.put_many([raw_block(i) for i in range(300)])
    shards = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert all(len(p.name) == 2 for p in shards)
    assert len(shards) > 200  # 300 blocks over 1024 shards: nearly one per shard


def test_directory_cidv0_block(tmp_path: Path) -> None:
    data = b"\x0a\x02\x08\x01"  # a tiny dag-pb node
    v0 = CID(b"\x12\x20" + hashlib.sha256(data).digest())
    assert str(v0).startswith("Qm")
    store = DirectoryStore(tmp_path)
    store.put_block(v0, data)
    path = store.path_of(v0)
    assert path.name == path.name.lower() and path.name.startswith("bciq")
    assert cid_from_name(path.name) == v0
    assert block_name(v0) == path.name
    assert store.get(v0) == data
    assert list(DirectoryStore(tmp_path).iter_cids()) == [v0]


def test_directory_persists_across_instances(tmp_path: Path) -> None:
    blocks = [raw_block(i) for i in range(10)]
    store = DirectoryStore(tmp_path)
    store.put_many(blocks)
    store.close()
    again = DirectoryStore(tmp_path)
    assert again.get_many(c for c, _ in blocks) == dict(blocks)
    assert set(again.iter_cids()) == {c for c, _ in blocks}


def test_directory_no_temp_files_left(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    blocks = [raw_block(i) for i in range(200)]
    store.put_many(blocks)
    store.put_many(blocks)  # again: skipped
    names = [p.name for p in _all_files(tmp_path)]
    assert len(names) == 200
    assert not [n for n in names if n.startswith(".")]


def test_directory_listing_ignores_foreign_files(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid, data = raw_block(1)
    store.put_block(cid, data)
    shard = store.path_of(cid).parent
    (shard / ".DS_Store").write_bytes(b"x")
    (shard / "notacid").write_bytes(b"x")
    (tmp_path / "README").write_text("hello")
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq").write_bytes(b"wrong shard")
    assert list(store.iter_cids()) == [cid]


def test_directory_existing_block_is_not_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DirectoryStore(tmp_path)
    cid = store.put(b"once", codec=RAW)

    def no_replace(src: str, dst: str) -> None:
        raise AssertionError("an existing block was rewritten")

    monkeypatch.setattr(os, "replace", no_replace)
    assert store.put(b"once", codec=RAW) == cid
    store.put_many([(cid, b"once")])


def test_directory_truncated_file_is_repaired_by_put(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)
    store.put_block(cid, data)
    store.path_of(cid).write_bytes(b"")  # what a crash before flush can leave behind
    with pytest.raises(VerificationError):
        store.get(cid)
    store.put_block(cid, data)
    assert store.get(cid) == data


def test_directory_failed_replace_leaves_no_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(BlockStoreError) as info:
        store.put_block(cid, data)
    assert info.value.cid == cid
    monkeypatch.undo()
    assert not store.has(cid)
    assert _all_files(tmp_path) == []  # the temporary file was removed
    store.put_block(cid, data)
    assert store.get(cid) == data


def test_directory_crash_mid_write_leaves_no_visible_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed between writing the temporary file and renaming it."""

    class Killed(BaseException):
        pass

    def crash(*args: object) -> None:
        raise Killed()

    store = DirectoryStore(tmp_path)
    done = [raw_block(1), raw_block(2)]
    store.put_many(done)
    cid, data = cbor_block(1)
    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(os, "unlink", crash)  # a dead process cleans nothing up
    with pytest.raises(Killed):
        store.put_many([(cid, data), raw_block(3)])
    monkeypatch.undo()

    leftovers = [p for p in _all_files(tmp_path) if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == data
    reopened = DirectoryStore(tmp_path)
    assert not reopened.has(cid)
    with pytest.raises(BlockNotFoundError):
        reopened.get(cid)
    assert set(reopened.iter_cids()) == {c for c, _ in done}
    reopened.put_block(cid, data)
    assert reopened.get(cid) == data


def test_directory_readers_never_see_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a block is being written, its final path does not exist yet."""
    store = DirectoryStore(tmp_path)
    cid, data = raw_block(5, size=100_000)
    seen: list[bool] = []
    real_replace = os.replace

    def checking_replace(src: str, dst: str) -> None:
        seen.append(store.has(cid))
        assert Path(src).read_bytes() == data
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", checking_replace)
    store.put_block(cid, data)
    assert seen == [False]
    assert store.get(cid) == data


def test_directory_flush_fsyncs_written_files_and_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DirectoryStore(tmp_path)
    blocks = [raw_block(i) for i in range(3)]
    store.put_many(blocks)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    store.flush()
    shards = {store.path_of(c).parent for c, _ in blocks}
    assert len(synced) == 3 + len(shards) + 1  # files, shard dirs, root
    store.flush()  # nothing pending
    assert len(synced) == 3 + len(shards) + 1


def test_directory_flush_many_uses_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DirectoryStore(tmp_path)
    store.sync_all_threshold = 5
    store.put_many([raw_block(i) for i in range(10)])
    calls: list[str] = []
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr("sys.platform", "linux")
    store.flush()
    assert calls == ["sync"]


def test_directory_delete_then_flush(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid = store.put(b"gone", codec=RAW)
    store.delete(cid)
    store.flush()
    assert not store.has(cid)


def test_directory_read_error_is_translated(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid, _ = raw_block(1)
    store.path_of(cid).mkdir(parents=True)  # a directory where the block file should be
    with pytest.raises(BlockStoreError) as info:
        store.get(cid)
    assert info.value.cid == cid


def _flip_a_byte(path: Path) -> bytes:
    """Damage a block file as a bad disk would: same size, one byte changed; returns the damage."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return bytes(data)


def test_directory_damaged_file_of_the_right_size_is_replaced_by_put(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)
    store.put_block(cid, data)
    damage = _flip_a_byte(store.path_of(cid))
    store.put_many([(cid, data)], verify=False)  # what import-car does
    assert store.path_of(cid).read_bytes() == data
    assert (store.quarantine_dir / store.path_of(cid).name).read_bytes() == damage  # the evidence
    assert store.get(cid) == data


def test_directory_damaged_file_read_is_quarantined_and_named(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    (cid, data), other = cbor_block(1), raw_block(2)
    store.put_many([(cid, data), other])
    path = store.path_of(cid)
    damage = _flip_a_byte(path)
    with pytest.raises(VerificationError) as info:
        store.get(cid)
    moved = store.quarantine_dir / path.name
    assert info.value.cid == cid and info.value.path == str(path)
    assert str(path) in str(info.value) and str(moved) in str(info.value) and str(cid) in str(info.value)
    assert "import-car" in str(info.value)
    assert moved.read_bytes() == damage and not path.exists()
    assert set(store.iter_cids()) == {other[0]}  # the quarantine is not listed
    with pytest.raises(BlockNotFoundError):
        store.get(cid)
    store.put_block(cid, data)
    assert store.get(cid) == data


def test_directory_quarantine_keeps_every_damaged_copy(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)
    for _ in range(2):
        store.put_block(cid, data)
        _flip_a_byte(store.path_of(cid))
        with pytest.raises(VerificationError):
            store.get(cid)
    name = store.path_of(cid).name
    assert sorted(p.name for p in store.quarantine_dir.iterdir()) == [name, f"{name}.2"]


def test_directory_quarantine_puts_back_a_copy_repaired_meanwhile(tmp_path: Path) -> None:
    """A reader saw damaged bytes, a writer repaired the file, then the reader sets it aside."""
    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)
    store.put_block(cid, data)
    _flip_a_byte(store.path_of(cid))
    store.put_block(cid, data)  # the repair, between the failed read and the move
    assert store._quarantine(cid) is None  # the move, as the reader makes it: undone
    assert store.get(cid) == data


def _temp_name(store: DirectoryStore, cid: CID, pid: int = 4_000_000, n: int = 0) -> Path:
    path = store.path_of(cid)
    return path.with_name(f".{path.name}.{pid}.{n}.tmp")


def test_directory_removes_temp_files_no_writer_holds(tmp_path: Path) -> None:
    import fcntl

    store = DirectoryStore(tmp_path)
    (cid, data), other = cbor_block(1), raw_block(2)
    store.put_many([(cid, data), other])
    killed = _temp_name(store, raw_block(3)[0])
    killed.parent.mkdir(exist_ok=True)
    killed.write_bytes(b"half a blo")  # as a writer killed before its rename leaves it
    live = _temp_name(store, cid, n=1)
    live.write_bytes(b"being written")
    foreign = store.path_of(cid).parent / ".DS_Store.tmp"
    foreign.write_bytes(b"not ours")
    with open(live, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # a writer that is still running holds its lock
        assert store.remove_stale_temp_files() == 1
        assert not killed.exists() and live.exists() and foreign.exists()
    assert store.remove_stale_temp_files() == 1  # its writer is gone now
    assert not live.exists() and foreign.exists()
    assert store.get_many([cid, other[0]]) == {cid: data, other[0]: other[1]}


def test_directory_writer_starts_over_when_gc_removed_its_file_before_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    store = DirectoryStore(tmp_path)
    cid, data = cbor_block(1)
    real_flock = fcntl.flock
    raced: list[str] = []

    def gc_wins_the_race(fd: int, op: int) -> None:
        if not raced:  # gc removes the fresh file between the writer's open and its flock
            (name,) = [p for p in store.path_of(cid).parent.iterdir() if p.name.endswith(".tmp")]
            raced.append(name.name)
            assert store.remove_stale_temp_files() == 1
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", gc_wins_the_race)
    store.put_block(cid, data)
    monkeypatch.undo()
    assert raced and store.get(cid) == data
    assert [p.name for p in _all_files(tmp_path)] == [store.path_of(cid).name]


# == CAR ====================================================================================
def _dag(n: int = 5) -> tuple[CID, list[Block]]:
    """A small DAG: a root linking to ``n`` dag-cbor children that each link a raw leaf."""
    leaves = [raw_block(i) for i in range(n)]
    children = [make_block({"i": i, "leaf": leaves[i][0]}) for i in range(n)]
    root = make_block({"children": [c for c, _ in children], "name": "root"})
    return root[0], [root] + [b for pair in zip(children, leaves) for b in pair]


def _car_bytes(roots: list[CID], blocks: list[Block]) -> bytes:
    buf = io.BytesIO()
    write_car(buf, roots, blocks)
    return buf.getvalue()


def _section_boundaries(data: bytes) -> list[int]:
    """Offsets where a header or section ends, by decoding the length varints."""
    out, pos = [], 0
    while pos < len(data):
        n = shift = 0
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        pos += n
        out.append(pos)
    return out


# The CARv1 specification's fixture "carv1-basic" (ipld/ipld, specs/transport/car/fixture),
# one header or section a line: two dag-cbor roots, CIDv0 dag-pb nodes and raw leaves.
CARV1_BASIC = bytes.fromhex(
    "".join(
        """
63a265726f6f747382d82a58250001711220f88bc853804cf294fe417e4fa83028689fcdb1b1592c5102e1474dbc200fab8b
d82a5825000171122069ea0740f9807a28f4d932c62e7c1c83be055e55072c90266ab3e79df63a365b6776657273696f6e01
5b01711220f88bc853804cf294fe417e4fa83028689fcdb1b1592c5102e1474dbc200fab8b
a2646c696e6bd82a582300122002acecc5de2438ea4126a3010ecb1f8a599c8eff22fff1a1dcffe999b27fd3de646e616d6564626c6970
8301122002acecc5de2438ea4126a3010ecb1f8a599c8eff22fff1a1dcffe999b27fd3de
122e0a2401551220b6fbd675f98e2abd22d4ed29fdc83150fedc48597e92dd1a7a24381d44a274511204626561721804122f0a2212
2079a982de3c9907953d4d323cee1d0fb1ed8f45f8ef02870c0cb9e09246bd530a12067365636f6e64189501
2801551220b6fbd675f98e2abd22d4ed29fdc83150fedc48597e92dd1a7a24381d44a2745163636363
8001122079a982de3c9907953d4d323cee1d0fb1ed8f45f8ef02870c0cb9e09246bd530a
122d0a240155122081cc5b17018674b401b42f35ba07bb79e211239c23bffe658da1577e3e6468771203646f671804122d0a2212
20e7dc486e97e6ebe5cdabab3e392bdad128b6e09acc94bb4e2aa2af7b986d24d0120566697273741833
280155122081cc5b17018674b401b42f35ba07bb79e211239c23bffe658da1577e3e64687762626262
511220e7dc486e97e6ebe5cdabab3e392bdad128b6e09acc94bb4e2aa2af7b986d24d0
122d0a240155122061be55a8e2f6b4e172338bddf184d6dbee29c98853e0a0485ecee7f27b9af0b412036361741804
280155122061be55a8e2f6b4e172338bddf184d6dbee29c98853e0a0485ecee7f27b9af0b461616161
360171122069ea0740f9807a28f4d932c62e7c1c83be055e55072c90266ab3e79df63a365ba2646c696e6bf6646e616d65656c696d626f
""".split()
    )
)


def test_car_round_trip_file(tmp_path: Path) -> None:
    root, blocks = _dag()
    path = tmp_path / "dag.car"
    assert write_car(path, [root], iter(blocks)) == len(blocks)
    roots, it = read_car(path)
    assert roots == [root]
    assert list(it) == blocks
    assert [p.name for p in tmp_path.iterdir()] == ["dag.car"]


def test_car_round_trip_fileobj() -> None:
    root, blocks = _dag()
    roots, it = read_car(io.BytesIO(_car_bytes([root], blocks)))
    assert roots == [root] and list(it) == blocks


def test_car_empty_and_rootless() -> None:
    data = _car_bytes([], [])
    roots, it = read_car(io.BytesIO(data))
    assert roots == [] and list(it) == []
    store = MemoryStore()
    assert import_car(store, io.BytesIO(data)) == []
    assert len(store) == 0


def test_car_large_and_raw_blocks(tmp_path: Path) -> None:
    big = raw_block(1, size=3 << 20)  # larger than the reader's chunk size
    blocks = [big, cbor_block(1), raw_block(2)]
    path = tmp_path / "big.car"
    write_car(path, [big[0]], blocks)
    roots, it = read_car(path)
    assert list(it) == blocks
    with CarStore(path) as store:
        assert store.get(big[0]) == big[1]


def test_carv1_basic_fixture(tmp_path: Path) -> None:
    roots, it = read_car(io.BytesIO(CARV1_BASIC))
    assert [str(r) for r in roots] == [
        "bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm",
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm",
    ]
    blocks = list(it)
    assert [str(c) for c, _ in blocks] == [
        "bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm",
        "QmNX6Tffavsya4xgBi2VJQnSuqy9GsxongxZZ9uZBqp16d",
        "bafkreifw7plhl6mofk6sfvhnfh64qmkq73oeqwl6sloru6rehaoujituke",
        "QmWXZxVQ9yZfhQxLD35eDR8LiMRsYtHxYqTFCBbJoiJVys",
        "bafkreiebzrnroamgos2adnbpgw5apo3z4iishhbdx77gldnbk57d4zdio4",
        "QmdwjhxpxzcMsR3qUuj7vUL8pbA7MgR3GAxWi2GLHjsKCT",
        "bafkreidbxzk2ryxwwtqxem4l3xyyjvw35yu4tcct4cqeqxwo47zhxgxqwq",
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm",
    ]
    assert blocks[2][1] == b"cccc"
    # writing the same roots and blocks reproduces the fixture byte for byte
    assert _car_bytes(roots, blocks) == CARV1_BASIC
    # the whole fixture imports into a directory store, CIDv0 blocks included
    store = DirectoryStore(tmp_path)
    assert import_car(store, io.BytesIO(CARV1_BASIC)) == roots
    assert store.get_many(c for c, _ in blocks) == dict(blocks)
    path = tmp_path / "basic.car"
    path.write_bytes(CARV1_BASIC)
    car = CarStore(path)
    assert car.roots == roots and len(car) == 8
    assert car.get(blocks[1][0]) == blocks[1][1]
    car.close()


def test_car_decoded_by_libipld_identically() -> None:
    root, blocks = _dag()
    blocks = [b for b in blocks if b[0].codec != RAW]  # libipld decodes dag-cbor blocks only
    data = _car_bytes([root], blocks)
    header, decoded = libipld.decode_car(data)
    assert header == {"roots": [root.buffer], "version": 1}
    assert decoded == {c.buffer: libipld.decode_dag_cbor(d) for c, d in blocks}


def test_car_truncated_everywhere_is_an_error(tmp_path: Path) -> None:
    root, blocks = _dag(3)
    data = _car_bytes([root], blocks)
    boundaries = set(_section_boundaries(data))
    assert len(boundaries) == len(blocks) + 1
    for cut in range(len(data)):
        if cut in boundaries:
            continue
        with pytest.raises(CarError) as info:
            roots, it = read_car(io.BytesIO(data[:cut]))
            list(it)
        offset = info.value.offset
        assert offset is not None and 0 <= offset <= cut
        store = MemoryStore()
        with pytest.raises(CarError):
            import_car(store, io.BytesIO(data[:cut]))
        assert len(store) == 0, f"cut at {cut} imported blocks"


def test_car_truncated_at_section_boundary_is_caught_by_import() -> None:
    """CARv1 has no end marker: a cut between sections is a valid CAR, but an incomplete DAG."""
    root, blocks = _dag(3)
    data = _car_bytes([root], blocks)
    for cut in sorted(_section_boundaries(data))[:-1]:
        roots, it = read_car(io.BytesIO(data[:cut]))
        got = list(it)
        assert roots == [root] and got == blocks[: len(got)]
        store = MemoryStore()
        with pytest.raises(CarError) as info:
            import_car(store, io.BytesIO(data[:cut]))
        assert "incomplete" in str(info.value)
        assert len(store) == 0


def test_import_car_accepts_links_already_in_store() -> None:
    root, blocks = _dag(3)
    store = MemoryStore()
    store.put_many(blocks[1:])  # everything but the root
    assert import_car(store, io.BytesIO(_car_bytes([root], blocks[:1]))) == [root]
    assert store.get(root) == blocks[0][1]


def test_import_car_into_directory_store(tmp_path: Path) -> None:
    root, blocks = _dag(20)
    path = tmp_path / "dag.car"
    write_car(path, [root], blocks)
    store = DirectoryStore(tmp_path / "blocks")
    assert import_car(store, path) == [root]
    assert set(store.iter_cids()) == {c for c, _ in blocks}
    assert store.stats.blocks_written == len(blocks)


def test_car_truncated_file_on_disk(tmp_path: Path) -> None:
    root, blocks = _dag(2)
    data = _car_bytes([root], blocks)
    path = tmp_path / "cut.car"
    path.write_bytes(data[:-3])
    with pytest.raises(CarError) as info:
        CarStore(path)
    assert info.value.path == path
    assert info.value.offset == _section_boundaries(data)[-2]
    store = DirectoryStore(tmp_path / "blocks")
    with pytest.raises(CarError) as info2:
        import_car(store, path)
    assert info2.value.path == path
    assert list(store.iter_cids()) == []


def test_car_wrong_bytes_is_a_verification_error(tmp_path: Path) -> None:
    root, blocks = _dag(2)
    data = bytearray(_car_bytes([root], blocks))
    data[-1] ^= 0xFF  # the last byte of the last block
    with pytest.raises(VerificationError) as info:
        list(read_car(io.BytesIO(bytes(data)))[1])
    assert info.value.cid == blocks[-1][0]
    store = MemoryStore()
    with pytest.raises(VerificationError):
        import_car(store, io.BytesIO(bytes(data)))
    assert len(store) == 0
    path = tmp_path / "bad.car"
    path.write_bytes(bytes(data))
    with CarStore(path) as car:  # indexing does not read blocks; reading verifies them
        with pytest.raises(VerificationError):
            car.get(blocks[-1][0])
        assert car.get(blocks[0][0]) == blocks[0][1]


def _with_header(header: bytes, rest: bytes = b"") -> bytes:
    return bytes([len(header)]) + header + rest


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated varint"),
        (b"\x00", "bad header"),
        (b"\x05\xa0", "truncated header"),
        (_with_header(b"\xff\xff"), "not DAG-CBOR"),
        (_with_header(bytes.fromhex("8101")), "expected a map"),  # [1]
        (_with_header(bytes.fromhex("a16776657273696f6e02")), "version 2"),  # {"version": 2}
        (_with_header(bytes.fromhex("a16776657273696f6e01")), "roots"),  # {"version": 1}
        (_with_header(bytes.fromhex("a265726f6f74738101" "6776657273696f6e01")), "roots"),  # roots: [1]
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 9 bytes"),
        (b"\xfe\xff\xff\xff\x7f", "bad header: length"),
    ],
)
def test_car_bad_header(data: bytes, message: str) -> None:
    with pytest.raises(CarError) as info:
        read_car(io.BytesIO(data))
    assert message in str(info.value)
    assert info.value.offset is not None and info.value.path is None


def test_car_bad_sections() -> None:
    header = _car_bytes([], [])
    cid, data = raw_block(1)

    def section(body: bytes) -> bytes:
        return header + bytes([len(body)]) + body

    cases = {
        "non-minimal varint": header + b"\x81\x00",
        "zero length": header + b"\x00",
        "unknown CID version": section(b"\x02\x55\x12\x20" + bytes(32) + data),
        "CIDv0 wrong length": section(b"\x12\x21" + bytes(33)),
        "CIDv0 longer than section": section(b"\x12\x20" + bytes(10)),
        "digest longer than section": section(b"\x01\x55\x12\x40" + bytes(40)),
        "truncated CID varint": section(b"\x01\x55\x92"),
    }
    for name, bad in cases.items():
        with pytest.raises(CarError) as info:
            list(read_car(io.BytesIO(bad))[1])
        assert info.value.offset == len(header) or (
            name == "truncated CID varint" and info.value.offset is not None
        ), name
        assert "CAR stream, byte" in str(info.value)


def test_car_error_carries_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.car"
    path.write_bytes(b"\x00")
    with pytest.raises(CarError) as info:
        read_car(path)
    assert info.value.path == path and info.value.offset == 0
    assert str(path) in str(info.value)
    with pytest.raises(CarError) as info:
        read_car(tmp_path / "missing.car")
    assert info.value.path == tmp_path / "missing.car"


def test_write_car_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.car"
    path.write_bytes(b"previous content")

    def failing_blocks() -> Iterator[Block]:
        yield raw_block(1)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_car(path, [], failing_blocks())
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.car"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_written_to_share_get_the_umask_mode(tmp_path: Path, umask: int, mode: int) -> None:
    """A CAR, a proof, a pin list (atomic writes) is readable as any file the user writes:
    0666 less the umask, not mkstemp's 0600 (in a child: the umask is the process's)."""
    code = ("import os, sys, pathlib\nos.umask(int(sys.argv[2], 8))\nfrom halodb.blockstore.car import write_car\n"
            "write_car(pathlib.Path(sys.argv[1]), [], iter([]))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.car"), oct(umask)], check=True, timeout=60)
    assert (tmp_path / "out.car").stat().st_mode & 0o777 == mode


def test_import_car_rejects_undecodable_linked_block() -> None:
    bad = b"\xd8\x2a\xff"  # mentions tag 42 but is not DAG-CBOR
    cid = CID.for_bytes(bad)
    with pytest.raises(DecodeError):
        import_car(MemoryStore(), io.BytesIO(_car_bytes([cid], [(cid, bad)])))


def test_car_store_closed(tmp_path: Path) -> None:
    path = tmp_path / "x.car"
    cid, data = raw_block(1)
    write_car(path, [cid], [(cid, data)])
    store = CarStore(path)
    store.close()
    store.close()
    with pytest.raises(BlockStoreError):
        store.get(cid)


# == open_store =============================================================================
def test_open_store_default(tmp_path: Path) -> None:
    for url in (None, ""):
        store = open_store(url, tmp_path)
        assert isinstance(store, SqliteStore)
        assert store.root == tmp_path / "blocks"
        store.close()


def test_open_store_memory(tmp_path: Path) -> None:
    assert isinstance(open_store("memory:", tmp_path), MemoryStore)


def test_open_store_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"file://{tmp_path}/a%20b", tmp_path / "home")
    assert isinstance(store, SqliteStore) and store.root == tmp_path / "a b"
    store = open_store(str(tmp_path / "plain"), tmp_path / "home")
    assert isinstance(store, SqliteStore) and store.root == tmp_path / "plain"
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("~/tilde", tmp_path / "home")
    assert isinstance(store, SqliteStore) and store.root == tmp_path / "tilde"


def test_open_store_car(tmp_path: Path) -> None:
    path = tmp_path / "x.car"
    cid, data = raw_block(1)
    write_car(path, [cid], [(cid, data)])
    for url in (f"car:{path}", f"car://{path}"):
        store = open_store(url, tmp_path)
        assert isinstance(store, CarStore) and store.path == path
        assert store.get(cid) == data
        store.close()
    with pytest.raises(CarError):
        open_store(f"car:{tmp_path / 'missing.car'}", tmp_path)


def test_open_store_kubo_url(tmp_path: Path) -> None:
    from halodb.blockstore.kubo import KuboStore

    store = open_store("kubo+http://127.0.0.1:5001", tmp_path)
    assert isinstance(store, KuboStore) and store.base == "http://127.0.0.1:5001/api/v0/"
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/blocks",
        "file://otherhost/path",
        "memory:foo",
        "car:",
    ],
)
def test_open_store_unsupported(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreURLError) as info:
        open_store(url, tmp_path)
    assert info.value.url == url
    assert url in str(info.value)
    assert "memory:" in str(info.value) and "car:" in str(info.value)


@pytest.mark.parametrize(("url", "meant"), [("127.0.0.1:5001", "127.0.0.1:5001"), ("localhost:8080/", None),
                                           ("/ip4/127.0.0.1/tcp/41209", "127.0.0.1:41209"),
                                           ("/ip6/::1/tcp/5001", "[::1]:5001"), ("[::1]:5001", "[::1]:5001")])
def test_a_network_address_given_as_a_store_is_refused_naming_the_url_meant(url: str, meant: str | None,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreURLError) as info:
        open_store(url, tmp_path)
    assert info.value.url == url and not any(tmp_path.iterdir())  # no folder made for it
    if meant is not None:
        assert f"a Kubo node's RPC API is kubo+http://{meant}, a gateway http://{meant}/" in info.value.message
    (tmp_path / "127.0.0.1:5001").mkdir()  # an existing folder of that name is still a folder
    open_store("127.0.0.1:5001", tmp_path).close()


def test_all_is_explicit() -> None:
    assert sorted(blockstore_pkg.__all__) == [
        "Block",
        "BlockStore",
        "CarStore",
        "DirectoryStore",
        "MemoryStore",
        "SqliteStore",
        "StoreStats",
        "import_car",
        "open_store",
        "read_car",
        "write_car",
    ]
    for name in blockstore_pkg.__all__:
        assert hasattr(blockstore_pkg, name)


# == CachingStore ===========================================================================
class TestCachingStore(BlockStoreTests):
    """A memory 'remote' behind a memory cache: the shared suite, plus caching behaviour."""

    corrupt_damages_storage = True

    def make_store(self, tmp_path: Path) -> BlockStore:
        from halodb.blockstore.caching import CachingStore

        self.remote_store = MemoryStore()
        return CachingStore(MemoryStore(), self.remote_store)

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        from halodb.blockstore.caching import CachingStore

        assert isinstance(store, CachingStore)
        for side in (store.local, store.remote):
            assert isinstance(side, MemoryStore)
            if cid in side._blocks:
                side._blocks[cid] = b"corrupted " + side._blocks[cid]


def test_caching_store_fetches_each_block_once(tmp_path: Path) -> None:
    from halodb.blockstore.caching import CachingStore

    remote, local = MemoryStore(), DirectoryStore(tmp_path / "cache")
    blocks = [raw_block(i) for i in range(20)]
    remote.put_many(blocks)
    store = CachingStore(local, remote)
    assert store.get_many(c for c, _ in blocks) == dict(blocks)
    assert remote.stats.blocks_read == 20
    assert store.get_many(c for c, _ in blocks) == dict(blocks)
    assert store.get(blocks[3][0]) == blocks[3][1]
    assert remote.stats.blocks_read == 20  # the second time, all from the local cache
    with pytest.raises(BlockNotFoundError):
        store.get(absent_cid())


def test_caching_store_fetches_a_damaged_local_copy_again(tmp_path: Path) -> None:
    from halodb.blockstore.caching import CachingStore

    remote, local = MemoryStore(), DirectoryStore(tmp_path / "cache")
    blocks = [cbor_block(1), raw_block(2), raw_block(3)]
    remote.put_many(blocks)
    local.put_many(blocks)
    store = CachingStore(local, remote)
    (cid, data), (cid2, data2) = blocks[0], blocks[1]
    damage = _flip_a_byte(local.path_of(cid))
    _flip_a_byte(local.path_of(cid2))
    remote.stats.reset()
    assert store.get(cid) == data
    assert store.get_many(c for c, _ in blocks) == dict(blocks)
    assert remote.stats.blocks_read == 2  # only the two damaged blocks came from the remote
    store.flush()  # (fetched blocks are written behind the reader)
    assert local.path_of(cid).read_bytes() == data and local.path_of(cid2).read_bytes() == data2
    assert (local.quarantine_dir / local.path_of(cid).name).read_bytes() == damage


def test_caching_store_names_the_damaged_local_copy_not_the_remote(tmp_path: Path) -> None:
    from halodb.blockstore.caching import CachingStore

    remote, local = MemoryStore(), DirectoryStore(tmp_path / "cache")
    cid, data = cbor_block(1)
    local.put_block(cid, data)  # the remote never had it
    _flip_a_byte(local.path_of(cid))
    store = CachingStore(local, remote)
    for many in (False, True):
        with pytest.raises(VerificationError) as info:
            store.get_many([cid]) if many else store.get(cid)
        assert info.value.cid == cid
        assert info.value.source == local.describe()
        assert str(local.path_of(cid)) in str(info.value)
        assert remote.describe() not in str(info.value)
        local.put_block(cid, data)
        _flip_a_byte(local.path_of(cid))


class _UncheckedStore(MemoryStore):
    """Fault injection: a remote that hands out its blocks without hashing them."""

    trusted_reads = True

    def describe(self) -> str:
        return "unchecked remote"


def test_caching_store_names_the_remote_for_its_damaged_copy(tmp_path: Path) -> None:
    """A fetched block is verified once, and its error names the remote alone."""
    from halodb.blockstore.caching import CachingStore

    local = DirectoryStore(tmp_path / "cache")
    cid, data = cbor_block(1)
    for remote in (MemoryStore(), _UncheckedStore()):
        for many in (False, True):
            remote._blocks[cid] = data[:-1] + b"\x00"
            store = CachingStore(local, remote)
            with pytest.raises(VerificationError) as info:
                store.get_many([cid]) if many else store.get(cid)
            assert info.value.source == remote.describe() and local.describe() not in str(info.value)
            assert not local.has(cid)


# --- write-behind: fetched blocks reach the local store from a background thread -------------------
class _FailingDisk(MemoryStore):
    """Fault injection: a local store whose writes fail (a full disk)."""

    def _put_many(self, blocks: list[tuple[CID, bytes]]) -> None:
        raise BlockStoreError("No space left on device", store="failing disk")


class _SlowDisk(MemoryStore):
    """Fault injection: a local store that takes its time for each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def _put_many(self, blocks: list[tuple[CID, bytes]]) -> None:
        import time

        time.sleep(0.05)
        self.batches.append(len(blocks))
        super()._put_many(blocks)


def test_fetched_blocks_are_served_until_written_and_flush_waits_for_them(tmp_path: Path) -> None:
    from halodb.blockstore.caching import CachingStore

    remote, local = MemoryStore(), _SlowDisk()
    blocks = [raw_block(i, 1000) for i in range(50)]
    remote.put_many(blocks)
    store = CachingStore(local, remote)
    assert store.get_many(c for c, _ in blocks) == dict(blocks)
    assert store.get_many(c for c, _ in blocks[:5]) == dict(blocks[:5])  # from memory or disk, never refetched
    assert remote.stats.blocks_read == 50
    store.flush()
    assert all(local.has(c) for c, _ in blocks) and sum(local.batches) == 50
    assert store.local_store() is local


def test_a_failed_cache_write_does_not_fail_the_read_and_is_raised_at_flush() -> None:
    from halodb.blockstore.caching import CachingStore

    remote = MemoryStore()
    cid, data = cbor_block(7)
    remote.put_many([(cid, data)])
    store = CachingStore(_FailingDisk(), remote)
    assert store.get(cid) == data
    with pytest.raises(BlockStoreError, match="No space left on device"):
        store.flush()
    store.flush()  # raised once
    assert store.get(cid) == data and remote.stats.blocks_read == 2  # not cached: fetched again
    with pytest.raises(BlockStoreError, match="No space left on device"):
        store.close()


def test_write_behind_waits_for_the_disk_past_its_memory_bound() -> None:
    from halodb.blockstore.write_behind import WriteBehind

    local = _SlowDisk()
    behind = WriteBehind(local, max_bytes=2000)
    for i in range(10):
        behind.add([raw_block(i, 1000)])
        assert behind._bytes <= 3000  # the bound, plus what one add brings
    behind.drain()
    assert sum(local.batches) == 10 and behind.get([raw_block(3, 1000)[0]]) == {}


class _WatchedDisk(_SlowDisk):
    """A slow disk that records the nice value of each thread that writes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.nice: dict[str, int] = {}

    def _put_many(self, blocks: list[tuple[CID, bytes]]) -> None:
        import os
        import threading

        self.nice[threading.current_thread().name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        super()._put_many(blocks)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_writer_thread_yields_the_cpu_and_a_reader_past_the_bound_writes_itself() -> None:
    import os
    import threading
    import time

    from halodb.blockstore.write_behind import WRITER_NICE, WriteBehind

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    local = _WatchedDisk()
    behind = WriteBehind(local, max_bytes=2000)
    behind.add([raw_block(0, 1000)])
    for _ in range(200):  # the writer thread writes it (drain would write it here)
        if local.batches:
            break
        time.sleep(0.05)
    assert local.nice["halodb-cache-writer"] == max(mine, WRITER_NICE)
    # a writer thread that gets no CPU (here: none starts) does not stall the readers: past
    # the bound, the reader writes a batch itself, at its own priority
    behind._start = lambda: None  # type: ignore[method-assign]
    for i in range(1, 10):
        behind.add([raw_block(i, 1000)])
        assert behind._bytes <= 3000
    assert local.nice[threading.current_thread().name] == mine
    behind.drain()
    assert sum(local.batches) == 10


def test_the_writer_thread_writes_in_the_pauses_of_the_reading_or_once_half_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from halodb.blockstore import write_behind

    monkeypatch.setattr(write_behind, "_QUIET", 3600.0)  # no pause in the reading: a reader adding all the time
    local = _SlowDisk()
    behind = write_behind.WriteBehind(local, max_bytes=10_000)
    for i in range(4):  # 4,000 bytes: less than half the bound, kept in memory
        behind.add([raw_block(i, 1000)])
    time.sleep(0.2)
    assert local.batches == [] and behind.get([raw_block(0, 1000)[0]]) != {}
    behind.add([raw_block(4, 1000), raw_block(5, 1000)])  # half full: written without a pause
    for _ in range(200):
        if sum(local.batches) == 6:
            break
        time.sleep(0.05)
    assert sum(local.batches) == 6
    behind.drain()


def test_blocks_queued_as_views_are_served_and_written_as_bytes(tmp_path: Path) -> None:
    from halodb.blockstore.sqlite import SqliteStore
    from halodb.blockstore.write_behind import WriteBehind

    whole = bytes(range(256)) * 8  # the bytes of a run of two leaves, as a gateway sent them
    view = memoryview(whole)
    a, b = CID.for_bytes(whole[:1000], 0x55), CID.for_bytes(whole[1000:], 0x55)
    for local in (MemoryStore(), SqliteStore(tmp_path / "blocks")):  # (SQLite binds a view as it is)
        behind = WriteBehind(local)
        behind.add([(a, view[:1000]), (b, view[1000:])])
        served = behind.get([a, b])
        assert all(type(d) is bytes for d in served.values()) and served == {a: whole[:1000], b: whole[1000:]}
        behind.drain()
        assert local.get(a) == whole[:1000] and type(local.get(b)) is bytes and local.get(b) == whole[1000:]
        local.close()


class _SlowRemote(MemoryStore):
    """Fault injection: a remote that takes its time and counts what it is asked for."""

    is_remote = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[CID] = []

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        import time

        self.asked.extend(cids)
        time.sleep(0.2)
        return super()._get_many(cids)


def test_a_block_many_threads_want_at_once_is_fetched_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from halodb.blockstore.caching import CachingStore

    remote = _SlowRemote()
    folder = remote.put(b"a folder every reader needs first", codec=0x55)
    chunks = [remote.put(f"chunk {i}".encode(), codec=0x55) for i in range(16)]
    store = CachingStore(MemoryStore(), remote)
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda c: store.get_many([folder, c]), chunks))
    assert all(g[folder] == remote.get(folder) and g[c] == remote.get(c) for g, c in zip(got, chunks))
    assert remote.asked.count(folder) == 1 and sorted(remote.asked) == sorted([folder, *chunks])


def test_blocks_still_queued_are_written_when_the_process_exits(tmp_path: Path) -> None:
    """No close, no flush: the process ends right after its read, and the blocks are on disk
    (300 blocks: more than a directory store writes without its pool of threads, which no
    longer starts threads at exit)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from halodb.blockstore import DirectoryStore, MemoryStore\n"
        "from halodb.blockstore.caching import CachingStore\n"
        "from halodb.testing.blockstore import raw_block\n"
        "remote = MemoryStore(); blocks = [raw_block(i, 10_000) for i in range(300)]; remote.put_many(blocks)\n"
        "store = CachingStore(DirectoryStore(Path(sys.argv[1])), remote)\n"
        "assert len(store.get_many(c for c, _ in blocks)) == 300\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "failed" not in done.stderr, done.stderr
    cache = DirectoryStore(tmp_path / "cache")
    assert {c for c, _ in (raw_block(i, 10_000) for i in range(300))} == set(cache.iter_cids())
