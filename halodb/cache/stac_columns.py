"""STAC items to columns: the JSON text and the fields the cache pulls out of each item.

Extraction happens in Python (plain dict look-ups, one list per column, type checks over a
whole column at once), the columns become Arrow arrays (:mod:`halodb.cache.arrow_columns`,
which DuckDB scans without the GIL) and only the timestamp parsing is left to DuckDB
(``TRY_CAST`` in SQL). ``benchmarks/bench_cache_apply.py`` compares this with extracting
the fields in SQL with ``json_extract``. Extraction is lenient: a missing or wrongly typed
field becomes NULL. Every DAG-CBOR value within the bounds of :mod:`halodb.ipld.limits` can
be stored (integers below -2**63, which orjson refuses, go through the stdlib's encoder);
which item blocks are skipped is decided before, by the sync (:mod:`halodb.sync.items`),
and carried in :attr:`ItemColumns.skipped`.

>>> table = items_table(["bafyitem"], [{"id": "x", "bbox": [0, 1, 2, 3],
...                                    "properties": {"platform": "HALO", "instruments": "radar"}}])
>>> table.column("platform").to_pylist(), table.column("instruments").to_pylist()
(['HALO'], [None])
>>> table.column("item").to_pylist()
['{"id":"x","bbox":[0,1,2,3],"properties":{"platform":"HALO","instruments":"radar"}}']
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain
from typing import Any

import orjson
import pyarrow as pa

from halodb.cache.arrow_columns import (
    Buffers,
    float_list_buffers,
    string_buffers,
    string_list_buffers,
    to_array,
    utf8_buffers,
)
from halodb.errors import CacheError

__all__ = ["ITEM_COLUMNS", "ItemColumns", "columns_table", "encode_item", "item_columns", "items_table"]

#: the columns of :func:`items_table`; ``*_text`` are still strings (cast in SQL)
ITEM_COLUMNS = (
    "item_cid", "id", "collection", "datetime_text", "start_datetime_text", "end_datetime_text",
    "bbox", "platform", "instruments", "title", "keywords", "item",
)  # fmt: skip



@dataclass(frozen=True)
class ItemColumns:
    """One batch of items as column buffers (:data:`ITEM_COLUMNS`), what :func:`item_columns`
    makes: plain bytes, picklable (a worker process can make them), no Arrow yet.

    ``skipped``: the item CIDs of the batch that are not in the columns, with why (an item
    block that cannot be materialized); ``cids`` are the others, in the order asked."""

    cids: list[str]
    columns: dict[str, Buffers]
    skipped: dict[str, str] = field(default_factory=dict)


_JSON = pa.json_(pa.string())
_EMPTY: dict[str, Any] = {}
_NONE = type(None)
_STR_OR_NONE: set[type] = {str, _NONE}
_LIST_OR_NONE: set[type] = {list, _NONE}
_STR_ONLY: set[type] = {str}
_NUMBERS: set[type] = {float, int}


def _json_default(value: Any) -> Any:
    """Fallback for values JSON has no type for (CIDs, bytes, dates) — lenient, never fails."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"/": {"bytes": base64.b64encode(bytes(value)).decode("ascii").rstrip("=")}}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _dumps(item: Any) -> bytes:
    # orjson: ~4x faster than the json module on STAC items (benchmarks/bench_codec.py);
    # its UTF-8 bytes become the Arrow string column as they are
    return orjson.dumps(item, default=_json_default)


def encode_item(item: dict[str, Any]) -> str:
    """The compact JSON text of one STAC item (CIDs become strings, bytes DAG-JSON bytes).

    >>> encode_item({"id": "x", "properties": {"gsd": 0.5}})
    '{"id":"x","properties":{"gsd":0.5}}'
    """
    return _dumps(item).decode()


