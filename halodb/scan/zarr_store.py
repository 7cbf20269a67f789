"""A read-only zarr-python store over a :class:`~halodb.filetree.Tree`.

zarr-python (v3, which reads Zarr v2 and v3) does the decoding: metadata documents,
consolidated metadata, data types, fill values, chunk key encodings, codecs (blosc, zstd,
zlib, gzip, sharding, ...). This adapter only hands it bytes from a Tree, so datasets
are read the same way from a local folder or from IPFS, and only the keys zarr asks for
are fetched: metadata documents and the chunks of the arrays actually read.

On the way it guards what zarr would choke on with an unhelpful message:

* every metadata document (``.zgroup``, ``.zattrs``, ``.zarray``, ``.zmetadata``,
  ``zarr.json``) must be UTF-8 JSON whose text has no lone surrogates; otherwise a
  :class:`~halodb.errors.DatasetError` names the file and the attribute;
* no file larger than ``max_file_bytes`` is read whole (a chunk that claims to be
  small but is huge cannot exhaust memory);
* metadata documents are cached, so zarr's repeated probes cost one read each.

>>> import tempfile, pathlib, zarr
>>> from halodb.filetree import LocalTree
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / ".zgroup").write_text('{"zarr_format": 2}')
>>> _ = (root / ".zattrs").write_text('{"title": "HALO flight"}')
>>> store = TreeStore(LocalTree(root), "")
>>> zarr.open_group(store, mode="r", use_consolidated=False).attrs["title"]
'HALO flight'
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from halodb.errors import DatasetError, TreePathError
from halodb.filetree import Tree

__all__ = ["METADATA_NAMES", "TreeStore", "check_metadata_document"]

#: the file names that hold Zarr metadata (v2 and v3)
METADATA_NAMES = frozenset({".zgroup", ".zattrs", ".zarray", ".zmetadata", "zarr.json"})
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
#: the threads that read files for zarr (shared by every store of the process): reads from a
#: remote block store mostly wait on the network, so more run at once than there are cores
_READERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="halodb-zarr-read")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _first_bad_text(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    """The location and text of the first string (key or value) that is not valid Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return loc, value
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _first_bad_text(k, loc + [k]) or _first_bad_text(v, loc + [k])
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_bad_text(v, loc + [i])
            if found:
                return found
    return None


def _attribute_name(key: str, loc: list[str | int]) -> str:
    """Name the attribute at ``loc`` inside the metadata document ``key`` (``var.attr`` or ``attr``)."""
    folder, _, name = key.rpartition("/")
    rest: list[str | int] = list(loc)
    if name == ".zmetadata" and len(rest) >= 2 and rest[0] == "metadata" and isinstance(rest[1], str):
        return _attribute_name(_join(folder, rest[1]), rest[2:])
    if name == "zarr.json":
        if rest[:2] == ["consolidated_metadata", "metadata"] and len(rest) >= 3 and isinstance(rest[2], str):
            return _attribute_name(_join(folder, rest[2], "zarr.json"), rest[3:])
        if rest and rest[0] == "attributes":
            rest = rest[1:]
        else:
            rest = ["(metadata)", *rest]
    elif name != ".zattrs":
        rest = ["(metadata)", *rest]
    text = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(rest))
    if folder and text:
        return f"{folder}.{text}"
    return text or folder or "(metadata)"


def check_metadata_document(data: bytes, key: str, dataset: str) -> Any:
    """Parse one metadata document; :class:`DatasetError` naming file and attribute if it is broken.

    >>> check_metadata_document(b'{"title": "caf\\xe9"}', "ta/.zattrs", "x.zarr")
    Traceback (most recent call last):
    ...
    halodb.errors.DatasetError: x.zarr: ta/.zattrs: attribute ta.title is not UTF-8 text: 'caf\\udce9'
    """
    where = f"{dataset or '/'}: {key}"
    text = data.decode("utf-8", errors="surrogateescape")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise DatasetError(f"{where}: {detail}", path=dataset, file=key, attribute=None, detail=detail) from None
    bad = _first_bad_text(doc, [])
    if bad is not None:
        loc, value = bad
        attr = _attribute_name(key, loc)
        detail = f"attribute {attr} is not UTF-8 text: {value!r}"
        raise DatasetError(f"{where}: {detail}", path=dataset, file=key, attribute=attr, detail=detail)
    if not isinstance(doc, dict):
        detail = f"expected a JSON object, got {type(doc).__name__}"
        raise DatasetError(f"{where}: {detail}", path=dataset, file=key, attribute=None, detail=detail)
    return doc


