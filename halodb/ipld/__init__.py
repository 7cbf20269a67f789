"""IPLD layer: CIDs, DAG-CBOR encode/decode, block verification, varints and protobuf.

Owns how a block is named, encoded and checked against its CID. May import only
:mod:`halodb.util` and :mod:`halodb.errors`: never the block stores or anything above,
nor DuckDB, Arrow, Zarr, NumPy, pydantic or pystac.

>>> from halodb.ipld import CID, encode, decode, make_block
>>> cid, data = make_block({"hello": "world"})
>>> decode(data) == {"hello": "world"} and cid.verify(data)
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halodb.errors import VerificationError
from halodb.ipld.cid import CID, DAG_CBOR, DAG_PB, RAW, SHA2_256

if TYPE_CHECKING:
    from halodb.ipld.codec import decode, decode_reference, encode, encode_reference

# The codec (dag_cbor and multiformats' tables, ~40 ms) loads on first use: naming a block
# by its CID does not need it, and `halodb at` on a synced name never decodes one.
_CODEC = frozenset({"decode", "decode_reference", "encode", "encode_reference"})


def __getattr__(name: str) -> Any:
    if name in _CODEC:
        from halodb.ipld import codec

        value = getattr(codec, name)
        globals()[name] = value  # once loaded, a plain module attribute
        return value
    raise AttributeError(f"module 'halodb.ipld' has no attribute {name!r}")

__all__ = [
    "CID",
    "DAG_CBOR",
    "DAG_PB",
    "RAW",
    "SHA2_256",
    "block_links",
    "decode",
    "decode_reference",
    "encode",
    "encode_reference",
    "make_block",
    "verify_block",
]


def make_block(value: Any) -> tuple[CID, bytes]:
    """Encode ``value`` as DAG-CBOR and return ``(cid, bytes)``."""
    from halodb.ipld.codec import encode

    data = encode(value)
    return CID.for_bytes(data, DAG_CBOR), data


_TAG42 = b"\xd8\x2a"  # CBOR tag 42, which every DAG-CBOR link starts with


def block_links(cid: CID, data: bytes) -> list[CID]:
    """The CIDs a DAG-CBOR block links to, in document order (none for other codecs).

    >>> leaf, _ = make_block("leaf")
    >>> cid, data = make_block({"a": [leaf, 1], "b": leaf})
    >>> block_links(cid, data) == [leaf, leaf]
    True
    """
    if cid.codec != DAG_CBOR or _TAG42 not in data:
        return []
    from halodb.ipld.codec import decode

    out: list[CID] = []
    stack: list[Any] = [decode(data, cid=cid)]
    while stack:
        v = stack.pop()
        if isinstance(v, CID):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
    return out


def verify_block(cid: CID, data: bytes | memoryview, source: str = "") -> None:
    """Raise :class:`~halodb.errors.VerificationError` unless ``data`` hashes to ``cid``."""
    if not cid.verify(data):
        where = f" from {source}" if source else ""
        raise VerificationError(
            f"block{where} does not match its CID {cid}: the bytes are corrupt or were substituted",
            cid=cid,
            source=source,
        )
