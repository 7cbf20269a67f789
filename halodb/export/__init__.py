"""Exports for tools that read files: a static STAC catalog (``halodb export stac``) and a
stac-geoparquet file (``halodb export geoparquet``).

A top layer beside the CLI: it reads the DuckDB cache through :class:`halodb.api.Registry`'s
read-only query path and writes files; nothing below imports it.
"""

from halodb.export.stac_geoparquet import export_geoparquet
from halodb.export.static_stac import ExportSource, export_static_stac, pick_source

__all__ = ["ExportSource", "export_geoparquet", "export_static_stac", "pick_source"]
