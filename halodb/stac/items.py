"""STAC items as the index stores them: validation, keys, data CIDs, and reading item files.

One parse point, :func:`parse_item`, checks a STAC 1.x Item (a JSON object) and returns a
normalized copy; everything else in HaloDB takes items from it. Around it:

* :func:`dataset_key` / :func:`split_key` -- the stable key ``collection/item-id``;
* :func:`data_cid` / :func:`item_path` -- the dataset's data CID and campaign-tree path;
* :func:`read_items` -- items from JSON files, folders, FeatureCollections and ndjson;
* :func:`stub_item` -- a minimal valid item for a dataset known only by its path and CID;

Why pydantic and not pystac's JSON-schema validation: pystac's ``Item.validate()`` fetches
the STAC JSON schemas over the network (field nodes are offline), runs jsonschema (slow
on 100,000 items), and reports errors as schema paths that are hard to act on. The
pydantic models below are offline, fast, and every error names the exact JSON path
(``properties.datetime``, ``assets.data.href``) in the file or line it came from.

>>> item = parse_item(stub_item("products/HALO/HALO-20240809b.zarr",
...     "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "halo", None), "demo")
>>> dataset_key(item), item["properties"]["datetime"]
('halo/products/HALO/HALO-20240809b.zarr', '2024-08-09T00:00:00Z')
>>> data_cid(item), item_path(item)
('bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq', 'products/HALO/HALO-20240809b.zarr')
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TextIO, Union, overload
from urllib.parse import unquote

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from halodb.errors import CIDError, EncodeError, InputError, InvalidItemError
from halodb.ipld import CID, DAG_CBOR
from halodb.ipld.codec import encode_json
from halodb.ipld.limits import MAX_INT, MAX_ITEM_SIZE, MAX_NESTING, MIN_INT
from halodb.stac.json_bounds import OUT_OF_RANGE, format_path, locate
from halodb.util.doi import normalize_doi
from halodb.util.native import native
from halodb.util.paths import bad_segment

__all__ = [
    "ITEM_SUFFIXES",
    "NDJSON_SUFFIXES",
    "PreparedItem",
    "STAC_VERSION",
    "ZARR_MEDIA_TYPE",
    "data_cid",
    "data_location",
    "dataset_key",
    "format_datetime",
    "item_block",
    "item_doi",
    "item_path",
    "parse_datetime",
    "parse_item",
    "read_items",
    "split_key",
    "stub_item",
]

log = logging.getLogger(__name__)

STAC_VERSION = "1.1.0"  #: the STAC version HaloDB writes
ZARR_MEDIA_TYPE = "application/vnd.zarr"  #: the STAC best-practice name (vnd+zarr is deprecated)
NDJSON_SUFFIXES = frozenset({".ndjson", ".jsonl", ".geojsonl"})
#: file suffixes :func:`read_items` picks up when it walks a folder
ITEM_SUFFIXES = frozenset({".json", ".geojson"}) | NDJSON_SUFFIXES

_GEOMETRY_TYPES = frozenset(
    {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon", "GeometryCollection"}
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_STAC_1X = re.compile(r"1\.\d+\.\d+(-[0-9A-Za-z.-]+)?")
_DATE_TOKEN = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")
#: the datetime-valued common-metadata properties that parse_item checks and normalizes
_DATETIME_PROPERTIES = ("datetime", "start_datetime", "end_datetime", "created", "updated")


# --- date-times ---------------------------------------------------------------------------
def parse_datetime(text: str) -> tuple[datetime, str]:
    """Parse an RFC 3339 date-time into ``(UTC datetime to the second, fraction digits)``.

    The fraction is kept as text (trailing zeros dropped) so nanosecond precision survives.
    Raises ``ValueError`` for anything that is not RFC 3339 section 5.6 with an offset.

    >>> parse_datetime("2024-08-09T12:00:00.250+02:00")
    (datetime.datetime(2024, 8, 9, 10, 0, tzinfo=datetime.timezone.utc), '25')
    """
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or ".")[1:].rstrip("0")
    zone = m.group(8)
    try:
        if zone in ("Z", "z"):
            tz = timezone.utc
        else:
            hh, mm = int(zone[1:3]), int(zone[4:6])
            if hh > 23 or mm > 59:
                raise ValueError(zone)
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=hh, minutes=mm))
        when = datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"not an RFC 3339 date-time {text!r}") from None
    return when, frac


def format_datetime(when: datetime, fraction: str | None = None) -> str:
    """The canonical form HaloDB stores: UTC, ``Z``, fraction only when non-zero.

    ``fraction`` (digits) overrides the microseconds of ``when``; naive times are UTC.

    >>> format_datetime(datetime(2024, 8, 9, 10, 0, 0, 500000, tzinfo=timezone.utc))
    '2024-08-09T10:00:00.5Z'
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    if fraction is None:
        fraction = f"{when.microsecond:06d}".rstrip("0")
    base = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def _instant(normalized: str) -> tuple[str, Decimal]:
    """A sort key for canonical date-time strings (fractions of any length compare right)."""
    head, _, frac = normalized[:-1].partition(".")
    return head, Decimal("0." + (frac or "0"))


def _rfc3339(value: str) -> str:
    try:
        if len(value) == 20 and value[19] == "Z" and value[10] == "T" and _RFC3339.fullmatch(value):
            # fast path: already canonical; only the calendar needs checking
            datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                     int(value[17:19]))
            return value
        when, frac = parse_datetime(value)
    except ValueError:
        raise PydanticCustomError("rfc3339", "{msg}", {"msg": f"not an RFC 3339 date-time {value!r}"}) from None
    return format_datetime(when, frac)


