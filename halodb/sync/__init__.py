"""Sync: materialize a name's history from the block store into the DuckDB cache.

Owns the plan (a diff of index roots since the last synced head) and its application in
one cache transaction. Imports :mod:`halodb.index`, :mod:`halodb.cache` and the layers
below them; never the scan, STAC or API layers.
"""

from halodb.sync.pipeline import SyncResult, build_plan, prefetch_changed, sync

__all__ = ["SyncResult", "build_plan", "prefetch_changed", "sync"]
