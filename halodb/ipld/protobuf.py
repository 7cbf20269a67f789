"""Unsigned varints and the protobuf wire format, written once for every block format.

CIDs and multihashes are varint-prefixed; dag-pb nodes, UnixFS ``Data`` and IPNS records
are protobuf messages; CAR files frame sections with varints. Each caller names the error
it raises, so a bad varint in a CID is a :class:`~halodb.errors.CIDError` and one in a
dag-pb block a :class:`~halodb.errors.UnixFSError`.

>>> encode_varint(300)
b'\\xac\\x02'
>>> read_varint(b"\\xac\\x02", 0)
(300, 2)
>>> [(n, w, v) for n, w, v in fields(encode_field(1, b"hi") + encode_field(3, 7))]
[(1, 2, b'hi'), (3, 0, 7)]
"""

from __future__ import annotations

from collections.abc import Iterator

from halodb.errors import DecodeError, EncodeError, HaloDBError

VARINT, I64, LEN, I32 = 0, 1, 2, 5  #: protobuf wire types

__all__ = ["I32", "I64", "LEN", "VARINT", "encode_field", "encode_varint", "fields", "read_varint"]


def encode_varint(n: int) -> bytes:
    """The unsigned LEB128 varint of ``n`` (minimal); ``n`` must lie in [0, 2**64).

    Raises :class:`~halodb.errors.EncodeError` for any other ``n`` (a negative one would
    never end).
    """
    if n < 0 or n >> 64:
        shown = str(n) if n.bit_length() <= 128 else f"an integer of {n.bit_length()} bits"
        raise EncodeError(f"a varint holds an integer in [0, 2**64), not {shown}", path="/")
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def read_varint(
    buf: bytes, pos: int, end: int | None = None, *, error: type[HaloDBError] = DecodeError, where: str = "",
    minimal: bool = False,
) -> tuple[int, int]:
    """An unsigned varint (at most 64 bits, 10 bytes) at ``pos``: ``(value, next position)``.

    A truncated or overlong varint raises ``error``, its message prefixed with ``where``;
    with ``minimal`` so does one with needless trailing zero groups (multiformats varints,
    as in CIDs and multihashes, must be minimal; protobuf's need not be).
    """
    end = len(buf) if end is None else end
    value = shift = 0
    while True:
        if pos >= end:
            raise error(f"{where}truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value >> 64:
                raise error(f"{where}varint larger than 64 bits")
            if minimal and b == 0 and shift:
                raise error(f"{where}varint not minimally encoded")
            return value, pos
        shift += 7
        if shift >= 70:
            raise error(f"{where}varint longer than 10 bytes")


def encode_field(number: int, value: int | bytes) -> bytes:
    """One protobuf field: an int as VARINT, bytes as LEN."""
    if isinstance(value, int):
        return encode_varint(number << 3) + encode_varint(value)
    return encode_varint(number << 3 | LEN) + encode_varint(len(value)) + value


def fields(
    buf: bytes, start: int = 0, end: int | None = None, *, error: type[HaloDBError] = DecodeError
) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each protobuf field; LEN values are bytes."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = read_varint(buf, pos, end, error=error, where="protobuf: ")
        number, wire = key >> 3, key & 7
        if number == 0:
            raise error("protobuf: field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end, error=error, where="protobuf: ")
        elif wire == LEN:
            size, pos = read_varint(buf, pos, end, error=error, where="protobuf: ")
            if size > end - pos:
                raise error(f"protobuf: field {number} runs past the end ({size} bytes, {end - pos} left)")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if width > end - pos:
                raise error(f"protobuf: truncated fixed-width field {number}")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        else:
            raise error(f"protobuf: unsupported wire type {wire} for field {number}")
        yield number, wire, value
