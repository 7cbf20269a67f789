"""STAC items to columns: the JSON text and the fields the cache pulls out of each item.

Extraction happens in Python (plain dict look-ups, columnar lists, one ``pyarrow`` array per
column) and only the timestamp parsing is left to DuckDB (``TRY_CAST`` in SQL).
``benchmarks/bench_cache_apply.py`` measures this against extracting the fields in SQL
with ``json_extract``: the two are close on this 2-core machine and swap places between
runs, so the simpler-to-test Python path stays.
Extraction is lenient: a missing or wrongly typed field becomes NULL.

>>> table = items_table(["bafyitem"], [{"id": "x", "bbox": [0, 1, 2, 3],
...                                    "properties": {"platform": "HALO", "instruments": "radar"}}])
>>> table.column("platform").to_pylist(), table.column("instruments").to_pylist()
(['HALO'], [None])
>>> table.column("item").to_pylist()
['{"id":"x","bbox":[0,1,2,3],"properties":{"platform":"HALO","instruments":"radar"}}']
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson
import pyarrow as pa

from halodb.errors import CacheError

__all__ = ["ITEM_COLUMNS", "encode_item", "items_table"]

#: the columns of :func:`items_table`; ``*_text`` are still strings (cast in SQL)
ITEM_COLUMNS = (
    "item_cid", "id", "collection", "datetime_text", "start_datetime_text", "end_datetime_text",
    "bbox", "platform", "instruments", "title", "keywords", "item",
)  # fmt: skip

_STR = pa.string()
_STR_LIST = pa.list_(pa.string())
_F64_LIST = pa.list_(pa.float64())
_EMPTY: dict[str, Any] = {}


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
    # orjson: ~4x faster than the json module on STAC items (benchmarks/bench_codec.py).
    # Arrow takes its UTF-8 bytes as strings.
    return orjson.dumps(item, default=_json_default)


def encode_item(item: dict[str, Any]) -> str:
    """The compact JSON text of one STAC item (CIDs become strings, bytes DAG-JSON bytes).

    >>> encode_item({"id": "x", "properties": {"gsd": 0.5}})
    '{"id":"x","properties":{"gsd":0.5}}'
    """
    return _dumps(item).decode()


def _encode_all(cids: Sequence[str], items: Sequence[dict[str, Any]]) -> list[bytes]:
    try:
        return list(map(_dumps, items))
    except (TypeError, ValueError, RecursionError):
        pass
    for cid, item in zip(cids, items):  # slow path, only to name the culprit
        try:
            _dumps(item)
        except (TypeError, ValueError, RecursionError) as exc:
            raise CacheError(f"STAC item {cid} cannot be stored as JSON: {exc}", cid=cid) from exc
    raise CacheError("STAC items cannot be stored as JSON")  # pragma: no cover - unreachable


def _strings(values: list[Any]) -> pa.Array:
    """A string column; anything that is not a str becomes NULL."""
    try:
        return pa.array(values, type=_STR)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if type(v) is str else None for v in values], type=_STR)


def _string_lists(values: list[Any]) -> pa.Array:
    """A list-of-strings column; anything that is not a list of str becomes NULL."""
    lists = [v if type(v) is list else None for v in values]  # a str would become a list of chars
    try:
        return pa.array(lists, type=_STR_LIST)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if v is not None and all(type(x) is str for x in v) else None for v in lists], type=_STR_LIST)


def _bboxes(values: list[Any]) -> pa.Array:
    """A list-of-doubles column; anything that is not a list of numbers becomes NULL."""
    lists = [v if type(v) is list else None for v in values]
    try:
        return pa.array(lists, type=_F64_LIST)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [v if v is not None and all(type(x) is float or type(x) is int for x in v) else None for v in lists],
            type=_F64_LIST,
        )


def items_table(cids: Sequence[str], items: Sequence[dict[str, Any]]) -> pa.Table:
    """One Arrow table of STAC items, columns :data:`ITEM_COLUMNS`.

    >>> items_table(["c1"], [{"properties": {"datetime": "2024-09-01T00:00:00Z"}}]).column("datetime_text")[0].as_py()
    '2024-09-01T00:00:00Z'
    """
    for cid, item in zip(cids, items):
        if not isinstance(item, dict):
            raise CacheError(f"STAC item {cid} is a {type(item).__name__}, not a JSON object", cid=cid)
    texts = _encode_all(cids, items)
    props = [p if type(p) is dict else _EMPTY for p in (it.get("properties") for it in items)]
    return pa.table(
        {
            "item_cid": pa.array(cids, type=_STR),
            "id": _strings([it.get("id") for it in items]),
            "collection": _strings([it.get("collection") for it in items]),
            "datetime_text": _strings([p.get("datetime") for p in props]),
            "start_datetime_text": _strings([p.get("start_datetime") for p in props]),
            "end_datetime_text": _strings([p.get("end_datetime") for p in props]),
            "bbox": _bboxes([it.get("bbox") for it in items]),
            "platform": _strings([p.get("platform") for p in props]),
            "instruments": _string_lists([p.get("instruments") for p in props]),
            "title": _strings([p.get("title") for p in props]),
            "keywords": _string_lists([p.get("keywords") for p in props]),
            "item": pa.array(texts, type=_STR),
        }
    )
