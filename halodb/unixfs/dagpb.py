"""DAG-PB: the protobuf block format UnixFS files and directories are stored in.

A block is a ``PBNode`` with ``Links`` (``Hash`` binary CID, ``Name``, ``Tsize``) and
opaque ``Data``. Decoding is strict as the IPLD dag-pb spec asks: only the known fields
with their wire types, ``PBLink`` fields in field order and each at most once, a ``Hash``
in every link, and ``Links`` as one contiguous group (before or after ``Data``).

No well-kept Python library decodes dag-pb (libipld and multiformats do not; the
``ipld-dag-pb`` package on PyPI is a single 0.0.1 release) so the node model lives here,
over the protobuf wire reader of :mod:`halodb.ipld.protobuf`.

>>> node = decode_pb(bytes.fromhex("0a050001020304"))
>>> node.data, node.links
(b'\\x00\\x01\\x02\\x03\\x04', ())
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from halodb.errors import CIDError, UnixFSError
from halodb.ipld import CID, protobuf
from halodb.ipld.protobuf import LEN, VARINT



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


def fields(buf: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int | bytes]]:
    """The protobuf fields of a dag-pb or UnixFS message; malformed wire data is a :class:`UnixFSError`."""
    return protobuf.fields(buf, start, end, error=UnixFSError)


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
