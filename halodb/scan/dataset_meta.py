"""``dataset_meta.yaml``: describing a dataset that is not a CF/ACDD Zarr store.

The file sits in the dataset's root folder. Its keys are the ACDD/CF global attribute
names (``title``, ``summary``, ``keywords``, ``license``, ``platform``, ``instrument``,
``project``, ``creator_name``, ``creator_email``, ``history``, ``references``, ...),
either at the top level or under ``attributes:``, plus the extent:

* ``time: {start: ..., end: ...}`` (RFC 3339; a single date-time for an instant), or
  ORCESTRA's ``extent: {temporal: [start, end]}``;
* ``bbox: [west, south, east, north]`` or ``extent: {spatial: [w, s, e, n]}``; optionally
  ``geometry:`` (GeoJSON) when the extent's rectangle is too coarse.

For a Zarr store the same file fills in what the Zarr attributes lack.

>>> meta = parse_dataset_meta(b'''
... title: BCO lidar quicklooks
... keywords: [lidar, BCO]
... time: {start: 2024-08-10T00:00:00Z, end: "2024-09-30T23:59:59Z"}
... bbox: [-59.43, 13.16, -59.43, 13.16]
... ''', "bco/lidar")
>>> meta.attrs["title"], meta.time, meta.bbox
('BCO lidar quicklooks', ('2024-08-10T00:00:00Z', '2024-09-30T23:59:59Z'), [-59.43, 13.16, -59.43, 13.16])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import yaml

from halodb.errors import DatasetError
from halodb.stac import format_datetime, parse_datetime

__all__ = ["FILE_NAME", "DatasetMeta", "parse_dataset_meta"]

FILE_NAME = "dataset_meta.yaml"
_EXTENT_KEYS = {"time", "bbox", "geometry", "extent", "attributes"}


@dataclass
class DatasetMeta:
    """Attributes (ACDD names) and the extent a ``dataset_meta.yaml`` declares."""

    attrs: dict[str, Any]
    time: tuple[str, str] | None = None
    bbox: list[float] | None = None
    geometry: dict[str, Any] | None = None


def _fail(path: str, what: str, attribute: str | None = None) -> DatasetError:
    return DatasetError(f"{path or '/'}: {FILE_NAME}: {what}", path=path, file=FILE_NAME, attribute=attribute,
                        detail=what)


def _instant(value: Any, path: str, where: str) -> str:
    if isinstance(value, datetime):
        return format_datetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, date):
        return format_datetime(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
    if isinstance(value, str):
        try:
            when, frac = parse_datetime(value.strip())
        except ValueError:
            raise _fail(path, f"{where}: {value!r} is not an RFC 3339 date-time like 2024-08-09T12:00:00Z", where) from None
        return format_datetime(when, frac)
    raise _fail(path, f"{where}: expected a date-time, got {value!r}", where)


def _bbox(value: Any, path: str, where: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise _fail(path, f"{where}: expected [west, south, east, north] numbers, got {value!r}", where)
    w, s, e, n = (float(v) for v in value)
    for lat in (s, n):
        if not -90 <= lat <= 90:
            raise _fail(path, f"{where}: latitude {lat} is outside [-90, 90]", where)
    for lon in (w, e):
        if not -180 <= lon <= 180:
            raise _fail(path, f"{where}: longitude {lon} is outside [-180, 180]", where)
    if s > n:
        raise _fail(path, f"{where}: south {s} is north of north {n}", where)
    return [w, s, e, n]


def parse_dataset_meta(data: bytes, path: str) -> DatasetMeta:
    """Parse the bytes of a ``dataset_meta.yaml``; :class:`DatasetError` naming the key that is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail(path, "expected a mapping of attributes (title: ..., time: ..., bbox: ...)")
    attrs: dict[str, Any] = {}
    nested = doc.get("attributes")
    if nested is not None and not isinstance(nested, dict):
        raise _fail(path, "attributes: expected a mapping", "attributes")
    for source in (nested or {}, {k: v for k, v in doc.items() if k not in _EXTENT_KEYS}):
        for k, v in source.items():
            if not isinstance(k, str):
                raise _fail(path, f"attribute names must be text, got {k!r}")
            attrs[k] = format_datetime(v) if isinstance(v, datetime) else v
    meta = DatasetMeta(attrs)
    extent = doc.get("extent")
    if extent is not None and not isinstance(extent, dict):
        raise _fail(path, "extent: expected a mapping with temporal and spatial", "extent")
    extent = extent or {}
    time = doc.get("time", extent.get("temporal"))
    where = "time" if "time" in doc else "extent.temporal"
    if isinstance(time, dict):
        if "start" not in time or "end" not in time:
            raise _fail(path, f"{where}: needs start and end", where)
        meta.time = (_instant(time["start"], path, f"{where}.start"), _instant(time["end"], path, f"{where}.end"))
    elif isinstance(time, list):
        if len(time) != 2:
            raise _fail(path, f"{where}: expected [start, end]", where)
        meta.time = (_instant(time[0], path, f"{where}[0]"), _instant(time[1], path, f"{where}[1]"))
    elif time is not None:
        one = _instant(time, path, where)
        meta.time = (one, one)
    if meta.time is not None and parse_datetime(meta.time[0])[0] > parse_datetime(meta.time[1])[0]:
        raise _fail(path, f"{where}: start {meta.time[0]} is after end {meta.time[1]}", where)
    bbox = doc.get("bbox", extent.get("spatial"))
    if bbox is not None:
        meta.bbox = _bbox(bbox, path, "bbox" if "bbox" in doc else "extent.spatial")
    geometry = doc.get("geometry")
    if geometry is not None:
        if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
            raise _fail(path, "geometry: expected a GeoJSON geometry object", "geometry")
        meta.geometry = geometry
    return meta
