"""The DuckDB cache: the local, materialized, queryable copy of HaloDB indexes and their history.

Tables (see ``migrations/001_initial.sql``): ``commits``, ``name_commits``, ``stac_items``,
``item_versions``, ``sync_state``; the ``items`` view (current items) and the
``items_at(ts[, name])`` table macro (items at any time).

>>> import tempfile, pathlib
>>> with Cache(pathlib.Path(tempfile.mkdtemp()) / "cache.duckdb") as cache:
...     cache.sql("SELECT count(*) AS n FROM items")
(['n'], [(0,)])
"""

from __future__ import annotations

from halodb.cache.db import Cache
from halodb.cache.records import ChangeRecord, CommitRecord, ItemRecord, SyncPlan, SyncState

__all__ = ["Cache", "ChangeRecord", "CommitRecord", "ItemRecord", "SyncPlan", "SyncState"]
