"""DAG-CBOR encode and decode: libipld on the hot path, dag-cbor as the reference.

libipld (Rust) is about 100x faster than the pure-Python ``dag-cbor`` package, but its
data model is lossy at one point: it decodes links (tag 42) to plain ``bytes`` and encodes
any ``bytes`` value that parses as a CID as a link. This module wraps it so that

* links always surface as :class:`~halodb.ipld.cid.CID` objects, and
* raw ``bytes`` values that libipld might read as a CID never reach its encoder (they go
  to the reference codec). A CID's binary form begins with ``0x01`` (version 1) or
  ``0x12`` (a version-0 sha2-256 multihash): libipld reads a version varint, which is 1
  only as the byte ``0x01`` (it refuses non-minimal varints), else the pair ``0x12 0x20``.
  Bytes beginning with any other byte (or empty) cannot be one, and libipld encodes them
  as bytes, exactly as the reference codec does; the DAG-CBOR of a STAC item, a map, begins
  with ``0xa0``–``0xbb``, so the leaves of index format 3, which hold items inline, take
  the fast path (the reference codec is ~100x slower and leaves reference cycles behind
  for the garbage collector, which bulk work pauses).

A decoded block that contains tag 42 is checked by re-encoding it: when the bytes come back
identical, the interpretation of every ``bytes`` value as a link is proven right; otherwise
the reference decoder is used. Values without links take the fast path untouched.

The two agree on every block but one kind: a link whose multicodec or multihash code is
missing from the ``multiformats`` tables the reference codec looks codes up in (an unknown
hash function, say). libipld, like :class:`~halodb.ipld.cid.CID`, reads any well-formed CID,
so :func:`decode` takes such a link; :func:`decode_reference` and :func:`encode_reference`
cannot represent it and refuse it with a ``DecodeError`` / ``EncodeError``
(:mod:`halodb.ipld._boundary`), never with multiformats' own ``KeyError``.

Both paths encode ``-0.0`` as ``0.0`` and :func:`decode` rejects a negative zero, as the
DAG-CBOR spec requires since ipld/ipld#380 (the dag-cbor 0.3 package predates that rule).

Bounds (:mod:`halodb.ipld.limits`), the same both ways: maps and lists nest at most
``MAX_NESTING`` deep, integers lie in the 64-bit DAG-CBOR range, and a block holds at most
``MAX_BLOCK_SIZE`` bytes. :func:`encode` refuses a value outside them (``EncodeError`` with
the path), :func:`decode` a block outside them (``DecodeError`` with the CID), never a
``RecursionError`` (libipld raises one from about 1,000 levels; the reference codec too).
Integers need no check on decode: CBOR's major types 0 and 1 cannot exceed the range and
bignums (tags 2 and 3) are not DAG-CBOR.

>>> from halodb.ipld.cid import CID
>>> link = CID.for_bytes(b"x", codec=0x55)
>>> decode(encode({"a": [1, link], "b": b"raw"})) == {"a": [1, link], "b": b"raw"}
True
"""

from __future__ import annotations

import math
from itertools import accumulate, repeat
from typing import Any

import libipld

from halodb.errors import CIDError, DecodeError, EncodeError
from halodb.ipld.cid import CID
from halodb.ipld.limits import MAX_BLOCK_SIZE, MAX_INT, MAX_NESTING, MIN_INT

__all__ = ["cbor_head", "decode", "decode_each", "decode_reference", "encode", "encode_json", "encode_reference",
           "encode_shallow", "nesting_exceeded"]

_TAG42 = b"\xd8\x2a"
#: the first byte of every CBOR array (major type 4) or map (major type 5) header
_CONTAINER_HEADS = bytes(range(0x80, 0xC0))
#: a byte translation marking container headers 1 (and every other byte 0), for counting them per block in a batch
_HEAD_MARKS = bytes(1 if 0x80 <= b < 0xC0 else 0 for b in range(256))
#: the first bytes of every binary CID libipld reads (see the module docstring): raw bytes
#: beginning with one of them go to the reference encoder
_CID_FIRST_BYTES = frozenset({b"\x01", b"\x12"})


def nesting_exceeded(value: Any, limit: int = MAX_NESTING) -> list[str | int] | None:
    """Where ``value`` nests maps and lists deeper than ``limit``: the path (keys and list
    indices) to the first container past it, or None when it stays within.

    >>> nesting_exceeded({"a": [[1]]}, 2)
    ['a', 0]
    >>> nesting_exceeded({"a": [[1]]}, 3) is None
    True
    """
    t = type(value)
    if t is not dict and t is not list:
        return None
    if limit <= 0:
        return []
    if not _deeper(value, limit):
        return None
    return _deep_path(value, limit)


