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
from halodb.errors import CIDError
from halodb.index.history import load_commit, walk
from halodb.index.index import Index, count_error
from halodb.index.model import Commit, Entry
from halodb.index.prolly import NodeSpan, ProllyTree
from halodb.index.tags import load_tags
from halodb.ipld import CID

__all__ = ["export_dag", "reachable"]


def reachable(
    store: BlockStore, index: Index, head: CID, *, history: bool = True, commits: dict[CID, Commit] | None = None,
    data: set[CID] | None = None,
) -> Iterator[CID]:
    """Every block from ``head``: commits (the whole history unless ``history=False``), their
    history trees (with the history only: they link the earlier commits), tags blocks and tag blocks, index roots, tree nodes of every tree (``by_doi`` too), and the STAC items; each CID once.
    ``data``, when given, collects the data CIDs the datasets' entries name (the roots of
    the data DAGs, which the index does not link; a malformed one is left out).

    Each tree node is checked against its parent (:meth:`ProllyTree.walk_nodes`), and a subtree
    two versions share is walked once, so the work is that of the distinct blocks: a malformed
    tree, a "DAG bomb" among them, is a :class:`~halodb.errors.TreeShapeError`. The datasets
    trees may not hold more entries than their index roots declare.
    """
    seen: set[CID] = set()
    # per kind of tree, every node walked so far (a node is checked as a node of its kind)
    spans: dict[str, dict[CID, NodeSpan]] = {"datasets": {}, "by_path": {}, "by_data": {}, "by_doi": {}, "history": {}}
    history_tree = ProllyTree(store)
    chain = walk(store, head, cache=commits) if history else iter([(head, load_commit(store, head, commits))])
    for cid, commit in chain:
        if cid not in seen:
            seen.add(cid)
            yield cid
        if history and commit.history is not None and commit.history not in seen:
            for node_cid, _ in history_tree.walk_nodes(commit.history, spans["history"]):
                if node_cid not in seen:
                    seen.add(node_cid)
                    yield node_cid
        if commit.tags is not None and commit.tags not in seen:
            seen.add(commit.tags)
            yield commit.tags
            for tag in load_tags(store, commit).values():
                if tag not in seen:
                    seen.add(tag)
                    yield tag
        if commit.index in seen:
            continue
        seen.add(commit.index)
        yield commit.index
        root = index.load_root(commit.index)
        trees = [("datasets", index.datasets, root.datasets), ("by_path", index.by_path, root.by_path),
                 ("by_data", index.by_data, root.by_data)]
        if root.by_doi is not None:
            trees.append(("by_doi", index.by_doi, root.by_doi))
        for kind, tree, tree_root in trees:
            entries = 0
            for node_cid, node in tree.walk_nodes(tree_root, spans[kind]):
                if node_cid not in seen:
                    seen.add(node_cid)
                    yield node_cid
                if node.level == 0 and kind == "datasets":
                    entries += len(node.keys)
                    if entries > root.count:
                        raise count_error(root, f"holds more than the {root.count} datasets its index root "
                                                f"{commit.index} declares")
                    for value in node.values:
                        entry = Entry.from_ipld(value, cid=node_cid, inline=root.inline_items)
                        if data is not None and entry.data is not None:
                            try:
                                data.add(CID.parse(entry.data))
                            except CIDError:
                                pass  # not a CID: no data of it can be here
                        if entry.inline is not None:
                            continue  # held in the leaf: no block of its own
                        item = entry.item
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
