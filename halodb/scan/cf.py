"""CF conventions HaloDB needs: time units, fill values, and which variable is what.

Times are decoded exactly (integer nanoseconds, no float rounding for integer data) for
the calendars ``standard``, ``gregorian`` and ``proleptic_gregorian`` (identical after
1582-10-15, the only dates field campaigns have); other calendars are reported, not
guessed (cftime would be needed, and no campaign dataset uses them).

>>> parse_time_units("seconds since 2024-08-09")
TimeUnits(unit_ns=1000000000, epoch_ns=1723161600000000000)
>>> start, end = decode_time_extent(np.array([0, 3600, -999]), {"units": "seconds since 2024-08-09", "_FillValue": -999})
>>> format_instant(start), format_instant(end)
('2024-08-09T00:00:00Z', '2024-08-09T01:00:00Z')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = [
    "CFError",
    "TimeUnits",
    "decode_time_extent",
    "format_instant",
    "is_latitude",
    "is_longitude",
    "is_time",
    "is_vertical",
    "parse_time_units",
    "split_list",
    "valid_values",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNIT_NS = {
    **dict.fromkeys(("nanoseconds", "nanosecond", "ns", "nsec", "nsecs"), 1),
    **dict.fromkeys(("microseconds", "microsecond", "us", "µs", "usec", "usecs"), 1_000),
    **dict.fromkeys(("milliseconds", "millisecond", "ms", "msec", "msecs"), 1_000_000),
    **dict.fromkeys(("seconds", "second", "s", "sec", "secs"), 1_000_000_000),
    **dict.fromkeys(("minutes", "minute", "min", "mins"), 60 * 1_000_000_000),
    **dict.fromkeys(("hours", "hour", "h", "hr", "hrs"), 3600 * 1_000_000_000),
    **dict.fromkeys(("days", "day", "d"), 86400 * 1_000_000_000),
}
_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}
_UNITS = re.compile(r"\s*([A-Za-zµ]+)\s+since\s+(.+?)\s*", re.IGNORECASE)
_REFDATE = re.compile(
    r"(-?\d{1,4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(\.\d*)?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{1,2}(?::?\d{2})?)?"
)
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}
_VERTICAL_NAMES = {
    "altitude", "height", "height_above_mean_sea_level", "air_pressure", "depth", "geopotential_height",
    "height_above_geopotential_datum", "model_level_number",
}


class CFError(ValueError):
    """An attribute does not follow CF (caught by the extractor and reported per attribute)."""


@dataclass(frozen=True)
class TimeUnits:
    """``UNIT since DATE`` as integers: nanoseconds per unit and the epoch in ns since 1970."""

    unit_ns: int
    epoch_ns: int


def parse_time_units(units: str, calendar: str | None = None) -> TimeUnits:
    """Parse CF time units; :class:`CFError` saying what is wrong."""
    if calendar is not None and (not isinstance(calendar, str) or calendar.lower() not in _CALENDARS):
        raise CFError(f"calendar {calendar!r} is not supported (only standard, gregorian, proleptic_gregorian)")
    m = _UNITS.fullmatch(units)
    if m is None:
        raise CFError(f"units {units!r} are not 'UNIT since DATE'")
    unit = m.group(1).lower() if m.group(1) != "µs" else "µs"
    if unit in ("months", "month", "years", "year", "common_years"):
        raise CFError(f"units {units!r}: {unit} have no fixed length; use days or seconds")
    if unit not in _UNIT_NS:
        raise CFError(f"units {units!r}: unknown time unit {m.group(1)!r}")
    r = _REFDATE.fullmatch(m.group(2).strip())
    if r is None:
        raise CFError(f"units {units!r}: reference date {m.group(2)!r} is not 'YYYY-MM-DD[ hh:mm:ss][ zone]'")
    year, month, day = int(r.group(1)), int(r.group(2)), int(r.group(3))
    hour, minute, second = (int(r.group(i) or 0) for i in (4, 5, 6))
    frac = r.group(7) or ""
    zone = r.group(8)
    offset = 0
    if zone and zone not in ("Z", "UTC", "GMT"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hh, mm = (int(digits[:-2]), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
        offset = sign * (hh * 60 + mm) * 60
    if (calendar or "standard").lower() != "proleptic_gregorian" and (year, month, day) < (1582, 10, 15):
        raise CFError(f"units {units!r}: a reference date before 1582-10-15 needs the Julian calendar (cftime)")
    try:
        ref = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as exc:
        raise CFError(f"units {units!r}: invalid reference date ({exc})") from None
    delta = ref - _EPOCH
    epoch_ns = (delta.days * 86400 + delta.seconds - offset) * 1_000_000_000
    if frac.strip("."):
        epoch_ns += int((frac[1:] + "000000000")[:9])
    return TimeUnits(_UNIT_NS[unit], epoch_ns)


def format_instant(ns: int) -> str:
    """Nanoseconds since 1970 as RFC 3339 UTC, ``Z``, fraction only when non-zero.

    >>> format_instant(1723161600_250000000)
    '2024-08-09T00:00:00.25Z'
    """
    seconds, frac = divmod(ns, 1_000_000_000)
    when = _EPOCH + timedelta(seconds=seconds)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if len(text) != 19:  # years before 1000 print without padding on some platforms
        text = f"{when.year:04d}" + text[text.index("-"):]
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


def valid_values(values: np.ndarray[Any, Any], attrs: dict[str, Any], fill_value: Any = None) -> np.ndarray[Any, Any]:
    """The values of an array that are not NaN/NaT, not ``_FillValue``/``missing_value``/``fill_value``,
    and inside ``valid_min``/``valid_max``/``valid_range``; flattened."""
    flat: np.ndarray[Any, Any] = np.asarray(values).ravel()
    if flat.dtype.kind == "M":
        out: np.ndarray[Any, Any] = flat[~np.isnat(flat)]
        return out
    if flat.dtype.kind not in "iufb":
        return flat
    keep = np.ones(flat.shape, dtype=bool)
    if flat.dtype.kind == "f":
        keep &= np.isfinite(flat)
    markers = [attrs.get("_FillValue"), attrs.get("missing_value"), fill_value]
    for marker in markers:
        for m in marker if isinstance(marker, (list, tuple)) else [marker]:
            if isinstance(m, (int, float)) and not isinstance(m, bool) and not (isinstance(m, float) and math.isnan(m)):
                keep &= flat != m
    vrange = attrs.get("valid_range")
    vmin, vmax = attrs.get("valid_min"), attrs.get("valid_max")
    if isinstance(vrange, (list, tuple)) and len(vrange) == 2:
        vmin, vmax = vrange
    if isinstance(vmin, (int, float)) and not isinstance(vmin, bool):
        keep &= flat >= vmin
    if isinstance(vmax, (int, float)) and not isinstance(vmax, bool):
        keep &= flat <= vmax
    return flat[keep]


def unpack(values: np.ndarray[Any, Any], attrs: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Apply ``scale_factor`` and ``add_offset`` (packed data) when present."""
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    if isinstance(scale, (int, float)) or isinstance(offset, (int, float)):
        out = values.astype(np.float64)
        if isinstance(scale, (int, float)):
            out = out * float(scale)
        if isinstance(offset, (int, float)):
            out = out + float(offset)
        return out
    return values