def _deeper(value: Any, room: int) -> bool:
    """Whether the container ``value`` holds containers more than ``room`` levels deep
    (itself counted); recurses at most ``room`` levels."""
    room -= 1
    for x in value.values() if type(value) is dict else value:
        tx = type(x)
        if (tx is dict or tx is list) and (room == 0 or _deeper(x, room)):
            return True
    return False


def _deep_path(value: Any, room: int) -> list[str | int]:
    """The path to the first container past ``room`` levels (``_deeper`` said there is one)."""
    path: list[str | int] = []
    while room > 0:
        room -= 1
        for k, x in value.items() if type(value) is dict else enumerate(value):
            tx = type(x)
            if (tx is dict or tx is list) and (room == 0 or _deeper(x, room)):
                path.append(k)
                value = x
                break
    return path


def _slash_path(parts: list[str | int]) -> str:
    return "/" + "/".join(map(str, parts))


def _short(path: str) -> str:
    """A path for a one-line message: the middle of a long one elided."""
    return path if len(path) <= 60 else f"{path[:40]}...{path[-16:]}"


def _check_decoded(value: Any, data: bytes, cid: CID | None) -> None:
    """Refuse a decoded block that nests deeper than MAX_NESTING.

    A block with at most MAX_NESTING container headers cannot nest deeper, and counting
    their first bytes is a C-speed pass: most blocks never need the walk."""
    if len(data) - len(data.translate(None, _CONTAINER_HEADS)) <= MAX_NESTING:
        return
    found = nesting_exceeded(value)
    if found is not None:
        raise DecodeError(
            f"block{_where(cid)} nests maps and lists deeper than {MAX_NESTING} levels (at {_short(_slash_path(found))})",
            cid=cid,
        )


def _check_size(data: bytes, cid: CID | None) -> None:
    if len(data) > MAX_BLOCK_SIZE:
        raise DecodeError(
            f"block{_where(cid)} is {len(data)} bytes, more than the {MAX_BLOCK_SIZE} a block may hold", cid=cid
        )


def _too_deep(path: str) -> EncodeError:
    return EncodeError(
        f"cannot encode maps and lists nested deeper than {MAX_NESTING} levels (at {_short(path)})", path=path
    )


