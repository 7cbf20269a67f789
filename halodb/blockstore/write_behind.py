"""Blocks written to a store by a background thread, served from memory until they are.

:class:`~halodb.blockstore.caching.CachingStore` keeps every block it fetches in its local
store. Writing a file per block costs more than reading it from a gateway on loopback (92 MB
in 630 blocks: ~0.5 s of a 2 s read, ``benchmarks/bench_open.py``), so the reader hands the
blocks to a :class:`WriteBehind` and goes on: one thread writes them in batches, and until
then :meth:`WriteBehind.get` serves them from memory.

* At most ``max_bytes`` wait at once; past that, :meth:`~WriteBehind.add` writes a batch in
  the caller's thread (or waits for the one being written).
* The writer thread runs at a lower CPU priority (:data:`WRITER_NICE`, Linux): the writes
  take what the reads leave over, and catch up when the reading is done. It writes in the
  pauses of the reading: once no block was added for :data:`_QUIET` (50 ms), or once half of
  ``max_bytes`` waits.
* :meth:`~WriteBehind.drain` writes what is queued and waits for the batch in flight; it
  raises the first write error since the last drain (a full disk: the blocks stay uncached,
  reads go on, and the error is not lost). The caching store drains on ``flush``, ``close``
  and ``local_store``; every live instance is drained when the process exits, and its store
  closed (SQLite then checkpoints its log: the next process opens it without replaying it).
* The blocks were verified before they came here (``verify=False`` when written).

>>> from halodb.blockstore.memory import MemoryStore
>>> from halodb.ipld import CID
>>> local = MemoryStore()
>>> behind = WriteBehind(local)
>>> cid = CID.for_bytes(b"x", 0x55)
>>> behind.add([(cid, b"x")])
>>> behind.get([cid]) in ({cid: b"x"}, {})  # served from memory until written
True
>>> behind.drain(); local.has(cid), behind.get([cid])
(True, {})
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import cast

from halodb.blockstore.base import Block, BlockBytes, BlockStore
from halodb.ipld import CID

__all__ = ["WRITER_NICE", "WRITE_BEHIND_BYTES", "WriteBehind"]

log = logging.getLogger(__name__)

#: bytes of blocks that may wait to be written at once
WRITE_BEHIND_BYTES = 256 << 20
#: the writer thread's nice value (Linux): the cache is written with the CPU the reads leave
#: over (on a small machine a read through a gateway on loopback is bound by the CPU, and the
#: cache writes are a large part of it); a reader that finds too much queued writes a batch
#: itself, at its own priority
WRITER_NICE = 10
#: seconds a writer thread with nothing to write waits before it ends (the next add starts one)
_IDLE = 2.0
#: seconds without a block added before the writer writes (unless half of ``max_bytes`` wait):
#: a dataset read through a gateway on a small machine is bound by the CPU, and writing the
#: cache meanwhile slows it (``bench_open.py``); the writes come in its pauses, or at the end
_QUIET = 0.05


class WriteBehind:
    """Blocks written to ``local`` by one background thread (see the module docstring)."""

    _live: weakref.WeakSet[WriteBehind] = weakref.WeakSet()

    def __init__(self, local: BlockStore, max_bytes: int = WRITE_BEHIND_BYTES) -> None:
        self.local = local
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._pending: dict[CID, BlockBytes] = {}  # queued or being written
        self._queue: list[tuple[CID, BlockBytes]] = []  # not taken by a writer yet
        self._bytes = 0
        self._writers = 0  # batches being written (by the thread, or by drain)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._added = 0.0  # when blocks were last added (time.monotonic)
        self._pid = os.getpid()
        WriteBehind._live.add(self)

    def get(self, cids: list[CID]) -> dict[CID, bytes]:
        """The blocks of ``cids`` that are waiting to be written (as ``bytes``: one queued as a
        view is copied here)."""
        with self._cond:
            pending = self._pending
            found = {c: pending[c] for c in cids if c in pending} if pending else {}
        return {c: d if isinstance(d, bytes) else bytes(d) for c, d in found.items()}

    def has(self, cid: CID) -> bool:
        """Whether ``cid`` is waiting to be written."""
        with self._cond:
            return cid in self._pending

    def add(self, blocks: Sequence[tuple[CID, BlockBytes]]) -> None:
        """Queue ``blocks`` (verified; a block's bytes may be a view into a larger buffer,
        which stays alive until they are written) to be written. While too much is queued, the caller writes
        a batch itself (at its own priority: the writer thread's is lower), or waits for the
        batch being written."""
        while True:
            with self._cond:
                self._forked()
                if not (self._bytes > self.max_bytes and (self._queue or self._writers)):
                    self._added = time.monotonic()
                    for cid, data in blocks:
                        if cid not in self._pending:
                            self._pending[cid] = data
                            self._queue.append((cid, data))
                            self._bytes += len(data)
                    self._start()
                    self._cond.notify_all()
                    return
                if not self._queue:
                    self._cond.wait()  # only the batch in flight: wait for the disk
                    continue
            self._write_queued()

    def drain(self) -> None:
        """Write everything queued (here, not waiting for the thread) and wait for the batch
        in flight; raise the first write error since the last drain."""
        with self._cond:
            self._forked()
        self._write_queued()
        with self._cond:
            while self._writers or self._queue:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    # -- the writer ------------------------------------------------------------------------
    def _forked(self) -> None:  # (holding the lock) a forked child has no writer thread
        if self._pid != os.getpid():
            self._pid, self._thread, self._writers = os.getpid(), None, 0

    def _start(self) -> None:  # (holding the lock)
        if self._thread is None and self._queue:
            self._thread = threading.Thread(target=self._run, name="halodb-cache-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._cond:
                if not self._queue and not self._cond.wait_for(lambda: bool(self._queue), timeout=_IDLE):
                    self._thread = None
                    return
                # blocks come in bursts (a dataset read): write in their pauses, or once half full
                while self._queue and self._bytes < self.max_bytes // 2:
                    quiet = self._added + _QUIET - time.monotonic()
                    if quiet <= 0:
                        break
                    self._cond.wait(quiet)
            self._write_queued()

    def _write_queued(self) -> None:
        with self._cond:
            batch, self._queue = self._queue, []
            if not batch:
                return
            self._writers += 1
        error: BaseException | None = None
        try:
            if self.local.takes_buffers:  # (views written as they are)
                self.local.put_many(cast(list[Block], batch), verify=False)
            else:
                self.local.put_many([(c, d if isinstance(d, bytes) else bytes(d)) for c, d in batch], verify=False)
        except BaseException as exc:  # kept for drain(): these blocks stay uncached, reads go on
            error = exc
        with self._cond:
            for cid, data in batch:
                if self._pending.pop(cid, None) is not None:
                    self._bytes -= len(data)
            if error is not None:
                log.warning("writing %d fetched blocks to %s failed: %s", len(batch), self.local.describe(), error)
                if self._error is None:
                    self._error = error
            self._writers -= 1
            self._cond.notify_all()


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: a thread's nice value is its own) to
    :data:`WRITER_NICE`, so that the writes take the cores the readers leave idle."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           max(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), WRITER_NICE))


@atexit.register
def _drain_all() -> None:
    """At exit, write what every live instance still holds (failures were logged), and close
    the stores written to: SQLite's last connection to close checkpoints its write-ahead
    log, which the next process to open the store would otherwise have to replay (reading
    the whole log: 60-90 ms for the ~90 MB a dataset read leaves, ``bench_open.py``)."""
    for behind in list(WriteBehind._live):
        try:
            behind.drain()
            if behind._pid == os.getpid():
                behind.local.close()  # (it opens new connections if used again)
        except Exception:  # noqa: BLE001 - logged when it happened; nothing more to do at exit
            pass