class TreeStore(Store):
    """Read-only Zarr store: the dataset folder at ``path`` in ``tree``."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, tree: Tree, path: str, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        super().__init__(read_only=True)
        self.tree = tree
        self.path = path.strip("/")
        self.max_file_bytes = max_file_bytes
        self._meta: dict[str, bytes | None] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreeStore) and other.tree is self.tree and other.path == self.path

    def __hash__(self) -> int:
        return hash((id(self.tree), self.path))

    def __repr__(self) -> str:
        return f"TreeStore({self.tree!r}, {self.path!r})"

    # --- reads ------------------------------------------------------------------------
    def _read(self, key: str, start: int, end: int | None) -> bytes | None:
        limit = start + self.max_file_bytes + 1
        try:
            data = self.tree.read(_join(self.path, key), start, limit if end is None else min(end, limit))
        except TreePathError:
            return None
        if len(data) > self.max_file_bytes:
            detail = f"larger than the {self.max_file_bytes} bytes HaloDB reads of one file"
            raise DatasetError(f"{self.path or '/'}: {key}: {detail}", path=self.path, file=key, attribute=None,
                               detail=detail)
        return data

    def _read_metadata(self, key: str) -> bytes | None:
        # zarr asks for the same document from several threads; read (and check) each once
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._meta:
                data = self._read(key, 0, None)
                if data is not None:
                    check_metadata_document(data, key, self.path)
                self._meta[key] = data
            return self._meta[key]

    def _get_sync(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        if key.rpartition("/")[2] in METADATA_NAMES:
            data = self._read_metadata(key)
            if data is None or byte_range is None:
                return data
            return data[_slice(byte_range, len(data))]
        if byte_range is None:
            return self._read(key, 0, None)
        if isinstance(byte_range, RangeByteRequest):
            return self._read(key, byte_range.start, byte_range.end)
        if isinstance(byte_range, OffsetByteRequest):
            return self._read(key, byte_range.offset, None)
        entry = self.tree.stat(_join(self.path, key))
        if entry is None or entry.size is None:
            return None
        return self._read(key, max(0, entry.size - byte_range.suffix), None)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        data = await self._get_here(key, byte_range)
        if data is None:  # chunks wait on the network: more threads than asyncio's default pool (cores + 4)
            data = await asyncio.get_running_loop().run_in_executor(_READERS, self._get_sync, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def _get_here(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """A chunk read on zarr's loop, without a thread, where the tree can (``Tree.aread``:
        a UnixFS tree through a gateway or the block cache); None: read it in a thread."""
        if key.rpartition("/")[2] in METADATA_NAMES or isinstance(byte_range, SuffixByteRequest):
            return None
        if byte_range is None:
            start, end = 0, None
        elif isinstance(byte_range, RangeByteRequest):
            start, end = byte_range.start, byte_range.end
        else:
            assert isinstance(byte_range, OffsetByteRequest)
            start, end = byte_range.offset, None
        limit = start + self.max_file_bytes + 1
        data = await self.tree.aread(_join(self.path, key), start, limit if end is None else min(end, limit))
        if data is not None and len(data) > self.max_file_bytes:
            detail = f"larger than the {self.max_file_bytes} bytes HaloDB reads of one file"
            raise DatasetError(f"{self.path or '/'}: {key}: {detail}", path=self.path, file=key, attribute=None,
                               detail=detail)
        return data

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.tree.exists, _join(self.path, key))

    # --- listing ------------------------------------------------------------------------
    def _walk(self, prefix: str) -> list[str]:
        out: list[str] = []
        stack = [prefix.strip("/")]
        while stack:
            folder = stack.pop()
            try:
                entries = self.tree.list(_join(self.path, folder))
            except TreePathError:
                continue
            for e in entries:
                key = _join(folder, e.name)
                if e.is_dir:
                    stack.append(key)
                else:
                    out.append(key)
        return sorted(out)

    async def list(self) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self._walk, ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        folder = prefix.rpartition("/")[0]
        for key in await asyncio.to_thread(self._walk, folder):
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        try:
            entries = await asyncio.to_thread(self.tree.list, _join(self.path, prefix))
        except TreePathError:
            return
        for e in entries:
            yield e.name

    # --- writes: refused ------------------------------------------------------------------
    async def set(self, key: str, value: Buffer) -> None:
        raise NotImplementedError("TreeStore is read-only")

    async def delete(self, key: str) -> None:
        raise NotImplementedError("TreeStore is read-only")


def _slice(byte_range: ByteRequest, size: int) -> slice:
    if isinstance(byte_range, RangeByteRequest):
        return slice(byte_range.start, byte_range.end)
    if isinstance(byte_range, OffsetByteRequest):
        return slice(byte_range.offset, None)
    assert isinstance(byte_range, SuffixByteRequest)
    return slice(max(0, size - byte_range.suffix), None)
