"""Help for a large sync: another thread, or a second process, turns the batches of inline
items into columns while the main thread reads the next leaves.

A full sync of a large index spends most of its main thread decoding the items held inline
in the dataset leaves (index format 3), checking them and making their columns
(:func:`~halodb.sync.items.read_inline_item_columns`): pure work on bytes, a batch at a
time, that one Python thread does one batch after the other while the machine's other
core mostly waits. Two helpers share that work out, the same columns either way
(``tests/test_sync_worker.py``):

* :class:`ColumnThread` (with the compiled module, :mod:`halodb.util.native`, whose
  ``item_columns`` runs without the GIL): one thread makes EVERY batch, up to
  :data:`BATCHES_AHEAD` of them before the cache asks for them, from the bytes the main
  thread holds already: nothing is copied or sent anywhere. On a 1M-item first sync a
  thread making every other batch already took 1.3–2.2 s and ~3 CPU-s less than the
  process below, and one making every batch less again (``benchmarks/README.md``).
* :class:`ItemWorker` (without it: Python's decoder holds the GIL, a thread would only
  take turns): a child process forked for the sync that makes every other batch.

The process:

* **Forked early**, from a process of one thread only (:meth:`ItemWorker.start` returns None
  otherwise, or where there is no ``os.fork``): before the sync opens the cache (whose file is
  made on a thread) or reads a block. The child then only reads requests, computes and
  answers; it touches no store, no cache, no lock.
* **One batch in flight**: the parent sends a batch, computes the next one itself, then takes
  the child's answer and sends the one after (:class:`BatchSchedule`). Requests and answers
  are pickles of plain data (item CIDs and bytes; :class:`~halodb.cache.stac_columns.ItemColumns`
  buffers) through two pipes, each length-prefixed; an answer is unpickled with no class
  allowed but those of columns (the child decodes bytes from outside: what it sends is data).
* **Nothing depends on it**: a batch the child cannot turn into columns (one of its blocks is
  not an item the cache can hold) comes back as None and the parent reads it as without a
  worker (saying which item and why); a child that died or answers nonsense is dropped and
  the parent does every batch from then on.
* **It ends with the sync** (:meth:`ItemWorker.close`), or as soon as its parent is gone
  (end of file on its requests).

The thread follows the same rules where they apply: a batch it cannot make (or that raised)
is read by the main thread from the bytes it was given; it ends with the sync
(:meth:`ColumnThread.close`).

>>> from halodb.ipld import make_block
>>> cid, data = make_block({"type": "Feature", "id": "x", "properties": {}})
>>> worker = ItemWorker.fork()
>>> worker.send([str(cid)], [data])
True
>>> worker.receive().cids == [str(cid)], worker.batches
(True, 1)
>>> worker.close()
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import signal
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from halodb.cache.stac_columns import ItemColumns
from halodb.sync.items import read_inline_item_columns

__all__ = [
    "BATCHES_AHEAD", "MIN_WORKER_ITEMS", "BatchSchedule", "ColumnThread", "ItemWorker", "Schedule", "SyncHelper",
    "ThreadSchedule",
]

#: a sync of an index with fewer datasets than this runs without a worker (forking and the
#: pipes cost more than they save on a few batches)
MIN_WORKER_ITEMS = 20_000

#: batches the :class:`ColumnThread` makes before the cache asks for them (~9 MB of columns
#: each at 8,192 items): enough that it never waits while the main thread reads a leaf
BATCHES_AHEAD = 3

_LENGTH = 8  # bytes of the length before each pickle

#: ``take(cids)``: the blocks of a batch the main thread holds inline (removed from there),
#: or None when it does not hold them all
Take = Callable[[list[str]], "list[bytes] | None"]
#: ``local(cids, blocks)``: the main thread's own reader of a batch (``blocks``: its inline
#: bytes, taken already, or None)
Local = Callable[[list[str], "list[bytes] | None"], ItemColumns]


class Schedule(Protocol):
    """How a sync's batches of items are shared out: told the batches the cache will ask for
    (in order), it hands out each batch's columns when the cache asks."""

    def announce(self, batches: list[list[str]]) -> None: ...

    def load(self, cids: list[str], local: Local) -> ItemColumns: ...


class SyncHelper(Protocol):
    """A :class:`ColumnThread` or an :class:`ItemWorker`."""

    @property
    def alive(self) -> bool: ...

    def schedule(self, take: Take) -> Schedule: ...

    def close(self) -> None: ...


