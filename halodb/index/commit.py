"""A new version: apply changes to the parent's index, write the root and the commit.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.index import Index
>>> from halodb.index.model import Entry
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); index = Index(store)
>>> c1 = commit_changes(store, index, None, {"c/a": Entry(store.put(b"\\xa0"), None, None)}, set(),
...                     time=parse_time("2024-08-12"), author="me", message="first")
>>> commit_changes(store, index, c1, {}, {"c/a"}, time=parse_time("2024-08-11"), author="me", message="back")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
halodb.errors.TimeOrderError: commit time 2024-08-11T00:00:00Z is before the head's (2024-08-12T00:00:00Z, commit ...); time may not go backwards
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from datetime import datetime
from typing import TYPE_CHECKING

from halodb.blockstore.base import BlockStore
from halodb.errors import TimeOrderError
from halodb.index.history import CommitCache, load_commit, write_commit
from halodb.index.index import Index
from halodb.index.model import Commit, Entry, IndexRoot, KeyChanges
from halodb.index.timeline import history_for_child
from halodb.ipld import CID
from halodb.util.times import format_time

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["commit_changes"]


def commit_changes(
    store: BlockStore, index: Index, parent: CID | None, upserts: Mapping[str, Entry], removals: Set[str], *,
    time: datetime, author: str, message: str, commits: CommitCache | None = None,
    sign: Sequence[Ed25519PrivateKey] = (), keys: KeyChanges | None = None, tags: CID | None = None,
    build: Callable[[IndexRoot], IndexRoot] | None = None,
) -> CID:
    """Write the version ``parent`` + changes as a commit whose only parent is ``parent``;
    returns its CID. :class:`TimeOrderError` if ``time`` is before the parent's.
    ``sign``: keys that sign it; ``keys``: keys it adds or retires for later versions;
    ``tags``: its tags block (default: the parent's, carried forward unchanged); ``build``:
    makes the new version from the parent's index root instead of applying ``upserts`` and
    ``removals`` to it (a large initial commit streams its entries:
    :meth:`~halodb.index.index.Index.build_sorted`)."""
    base = load_commit(store, parent, commits) if parent is not None else None
    if base is not None and time < base.time:
        raise TimeOrderError(
            f"commit time {format_time(time)} is before the head's ({format_time(base.time)}, commit {parent}); "
            "time may not go backwards", time=time, parent_time=base.time,
        )
    root = index.load_root(base.index) if base is not None else index.empty()
    new_root = build(root) if build is not None else index.apply(root, dict(upserts), set(removals))
    index_cid = index.write_root(new_root)
    history, height = history_for_child(store, parent, commits)
    commit = Commit(index=index_cid, time=time, author=author, message=message,
                    parents=(parent,) if parent is not None else (), keys=keys,
                    tags=tags if tags is not None else (base.tags if base is not None else None),
                    history=history, height=height)
    if sign:
        from halodb.index.signing import sign_commit

        commit = sign_commit(commit, sign)
    return write_commit(store, commit)
