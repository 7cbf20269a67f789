"""Item blocks of a sync plan, read batch by batch in the syncing process.

Every block is read through :meth:`~halodb.blockstore.base.BlockStore.get_many` (so verified
against its CID), decoded, and turned into the columns the cache inserts
(:func:`~halodb.cache.stac_columns.item_columns`). A forked reader process was tried and
removed: it gained about 6 % on a warm 100,000-item sync (``benchmarks/README.md``).

>>> from halodb.blockstore.memory import MemoryStore
>>> from halodb.ipld import make_block
>>> store = MemoryStore(); cid, data = make_block({"id": "x"}); store.put_block(cid, data)
>>> read_items(store, [cid])[cid]
{'id': 'x'}
"""

from __future__ import annotations

from typing import Any

from halodb.blockstore.base import BlockStore
from halodb.cache.stac_columns import ItemColumns, item_columns
from halodb.errors import SchemaError
from halodb.ipld import CID, decode

__all__ = ["read_item_columns", "read_items"]


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
