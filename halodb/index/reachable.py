"""Every block of the index DAG from a head: what ``gc`` keeps and a CAR export carries.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.index.model import Commit
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); index = Index(store)
>>> root = index.write_root(index.empty())
>>> head = write_commit(store, Commit(index=root, time=parse_time("2024-08-12"), author="a", message="m", parents=()))
>>> sorted(map(str, reachable(store, index, head))) == sorted(map(str, store.iter_cids()))
True
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from halodb.blockstore.base import BlockStore
from halodb.blockstore.car import write_car
from halodb.index.history import load_commit, walk
from halodb.index.index import Index
from halodb.index.model import Commit, Entry
from halodb.ipld import CID

__all__ = ["export_dag", "reachable"]


def reachable(
    store: BlockStore, index: Index, head: CID, *, history: bool = True, commits: dict[CID, Commit] | None = None
) -> Iterator[CID]:
    """Every block from ``head``: commits (the whole history unless ``history=False``), index
    roots, tree nodes of the three trees, and the STAC items; each CID once."""
    seen: set[CID] = set()
    chain = walk(store, head, cache=commits) if history else iter([(head, load_commit(store, head, commits))])
    for cid, commit in chain:
        yield cid
        if commit.index in seen:
            continue
        seen.add(commit.index)
        yield commit.index
        root = index.load_root(commit.index)
        for tree, tree_root in ((index.datasets, root.datasets), (index.by_path, root.by_path), (index.by_data, root.by_data)):
            for node_cid in tree.node_cids(tree_root):
                if node_cid in seen:
                    continue
                seen.add(node_cid)
                yield node_cid
                node = tree.load(node_cid)
                if node.level == 0 and tree is index.datasets:
                    for value in node.values:
                        item = Entry.from_ipld(value, cid=node_cid).item
                        if item not in seen:
                            seen.add(item)
                            yield item


def export_dag(
    store: BlockStore, index: Index, head: CID, path: str | Path, *, history: bool = True,
    commits: dict[CID, Commit] | None = None,
) -> int:
    """Write every block :func:`reachable` from ``head`` to a CARv1 file rooted at ``head``
    (atomically); returns the number of blocks."""
    count = 0

    def blocks() -> Iterator[tuple[CID, bytes]]:
        nonlocal count
        for cid in reachable(store, index, head, history=history, commits=commits):
            count += 1
            yield cid, store.get(cid)

    write_car(path, [head], blocks())
    return count
