"""Where DuckDB's exceptions become HaloDB errors in the cache layer.

Every exception DuckDB raises derives from :class:`duckdb.Error` (the DB-API tree:
``DatabaseError``, ``OperationalError``, ``ProgrammingError`` ..., and DuckDB's own
``IOException``, ``CatalogException``, ``ConversionException`` ... beneath them), or is the
DB-API :class:`duckdb.Warning`. What a failure becomes depends on what the cache was doing:

* :data:`DUCKDB` - opening and configuring the cache file, applying a sync: :class:`CacheError`
  (a file held by another process is one too, with ``.locked``; see
  :func:`halodb.cache.connect.is_lock_conflict`);
* :data:`DUCKDB_QUERY` - a user's SQL (:meth:`Cache.sql <halodb.cache.Cache.sql>`): :class:`QueryError`;
* :data:`DUCKDB_MIGRATION` - a schema migration: :class:`MigrationError`.

Cleaning up after an error (rolling back, unregistering a table) swallows DuckDB's errors:
the error that led there is the one to raise.

>>> DUCKDB_QUERY.error_class(duckdb.CatalogException).__name__, DUCKDB.error_class(duckdb.IOException).__name__
('QueryError', 'CacheError')
"""

from __future__ import annotations

import duckdb

from halodb.errors import CacheError, ErrorMap, MigrationError, QueryError

#: The roots of DuckDB's exception classes.
DUCKDB_EXCEPTIONS: tuple[type[BaseException], ...] = (duckdb.Error, duckdb.Warning)

DUCKDB: ErrorMap[CacheError] = ErrorMap(
    "duckdb", "the cache file: opening, configuring, applying syncs", dict.fromkeys(DUCKDB_EXCEPTIONS, CacheError)
)
DUCKDB_QUERY: ErrorMap[QueryError] = ErrorMap(
    "duckdb", "SQL queries of the cache (Cache.sql)", dict.fromkeys(DUCKDB_EXCEPTIONS, QueryError)
)
DUCKDB_MIGRATION: ErrorMap[MigrationError] = ErrorMap(
    "duckdb", "schema migrations of the cache", dict.fromkeys(DUCKDB_EXCEPTIONS, MigrationError)
)
