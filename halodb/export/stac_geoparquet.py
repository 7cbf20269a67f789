"""``halodb export geoparquet FILE``: the items of a synced name as one stac-geoparquet file.

The items are the cache's items (``items``, or ``items_at`` with ``--at``: the same reading as
``halodb export stac``, :func:`~halodb.export.static_stac.read_items`), written by rustac
(the Rust STAC library's stac-geoparquet writer: GeoParquet 1.1 ``geo`` metadata, WKB
geometry, bbox struct, one column per property). The Parquet key-value metadata also
records which version was exported: ``halodb:name``, ``halodb:commit``,
``halodb:commit_time`` (and ``halodb:as_of`` with ``--at``).

All or nothing: written to a temporary file beside FILE and linked to FILE at the end
(``os.link``: atomic like a rename, but it fails rather than replace a FILE that appeared
meanwhile); an existing FILE is refused and left as it was.

>>> # reg = halodb.open(); export_geoparquet(reg, pick_source(reg, None, None), Path("items.parquet"))
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from halodb.api import Registry
from halodb.errors import InputError
from halodb.export.static_stac import ExportSource, read_items

__all__ = ["export_geoparquet", "halodb_metadata"]


def halodb_metadata(source: ExportSource) -> dict[bytes, bytes]:
    """The Parquet key-value metadata naming the exported version (``halodb:commit`` ...)."""
    return {key.encode(): str(value).encode() for key, value in source.fields().items()}


def _check_target(target: Path) -> None:
    if target.exists() or target.is_symlink():
        raise InputError(f"export: {target} exists; give a new file name", source=str(target))
    if not target.parent.is_dir():
        raise InputError(f"export: the folder {target.parent} (where {target.name} would go) does not exist",
                         source=str(target))


def _write(items: list[dict[str, Any]], source: ExportSource, tmp: Path) -> None:
    """rustac writes the stac-geoparquet; pyarrow adds HaloDB's keys to its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import rustac

    plain = tmp.with_name(tmp.name + ".rustac")
    try:
        rustac.write_sync(str(plain), items, format="geoparquet")
        written = pq.ParquetFile(plain)
        kept = {k: v for k, v in (written.metadata.metadata or {}).items() if k != b"ARROW:schema"}  # geo, stac-geoparquet
        table = written.read().replace_schema_metadata({**kept, **halodb_metadata(source)})
        written.close()
        pq.write_table(table, tmp, compression="zstd")
    except (rustac.RustacError, pa.ArrowException) as exc:  # an item rustac or Arrow cannot convert
        raise InputError(f"export: stac-geoparquet of {source.describe()} failed: {exc}", source=str(tmp)) from None
    finally:
        plain.unlink(missing_ok=True)


def export_geoparquet(reg: Registry, source: ExportSource, target: Path) -> dict[str, int]:
    """Write the items of ``source`` as the new stac-geoparquet file ``target``; returns counts."""
    _check_target(target)  # before reading anything: a bad target fails at once
    with reg.session():
        exported = read_items(reg, source)
    if not exported:
        raise InputError(f"export: {source.describe()} has no items; nothing to write", source=str(target))
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        _write([e.item for e in exported], source, tmp)
        tmp.chmod(0o644)  # mkstemp makes it 0600; the export is meant to be shared
        os.link(tmp, target)  # fails if target appeared meanwhile: never replaces a file
    except OSError as exc:
        raise InputError(f"export: writing {target} failed, nothing was written: {exc.strerror or exc}",
                         source=str(target)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"items": len(exported), "collections": len({e.collection for e in exported})}