def _fail(field: str, msg: str) -> NoReturn:
    """Raise a validation error at ``field`` (relative to the model being validated)."""
    raise PydanticCustomError("halodb", "{msg}", {"msg": msg, "at": field})


# --- the pydantic model of a STAC 1.x Item --------------------------------------------------
class _Strict(BaseModel):
    """No type coercion ("1.5" is not a number); unknown fields are allowed (STAC extends)."""

    model_config = ConfigDict(strict=True, extra="allow")


def _non_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty or blank")
    return value


def _stac_1x(value: str) -> str:
    if _STAC_1X.fullmatch(value) is None:
        raise PydanticCustomError("stac_version", "{msg}", {"msg": f"HaloDB reads STAC 1.x items, not version {value!r}"})
    return value


def _tree_path(value: str) -> str:
    parts = value.split("/")
    if not value or any(bad_segment(p) for p in parts):
        raise PydanticCustomError(
            "tree_path", "{msg}", {"msg": f"not a relative path like 'products/HALO/x.zarr': {value!r}"}
        )
    return value


def _bbox(value: list[float]) -> list[float]:
    if len(value) not in (4, 6):
        raise PydanticCustomError("bbox", "{msg}", {"msg": f"must have 4 or 6 numbers, got {len(value)}"})
    half = len(value) // 2
    south, north = value[1], value[half + 1]
    west, east = value[0], value[half]
    for lat in (south, north):
        if not -90.0 <= lat <= 90.0:
            raise PydanticCustomError("bbox", "{msg}", {"msg": f"latitude {lat} is outside [-90, 90]"})
    for lon in (west, east):
        if not -180.0 <= lon <= 180.0:
            raise PydanticCustomError("bbox", "{msg}", {"msg": f"longitude {lon} is outside [-180, 180]"})
    if south > north:
        raise PydanticCustomError("bbox", "{msg}", {"msg": f"south {south} is north of north {north}"})
    if half == 3 and value[2] > value[5]:
        raise PydanticCustomError("bbox", "{msg}", {"msg": f"minimum elevation {value[2]} exceeds maximum {value[5]}"})
    return value


NonBlank = Annotated[str, AfterValidator(_non_blank)]
DateTime = Annotated[str, AfterValidator(_rfc3339)]
Position = Annotated[list[float], Field(min_length=2)]
Ring = Annotated[list[Position], Field(min_length=4)]


class _Point(_Strict):
    type: Literal["Point"]
    coordinates: Position


class _LineString(_Strict):
    type: Literal["LineString"]
    coordinates: Annotated[list[Position], Field(min_length=2)]


class _Polygon(_Strict):
    type: Literal["Polygon"]
    coordinates: list[Ring]


class _MultiPoint(_Strict):
    type: Literal["MultiPoint"]
    coordinates: list[Position]


class _MultiLineString(_Strict):
    type: Literal["MultiLineString"]
    coordinates: list[Annotated[list[Position], Field(min_length=2)]]


class _MultiPolygon(_Strict):
    type: Literal["MultiPolygon"]
    coordinates: list[list[Ring]]


class _GeometryCollection(_Strict):
    type: Literal["GeometryCollection"]
    geometries: list[Geometry]


Geometry = Annotated[
    Union[_Point, _LineString, _Polygon, _MultiPoint, _MultiLineString, _MultiPolygon, _GeometryCollection],
    Field(discriminator="type"),
]
_GeometryCollection.model_rebuild()


class _Link(_Strict):
    rel: NonBlank
    href: NonBlank
    type: str | None = None
    title: str | None = None


class _Asset(_Strict):
    href: NonBlank
    type: str | None = None
    title: str | None = None
    description: str | None = None
    roles: list[str] | None = None


class _Properties(_Strict):
    datetime: DateTime | None
    start_datetime: DateTime | None = None
    end_datetime: DateTime | None = None
    created: DateTime | None = None
    updated: DateTime | None = None
    title: str | None = None
    description: str | None = None
    halodb_path: Annotated[str, AfterValidator(_tree_path)] | None = Field(default=None, alias="halodb:path")
    halodb_stub: bool | None = Field(default=None, alias="halodb:stub")

    @model_validator(mode="after")
    def _check_times(self) -> _Properties:
        start, end = self.start_datetime, self.end_datetime
        if self.datetime is None and not self.halodb_stub and (start is None or end is None):
            _fail("datetime", "is null, so properties.start_datetime and properties.end_datetime are required")
        if start is not None and end is None:
            _fail("end_datetime", "is required when start_datetime is given")
        if end is not None and start is None:
            _fail("start_datetime", "is required when end_datetime is given")
        if start is not None and end is not None and _instant(start) > _instant(end):
            _fail("start_datetime", f"{start} is after end_datetime {end}")
        return self


class _Item(_Strict):
    type: Literal["Feature"]
    stac_version: Annotated[str, AfterValidator(_stac_1x)]
    stac_extensions: list[str] | None = None
    id: NonBlank
    geometry: Geometry | None
    bbox: Annotated[list[float], AfterValidator(_bbox)] | None = None
    properties: _Properties
    links: list[_Link]
    assets: dict[str, _Asset]
    collection: NonBlank | None = None

    @model_validator(mode="after")
    def _check_bbox(self) -> _Item:
        if self.geometry is not None and self.bbox is None:
            _fail("bbox", "is required when geometry is not null")
        if self.geometry is None and self.bbox is not None:
            _fail("bbox", "must be absent when geometry is null")
        return self


