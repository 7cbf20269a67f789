"""Sync: turn the commits a cache has not seen into one :class:`SyncPlan` and apply it.

The plan walks the first-parent chain from the new head back to the head the cache last
synced for that name, diffs each pair of consecutive index roots (never reading equal
subtrees; a first version, compared with nothing, is read leaf by leaf as
:class:`~halodb.cache.AddedBatch` columns instead), and hands everything to
:meth:`Cache.apply`, which reads the item blocks of
added or changed datasets batch by batch (through ``load_item_columns``, see
:mod:`halodb.sync.items`) and commits it all in one DuckDB transaction.

An item block that verifies but cannot be materialized (too deep, too large, not a STAC
item, not DAG-CBOR: see :mod:`halodb.sync.items`) does not fail the sync: the cache records
it in ``skipped_items`` and :attr:`SyncResult.skipped` lists every skipped version of the
name's history (current or replaced since), on this sync and on every later one.

If the synced head is not an ancestor of the new one — the name moved back to an older
version, or to a history that diverged — the sync is refused with :class:`RewindError`
before the cache is touched: a rollback is never followed silently. With
``allow_rewind=True`` the plan instead resets the name and replays its whole history.

>>> # see Registry.sync for the user-facing call
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import repeat

from halodb.blockstore.base import BlockStore
from halodb.cache import AddedBatch, Cache, ChangeRecord, CommitRecord, ItemRecord, SyncPlan
from halodb.cache.records import SKIPPED_ITEMS_SQL, SkippedItem, skipped_items
from halodb.cache.stac_columns import ItemColumns
from halodb.errors import RewindError
from halodb.index.history import CommitCache, divergence, load_commit, versions, walk
from halodb.index.index import Index, count_error
from halodb.index.model import ENTRY_FIELDS, Commit, Entry, IndexRoot, inline_columns, inline_entry_columns
from halodb.index.prolly import LeafColumns, Node
from halodb.index.tags import check_kept
from halodb.index.timeline import check_history
from halodb.ipld import CID
from halodb.sync.items import read_inline_item_columns, read_item_columns
from halodb.sync.worker import SyncHelper

__all__ = ["SyncResult", "build_plan", "prefetch_changed", "rewind_error", "sync"]


@dataclass(frozen=True)
class SyncResult:
    """What a sync did.

    ``skipped``: the versions of the name's synced history whose item block could not be
    materialized (key, item CID, why), found by this sync or an earlier one; the current
    ones among them are missing from the ``items`` view. ``changes`` counts dataset changes
    as ``log`` does: ``respelled`` ones (a data CID only written another way) apart."""

    name: str
    head: CID
    previous: str | None
    commits: int
    changes: int
    reset: bool
    blocks_read: int
    skipped: list[SkippedItem] = field(default_factory=list)
    respelled: int = 0

    @property
    def up_to_date(self) -> bool:
        return self.commits == 0


def build_plan(
    store: BlockStore, index: Index, name: str, head: CID, synced: str | None, *, allow_rewind: bool = False,
    prefix: str | None = None, worker: SyncHelper | None = None,
) -> SyncPlan:
    """The plan that brings ``name`` from the ``synced`` head (None: nothing yet) to ``head``;
    with ``prefix``, of the datasets whose keys start with it only (a partial sync: the
    subtrees that hold no such key are never read). With a ``worker``, the batches of items
    held inline are turned into columns by that thread or process (:mod:`halodb.sync.worker`).

    When ``synced`` is not on ``head``'s main line, :class:`RewindError` (decided after walking
    the commit chain, before any diff), unless ``allow_rewind``: then the plan is a reset that
    replays ``head``'s whole history.
    """
    previous = CID.parse(synced) if synced else None
    chain: list[tuple[CID, Commit]] = []
    reached = previous is None
    commits: CommitCache = {}
    for cid, commit in walk(store, head, cache=commits):
        if cid == previous:
            reached = True
            break
        chain.append((cid, commit))
    if not reached and not allow_rewind:
        assert previous is not None
        raise rewind_error(store, name, previous, head, {cid for cid, _ in chain}, commits)
    chain.reverse()
    older: Commit | None = load_commit(store, previous, commits) if reached and previous is not None else None
    for cid, commit in chain:  # tags are immutable, histories true: refused before the cache is touched
        check_kept(store, older, commit, cid)
        check_history(store, cid, commit, commits)
        older = commit
    reset = not reached
    base: IndexRoot | None = None
    if not reset and previous is not None:
        base = index.load_root(load_commit(store, previous).index)
    records: list[CommitRecord] = []
    item_cids: dict[str, tuple[CID, bytes | None]] = {}
    inline_items: dict[str, bytes] = {}  # item CID -> bytes, of the leaves read as batches
    for cid, commit in chain:
        root = index.load_root(commit.index)
        records.append(
            CommitRecord(
                cid=str(cid),
                parents=[str(p) for p in commit.parents],
                index=str(commit.index),
                time=commit.time,
                author=commit.author,
                message=commit.message,
                changes=_changes(store, index, base, root, prefix, item_cids, inline_items),
            )
        )
        base = root

    skipped_inline: dict[str, tuple[CID, bytes | None]] = {}

    def take_inline(cids: list[str]) -> list[bytes] | None:
        # a full sync's batches: each held inline, taken with ONE look-up (put back when not all are)
        if not inline_items:
            return None
        taken = list(map(inline_items.pop, cids, repeat(None)))
        if None in taken:
            inline_items.update((cid, data) for cid, data in zip(cids, taken) if data is not None)
            return None
        return taken  # type: ignore[return-value]  # (no None: checked)

    def load_item_columns(cids: list[str], blocks: list[bytes] | None = None) -> ItemColumns:
        # each is asked for once, then forgotten (the map holds the items not read yet); one
        # asked for again (skipped in an earlier chunk, so not in the cache) is parsed anew,
        # or, held inline, taken from those kept when skipped. ``blocks``: the batch's inline
        # blocks, taken already (a batch the worker could not make)
        if blocks is None:
            blocks = take_inline(cids)
        if blocks is not None:
            fast = read_inline_item_columns(cids, blocks)
            if fast is not None:
                return fast
            # one of them is not an item the cache can hold: the reader below says which, and why
            wanted: list[tuple[CID, bytes | None]] = [(CID.parse(c), data) for c, data in zip(cids, blocks)]
        else:
            wanted = [item_cids.pop(c) if c in item_cids else (CID.parse(c), inline_items.pop(c)) if c in inline_items
                      else skipped_inline.get(c) or (CID.parse(c), None) for c in cids]
        inline = {cid: data for cid, data in wanted if data is not None}
        columns = read_item_columns(store, [cid for cid, _ in wanted], inline)
        if inline and columns.skipped:
            skipped_inline.update((str(cid), (cid, data)) for cid, data in inline.items()
                                  if str(cid) in columns.skipped)
        return columns

    if worker is not None and worker.alive:
        schedule = worker.schedule(take_inline)
        return SyncPlan(
            name=name, head=str(head), reset=reset, commits=records, scope=prefix,
            load_item_columns=lambda cids: schedule.load(cids, load_item_columns),
            announce_item_batches=schedule.announce,
        )
    return SyncPlan(
        name=name, head=str(head), reset=reset, commits=records, load_item_columns=load_item_columns, scope=prefix,
    )


def _changes(
    store: BlockStore, index: Index, base: IndexRoot | None, root: IndexRoot, prefix: str | None,
    item_cids: dict[str, tuple[CID, bytes | None]], inline_items: dict[str, bytes],
) -> Iterator[ChangeRecord | AddedBatch]:
    """The changes from ``base`` to ``root`` as the diff finds them (the cache reads them
    once, in order); the item CID of each new version (and its bytes, when the entry holds
    them inline) is noted in ``item_cids`` for ``load_item_columns`` (or, for a leaf read
    as a batch, its bytes in ``inline_items``)."""
    if base is None and prefix is None:
        yield from _added(index, root, item_cids, inline_items)
        return
    if base is not None and store.is_remote_backed and prefix is None:
        prefetch_changed(store, index, base.datasets, root.datasets)
    for change in index.diff(base, root, prefix):  # the hot loop of a full sync: locals, positional args
        key, new = change.key, change.new
        if new is None:
            yield ChangeRecord(key, None)
            continue
        item = new.item
        item_cid = str(item)
        if item_cid not in item_cids:
            item_cids[item_cid] = (item, new.inline)
        yield ChangeRecord(key, ItemRecord(key, item_cid, new.data, new.path))


def _added(index: Index, root: IndexRoot, item_cids: dict[str, tuple[CID, bytes | None]],
           inline_items: dict[str, bytes]) -> Iterator[ChangeRecord | AddedBatch]:
    """Every dataset of ``root``, added (compared with nothing: a full sync's first version),
    read leaf by leaf in key order, each leaf once, without the diff's pairing: a leaf whose
    entries all hold their items inline (format 3) as one :class:`AddedBatch` (its columns
    checked and its items' CIDs computed in C loops, the bytes noted in ``inline_items``),
    any other entry as a :class:`ChangeRecord` of :meth:`Entry.from_ipld`. The nodes are
    checked as :meth:`Index.entries` checks them, and so is the count the root declares."""
    datasets, allow_inline = root.datasets, root.inline_items
    tree = index.datasets
    n = 0
    for leaf in tree.leaves(datasets, keep=False, fields=ENTRY_FIELDS if allow_inline else None):
        keys = leaf.keys
        n += len(keys)
        if n > root.count:
            raise count_error(root, f"holds more than the {root.count} datasets its index root declares")
        if isinstance(leaf, LeafColumns):  # (read by the compiled module)
            columns = inline_columns(*leaf.columns) if keys else None
            if columns is None:  # an entry from_ipld refuses, or reads otherwise: decoded, and said below
                leaf = tree.load(leaf.cid, keep=False)
        else:
            columns = inline_entry_columns(leaf.values) if allow_inline and keys else None
        if columns is not None:
            items, data, paths = columns
            cids = CID.texts_for_blocks(items)
            inline_items.update(zip(cids, items))
            yield AddedBatch(keys, cids, data, paths)
            continue
        assert isinstance(leaf, Node)
        for key, value in zip(keys, leaf.values):
            new = Entry.from_ipld(value, cid=datasets, inline=allow_inline)
            item = new.item
            item_cid = str(item)
            if item_cid not in item_cids:
                item_cids[item_cid] = (item, new.inline)
            yield ChangeRecord(key, ItemRecord(key, item_cid, new.data, new.path))
    if n != root.count:
        raise count_error(root, f"holds {n} datasets, but its index root declares {root.count}")


def rewind_error(
    store: BlockStore, name: str, synced: CID, head: CID, head_line: set[CID], commits: CommitCache | None = None
) -> RewindError:
    """The refusal to sync ``name`` from ``synced`` back (or aside) to ``head``, whose main line
    is ``head_line``: one line naming both heads and how far back the new one is."""
    found = divergence(store, synced, head, commits, new_line=head_line)
    assert found is not None
    if found.behind is not None:
        where = f"{versions(found.behind)} behind the synced head {synced}"
    else:
        where = (f"not on the synced history (diverged) of {synced}; syncing it would drop "
                 f"{found.discarding()} of it from the cache")
    return RewindError(
        f"refusing to sync {name} to {head}: it is {where}; a rollback is not followed unless allowed "
        "(--allow-rewind, allow_rewind=True)",
        name=name, synced=synced, head=head, behind=found.behind, discarded=found.discarded,
    )


def prefetch_changed(store: BlockStore, index: Index, old: CID, new: CID) -> int:
    """Fetch the nodes of ``new`` that ``old`` lacks a tree level at a time, each level's
    blocks in one concurrent batch (``get_many``), so the diff that follows reads locally.

    A subtree whose CID also appears among the old tree's nodes at that level is equal and
    is not fetched. Each node is fetched once, however often it is linked, so the work is
    bounded by the distinct blocks (a "DAG bomb" linking one child many times costs one
    fetch per level; the checked diff that follows rejects it). Returns the nodes fetched.
    """
    tree = index.datasets
    old_frontier, new_frontier = [old], [new]
    seen = {new}
    fetched = 0
    while new_frontier:
        store.get_many(new_frontier)  # one concurrent round trip per level
        fetched += len(new_frontier)
        old_nodes = [tree.load(c) for c in old_frontier if store.has(c)]
        new_nodes = [tree.load(c) for c in new_frontier]
        if not new_nodes or all(n.level == 0 for n in new_nodes):
            break
        old_children = {c for n in old_nodes if n.level > 0 for c in n.values}
        new_frontier = []
        for node in new_nodes:
            for child in node.values if node.level > 0 else ():
                if child not in old_children and child not in seen:
                    seen.add(child)
                    new_frontier.append(child)
        old_frontier = list(old_children)
    return fetched


def sync(
    store: BlockStore, index: Index, cache: Cache, name: str, head: CID, *, allow_rewind: bool = False,
    prefix: str | None = None, progress: Callable[[int], None] | None = None, worker: SyncHelper | None = None,
) -> SyncResult:
    """Bring ``name`` in the cache to ``head``; all or nothing.

    A ``head`` that does not descend from the head the cache last synced for ``name`` is
    refused with :class:`RewindError` and the cache is left as it was, unless
    ``allow_rewind``: then the name's history in the cache is rebuilt at ``head``.
    ``prefix``: only the datasets whose keys start with it (a partial sync); a cache that
    holds the name for another scope is rebuilt for this one. ``progress(n)``: the items
    materialized so far. ``worker``: a thread or process that makes item columns
    (:mod:`halodb.sync.worker`)."""
    before = store.stats.blocks_read
    # A new cache file holds nothing yet: plan at once, while the cache is being created
    # (Cache(keep_open=True) opens and migrates it on a thread meanwhile).
    plan = build_plan(store, index, name, head, None, prefix=prefix, worker=worker) if cache.fresh else None
    # One connection for the rest (opening and closing the file costs ~20 ms each).
    # Readers in other processes wait for it (up to the cache's lock timeout).
    with cache.session():
        state = cache.sync_state(name)
        rescope = state is not None and state.scope != prefix
        previous = state.head if state is not None and not rescope else None
        if previous == str(head):
            return SyncResult(name, head, previous, 0, 0, False, 0, _skipped(cache, name))
        if rescope:  # another part of the index than the cache holds: rebuilt (a rewind still refused)
            assert state is not None
            build_plan(store, index, name, head, state.head, allow_rewind=allow_rewind, prefix=prefix)
            plan = replace(build_plan(store, index, name, head, None, prefix=prefix, worker=worker), reset=True)
        elif plan is None or previous is not None:  # (another process synced it meanwhile)
            plan = build_plan(store, index, name, head, previous, allow_rewind=allow_rewind, prefix=prefix,
                              worker=worker)
        respelled_before = 0 if plan.reset else _respelled(cache, name)
        changes = cache.apply(plan, progress)
        respelled = _respelled(cache, name) - respelled_before
        skipped = _skipped(cache, name)
    return SyncResult(
        name=name,
        head=head,
        previous=previous,
        commits=len(plan.commits),
        changes=changes - respelled,
        reset=plan.reset,
        blocks_read=store.stats.blocks_read - before,
        skipped=skipped,
        respelled=respelled,
    )


def _respelled(cache: Cache, name: str) -> int:
    """How many versions of ``name``'s datasets the cache holds that only respell a data CID."""
    return int(cache.sql("SELECT count(*) FROM item_versions WHERE name = ? AND respelled", [name])[1][0][0])


def _skipped(cache: Cache, name: str) -> list[SkippedItem]:
    """The skipped item versions of ``name`` the cache records."""
    return skipped_items(cache.sql(SKIPPED_ITEMS_SQL, [name])[1])
