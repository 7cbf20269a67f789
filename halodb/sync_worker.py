"""Read a sync's STAC item blocks in a worker process while the parent diffs and inserts.

A full sync from a local store spends about half its time reading, hashing and decoding
item blocks and turning them into columns, all of it Python on one core.
:class:`ItemReader` moves that work into a forked worker process: the parent sends the
plan's item CIDs in batches as the tree diff finds them, and the worker answers each
batch, in order, with its columns (:func:`~halodb.cache.stac_columns.item_columns`),
which the cache turns into one Arrow table per batch without copying. Every other batch
the parent reads itself, once its diff is done, while the worker reads the next one, and
DuckDB inserts the one before, so a 2-core machine keeps both cores busy.

The worker reads through the same :meth:`~halodb.blockstore.base.BlockStore.get_many`
(every block verified against its CID); its block counts are added to the parent store's
``stats``. If a batch fails in the worker for any reason (a block missing or corrupt, the
worker gone) or the cache asks for batches in another order, the parent stops the
worker and reads from then on itself, so errors are exactly those of a sync without a
worker. The worker exits when the parent closes its pipes or dies (end of file on the
request pipe), and never touches the cache: the parent's transaction is the only writer.

It is used only where a forked process can read the store on its own (a local
:class:`~halodb.blockstore.directory.DirectoryStore`, on Linux), and only once a plan
has a whole batch of items; ``HALODB_SYNC_WORKER=0`` turns it off.

>>> from halodb.blockstore.memory import MemoryStore
>>> reader = ItemReader(MemoryStore(), batch=2)
>>> reader.active, reader.columns(["bafyx"]) is None
(False, True)
>>> reader.close()
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from halodb.blockstore.base import BlockStore
from halodb.blockstore.directory import DirectoryStore
from halodb.cache.stac_columns import ItemColumns, item_columns
from halodb.errors import SchemaError
from halodb.ipld import CID, decode

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = ["ItemReader", "read_item_columns", "read_items", "worker_allowed"]

#: set to 0 to read item blocks in the syncing process itself
WORKER_ENV = "HALODB_SYNC_WORKER"


def read_items(store: BlockStore, cids: list[CID]) -> dict[CID, dict[str, Any]]:
    """Decoded STAC item blocks by CID (verified; BlockNotFoundError names a missing one)."""
    out: dict[CID, dict[str, Any]] = {}
    batch = 4096
    for i in range(0, len(cids), batch):
        part = cids[i : i + batch]
        found = store.get_many(part)
        for cid in part:
            data = found.get(cid)
            if data is None:
                data = store.get(cid)  # raises BlockNotFoundError naming the CID
            value = decode(data, cid=cid)
            if not isinstance(value, dict):
                raise SchemaError(f"item block {cid} is not a STAC item (a map)", cid=cid)
            out[cid] = value
    return out


def read_item_columns(store: BlockStore, cids: list[CID]) -> ItemColumns:
    """The columns of the STAC item blocks ``cids`` (read, verified, decoded), in that order."""
    found = read_items(store, cids)
    return item_columns([str(c) for c in cids], [found[c] for c in cids])


def worker_allowed(store: BlockStore) -> bool:
    """Whether a forked worker may read ``store``: a plain local directory store, on Linux,
    unless ``HALODB_SYNC_WORKER=0``.

    >>> from halodb.blockstore.memory import MemoryStore
    >>> worker_allowed(MemoryStore())
    False
    """
    if os.environ.get(WORKER_ENV, "1").strip() in ("0", "false", "no", "off"):
        return False
    return sys.platform == "linux" and type(store) is DirectoryStore


class ItemReader:
    """Item blocks of one sync plan, read ahead by a worker process (see the module docstring).

    Call :meth:`add` for each item CID in plan order (first occurrences only), :meth:`flush`
    when the plan is complete, :meth:`columns` for each batch the cache asks for (None:
    read it yourself), and :meth:`close` at the end, also on errors.
    """

    def __init__(self, store: BlockStore, batch: int, *, allowed: bool | None = None) -> None:
        self.store = store
        self.batch = batch
        self._allowed = worker_allowed(store) if allowed is None else allowed
        self._pending: list[CID] = []
        self._batches = 0
        #: every batch formed, in order, and whether the worker reads it (else the parent)
        self._order: deque[tuple[list[str], bool]] = deque()
        self._proc: BaseProcess | None = None
        self._requests: Connection | None = None
        self._results: Connection | None = None

    @property
    def active(self) -> bool:
        """Whether a worker is running."""
        return self._proc is not None

    def add(self, cid: CID) -> None:
        """One more item CID of the plan; every other whole batch goes to the worker
        (started with the first one), beginning with the first."""
        if not self._allowed:
            return
        self._pending.append(cid)
        if len(self._pending) >= self.batch:
            self._batch()

    def flush(self) -> None:
        """The plan is complete: its last, partial batch too (if a worker is running)."""
        if self._pending and self._proc is not None:
            self._batch()
        self._pending = []

    def columns(self, batch: list[str]) -> ItemColumns | None:
        """The worker's columns for ``batch`` (item CIDs, as the cache asks for them), or None
        when the parent is to read it: a batch left to the parent, or the worker failed or
        the batch is not the next one formed (then the worker is stopped)."""
        if self._order and self._order[0][0] == batch:
            _, by_worker = self._order.popleft()
            if not by_worker:
                return None
            reply = self._receive()
            if reply is not None and reply[0] == "ok":
                _, columns, blocks, nbytes = reply
                self.store.stats.blocks_read += blocks
                self.store.stats.bytes_read += nbytes
                return columns  # type: ignore[no-any-return]
        self.close()
        return None

    def close(self) -> None:
        """Stop the worker (if any) and read nothing ahead any more. Idempotent."""
        self._allowed = False
        self._pending = []
        self._order.clear()
        proc, self._proc = self._proc, None
        for conn in (self._requests, self._results):
            if conn is not None:
                conn.close()  # the worker sees end of file, or a broken pipe, and exits
        self._requests = self._results = None
        if proc is not None:
            proc.join(timeout=0.5)  # it holds nothing worth waiting for (no files, no cache)
            if proc.is_alive():
                proc.kill()
                proc.join()

    # -- internals --------------------------------------------------------------------------
    def _batch(self) -> None:
        cids, self._pending = self._pending, []
        by_worker = self._batches % 2 == 0
        self._batches += 1
        if by_worker:
            if self._proc is None and not self._start():
                return
            assert self._requests is not None
            try:
                self._requests.send([c.buffer for c in cids])
            except OSError:
                self.close()
                return
        self._order.append(([str(c) for c in cids], by_worker))

    def _receive(self) -> Any:
        if self._results is None:
            return None
        try:
            return self._results.recv()
        except (EOFError, OSError):
            return None

    def _start(self) -> bool:
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("fork")
            req_r, req_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main, args=(self.store, req_r, res_w, req_w, res_r), name="halodb-sync-reader", daemon=True
            )
            proc.start()
        except Exception:  # no fork here (e.g. inside a daemonic process): read in this process
            self._allowed = False
            return False
        req_r.close()
        res_w.close()
        self._proc, self._requests, self._results = proc, req_w, res_r
        return True


def _worker_main(store: BlockStore, requests: Connection, results: Connection, *parent_ends: Connection) -> None:
    """The worker: answer each batch of CIDs with its columns, until the parent goes away."""
    for conn in parent_ends:  # else the worker would never see end of file when the parent dies
        conn.close()
    queue: SimpleQueue[list[bytes] | None] = SimpleQueue()

    def pump() -> None:  # take requests as they come, so the parent never blocks sending
        try:
            while True:
                queue.put(requests.recv())
        except (EOFError, OSError):
            queue.put(None)

    threading.Thread(target=pump, name="halodb-sync-requests", daemon=True).start()
    stats = store.stats
    while (buffers := queue.get()) is not None:
        blocks, nbytes = stats.blocks_read, stats.bytes_read
        reply: tuple[Any, ...]
        try:
            columns = read_item_columns(store, [CID(b) for b in buffers])
            reply = ("ok", columns, stats.blocks_read - blocks, stats.bytes_read - nbytes)
        except Exception as exc:  # the parent reads this batch itself and raises the real error
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            results.send(reply)
        except (OSError, ValueError):
            return
