"""Small helpers every layer may use: atomic files, RFC 3339 times, GC pauses, text tables, the version.

Owns nothing of HaloDB's data model. May import only the standard library and
:mod:`halodb.errors` (no package above it, no DuckDB, Arrow, Zarr, NumPy, pydantic or
pystac); every other package may import it.
"""
