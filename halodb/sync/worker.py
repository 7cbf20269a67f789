"""Read a sync's STAC item blocks in a worker process while the parent diffs and inserts.

A full sync from a local store spends about half its time reading, hashing and decoding
item blocks and turning them into columns, all of it Python on one core.
:class:`ItemReader` moves that work into a forked worker process: the parent sends the
plan's item CIDs in batches as the tree diff finds them, and the worker answers each
batch it claims with its columns (:func:`~halodb.cache.stac_columns.item_columns`),
which the cache turns into one Arrow table per batch without copying. Once its diff is
done the parent reads batches too, from the back, while it waits for the worker's (see
:class:`ItemReader`), and DuckDB inserts the batch before: a 2-core machine keeps both
cores busy, and a busy one does not wait for a starved worker.

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


#: index of the front/back counters in the shared claims array (see :class:`ItemReader`)
_FRONT, _BACK = 0, 1
_OPEN_END = 2**31 - 1


class ItemReader:
    """Item blocks of one sync plan, read ahead by a worker process (see the module docstring).

    Call :meth:`add` for each item CID in plan order (first occurrences only), :meth:`flush`
    when the plan is complete, :meth:`columns` for each batch the cache asks for (None:
    read it yourself), and :meth:`close` at the end, also on errors.

    Who reads which batch is decided as it goes, through two counters shared with the
    worker: the worker claims batches from the front, in order; the parent, waiting for a
    batch the worker is still reading, claims one from the back and reads it meanwhile, and
    reads a batch itself when it needs one the worker has not claimed yet. So a worker that
    gets little CPU (a busy machine) costs little, and an idle parent helps.
    """

    def __init__(self, store: BlockStore, batch: int, *, allowed: bool | None = None) -> None:
        self.store = store
        self.batch = batch
        self._allowed = worker_allowed(store) if allowed is None else allowed
        self._pending: list[CID] = []
        self._batches: list[list[CID]] = []  #: every batch formed, in order
        self._names: list[list[str]] = []  #: the same as strings (what the cache asks with)
        self._next = 0  #: the index of the batch the cache asks for next
        self._complete = False
        self._stash: dict[int, ItemColumns | None] = {}  #: read ahead; None = failed, read again
        self._claims: Any = None  #: shared int array [front, back] with a lock
        self._proc: BaseProcess | None = None
        self._requests: Connection | None = None
        self._results: Connection | None = None

    @property
    def active(self) -> bool:
        """Whether a worker is running."""
        return self._proc is not None

    def add(self, cid: CID) -> None:
        """One more item CID of the plan; each whole batch goes to the worker (started with
        the first one)."""
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
        if self._proc is not None:
            with self._claims.get_lock():
                self._claims[_BACK] = len(self._batches)  # the parent may claim from the back now
            self._complete = True

    def columns(self, batch: list[str]) -> ItemColumns | None:
        """The columns of ``batch`` (item CIDs, as the cache asks for them) if read ahead, or
        None when the caller is to read it: nobody has claimed it yet, its reading failed,
        or it is not the next batch formed (then the worker is stopped)."""
        i = self._next
        if self._proc is None or i >= len(self._names) or self._names[i] != batch:
            self.close()
            return None
        self._next += 1
        while True:
            if i in self._stash:
                return self._stash.pop(i)
            with self._claims.get_lock():
                if self._claims[_FRONT] <= i < self._claims[_BACK]:
                    self._claims[_FRONT] = i + 1  # nobody has it: the caller reads it
                    return None
            # the worker has claimed it: take its answers, reading from the back meanwhile
            assert self._results is not None
            try:
                if self._results.poll(0) or not self._steal():
                    self._receive()
            except (EOFError, OSError):
                self.close()
                return None

    def close(self) -> None:
        """Stop the worker (if any) and read nothing ahead any more. Idempotent."""
        self._allowed = False
        self._pending = []
        self._names = []
        self._stash.clear()
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
        if self._proc is None and not self._start():
            return
        assert self._requests is not None
        try:
            self._requests.send([c.buffer for c in cids])
        except OSError:
            self.close()
            return
        self._batches.append(cids)
        self._names.append([str(c) for c in cids])

    def _receive(self) -> None:
        """One answer of the worker into the stash (blocks until it comes)."""
        assert self._results is not None
        reply = self._results.recv()
        if reply[0] == "ok":
            _, j, columns, blocks, nbytes = reply
            self.store.stats.blocks_read += blocks
            self.store.stats.bytes_read += nbytes
            self._stash[j] = columns
        else:
            self._stash[reply[1]] = None  # read again, by the caller, in order: same errors

    def _steal(self) -> bool:
        """Claim the last unclaimed batch and read it here; False when there is none."""
        if not self._complete:
            return False
        with self._claims.get_lock():
            k = self._claims[_BACK] - 1
            if k < self._claims[_FRONT] or k < self._next:
                return False
            self._claims[_BACK] = k
        try:
            self._stash[k] = read_item_columns(self.store, self._batches[k])
        except Exception:  # raised again, in order, when the cache asks for this batch
            self._stash[k] = None
        return True

    def _start(self) -> bool:
        import multiprocessing

        try:
            ctx = multiprocessing.get_context("fork")
            claims = ctx.Array("i", [0, _OPEN_END])
            req_r, req_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker_main,
                args=(self.store, claims, req_r, res_w, req_w, res_r),
                name="halodb-sync-reader",
                daemon=True,
            )
            proc.start()
        except Exception:  # no fork here (e.g. inside a daemonic process): read in this process
            self._allowed = False
            return False
        req_r.close()
        res_w.close()
        self._proc, self._requests, self._results, self._claims = proc, req_w, res_r, claims
        return True


def _worker_main(store: BlockStore, claims: Any, requests: Connection, results: Connection, *parent_ends: Connection) -> None:
    """The worker: claim batches from the front and answer each with its columns, until the
    parent goes away or nothing is left to claim."""
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
    received: list[list[bytes]] = []
    while True:
        with claims.get_lock():
            j = claims[_FRONT]
            mine = j < min(len(received), claims[_BACK])
            if mine:
                claims[_FRONT] = j + 1
        if not mine:
            buffers = queue.get()  # wait for the next batch (None: the parent is done)
            if buffers is None:
                return
            received.append(buffers)
            continue
        blocks, nbytes = stats.blocks_read, stats.bytes_read
        reply: tuple[Any, ...]
        try:
            columns = read_item_columns(store, [CID(b) for b in received[j]])
            reply = ("ok", j, columns, stats.blocks_read - blocks, stats.bytes_read - nbytes)
        except Exception:  # the parent reads this batch itself, in order, and raises the real error
            reply = ("error", j)
        try:
            results.send(reply)
        except (OSError, ValueError):
            return
