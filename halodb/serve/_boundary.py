"""Where DuckDB's exceptions become HaloDB errors in the server: a query of a request against
the serving snapshot that fails is a :class:`~halodb.errors.RequestError` — 503 when the
deadline interrupted it, else 400 (a value of the request DuckDB could not use, such as a
timestamp out of its range), with the failure logged.

>>> DUCKDB_REQUEST.error_class(duckdb.InterruptException).__name__
'RequestError'
"""

from __future__ import annotations

import duckdb

from halodb.errors import ErrorMap, RequestError

__all__ = ["DUCKDB_REQUEST"]

DUCKDB_REQUEST: ErrorMap[RequestError] = ErrorMap(
    "duckdb", "the queries of one request to halodb serve",
    dict.fromkeys((duckdb.Error, duckdb.Warning), RequestError),
)
