"""A remote block store with a local block cache in front of it.

Reads look in ``local`` first and go to ``remote`` only for what is missing; fetched blocks
(already verified by the remote's base class) are kept in ``local``, so a second sync,
``log``, ``diff`` or time travel over old versions needs the network only for new blocks.
They are written there behind the reader's back (:mod:`~halodb.blockstore.write_behind`):
served from memory until on disk; ``flush``, ``close`` and ``local_store`` wait for them.
Writes go to ``local`` and, when the remote takes writes, to the remote as well.

Every block is verified once, where it comes from: a local copy here, a fetched one by
the remote's store. A local copy that fails verification is the local disk's fault, not the
remote's: it is set aside (:meth:`~halodb.blockstore.base.BlockStore.quarantine`, where
``local`` supports it) and fetched again; if the remote lacks it too, the error names the
damaged local copy.

>>> from halodb.blockstore.memory import MemoryStore
>>> remote, local = MemoryStore(), MemoryStore()
>>> cid = remote.put(b"x", codec=0x55)
>>> store = CachingStore(local, remote)
>>> store.get(cid) == b"x"
True
>>> store.flush(); local.has(cid)
True
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from halodb.blockstore.base import Block, BlockBytes, BlockStore, FileStart, Leaf, Rebuild
from halodb.blockstore.write_behind import WriteBehind
from halodb.errors import BlockStoreError, IPLDError, VerificationError
from halodb.ipld import CID, block_links, verify_block

log = logging.getLogger(__name__)

#: bytes of fetched blocks a store that keeps nothing holds in memory for the read that asked
HELD_BYTES = 64 << 20


class CachingStore(BlockStore):
    """``remote`` read through ``local``."""

    supports_writes = True
    supports_pinning = True
    is_remote_backed = True
    trusted_reads = True  # verified in _get_many: local copies here, fetched ones by the remote

    def __init__(self, local: BlockStore, remote: BlockStore) -> None:
        super().__init__()
        self.local = local
        self.remote = remote
        #: whether fetched blocks are kept in ``local`` (False: :meth:`without_keeping`)
        self.keeps = True
        #: why CAR prefetches failed (each then fell back to single blocks), in order
        self.prefetch_failures: list[str] = []
        self._behind: WriteBehind | _Held = WriteBehind(local)
        self._lock = threading.Lock()
        self._inflight: dict[CID, Future[bytes | None]] = {}  # blocks being fetched by some thread
        self._pid = os.getpid()

    def describe(self) -> str:
        return f"{self.remote.describe()} (cached in {self.local.describe()})"

    def _get(self, cid: CID) -> bytes | None:
        return self._get_many([cid]).get(cid)

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        waiting = self._behind.get(cids)  # fetched moments ago (verified), not on disk yet
        found = self.local._get_many([c for c in cids if c not in waiting] if waiting else cids)
        damaged: dict[CID, VerificationError] = {}
        for cid, data in list(found.items()):
            if not cid.verify(data):  # the local copy is damaged: set it aside, fetch it anew
                del found[cid]
                damaged[cid] = self._set_aside(cid)
        found.update(waiting)
        missing = [c for c in cids if c not in found]
        if missing:
            found.update(self._fetch_once(missing))
        for cid, error in damaged.items():
            if cid not in found:  # the remote does not have it either
                raise error
        return found

    def reads_file_bytes(self) -> bool:
        return self.remote.reads_file_bytes()

    def get_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, bytes]:
        """Raw leaves of ``file``: those in the block cache from there (each verified, as
        :meth:`get` does), the rest from the remote's :meth:`~BlockStore.get_leaves` (a
        gateway: one request per run of adjacent leaves, each leaf verified there), kept in
        the cache."""
        if not self.remote.supports_file_bytes:
            return self.get_many(cid for cid, _, _ in leaves)
        wanted = list(dict.fromkeys(leaves))
        found = self._get_local([cid for cid, _, _ in wanted])
        missing = [leaf for leaf in wanted if leaf[0] not in found]
        if missing:
            fetched = self.remote.get_leaves(file, missing)  # verified there
            self._keep(fetched)
            found.update(fetched)
        return found

    async def aget_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        """:meth:`get_many` on the running event loop: the local copies read (and verified)
        here, what is missing from the remote's :meth:`~BlockStore.aget_many` (a gateway: on
        this loop too) and kept in the cache."""
        wanted = list(dict.fromkeys(cids))
        found = self._get_local(wanted)
        missing = [c for c in wanted if c not in found]
        if missing:
            fetched = await self.remote.aget_many(missing)  # verified there, unless it trusts itself:
            if self.remote.trusted_reads:
                for cid, data in fetched.items():
                    verify_block(cid, data, source=self.remote.describe())
            self._keep(fetched)
            found.update(fetched)
        return found

    async def aget_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, BlockBytes]:
        """:meth:`get_leaves` on the running event loop (see :meth:`aget_many`); the leaves the
        remote sent may be views into the bytes of their run (queued for the cache as such)."""
        if not self.remote.supports_file_bytes:
            return dict(await self.aget_many([cid for cid, _, _ in leaves]))
        wanted = list(dict.fromkeys(leaves))
        found: dict[CID, BlockBytes] = dict(self._get_local([cid for cid, _, _ in wanted]))
        missing = [leaf for leaf in wanted if leaf[0] not in found]
        if missing:
            fetched = await self.remote.aget_leaves(file, missing)  # verified there
            self._keep(fetched)
            found.update(fetched)
        return found

    async def aget_file(self, file: CID, end: int, leaves_of: Callable[[bytes], Sequence[Leaf] | None], *,
                        rebuild: Rebuild | None = None) -> FileStart | None:
        """:meth:`~BlockStore.aget_file`: a file whose root is cached here as
        :meth:`aget_many` and :meth:`aget_leaves` read it; else the remote's (a gateway: the
        root and the file's bytes at once, one round trip; with ``rebuild`` the bytes alone,
        one request), every block it sent kept here."""
        if not self.remote.supports_file_bytes:
            return await super().aget_file(file, end, leaves_of)
        cached = self._get_local([file]).get(file)
        if cached is not None:
            leaves = leaves_of(cached)
            return FileStart(cached, dict(await self.aget_leaves(file, leaves)) if leaves else {})
        got = await self.remote.aget_file(file, end, leaves_of, rebuild=rebuild)  # verified there, unless it trusts itself:
        if got is None:
            return None
        if self.remote.trusted_reads:
            verify_block(file, got.root, source=self.remote.describe())
        self._keep({file: got.root})
        self._keep(got.leaves)
        return got

    def without_keeping(self) -> CachingStore:
        """This store reading as it does, but keeping nothing it fetches: the same local
        copies (and blocks still waiting to be written) are read, the same remote asked, every
        block verified; what comes from the remote is not written to ``local``.

        >>> from halodb.blockstore.memory import MemoryStore
        >>> remote, local = MemoryStore(), MemoryStore()
        >>> cid = remote.put(b"x", codec=0x55)
        >>> reader = CachingStore(local, remote).without_keeping()
        >>> reader.get(cid) == b"x", local.has(cid)
        (True, False)
        """
        reader = copy.copy(self)  # (shares the fetches in flight, the counts)
        reader.keeps = False
        reader._behind = _Held(self._behind)
        return reader

    def _keep(self, fetched: Mapping[CID, BlockBytes]) -> None:
        """What the remote sent (verified there): queued for the cache, and counted."""
        if fetched and self.keeps:
            self._behind.add(list(fetched.items()))
        for cid, data in fetched.items():
            self._check(cid, data)  # (counted; verified by the remote)

    def _get_local(self, cids: list[CID]) -> dict[CID, bytes]:
        """The blocks of ``cids`` held here (the write-behind queue, the local store), each
        verified; a damaged local copy is set aside and left out (it is fetched again)."""
        found = self._behind.get(cids)
        rest = [c for c in cids if c not in found] if found else cids
        for cid, data in (self.local._get_many(rest) if rest else {}).items():
            if cid.verify(data):
                found[cid] = data
            else:
                self._set_aside(cid)
        for cid, data in found.items():
            self._check(cid, data)
        return found

    def _fetch_once(self, cids: list[CID]) -> dict[CID, bytes]:
        """The blocks of ``cids`` from the remote, each asked for once however many threads
        want it at the same moment (the zarr readers all need a folder's block first): a block
        another thread is fetching is waited for, and fetched here only if that failed."""
        mine: dict[CID, Future[bytes | None]] = {}
        theirs: dict[CID, Future[bytes | None]] = {}
        if self._pid != os.getpid():  # a forked child: its parent's fetches are not its own
            self._lock, self._inflight, self._pid = threading.Lock(), {}, os.getpid()
        with self._lock:
            for cid in cids:
                if (running := self._inflight.get(cid)) is not None:
                    theirs[cid] = running
                else:
                    mine[cid] = self._inflight[cid] = Future()
        fetched: dict[CID, bytes] = {}
        try:
            if mine:  # another thread may have brought some since this one looked
                fetched = self._behind.get(list(mine))
                wanted = [c for c in mine if c not in fetched]
                arrived = self.local._get_many(wanted) if wanted else {}
                fetched.update((c, d) for c, d in arrived.items() if c.verify(d))
                wanted = [c for c in wanted if c not in fetched]
                if wanted:
                    fetched.update(self._fetch(wanted))
        finally:
            with self._lock:
                for cid in mine:
                    del self._inflight[cid]
            for cid, future in mine.items():  # (None: absent, or this fetch failed)
                future.set_result(fetched.get(cid))
        again = []
        for cid, future in theirs.items():
            got = future.result()  # (bounded: the other thread's requests have deadlines)
            if got is None:
                again.append(cid)
            else:
                fetched[cid] = got
        if again:
            fetched.update(self._fetch(again))
        return fetched

    def _fetch(self, cids: list[CID]) -> dict[CID, bytes]:
        fetched = self.remote.get_many(cids)  # verified there, unless it trusts itself:
        if self.remote.trusted_reads:
            for cid, data in fetched.items():
                verify_block(cid, data, source=self.remote.describe())
        if fetched and self.keeps:
            self._behind.add(list(fetched.items()))
        return fetched

    def _set_aside(self, cid: CID) -> VerificationError:
        """Quarantine the damaged local copy of ``cid`` where ``local`` can; returns the error
        that names it (raised only when the remote cannot replace it)."""
        if self.local.supports_quarantine:
            error = self.local.quarantine(cid)
            if error is not None:
                return error
        return VerificationError(
            f"the copy of block {cid} cached in {self.local.describe()} is damaged, and"
            f" {self.remote.describe()} does not have the block", cid=cid, source=self.local.describe(),
        )

    def _has(self, cid: CID) -> bool:
        return self._cached(cid) or self.remote.has(cid)

    def _cached(self, cid: CID) -> bool:
        return self._behind.has(cid) or self.local.has(cid)

    def _put(self, cid: CID, data: bytes) -> None:
        self._put_many([(cid, data)])

    def _put_many(self, blocks: list[Block]) -> None:
        if self.remote.supports_writes:
            self.remote.put_many(blocks, verify=False)
        self.local.put_many(blocks, verify=False)

    def prefetch(self, root: CID, *, spread: int = 256, workers: int = 16) -> int:
        """Bring the whole DAG under ``root`` into the local cache as CARs, where the remote
        can send CARs (a gateway, Kubo); returns the blocks fetched (0: unsupported or present).

        With ``spread <= 1`` it is ONE request for the whole DAG. A gateway that must itself
        fetch by bitswap walks a CAR one block at a time, though (about 20 ms a block on
        loopback), so by default the top of the DAG is read a whole level at a time until at
        least ``spread`` subtrees of about equal size are missing, and those come as separate
        CARs, ``workers`` at a time (``benchmarks/bench_network.py`` measures the choices).
        A CAR that fails is reported (:attr:`prefetch_failures`, a warning in the log), not
        raised: the sync then reads those blocks one by one. A store that keeps nothing
        (:meth:`without_keeping`) brings nothing.
        """
        if not self.keeps or not self.remote.supports_dag_export or (spread <= 1 and self._cached(root)):
            return 0
        frontier, fetched = [root], 0  # (a present root may still have absent children)
        while spread > 1 and len(frontier) < spread:
            blocks = self.get_many(frontier)  # single blocks, concurrently; kept locally
            fetched += len(blocks)
            seen: set[CID] = set()
            grown: list[CID] = []
            for cid in frontier:  # whole levels, so that the subtrees are about equally big
                for link in block_links(cid, blocks.get(cid, b"")):
                    if link not in seen and not self._cached(link):
                        seen.add(link)
                        grown.append(link)
            if not grown:
                return fetched
            frontier = grown
        if len(frontier) == 1:
            return fetched + self._fetch_dag_or_report(frontier[0])
        with ThreadPoolExecutor(min(workers, len(frontier))) as pool:
            return fetched + sum(pool.map(self._fetch_dag_or_report, frontier))

    def prefetch_file(self, root: CID, *, start: int = 0, end: int | None = None) -> int:
        """Bring the blocks of the file under ``root`` that hold bytes ``[start, end)`` into the
        local cache as ONE CAR, where the remote can send a file's CAR (a gateway); returns the
        blocks fetched. Nothing is asked when ``root`` is cached already (a file read before:
        the rest, if any, comes block by block) or the remote cannot (Kubo: today's path).

        A CAR that fails (a plain path gateway, HTTP 500, a deadline, a cut) is reported as
        :meth:`prefetch` reports, and the reader then fetches the blocks one by one; a block
        that does not match its CID is a :class:`~halodb.errors.VerificationError`, raised.
        """
        if not self.remote.supports_file_export or (end is not None and end <= start) or self._cached(root):
            return 0
        try:
            return int(self.remote.fetch_file(root, _Queued(self), start=start, end=end))
        except VerificationError:
            raise
        except (BlockStoreError, IPLDError) as exc:
            self.prefetch_failures.append(str(exc))
            log.warning("fetching %s as a CAR failed, its blocks will be fetched one by one: %s", root, exc)
            return 0

    def _fetch_dag_or_report(self, cid: CID) -> int:
        """One subtree CAR into the local cache; a failed one (HTTP 500, a bad or junk-laden
        CAR, a deadline) is recorded in :attr:`prefetch_failures` and logged, and its blocks
        are then read one by one when the sync asks for them."""
        try:
            return int(self.remote.stream_dag(cid, _Queued(self)))  # verified block by block as it arrives
        except (BlockStoreError, IPLDError) as exc:
            self.prefetch_failures.append(str(exc))
            log.warning("prefetching %s as a CAR failed, its blocks will be fetched one by one: %s", cid, exc)
            return 0

    def local_store(self) -> BlockStore:
        self._behind.drain()
        return self.local

    def pin(self, cid: CID, *, replaces: CID | None = None) -> None:
        self.remote.pin(cid, replaces=replaces)

    def flush(self) -> None:
        self._behind.drain()
        self.remote.flush()
        self.local.flush()

    def close(self) -> None:
        try:
            self._behind.drain()
        finally:
            self.remote.close()
            self.local.close()


class _Held:
    """In place of the write-behind queue of a caching store that keeps nothing
    (:meth:`CachingStore.without_keeping`): the blocks of a file's CAR (a CIDv0 chunk file,
    :meth:`CachingStore.prefetch_file`) are held in memory for the read that follows, the
    oldest dropped past ``max_bytes``, never written; blocks the keeping store's queue still
    holds are read from there."""

    def __init__(self, queue: WriteBehind | _Held, max_bytes: int = HELD_BYTES) -> None:
        self.queue = queue
        self.max_bytes = max_bytes
        self._blocks: dict[CID, BlockBytes] = {}  # in the order added
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, blocks: Sequence[tuple[CID, BlockBytes]]) -> None:
        with self._lock:
            for cid, data in blocks:
                if cid not in self._blocks:
                    self._blocks[cid] = data
                    self._bytes += len(data)
            while self._bytes > self.max_bytes and self._blocks:
                oldest = next(iter(self._blocks))
                self._bytes -= len(self._blocks.pop(oldest))

    def get(self, cids: list[CID]) -> dict[CID, bytes]:
        found = self.queue.get(cids)
        with self._lock:
            for cid in cids:
                data = self._blocks.get(cid)
                if data is not None:
                    found[cid] = data if isinstance(data, bytes) else bytes(data)
        return found

    def has(self, cid: CID) -> bool:
        with self._lock:
            if cid in self._blocks:
                return True
        return self.queue.has(cid)

    def drain(self) -> None:
        """(Nothing is written.)"""


class _Queued(BlockStore):
    """The local side of a caching store as the target of a CAR import: what it already
    holds (on disk or queued) counts as present, and imported blocks join the write-behind
    queue, so the read that follows a prefetch need not wait for the disk."""

    def __init__(self, store: CachingStore) -> None:
        super().__init__()
        self.store = store

    def describe(self) -> str:
        return self.store.local.describe()

    def _get(self, cid: CID) -> bytes | None:
        queued = self.store._behind.get([cid]).get(cid)
        return queued if queued is not None else self.store.local._get(cid)

    def _has(self, cid: CID) -> bool:
        return self.store._cached(cid)

    def _put(self, cid: CID, data: bytes) -> None:
        self.store._behind.add([(cid, data)])

    def _put_many(self, blocks: list[Block]) -> None:
        self.store._behind.add(blocks)