# --- errors -------------------------------------------------------------------------------
def _clean_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    """Drop the tag pydantic inserts for discriminated unions (``geometry.Point.coordinates``)."""
    out: list[int | str] = []
    for part in loc:
        if (
            isinstance(part, str)
            and part in _GEOMETRY_TYPES
            and out
            and (out[-1] == "geometry" or (isinstance(out[-1], int) and len(out) > 1 and out[-2] == "geometries"))
        ):
            continue
        out.append(part)
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return f"{kind.get(type(value), type(value).__name__)} {text}"


def _message(err: Any) -> tuple[list[int | str], str]:
    """Turn one pydantic error into (JSON path, message a person can act on)."""
    loc = _clean_loc(tuple(err["loc"]))
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    if kind == "halodb":
        return loc + [ctx["at"]], str(ctx["msg"])
    if kind in ("rfc3339", "bbox", "stac_version", "tree_path"):
        return loc, str(ctx["msg"])
    if kind == "missing":
        return loc, "required field is missing"
    if kind == "literal_error":
        return loc, f"expected {ctx.get('expected')}, got {_describe(value)}"
    if kind in ("string_type", "str_type"):
        return loc, f"expected a string, got {_describe(value)}"
    if kind in ("float_type", "int_type", "finite_number"):
        return loc, f"expected a number, got {_describe(value)}"
    if kind == "bool_type":
        return loc, f"expected true or false, got {_describe(value)}"
    if kind == "list_type":
        return loc, f"expected a list, got {_describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected an object, got {_describe(value)}"
    if kind == "too_short":
        return loc, f"expected at least {ctx.get('min_length')} entries, got {ctx.get('actual_length')}"
    if kind == "too_long":
        return loc, f"expected at most {ctx.get('max_length')} entries, got {ctx.get('actual_length')}"
    if kind == "union_tag_invalid":
        return loc, f"unknown GeoJSON geometry type {ctx.get('tag')!r}"
    if kind == "union_tag_not_found":
        return loc, "a GeoJSON geometry needs a 'type'"
    if kind == "blank":
        return loc, "must not be empty or blank"
    return loc, str(err.get("msg", kind))


def _invalid(source: str, path: str, msg: str, **context: Any) -> InvalidItemError:
    detail = f"{path}: {msg}" if path else msg
    where = f"{source}: " if source else ""
    return InvalidItemError(f"{where}{detail}", source=source, detail=detail, field=path, **context)