def _to_libipld(value: Any, path: str, raw: list[str], depth: int = 0) -> Any:
    """Validate ``value`` and convert its links for libipld.

    The whole value is always walked, so an error carries the path of the bad value even
    when the value also holds raw bytes; the path of every raw ``bytes`` value libipld
    might read as a CID is appended to ``raw`` (it cannot be trusted to encode those, see
    the module docstring).
    ``depth`` is the number of maps and lists around ``value``.
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if MIN_INT <= value <= MAX_INT:
            return value
        text = str(value) if abs(value) < 10**60 else f"an integer of {value.bit_length()} bits"
        raise EncodeError(
            f"DAG-CBOR integers must lie in [-2**64, 2**64-1], got {text} at {path or '/'}",
            path=path or "/",
        )
    if t is float:
        if not math.isfinite(value):
            raise EncodeError(f"DAG-CBOR cannot encode the float {value!r} at {path or '/'}", path=path or "/")
        return value
    if t is dict:
        if depth >= MAX_NESTING:
            raise _too_deep(path or "/")
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise EncodeError(
                    f"DAG-CBOR map keys must be strings, got {type(k).__name__} {k!r} at {path or '/'}",
                    path=path or "/",
                )
            out[k] = _to_libipld(v, f"{path}/{k}", raw, depth + 1)
        return out
    if t is list or t is tuple:
        if depth >= MAX_NESTING:
            raise _too_deep(path or "/")
        return [_to_libipld(v, f"{path}/{i}", raw, depth + 1) for i, v in enumerate(value)]
    if t is CID:
        return value.buffer
    if t is bytes:
        if value[:1] in _CID_FIRST_BYTES:
            raw.append(path or "/")
        return value
    if t is bytearray:  # (the reference codec takes it as bytes)
        raw.append(path or "/")
        return value
    if isinstance(value, CID):
        return value.buffer
    raise EncodeError(
        f"cannot encode a {type(value).__name__} as DAG-CBOR at {path or '/'}", path=path or "/"
    )


# The reference codec (dag-cbor, and multiformats under it: ~30 ms to import) is imported
# on its first use: most blocks never need it, and a short command should not pay for it.

def _to_reference(value: Any) -> Any:
    from multiformats import CID as _MFCID

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
    from multiformats import CID as _MFCID

    if isinstance(value, _MFCID):
        return CID(bytes(value))
    if isinstance(value, dict):
        return {k: _from_reference(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_reference(v) for v in value]
    return value


def encode(value: Any) -> bytes:
    """Encode a data-model value (dict/list/str/int/float/bool/None/bytes/CID) as DAG-CBOR.

    Raises :class:`~halodb.errors.EncodeError` with ``.path`` pointing at the bad value,
    also for a value outside the bounds (nesting, integers, block size).

    >>> encode([[[1]]])
    b'\\x81\\x81\\x81\\x01'
    """
    raw: list[str] = []
    prepared = _to_libipld(value, "", raw)
    if raw:
        return encode_reference(value)
    try:
        data = bytes(libipld.encode_dag_cbor(prepared))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode value as DAG-CBOR: {exc}", path="/") from None
    return _sized(data)


def encode_json(value: Any) -> bytes:
    """:func:`encode` of a value that holds JSON types only — string keys; str, int, float,
    bool, None, list, dict; no bytes, no links — already checked against the bounds (finite
    floats, 64-bit integers, nesting; :func:`halodb.stac.parse_item` does): libipld's
    encoder straight away, without the walk :func:`encode` makes to find links and raw
    bytes (half the cost of storing a STAC item). For such a value the two agree byte for
    byte (``tests/test_ipld.py``); anything libipld refuses goes to :func:`encode`, which
    says what is wrong.

    >>> encode_json({"b": [1, -0.0, "x"], "a": None}) == encode({"b": [1, -0.0, "x"], "a": None})
    True
    """
    try:
        data = bytes(libipld.encode_dag_cbor(value))
    except (ValueError, TypeError, OverflowError, RecursionError):
        return encode(value)
    return _sized(data)


def encode_shallow(value: Any) -> bytes:
    """:func:`encode` of a tree entry's value (a string, null, link, or a map of strings,
    links and bytes, as :class:`~halodb.index.model.Entry` writes one) without the walk
    :func:`encode` makes of any value: its links are converted for libipld in one shallow
    pass. Any value of another shape, or raw bytes libipld might take for a link, goes to
    :func:`encode`: the bytes are always :func:`encode`'s (``tests/test_ipld.py``).

    >>> link = CID.for_bytes(b"x")
    >>> encode_shallow({"item": link, "path": "p"}) == encode({"item": link, "path": "p"})
    True
    """
    t = type(value)
    if t is str or value is None:
        prepared: Any = value
    elif t is CID:
        prepared = value.buffer
    elif t is dict:
        prepared = {}
        for k, v in value.items():
            tv = type(v)
            if type(k) is not str or not (tv is str or v is None or tv is CID
                                          or (tv is bytes and v[:1] not in _CID_FIRST_BYTES)):
                return encode(value)
            prepared[k] = v.buffer if tv is CID else v
    else:
        return encode(value)
    try:
        data = bytes(libipld.encode_dag_cbor(prepared))
    except (ValueError, TypeError, OverflowError):
        return encode(value)  # (says what is wrong)
    return _sized(data)


def cbor_head(major: int, n: int) -> bytes:
    """The shortest CBOR head of major type ``major`` with argument ``n`` (DAG-CBOR's only
    form): what begins a string of ``n`` bytes (3), an array (4) or a map (5) of ``n``
    items, or is the unsigned integer ``n`` (0). Used to write a tree node from its
    entries' encodings (:mod:`halodb.index.prolly`).

    >>> cbor_head(4, 3), cbor_head(3, 24), cbor_head(0, 70000)
    (b'\\x83', b'x\\x18', b'\\x1a\\x00\\x01\\x11p')
    """
    top = major << 5
    if n < 24:
        return bytes((top | n,))
    if n < 0x100:
        return bytes((top | 24, n))
    if n < 0x10000:
        return bytes((top | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((top | 26,)) + n.to_bytes(4, "big")
    return bytes((top | 27,)) + n.to_bytes(8, "big")


def encode_reference(value: Any) -> bytes:
    """Encode with the pure-Python reference codec (slow; exact for every value)."""
    import dag_cbor
    from dag_cbor.encoding.err import CBORError

    from halodb.ipld._boundary import MULTIFORMATS_ENCODE

    found = nesting_exceeded(value)
    if found is not None:
        raise _too_deep(_slash_path(found))
    try:
        data = bytes(dag_cbor.encode(_to_reference(value)))
    except MULTIFORMATS_ENCODE.caught as exc:  # a link that is malformed, or whose codes multiformats lacks (a KeyError)
        raise MULTIFORMATS_ENCODE.translate(
            exc, "cannot encode value with the reference DAG-CBOR codec: a link in it is not a CID it can"
                 f" write ({_detail(exc)})", path="/") from None
    except (CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodeError(f"cannot encode value as DAG-CBOR: {exc}", path="/") from None
    return _sized(data)


def _sized(data: bytes) -> bytes:
    if len(data) > MAX_BLOCK_SIZE:
        raise EncodeError(
            f"the DAG-CBOR encoding is {len(data)} bytes, more than the {MAX_BLOCK_SIZE} a block may hold", path="/"
        )
    return data


def _is_link(value: bytes) -> bool:
    """Whether libipld's encoder would write these bytes as a link (its own CID parser decides)."""
    try:
        libipld.decode_cid(value)
    except ValueError:
        return False
    return True


