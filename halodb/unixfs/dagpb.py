"""DAG-PB: the protobuf block format UnixFS files and directories are stored in.

A block is a ``PBNode`` with ``Links`` (``Hash`` binary CID, ``Name``, ``Tsize``) and
opaque ``Data``. Decoding is strict as the IPLD dag-pb spec asks: only the known fields
with their wire types, ``PBLink`` fields in field order and each at most once, a ``Hash``
in every link, and ``Links`` as one contiguous group (before or after ``Data``).

No well-kept Python library decodes dag-pb (libipld and multiformats do not; the
``ipld-dag-pb`` package on PyPI is a single 0.0.1 release) and UnixFS ``Data`` needs the
same protobuf wire reader, so both live here in a few dozen lines.

>>> node = decode_pb(bytes.fromhex("0a050001020304"))
>>> node.data, node.links
(b'\\x00\\x01\\x02\\x03\\x04', ())
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from halodb.errors import CIDError, UnixFSError
from halodb.ipld import CID

VARINT, I64, LEN, I32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link of a dag-pb node; ``name``/``tsize`` are None when absent."""

    cid: CID
    name: str | None
    tsize: int | None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A decoded dag-pb block; ``data`` is None when the block has no Data field."""

    links: tuple[PBLink, ...]
    data: bytes | None


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A protobuf varint (at most 64 bits) at ``pos``: ``(value, next position)``."""
    value = shift = 0
    while True:
        if pos >= end:
            raise UnixFSError("protobuf: truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value >> 64:
                raise UnixFSError("protobuf: varint larger than 64 bits")
            return value, pos
        shift += 7
        if shift >= 70:
            raise UnixFSError("protobuf: varint longer than 10 bytes")


def fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each protobuf field; LEN values are bytes."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise UnixFSError("protobuf: field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire == LEN:
            size, pos = read_varint(buf, pos, end)
            if size > end - pos:
                raise UnixFSError(f"protobuf: field {number} runs past the end ({size} bytes, {end - pos} left)")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if width > end - pos:
                raise UnixFSError(f"protobuf: truncated fixed-width field {number}")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        else:
            raise UnixFSError(f"protobuf: unsupported wire type {wire} for field {number}")
        yield number, wire, value


def _link(buf: bytes) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    for number, wire, value in fields(buf):
        if number <= last:
            raise UnixFSError(f"dag-pb: PBLink field {number} out of order or repeated")
        last = number
        if number == 1 and wire == LEN:
            assert isinstance(value, bytes)
            try:
                cid = CID.parse(value)
            except CIDError as exc:
                raise UnixFSError(f"dag-pb: link Hash is not a CID ({exc})") from None
        elif number == 2 and wire == LEN:
            assert isinstance(value, bytes)
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError:
                raise UnixFSError("dag-pb: link Name is not UTF-8") from None
        elif number == 3 and wire == VARINT:
            assert isinstance(value, int)
            tsize = value
        else:
            raise UnixFSError(f"dag-pb: unexpected PBLink field {number} (wire type {wire})")
    if cid is None:
        raise UnixFSError("dag-pb: link without a Hash")
    return PBLink(cid, name, tsize)


def decode_pb(block: bytes) -> PBNode:
    """Decode a dag-pb block strictly; :class:`~halodb.errors.UnixFSError` if malformed."""
    links: list[PBLink] = []
    data: bytes | None = None
    links_closed = False  # Links seen, then something else: no more Links allowed
    for number, wire, value in fields(block):
        if number == 2 and wire == LEN:
            if links_closed:
                raise UnixFSError("dag-pb: Links are not one contiguous group")
            assert isinstance(value, bytes)
            links.append(_link(value))
        elif number == 1 and wire == LEN:
            if data is not None:
                raise UnixFSError("dag-pb: duplicate Data field")
            assert isinstance(value, bytes)
            data = value
            links_closed = bool(links)
        else:
            raise UnixFSError(f"dag-pb: unexpected PBNode field {number} (wire type {wire})")
    return PBNode(tuple(links), data)
