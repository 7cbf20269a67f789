"""Which version each DOI was minted for: the public log of a history's DOIs.

A DOI is minted for a dataset as it was then. HaloDB takes that to be the first version
(along the main line) in which the dataset had the DOI, and the data CID it had there: a
DOI keeps naming that data when the dataset is reprocessed under the same DOI, or withdrawn.
:func:`doi_log` walks the main line once, oldest first, diffing the ``by_doi`` trees of
consecutive versions (equal subtrees unread), so its cost is that of the DOI changes.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.model import Commit, Entry
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); index = Index(store); item = store.put(b"\\xa0")
>>> r1 = index.apply(index.empty(), {"c/a": Entry(item, "bafkqaaa", doi="10.82246/a")}, [])
>>> c1 = write_commit(store, Commit(index.write_root(r1), parse_time("2024-08-12"), "me", "mint"))
>>> r2 = index.apply(r1, {"c/a": Entry(item, "bafkqaab", doi="10.82246/a")}, [])
>>> c2 = write_commit(store, Commit(index.write_root(r2), parse_time("2024-08-20"), "me", "reprocess", (c1,)))
>>> [(r.doi, r.key, r.commit == c1, r.data, r.state) for r in doi_log(store, index, c2)]
[('10.82246/a', 'c/a', True, 'bafkqaaa', 'superseded')]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from halodb.blockstore.base import BlockStore
from halodb.errors import SchemaError
from halodb.index.history import CommitCache, walk
from halodb.index.index import Index
from halodb.index.model import IndexRoot
from halodb.ipld import CID
from halodb.ipld.spelling import same_content

__all__ = ["DoiRecord", "doi_log", "find_doi"]


@dataclass(frozen=True, slots=True)
class DoiRecord:
    """A DOI as a dataset had it: the first version that did (``commit``, ``time``, its
    position ``version`` along the main line, 1 = the oldest), the dataset's ``data`` CID
    there, the newest version that still had it (``last_version``), and its ``state`` at the
    head: ``current`` (the dataset has it and that data), ``superseded`` (the dataset has it
    and other data now) or ``withdrawn`` (the dataset is gone or no longer has the DOI)."""

    doi: str
    key: str
    commit: CID
    time: datetime
    version: int
    data: str | None
    last_version: int
    state: str

    def to_dict(self) -> dict[str, object]:
        return {"doi": self.doi, "key": self.key, "commit": str(self.commit), "time": self.time,
                "version": self.version, "data": self.data, "last_version": self.last_version, "state": self.state}


def doi_log(store: BlockStore, index: Index, head: CID, commits: CommitCache | None = None) -> list[DoiRecord]:
    """Every (DOI, dataset) pair the main line up to ``head`` ever held, sorted by DOI, then
    by the version that first had it."""
    chain = list(walk(store, head, cache=commits))
    chain.reverse()
    first: dict[tuple[str, str], tuple[CID, datetime, int, str | None]] = {}
    last: dict[tuple[str, str], int] = {}
    holders: dict[str, str] = {}  # DOI -> dataset, in the version just read
    previous: IndexRoot | None = None
    for number, (cid, commit) in enumerate(chain, start=1):
        root = index.load_root(commit.index)
        old = previous.by_doi if previous is not None else None
        if root.by_doi != old:
            for change in index.by_doi.diff(old, root.by_doi, old_count=previous.count if previous else 0,
                                            new_count=root.count):
                if change.old is not None:
                    last[(change.key, holders.pop(change.key))] = number - 1
                if change.new is None:
                    continue
                if not isinstance(change.new, str):
                    raise SchemaError(f"by_doi tree {root.by_doi} maps {change.key!r} to a non-string", cid=root.by_doi)
                holders[change.key] = change.new
                if (change.key, change.new) not in first:
                    entry = index.get(root, change.new)
                    first[(change.key, change.new)] = (cid, commit.time, number, entry.data if entry else None)
        previous = root
    head_root = previous
    records = []
    for (doi, key), (cid, time, number, data) in first.items():
        held = holders.get(doi) == key
        state = "withdrawn"
        if held and head_root is not None:
            entry = index.get(head_root, key)
            state = "current" if entry is not None and same_content(entry.data, data) else "superseded"
        records.append(DoiRecord(doi, key, cid, time, number, data, len(chain) if held else last[(doi, key)], state))
    records.sort(key=lambda r: (r.doi, r.version, r.key))
    return records


def find_doi(records: list[DoiRecord], doi: str) -> DoiRecord | None:
    """The record a DOI resolves to: the dataset that has it at the head, else the one that had
    it last; None for a DOI the history never held."""
    mine = [r for r in records if r.doi == doi]
    if not mine:
        return None
    return max(mine, key=lambda r: (r.state != "withdrawn", r.last_version, r.version))
