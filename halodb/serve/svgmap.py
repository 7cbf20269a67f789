"""A GeoJSON geometry drawn as a small inline SVG map: no tiles, no scripts, works offline.

Equirectangular (longitude and latitude as x and y, one scale for both), fit to the
geometry with padding, under a graticule labelled in degrees. Lines (a flight track) are
paths, points (sondes, profiles) circles, polygons (a box) filled paths. Coordinates that
are not two finite numbers are left out: the geometry comes from an item, so it is hostile
until drawn. Every number written is one this module computed, so the SVG needs no escaping
except the title, which is escaped.

>>> svg = svg_map({"type": "LineString", "coordinates": [[-59.5, 13.1], [-50.0, 14.0]]})
>>> svg.startswith("<svg") and "<path" in svg and "54°W" in svg
True
>>> svg_map({"type": "Point", "coordinates": [float("nan"), 1]})
Markup('')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

__all__ = ["Bounds", "bounds", "svg_map"]

#: at most this many positions are drawn per map; longer lines are thinned evenly
MAX_POSITIONS = 4000
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0, 90.0)
_LINE = 'fill="none" stroke="#b3261e" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"'
_AREA = 'fill="#b3261e" fill-opacity="0.18" stroke="#b3261e" stroke-width="1.5" fill-rule="evenodd"'
_FOOT = 'fill="none" stroke="#5a6b7b" stroke-width="1" stroke-opacity="0.8"'
_POINT = 'fill="#b3261e" stroke="#ffffff" stroke-width="1"'
_BOX = 'fill="none" stroke="#1f4e79" stroke-width="1.5" stroke-dasharray="5 3"'

Position = tuple[float, float]


@dataclass(frozen=True)
class Bounds:
    """A lon/lat box: ``west``, ``south``, ``east``, ``north`` in degrees."""

    west: float
    south: float
    east: float
    north: float

    def union(self, other: Bounds) -> Bounds:
        """The smallest box holding both.

        >>> Bounds(0, 0, 1, 1).union(Bounds(-1, 0.5, 0.5, 2))
        Bounds(west=-1, south=0, east=1, north=2)
        """
        return Bounds(min(self.west, other.west), min(self.south, other.south),
                      max(self.east, other.east), max(self.north, other.north))


def _position(value: Any) -> Position | None:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        return None
    x, y = value[0], value[1]
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return None
    if not (math.isfinite(x) and math.isfinite(y)) or abs(x) > 360 or abs(y) > 90:
        return None
    return float(x), float(y)


def _ring(value: Any) -> list[Position]:
    if not isinstance(value, (list, tuple)):
        return []
    return [p for p in map(_position, value) if p is not None]


def _parts(geometry: Any, depth: int = 0) -> Iterator[tuple[str, list[list[Position]]]]:
    """``(kind, rings)`` for each drawable part: kind is point, line or area."""
    if not isinstance(geometry, Mapping) or depth > 4:
        return
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Point":
        p = _position(coords)
        if p is not None:
            yield "point", [[p]]
    elif kind == "MultiPoint":
        points = _ring(coords)
        if points:
            yield "point", [points]
    elif kind == "LineString":
        line = _ring(coords)
        if line:
            yield "line", [line]
    elif kind == "MultiLineString" and isinstance(coords, (list, tuple)):
        lines = [r for r in map(_ring, coords) if r]
        if lines:
            yield "line", lines
    elif kind == "Polygon" and isinstance(coords, (list, tuple)):
        rings = [r for r in map(_ring, coords) if r]
        if rings:
            yield "area", rings
    elif kind == "MultiPolygon" and isinstance(coords, (list, tuple)):
        for polygon in coords:
            if isinstance(polygon, (list, tuple)):
                rings = [r for r in map(_ring, polygon) if r]
                if rings:
                    yield "area", rings
    elif kind == "GeometryCollection" and isinstance(geometry.get("geometries"), (list, tuple)):
        for member in geometry["geometries"]:
            yield from _parts(member, depth + 1)


def _bounds_of(positions: Iterable[Position]) -> Bounds | None:
    xs: list[float] = []
    ys: list[float] = []
    for x, y in positions:
        xs.append(x)
        ys.append(y)
    return Bounds(min(xs), min(ys), max(xs), max(ys)) if xs else None


def bounds(geometry: Any) -> Bounds | None:
    """The lon/lat box of a GeoJSON geometry (None when it has no valid position).

    >>> bounds({"type": "MultiPoint", "coordinates": [[-20, 10], [-25, 14.5]]})
    Bounds(west=-25.0, south=10.0, east=-20.0, north=14.5)
    """
    return _bounds_of(p for _, rings in _parts(geometry) for ring in rings for p in ring)


def bbox_bounds(bbox: Any) -> Bounds | None:
    """A STAC ``bbox`` (2D or 3D) as :class:`Bounds`, or None when it is not one. West may
    be greater than east: the box crosses the antimeridian.

    >>> bbox_bounds([-60, 10, -20, 18])
    Bounds(west=-60.0, south=10.0, east=-20.0, north=18.0)
    >>> bbox_bounds([1, 2, "x", 4]) is None, bbox_bounds([1, 5, 2, 4]) is None
    (True, True)
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) not in (4, 6):
        return None
    half = len(bbox) // 2
    low, high = _position(bbox[0:2]), _position(bbox[half:half + 2])
    if low is None or high is None or low[1] > high[1]:
        return None
    return Bounds(low[0], low[1], high[0], high[1])


