"""Where each file of a static STAC export goes: safe relative paths from collection ids and keys.

Layout (relative to the export folder)::

    catalog.json
    collections/COLLECTION/collection.json
    collections/COLLECTION/items/SEG1/.../LAST.json   # key SEG1/.../LAST
    items/SEG1/.../LAST.json                          # items without a collection

Every segment passes :func:`halodb.util.paths.check_segment` (no ``..``, ``/``, NUL, control
characters). Folders are the key's leading segments and the file is its last segment plus
``.json``, so two keys can only meet where one's folder is the other's file (``a/b.json/c``
beside ``a/b``): :class:`ItemPaths` refuses that instead of overwriting.

>>> paths = ItemPaths()
>>> paths.item_path("halo", "halo/HALO-20240811a/bahamas.zarr")
'collections/halo/items/halo/HALO-20240811a/bahamas.zarr.json'
>>> paths.item_path(None, "loose/x")
'items/loose/x.json'
>>> paths.item_path("halo", "halo/HALO-20240811a")
'collections/halo/items/halo/HALO-20240811a.json'
>>> paths.item_path("halo", "halo/HALO-20240811a.json/y")
Traceback (most recent call last):
...
halodb.errors.InputError: export: key 'halo/HALO-20240811a.json/y' needs folder collections/halo/items/halo/HALO-20240811a.json, which is the file of another key
"""

from __future__ import annotations

from halodb.errors import InputError
from halodb.util.paths import check_segment

__all__ = ["CATALOG_FILE", "ItemPaths", "collection_path"]

CATALOG_FILE = "catalog.json"


def collection_path(collection: str) -> str:
    """The collection's file, relative to the export folder.

    >>> collection_path("halo")
    'collections/halo/collection.json'
    """
    return f"collections/{check_segment(collection, f'export: collection {collection!r}')}/collection.json"


class ItemPaths:
    """Hands out one item file per key, refusing a key whose path would meet another's."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()

    def item_path(self, collection: str | None, key: str) -> str:
        """The item file of ``key`` (in ``collection``), relative to the export folder."""
        segments = [check_segment(s, f"export: key {key!r}") for s in key.split("/")]
        base = "items" if collection is None else collection_path(collection).rsplit("/", 1)[0] + "/items"
        folders = [f"{base}/{'/'.join(segments[:i])}" for i in range(1, len(segments))]
        path = f"{base}/{'/'.join(segments)}.json"
        clash = next((f for f in folders if f in self._files), None)
        if clash is not None:
            raise InputError(f"export: key {key!r} needs folder {clash}, which is the file of another key", source=key)
        if path in self._folders or path in self._files:
            raise InputError(f"export: key {key!r} would be written to {path}, a path another key already uses", source=key)
        self._files.add(path)
        self._folders.update(folders)
        return path