def _dumps_slow(item: Any) -> bytes:
    """The stdlib's encoder: slower, but it writes integers orjson refuses (below -2**63, which
    DAG-CBOR allows down to -2**64). Only for those: it would also turn int keys into text.

    >>> _dumps_slow({"n": -2**64})
    b'{"n":-18446744073709551616}'
    """
    return json.dumps(item, default=_json_default, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def _encode_all(cids: Sequence[str], items: Sequence[dict[str, Any]]) -> list[bytes]:
    try:
        return list(map(_dumps, items))
    except (TypeError, ValueError, RecursionError):
        pass
    out: list[bytes] = []
    for cid, item in zip(cids, items):  # slow path: item by item
        try:
            out.append(_dumps(item))
        except (TypeError, ValueError, RecursionError) as exc:
            if "Integer exceeds 64-bit range" not in str(exc):  # not a DAG-CBOR value (e.g. int keys)
                raise CacheError(f"STAC item {cid} cannot be stored as JSON: {exc}", cid=cid) from exc
            out.append(_dumps_slow(item))
    return out


def _types(values: Iterable[Any]) -> set[type]:
    return set(map(type, values))


def _strings(values: list[Any]) -> list[str | None]:
    """``values`` with everything that is not a str as None.

    >>> _strings(["a", None, 3, ["b"]])
    ['a', None, None, None]
    """
    if not _types(values) <= _STR_OR_NONE:  # one C-level pass over the column in the common case
        values = [v if type(v) is str else None for v in values]
    return values


def _lists_of(values: list[Any], allowed: set[type]) -> list[Any]:
    """``values`` with everything that is not a list of elements of the ``allowed`` types as None."""
    if not _types(values) <= _LIST_OR_NONE:  # a str would become a list of chars
        values = [v if type(v) is list else None for v in values]
    if not _types(chain.from_iterable(filter(None, values))) <= allowed:
        values = [v if v is not None and _types(v) <= allowed else None for v in values]
    return values


def item_columns(cids: Sequence[str], items: Sequence[dict[str, Any]]) -> ItemColumns:
    """The columns :data:`ITEM_COLUMNS` of a batch of STAC items.

    Lists of strings (``instruments``, ``keywords``) must hold only strings and ``bbox``
    only numbers (not booleans), else the whole value is NULL.

    >>> table = columns_table(item_columns(["c1", "c2"], [
    ...     {"properties": {"datetime": "2024-09-01T00:00:00Z"}},
    ...     {"bbox": [1, True], "properties": {"keywords": ["a", 1]}}]))
    >>> [table.column(c).to_pylist() for c in ("datetime_text", "bbox", "keywords")]
    [['2024-09-01T00:00:00Z', None], [None, None], [None, None]]
    """
    for cid, item in zip(cids, items):
        if not isinstance(item, dict):
            raise CacheError(f"STAC item {cid} is a {type(item).__name__}, not a JSON object", cid=cid)
    texts = _encode_all(cids, items)
    props = [p if type(p) is dict else _EMPTY for p in (it.get("properties") for it in items)]
    cids = list(cids)
    columns = {
        "item_cid": string_buffers(cids),
        "id": string_buffers(_strings([it.get("id") for it in items])),
        "collection": string_buffers(_strings([it.get("collection") for it in items])),
        "datetime_text": string_buffers(_strings([p.get("datetime") for p in props])),
        "start_datetime_text": string_buffers(_strings([p.get("start_datetime") for p in props])),
        "end_datetime_text": string_buffers(_strings([p.get("end_datetime") for p in props])),
        "bbox": float_list_buffers(_lists_of([it.get("bbox") for it in items], _NUMBERS)),
        "platform": string_buffers(_strings([p.get("platform") for p in props])),
        "instruments": string_list_buffers(_lists_of([p.get("instruments") for p in props], _STR_ONLY)),
        "title": string_buffers(_strings([p.get("title") for p in props])),
        "keywords": string_list_buffers(_lists_of([p.get("keywords") for p in props], _STR_ONLY)),
        "item": utf8_buffers(texts),
    }
    return ItemColumns(cids, columns)


def columns_table(columns: ItemColumns) -> pa.Table:
    """One Arrow table of :func:`item_columns` (columns :data:`ITEM_COLUMNS`, in that order).

    >>> columns_table(item_columns(["c1"], [{"id": "x"}])).column("id").to_pylist()
    ['x']
    """
    arrays = {name: to_array(columns.columns[name]) for name in ITEM_COLUMNS}
    # typed as JSON text already: DuckDB stores it in the JSON column as it is instead of
    # parsing every item again to check it (a third of an item insert's time; the text is
    # ours, written by orjson, json or the compiled writer from decoded values)
    arrays["item"] = pa.ExtensionArray.from_storage(_JSON, arrays["item"])
    return pa.table(arrays)


def items_table(cids: Sequence[str], items: Sequence[dict[str, Any]]) -> pa.Table:
    """One Arrow table of STAC items, columns :data:`ITEM_COLUMNS`.

    >>> items_table(["c1"], [{"properties": {"datetime": "2024-09-01T00:00:00Z"}}]).column("datetime_text").to_pylist()
    ['2024-09-01T00:00:00Z']
    """
    return columns_table(item_columns(cids, items))
