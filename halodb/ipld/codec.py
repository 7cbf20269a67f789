"""DAG-CBOR encode and decode: libipld on the hot path, dag-cbor as the reference.

libipld (Rust) is about 100x faster than the pure-Python ``dag-cbor`` package, but its
data model is lossy at one point: it decodes links (tag 42) to plain ``bytes`` and encodes
any ``bytes`` value that parses as a CID as a link. This module wraps it so that

* links always surface as :class:`~halodb.ipld.cid.CID` objects, and
* raw ``bytes`` values never reach libipld's encoder (they go to the reference codec).

A decoded block that contains tag 42 is checked by re-encoding it: when the bytes come back
identical, the interpretation of every ``bytes`` value as a link is proven right; otherwise
the reference decoder is used. Values without links take the fast path untouched.

Both paths encode ``-0.0`` as ``0.0`` and :func:`decode` rejects a negative zero, as the
DAG-CBOR spec requires since ipld/ipld#380 (the dag-cbor 0.3 package predates that rule).

>>> from halodb.ipld.cid import CID
>>> link = CID.for_bytes(b"x", codec=0x55)
>>> decode(encode({"a": [1, link], "b": b"raw"})) == {"a": [1, link], "b": b"raw"}
True
"""

from __future__ import annotations

import math
from typing import Any

import dag_cbor
import libipld
from dag_cbor.encoding.err import CBORError
from multiformats import CID as _MFCID

from halodb.errors import DecodeError, EncodeError
from halodb.ipld.cid import CID

_TAG42 = b"\xd8\x2a"


_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1


def _to_libipld(value: Any, path: str, raw: list[str]) -> Any:
    """Validate ``value`` and convert its links for libipld.

    The whole value is always walked, so an error carries the path of the bad value even
    when the value also holds raw bytes; the path of every raw ``bytes`` value is appended
    to ``raw`` (libipld cannot be trusted to encode those, see the module docstring).
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise EncodeError(
            f"DAG-CBOR integers must lie in [-2**64, 2**64-1], got {value} at {path or '/'}",
            path=path or "/",
        )
    if t is float:
        if not math.isfinite(value):
            raise EncodeError(f"DAG-CBOR cannot encode the float {value!r} at {path or '/'}", path=path or "/")
        return value
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise EncodeError(
                    f"DAG-CBOR map keys must be strings, got {type(k).__name__} {k!r} at {path or '/'}",
                    path=path or "/",
                )
            out[k] = _to_libipld(v, f"{path}/{k}", raw)
        return out
    if t is list or t is tuple:
        return [_to_libipld(v, f"{path}/{i}", raw) for i, v in enumerate(value)]
    if t is CID:
        return value.buffer
    if t is bytes or t is bytearray:
        raw.append(path or "/")
        return value
    if isinstance(value, CID):
        return value.buffer
    raise EncodeError(
        f"cannot encode a {type(value).__name__} as DAG-CBOR at {path or '/'}", path=path or "/"
    )


def _to_reference(value: Any) -> Any:
    if isinstance(value, CID):
        return _MFCID.decode(value.buffer)
    if isinstance(value, dict):
        return {k: _to_reference(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_reference(v) for v in value]
    if isinstance(value, bytearray):
        return bytes(value)
    if type(value) is float and value == 0.0:
        return 0.0  # DAG-CBOR encodes -0.0 as 0.0 (ipld/ipld#380), like libipld does
    return value


def _from_reference(value: Any) -> Any:
    if isinstance(value, _MFCID):
        return CID(bytes(value))
    if isinstance(value, dict):
        return {k: _from_reference(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_reference(v) for v in value]
    return value


def encode(value: Any) -> bytes:
    """Encode a data-model value (dict/list/str/int/float/bool/None/bytes/CID) as DAG-CBOR.

    Raises :class:`~halodb.errors.EncodeError` with ``.path`` pointing at the bad value.
    """
    raw: list[str] = []
    prepared = _to_libipld(value, "", raw)
    if raw:
        return encode_reference(value)
    try:
        return bytes(libipld.encode_dag_cbor(prepared))
    except (ValueError, TypeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode value as DAG-CBOR: {exc}", path="/") from None


def encode_reference(value: Any) -> bytes:
    """Encode with the pure-Python reference codec (slow; exact for every value)."""
    try:
        return bytes(dag_cbor.encode(_to_reference(value)))
    except (CBORError, ValueError, TypeError, OverflowError) as exc:
        raise EncodeError(f"cannot encode value as DAG-CBOR: {exc}", path="/") from None


def _is_link(value: bytes) -> bool:
    """Whether libipld's encoder would write these bytes as a link (its own CID parser decides)."""
    try:
        libipld.decode_cid(value)
    except ValueError:
        return False
    return True


def _links_in_place(value: Any) -> Any:
    """Turn every ``bytes`` that libipld takes for a CID into a :class:`CID`, in place."""
    t = type(value)
    if t is dict or t is list:
        for k, v in value.items() if t is dict else enumerate(value):  # values replaced, keys kept
            tv = type(v)
            if tv is bytes:
                if _is_link(v):
                    value[k] = CID(v)
            elif tv is dict or tv is list:
                _links_in_place(v)
    elif t is bytes and _is_link(value):
        return CID(value)
    return value


def decode(data: bytes, *, cid: CID | None = None) -> Any:
    """Decode one DAG-CBOR block; links come back as :class:`CID`.

    Raises :class:`~halodb.errors.DecodeError` (with ``.cid`` when given) for anything a
    strict DAG-CBOR decoder must reject.
    """
    try:
        value = libipld.decode_dag_cbor(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"invalid DAG-CBOR{_where(cid)}: {exc}", cid=cid) from None
    if _TAG42 not in data:
        return value  # no link anywhere: every bytes value is raw bytes
    # libipld encodes exactly the bytes values its CID parser accepts as links. If that
    # re-encoding reproduces the block, those values were links and all others raw bytes.
    try:
        same = bytes(libipld.encode_dag_cbor(value)) == bytes(data)
    except (ValueError, TypeError, OverflowError):
        same = False
    if not same:
        return decode_reference(data, cid=cid)
    return _links_in_place(value)


def decode_reference(data: bytes, *, cid: CID | None = None) -> Any:
    """Decode with the pure-Python reference codec (slow; exact for every block)."""
    try:
        return _from_reference(dag_cbor.decode(bytes(data)))
    except (CBORError, ValueError, TypeError) as exc:
        raise DecodeError(f"invalid DAG-CBOR{_where(cid)}: {exc}", cid=cid) from None


def _where(cid: CID | None) -> str:
    return f" in block {cid}" if cid is not None else ""
