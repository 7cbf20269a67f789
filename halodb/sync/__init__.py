"""Sync: materialize a name's history from the block store into the DuckDB cache.

Owns the plan (the commit chain and the diffs of index roots since the synced head, item
blocks read in batches) and hands it to ``Cache.apply``. May import cache, naming, index and
the layers below; never campaign, filetree, stac, unixfs, scan or anything above.
"""

from halodb.sync.pipeline import SyncResult, build_plan, prefetch_changed, sync

__all__ = ["SyncResult", "build_plan", "prefetch_changed", "sync"]
