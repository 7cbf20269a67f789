"""A remote block store with a local block cache in front of it.

Reads look in ``local`` first and go to ``remote`` only for what is missing; fetched blocks
(already verified by the remote's base class) are kept in ``local``, so a second sync,
``log``, ``diff`` or time travel over old versions needs the network only for new blocks.
Writes go to ``local`` and, when the remote takes writes, to the remote as well.

>>> from halodb.blockstore.memory import MemoryStore
>>> remote, local = MemoryStore(), MemoryStore()
>>> cid = remote.put(b"x", codec=0x55)
>>> store = CachingStore(local, remote)
>>> store.get(cid) == b"x" and local.has(cid)
True
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from halodb.blockstore.base import Block, BlockStore
from halodb.errors import BlockNotFoundError
from halodb.ipld import CID, block_links


class CachingStore(BlockStore):
    """``remote`` read through ``local``."""

    supports_writes = True
    supports_pinning = True
    is_remote_backed = True

    def __init__(self, local: BlockStore, remote: BlockStore) -> None:
        super().__init__()
        self.local = local
        self.remote = remote

    def describe(self) -> str:
        return f"{self.remote.describe()} (cached in {self.local.describe()})"

    def _get(self, cid: CID) -> bytes | None:
        data = self.local._get(cid)
        if data is not None:
            return data
        try:
            data = self.remote.get(cid)  # verified by the remote store
        except BlockNotFoundError:
            return None
        self.local.put_many([(cid, data)], verify=False)
        return data

    def _get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        found = self.local._get_many(cids)
        missing = [c for c in cids if c not in found]
        if missing:
            fetched = self.remote.get_many(missing)  # verified there
            if fetched:
                self.local.put_many(list(fetched.items()), verify=False)
            found.update(fetched)
        return found

    def _has(self, cid: CID) -> bool:
        return self.local.has(cid) or self.remote.has(cid)

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
        """
        fetch_dag = self.remote.fetch_dag
        if not self.remote.supports_dag_export or (spread <= 1 and self.local.has(root)):
            return 0
        frontier, fetched = [root], 0  # (a present root may still have absent children)
        while spread > 1 and len(frontier) < spread:
            blocks = self.get_many(frontier)  # single blocks, concurrently; kept locally
            fetched += len(blocks)
            seen: set[CID] = set()
            grown: list[CID] = []
            for cid in frontier:  # whole levels, so that the subtrees are about equally big
                for link in block_links(cid, blocks.get(cid, b"")):
                    if link not in seen and not self.local.has(link):
                        seen.add(link)
                        grown.append(link)
            if not grown:
                return fetched
            frontier = grown
        if len(frontier) == 1:
            return fetched + int(fetch_dag(frontier[0], self.local))
        with ThreadPoolExecutor(min(workers, len(frontier))) as pool:
            return fetched + sum(pool.map(lambda cid: int(fetch_dag(cid, self.local)), frontier))

    def local_store(self) -> BlockStore:
        return self.local

    def pin(self, cid: CID, *, replaces: CID | None = None) -> None:
        self.remote.pin(cid, replaces=replaces)

    def flush(self) -> None:
        self.remote.flush()
        self.local.flush()

    def close(self) -> None:
        self.remote.close()
        self.local.close()
