"""``halodb export stac DIR``: a self-contained static STAC catalog from the DuckDB cache of a synced name.

``catalog.json`` links one collection per STAC ``collection`` of the items (extents computed
from the items: the union of their 2D bboxes and the span of their times; summaries of
``platform`` and ``instruments``; the item count as ``halodb:item_count``), and each
collection links its items. All links are relative and there are no ``self`` links (pystac's
SELF_CONTAINED catalog type), so the folder can be copied, served or opened by STAC Browser
as it is. Each item file is the item the cache holds, byte for byte in content, except its
``root``, ``parent``, ``collection`` and ``self`` links, which are replaced by relative links
into the export. The catalog and each collection carry ``halodb:name``, ``halodb:commit`` and
``halodb:commit_time`` (and ``halodb:as_of`` with ``--at``): which version was exported.

The file layout is :mod:`halodb.export.layout`. Writing is all or nothing: into a temporary
folder beside DIR, renamed to DIR at the end; DIR must be absent or an empty folder.

>>> # reg = halodb.open(); export_static_stac(reg, pick_source(reg, None, None), Path("out"))
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from halodb.api import Registry
from halodb.errors import InputError
from halodb.export.layout import CATALOG_FILE, ItemPaths, collection_path
from halodb.util.times import format_time, to_time

__all__ = ["ExportSource", "ExportedItem", "build_files", "export_static_stac", "pick_source", "read_items", "write_tree"]

STAC_VERSION = "1.1.0"
#: the links of an item that point into its catalog; the export replaces them by relative ones
CATALOG_RELS = frozenset({"self", "root", "parent", "collection"})
WHOLE_WORLD = [-180.0, -90.0, 180.0, 90.0]


@dataclass(frozen=True)
class ExportSource:
    """What an export reads: the synced ``name``, the ``commit`` it exports (the head the cache
    holds, or the commit current at ``at``) and that commit's time."""

    name: str
    commit: str
    commit_time: datetime
    at: datetime | None = None

    def fields(self) -> dict[str, Any]:
        """The ``halodb:*`` fields the catalog and collections carry."""
        found: dict[str, Any] = {"halodb:name": self.name, "halodb:commit": self.commit,
                                 "halodb:commit_time": format_time(self.commit_time)}
        if self.at is not None:
            found["halodb:as_of"] = format_time(self.at)
        return found

    def describe(self) -> str:
        when = f" as of {format_time(self.at)}" if self.at is not None else ""
        return f"{self.name}{when}, commit {self.commit} ({format_time(self.commit_time)})"


@dataclass
class ExportedItem:
    """One item row of the cache: its key, collection, times and bbox, and the item itself."""

    key: str
    collection: str | None
    times: list[datetime]
    bbox: list[float] | None
    platform: str | None
    instruments: list[str]
    item: dict[str, Any] = field(repr=False)


def pick_source(reg: Registry, name: str | None, at: str | None) -> ExportSource:
    """The synced name to export (``name``, or the only synced one) and the commit to export.

    Only the cache is read: the name is not resolved again (``halodb sync NAME`` first for
    its newest version).
    """
    states = {s.name: s for s in reg.queries.sync_states()}
    if name is None:
        if len(states) != 1:
            choices = ", ".join(sorted(states)) if states else "none"
            raise InputError(f"export: give --name: the cache holds {len(states)} synced names ({choices})"
                             + (f"; e.g. --name {min(states)}" if states else "; `halodb sync NAME` syncs one"),
                             source="--name")
        canonical = next(iter(states))
    else:
        canonical = reg.canonical_name(name)
        if canonical not in states:
            raise InputError(f"export: {name!r} is not synced into the cache {reg.cache_path}; "
                             f"run `halodb sync {name}` first", source=name)
    when = None if at is None else to_time(at, what="--at")
    _, rows = reg.sql(
        "SELECT c.cid, c.time FROM name_commits AS n JOIN commits AS c ON c.cid = n.cid "
        "WHERE n.name = ? AND (CAST(? AS TIMESTAMPTZ) IS NULL OR c.time <= CAST(? AS TIMESTAMPTZ)) "
        "ORDER BY n.seq DESC LIMIT 1",
        [canonical, when, when])
    if not rows:
        raise InputError(f"export: {canonical} had no version at {at} (its history starts later)", source="--at")
    return ExportSource(canonical, str(rows[0][0]), rows[0][1], when)


def read_items(reg: Registry, source: ExportSource) -> list[ExportedItem]:
    """The items of ``source`` from the cache (``items``, or ``items_at`` with ``at``), by collection and key."""
    table = "items WHERE name = ?" if source.at is None else "items_at(CAST(? AS TIMESTAMPTZ), ?)"
    params: list[Any] = [source.name] if source.at is None else [source.at, source.name]
    _, rows = reg.sql(
        "SELECT key, collection, datetime, start_datetime, end_datetime, bbox, platform, instruments, item "
        f"FROM {table} ORDER BY collection NULLS FIRST, key", params)
    return [ExportedItem(key, collection, [t for t in (dt, start, end) if t is not None], bbox, platform,
                         list(instruments or []), json.loads(item))
            for key, collection, dt, start, end, bbox, platform, instruments, item in rows]


def _link(rel: str, href: str, title: str | None = None, media: str = "application/json") -> dict[str, Any]:
    link = {"rel": rel, "href": href, "type": media}
    if title is not None:
        link["title"] = title
    return link


