"""An fsspec filesystem for ``halodb://``: the files of a dataset as the index held it at a
date, read through HaloDB's block stores.

Registered under fsspec's ``halodb`` protocol (an entry point), so xarray, zarr and dask
find it without an import::

    xr.open_dataset("halodb://latest.orcestra-campaign.org@2024-09-15/products/HALO/x.zarr", engine="zarr")

A path is ``NAME[@DATE-TIME|@COMMIT]/KEY_OR_PATH[/INNER]`` (see :mod:`halodb.data.locate`),
or ``CID/INNER`` for a UnixFS tree by its CID. Every block is verified against its CID by the
store; blocks already in the home's block cache are not fetched again, and only the blocks
of the files (and byte ranges) asked for are fetched. Each filesystem instance pins the
versions it resolves: a name that moves while a dataset is open does not change what it
reads (fsspec does not reuse instances of this class: ``cachable`` is false, so each open
resolves the name anew).

Storage options: ``home``, ``store``, ``cache`` (as :func:`halodb.open`), or ``registry``
(an open :class:`~halodb.api.Registry`); ``keep_blocks=False`` to keep none of the
dataset's blocks fetched in the home's block cache (a dataset read once; see
:func:`halodb.open_dataset`). A file missing inside a dataset is a
``FileNotFoundError`` (zarr reads that as "no such key"); an unknown dataset, a name that
does not resolve, a date before the first version or a block that fails verification is a
:class:`~halodb.errors.HaloDBError` saying what was asked.

>>> # fs = HaloDBFileSystem(home="~/campaign"); fs.ls("latest@2024-09-15/halo/f1")
"""

from __future__ import annotations

import threading
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

import halodb
from halodb.api import Registry
from halodb.data.locate import Located, locate, parse_url, split_path
from halodb.errors import CIDError, InputError, TreePathError
from halodb.ipld import CID
from halodb.unixfs import UnixFSTree

__all__ = ["HaloDBFileSystem"]


class HaloDBFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only files of HaloDB datasets (``halodb://``); see the module docstring."""

    protocol = ("halodb",)
    root_marker = ""
    cachable = False  # an instance pins the versions it resolved: a new open resolves anew

    def __init__(self, *args: Any, home: str | None = None, store: str | None = None, cache: str | None = None,
                 registry: Registry | None = None, keep_blocks: bool = True, **storage_options: Any) -> None:
        if not isinstance(keep_blocks, bool):
            raise InputError(f"storage option keep_blocks={keep_blocks!r}: expected True or False", source="keep_blocks")
        super().__init__(*args, **storage_options)
        self._registry = registry
        self._keep_blocks = keep_blocks
        self._open_args = (home, store, cache)
        self._lock = threading.Lock()
        self._versions: dict[str, CID] = {}  # version reference -> commit, pinned
        self._datasets: dict[tuple[CID, str], Located] = {}  # (commit, dataset path asked) -> where
        self._trees: dict[str, UnixFSTree] = {}

    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                home, store, cache = self._open_args
                self._registry = halodb.open(home, store=store, cache=cache)
            return self._registry

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        for prefix in ("halodb://", "halodb::"):
            if text.startswith(prefix):
                text = text[len(prefix):]
        return text.strip("/")

    # -- where a path is ---------------------------------------------------------------------
    def _where(self, path: str) -> tuple[UnixFSTree, str]:
        """The tree holding ``path`` and the path inside it."""
        target = parse_url(self._strip_protocol(path))
        cid = _cid_or_none(target.name) if target.at is None else None
        if cid is not None:  # CID/INNER: a UnixFS tree by its CID
            return self._tree(str(cid)), target.path
        commit = self._version(target.ref)
        located = self._dataset(commit, target.path, target.ref)
        return self._tree(located.data_cid), split_path(located)

    def _version(self, ref: str) -> CID:
        with self._lock:
            pinned = self._versions.get(ref)
        if pinned is None:
            pinned = self.registry.resolve(ref)
            with self._lock:
                pinned = self._versions.setdefault(ref, pinned)
        return pinned

    def _dataset(self, commit: CID, path: str, ref: str) -> Located:
        """The dataset ``path`` is in at ``commit`` (what ``ref`` resolved to; the longest known
        dataset path first, so that the files of an open dataset cost no index lookup)."""
        with self._lock:
            known = [(k, v) for k, v in self._datasets.items() if k[0] == commit]
        for (_, dataset), located in sorted(known, key=lambda kv: -len(kv[0][1])):
            if path == dataset or path.startswith(dataset + "/"):
                inner = path[len(dataset):].strip("/")
                return Located(located.key, located.item, located.commit, located.commit_time, located.data_cid,
                               located.data_path, inner)
        located = locate(self.registry, path, commit, inner=True, asked=ref)
        dataset = path[:len(path) - len(located.inner)].strip("/") if located.inner else path
        with self._lock:
            self._datasets[(commit, dataset)] = located
        return located

    def _tree(self, cid: str) -> UnixFSTree:
        store = self.registry.store  # (takes the lock itself)
        if not self._keep_blocks:
            store = store.without_keeping()
        with self._lock:
            tree = self._trees.get(cid)
            if tree is None:
                tree = self._trees[cid] = UnixFSTree(store, cid)
            return tree

    def located(self, path: str) -> Located:
        """The dataset ``path`` (a ``halodb://`` URL or a path of this filesystem) is in."""
        target = parse_url(self._strip_protocol(path))
        return self._dataset(self._version(target.ref), target.path, target.ref)

    # -- fsspec ---------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        name = self._strip_protocol(path)
        tree, inner = self._where(name)
        try:
            entries = tree.list(inner)
        except TreePathError:
            raise FileNotFoundError(name) from None
        found = [{"name": f"{name}/{e.name}", "size": 0 if e.is_dir else e.size,
                  "type": "directory" if e.is_dir else "file"} for e in entries]
        return found if detail else [f["name"] for f in found]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        tree, inner = self._where(name)
        entry = tree.stat(inner)
        if entry is None:
            raise FileNotFoundError(name)
        return {"name": name, "size": 0 if entry.is_dir else entry.size,
                "type": "directory" if entry.is_dir else "file"}

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        name = self._strip_protocol(path)
        tree, inner = self._where(name)
        if (start is not None and start < 0) or (end is not None and end < 0):
            entry = tree.stat(inner)
            if entry is None or entry.is_dir:
                raise FileNotFoundError(name)
            size = entry.size or 0
            start = None if start is None else max(size + start, 0) if start < 0 else start
            end = None if end is None else max(size + end, 0) if end < 0 else end
        try:
            data: bytes = tree.read(inner, start or 0, end)
        except TreePathError:
            raise FileNotFoundError(name) from None
        return data

    def ukey(self, path: str) -> str:
        """The CID of the file: it changes exactly when the bytes do."""
        tree, inner = self._where(self._strip_protocol(path))
        cid = tree.resolve(inner)
        if cid is None:
            raise FileNotFoundError(path)
        return str(cid)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> AbstractBufferedFile:
        if mode != "rb":
            raise NotImplementedError("halodb:// is read-only")
        return _File(self, self._strip_protocol(path), mode, block_size=block_size or "default",
                     cache_options=cache_options, **kwargs)


class _File(AbstractBufferedFile):  # type: ignore[misc]
    """A file read by byte ranges (``cat_file``), as fsspec's buffered files are."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = self.fs.cat_file(self.path, start, end)
        return data


def _cid_or_none(text: str) -> CID | None:
    try:
        return CID.parse(text)
    except (CIDError, ValueError):
        return None
