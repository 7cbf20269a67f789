"""``halodb gc``: delete the local blocks that no head reaches."""

from __future__ import annotations

from collections.abc import Iterable

from halodb.blockstore.base import BlockStore
from halodb.errors import InputError
from halodb.index.index import Index
from halodb.index.model import Commit
from halodb.index.reachable import reachable
from halodb.ipld import CID

__all__ = ["collect_garbage"]


def collect_garbage(
    store: BlockStore, index: Index, heads: Iterable[CID], keep: set[CID], *, dry_run: bool = False,
    commits: dict[CID, Commit] | None = None,
) -> tuple[int, int]:
    """Delete the blocks of ``store``'s local part that neither ``keep`` nor the whole history
    of any of ``heads`` holds; returns (kept, deleted)."""
    local = store.local_store()
    if not (local.supports_listing and local.supports_deletes):
        raise InputError(f"{local.describe()} cannot be garbage-collected (no listing or deletes)", source="gc")
    keep = set(keep)
    for head in set(heads):
        keep.update(reachable(store, index, head, commits=commits))
    doomed = [cid for cid in local.iter_cids() if cid not in keep]
    if not dry_run:
        for cid in doomed:
            local.delete(cid)
        local.flush()
    return len(keep), len(doomed)