def _box(b: Bounds) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[b.west, b.south], [b.east, b.south], [b.east, b.north],
                                                [b.west, b.north], [b.west, b.south]]]}


class _Frame:
    """Degrees to pixels for a ``width`` x ``height`` picture showing ``b`` (padded, aspect kept)."""

    def __init__(self, b: Bounds, width: int, height: int) -> None:
        span_x = max(b.east - b.west, 0.2)
        span_y = max(b.north - b.south, 0.2)
        cx, cy = (b.west + b.east) / 2, (b.south + b.north) / 2
        # pad by 12% and widen the narrower side so one degree is as long on both axes
        scale = min(width / (span_x * 1.24), height / (span_y * 1.24))
        self.width, self.height, self.scale = width, height, scale
        self.west = cx - width / scale / 2
        self.north = cy + height / scale / 2
        self.east = self.west + width / scale
        self.south = self.north - height / scale

    def x(self, lon: float) -> float:
        return round((lon - self.west) * self.scale, 1)

    def y(self, lat: float) -> float:
        return round((self.north - lat) * self.scale, 1)


def _number(v: float) -> str:
    return f"{v:g}"


def _label(value: float, step: float, positive: str, negative: str) -> str:
    """``20°W``, ``12.5°N``, ``0°``: as many decimals as the graticule step needs (longitudes
    beyond 180°E, drawn so across the antimeridian, read as west)."""
    if positive == "E" and value > 180:
        value -= 360
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step == 0.25:
        decimals += 1
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return "0°"
    return f"{text}°{positive if value > 0 else negative}"


def _step(span: float) -> float:
    """The graticule step: the smallest nice step giving at most seven lines across ``span``."""
    return next((s for s in _STEPS if span / s <= 7), 90.0)


def _lines(low: float, high: float, step: float) -> list[float]:
    """The multiples of ``step`` from ``low`` to ``high``, where the grid draws its lines.

    >>> _lines(-23.5, -10.0, 5.0)
    [-20.0, -15.0, -10.0]
    """
    first = math.ceil(low / step)
    return [n * step for n in range(first, math.floor(high / step) + 1)]


def _graticule(frame: _Frame, labels: bool) -> list[str]:
    out: list[str] = []
    step = _step(max(frame.east - frame.west, frame.north - frame.south))
    d: list[str] = []
    texts: list[str] = []
    for lon in _lines(frame.west, frame.east, step):
        x = frame.x(lon)
        d.append(f"M{_number(x)} 0V{frame.height}")
        if labels and 20 < x < frame.width - 30:
            texts.append(f'<text x="{_number(x + 3)}" y="{frame.height - 4}">{_label(lon, step, "E", "W")}</text>')
    for lat in _lines(frame.south, frame.north, step):
        y = frame.y(lat)
        d.append(f"M0 {_number(y)}H{frame.width}")
        if labels and 20 < y < frame.height - 20:
            texts.append(f'<text x="3" y="{_number(y - 3)}">{_label(lat, step, "N", "S")}</text>')
    if d:
        out.append(f'<path class="graticule" d="{"".join(d)}" fill="none" stroke="#9fb3c8" stroke-width="0.6"/>')
    if texts:
        out.append('<g class="labels" font-family="sans-serif" font-size="10" fill="#3d4f60">' + "".join(texts) + "</g>")
    return out


