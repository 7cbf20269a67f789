"""The values the cache is fed with and answers with: plain frozen dataclasses.

The sync layer turns a diff of two index versions into a :class:`SyncPlan` (commits,
oldest first, each with its :class:`ChangeRecord` s — or :class:`AddedBatch` columns of keys
new in it — as a list or read lazily) and hands it to
:meth:`halodb.cache.Cache.apply`; :class:`SyncState` is what the cache remembers per name.

>>> from datetime import datetime, timezone
>>> item = ItemRecord(key="halo/flight-1", item_cid="bafyitem", data_cid="bafydata",
...                   path="products/HALO/flight-1.zarr")
>>> commit = CommitRecord(cid="bafycommit", parents=[], index="bafyindex",
...                       time=datetime(2024, 9, 1, tzinfo=timezone.utc), author="me",
...                       message="first", changes=[ChangeRecord(item.key, item)])
>>> plan = SyncPlan(name="orcestra", head="bafycommit", reset=False, commits=[commit])
>>> list(plan.commits[0].changes)[0].new.path
'products/HALO/flight-1.zarr'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halodb.cache.stac_columns import ItemColumns

__all__ = ["SKIPPED_ITEMS_SQL", "AddedBatch", "ChangeRecord", "CommitRecord", "ItemRecord", "SkippedItem", "SyncPlan", "SyncState",
           "skipped_items"]


@dataclass(frozen=True)
class ItemRecord:
    """One dataset as of some version: its key, the CID of its STAC item block, data CID and path.

    The item itself is read when the cache needs it, through :attr:`SyncPlan.load_item_columns`.

    >>> ItemRecord("k", "bafyitem", None, None).data_cid is None
    True
    """

    key: str
    item_cid: str
    data_cid: str | None
    path: str | None


@dataclass(frozen=True)
class ChangeRecord:
    """One key that differs from the previous version: ``new`` None = removed, else added/changed.

    >>> ChangeRecord("k", None).new is None
    True
    """

    key: str
    new: ItemRecord | None


@dataclass(frozen=True)
class AddedBatch:
    """Datasets a commit adds that the version before it did not hold (its first version's,
    synced from nothing), as columns: ``keys`` strictly increasing, one row per key. The
    same as a :class:`ChangeRecord` per key, which :meth:`records` gives, but flattened a
    batch at a time (one tree leaf's entries in a full sync).

    >>> [r.new.item_cid for r in AddedBatch(["a", "b"], ["bafy1", "bafy2"], [None, "d"], [None, None]).records()]
    ['bafy1', 'bafy2']
    """

    keys: list[str]
    item_cids: list[str]
    data_cids: list[str | None]
    paths: list[str | None]

    def records(self) -> list[ChangeRecord]:
        """One :class:`ChangeRecord` per key."""
        return [ChangeRecord(k, ItemRecord(k, i, d, p))
                for k, i, d, p in zip(self.keys, self.item_cids, self.data_cids, self.paths, strict=True)]


@dataclass(frozen=True)
class CommitRecord:
    """One commit of a name's history with its changes relative to the commit before it.

    "Before it" is the previous commit in the plan, or for the first commit of a plan the
    head the cache has synced (or nothing, when the plan resets or the name is new).

    >>> from datetime import datetime, timezone
    >>> c = CommitRecord("bafyc", [], "bafyi", datetime(2024, 9, 1, tzinfo=timezone.utc), "a", "m", [])
    >>> c.time.isoformat()
    '2024-09-01T00:00:00+00:00'
    """

    cid: str
    parents: list[str]
    index: str
    time: datetime  #: timezone-aware (UTC)
    author: str
    message: str
    #: the changes, read once and in order by :meth:`~halodb.cache.Cache.apply` (a list, or an
    #: iterator that yields them as a diff finds them, so a sync never holds them all); keys
    #: the version before did not hold may come as :class:`AddedBatch` columns instead
    changes: Iterable[ChangeRecord | AddedBatch] = field(default_factory=list)


@dataclass(frozen=True)
class SyncPlan:
    """What to apply for one name, oldest commit first.

    ``reset=True`` means the history was rewritten: forget everything cached for ``name``
    first, then apply ``commits`` starting from an empty index.

    >>> SyncPlan("orcestra", head="bafyc", reset=True, commits=[]).reset
    True
    """

    name: str
    head: str
    reset: bool
    commits: list[CommitRecord]
    #: the STAC items of a batch of item CIDs, as columns
    #: (:func:`halodb.cache.stac_columns.item_columns`), in the order asked. The cache calls
    #: it batch by batch and only for items it does not hold yet, so reading blocks overlaps
    #: with DuckDB inserting the previous batch. A plan that adds items needs it.
    load_item_columns: Callable[[list[str]], ItemColumns] | None = field(default=None, compare=False, repr=False)
    #: optional: told, before it asks, the batches the cache will ask ``load_item_columns``
    #: for next (in that order), so that they can be read ahead (:mod:`halodb.sync.worker`)
    announce_item_batches: Callable[[list[list[str]]], None] | None = field(default=None, compare=False, repr=False)
    #: the key prefix the plan covers (a partial sync); None: the whole index
    scope: str | None = None


@dataclass(frozen=True)
class SyncState:
    """What the cache holds for one name: head, last sync time, number of commits and items.

    >>> from datetime import datetime, timezone
    >>> SyncState("orcestra", "bafyc", datetime(2024, 9, 1, tzinfo=timezone.utc), 3, 245).items
    245
    """

    name: str
    head: str
    synced_at: datetime
    commits: int
    items: int
    scope: str | None = None  #: the key prefix synced (``sync --prefix``); None: the whole index

    def covers(self, key_or_path: str) -> bool:
        """Whether the cache may answer for ``key_or_path``: every key when the whole index
        is synced, else only keys in the scope (a path is asked of the DAG)."""
        return self.scope is None or key_or_path.startswith(self.scope)


@dataclass(frozen=True)
class SkippedItem:
    """A version of a dataset whose STAC item block a sync verified but could not materialize:
    the key, the item block's CID, why, the commit that introduced the version, and whether
    it is the current version. The version is in ``item_versions`` (``halodb at`` answers
    it), but not in the ``items`` view.

    >>> SkippedItem("halo/x", "bafyitem", "nested deeper than 64 levels", "bafyc", True).key
    'halo/x'
    """

    key: str
    item_cid: str
    reason: str
    commit: str
    current: bool


#: the skipped item versions of one name (parameter: the name), oldest first; see
#: :func:`skipped_items`. A block materialized since (``stac_items`` has it) is not skipped.
SKIPPED_ITEMS_SQL = """
SELECT v.key, v.item_cid, s.reason, v.valid_from_commit, v.valid_to IS NULL
FROM item_versions AS v JOIN skipped_items AS s ON s.item_cid = v.item_cid
WHERE v.name = ? AND NOT EXISTS (SELECT 1 FROM stac_items AS i WHERE i.item_cid = v.item_cid)
ORDER BY v.valid_from, v.key
"""


def skipped_items(rows: list[tuple[Any, ...]]) -> list[SkippedItem]:
    """The rows of :data:`SKIPPED_ITEMS_SQL` as :class:`SkippedItem` values.

    >>> skipped_items([("k", "bafyitem", "why", "bafyc", False)])[0].current
    False
    """
    return [SkippedItem(str(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4])) for r in rows]