class ColumnThread:
    """One thread making the columns of every batch of inline items, ahead of the cache (see
    the module); only worth it with the compiled module, which releases the GIL.

    >>> from halodb.ipld import make_block
    >>> cid, data = make_block({"type": "Feature", "id": "x", "properties": {}})
    >>> thread = ColumnThread()
    >>> schedule = thread.schedule(lambda cids: [data])
    >>> schedule.announce([[str(cid)]])
    >>> schedule.load([str(cid)], lambda cids, blocks: None).cids == [str(cid)], thread.batches
    (True, 1)
    >>> thread.close()
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="halodb-sync-columns")
        self.batches = 0  #: batches the thread made

    @property
    def alive(self) -> bool:
        return self._pool is not None

    def schedule(self, take: Take) -> ThreadSchedule:
        return ThreadSchedule(self, take)

    def submit(self, cids: list[str], blocks: list[bytes]) -> Future[ItemColumns | None] | None:
        """Start making one batch; None once closed."""
        return None if self._pool is None else self._pool.submit(read_inline_item_columns, cids, blocks)

    def result(self, future: Future[ItemColumns | None]) -> ItemColumns | None:
        """The columns of a batch; None when the thread could not make them (a block that is
        not an item the cache can hold, or anything it raised: the main thread says what)."""
        try:
            columns = future.result()
        except Exception:  # noqa: BLE001 - the main thread reads the batch itself, and says what is wrong
            return None
        if columns is not None:
            self.batches += 1
        return columns

    def close(self) -> None:
        """Stop: batches not started are dropped, the one being made is waited for."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class ThreadSchedule:
    """Every announced batch that the main thread holds inline goes to the :class:`ColumnThread`,
    at most :data:`BATCHES_AHEAD` of them at a time; any other is read by the main thread."""

    def __init__(self, thread: ColumnThread, take: Take) -> None:
        self.thread = thread
        self.take = take
        self._ahead: deque[list[str]] = deque()  # announced, not handed to the thread yet
        self._started: deque[tuple[list[str], list[bytes], Future[ItemColumns | None]]] = deque()

    def announce(self, batches: list[list[str]]) -> None:
        """The batches the cache asks for next, in that order."""
        self._ahead = deque(batches)
        self._start()

    def load(self, cids: list[str], local: Local) -> ItemColumns:
        """The columns of the batch ``cids``: the thread's when it has the batch, else
        ``local(cids, None)``; a batch the thread could not make is ``local(cids, its blocks)``."""
        started = next((entry for entry in self._started if entry[0] == cids), None)
        if started is None:
            if self._ahead and self._ahead[0] == cids:
                self._ahead.popleft()
            self._start()
            return local(cids, None)
        self._started.remove(started)
        self._start()  # (the next one begins before this one is waited for)
        columns = self.thread.result(started[2])
        return columns if columns is not None else local(cids, started[1])

    def _start(self) -> None:
        while self._ahead and len(self._started) < BATCHES_AHEAD:
            batch = self._ahead.popleft()
            blocks = self.take(batch)
            if blocks is None:
                continue  # (not held inline: read by the main thread when asked for)
            future = self.thread.submit(batch, blocks)
            if future is None:  # closed: the main thread reads it, from these blocks
                self._started.append((batch, blocks, _failed()))
                return
            self._started.append((batch, blocks, future))


def _failed() -> Future[ItemColumns | None]:
    future: Future[ItemColumns | None] = Future()
    future.set_result(None)
    return future