def _relative(target: str, from_file: str) -> str:
    """``target`` as a relative href from the folder of ``from_file`` (both relative to the export).

    >>> _relative("catalog.json", "collections/halo/items/halo/f1.json")
    '../../../../catalog.json'
    >>> _relative("collections/halo/items/halo/f1.json", "collections/halo/collection.json")
    './items/halo/f1.json'
    """
    rel = posixpath.relpath(target, posixpath.dirname(from_file) or ".")
    return rel if rel.startswith("../") else f"./{rel}"


def _extent(items: list[ExportedItem]) -> dict[str, Any]:
    boxes = [b for b in (i.bbox for i in items) if b is not None and len(b) in (4, 6)]
    if boxes:
        half = [(b[0], b[1], b[len(b) // 2], b[len(b) // 2 + 1]) for b in boxes]
        bbox = [min(b[0] for b in half), min(b[1] for b in half), max(b[2] for b in half), max(b[3] for b in half)]
    else:
        bbox = WHOLE_WORLD
    times = [t for i in items for t in i.times]
    interval = [format_time(min(times)), format_time(max(times))] if times else [None, None]
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}}


def _summaries(items: list[ExportedItem]) -> dict[str, list[str]]:
    found = {"platform": sorted({i.platform for i in items if i.platform}),
             "instruments": sorted({x for i in items for x in i.instruments})}
    return {k: v for k, v in found.items() if v}


def _item_file(exported: ExportedItem, path: str, parent: str) -> dict[str, Any]:
    item = dict(exported.item)
    links = [link for link in item.get("links") or [] if not (isinstance(link, dict) and link.get("rel") in CATALOG_RELS)]
    links += [_link("root", _relative(CATALOG_FILE, path)), _link("parent", _relative(parent, path))]
    if exported.collection is not None:
        links.append(_link("collection", _relative(parent, path)))
    item["links"] = links
    return item


def build_files(source: ExportSource, items: Iterable[ExportedItem]) -> dict[str, dict[str, Any]]:
    """Every file of the export, by its path relative to the export folder (the layout of
    :mod:`halodb.export.layout`): the catalog, the collections and the items."""
    by_collection: dict[str | None, list[ExportedItem]] = {}
    for exported in items:
        by_collection.setdefault(exported.collection, []).append(exported)
    paths = ItemPaths()
    files: dict[str, dict[str, Any]] = {}
    catalog_links = [_link("root", f"./{CATALOG_FILE}")]
    for collection, members in by_collection.items():
        parent = CATALOG_FILE if collection is None else collection_path(collection)
        item_links = []
        for exported in members:
            path = paths.item_path(collection, exported.key)
            files[path] = _item_file(exported, path, parent)
            item_links.append(_link("item", _relative(path, parent), media="application/geo+json"))
        if collection is None:
            catalog_links += item_links
            continue
        files[parent] = {
            "type": "Collection", "stac_version": STAC_VERSION, "id": collection, "title": collection,
            "description": f"{len(members)} item(s) of collection {collection} exported by HaloDB from {source.describe()}.",
            "license": "other", "extent": _extent(members), "summaries": _summaries(members),
            "halodb:item_count": len(members), **source.fields(),
            "links": [_link("root", _relative(CATALOG_FILE, parent)), _link("parent", _relative(CATALOG_FILE, parent)),
                      *item_links],
        }
        catalog_links.append(_link("child", _relative(parent, CATALOG_FILE), title=collection))
    total = sum(len(m) for m in by_collection.values())
    files[CATALOG_FILE] = {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": source.name, "title": f"HaloDB: {source.name}",
        "description": f"{total} item(s) exported by HaloDB from {source.describe()}.",
        **source.fields(), "links": catalog_links,
    }
    return files


def _check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InputError(f"export: {target} exists and is not a folder; give an empty or new folder", source=str(target))
    if target.is_dir() and any(target.iterdir()):
        raise InputError(f"export: {target} is not empty; give an empty or new folder", source=str(target))
    if not target.parent.is_dir():
        raise InputError(f"export: the folder {target.parent} (where {target.name} would go) does not exist",
                         source=str(target))


def _dump(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tree(target: Path, files: dict[str, dict[str, Any]], *, dump: Callable[[Path, dict[str, Any]], None] | None = None) -> None:
    """Write ``files`` (relative path -> JSON) as the new folder ``target``, all or nothing:
    into a temporary folder beside it, renamed to ``target`` when every file is written; on an
    error the temporary folder is removed and ``target`` left as it was."""
    _check_target(target)
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as exc:
        raise InputError(f"export: cannot write beside {target}: {exc.strerror or exc}", source=str(target)) from None
    try:
        write = dump if dump is not None else _dump
        for relative, value in files.items():
            write(tmp / relative, value)
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the export is meant to be shared
        os.rename(tmp, target)  # replaces an empty folder at once; a non-empty one (filled meanwhile) fails
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"export: writing {target} failed, nothing was written: {exc.strerror or exc}",
                         source=str(target)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_static_stac(reg: Registry, source: ExportSource, target: Path) -> dict[str, int]:
    """Write the static STAC catalog of ``source`` into the new folder ``target``; returns counts.

    The cache is read in one session (one consistent view), then the files are built and
    written (:func:`write_tree`)."""
    _check_target(target)  # before reading anything: a bad folder fails at once
    with reg.session():
        items = read_items(reg, source)
    files = build_files(source, items)
    write_tree(target, files)
    return {"items": len(items), "collections": sum(1 for f in files.values() if f.get("type") == "Collection")}
