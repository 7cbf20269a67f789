"""Sync as the registry runs it: an initial sync over the network first asks for the head's
``datasets`` tree as subtree CARs (where the store can send them), then :func:`halodb.sync.sync`.

Only the ``datasets`` tree: a sync reads nothing else of the index (an entry carries its
path, data CID and DOI, and in format 3 a small item too); the lookup trees are read, block
by block, by whatever asks them later (``at`` by path, proofs, ``export-car``, pins)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from halodb.blockstore.base import BlockStore
from halodb.cache import Cache
from halodb.index.history import load_commit
from halodb.index.index import Index
from halodb.ipld import CID
from halodb.sync import SyncResult, sync
from halodb.sync.worker import MIN_WORKER_ITEMS, ColumnThread, ItemWorker, SyncHelper
from halodb.util.native import native
from halodb.util.perf import paused_gc
from halodb.util.switches import SWITCHES, env_switch

__all__ = ["start_worker", "sync_name"]


def sync_name(
    store: BlockStore, index: Index, cache: Cache, name: str, head: CID, *, prefetch_spread: int, prefetch_workers: int,
    allow_rewind: bool = False, prefix: str | None = None, progress: Callable[[int], None] | None = None,
    worker: SyncHelper | None = None,
) -> SyncResult:
    """Materialize ``name``'s history up to ``head`` into ``cache``, all or nothing.

    ``prefetch_spread``: an initial sync asks for up to this many subtree CARs of the
    ``datasets`` tree, about one per 40 datasets (1: one CAR in all; 0: none, every block is
    asked for on its own).
    ``allow_rewind``: follow a ``head`` that does not descend from the synced one (see
    :func:`halodb.sync.sync`; otherwise :class:`~halodb.errors.RewindError`).
    ``prefix``: a partial sync, of the datasets whose keys start with it (nothing prefetched:
    only the subtrees that hold such keys are read). ``progress(n)``: the items materialized so far.
    ``worker``: a thread or process that makes item columns (:func:`start_worker`).
    """
    # (a new cache file holds no name: asking would wait for the file, which is made meanwhile)
    if store.is_remote_backed and prefetch_spread and prefix is None and (cache.fresh or cache.sync_state(name) is None):
        root = index.load_root(load_commit(store, head).index)
        spread = prefetch_spread
        if spread > 1:
            spread = min(spread, max(16, root.count // 40))
        store.prefetch(root.datasets, spread=spread, workers=prefetch_workers)
    with paused_gc():
        return sync(store, index, cache, name, head, allow_rewind=allow_rewind, prefix=prefix, progress=progress,
                    worker=worker)


def start_worker(store: BlockStore, index: Index, head: CID) -> SyncHelper | None:
    """A helper for a sync to ``head`` (:mod:`halodb.sync.worker`), unless
    ``$HALODB_SYNC_WORKER`` says ``0``: with the compiled module a :class:`ColumnThread`
    (its thread starts with the first batch of a sync that reads a version whole); without
    it a forked :class:`ItemWorker` when the index is large enough to gain from one
    (:data:`~halodb.sync.worker.MIN_WORKER_ITEMS` datasets) and the process may fork (one
    thread: call this before anything starts a thread, the cache included)."""
    if not worker_wanted():
        return None
    if native() is not None:
        return ColumnThread()
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        return None
    if index.load_root(load_commit(store, head).index).count < MIN_WORKER_ITEMS:
        return None
    return ItemWorker.start()


def worker_wanted() -> bool:
    """``$HALODB_SYNC_WORKER``: ``1`` (default; also when empty) or ``0``; anything else is an
    :class:`~halodb.errors.InputError`.

    >>> worker_wanted()
    True
    """
    return env_switch("HALODB_SYNC_WORKER", SWITCHES["HALODB_SYNC_WORKER"])
