"""The DuckDB cache: the materialized, queryable copy of indexes and their history.

Owns the cache file, its migrations (``migrations/``: ``items``, ``items_at(ts)``, ...) and the
one-transaction apply of a :class:`SyncPlan`; readers (``halodb sql``, a server) open it with
:func:`open_for_queries`: read-only, no file or network access, configuration locked. May
import blockstore, ipld, util and errors (it uses errors and ipld's CIDs): never index or naming (the three are independent), nor sync or above.

>>> import tempfile, pathlib
>>> with Cache(pathlib.Path(tempfile.mkdtemp()) / "cache.duckdb") as cache:
...     cache.sql("SELECT count(*) AS n FROM items")
(['n'], [(0,)])
"""

from __future__ import annotations

from halodb.cache.db import Cache, open_for_queries
from halodb.cache.records import AddedBatch, ChangeRecord, CommitRecord, ItemRecord, SyncPlan, SyncState

__all__ = ["AddedBatch", "Cache", "ChangeRecord", "CommitRecord", "ItemRecord", "SyncPlan", "SyncState", "open_for_queries"]