def _links_in_place(value: Any) -> Any:
    """Turn every ``bytes`` that libipld takes for a CID into a :class:`CID`, in place;
    :class:`~halodb.errors.CIDError` for one that is not a whole CID."""
    t = type(value)
    if t is dict or t is list:
        for k, v in value.items() if t is dict else enumerate(value):  # values replaced, keys kept
            tv = type(v)
            if tv is bytes:
                if _is_link(v):
                    value[k] = _whole_cid(v)
            elif tv is dict or tv is list:
                _links_in_place(v)
    elif t is bytes and _is_link(value):
        return _whole_cid(value)
    return value


def _whole_cid(buf: bytes) -> CID:
    """``buf`` as a CID, if it is exactly one: libipld's CID parser stops after the multihash
    its header announces and ignores any bytes left over (``01 00 39 00`` and 19 more bytes
    reads as a CID with an empty digest), which ``CID.parse`` and the reference decoder refuse."""
    if len(buf) == 36 and buf[0] == 0x01 and buf[1] < 0x80 and buf[2] == 0x12 and buf[3] == 0x20:
        return CID(buf)  # the common case, whole: CIDv1, a one-byte codec, sha2-256
    return CID.parse(buf)  # anything else is checked in full


def decode(data: bytes, *, cid: CID | None = None) -> Any:
    """Decode one DAG-CBOR block; links come back as :class:`CID`.

    Raises :class:`~halodb.errors.DecodeError` (with ``.cid`` when given) for anything a
    strict DAG-CBOR decoder must reject, and for a block outside the bounds (larger than
    ``MAX_BLOCK_SIZE``, nested deeper than ``MAX_NESTING``).
    """
    _check_size(data, cid)
    try:
        value = libipld.decode_dag_cbor(data)
    except RecursionError:
        raise DecodeError(
            f"block{_where(cid)} nests maps and lists deeper than {MAX_NESTING} levels", cid=cid
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"invalid DAG-CBOR{_where(cid)}: {exc}", cid=cid) from None
    _check_decoded(value, data, cid)
    # libipld's decoder is lenient (it takes e.g. non-minimal integers and unsorted keys), its
    # encoder canonical: a block that re-encodes to itself is strict DAG-CBOR, and any other
    # goes to the strict reference decoder, which says what is wrong. Re-encoding costs ~1 us
    # for an item block. libipld also encodes exactly the bytes values its CID parser accepts
    # as links: the same re-encoding tells those values were links and all others raw bytes.
    try:
        same = bytes(libipld.encode_dag_cbor(value)) == bytes(data)
    except (ValueError, TypeError, OverflowError):
        same = False
    if not same:
        return decode_reference(data, cid=cid)
    if _TAG42 not in data:
        return value  # no link anywhere: every bytes value is raw bytes
    try:
        return _links_in_place(value)
    except CIDError as exc:  # a link with bytes left over after its multihash
        raise DecodeError(f"invalid DAG-CBOR{_where(cid)}: a link is not a valid CID: {exc}", cid=cid) from None