# --- parse ---------------------------------------------------------------------------------
def _json_copy(value: Any, loc: list[int | str], source: str) -> Any:
    """Deep copy of a JSON value; rejects NaN/Infinity, non-string keys, non-JSON types,
    integers outside the 64-bit DAG-CBOR range and nesting deeper than ``MAX_NESTING``."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if MIN_INT <= value <= MAX_INT:
            return value
        digits = len(str(abs(value))) if value.bit_length() < 10_000 else f"about {int(value.bit_length() * 0.30103)}"
        raise _invalid(source, format_path(loc), f"an integer of {digits} digits, {OUT_OF_RANGE}")
    if t is float:
        if not math.isfinite(value):
            raise _invalid(source, format_path(loc), f"not a finite number: {value!r} (JSON has no NaN or Infinity)")
        return value
    if (t is dict or t is list or t is tuple) and len(loc) >= MAX_NESTING:
        raise _invalid(source, format_path(loc), f"nested deeper than {MAX_NESTING} levels (objects and arrays)")
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _invalid(source, format_path(loc), f"object keys must be strings, got {_describe(k)}")
            loc.append(k)
            out[k] = _json_copy(v, loc, source)
            loc.pop()
        return out
    if t is list or t is tuple:
        items = []
        for i, v in enumerate(value):
            loc.append(i)
            items.append(_json_copy(v, loc, source))
            loc.pop()
        return items
    raise _invalid(source, format_path(loc), f"not a JSON value: {_describe(value)}")


# --- the quick check: plain Python for the common valid item -----------------------------------
# ``_quick_ok(item)`` True promises that ``_Item`` accepts ``item`` and that parse_item would
# change none of its date-times; False says nothing (the model decides, and names the error).
# tests/test_stac_quick.py checks the promise on generated items.
def _canonical_time(value: Any) -> bool:
    """A date-time already in the form parse_item writes, to the second (what most are)."""
    if type(value) is not str or len(value) != 20 or value[19] != "Z" or value[10] != "T":
        return False
    if _RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                 int(value[17:19]))
    except ValueError:
        return False
    return True


def _is_text(value: Any) -> bool:
    return type(value) is str and bool(value.strip())


def _optional_str(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name)
    return value is None or type(value) is str


def _position(value: Any, least: int = 2) -> bool:
    if type(value) is not list or len(value) < least:
        return False
    for x in value:
        t = type(x)
        if t is not float and t is not int:
            return False
    return True


def _positions(value: Any, least: int) -> bool:
    if type(value) is not list or len(value) < least:
        return False
    for p in value:
        if not _position(p):
            return False
    return True


def _polygon(value: Any) -> bool:
    if type(value) is not list:
        return False
    for ring in value:
        if not _positions(ring, 4):
            return False
    return True


def _list_of(value: Any, check: Callable[[Any], bool]) -> bool:
    if type(value) is not list:
        return False
    for v in value:
        if not check(v):
            return False
    return True


def _geometry_ok(geometry: Any) -> bool:
    if type(geometry) is not dict:
        return False
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        return _list_of(geometry.get("geometries", 0), _geometry_ok)
    if "coordinates" not in geometry:
        return False
    c = geometry["coordinates"]
    if kind == "Point":
        return _position(c)
    if kind == "LineString":
        return _positions(c, 2)
    if kind == "Polygon":
        return _polygon(c)
    if kind == "MultiPoint":
        return _positions(c, 0)
    if kind == "MultiLineString":
        return _list_of(c, lambda line: _positions(line, 2))
    if kind == "MultiPolygon":
        return _list_of(c, _polygon)
    return False


def _bbox_ok(value: Any) -> bool:
    if not _position(value, 4) or len(value) not in (4, 6):
        return False
    half = len(value) // 2
    west, south, east, north = value[0], value[1], value[half], value[half + 1]
    return (-90.0 <= south <= north <= 90.0 and -180.0 <= west <= 180.0 and -180.0 <= east <= 180.0
            and (half == 2 or value[2] <= value[5]))


def _link_ok(link: Any) -> bool:
    return (type(link) is dict and _is_text(link.get("rel")) and _is_text(link.get("href"))
            and _optional_str(link, "type") and _optional_str(link, "title"))


def _asset_ok(asset: Any) -> bool:
    if type(asset) is not dict or not _is_text(asset.get("href")):
        return False
    if not (_optional_str(asset, "type") and _optional_str(asset, "title") and _optional_str(asset, "description")):
        return False
    roles = asset.get("roles")
    return roles is None or _list_of(roles, lambda r: type(r) is str)


def _properties_ok(props: Any) -> bool:
    if type(props) is not dict or "datetime" not in props:
        return False
    for name in _DATETIME_PROPERTIES:
        value = props.get(name)
        if value is not None and not _canonical_time(value):
            return False
    if not (_optional_str(props, "title") and _optional_str(props, "description")):
        return False
    path = props.get("halodb:path")
    if path is not None and (type(path) is not str or not path or any(bad_segment(p) for p in path.split("/"))):
        return False
    stub = props.get("halodb:stub")
    if stub is not None and type(stub) is not bool:
        return False
    start, end = props.get("start_datetime"), props.get("end_datetime")
    if (start is None) != (end is None) or (start is not None and start > end):  # same form: text order is time order
        return False
    return not (props["datetime"] is None and not stub and start is None)


def _quick_ok(item: dict[str, Any]) -> bool:
    """Whether ``item`` is surely valid and already normalized (see above)."""
    if item.get("type") != "Feature" or "geometry" not in item:
        return False
    version = item.get("stac_version")
    if type(version) is not str or _STAC_1X.fullmatch(version) is None:
        return False
    extensions = item.get("stac_extensions")
    if extensions is not None and not _list_of(extensions, lambda e: type(e) is str):
        return False
    if not _is_text(item.get("id")):
        return False
    collection = item.get("collection")
    if collection is not None and not _is_text(collection):
        return False
    geometry, bbox = item["geometry"], item.get("bbox")
    if geometry is None:
        if bbox is not None:
            return False
    elif bbox is None or not _geometry_ok(geometry) or not _bbox_ok(bbox):
        return False
    if not _properties_ok(item.get("properties")):
        return False
    assets = item.get("assets")
    if type(assets) is not dict or not _list_of(item.get("links"), _link_ok):
        return False
    for asset in assets.values():
        if not _asset_ok(asset):
            return False
    return True


def _validate(item: dict[str, Any]) -> _Item | list[tuple[list[int | str], str]]:
    """The validated model, or the problems found as (JSON path, message)."""
    try:
        return _Item.model_validate(item)
    except ValidationError as exc:
        return [_message(err) for err in exc.errors()]


def parse_item(value: Any, source: str) -> dict[str, Any]:
    """Validate a STAC 1.x Item and return a normalized deep copy.

    Checked: ``type`` is ``"Feature"``; ``stac_version`` 1.x; non-blank ``id``; ``geometry``
    GeoJSON or null; ``bbox`` of 4 or 6 numbers, required with a geometry and absent
    without; ``properties.datetime`` RFC 3339 or null, and when null both
    ``start_datetime`` and ``end_datetime`` (``start <= end``); ``links`` with
    ``rel``/``href``; ``assets`` each with an ``href``; no NaN/Infinity anywhere. Unknown
    fields are kept (STAC is extensible). Exception: an item whose ``properties`` say
    ``"halodb:stub": true`` (see :func:`stub_item`) may have no time at all.

    Normalized: tuples become lists, and the date-times ``datetime``, ``start_datetime``,
    ``end_datetime``, ``created``, ``updated`` are rewritten in UTC with ``Z`` and no
    trailing fraction zeros, so equal items encode to equal blocks.

    Raises :class:`~halodb.errors.InvalidItemError` whose message names ``source`` and the
    JSON path of the first problem (``.detail``; ``.problems`` lists all of them).

    >>> item = parse_item({"type": "Feature", "stac_version": "1.1.0", "id": "x",
    ...     "geometry": None, "properties": {"datetime": "2024-08-09T12:00:00+02:00"},
    ...     "links": [], "assets": {}}, "x.json")
    >>> item["properties"]["datetime"]
    '2024-08-09T10:00:00Z'
    >>> parse_item({**item, "properties": {"datetime": "yesterday"}}, "<stdin>:17")
    Traceback (most recent call last):
    ...
    halodb.errors.InvalidItemError: <stdin>:17: properties.datetime: not an RFC 3339 date-time 'yesterday'
    """
    if not isinstance(value, dict):
        raise _invalid(source, "", f"expected a JSON object (a STAC Item), got {_describe(value)}")
    # a _Decoded is fresh from orjson and proved within bounds: a shallow copy is enough
    item: dict[str, Any] = dict(value) if type(value) is _Decoded else _json_copy(value, [], source)
    if _quick_ok(item):
        return item
    model = _validate(item)
    if isinstance(model, list):  # raised here, outside the except block: no pydantic context leaks
        first_loc, first_msg = model[0]
        extra = len(model) - 1
        more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
        raise _invalid(
            source,
            format_path(first_loc),
            first_msg + more,
            problems=[f"{format_path(loc)}: {msg}" for loc, msg in model],
        )
    props = item["properties"]
    for name in _DATETIME_PROPERTIES:
        if props.get(name) is not None:
            props[name] = getattr(model.properties, name)
    return item


# --- keys, CIDs, paths --------------------------------------------------------------------
def dataset_key(item: dict[str, Any], collection: str | None = None, *, source: str = "") -> str:
    """The stable key ``collection/item-id`` (``collection`` argument wins over the item's).

    The collection must not contain ``/``; the id may (keys split at the first ``/``).

    >>> dataset_key({"id": "HAMP/HALO-20240811a", "collection": "halo"})
    'halo/HAMP/HALO-20240811a'
    >>> dataset_key({"id": "x"}, "radiosondes")
    'radiosondes/x'
    """
    if not isinstance(item, dict):
        raise _invalid(source, "", f"expected a STAC Item object, got {_describe(item)}")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise _invalid(source, "id", f"a dataset key needs a non-empty string id, got {_describe(item_id)}")
    coll = collection if collection is not None else item.get("collection")
    where = "collection" if collection is None else "(collection argument)"
    if coll is None:
        raise _invalid(
            source, "collection", f"item {item_id!r} has no collection; give one (e.g. --collection) to key it"
        )
    if not isinstance(coll, str) or not coll.strip():
        raise _invalid(source, where, f"a collection must be a non-empty string, got {_describe(coll)}")
    if "/" in coll:
        raise _invalid(source, where, f"a collection must not contain '/': {coll!r}")
    return f"{coll}/{item_id}"


def split_key(key: str) -> tuple[str, str]:
    """Split a dataset key into ``(collection, id)`` at the first ``/``.

    >>> split_key("halo-remote-sensing/HAMP/HALO-20240811a")
    ('halo-remote-sensing', 'HAMP/HALO-20240811a')
    """
    coll, sep, item_id = key.partition("/")
    if not sep or not coll or not item_id:
        raise InputError(f"not a dataset key 'collection/id': {key!r}", source=key)
    return coll, item_id


def _split_ipfs_href(href: str) -> tuple[str, str] | None:
    """``ipfs://<cid>/a/b`` or ``/ipfs/<cid>/a/b`` -> ``(cid text, 'a/b')``; else None."""
    if href.startswith("ipfs://"):
        rest = href[len("ipfs://"):]
    elif href.startswith("/ipfs/"):
        rest = href[len("/ipfs/"):]
    else:
        return None
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    cid, _, sub = rest.partition("/")
    return cid, sub


def _data_asset(item: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(asset key, cid text, sub-path)`` of the dataset's IPFS data asset, if any."""
    assets = item.get("assets")
    if not isinstance(assets, dict):
        return None
    # "data" first, then the others by key: deterministic whatever the dict order
    # (DAG-CBOR re-sorts map keys, so "the first asset" must not depend on insertion order).
    for key in sorted(assets, key=lambda k: (k != "data", k)):
        asset = assets[key]
        href = asset.get("href") if isinstance(asset, dict) else None
        if isinstance(href, str):
            parts = _split_ipfs_href(href)
            if parts is not None:
                return key, parts[0], parts[1]
    return None


def data_cid(item: dict[str, Any], *, source: str = "") -> str | None:
    """The dataset's data CID from its ``ipfs://<cid>/...`` (or ``/ipfs/<cid>/...``) asset.

    Prefers the asset ``data``, else the first IPFS asset by key. The CID is checked and
    returned as written (a CIDv0 ``Qm...`` stays v0). None when no asset is on IPFS.

    >>> data_cid({"assets": {"data": {"href": "ipfs://QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY/x.zarr"}}})
    'QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY'
    """
    found = _data_asset(item)
    if found is None:
        return None
    key, cid, sub = found
    try:
        CID.parse(cid)
    except CIDError as exc:
        raise _invalid(
            source, format_path(["assets", key, "href"]), f"does not name a valid CID: {cid!r} ({exc})"
        ) from None
    segments = unquote(sub).strip("/").split("/")
    bad = next((p for p in segments if bad_segment(p)), None) if any(segments) else None
    if bad is not None:
        raise _invalid(
            source, format_path(["assets", key, "href"]),
            f"path segment {bad!r} is not allowed (no '.', '..', empty names, NUL or control characters)",
        )
    return cid


def data_location(item: dict[str, Any]) -> tuple[str, str] | None:
    """``(cid text, sub-path)`` of the dataset's data: the CID its IPFS asset names and the
    (URL-decoded) path inside it — empty when the CID is the dataset itself, as for the
    items ``halodb scan`` makes. None when no asset is on IPFS.

    >>> data_location({"assets": {"data": {"href": "ipfs://bafyroot/products/HALO/x.zarr"}}})
    ('bafyroot', 'products/HALO/x.zarr')
    """
    found = _data_asset(item)
    if found is None:
        return None
    return found[1], unquote(found[2]).strip("/")


def item_path(item: dict[str, Any]) -> str | None:
    """The dataset's path in the campaign tree.

    ``properties["halodb:path"]`` if set, else the (URL-decoded) sub-path after the CID in
    the data asset's href, else None.

    >>> item_path({"properties": {}, "assets": {"data": {"href": "ipfs://bafy.../products/HALO/x.zarr"}}})
    'products/HALO/x.zarr'
    """
    props = item.get("properties")
    if isinstance(props, dict):
        path = props.get("halodb:path")
        if isinstance(path, str) and path:
            return path
    found = _data_asset(item)
    if found is None:
        return None
    sub = unquote(found[2]).strip("/")
    return sub or None


def item_doi(item: dict[str, Any], *, source: str = "") -> str | None:
    """The dataset's DOI, ``properties["sci:doi"]`` (the STAC scientific extension), as the
    index keys it (lower-case, no ``doi:`` or ``https://doi.org/``); None without one.
    Anything else there is an :class:`InvalidItemError` naming the field.

    >>> item_doi({"properties": {"sci:doi": "https://doi.org/10.82246/ORCESTRA.X"}})
    '10.82246/orcestra.x'
    >>> item_doi({"properties": {"sci:doi": "n/a"}}, source="x.json")
    Traceback (most recent call last):
    ...
    halodb.errors.InvalidItemError: x.json: properties.sci:doi: 'n/a' is not a DOI (10.PREFIX/SUFFIX: a prefix of 4 to 9 digits, a suffix without spaces)
    """
    props = item.get("properties")
    value = props.get("sci:doi") if isinstance(props, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(source, "properties.sci:doi", f"expected a DOI string, got {_describe(value)}")
    try:
        return normalize_doi(value, "properties.sci:doi")
    except InputError as exc:
        raise _invalid(source, "properties.sci:doi", str(exc).removeprefix("properties.sci:doi: ")) from None


def item_block(item: dict[str, Any], source: str) -> tuple[CID, bytes]:
    """The DAG-CBOR block of a parsed item; :class:`InvalidItemError` naming ``source`` when
    its encoding is larger than ``MAX_ITEM_SIZE`` (and its largest part) or cannot be made.

    >>> cid, data = item_block({"id": "x"}, "x.json"); len(data)
    6
    >>> item_block({"id": "x", "properties": {"blob": "x" * 1_100_000}}, "x.json")
    Traceback (most recent call last):
    ...
    halodb.errors.InvalidItemError: x.json: properties.blob: the item is 1100028 bytes as DAG-CBOR, more than the 1048576 an item may take (this part holds 1100002 bytes of it as JSON)
    """
    try:
        data = encode_json(item)  # parse_item made it: JSON types only, within the bounds
        cid = CID.for_bytes(data, DAG_CBOR)
    except EncodeError as exc:
        path = str(exc.context.get("path", "/")).strip("/").replace("/", ".")
        raise _invalid(source, path, str(exc)) from None
    if len(data) > MAX_ITEM_SIZE:
        loc, size = _largest_part(item)
        part = f" (this part holds {size} bytes of it as JSON)" if loc else ""
        raise _invalid(
            source, format_path(loc),
            f"the item is {len(data)} bytes as DAG-CBOR, more than the {MAX_ITEM_SIZE} an item may take{part}",
        )
    return cid, data


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _largest_part(value: Any) -> tuple[list[int | str], int]:
    """The path to the part of ``value`` that makes most of its size (descending while the
    largest member holds at least half of its container), and that part's JSON size."""
    loc: list[int | str] = []
    size = _json_size(value)
    while isinstance(value, (dict, list)) and value:
        members = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        sizes = [(_json_size(v), k) for k, v in members]
        biggest, key = max(sizes, key=lambda s: s[0])
        if biggest * 2 < size:
            break
        loc.append(key)
        value = value[key]
        size = biggest
    return loc, size


# --- reading items -------------------------------------------------------------------------
def _skip_to_log(source: str, reason: str) -> None:
    log.info("skipping %s: %s", source, reason)


def _decode_json(text: str, source: str, line: int | None = None) -> Any:
    """Parse one JSON document; every failure is an :class:`InvalidItemError` naming the file
    (and line), also the two Python's ``json`` raises without a place: nesting past its
    recursion limit and integers of more than 4,300 digits (located by :func:`locate`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if line is None:
            where, msg = f"{source}:{exc.lineno}", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        else:
            where, msg = f"{source}:{line}", f"invalid JSON at column {exc.colno}: {exc.msg}"
        raise InvalidItemError(f"{where}: {msg}", source=where, detail=msg) from None
    except (RecursionError, ValueError) as exc:
        failure = "nested too deep" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
    # slack 2: the items of a FeatureCollection sit two levels down (features[i]), so a place
    # that deep is too deep inside its item whatever the file holds
    bound = locate(text, slack=2)
    if bound is None:  # pragma: no cover - json failed where the scan finds nothing
        where = source if line is None else f"{source}:{line}"
        raise InvalidItemError(f"{where}: cannot read JSON: {failure}", source=where, detail=failure)
    where = f"{source}:{bound.line if line is None else line}"
    detail = f"{bound.path}: {bound.problem}" if bound.path else bound.problem
    raise InvalidItemError(f"{where}: {detail}", source=where, detail=detail, field=bound.path)


def _expand(
    value: Any, source: str, in_folder: bool, on_skip: Callable[[str, str], None]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield the items in one decoded JSON value (an Item or a FeatureCollection)."""
    if not isinstance(value, dict):
        raise _invalid(source, "", f"expected a STAC Item or FeatureCollection object, got {_describe(value)}")
    kind = value.get("type")
    if kind == "Feature":
        yield source, value
    elif kind == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, list):
            raise _invalid(source, "features", f"expected a list of Items, got {_describe(features)}")
        for i, feature in enumerate(features):
            sub = f"{source}:features[{i}]"
            if not isinstance(feature, dict):
                raise _invalid(sub, "", f"expected a STAC Item object, got {_describe(feature)}")
            yield sub, feature
    elif kind in ("Catalog", "Collection") and in_folder:
        on_skip(source, f"a STAC {kind}, not an Item")
    else:
        hint = " (only Items are indexed; pass its item files instead)" if kind in ("Catalog", "Collection") else ""
        raise _invalid(source, "type", f"expected 'Feature' or 'FeatureCollection', got {_describe(kind)}{hint}")


class _Decoded(dict[str, Any]):
    """An item object just decoded by :func:`_decode_fast` and owned by no one else: JSON
    types only, within the integer and nesting bounds, so :func:`parse_item` may take it
    without its checking deep copy (only the top level is copied)."""


#: bytes -> b"d" for a digit, b"[" for ``[`` and ``{``, b"." for anything else (see _decode_fast)
_SHAPE = bytes(0x64 if 0x30 <= b <= 0x39 else 0x5B if b in (0x5B, 0x7B) else 0x2E for b in range(256))
_LONG_DIGITS = b"d" * 19


def _decode_fast(line: str) -> Any:
    """``line`` decoded by orjson when that gives what :func:`_decode_json` would, with the
    checks of :func:`_json_copy` proved on the way; None to take the slow path.

    orjson is strict RFC 8259 (it refuses NaN, Infinity, lone surrogates and control
    characters, all of which the slow path reports), keys are strings, its integers fit 64
    bits — except that it reads a longer integer as a float, so a line with 19 digits in a
    row goes the slow way; fewer than ``MAX_NESTING`` brackets in all prove the depth."""
    data = line.encode("utf-8", "surrogatepass")
    shape = data.translate(_SHAPE)
    if shape.count(b"[") >= MAX_NESTING or _LONG_DIGITS in shape:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # the slow path raises the error it always raised


class PreparedItem:
    """An ndjson line as ``halodb add`` stages it — its key, the item's binary CID and
    DAG-CBOR block, its data CID, path and DOI — made by the compiled module
    (:mod:`halodb.util.native`) for a line that is surely a valid, normalized STAC item, as
    :func:`read_items` yields it when asked (``prepared=True``). :meth:`item` is the item
    itself (what :func:`parse_item` returns), read again from ``line``."""

    __slots__ = ("block", "cid", "collection", "data", "doi", "key", "line", "path")

    def __init__(self, key: str, collection: str, cid: bytes, block: bytes, data: str | None, path: str | None,
                 doi: str | None, line: str) -> None:
        self.key, self.collection, self.cid, self.block = key, collection, cid, block
        self.data, self.path, self.doi, self.line = data, path, doi, line

    def item(self) -> dict[str, Any]:
        return dict(orjson.loads(self.line))


#: lines handed to the compiled module at a time (a whole add batch is a multiple of it: see
#: ``Registry.add``'s ADD_BATCH)
_PREPARE_CHUNK = 500


def _read_lines(
    lines: Iterator[str] | TextIO, source: str, on_skip: Callable[[str, str], None], prepared: bool = False
) -> Iterator[tuple[str, dict[str, Any] | PreparedItem]]:
    module = native() if prepared else None
    if module is None:
        for n, line in enumerate(lines, start=1):
            yield from _read_line(n, line, source, on_skip)
        return
    # a chunk of lines at a time, prepared without the GIL: a thread that writes what was
    # read before (``Registry.add``'s) runs meanwhile
    numbered = enumerate(lines, start=1)
    while chunk := list(itertools.islice(numbered, _PREPARE_CHUNK)):
        for (n, line), row in zip(chunk, module.prepare_lines([line for _, line in chunk])):
            if row is None:
                yield from _read_line(n, line, source, on_skip)
            else:
                key, collection, cid, block, data, path, doi = row
                yield f"{source}:{n}", PreparedItem(key, collection, cid, block, data, path, doi, line)


def _read_line(
    n: int, line: str, source: str, on_skip: Callable[[str, str], None]
) -> Iterator[tuple[str, dict[str, Any]]]:
    if line.strip():
        where = f"{source}:{n}"
        value = _decode_fast(line)
        if type(value) is dict and value.get("type") == "Feature":
            yield where, _Decoded(value)
            return
        if value is None:
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:  # (bytes that are not UTF-8, read with surrogateescape)
                raise InvalidItemError(f"{where}: not UTF-8 text (character {exc.start + 1} of the line)",
                                       source=where, detail="not UTF-8 text") from None
        # (without its line break: an error at the end of the line is then in its last column)
        yield from _expand(_decode_json(line.rstrip("\r\n"), source, n) if value is None else value, where,
                           False, on_skip)


def _read_file(
    path: Path, source: str, in_folder: bool, on_skip: Callable[[str, str], None], prepared: bool = False
) -> Iterator[tuple[str, dict[str, Any] | PreparedItem]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidItemError(
            f"{source}: not UTF-8 text (byte {exc.start})", source=source, detail="not UTF-8 text"
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})", source=source) from None
    if path.suffix.lower() in NDJSON_SUFFIXES:
        yield from _read_lines(iter(text.splitlines()), source, on_skip, prepared)
        return
    module = native() if prepared else None
    row = None if module is None else module.prepare_item(text)  # (an Item file: a FeatureCollection is declined)
    if row is not None:
        key, collection, cid, block, data, item_path, doi = row
        yield source, PreparedItem(key, collection, cid, block, data, item_path, doi, text)
    else:
        yield from _expand(_decode_json(text, source), source, in_folder, on_skip)


def _folder_files(folder: Path) -> list[Path]:
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            p = Path(dirpath, name)
            if not name.startswith(".") and p.suffix.lower() in ITEM_SUFFIXES:
                found.append((p.relative_to(folder).parts, p))
    return [p for _, p in sorted(found)]


@overload
def read_items(paths: list[str], stdin: TextIO | None, *, on_skip: Callable[[str, str], None] | None = None,
               prepared: Literal[False] = False) -> Iterator[tuple[str, dict[str, Any]]]: ...
@overload
def read_items(paths: list[str], stdin: TextIO | None, *, on_skip: Callable[[str, str], None] | None = None,
               prepared: bool) -> Iterator[tuple[str, dict[str, Any] | PreparedItem]]: ...
def read_items(
    paths: list[str],
    stdin: TextIO | None,
    *,
    on_skip: Callable[[str, str], None] | None = None,
    prepared: bool = False,
) -> Iterator[tuple[str, dict[str, Any] | PreparedItem]]:
    """Yield ``(source, item)`` from files, folders and ``-`` (ndjson on ``stdin``).

    * a ``.json``/``.geojson`` file holds one Item or a FeatureCollection (source
      ``file.json`` or ``file.json:features[3]``);
    * a ``.ndjson``/``.jsonl`` file, and ``-``, hold one per line (``<stdin>:17``);
    * a folder is walked recursively in name order for those suffixes (hidden entries
      skipped); a STAC Catalog/Collection file there is skipped, reported to ``on_skip``
      (default: the ``halodb.stac`` logger); any other non-Item is an error.

    Items are yielded as read: pass each to :func:`parse_item` with its source.
    ``prepared=True``: an ndjson line that the compiled module (:mod:`halodb.util.native`)
    prepared comes as a :class:`PreparedItem` instead (what ``halodb add`` stages of it:
    :meth:`halodb.api.registry.Registry.add` takes both); without the module, as without
    the flag. Raises :class:`~halodb.errors.InvalidItemError` for bad JSON (naming file and
    line/column) and :class:`~halodb.errors.InputError` for missing/unreadable paths.

    >>> import io
    >>> [s for s, _ in read_items(["-"], io.StringIO('{"type": "Feature"}\\n\\n{"type": "Feature"}\\n'))]
    ['<stdin>:1', '<stdin>:3']
    """
    skip = on_skip if on_skip is not None else _skip_to_log
    for arg in paths:
        if arg == "-":
            if stdin is None:
                raise InputError("'-' names standard input, but none is available", source="<stdin>")
            yield from _read_lines(stdin, "<stdin>", skip, prepared)
            continue
        path = Path(arg)
        if path.is_dir():
            for f in _folder_files(path):
                yield from _read_file(f, str(f), True, skip, prepared)
        elif path.is_file():
            yield from _read_file(path, arg, False, skip, prepared)
        elif path.exists():
            raise InputError(f"{arg}: not a file or folder", source=arg)
        else:
            raise InputError(f"{arg}: no such file or folder", source=arg)


# --- stub items -----------------------------------------------------------------------------
def _path_date(path: str) -> datetime | None:
    """The first valid ``YYYYMMDD`` date in the path, searching from the last component."""
    for part in reversed(path.split("/")):
        for m in _DATE_TOKEN.finditer(part):
            try:
                return datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), tzinfo=timezone.utc)
            except ValueError:
                continue
    return None


