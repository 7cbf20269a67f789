"""IPLD layer: CIDs, DAG-CBOR, and block verification.

>>> from halodb.ipld import CID, encode, decode, make_block
>>> cid, data = make_block({"hello": "world"})
>>> decode(data) == {"hello": "world"} and cid.verify(data)
True
"""

from __future__ import annotations

from typing import Any

from halodb.errors import VerificationError
from halodb.ipld.cid import CID, DAG_CBOR, DAG_PB, RAW, SHA2_256
from halodb.ipld.codec import decode, decode_reference, encode, encode_reference

__all__ = [
    "CID",
    "DAG_CBOR",
    "DAG_PB",
    "RAW",
    "SHA2_256",
    "decode",
    "decode_reference",
    "encode",
    "encode_reference",
    "make_block",
    "verify_block",
]


def make_block(value: Any) -> tuple[CID, bytes]:
    """Encode ``value`` as DAG-CBOR and return ``(cid, bytes)``."""
    data = encode(value)
    return CID.for_bytes(data, DAG_CBOR), data


def verify_block(cid: CID, data: bytes, source: str = "") -> None:
    """Raise :class:`~halodb.errors.VerificationError` unless ``data`` hashes to ``cid``."""
    if not cid.verify(data):
        where = f" from {source}" if source else ""
        raise VerificationError(
            f"block{where} does not match its CID {cid}: the bytes are corrupt or were substituted",
            cid=cid,
            source=source,
        )
