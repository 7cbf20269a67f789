"""CARv1 files: streaming read and write, a read-only store over a CAR, and import.

A CARv1 file is a header followed by sections, each prefixed by an unsigned LEB128 varint
length::

    varint(len(header)) header                 header = DAG-CBOR {"roots": [links], "version": 1}
    varint(len(cid) + len(block)) cid block    ... once per block

Section CIDs may be CIDv0 (34 bytes: ``0x12 0x20`` + digest) or CIDv1 (varint version,
varint codec, then the multihash: varint code, varint length, digest). Every block read is
verified against its CID (sha2-256 only; other hash functions are not trusted).

Errors: :class:`~halodb.errors.CarError` for a malformed or truncated file, with ``.path``
(the file, or None for a file object) and ``.offset`` (the byte offset where the element
at fault starts: the header, a section, or a varint); :class:`~halodb.errors.VerificationError` when a block's bytes do not
match its CID. A CARv1 has no end marker: a file cut exactly at a section boundary is a
valid, shorter CAR. :func:`import_car` catches that case for DAGs by checking that every
block reachable from the roots is present; it streams (one block in memory at a time) and
stores only the blocks the roots reach. :func:`receive_dag` checks a gateway's CAR of one
DAG as it arrives (only blocks of that DAG, in depth-first order, each once).

>>> import io
>>> from halodb.ipld import make_block
>>> cid, data = make_block({"hello": "world"})
>>> buf = io.BytesIO()
>>> write_car(buf, [cid], [(cid, data)])
1
>>> _ = buf.seek(0)
>>> roots, blocks = read_car(buf)
>>> roots == [cid] and list(blocks) == [(cid, data)]
True
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from halodb.blockstore.base import Block, BlockStore
from halodb.errors import BlockStoreError, CarError, CIDError, DecodeError
from halodb.ipld import CID, DAG_CBOR, DAG_PB, block_links, decode, encode, verify_block
from halodb.ipld.limits import MAX_BLOCK_SIZE
from halodb.ipld.protobuf import encode_varint, fields
from halodb.util.fs import atomic_file
from halodb.util.oserrors import describe_os_error

CarSource = str | os.PathLike[str] | BinaryIO

#: a header larger than this is rejected as malformed (go-car uses the same limit)
MAX_HEADER_SIZE = 32 << 20
_CHUNK = 1 << 20


# -- writing -------------------------------------------------------------------------------
def write_car(target: CarSource, roots: list[CID], blocks: Iterable[Block]) -> int:
    """Write a CARv1 with ``roots`` and ``blocks`` (streamed); returns the number of blocks.

    Given a path, the file appears atomically (temporary file + rename) and only when every
    block was written. Blocks are written as given (not verified; read them from a
    verifying store).

    >>> import io
    >>> write_car(io.BytesIO(), [], [])
    0
    """
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        try:
            with atomic_file(path, durable=False) as f:
                return _write_car(f, roots, blocks)
        except OSError as exc:
            why = (f"the folder {path.parent} does not exist" if exc.errno == errno.ENOENT and not path.parent.is_dir()
                   else describe_os_error(exc))
            raise CarError(f"cannot write CAR file {path}: {why}", path=path, offset=None) from exc
    return _write_car(target, roots, blocks)


def _write_car(f: IO[bytes], roots: list[CID], blocks: Iterable[Block]) -> int:
    header = encode({"roots": list(roots), "version": 1})
    f.write(encode_varint(len(header)) + header)
    n = 0
    for cid, data in blocks:
        buf = cid.buffer
        f.write(encode_varint(len(buf) + len(data)))
        f.write(buf)
        f.write(data)
        n += 1
    return n


# -- reading -------------------------------------------------------------------------------
class _Reader:
    """Parses a CARv1 stream, tracking the offset for error messages."""

    def __init__(self, f: BinaryIO, path: Path | None) -> None:
        self.f = f
        self.path = path
        self.pos = 0

    def where(self, offset: int) -> str:
        name = f"CAR file {self.path}" if self.path is not None else "CAR stream"
        return f"{name}, byte {offset}"

    def error(self, message: str, offset: int) -> CarError:
        return CarError(f"{self.where(offset)}: {message}", path=self.path, offset=offset)

    def read(self, n: int, start: int, what: str) -> bytes:
        """Exactly ``n`` bytes, or a truncation error naming the element that began at ``start``."""
        if n <= _CHUNK:
            data = self.f.read(n)
            if len(data) == n:
                self.pos += n
                return data
            parts = [data]
            got = len(data)
        else:
            parts, got = [], 0
        while got < n:
            chunk = self.f.read(min(n - got, _CHUNK))
            if not chunk:
                raise self.error(f"truncated {what}: expected {n} bytes, found {got}", start)
            parts.append(chunk)
            got += len(chunk)
        self.pos += n
        return b"".join(parts)

    def skip(self, n: int, start: int, what: str, size: int) -> None:
        if self.pos + n > size:
            raise self.error(f"truncated {what}: expected {n} bytes, found {size - self.pos}", start)
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

    def varint(self, what: str, *, eof_ok: bool = False) -> int | None:
        """An unsigned varint (at most 9 bytes, minimally encoded); None at a clean EOF."""
        start = self.pos
        value = shift = 0
        for i in range(9):
            b = self.f.read(1)
            if not b:
                if i == 0 and eof_ok:
                    return None
                raise self.error(f"truncated varint ({what})", start)
            self.pos += 1
            byte = b[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise self.error(f"bad varint ({what}): not minimally encoded", start)
                return value
            shift += 7
        raise self.error(f"bad varint ({what}): longer than 9 bytes", start)

    def header(self) -> list[CID]:
        n = self.varint("header length")
        assert n is not None
        if n == 0 or n > MAX_HEADER_SIZE:
            raise self.error(f"bad header: length {n}", 0)
        start = self.pos
        raw = self.read(n, 0, "header")
        try:
            value = decode(raw)
        except DecodeError as exc:
            raise self.error(f"bad header: not DAG-CBOR ({exc})", start) from None
        if not isinstance(value, dict):
            raise self.error(f"bad header: expected a map, got {type(value).__name__}", start)
        version = value.get("version")
        if version != 1 or type(version) is not int:
            raise self.error(f"bad header: version {version!r}, only CARv1 is supported", start)
        roots = value.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
            raise self.error("bad header: 'roots' must be a list of links", start)
        return roots

    def cid(self, start: int, body: int, length: int) -> CID:
        """Parse the CID that opens the section at ``start`` whose body of ``length`` bytes is at ``body``."""
        end = body + length
        first = self.read(1, start, "section CID")
        if first[0] == 0x12:  # CIDv0: a bare sha2-256 multihash
            if body + 34 > end:
                raise self.error("bad CID: CIDv0 longer than its section", start)
            rest = self.read(33, start, "section CID")
            if rest[0] != 0x20:
                raise self.error("bad CID: CIDv0 must be a 32-byte sha2-256 multihash", start)
            buf = first + rest
        else:
            if first[0] != 1:
                raise self.error(f"bad CID: unknown CID version (first byte 0x{first[0]:02x})", start)
            head = bytearray(first)
            size = 0
            for what in ("codec", "multihash code", "digest length"):
                size = self._cid_varint(what, start, end)
                head += encode_varint(size)  # varints are minimal, so this re-encodes them exactly
            if self.pos + size > end:
                raise self.error("bad CID: digest longer than its section", start)
            buf = bytes(head) + self.read(size, start, "section CID")
        try:
            return CID.parse(buf)
        except CIDError as exc:
            raise self.error(f"bad CID: {exc}", start) from None

    def _cid_varint(self, what: str, start: int, end: int) -> int:
        v = self.varint(f"CID {what}")
        assert v is not None
        if self.pos > end:
            raise self.error("bad CID: longer than its section", start)
        return v

    def section(self) -> tuple[int, CID, int] | None:
        """``(section offset, cid, block length)`` or None at the end of the file."""
        start = self.pos
        n = self.varint("section length", eof_ok=True)
        if n is None:
            return None
        if n == 0:
            raise self.error("bad section: length 0", start)
        body = self.pos
        cid = self.cid(start, body, n)
        return start, cid, n - (self.pos - body)


def _open(source: CarSource) -> tuple[BinaryIO, Path | None, bool]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return open(path, "rb"), path, True
        except OSError as exc:
            raise CarError(f"cannot open CAR file {path}: {describe_os_error(exc)}", path=path, offset=0) from exc
    return source, None, False


def read_car(source: CarSource) -> tuple[list[CID], Iterator[Block]]:
    """Read a CARv1: its roots now, then its blocks lazily, each verified against its CID.

    The header is read before this returns; a bad section raises when the iterator reaches
    it. A file opened from a path is closed when the iterator is exhausted or closed.

    >>> import io
    >>> buf = io.BytesIO()
    >>> _ = write_car(buf, [], [])
    >>> roots, blocks = read_car(io.BytesIO(buf.getvalue()))
    >>> roots, list(blocks)
    ([], [])
    """
    f, path, owned = _open(source)
    try:
        reader = _Reader(f, path)
        roots = reader.header()
    except BaseException:
        if owned:
            f.close()
        raise
    return roots, _iter_blocks(reader, owned)


def _iter_blocks(reader: _Reader, owned: bool) -> Iterator[Block]:
    try:
        while True:
            sec = reader.section()
            if sec is None:
                return
            start, cid, size = sec
            data = reader.read(size, start, "block")
            if not cid.verify(data):  # name the place only on failure: this loop is hot
                verify_block(cid, data, source=reader.where(start))
            yield cid, data
    finally:
        if owned:
            reader.f.close()


# -- a read-only store over a CAR file ---------------------------------------------------
class CarStore(BlockStore):
    """A read-only block store over one CARv1 file, indexed on open, read on demand.

    Opening reads every section header (not the block bytes) and raises
    :class:`~halodb.errors.CarError` for a malformed or truncated file. Blocks are verified
    when read, like in every store.

    >>> import tempfile
    >>> from halodb.ipld import make_block
    >>> cid, data = make_block([1, 2, 3])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_car(Path(tmp) / "x.car", [cid], [(cid, data)])
    ...     with CarStore(Path(tmp) / "x.car") as store:
    ...         print(store.roots == [cid], store.get(cid) == data)
    True True
    """

    supports_writes = False
    supports_listing = True

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        f, _, _ = _open(self.path)
        self._file: BinaryIO | None = f
        self._lock = threading.Lock()
        self._index: dict[CID, tuple[int, int]] = {}
        try:
            size = os.fstat(f.fileno()).st_size
            reader = _Reader(f, self.path)
            self.roots: list[CID] = reader.header()
            while (sec := reader.section()) is not None:
                start, cid, length = sec
                offset = reader.pos
                reader.skip(length, start, "block", size)
                self._index.setdefault(cid, (offset, length))
        except BaseException:
            f.close()
            self._file = None
            raise

    def locate(self, cid: CID) -> tuple[int, int] | None:
        """``(offset, length)`` of the block bytes of ``cid`` in the file, or None."""
        return self._index.get(cid)

    def describe(self) -> str:
        return f"CAR file {self.path}"

    def _read_at(self, offset: int, length: int) -> bytes:
        f = self._file
        if f is None:
            raise BlockStoreError(f"{self.describe()} is closed", path=self.path)
        pread = getattr(os, "pread", None)
        if pread is not None:
            data: bytes = pread(f.fileno(), length, offset)
        else:  # pragma: no cover - Windows
            with self._lock:
                f.seek(offset)
                data = f.read(length)
        if len(data) != length:
            raise CarError(
                f"{self.describe()}, byte {offset}: block truncated since the file was opened",
                path=self.path,
                offset=offset,
            )
        return data

    def _get(self, cid: CID) -> bytes | None:
        loc = self._index.get(cid)
        if loc is None:
            return None
        return self._read_at(*loc)

    def _has(self, cid: CID) -> bool:
        return cid in self._index

    def _iter_cids(self) -> Iterator[CID]:
        return iter(list(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# -- import --------------------------------------------------------------------------------
#: blocks written to the store at once by an import (a batch is also cut at _BATCH_BYTES)
_BATCH_BLOCKS = 2048
_BATCH_BYTES = 8 << 20
_RADIX = 1 << 40  # an index entry is offset * _RADIX + length


@dataclass(frozen=True)
class CarImport:
    """What :func:`import_reachable` did: the CAR's roots, its blocks, and how many of them
    were stored (those the roots reach) or left out (those they do not)."""

    roots: list[CID]
    blocks: int
    imported: int
    skipped: int


def import_car(store: BlockStore, source: CarSource, *, progress: Callable[[int], None] | None = None) -> list[CID]:
    """Import the DAGs of a CAR into ``store`` and return its roots (see :func:`import_reachable`;
    ``progress(n)``: the blocks written so far, after each batch).

    >>> import io
    >>> from halodb.blockstore.memory import MemoryStore
    >>> from halodb.ipld import make_block
    >>> cid, data = make_block({"a": 1})
    >>> buf = io.BytesIO()
    >>> _ = write_car(buf, [cid], [(cid, data)])
    >>> store = MemoryStore()
    >>> import_car(store, io.BytesIO(buf.getvalue())) == [cid] and store.has(cid)
    True
    """
    return import_reachable(store, source, progress=progress).roots


def import_reachable(store: BlockStore, source: CarSource, *, verified: bool = False,
                     progress: Callable[[int], None] | None = None) -> CarImport:
    """Import the blocks a CAR's roots reach into ``store``, streaming, all or nothing.

    Three passes over the file, none of which holds more than one block in memory:

    1. every section is parsed and its block verified against its CID; only an index
       (CID -> offset, length) is kept;
    2. from the roots, the links of DAG-CBOR and dag-pb blocks are followed, each block read
       back by its offset: every block reached must be in the CAR or already in ``store``
       (a CARv1 has no end marker, so this is what catches a file cut between sections);
    3. the blocks reached are written in batches of at most 2,048 blocks or 8 MiB,
       verified again as they are written (the file may have changed since pass 1).

    A malformed, corrupt or incomplete CAR raises :class:`CarError` (or
    :class:`~halodb.errors.VerificationError`, :class:`~halodb.errors.DecodeError`) before
    anything is written. Blocks the roots do not reach are not stored (``skipped``): a CAR
    cannot fill the store with blocks nothing links to. A stream that cannot seek is first
    copied to a temporary file.

    ``verified``: the caller wrote ``source`` itself from blocks it had verified (an anonymous
    temporary file nobody else can change, as :func:`receive_dag` fills): the blocks are not
    hashed again in passes 1 and 3.

    >>> import io
    >>> from halodb.blockstore.memory import MemoryStore
    >>> from halodb.ipld import make_block
    >>> (cid, data), (junk, more) = make_block({"a": 1}), make_block("unlinked")
    >>> buf = io.BytesIO()
    >>> _ = write_car(buf, [cid], [(cid, data), (junk, more)])
    >>> store = MemoryStore()
    >>> done = import_reachable(store, io.BytesIO(buf.getvalue()))
    >>> done.roots == [cid], done.blocks, done.imported, done.skipped, store.has(junk)
    (True, 2, 1, 1, False)
    """
    f, path, owned = _open(source)
    spool: IO[bytes] | None = None
    try:
        if not f.seekable():
            spool = tempfile.TemporaryFile()
            shutil.copyfileobj(f, spool, _CHUNK)
            spool.seek(0)
            f = cast(BinaryIO, spool)
        car = _IndexedCar(f, path, verified=verified)
        reached = car.reachable(store)
        imported = 0
        batch: list[Block] = []
        size = 0
        for cid in car.index:  # in file order: the reads of pass 3 are sequential
            if cid not in reached:
                continue
            data = car.block(cid)
            batch.append((cid, data))
            size += len(data)
            if len(batch) >= _BATCH_BLOCKS or size >= _BATCH_BYTES:
                imported += store.put_many(batch, verify=not verified)
                batch, size = [], 0
                if progress is not None:
                    progress(imported)
        if batch:
            imported += store.put_many(batch, verify=not verified)
            if progress is not None:
                progress(imported)
        return CarImport(roots=car.roots, blocks=car.sections, imported=imported, skipped=len(car.index) - imported)
    finally:
        if spool is not None:
            spool.close()
        if owned:
            f.close()


class _IndexedCar:
    """A seekable CAR parsed and verified once, then read back block by block."""

    def __init__(self, f: BinaryIO, path: Path | None, *, verified: bool = False) -> None:
        self.f = f
        self.base = f.tell()
        self.reader = reader = _Reader(f, path)
        self.roots = reader.header()
        #: CID -> offset * _RADIX + length of its block (one int, not a tuple: 145,000 blocks
        #: cost 10 MiB less), in file order
        self.index: dict[CID, int] = {}
        self.sections = 0
        while (sec := reader.section()) is not None:
            start, cid, size = sec
            if size > MAX_BLOCK_SIZE:  # IPFS peers neither store nor send such blocks
                raise reader.error(f"block {cid} is {size} bytes, more than the {MAX_BLOCK_SIZE}-byte block "
                                   "limit; nothing was imported", start)
            offset = reader.pos
            data = reader.read(size, start, "block")
            if not verified and not cid.verify(data):  # name the place only on failure: this loop is hot
                verify_block(cid, data, source=reader.where(start))
            self.index.setdefault(cid, offset * _RADIX + size)
            self.sections += 1

    def block(self, cid: CID) -> bytes:
        offset, size = divmod(self.index[cid], _RADIX)
        self.f.seek(self.base + offset)
        data = self.f.read(size)
        if len(data) != size:
            raise self.reader.error("block truncated since the file was read", offset)
        return data

    def reachable(self, store: BlockStore) -> set[CID]:
        """The CIDs the roots reach (in this CAR or in ``store``); :class:`CarError` for the
        first block reached that is neither here nor in ``store``."""
        seen: set[CID] = set()
        stack: list[tuple[CID, CID | None]] = [(r, None) for r in reversed(self.roots)]
        while stack:
            cid, parent = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            if cid not in self.index:
                if not store.has(cid):
                    raise self._incomplete(cid, parent)
                continue  # already stored: its subtree was imported before
            if cid.codec not in (DAG_PB, DAG_CBOR):
                continue  # a raw leaf (or another codec without links): nothing to read back
            for link in reversed(dag_links(cid, self.block(cid))):
                if link not in seen:
                    stack.append((link, cid))
        return seen

    def _incomplete(self, cid: CID, parent: CID | None) -> CarError:
        path = self.reader.path
        where = f"CAR file {path}" if path is not None else "CAR stream"
        field = self._field_of(parent, cid) if parent is not None else None
        linked = "is a root" if parent is None else f"is linked from {parent}" + (f" (its {field!r})" if field else "")
        if field in _HISTORY_FIELDS:  # a HaloDB commit whose earlier versions are not here
            return CarError(
                f"{where} holds a version without its history (written with export-car --head-only?): "
                f"block {cid} {linked} is neither in the CAR nor in the store; import it into a home that "
                "has the earlier versions, or export it without --head-only; nothing was imported",
                path=path, offset=None, cid=cid,
            )
        return CarError(
            f"{where} is incomplete: block {cid} {linked} but is neither in the CAR nor in the store"
            " (an inclusion proof from `halodb prove` holds only one lookup's blocks: check it with"
            " `halodb verify`; else the DAG was cut short); nothing was imported",
            path=path, offset=None, cid=cid,
        )

    def _field_of(self, parent: CID, cid: CID) -> str | None:
        """The top-level field of DAG-CBOR block ``parent`` under which it links to ``cid``."""
        if parent.codec != DAG_CBOR:
            return None
        try:
            value = decode(self.block(parent))
        except (DecodeError, CarError):
            return None
        if not isinstance(value, dict):
            return None
        for key, field in value.items():
            if field == cid or (isinstance(field, list) and cid in field):
                return str(key)
        return None


#: the fields by which a HaloDB commit links its earlier versions
_HISTORY_FIELDS = frozenset({"parents", "history"})


def dag_links(cid: CID, data: bytes) -> list[CID]:
    """The CIDs a DAG-CBOR or dag-pb block links to, in order (none for other codecs).

    >>> from halodb.ipld import make_block
    >>> leaf, _ = make_block("leaf")
    >>> cid, data = make_block({"a": leaf})
    >>> dag_links(cid, data) == [leaf]
    True
    """
    if cid.codec != DAG_PB:
        return block_links(cid, data)
    links: list[CID] = []
    for number, _, link in fields(data):
        if number == 2 and isinstance(link, bytes):
            for inner, _, value in fields(link):
                if inner == 1 and isinstance(value, bytes):
                    try:
                        links.append(CID.parse(value))
                    except CIDError as exc:
                        raise DecodeError(f"dag-pb block {cid}: a link's Hash is not a CID ({exc})", cid=cid) from None
    return links


# -- a gateway's CAR of one DAG, checked as it arrives -------------------------------------
class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.rest = chunk
        n = min(len(buffer), len(self.rest))
        buffer[:n] = self.rest[:n]
        self.rest = self.rest[n:]
        return n


def receive_dag(chunks: Iterable[bytes], root: CID, out: IO[bytes], *, max_block_size: int) -> int:
    """Copy a CAR of the DAG under ``root`` from ``chunks`` (an HTTP body) to ``out``, checking
    each section as it arrives (:func:`receive_blocks`); returns the number of blocks.

    Whether the DAG is complete is left to :func:`import_reachable`, which ``out`` is meant
    for.

    >>> import io
    >>> from halodb.ipld import make_block
    >>> leaf, leaf_data = make_block("leaf")
    >>> cid, data = make_block({"a": leaf})
    >>> car = io.BytesIO()
    >>> _ = write_car(car, [cid], [(cid, data), (leaf, leaf_data)])
    >>> receive_dag(iter([car.getvalue()]), cid, io.BytesIO(), max_block_size=1024)
    2
    """
    return _write_car(out, [root], receive_blocks(chunks, root, max_block_size=max_block_size))


def receive_blocks(chunks: Iterable[bytes], root: CID, *, max_block_size: int) -> Iterator[tuple[CID, bytes]]:
    """The blocks of a CAR of the DAG under ``root`` read from ``chunks`` (an HTTP body),
    each checked as it arrives and yielded once it passed.

    The CAR must be what a trustless gateway sends for ``?format=car`` with ``order=dfs;
    dups=n`` (``dag-scope=all``, ``entity``, or ``entity-bytes``: a part of the DAG): its only
    root is ``root``, and each block is one the blocks before it link to (or ``root``
    itself), sent once, at most ``max_block_size`` bytes, and matching its CID. The first
    section that breaks this raises :class:`CarError` (or
    :class:`~halodb.errors.VerificationError`) at once, so a gateway cannot make the client
    read more than the requested DAG: no junk blocks, no repeats, no endless body. The
    blocks yielded before it are good blocks of the DAG. Whether they are all of it is left
    to the caller.

    >>> import io
    >>> from halodb.ipld import make_block
    >>> leaf, leaf_data = make_block("leaf")
    >>> cid, data = make_block({"a": leaf})
    >>> junk = io.BytesIO()
    >>> _ = write_car(junk, [cid], [(leaf, leaf_data)])  # a block nothing before it links to
    >>> try:
    ...     list(receive_blocks(iter([junk.getvalue()]), cid, max_block_size=1024))
    ... except CarError as exc:
    ...     print(exc.message.split(": ", 1)[1].replace(str(leaf), "LEAF").replace(str(cid), "ROOT"))
    block LEAF is not linked from the blocks before it: not part of the DAG of ROOT (or not in the depth-first order asked for)
    """
    reader = _Reader(io.BufferedReader(_ChunkStream(iter(chunks)), _CHUNK), None)
    roots = reader.header()
    if roots != [root]:
        raise reader.error(f"the CAR's roots are {', '.join(map(str, roots)) or 'none'}, not the requested {root}", 0)
    wanted: set[CID] = {root}
    received: set[CID] = set()
    while (sec := reader.section()) is not None:
        start, cid, size = sec
        if cid in received:
            raise reader.error(f"block {cid} sent twice", start)
        if cid not in wanted:
            raise reader.error(
                f"block {cid} is not linked from the blocks before it: not part of the DAG of {root}"
                " (or not in the depth-first order asked for)", start)
        if size > max_block_size:
            raise reader.error(f"block {cid} has {size} bytes, more than the {max_block_size} a block may have", start)
        data = reader.read(size, start, "block")
        if not cid.verify(data):
            verify_block(cid, data, source=reader.where(start))
        received.add(cid)
        wanted.update(dag_links(cid, data))
        yield cid, data