def stub_item(path: str, data_cid: str, collection: str, when: datetime | None) -> dict[str, Any]:
    """A minimal valid STAC 1.1 Item for a dataset known only by its tree path and data CID.

    ``id`` is the path, ``properties.title`` its last component, ``properties["halodb:path"]``
    the path and ``properties["halodb:stub"]`` true (a scanner may replace the item with
    real metadata). ``datetime`` is the first ``YYYYMMDD`` date in the path (last component
    first), else ``when`` (e.g. when the path first appeared in the tree), else null with
    ``start_datetime``/``end_datetime`` null: only stubs may carry no time at all. No
    geometry; one asset ``data`` with href ``ipfs://<cid>`` (type ``application/vnd.zarr``
    for ``*.zarr``). Deterministic: the same arguments give the same dict.

    >>> stub_item("products/HALO/HAMP/Level_2/HALO-20240809b", "QmVdi8e6yR2exaUc7dv3ErQta2R7YobQGQNEcgQE9HLioj",
    ...     "orcestra", None)["properties"]["datetime"]
    '2024-08-09T00:00:00Z'
    """
    clean = path.strip("/")
    if not clean or any(p in ("", ".", "..") for p in clean.split("/")):
        raise InputError(f"not a dataset path in a tree: {path!r}", source=path)
    if not isinstance(collection, str) or not collection or "/" in collection:
        raise InputError(f"a collection must be a non-empty name without '/': {collection!r}", source=path)
    try:
        CID.parse(data_cid)
    except CIDError as exc:
        raise InputError(f"{path}: {exc}", source=path) from None
    date = _path_date(clean) or when
    props: dict[str, Any] = {"title": clean.rsplit("/", 1)[-1], "halodb:path": clean, "halodb:stub": True}
    if date is not None:
        props["datetime"] = format_datetime(date)
    else:
        props.update({"datetime": None, "start_datetime": None, "end_datetime": None})
    asset: dict[str, Any] = {"href": f"ipfs://{data_cid.strip()}"}
    if clean.lower().endswith(".zarr"):
        asset["type"] = ZARR_MEDIA_TYPE
    asset["roles"] = ["data"]
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "id": clean,
        "collection": collection,
        "geometry": None,
        "properties": props,
        "links": [],
        "assets": {"data": asset},
    }


def item_json_schema() -> dict[str, Any]:
    """The JSON Schema of the items :func:`parse_item` accepts (``schemas/stac-item.schema.json``).

    >>> item_json_schema()["title"]
    'HaloDB STAC Item'
    """
    schema = _Item.model_json_schema()
    schema["title"] = "HaloDB STAC Item"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "A STAC 1.x Item as HaloDB validates it (generated from halodb/stac.py; "
        "rules that JSON Schema cannot express, such as start <= end, are checked in code)."
    )
    return schema
