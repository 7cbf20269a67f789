"""The UnixFS ``Data`` message carried in a dag-pb node's Data field.

``Type`` is one of Raw, Directory, File, Metadata, Symlink, HAMTShard; files carry
``filesize`` and one ``blocksizes`` entry per child link (the file bytes under it),
HAMT shards carry ``hashType`` and ``fanout`` and their occupancy bitfield in ``data``.

>>> d = decode_data(bytes.fromhex("0802120568656c6c6f1805"))
>>> d.type == FILE, d.data, d.filesize
(True, b'hello', 5)
"""

from __future__ import annotations

from dataclasses import dataclass

from halodb.errors import UnixFSError
from halodb.ipld.protobuf import I32, LEN, VARINT, read_varint
from halodb.unixfs.dagpb import fields

RAW, DIRECTORY, FILE, METADATA, SYMLINK, HAMT_SHARD = range(6)
TYPE_NAMES = ("Raw", "Directory", "File", "Metadata", "Symlink", "HAMTShard")
MURMUR3_X64_64 = 0x22  #: the only HAMT hash function UnixFS defines


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded UnixFS Data message (absent optional fields are None / empty)."""

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: tuple[int, int] | None = None  #: (seconds, nanoseconds)


def _mtime(buf: bytes) -> tuple[int, int]:
    seconds, nanos = 0, 0
    for number, wire, value in fields(buf):
        if number == 1 and wire == VARINT:
            assert isinstance(value, int)
            seconds = value - (1 << 64) if value >> 63 else value  # int64
        elif number == 2 and wire == I32:
            assert isinstance(value, int)
            nanos = value
        else:
            raise UnixFSError(f"UnixFS: unexpected UnixTime field {number} (wire type {wire})")
    return seconds, nanos


def decode_data(buf: bytes) -> UnixFSData:
    """Decode a UnixFS Data message; :class:`~halodb.errors.UnixFSError` if malformed."""
    kind: int | None = None
    out: dict[str, object] = {}
    sizes: list[int] = []
    for number, wire, value in fields(buf):
        if number == 1 and wire == VARINT:
            assert isinstance(value, int)
            if value >= len(TYPE_NAMES):
                raise UnixFSError(f"UnixFS: unknown node type {value}")
            kind = value
        elif number == 2 and wire == LEN:
            out["data"] = value
        elif number == 3 and wire == VARINT:
            out["filesize"] = value
        elif number == 4 and wire == VARINT:
            assert isinstance(value, int)
            sizes.append(value)
        elif number == 4 and wire == LEN:  # packed repeated
            assert isinstance(value, bytes)
            pos = 0
            while pos < len(value):
                size, pos = read_varint(value, pos, len(value), error=UnixFSError, where="protobuf: ")
                sizes.append(size)
        elif number == 5 and wire == VARINT:
            out["hash_type"] = value
        elif number == 6 and wire == VARINT:
            out["fanout"] = value
        elif number == 7 and wire == VARINT:
            out["mode"] = value
        elif number == 8 and wire == LEN:
            assert isinstance(value, bytes)
            out["mtime"] = _mtime(value)
        elif number > 8:
            continue  # an unknown field from a newer writer: protobuf readers skip those
        else:
            raise UnixFSError(f"UnixFS: field {number} has the wrong wire type {wire}")
    if kind is None:
        raise UnixFSError("UnixFS: Data message without a Type")
    return UnixFSData(kind, blocksizes=tuple(sizes), **out)  # type: ignore[arg-type]
