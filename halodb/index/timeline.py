"""The history tree: every earlier version of a commit's main line, keyed by time.

A format-3 commit links ``history``, a prolly tree (:mod:`halodb.index.prolly`, default
parameters) of every commit before it on the main line, keyed ``TIME/HEIGHT`` (UTC time
with microseconds, then the zero-padded number of versions before that commit, so two
versions in one second keep their order) with the commit's CID as value. The version
current at a date is then the tree's greatest key at or before it: O(log n) blocks from the
head, not a walk of the whole chain, which is what lets a client with no cache answer
``halodb at`` through a gateway in a handful of requests.

Each new commit's tree is its parent's plus the parent (one leaf path rewritten). A parent
without a tree (formats 1 and 2) gets one built from its chain once. A sync checks every
new commit's tree and height against that rule (:func:`check_history`), so a cache never
trusts a history a publisher made up; a client without a sync trusts the head, as it
does for everything else (sign it, and configure trust, to close that).

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.index.model import Commit
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); root = Index(store).write_root(Index(store).empty())
>>> head = None
>>> for day in ("2024-08-10", "2024-08-12", "2024-08-14"):
...     history, height = history_for_child(store, head)
...     head = write_commit(store, Commit(index=root, time=parse_time(day), author="a", message=day,
...                                       parents=(head,) if head else (), history=history, height=height))
>>> found = version_at(store, head, parse_time("2024-08-13"))
>>> found[1].message
'2024-08-12'
>>> version_at(store, head, parse_time("2024-08-01")) is None
True
"""

from __future__ import annotations

from datetime import datetime, timezone

from halodb.blockstore.base import BlockStore
from halodb.errors import SchemaError
from halodb.index.history import CommitCache, load_commit, walk
from halodb.index.model import Commit
from halodb.index.prolly import ProllyTree
from halodb.ipld import CID

__all__ = ["check_history", "history_for_child", "version_at", "version_key"]

#: height digits in a key: heights run to 9,999,999,999
_HEIGHT_DIGITS = 10


def version_key(time: datetime, height: int) -> str:
    """The history-tree key of the version at ``height`` made at ``time``.

    >>> from halodb.util.times import parse_time
    >>> version_key(parse_time("2024-08-12T10:00:00+02:00"), 7)
    '2024-08-12T08:00:00.000000Z/0000000007'
    """
    return f"{time.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z/{height:0{_HEIGHT_DIGITS}d}"


def history_for_child(store: BlockStore, parent: CID | None, commits: CommitCache | None = None) -> tuple[CID, int]:
    """The ``history`` root and ``height`` of a new commit whose first parent is ``parent``
    (None: the first version): the parent's tree plus the parent. Writes the new nodes."""
    tree = ProllyTree(store)
    if parent is None:
        return tree.empty(), 0
    base = load_commit(store, parent, commits)
    if base.history is not None and base.height is not None:
        return tree.mutate(base.history, {version_key(base.time, base.height): parent}), base.height + 1
    chain = list(walk(store, parent, cache=commits))  # a format-1/2 parent: built from its chain once
    chain.reverse()
    return tree.build((version_key(c.time, n), cid) for n, (cid, c) in enumerate(chain)), len(chain)


def version_at(store: BlockStore, head: CID, when: datetime, commits: CommitCache | None = None
               ) -> tuple[CID, Commit] | None:
    """The newest version on ``head``'s main line made at or before ``when`` (None: none that
    old), found through the head's history tree; a head without one walks its chain."""
    commit = load_commit(store, head, commits)
    if commit.time <= when:
        return head, commit
    if commit.history is None:
        for cid, older in walk(store, head, cache=commits):
            if older.time <= when:
                return cid, older
        return None
    found = ProllyTree(store).floor(commit.history, version_key(when, 10**_HEIGHT_DIGITS - 1))
    if found is None:
        return None
    key, cid = found
    if not isinstance(cid, CID):
        raise SchemaError(f"history tree of commit {head}: entry {key!r} is not a link", cid=head)
    older = load_commit(store, cid, commits)
    if older.time > when or older.height is not None and version_key(older.time, older.height) != key:
        raise SchemaError(f"history tree of commit {head}: entry {key!r} names commit {cid}, made "
                          f"{older.time.isoformat()} at height {older.height}", cid=head)
    return cid, older


def check_history(store: BlockStore, cid: CID, commit: Commit, commits: CommitCache | None = None) -> None:
    """:class:`SchemaError` unless ``commit``'s history tree and height are what its first
    parent's make (:func:`history_for_child`); a commit without a tree passes."""
    if commit.history is None:
        return
    parent = commit.parents[0] if commit.parents else None
    expected, height = history_for_child(store, parent, commits)
    if commit.height != height or commit.history != expected:
        raise SchemaError(
            f"commit {cid} has a history that is not its main line: height {commit.height} and tree "
            f"{commit.history}, but its first parent makes height {height} and tree {expected}", cid=cid)
