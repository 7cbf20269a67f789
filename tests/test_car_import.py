"""`import-car` (issue 10, defects 9 and 12): only what the roots reach is stored, dag-pb
links count, and the import streams instead of holding the CAR in memory."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from halodb.blockstore import DirectoryStore, MemoryStore
from halodb.blockstore.base import Block
from halodb.blockstore.car import import_car, import_reachable, write_car
from halodb.errors import CarError
from halodb.ipld import CID, DAG_PB, make_block
from halodb.testing.blockstore import raw_block
from halodb.unixfs.build import encode_pb


def small_dag(tag: str, first: int, leaves: int = 3) -> tuple[CID, list[Block]]:
    """A root linking to ``leaves`` raw blocks (numbered from ``first``): the root and every block, root first."""
    blocks = [raw_block(i) for i in range(first, first + leaves)]
    root = make_block({"tag": tag, "leaves": [c for c, _ in blocks]})
    return root[0], [root, *blocks]


def test_import_keeps_only_what_the_roots_reach_even_from_a_pipe(tmp_path: Path) -> None:
    """Two roots are both kept; 2,000 blocks nothing links to are not (a CAR cannot fill the disk)."""
    first, first_blocks = small_dag("first", 0)
    second, second_blocks = small_dag("second", 100)
    junk = [make_block({"junk": i}) for i in range(2000)]
    car = io.BytesIO()
    write_car(car, [first, second], junk[:1000] + first_blocks + junk[1000:] + second_blocks)

    store = DirectoryStore(tmp_path / "blocks")
    read, write = os.pipe()  # a stream that cannot seek: spooled, then imported the same way

    def feed() -> None:
        with open(write, "wb") as f:
            f.write(car.getvalue())

    writer = threading.Thread(target=feed)
    writer.start()
    with open(read, "rb") as pipe:
        done = import_reachable(store, pipe)
    writer.join()
    assert done.roots == [first, second]
    assert (done.blocks, done.imported, done.skipped) == (2008, 8, 2000)
    assert set(store.iter_cids()) == {c for c, _ in first_blocks + second_blocks}
    assert import_car(MemoryStore(), io.BytesIO(car.getvalue())) == [first, second]


def test_dag_pb_links_are_followed_and_must_be_present() -> None:
    leaf, leaf_data = raw_block(7)
    node = encode_pb([(leaf, "leaf", len(leaf_data))], b"\x08\x01")
    root = CID(bytes([0x01, DAG_PB, 0x12, 0x20]) + hashlib.sha256(node).digest())  # CIDv1, dag-pb, sha2-256
    whole = io.BytesIO()
    write_car(whole, [root], [(root, node), (leaf, leaf_data)])
    store = MemoryStore()
    assert import_car(store, io.BytesIO(whole.getvalue())) == [root]
    assert store.get(leaf) == leaf_data

    cut = io.BytesIO()
    write_car(cut, [root], [(root, node)])
    empty = MemoryStore()
    with pytest.raises(CarError) as info:
        import_car(empty, io.BytesIO(cut.getvalue()))
    assert "incomplete" in str(info.value) and str(leaf) in str(info.value) and str(root) in str(info.value)
    assert len(empty) == 0


def test_import_holds_about_one_batch_in_memory_not_the_car(tmp_path: Path) -> None:
    """40 MiB of blocks are imported with well under 40 MiB of Python memory at the peak."""
    leaves = [raw_block(i, size=64 << 10) for i in range(640)]
    root = make_block({"leaves": [c for c, _ in leaves]})
    path = tmp_path / "big.car"
    write_car(path, [root[0]], [root, *leaves])
    assert path.stat().st_size > 40 << 20
    store = DirectoryStore(tmp_path / "blocks")
    tracemalloc.start()
    try:
        assert import_car(store, path) == [root[0]]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak {peak / (1 << 20):.1f} MiB for a {path.stat().st_size / (1 << 20):.0f} MiB CAR"
    assert store.stats.blocks_written == 641 and store.get(leaves[-1][0]) == leaves[-1][1]


def test_a_block_over_the_block_limit_is_refused_and_nothing_is_imported(tmp_path: Path) -> None:
    from halodb.ipld.limits import MAX_BLOCK_SIZE

    big = raw_block(7, size=MAX_BLOCK_SIZE + 1)
    small = make_block({"a": [big[0]]})
    path = tmp_path / "big.car"
    write_car(path, [small[0]], [small, big])
    store = MemoryStore()
    with pytest.raises(CarError, match=rf"block {big[0]} is {MAX_BLOCK_SIZE + 1} bytes, more than the"):
        import_car(store, path)
    assert len(store) == 0
    at_limit = raw_block(8, size=MAX_BLOCK_SIZE)
    write_car(path, [at_limit[0]], [at_limit])
    assert import_car(store, path) == [at_limit[0]]
