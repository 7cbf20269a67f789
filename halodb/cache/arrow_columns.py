"""Arrow columns from Python lists without ``pa.array()`` (and so without importing pandas).

``pyarrow.array()`` asks, on its first call in a process, whether the value is a pandas
object, and to answer it imports pandas when pandas is installed: ~0.3 s, a third of a
whole sync of 10,000 items. The builders here make the same arrays from buffers
(``array.array`` for numbers, pyarrow's ``StringBuilder`` for text), which DuckDB then
scans without holding the GIL. Values must already have the right Python types (the
callers check whole columns at once); ``None`` is NULL.

>>> strings(["a", None]).to_pylist(), int32s([1, 2]).to_pylist()
(['a', None], [1, 2])
>>> string_lists([["x", "y"], None, []]).to_pylist()
[['x', 'y'], None, []]
>>> float_lists([[1, 2.5], None]).to_pylist()
[[1.0, 2.5], None]
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import accumulate, chain, compress
from typing import Any

import pyarrow as pa

__all__ = ["float_lists", "int32s", "string_lists", "strings", "timestamps"]

_TS = pa.timestamp("us", tz="UTC")


def strings(values: Sequence[str | None]) -> pa.Array:
    """A UTF-8 string array; raises TypeError for a value that is neither str nor None."""
    builder = pa.lib.StringBuilder()
    builder.append_values(values)
    array_ = builder.finish()
    assert isinstance(array_, pa.Array)
    return array_


def int32s(values: Sequence[int]) -> pa.Array:
    """An int32 array without NULLs."""
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(array("i", values))])


def timestamps(micros: Sequence[int]) -> pa.Array:
    """A ``timestamp[us, UTC]`` array from microseconds since the epoch, without NULLs.

    >>> timestamps([0]).to_pylist()[0].isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    return pa.Array.from_buffers(_TS, len(micros), [None, pa.py_buffer(array("q", micros))])


def _validity(values: Sequence[Any]) -> pa.Buffer | None:
    """The validity bitmap (bit i set = value i is not None), or None when nothing is None."""
    present = [v is not None for v in values]
    if all(present):
        return None
    bits = bytearray((len(values) + 7) // 8)
    for i in compress(range(len(values)), present):
        bits[i >> 3] |= 1 << (i & 7)
    return pa.py_buffer(bytes(bits))


def _lists(values: Sequence[list[Any] | None], child: pa.Array) -> pa.Array:
    offsets = array("i", accumulate((0 if v is None else len(v) for v in values), initial=0))
    return pa.Array.from_buffers(
        pa.list_(child.type), len(values), [_validity(values), pa.py_buffer(offsets)], children=[child]
    )


def string_lists(values: Sequence[list[str] | None]) -> pa.Array:
    """A ``list<string>`` array; every element must be a str."""
    return _lists(values, strings(list(chain.from_iterable(filter(None, values)))))


def float_lists(values: Sequence[list[float | int] | None]) -> pa.Array:
    """A ``list<double>`` array; every element must be an int or a float."""
    flat = array("d", chain.from_iterable(filter(None, values)))
    return _lists(values, pa.Array.from_buffers(pa.float64(), len(flat), [None, pa.py_buffer(flat)]))
