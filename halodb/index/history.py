"""The version history: commit blocks linked by ``parents``.

The main line of a history is its first-parent chain. A commit's time is the publisher's
and may not be earlier than its first parent's (equal times are fine: two versions may
share a second).

>>> from datetime import datetime, timezone
>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.index import Index
>>> store = MemoryStore()
>>> idx = Index(store)
>>> root = idx.write_root(idx.empty())
>>> c1 = write_commit(store, Commit(root, datetime(2024, 8, 1, tzinfo=timezone.utc), "me", "first"))
>>> [c.message for _, c in walk(store, c1)]
['first']
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime

from halodb.blockstore.base import BlockStore
from halodb.errors import BlockNotFoundError, HaloDBError, MissingParentError, SchemaError, TimeOrderError
from halodb.index.model import Commit, IndexRoot
from halodb.util.times import format_time
from halodb.ipld import CID, decode, make_block


CommitCache = MutableMapping[CID, Commit]


def load_commit(store: BlockStore, cid: CID, cache: CommitCache | None = None) -> Commit:
    """The commit ``cid``; :class:`SchemaError` if the block is not a commit.

    Commits are immutable, so a caller walking histories repeatedly passes a ``cache``.
    """
    if cache is not None:
        hit = cache.get(cid)
        if hit is not None:
            return hit
    commit = Commit.from_ipld(decode(store.get(cid), cid=cid), cid=cid)
    if cache is not None:
        cache[cid] = commit
    return commit


def write_commit(store: BlockStore, commit: Commit) -> CID:
    """Check ``commit`` against its parents and its index, then store it.

    Raises :class:`MissingParentError` when a parent is not in the store and
    :class:`TimeOrderError` when the time goes backwards along the first parent.
    """
    for i, parent in enumerate(commit.parents):
        try:
            parent_commit = load_commit(store, parent)
        except BlockNotFoundError:
            raise MissingParentError(
                f"commit's parent {parent} is not in the block store", parent=parent, cid=None
            ) from None
        if i == 0 and commit.time < parent_commit.time:
            raise TimeOrderError(
                f"commit time {format_time(commit.time)} is before its parent's "
                f"({format_time(parent_commit.time)}, commit {parent}); time may not go backwards",
                time=commit.time,
                parent_time=parent_commit.time,
            )
    try:
        IndexRoot.from_ipld(decode(store.get(commit.index), cid=commit.index), cid=commit.index)
    except BlockNotFoundError:
        raise SchemaError(f"commit's index {commit.index} is not in the block store", cid=commit.index) from None
    cid, data = make_block(commit.to_ipld())
    store.put_many([(cid, data)], verify=False)
    return cid


def walk(
    store: BlockStore, head: CID, stop: CID | None = None, cache: CommitCache | None = None
) -> Iterator[tuple[CID, Commit]]:
    """Commits along the first-parent chain from ``head``, newest first, ending before ``stop``."""
    cid: CID | None = head
    seen: set[CID] = set()
    while cid is not None and cid != stop:
        if cid in seen:
            raise SchemaError(f"commit {cid} is its own ancestor", cid=cid)
        seen.add(cid)
        try:
            commit = load_commit(store, cid, cache)
        except BlockNotFoundError as exc:
            if cid != head:
                raise MissingParentError(f"commit {cid} (an ancestor of {head}) is missing", cid=cid, parent=cid) from exc
            raise
        yield cid, commit
        cid = commit.parents[0] if commit.parents else None


@dataclass(frozen=True)
class Divergence:
    """How a head ``new`` stands to a head ``old`` it does not descend from (see :func:`divergence`)."""

    behind: int | None  #: ``new`` is this many versions back on ``old``'s main line (None: not on it, diverged)
    discarded: int | None  #: versions of ``old``'s main line missing from ``new``'s (None: unreadable)

    def discarding(self) -> str:
        """What moving to ``new`` drops: ``2 versions`` (or ``an unknown number of versions``)."""
        return versions(self.discarded) if self.discarded is not None else "an unknown number of versions"


def versions(n: int) -> str:
    """``1 version``, ``2 versions``."""
    return f"{n} version{'' if n == 1 else 's'}"


def divergence(
    store: BlockStore, old: CID, new: CID, cache: CommitCache | None = None, *, new_line: Collection[CID] | None = None
) -> Divergence | None:
    """None when ``new`` descends from ``old`` (``old`` is on ``new``'s main line, or is it);
    else how far back or aside ``new`` is. Histories compare along their main lines
    (first-parent chains), as sync replays them.

    ``new_line``: the CIDs of ``new``'s whole main line when the caller has walked it already.
    A history of ``old`` that cannot be read (missing blocks, not a commit) makes ``behind``
    and ``discarded`` None: ``new`` is then taken as not descending from ``old``.
    """
    if new_line is None:
        line: set[CID] = set()
        for cid, _ in walk(store, new, cache=cache):
            if cid == old:
                return None
            line.add(cid)
        new_line = line
    elif old in new_line:
        return None
    steps = 0
    try:
        for cid, _ in walk(store, old, cache=cache):
            if cid == new:
                return Divergence(behind=steps, discarded=steps)
            if cid in new_line:  # the newest common ancestor
                return Divergence(behind=None, discarded=steps)
            steps += 1
    except HaloDBError:
        return Divergence(behind=None, discarded=None)
    return Divergence(behind=None, discarded=steps)