def _thin(parts: list[tuple[str, list[list[Position]]]]) -> list[tuple[str, list[list[Position]]]]:
    total = sum(len(ring) for _, rings in parts for ring in rings)
    if total <= MAX_POSITIONS:
        return parts
    stride = math.ceil(total / MAX_POSITIONS)
    return [(kind, [ring[::stride] + ([ring[-1]] if (len(ring) - 1) % stride else []) for ring in rings])
            for kind, rings in parts]


def _draw(frame: _Frame, kind: str, rings: list[list[Position]], style: str, radius: float) -> str:
    if kind == "point":
        return "".join(f'<circle cx="{_number(frame.x(x))}" cy="{_number(frame.y(y))}" r="{radius:g}" {style}/>'
                       for ring in rings for x, y in ring)
    d = []
    for ring in rings:
        moves = "L".join(f"{_number(frame.x(x))} {_number(frame.y(y))}" for x, y in ring)
        d.append(f"M{moves}{'Z' if kind == 'area' else ''}")
    cls = "track" if kind == "line" else "area"
    return f'<path class="{cls}" d="{"".join(d)}" {style}/>'


def svg_map(
    geometry: Any,
    *,
    bbox: Any = None,
    footprints: Sequence[Any] = (),
    width: int = 480,
    height: int = 300,
    labels: bool = True,
    title: str = "",
) -> Markup:
    """An ``<svg>`` showing ``geometry`` (and a STAC ``bbox`` drawn dashed, and ``footprints``,
    other geometries drawn thin, e.g. a collection's items); ``Markup("")`` when there is
    nothing valid to draw. ``title`` becomes the SVG's accessible name (escaped).

    >>> svg = svg_map(None, bbox=[-60, 10, -20, 18], title="<b>")
    >>> "stroke-dasharray" in svg, "&lt;b&gt;" in svg
    (True, True)
    """
    parts = _thin(list(_parts(geometry)))
    feet = _thin([p for f in footprints for p in _parts(f)])
    box = bbox_bounds(bbox)
    everything = [p for _, rings in parts + feet for ring in rings for p in ring]
    lons = [x for x, _ in everything]
    if (box is not None and box.west > box.east) or (lons and max(lons) - min(lons) > 180):
        # across the antimeridian: draw west longitudes one turn further east, so the parts meet
        parts, feet = _eastward(parts), _eastward(feet)
        everything = [p for _, rings in parts + feet for ring in rings for p in ring]
        if box is not None:
            box = Bounds(box.west + (360 if box.west < 0 else 0), box.south,
                         box.east + (360 if box.east < 0 else 0), box.north)
    extent = _bounds_of(everything)
    if box is not None:
        extent = box if extent is None else extent.union(box)
    if extent is None:
        return Markup("")
    frame = _Frame(extent, width, height)
    body = [f'<rect width="{width}" height="{height}" fill="#eef4f8"/>', *_graticule(frame, labels)]
    if box is not None:
        body.append(_draw(frame, "area", _parts_of_box(box), _BOX, 0).replace('class="area"', 'class="bbox"'))
    body.extend(_draw(frame, kind, rings, _FOOT if kind != "point" else _POINT, 2) for kind, rings in feet)
    body.extend(_draw(frame, kind, rings, _LINE if kind == "line" else _AREA if kind == "area" else _POINT, 3.5)
                for kind, rings in parts)
    name = f"<title>{escape(title)}</title>" if title else ""
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="map" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img">{name}{"".join(body)}'
        f'<rect width="{width}" height="{height}" fill="none" stroke="#9fb3c8"/></svg>'
    )


def _eastward(parts: list[tuple[str, list[list[Position]]]]) -> list[tuple[str, list[list[Position]]]]:
    return [(kind, [[(x + 360 if x < 0 else x, y) for x, y in ring] for ring in rings]) for kind, rings in parts]


def _parts_of_box(b: Bounds) -> list[list[Position]]:
    return next(rings for _, rings in _parts(_box(b)))
