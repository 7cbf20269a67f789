"""``halodb log``: the main line of a history with what each version changed.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.index.model import Commit, Entry
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); index = Index(store)
>>> root = index.write_root(index.apply(index.empty(), {"c/a": Entry(store.put(b"\\xa0"), None, None)}, set()))
>>> head = write_commit(store, Commit(index=root, time=parse_time("2024-08-12"), author="me", message="first"))
>>> [(e.commit.message, e.added, e.count) for e in log(store, index, head)]
[('first', 1, 1)]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from halodb.blockstore.base import BlockStore
from halodb.index.history import CommitCache, load_commit, walk
from halodb.index.index import Index
from halodb.index.model import Commit
from halodb.index.respelling import is_respelled
from halodb.ipld import CID

__all__ = ["LogEntry", "log"]


@dataclass(frozen=True)
class LogEntry:
    """One version of ``halodb log``: its commit and how many datasets it added, changed,
    removed, and respelled (data CID rewritten in another spelling of the same multihash,
    nothing else changed: not a change, :mod:`halodb.index.respelling`)."""

    cid: CID
    commit: Commit
    added: int
    changed: int
    removed: int
    count: int  #: datasets in the version
    respelled: int = 0


def log(store: BlockStore, index: Index, head: CID, limit: int | None = None,
        commits: CommitCache | None = None) -> Iterator[LogEntry]:
    """The main line from ``head``, newest first, each version diffed against its first parent."""
    for n, (cid, commit) in enumerate(walk(store, head, cache=commits)):
        if limit is not None and n >= limit:
            return
        root = index.load_root(commit.index)
        parent_root = index.load_root(load_commit(store, commit.parents[0], commits).index) if commit.parents else None
        counts = {"added": 0, "changed": 0, "removed": 0, "respelled": 0}
        for change in index.diff(parent_root, root):
            kind = change.kind
            if kind == "changed" and is_respelled(store, change.old, change.new):
                kind = "respelled"
            counts[kind] += 1
        yield LogEntry(cid, commit, counts["added"], counts["changed"], counts["removed"], root.count,
                       counts["respelled"])
