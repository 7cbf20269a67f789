"""Arrow columns from Python lists without ``pa.array()`` (and so without importing pandas).

``pyarrow.array()`` asks, on its first call in a process, whether the value is a pandas
object, and to answer it imports pandas when pandas is installed: ~0.3 s, a third of a
whole sync of 10,000 items. Here a column is first laid out as plain buffers in Python
(:class:`Buffers`: validity bitmap, int32 offsets, data — bytes, picklable, so a worker
process can make them) and then wrapped as an Arrow array without a copy
(:func:`to_array`), which DuckDB scans without holding the GIL. Values must already have
the right Python types (the callers check whole columns at once); ``None`` is NULL.

>>> to_array(string_buffers(["a", None])).to_pylist(), int32s([1, 2]).to_pylist()
(['a', None], [1, 2])
>>> to_array(string_list_buffers([["x", "y"], None, []])).to_pylist()
[['x', 'y'], None, []]
>>> to_array(float_list_buffers([[1, 2.5], None])).to_pylist()
[[1.0, 2.5], None]
>>> to_array(utf8_buffers([b'{"id":"x"}'])).to_pylist()
['{"id":"x"}']
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress
from typing import Any

import pyarrow as pa

from halodb.util.native import native

__all__ = [
    "Buffers", "false_in", "float_list_buffers", "int32s", "string_buffers", "string_list_buffers", "string_lists",
    "strings", "timestamps",
    "to_array", "utf8_buffers",
]  # fmt: skip

_TS = pa.timestamp("us", tz="UTC")
_TYPES = {"string": pa.string(), "float64": pa.float64()}


@dataclass(frozen=True)
class Buffers:
    """One Arrow column as plain bytes: ``kind`` "string", "float64" or "list" (of ``child``)."""

    kind: str
    length: int
    validity: bytes | None  #: bit i set = value i is not NULL; None = no NULLs
    offsets: bytes | None  #: int32 offsets (strings, lists)
    data: bytes | None  #: UTF-8 bytes (strings), float64 values
    child: Buffers | None = None  #: the values of a list column


def to_array(buffers: Buffers) -> pa.Array:
    """The Arrow array over ``buffers`` (no copy)."""
    validity = None if buffers.validity is None else pa.py_buffer(buffers.validity)
    if buffers.kind == "list":
        assert buffers.child is not None
        child = to_array(buffers.child)
        return pa.Array.from_buffers(
            pa.list_(child.type), buffers.length, [validity, pa.py_buffer(buffers.offsets)], children=[child]
        )
    if buffers.kind == "string":
        return pa.Array.from_buffers(
            pa.string(), buffers.length, [validity, pa.py_buffer(buffers.offsets), pa.py_buffer(buffers.data)]
        )
    return pa.Array.from_buffers(_TYPES[buffers.kind], buffers.length, [validity, pa.py_buffer(buffers.data)])


def _validity(values: Sequence[Any]) -> bytes | None:
    """The validity bitmap (bit i set = value i is not None), or None when nothing is None."""
    if None not in values:
        return None
    bits = bytearray((len(values) + 7) // 8)
    for i in compress(range(len(values)), [v is not None for v in values]):
        bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits)


def _offsets(lengths: Any) -> bytes:
    return array("i", accumulate(lengths, initial=0)).tobytes()


def utf8_buffers(values: Sequence[bytes]) -> Buffers:
    """A string column of text that is UTF-8 already (e.g. orjson output), without NULLs."""
    return Buffers("string", len(values), None, _offsets(map(len, values)), b"".join(values))


def string_buffers(values: Sequence[str | None]) -> Buffers:
    """A string column; raises AttributeError for a value that is neither str nor None.
    (A list is laid out by the compiled module when it is there: the same bytes.)"""
    module = native() if type(values) is list else None
    made = None if module is None else module.string_buffers(values)
    if made is not None:
        return Buffers("string", len(values), *made)
    validity = _validity(values)
    if validity is None:
        encoded = [v.encode() for v in values]  # type: ignore[union-attr]  # no None (validity)
    else:
        encoded = [b"" if v is None else v.encode() for v in values]
    return Buffers("string", len(values), validity, _offsets(map(len, encoded)), b"".join(encoded))


def _list_buffers(values: Sequence[list[Any] | None], child: Buffers) -> Buffers:
    validity = _validity(values)
    lengths = map(len, values) if validity is None else (0 if v is None else len(v) for v in values)  # type: ignore[arg-type]
    return Buffers("list", len(values), validity, _offsets(lengths), None, child)


def string_list_buffers(values: Sequence[list[str] | None]) -> Buffers:
    """A ``list<string>`` column; every element must be a str."""
    return _list_buffers(values, string_buffers(list(chain.from_iterable(filter(None, values)))))


def float_list_buffers(values: Sequence[list[float | int] | None]) -> Buffers:
    """A ``list<double>`` column; every element must be an int or a float."""
    flat = array("d", chain.from_iterable(filter(None, values)))
    return _list_buffers(values, Buffers("float64", len(flat), None, None, flat.tobytes()))


def string_lists(values: Sequence[list[str] | None]) -> pa.Array:
    """A ``list<string>`` array."""
    return to_array(string_list_buffers(values))


def strings(values: Sequence[str | None]) -> pa.Array:
    """A UTF-8 string array."""
    return to_array(string_buffers(values))


def int32s(values: Sequence[int]) -> pa.Array:
    """An int32 array without NULLs."""
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(array("i", values))])


def false_in(length: int, ranges: Sequence[tuple[int, int]]) -> pa.Array:
    """A boolean array of ``length`` values: false in the rows of ``ranges`` (``(first, count)``
    each), NULL elsewhere; built a byte at a time, not a value at a time.

    >>> false_in(10, [(1, 2), (8, 5)]).to_pylist()
    [None, False, False, None, None, None, None, None, False, False]
    """
    valid = bytearray((length + 7) // 8)
    for first, count in ranges:
        end = min(first + count, length)
        while first < end and first % 8:  # the bits before the first whole byte
            valid[first >> 3] |= 1 << (first & 7)
            first += 1
        whole = (end - first) // 8
        valid[first >> 3:(first >> 3) + whole] = b"\xff" * whole
        for at in range(first + whole * 8, end):  # the bits after the last whole byte
            valid[at >> 3] |= 1 << (at & 7)
    values = pa.py_buffer(bytes((length + 7) // 8))
    return pa.Array.from_buffers(pa.bool_(), length, [pa.py_buffer(bytes(valid)), values])


def timestamps(micros: Sequence[int]) -> pa.Array:
    """A ``timestamp[us, UTC]`` array from microseconds since the epoch, without NULLs.

    >>> timestamps([0]).to_pylist()[0].isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return pa.Array.from_buffers(_TS, len(micros), [None, pa.py_buffer(array("q", micros))])
