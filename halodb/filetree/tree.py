"""Read-only file trees: the one interface dataset extraction reads through.

A dataset is a folder (a Zarr store, or anything with a ``dataset_meta.yaml``). Extraction
never cares where the folder lives: a local directory (:class:`LocalTree`, used by producers
checking their data before upload) or a UnixFS tree on IPFS read through any block store.
Paths are ``/``-separated and relative to the tree's root; ``""`` is the root itself.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "a").mkdir(); _ = (root / "a" / "x.txt").write_bytes(b"hello")
>>> tree = LocalTree(root)
>>> [(e.name, e.is_dir) for e in tree.list("")]
[('a', True)]
>>> tree.read("a/x.txt", start=1, end=3)
b'el'
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from halodb.errors import TreePathError


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a folder listing; ``size`` is the file size in bytes (None for folders)."""

    name: str
    is_dir: bool
    size: int | None = None


class Tree(abc.ABC):
    """A read-only tree of folders and files."""

    @abc.abstractmethod
    def list(self, path: str) -> list[TreeEntry]:
        """Entries of the folder at ``path``, sorted by name; :class:`TreePathError` if none."""

    @abc.abstractmethod
    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the file at ``path``; :class:`TreePathError` if none."""

    @abc.abstractmethod
    def stat(self, path: str) -> TreeEntry | None:
        """The entry at ``path``, or None when nothing is there."""

    def exists(self, path: str) -> bool:
        """Whether anything (file or folder) is at ``path``."""
        return self.stat(path) is not None

    async def aread(self, path: str, start: int = 0, end: int | None = None) -> bytes | None:
        """:meth:`read` from a coroutine, on the running event loop, where the tree can do it
        there without a thread (the common case of reading a dataset's chunks); None when it
        cannot (the caller then calls :meth:`read` in a thread). By default it cannot."""
        return None


def _clean(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TreePathError(f"path {path!r} leaves the tree", path=path)
    return "/".join(parts)


class LocalTree(Tree):
    """A folder on the local file system seen as a :class:`Tree`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, path: str) -> Path:
        clean = _clean(path)
        return self.root / clean if clean else self.root

    def list(self, path: str) -> list[TreeEntry]:
        p = self._path(path)
        if not p.is_dir():
            raise TreePathError(f"{path or '/'}: not a folder in {self.root}", path=path)
        out = []
        for child in sorted(p.iterdir(), key=lambda c: c.name):
            is_dir = child.is_dir()
            out.append(TreeEntry(child.name, is_dir, None if is_dir else child.stat().st_size))
        return out

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        p = self._path(path)
        if not p.is_file():
            raise TreePathError(f"{path}: not a file in {self.root}", path=path)
        with open(p, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))

    def stat(self, path: str) -> TreeEntry | None:
        p = self._path(path)
        if not p.exists():
            return None
        is_dir = p.is_dir()
        return TreeEntry(p.name, is_dir, None if is_dir else p.stat().st_size)
