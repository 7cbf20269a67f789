"""GeoJSON geometries for STAC items from latitude/longitude arrays (numpy only).

* :func:`extent_geometry` -- the bounding box as a Polygon (a Point or LineString when it
  has no area);
* :func:`track_geometry` -- a trajectory as a LineString simplified (Douglas-Peucker) to
  at most ``max_points`` positions;
* :func:`points_geometry` -- one position per profile as a MultiPoint.

>>> lon = np.linspace(-60.0, -50.0, 1001); lat = 13.0 + 0.5 * np.sin(lon)
>>> g = track_geometry(lon, lat, max_points=50)
>>> g["type"], 2 <= len(g["coordinates"]) <= 50, g["coordinates"][0], g["coordinates"][-1] == [-50.0, float(lat[-1])]
('LineString', True, [-60.0, 13.152405310551108], True)
>>> bbox_of(lon, lat)[0::2]
[-60.0, -50.0]
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

__all__ = ["bbox_of", "extent_geometry", "normalize_longitude", "points_geometry", "simplify", "track_geometry"]

Geometry = dict[str, Any]


def normalize_longitude(lon: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Longitudes in [-180, 180] (0..360 data is shifted)."""
    lon = np.asarray(lon, dtype=np.float64)
    if lon.size and (np.nanmax(lon) > 180.0 or np.nanmin(lon) < -180.0):
        lon = (lon + 180.0) % 360.0 - 180.0
    return lon


def bbox_of(lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]) -> list[float]:
    """``[west, south, east, north]`` of finite positions (arrays of equal shape)."""
    return [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]


def extent_geometry(bbox: list[float]) -> Geometry:
    """The Polygon of a bbox; a Point or LineString when it is degenerate."""
    w, s, e, n = bbox
    if w == e and s == n:
        return {"type": "Point", "coordinates": [w, s]}
    if w == e or s == n:
        return {"type": "LineString", "coordinates": [[w, s], [e, n]]}
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def simplify(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], max_points: int) -> np.ndarray[Any, Any]:
    """Indices (ascending) of at most ``max_points`` points a Douglas-Peucker split keeps.

    Best first: the segment whose farthest point deviates most is split next, until
    ``max_points`` are kept or the rest lie on the line. The first and last points are
    always kept; each split is one numpy pass over its segment.
    """
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    keep = [0, n - 1]
    heap: list[tuple[float, int, int, int]] = []

    def push(i: int, j: int) -> None:
        if j - i < 2:
            return
        xs, ys = x[i + 1 : j], y[i + 1 : j]
        dx, dy = x[j] - x[i], y[j] - y[i]
        seg2 = dx * dx + dy * dy
        if seg2 == 0.0:
            d2 = (xs - x[i]) ** 2 + (ys - y[i]) ** 2
        else:
            t = np.clip(((xs - x[i]) * dx + (ys - y[i]) * dy) / seg2, 0.0, 1.0)
            d2 = (xs - (x[i] + t * dx)) ** 2 + (ys - (y[i] + t * dy)) ** 2
        k = int(np.argmax(d2))
        if d2[k] > 0.0:
            heapq.heappush(heap, (-float(d2[k]), i, j, i + 1 + k))

    push(0, n - 1)
    while heap and len(keep) < max_points:
        _, i, j, k = heapq.heappop(heap)
        keep.append(k)
        push(i, k)
        push(k, j)
    return np.array(sorted(keep))


def _positions(lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]) -> list[list[float]]:
    return [[float(a), float(b)] for a, b in zip(lon, lat)]


def track_geometry(lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any], *, max_points: int = 200) -> Geometry:
    """A LineString along finite positions in order, simplified to ``max_points``; a Point if they are all one."""
    keep = simplify(lon, lat, max_points)
    coords = _positions(lon[keep], lat[keep])
    # drop consecutive duplicates (an aircraft parked on the apron)
    dedup = [c for i, c in enumerate(coords) if i == 0 or c != coords[i - 1]]
    if len(dedup) < 2:
        return {"type": "Point", "coordinates": dedup[0]}
    return {"type": "LineString", "coordinates": dedup}


def points_geometry(lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]) -> Geometry:
    """A MultiPoint of the distinct positions (in first-seen order); a Point if there is one."""
    seen: dict[tuple[float, float], None] = {}
    for a, b in zip(lon.tolist(), lat.tolist()):
        seen.setdefault((float(a), float(b)), None)
    coords = [list(p) for p in seen]
    if len(coords) == 1:
        return {"type": "Point", "coordinates": coords[0]}
    return {"type": "MultiPoint", "coordinates": coords}
