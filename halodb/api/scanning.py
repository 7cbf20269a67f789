"""The registry's side of ``halodb scan``: what it holds under a prefix (head plus stage),
which :func:`halodb.scan.scanner.scan` compares the tree with."""

from __future__ import annotations

from halodb.api.home import Stage
from halodb.index.index import Index
from halodb.index.model import Entry, IndexRoot

__all__ = ["current_view"]


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def current_view(index: Index, root: IndexRoot | None, stage: Stage, prefix: str) -> tuple[dict[str, str], dict[str, Entry]]:
    """``(path -> key, key -> entry)`` for the datasets under ``prefix`` in ``root`` with ``stage`` applied."""
    holders: dict[str, str] = {}
    entries: dict[str, Entry] = {}
    if root is not None:
        stop = None if not prefix else prefix + "/\U0010ffff"
        for path, key in index.by_path.items(root.by_path, prefix or None, stop):
            if isinstance(key, str) and _under(path, prefix):
                holders[path] = key
        for key in set(holders.values()):
            entry = index.get(root, key)
            if entry is not None:
                entries[key] = entry
    for key in stage.removals:
        entries.pop(key, None)
    holders = {p: k for p, k in holders.items() if k in entries}
    for key, entry in stage.upserts.items():
        old = entries.get(key)
        if old is not None and old.path is not None and holders.get(old.path) == key:
            del holders[old.path]
        if entry.path is not None and _under(entry.path, prefix):
            holders[entry.path] = key
            entries[key] = entry
    return holders, entries