def decode_time_extent(
    values: np.ndarray[Any, Any], attrs: dict[str, Any], fill_value: Any = None
) -> tuple[int, int] | None:
    """First and last instant (ns since 1970) of a CF time variable, ignoring fill values;
    None when every value is missing. :class:`CFError` for bad units or absurd values."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        ok = valid_values(arr, attrs).astype("datetime64[ns]")
        if ok.size == 0:
            return None
        return int(ok.min().astype(np.int64)), int(ok.max().astype(np.int64))
    if arr.dtype.kind not in "iuf":
        raise CFError(f"a time variable must be numeric or datetime64, not {arr.dtype}")
    units = attrs.get("units")
    if not isinstance(units, str):
        raise CFError("a numeric time variable needs 'units' like 'seconds since 2024-08-09'")
    tu = parse_time_units(units, attrs.get("calendar"))
    if arr.dtype == np.int64:  # NaT written as integers (xarray's convention without a _FillValue)
        arr = arr[arr != np.iinfo(np.int64).min]
    ok = valid_values(unpack(arr, attrs) if ("scale_factor" in attrs or "add_offset" in attrs) else arr, attrs, fill_value)
    if ok.size == 0:
        return None
    lo, hi = ok.min().item(), ok.max().item()

    def to_ns(v: int | float) -> int:
        if isinstance(v, int):
            return tu.epoch_ns + v * tu.unit_ns
        return tu.epoch_ns + int((Decimal(v) * tu.unit_ns).to_integral_value())

    start, end = to_ns(lo), to_ns(hi)
    for ns, raw in ((start, lo), (end, hi)):
        year = 1970 + ns / (365.2425 * 86400e9)
        if not 1 <= year < 10000:
            raise CFError(f"value {raw} {units!r} is outside the years 1-9999")
    return start, end


def _units(attrs: dict[str, Any]) -> str:
    u = attrs.get("units")
    return u.strip().lower().replace(" ", "_") if isinstance(u, str) else ""


def is_time(name: str, attrs: dict[str, Any], dtype: np.dtype[Any]) -> bool:
    """A time coordinate: datetime64, ``UNIT since DATE`` units, ``standard_name: time`` or ``axis: T``."""
    if dtype.kind == "M":
        return True
    units = attrs.get("units")
    if isinstance(units, str) and " since " in f" {units.strip().lower()} ":
        return True
    return attrs.get("standard_name") == "time" or attrs.get("axis") in ("T", "t")


def is_latitude(name: str, attrs: dict[str, Any]) -> bool:
    """``standard_name: latitude``, latitude units, or the name ``lat``/``latitude``."""
    return (
        attrs.get("standard_name") == "latitude"
        or _units(attrs) in _LAT_UNITS
        or name.lower() in ("lat", "latitude")
    )


def is_longitude(name: str, attrs: dict[str, Any]) -> bool:
    """``standard_name: longitude``, longitude units, or the name ``lon``/``longitude``."""
    return (
        attrs.get("standard_name") == "longitude"
        or _units(attrs) in _LON_UNITS
        or name.lower() in ("lon", "longitude")
    )


def is_vertical(name: str, attrs: dict[str, Any]) -> bool:
    """A vertical coordinate: ``axis: Z``, a ``positive`` attribute, or a vertical standard name."""
    return (
        attrs.get("axis") in ("Z", "z")
        or attrs.get("positive") in ("up", "down")
        or attrs.get("standard_name") in _VERTICAL_NAMES
        or name.lower() in ("alt", "altitude", "height", "pressure", "pres", "level", "z")
    )


def split_list(value: Any) -> list[str]:
    """A list attribute: a JSON list, or a comma-separated string (commas inside quotes kept).

    >>> split_list('HALO, "dropsondes, Vaisala RD41", ORCESTRA')
    ['HALO', 'dropsondes, Vaisala RD41', 'ORCESTRA']
    """
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if not isinstance(value, str):
        return []
    out: list[str] = []
    for m in re.finditer(r'\s*("([^"]*)"|\'([^\']*)\'|[^,]*)\s*(?:,|$)', value):
        text = m.group(2) if m.group(2) is not None else m.group(3) if m.group(3) is not None else m.group(1)
        if text and text.strip():
            out.append(text.strip())
    return out
