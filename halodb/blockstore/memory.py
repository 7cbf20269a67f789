"""An in-memory block store: for tests, and as the model that other backends are held to.

>>> store = MemoryStore()
>>> cid = store.put(b"x", codec=0x55)
>>> store.has(cid)
True
"""

from __future__ import annotations

from collections.abc import Iterator

from halodb.blockstore.base import Block, BlockStore
from halodb.ipld import CID


class MemoryStore(BlockStore):
    """Blocks in a dict; lost when the process ends."""

    supports_deletes = True
    supports_listing = True
    supports_quarantine = True

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[CID, bytes] = {}
        #: damaged copies set aside by :meth:`quarantine`
        self.quarantined: dict[CID, bytes] = {}

    def _get(self, cid: CID) -> bytes | None:
        return self._blocks.get(cid)

    def _has(self, cid: CID) -> bool:
        return cid in self._blocks

    def _put(self, cid: CID, data: bytes) -> None:
        self._blocks[cid] = bytes(data)

    def _put_many(self, blocks: list[Block]) -> None:
        for cid, data in blocks:
            self._blocks[cid] = bytes(data)

    def _delete(self, cid: CID) -> None:
        self._blocks.pop(cid, None)

    def _quarantine(self, cid: CID) -> str | None:
        data = self._blocks.pop(cid, None)
        if data is None:
            return None
        self.quarantined[cid] = data
        return "the store's quarantine"

    def _iter_cids(self) -> Iterator[CID]:
        return iter(list(self._blocks))

    def __len__(self) -> int:
        return len(self._blocks)

    def describe(self) -> str:
        return "memory store"
