"""The block-store interface.

A backend implements a handful of raw primitives (``_get``, ``_has``, ``_put``, and
optionally their batched forms); everything that must be the same for every backend —
CID verification on every read and write, counters, batching defaults, errors — lives
here once. Capability flags say what a backend can do, and the shared conformance suite
(:mod:`halodb.testing.blockstore`) reads them to pick its tests.

A stored copy that fails verification is never data: ``get`` raises
:class:`~halodb.errors.VerificationError`. A backend that can set a damaged copy aside
(``supports_quarantine``: the directory store) does so first, keeping it as evidence, so
that the next read finds the block missing and the next put writes it anew; a
:class:`~halodb.blockstore.caching.CachingStore` then fetches it again from its remote.

>>> from halodb.blockstore import MemoryStore
>>> store = MemoryStore()
>>> cid = store.put(b"hello", codec=0x55)
>>> store.get(cid)
b'hello'
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Self

from halodb.errors import (
    BlockNotFoundError,
    BlockStoreError,
    ReadOnlyStoreError,
    VerificationError,
)
from halodb.ipld import CID, DAG_CBOR, verify_block

Block = tuple[CID, bytes]
#: a raw leaf of a UnixFS file: ``(cid, offset in the file, size)``
Leaf = tuple[CID, int, int]
#: the bytes of a block, or a view of them inside a larger buffer (the leaves of a file's
#: bytes read on an event loop: :meth:`BlockStore.aget_leaves`); ``bytes(view)`` copies them
BlockBytes = bytes | memoryview


#: rebuilds a UnixFS file's root block and raw leaves from its bytes when they hash to the file's
#: CID (:func:`halodb.unixfs.build.rebuild_file`), else None: :meth:`BlockStore.aget_file`
Rebuild = Callable[[bytes], tuple[bytes, Mapping[CID, BlockBytes]] | None]


class FileStart(NamedTuple):
    """What :meth:`BlockStore.aget_file` brings: a file's root block and the raw leaves of the
    range asked for (each verified; empty when the root names none to fetch)."""

    root: bytes
    leaves: dict[CID, BlockBytes]


@dataclass
class StoreStats:
    """Counters of what went through a store (used by benchmarks and tests)."""

    blocks_read: int = 0
    bytes_read: int = 0
    blocks_written: int = 0
    bytes_written: int = 0

    def reset(self) -> None:
        self.blocks_read = self.bytes_read = self.blocks_written = self.bytes_written = 0


class BlockStore(abc.ABC):
    """A content-addressed store of blocks, keyed by :class:`~halodb.ipld.CID`."""

    supports_writes: ClassVar[bool] = True
    supports_deletes: ClassVar[bool] = False
    supports_listing: ClassVar[bool] = False
    #: the store keeps what is pinned (and may drop the rest): ``pin`` does something
    supports_pinning: ClassVar[bool] = False
    #: blocks live elsewhere (a node, a gateway): the registry reads them through a local cache
    is_remote: ClassVar[bool] = False
    #: reads may go to the network (a remote, or a cache in front of one): worth batching ahead
    is_remote_backed: ClassVar[bool] = False
    #: the backend verified (or made) every byte it returns itself: the base class does not
    #: hash its reads again
    trusted_reads: ClassVar[bool] = False
    #: a stored copy that fails verification can be set aside (:meth:`quarantine`): the next
    #: read finds the block missing, and a put writes it anew
    supports_quarantine: ClassVar[bool] = False
    #: the backend sends a whole DAG as one CAR (:meth:`fetch_dag`): a gateway, Kubo
    supports_dag_export: ClassVar[bool] = False
    #: the backend sends the blocks of one file (a UnixFS entity), or of a byte range of it,
    #: as one CAR (:meth:`fetch_file`): a trustless gateway
    supports_file_export: ClassVar[bool] = False
    #: the backend sends a UnixFS file's bytes as they are, or a byte range of them (a
    #: gateway's plain path answer), from which its raw leaves are cut and each verified:
    #: :meth:`get_leaves` asks for adjacent leaves in one request
    supports_file_bytes: ClassVar[bool] = False
    #: ``put_many`` takes any buffer as a block's bytes (a ``memoryview``: SQLite binds it as
    #: it is), so a block queued as a view need not be copied to be written
    takes_buffers: ClassVar[bool] = False

    def __init__(self) -> None:
        self.stats = StoreStats()

    # -- what a backend implements ---------------------------------------------------
    @abc.abstractmethod
    def _get(self, cid: CID) -> bytes | None:
        """The stored bytes of ``cid``, or None when absent. Not verified here."""

    @abc.abstractmethod
    def _has(self, cid: CID) -> bool:
        """Whether ``cid`` is stored."""

    def _put(self, cid: CID, data: bytes) -> None:
        raise ReadOnlyStoreError(f"{self.describe()} does not support writes", store=self.describe())

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        out: dict[CID, bytes] = {}
        for cid in cids:
            data = self._get(cid)
            if data is not None:
                out[cid] = data
        return out

    def _has_many(self, cids: list[CID]) -> set[CID]:
        return {c for c in cids if self._has(c)}

    def _put_many(self, blocks: list[Block]) -> None:
        for cid, data in blocks:
            self._put(cid, data)

    def _delete(self, cid: CID) -> None:
        raise ReadOnlyStoreError(f"{self.describe()} does not support deletes", store=self.describe())

    def _delete_many(self, cids: list[CID]) -> None:
        for cid in cids:
            self._delete(cid)

    def delete_many(self, cids: Iterable[CID]) -> None:
        """Delete every block of ``cids`` (absent ones are skipped), in one batch where the
        backend can (``gc``).

        >>> from halodb.blockstore import MemoryStore
        >>> store = MemoryStore()
        >>> cid = store.put(b"x", codec=0x55)
        >>> store.delete_many([cid]); store.has(cid)
        False
        """
        if not self.supports_deletes:
            raise ReadOnlyStoreError(f"{self.describe()} does not support deletes", store=self.describe())
        batch = list(dict.fromkeys(cids))
        if batch:
            self._delete_many(batch)

    def _iter_cids(self) -> Iterator[CID]:
        raise ReadOnlyStoreError(f"{self.describe()} does not support listing", store=self.describe())

    def _quarantine(self, cid: CID) -> str | None:
        raise BlockStoreError(f"{self.describe()} cannot quarantine blocks", store=self.describe(), cid=cid)

    def _missing_note(self, cid: CID) -> str:
        """More on why ``cid`` is missing, for the error (a damaged copy set aside earlier)."""
        return ""

    def _damaged(self, cid: CID, moved_to: str | None) -> VerificationError:
        """The error for a stored copy of ``cid`` that fails verification (``moved_to``: where
        :meth:`quarantine` put it). A backend whose copies live in files names the file."""
        where = f"; it was moved to {moved_to}" if moved_to else ""
        return VerificationError(
            f"the copy of block {cid} in {self.describe()} is damaged: it does not hash to its CID{where}",
            cid=cid, source=self.describe(),
        )

    def describe(self) -> str:
        """A short human description (used in error messages)."""
        return type(self).__name__

    # -- the public interface: shared logic ----------------------------------------------
    def get(self, cid: CID) -> bytes:
        """The bytes of ``cid``, verified against it.

        Raises :class:`BlockNotFoundError` or :class:`~halodb.errors.VerificationError`.
        """
        data = self._get(cid)
        if data is None:
            raise BlockNotFoundError(f"block {cid} is not in {self.describe()}{self._missing_note(cid)}", cid=cid)
        self._check(cid, data)
        return data

    def get_many(self, cids: Iterable[CID]) -> dict[CID, bytes]:
        """The verified bytes of every ``cid`` that is present; absent ones are left out."""
        wanted = list(dict.fromkeys(cids))
        found = self._get_many(wanted) if wanted else {}
        for cid, data in found.items():
            self._check(cid, data)
        return found

    def get_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, bytes]:
        """The verified bytes of raw leaves of the UnixFS file under ``file``, each given as
        ``(cid, offset in the file, size)``; absent ones are left out. Where the store can
        send a file's bytes (``supports_file_bytes``: a gateway), each run of adjacent leaves
        is one request for that byte range of the file, cut into the leaves, each hashed
        against its CID; elsewhere (and for what that did not bring) it is :meth:`get_many`.

        >>> from halodb.blockstore import MemoryStore
        >>> store = MemoryStore()
        >>> cid = store.put(b"leaf", codec=0x55)
        >>> store.get_leaves(cid, [(cid, 0, 4)]) == {cid: b"leaf"}
        True
        """
        return self.get_many(cid for cid, _, _ in leaves)

    async def aget_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        """:meth:`get_many` from a coroutine (zarr reading a dataset on its event loop): here in
        a thread; a store that talks HTTP asynchronously (a gateway) does it on the running loop,
        and a caching store reads its local copies there (no thread, no trip between loops)."""
        import asyncio  # (here: a short command that reads blocks should not import asyncio, ~20 ms)

        return await asyncio.to_thread(self.get_many, cids)

    async def aget_leaves(self, file: CID, leaves: Sequence[Leaf]) -> dict[CID, BlockBytes]:
        """:meth:`get_leaves` from a coroutine (see :meth:`aget_many`). A leaf may come as a
        ``memoryview`` into the bytes of its run (no copy): a gateway's answer."""
        import asyncio

        return dict(await asyncio.to_thread(self.get_leaves, file, leaves))

    async def aget_file(self, file: CID, end: int, leaves_of: Callable[[bytes], Sequence[Leaf] | None], *,
                        rebuild: Rebuild | None = None) -> FileStart | None:
        """The root block of the UnixFS file ``file`` and the raw leaves that hold its bytes
        ``[0, end)``, which ``leaves_of(root block)`` names (None: not a file of raw leaves,
        then none are fetched); every block verified. None when the root is absent.

        Here the root first, then its leaves (:meth:`aget_many`, :meth:`aget_leaves`: two
        round trips); a gateway asks for the root and the file's plain bytes at once
        (:meth:`~halodb.blockstore.gateway.GatewayStore.aget_file`: one), or with ``rebuild`` the
        bytes alone, checked by rebuilding the root from them (one request). ``leaves_of`` may
        raise (a malformed root): that passes through.
        """
        root = (await self.aget_many([file])).get(file)
        if root is None:
            return None
        leaves = leaves_of(root)
        return FileStart(root, dict(await self.aget_leaves(file, leaves)) if leaves else {})

    def reads_file_bytes(self) -> bool:
        """Whether :meth:`get_leaves` asks for a file's bytes (one request per run of leaves)
        rather than block by block: a reader then need not ask for the file's blocks as a CAR
        first (:meth:`prefetch_file`)."""
        return False

    def has(self, cid: CID) -> bool:
        return self._has(cid)

    def has_many(self, cids: Iterable[CID]) -> set[CID]:
        """The subset of ``cids`` that is present."""
        wanted = list(dict.fromkeys(cids))
        return self._has_many(wanted) if wanted else set()

    def put(self, data: bytes, codec: int = DAG_CBOR) -> CID:
        """Store ``data`` and return its CIDv1 (sha2-256)."""
        cid = CID.for_bytes(data, codec)
        self._require_writes()
        self._put(cid, data)
        self.stats.blocks_written += 1
        self.stats.bytes_written += len(data)
        return cid

    def put_block(self, cid: CID, data: bytes) -> None:
        """Store a block under a given CID, after checking that the bytes match it."""
        self._require_writes()
        verify_block(cid, data, source="put")
        self._put(cid, data)
        self.stats.blocks_written += 1
        self.stats.bytes_written += len(data)

    def put_many(self, blocks: Iterable[Block], *, verify: bool = True) -> int:
        """Store many blocks in one batch; returns how many were given.

        Blocks made by this process (``make_block``) may skip re-hashing with ``verify=False``.
        Every block is verified before any is written, so a bad block writes nothing.
        """
        self._require_writes()
        batch = list(blocks)
        if verify:
            for cid, data in batch:
                verify_block(cid, data, source="put_many")
        if batch:
            self._put_many(batch)
        self.stats.blocks_written += len(batch)
        self.stats.bytes_written += sum(len(d) for _, d in batch)
        return len(batch)

    def delete(self, cid: CID) -> None:
        if not self.supports_deletes:
            raise ReadOnlyStoreError(f"{self.describe()} does not support deletes", store=self.describe())
        self._delete(cid)

    def quarantine(self, cid: CID) -> VerificationError | None:
        """Set aside the stored copy of ``cid``, which failed verification (only with
        ``supports_quarantine``): it is kept as evidence where the backend can keep it, and
        the block counts as missing from now on. Returns the error that says so (naming the
        damaged copy and where it went), or None when the stored copy verifies after all (a
        writer repaired it meanwhile) or is gone.

        >>> from halodb.blockstore import MemoryStore
        >>> store = MemoryStore()
        >>> cid = store.put(b"x", codec=0x55)
        >>> store._blocks[cid] = b"y"  # damage it
        >>> print(store.quarantine(cid))  # doctest: +ELLIPSIS
        the copy of block bafkrei... in memory store is damaged: it does not hash to its CID; it was moved to the store's quarantine
        >>> store.has(cid)
        False
        """
        if not self.supports_quarantine:
            raise BlockStoreError(f"{self.describe()} cannot quarantine blocks", store=self.describe(), cid=cid)
        data = self._get(cid)
        if data is None or cid.verify(data):
            return None
        moved_to = self._quarantine(cid)
        return self._damaged(cid, moved_to) if moved_to is not None else None

    def remove_stale_temp_files(self) -> int:
        """Remove the temporary files that killed writes left behind (never one of a writer
        that is still running); returns how many. A no-op (0) where writes leave none.
        ``halodb gc`` calls it on the local store."""
        return 0

    def iter_cids(self) -> Iterator[CID]:
        """Every stored CID, in no particular order (only with ``supports_listing``)."""
        if not self.supports_listing:
            raise ReadOnlyStoreError(f"{self.describe()} does not support listing", store=self.describe())
        return self._iter_cids()

    def pin(self, cid: CID, *, replaces: CID | None = None) -> None:
        """Keep the DAG under ``cid`` (recursively); ``replaces`` is a previous root to unpin.

        A no-op where the store keeps every block anyway (``supports_pinning`` False).
        """

    def fetch_dag(self, root: CID, into: BlockStore) -> int:
        """Bulk read: the whole DAG under ``root`` as one CAR, verified, imported into ``into``;
        returns the blocks imported (only with ``supports_dag_export``)."""
        raise BlockStoreError(f"{self.describe()} cannot export a DAG as a CAR", store=self.describe())

    def stream_dag(self, root: CID, into: BlockStore) -> int:
        """:meth:`fetch_dag` for a cache: where the backend can (a gateway), each verified block
        is put as it arrives, and an answer cut short keeps the good blocks that came; here the
        same as :meth:`fetch_dag` (only with ``supports_dag_export``)."""
        return self.fetch_dag(root, into)

    def fetch_file(self, root: CID, into: BlockStore, *, start: int = 0, end: int | None = None) -> int:
        """Bulk read: the blocks of the file under ``root`` that hold bytes ``[start, end)`` (all
        of it when ``end`` is None) as one CAR, each verified, put into ``into``; returns the
        blocks put (only with ``supports_file_export``)."""
        raise BlockStoreError(f"{self.describe()} cannot send a file as a CAR", store=self.describe())

    def prefetch(self, root: CID, *, spread: int = 256, workers: int = 16) -> int:
        """Bring the DAG under ``root`` close before it is read; returns the blocks fetched
        (a no-op, 0, where every block is local already)."""
        return 0

    def prefetch_file(self, root: CID, *, start: int = 0, end: int | None = None) -> int:
        """Bring the blocks of the file under ``root`` that hold bytes ``[start, end)`` close
        before they are read, in one request where the store can (a gateway's CAR); returns the
        blocks fetched (a no-op, 0, where the store cannot or they are here already)."""
        return 0

    def local_store(self) -> BlockStore:
        """The part of this store that keeps blocks on this machine (what ``gc`` may clean)."""
        return self

    def without_keeping(self) -> BlockStore:
        """This store for reads that keep nothing they fetch (a dataset read once, too large
        to keep): blocks held here are still read from here. Only a caching store keeps what
        it fetches; every other store is itself.

        >>> from halodb.blockstore.memory import MemoryStore
        >>> store = MemoryStore(); store.without_keeping() is store
        True
        """
        return self

    def flush(self) -> None:
        """Make every write so far durable (a no-op where writes are durable already)."""

    def close(self) -> None:
        """Release resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------
    def _require_writes(self) -> None:
        if not self.supports_writes:
            raise ReadOnlyStoreError(f"{self.describe()} is read-only", store=self.describe())

    def _check(self, cid: CID, data: BlockBytes) -> None:
        self.stats.blocks_read += 1
        self.stats.bytes_read += len(data)
        if self.trusted_reads or cid.verify(data):
            return
        if self.supports_quarantine:  # set the damaged copy aside; the error names it
            raise self.quarantine(cid) or self._damaged(cid, None)
        verify_block(cid, data, source=self.describe())  # raises: the bytes do not match