def _array_head(n: int) -> bytes:
    """The canonical CBOR head of an array of ``n`` elements.

    >>> _array_head(3), _array_head(24), _array_head(70000)
    (b'\\x83', b'\\x98\\x18', b'\\x9a\\x00\\x01\\x11p')
    """
    if n < 24:
        return bytes((0x80 + n,))
    for head, size in ((0x98, 1), (0x99, 2), (0x9A, 4)):
        if n < 1 << (8 * size):
            return bytes((head,)) + n.to_bytes(size, "big")
    return b"\x9b" + n.to_bytes(8, "big")


def decode_each(blocks: list[bytes]) -> list[Any]:
    """:func:`decode` of each of ``blocks``, in order: its value, or the :class:`DecodeError`
    it raises (returned in its place, not raised). The same answers, faster for a batch of
    small blocks (the STAC items of a sync batch): the work is done a batch at a time, in C
    loops (``map``), not block by block in Python:

    * the whole batch is re-encoded at once: the blocks are canonical when the encoding of
      the list of values equals an array head followed by the blocks' bytes. That implies
      each block equals its own value's encoding, because a CBOR item's extent follows from
      its bytes and libipld refuses a block with bytes after its item: the first item of
      the joined bytes ends where the first block ends, and where the first encoding ends;
    * container headers are counted over the batch in one pass (``_check_decoded``'s
      filter), per block by range;
    * a block that holds a link (tag 42), is larger than ``MAX_BLOCK_SIZE`` or may nest too
      deep goes through :func:`decode` on its own; so does every block of a batch that
      libipld cannot decode whole, or that is not canonical as a whole.

    >>> from halodb.ipld.cid import CID
    >>> link = CID.for_bytes(b"x")
    >>> good, bad, linked = decode_each([encode({"a": 1}), b"\\x19\\x00\\x01", encode([link])])
    >>> good, type(bad).__name__, linked == [link]
    ({'a': 1}, 'DecodeError', True)
    """
    n = len(blocks)
    if not n:
        return []
    joined = b"".join(blocks)
    try:
        out = list(map(libipld.decode_dag_cbor, blocks))
        canonical = bytes(libipld.encode_dag_cbor(out)) == _array_head(n) + joined
    except (ValueError, TypeError, OverflowError, RecursionError):
        return list(map(_decode_or_error, blocks))
    if not canonical:
        return list(map(_decode_or_error, blocks))
    ends = list(accumulate(map(len, blocks)))
    starts = [0, *ends[:-1]]
    counts = list(map(joined.translate(_HEAD_MARKS).count, repeat(1, n), starts, ends))
    slow = max(counts) > MAX_NESTING or max(map(len, blocks)) > MAX_BLOCK_SIZE or _TAG42 in joined
    if slow:
        for i, data in enumerate(blocks):
            if counts[i] > MAX_NESTING or len(data) > MAX_BLOCK_SIZE or _TAG42 in data:
                out[i] = _decode_or_error(data)
    return out


def _decode_or_error(data: bytes) -> Any:
    """:func:`decode` of ``data``, or the DecodeError it raises."""
    try:
        return decode(data)
    except DecodeError as exc:
        return exc


def decode_reference(data: bytes, *, cid: CID | None = None) -> Any:
    """Decode with the pure-Python reference codec (slow; exact for every block)."""
    import dag_cbor
    from dag_cbor.encoding.err import CBORError

    from halodb.ipld._boundary import MULTIFORMATS_DECODE

    _check_size(data, cid)
    try:
        value = dag_cbor.decode(bytes(data))
    except RecursionError:
        raise DecodeError(
            f"block{_where(cid)} nests maps and lists deeper than {MAX_NESTING} levels", cid=cid
        ) from None
    except MULTIFORMATS_DECODE.caught as exc:  # a link that is malformed, or whose codes multiformats lacks (a KeyError)
        raise MULTIFORMATS_DECODE.translate(
            exc, f"cannot decode block{_where(cid)} with the reference DAG-CBOR codec: a link in it is not"
                 f" a CID it can read ({_detail(exc)})", cid=cid) from None
    except (CBORError, ValueError, TypeError, OverflowError) as exc:  # Overflow: a length past sys.maxsize
        raise DecodeError(f"invalid DAG-CBOR{_where(cid)}: {exc}", cid=cid) from None
    _check_decoded(value, bytes(data), cid)
    return _from_reference(value)


def _detail(exc: BaseException) -> str:
    """An exception's message without the quotes ``str`` puts around a KeyError's."""
    return str(exc.args[0]) if len(exc.args) == 1 else str(exc)


def _where(cid: CID | None) -> str:
    return f" in block {cid}" if cid is not None else ""