class ItemWorker:
    """A forked child turning batches of inline item blocks into columns; see the module."""

    def __init__(self, pid: int, requests: int, answers: int) -> None:
        self.pid = pid
        self._requests: int | None = requests  # (write end)
        self._answers: int | None = answers  # (read end)
        self.batches = 0  #: batches the child answered with columns

    @classmethod
    def start(cls) -> ItemWorker | None:
        """Fork the worker; None where that is not safe or possible (no ``os.fork``, or more
        than one thread: a lock another thread holds at the fork would stay held in the child)."""
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return None
        return cls.fork()

    @classmethod
    def fork(cls) -> ItemWorker:
        """Fork the worker whatever else runs: the caller knows that no other thread holds a
        lock the child takes (it takes none but the locks of the code it runs, imported here)."""
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(requests_write)
                os.close(answers_read)
                _serve(requests_read, answers_write)
                code = 0
            finally:
                os._exit(code)
        os.close(requests_read)
        os.close(answers_write)
        return cls(pid, requests_write, answers_read)

    @property
    def alive(self) -> bool:
        return self._requests is not None

    def schedule(self, take: Take) -> BatchSchedule:
        return BatchSchedule(self, take)

    def send(self, cids: list[str], blocks: list[bytes]) -> bool:
        """Hand the child one batch; False (and the worker dropped) when it is gone."""
        if self._requests is None:
            return False
        try:
            _write(self._requests, pickle.dumps((cids, blocks), protocol=pickle.HIGHEST_PROTOCOL))
            return True
        except OSError:
            self.close()
            return False

    def receive(self) -> ItemColumns | None:
        """The columns of the batch sent last; None when the child could not make them (a
        block that is not an item the cache can hold) or is gone (then dropped)."""
        if self._answers is None:
            return None
        try:
            answer = _Answers(io.BytesIO(_read(self._answers))).load()
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError):
            self.close()
            return None
        if answer is not None and not isinstance(answer, ItemColumns):
            self.close()
            return None
        if answer is not None:
            self.batches += 1
        return answer

    def close(self) -> None:
        """End the child (it sees the end of its requests) and reap it."""
        for fd in (self._requests, self._answers):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._requests = self._answers = None
        if self.pid:
            pid, self.pid = self.pid, 0
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == 0:  # still computing a batch nobody will read: not waited for
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)


class BatchSchedule:
    """Which batches of a sync go to the worker: told the batches the cache will ask for
    (:meth:`announce`, in order), it keeps the child one batch ahead of the parent: while the
    parent computes a batch, the child computes the next.

    ``take(cids)``: the blocks of a batch the parent holds inline (removed from there), or
    None when it does not hold them all (the batch is then read as without a worker)."""

    def __init__(self, worker: ItemWorker, take: Callable[[list[str]], list[bytes] | None]) -> None:
        self.worker = worker
        self.take = take
        self._ahead: deque[list[str]] = deque()  # announced, not asked for yet
        self._sent: tuple[list[str], list[bytes]] | None = None  # at the child (or failed to get there)

    def announce(self, batches: list[list[str]]) -> None:
        """The batches the cache asks for next, in that order (the parent does the first)."""
        self._ahead = deque(batches)
        self._send(1)

    def load(self, cids: list[str], local: Callable[[list[str], list[bytes] | None], ItemColumns]) -> ItemColumns:
        """The columns of the batch ``cids``: the child's answer when it has the batch, else
        ``local(cids, None)``; a batch the child could not make (or a child gone) is
        ``local(cids, its blocks)``."""
        if self._ahead and self._ahead[0] == cids:
            self._ahead.popleft()
        sent = self._sent
        if sent is not None and sent[0] == cids:
            self._sent = None
            columns = self.worker.receive()
            self._send(1)  # the parent does the next batch, the child the one after
            return columns if columns is not None else local(cids, sent[1])
        self._send(0)  # the child does the next batch while the parent does this one
        return local(cids, None)

    def _send(self, index: int) -> None:
        """Send the child the ``index``-th batch still ahead, unless it has one already."""
        if self._sent is not None or not self.worker.alive or len(self._ahead) <= index:
            return
        batch = self._ahead[index]
        blocks = self.take(batch)
        if blocks is not None:
            self._sent = (batch, blocks)  # (kept: the parent reads the batch itself if the child fails)
            self.worker.send(batch, blocks)


class _Answers(pickle.Unpickler):
    """The child's answers are read with only the classes of columns allowed: the child
    decodes bytes from outside, so whatever it sends is unpickled as data, never as code."""

    ALLOWED = frozenset({("halodb.cache.stac_columns", "ItemColumns"), ("halodb.cache.arrow_columns", "Buffers")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the sync worker sent {module}.{name}, which is not columns")
        return super().find_class(module, name)


def _serve(requests: int, answers: int) -> None:
    """The child's loop: a batch in, its columns (or None) out, until the requests end."""
    gc.disable()  # (plain data, no cycles; the child ends with the sync)
    while True:
        try:
            request = _read(requests)
        except EOFError:
            return
        cids, blocks = pickle.loads(request)
        try:
            columns = read_inline_item_columns(cids, blocks)
        except Exception:  # noqa: BLE001 - the parent reads the batch itself, and says what is wrong
            columns = None
        _write(answers, pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(_LENGTH, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int) -> bytes:
    head = _read_exactly(fd, _LENGTH)
    return _read_exactly(fd, int.from_bytes(head, "little"))


def _read_exactly(fd: int, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.read(fd, min(n - len(out), 1 << 20))
        if not chunk:
            raise EOFError("the other end of the pipe is closed")
        out += chunk
    return bytes(out)
