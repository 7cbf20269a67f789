"""Geometry for the STAC API search: ``bbox``, ``intersects`` and CQL2's spatial operators.

DuckDB's spatial extension is not used (it is built for another DuckDB release). Instead the
SQL this module writes prefilters rows with the item's 2D bbox columns (``i.xmin`` ..
``i.ymax``) and only for rows whose bbox passes calls ``halodb_spatial(op, wkb, query)``,
a vectorized shapely function that :func:`register` adds to a connection::

    CASE WHEN i.wkb IS NULL THEN NULL            -- no geometry: unknown, never matched
         WHEN NOT (<bbox overlaps>) THEN false   -- (true for s_disjoint)
         ELSE halodb_spatial('intersects', i.wkb, ?) END

DuckDB evaluates a CASE branch only for the rows that reach it, so the exact test runs on
the few rows whose bbox overlaps the query. The ``bbox`` and ``intersects`` search
parameters, never negated, put the overlap before the CASE as plain comparisons DuckDB
pushes into its scan (:class:`IntersectsQuery`); the snapshot's arrays answer them the same
way without SQL (``halodb/serve/arrays.py``, with :func:`intersects_exactly`). Geometry is planar in longitude/latitude, as
GeoJSON (RFC 7946) says; an item that crosses the antimeridian should be split at it (a
bbox column pair with ``xmin > xmax`` is understood as crossing, too), and a ``bbox`` whose
west is east of its east crosses the antimeridian.

>>> parse_bbox("170,-10,-170,10")
[170.0, -10.0, -170.0, 10.0]
>>> bbox_geometry([170.0, -10.0, -170.0, 10.0]).geom_type
'MultiPolygon'
>>> parse_geometry({"type": "Point", "coordinates": [8.5, 47.4]}, "intersects").wkt
'POINT (8.5 47.4)'
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import duckdb.func
import numpy as np
import pyarrow as pa
import shapely
import shapely.errors
import shapely.geometry

from halodb.errors import RequestError

__all__ = [
    "MAX_POSITIONS",
    "SPATIAL_OPERATORS",
    "IntersectsQuery",
    "Sql",
    "bbox_geometry",
    "bbox_sql",
    "evaluate",
    "intersects_exactly",
    "intersects_sql",
    "parse_bbox",
    "parse_geometry",
    "predicate_sql",
    "register",
    "self_predicate_sql",
]

#: The most positions (coordinate pairs) a query geometry may have.
MAX_POSITIONS = 100_000
#: The most a GeometryCollection may nest.
MAX_COLLECTION_DEPTH = 8
#: The longest GeoJSON text accepted for a geometry (GET ``intersects=``).
MAX_GEOJSON_CHARS = 8 * 1024 * 1024

#: The name of the SQL function :func:`register` adds.
FUNCTION = "halodb_spatial"

#: CQL2's spatial operators (without ``s_``) and the shapely predicate of each.
SPATIAL_OPERATORS: dict[str, Callable[..., Any]] = {
    "intersects": shapely.intersects,
    "disjoint": shapely.disjoint,
    "equals": shapely.equals,
    "touches": shapely.touches,
    "within": shapely.within,
    "contains": shapely.contains,
    "overlaps": shapely.overlaps,
    "crosses": shapely.crosses,
}
#: ``op(a, b)`` is ``CONVERSE[op](b, a)``.
CONVERSE = {"within": "contains", "contains": "within"}

# GeoJSON type -> how deep its "coordinates" nest above a position (0: a position).
_NESTING = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


@dataclass(frozen=True)
class Sql:
    """A piece of SQL and the values of its ``?`` parameters, in order.

    >>> sql("{} AND {}", Sql("i.x > ?", (1,)), 2)
    Sql(text='i.x > ? AND ?', params=(1, 2))
    """

    text: str
    params: tuple[Any, ...] = ()


def sql(template: str, *parts: Sql | Any) -> Sql:
    """Fill each ``{}`` of ``template`` with a part: an :class:`Sql` is inserted with its
    parameters, any other value becomes a ``?`` parameter (never text in the SQL)."""
    texts: list[str] = []
    params: list[Any] = []
    for part in parts:
        if isinstance(part, Sql):
            texts.append(part.text)
            params.extend(part.params)
        else:
            texts.append("?")
            params.append(part)
    return Sql(template.format(*texts), tuple(params))


# --- parsing ---------------------------------------------------------------------------
def _fail(parameter: str, message: str) -> RequestError:
    return RequestError(f"{parameter}: {message}", parameter=parameter)


def _number(value: Any, parameter: str, what: str) -> float:
    """A finite float from a JSON number or (GET) text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(parameter, f"{what} is not a number: {_show(value)}")
    try:
        number = float(value)
    except ValueError:
        raise _fail(parameter, f"{what} is not a number: {_show(value)}") from None
    if not math.isfinite(number):
        raise _fail(parameter, f"{what} is not a finite number: {_show(value)}")
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_lon_lat(x: float, y: float, parameter: str, where: str) -> None:
    if not -180.0 <= x <= 180.0:
        raise _fail(parameter, f"longitude {x} {where} is outside [-180, 180]")
    if not -90.0 <= y <= 90.0:
        raise _fail(parameter, f"latitude {y} {where} is outside [-90, 90]")


def parse_bbox(value: str | list[Any], parameter: str = "bbox") -> list[float]:
    """A ``bbox`` from GET text ``"w,s,e,n"`` (or ``"w,s,zmin,e,n,zmax"``) or a POST list.

    West may be east of east: the box then crosses the antimeridian.

    >>> parse_bbox([-10, 40, 10.5, 50])
    [-10.0, 40.0, 10.5, 50.0]
    >>> parse_bbox("1,2,3")
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: bbox: needs 4 numbers (west, south, east, north) or 6 (with heights), got 3
    """
    if isinstance(value, str):
        items: Sequence[Any] = [part.strip() for part in value.split(",")] if value.strip() else []
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise _fail(parameter, f"is not a list of numbers: {_show(value)}")
    if len(items) not in (4, 6):
        raise _fail(parameter, f"needs 4 numbers (west, south, east, north) or 6 (with heights), got {len(items)}")
    numbers = [_number(v, parameter, f"value {n + 1}") for n, v in enumerate(items)]
    west, south, east, north = bbox_2d(numbers)
    _check_lon_lat(west, south, parameter, "(west, south)")
    _check_lon_lat(east, north, parameter, "(east, north)")
    if south > north:
        raise _fail(parameter, f"south {south} is north of north {north}")
    if len(numbers) == 6 and numbers[2] > numbers[5]:
        raise _fail(parameter, f"the lower height {numbers[2]} is above the upper height {numbers[5]}")
    return numbers


def bbox_2d(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """West, south, east, north of a 4- or 6-number bbox.

    >>> bbox_2d([1, 2, 0, 3, 4, 100])
    (1, 2, 3, 4)
    """
    if len(bbox) == 6:
        return bbox[0], bbox[1], bbox[3], bbox[4]
    return bbox[0], bbox[1], bbox[2], bbox[3]


def _boxes(bbox: Sequence[float]) -> list[tuple[float, float, float, float]]:
    """The bbox as one or (crossing the antimeridian) two non-crossing boxes."""
    west, south, east, north = bbox_2d(bbox)
    if west > east:
        return [(west, south, 180.0, north), (-180.0, south, east, north)]
    return [(west, south, east, north)]


def bbox_geometry(bbox: Sequence[float]) -> shapely.Geometry:
    """The bbox as a polygon, or two (a MultiPolygon) when it crosses the antimeridian."""
    boxes = [shapely.box(*b) for b in _boxes(bbox)]
    return boxes[0] if len(boxes) == 1 else shapely.MultiPolygon(boxes)


def parse_geometry(value: Any, parameter: str) -> shapely.Geometry:
    """A GeoJSON geometry (a dict, or its JSON text) as a shapely geometry, checked.

    Refused, naming the problem: not an object, an unknown ``type``, coordinates of the
    wrong shape, NaN or infinity, a longitude outside [-180, 180] or a latitude outside
    [-90, 90], an unclosed or too short ring, an empty or invalid (self-intersecting)
    geometry, more than :data:`MAX_POSITIONS` positions.

    >>> parse_geometry({"type": "LineString", "coordinates": [[0, 0], [1, 91]]}, "intersects")
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: intersects: latitude 91.0 at coordinates[1] is outside [-90, 90]
    """
    if isinstance(value, str):
        if len(value) > MAX_GEOJSON_CHARS:
            raise _fail(parameter, f"the GeoJSON is longer than {MAX_GEOJSON_CHARS} characters")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _fail(parameter, f"is not GeoJSON: {exc}") from None
    budget = [MAX_POSITIONS]
    _check_geometry(value, parameter, "", budget, 0)
    geometry = shapely.geometry.shape(value)
    if geometry.is_empty:
        raise _fail(parameter, f"the {value['type']} is empty")
    if not geometry.is_valid:
        raise _fail(parameter, f"the {value['type']} is not valid: {shapely.is_valid_reason(geometry)}")
    return geometry


def _check_geometry(value: Any, parameter: str, where: str, budget: list[int], depth: int) -> None:
    """Check one GeoJSON geometry object (recursing into GeometryCollections, bounded)."""
    if not isinstance(value, dict):
        raise _fail(parameter, f"{where or 'the geometry'} is not a GeoJSON geometry object: {_show(value)}")
    kind = value.get("type")
    if kind == "GeometryCollection":
        if depth >= MAX_COLLECTION_DEPTH:
            raise _fail(parameter, f"GeometryCollections nest deeper than {MAX_COLLECTION_DEPTH}")
        members = value.get("geometries")
        if not isinstance(members, list):
            raise _fail(parameter, f"{where}geometries is not a list")
        if not members:
            raise _fail(parameter, "the GeometryCollection is empty")
        for n, member in enumerate(members):
            _check_geometry(member, parameter, f"{where}geometries[{n}].", budget, depth + 1)
        return
    if kind not in _NESTING:
        known = ", ".join([*_NESTING, "GeometryCollection"])
        raise _fail(parameter, f"{where}type {_show(kind)} is not a GeoJSON geometry type ({known})")
    coordinates = value.get("coordinates")
    _check_coordinates(coordinates, _NESTING[kind], kind, parameter, f"{where}coordinates", budget)


def _check_coordinates(value: Any, nesting: int, kind: str, parameter: str, where: str, budget: list[int]) -> None:
    if nesting == 0:
        _check_position(value, parameter, where, budget)
        return
    if not isinstance(value, list):
        raise _fail(parameter, f"{where} of the {kind} is not a list: {_show(value)}")
    if not value:
        raise _fail(parameter, f"{where} of the {kind} is empty")
    for n, member in enumerate(value):
        _check_coordinates(member, nesting - 1, kind, parameter, f"{where}[{n}]", budget)
    if nesting == 1 and kind in ("LineString", "MultiLineString") and len(value) < 2:
        raise _fail(parameter, f"{where}: a line needs at least 2 positions, got {len(value)}")
    if nesting == 1 and kind in ("Polygon", "MultiPolygon"):
        if len(value) < 4:
            raise _fail(parameter, f"{where}: a polygon ring needs at least 4 positions, got {len(value)}")
        if value[0][:2] != value[-1][:2]:
            raise _fail(parameter, f"{where}: the polygon ring is not closed (its first and last positions differ)")


def _check_position(value: Any, parameter: str, where: str, budget: list[int]) -> None:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise _fail(parameter, f"{where} is not a position [longitude, latitude(, height)]: {_show(value)}")
    numbers = [_number(v, parameter, f"{where}[{n}]") for n, v in enumerate(value)]
    if any(isinstance(v, str) for v in value):
        raise _fail(parameter, f"{where} holds text, not numbers: {_show(value)}")
    _check_lon_lat(numbers[0], numbers[1], parameter, f"at {where}")
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail(parameter, f"the geometry has more than {MAX_POSITIONS} positions")


# --- SQL -------------------------------------------------------------------------------
def _overlaps_box(box: tuple[float, float, float, float]) -> Sql:
    """Rows whose bbox overlaps a box that does not cross the antimeridian; an item bbox with
    ``xmin > xmax`` crosses it and covers [xmin, 180] and [-180, xmax]."""
    west, south, east, north = box
    return sql(
        "(i.ymin <= {} AND i.ymax >= {} AND ((i.xmin <= {} AND i.xmax >= {})"
        " OR (i.xmin > i.xmax AND (i.xmin <= {} OR i.xmax >= {}))))",
        north, south, east, west, east, west,
    )


def _inside_box(box: tuple[float, float, float, float]) -> Sql:
    west, south, east, north = box
    return sql("(i.xmin >= {} AND i.xmax <= {} AND i.ymin >= {} AND i.ymax <= {} AND i.xmin <= i.xmax)",
               west, east, south, north)


def _any(parts: list[Sql]) -> Sql:
    return parts[0] if len(parts) == 1 else sql("(" + " OR ".join(["{}"] * len(parts)) + ")", *parts)


def _prefiltered(op: str, geometry: shapely.Geometry, boxes: list[tuple[float, float, float, float]],
                 inside_is_true: bool) -> Sql:
    """The CASE that tests ``op(item geometry, geometry)`` exactly only where the bboxes overlap."""
    if op not in SPATIAL_OPERATORS:
        raise ValueError(f"unknown spatial operator {op!r}")
    overlap = _any([_overlaps_box(b) for b in boxes])
    outside = "true" if op == "disjoint" else "false"
    shortcut = Sql("")
    if inside_is_true:
        shortcut = sql(" WHEN {} THEN true", _any([_inside_box(b) for b in boxes]))
    # op comes from the fixed table above: it is SQL text, not a value from the request
    return sql("(CASE WHEN i.wkb IS NULL THEN NULL WHEN NOT {} THEN " + outside + "{} ELSE "
               + FUNCTION + "('" + op + "', i.wkb, {}) END)",
               overlap, shortcut, shapely.to_wkb(geometry))


def predicate_sql(op: str, geometry: shapely.Geometry) -> Sql:
    """SQL for ``op(item geometry, geometry)``, op one of :data:`SPATIAL_OPERATORS`.

    Every operator but ``disjoint`` implies that the geometries intersect, so a row whose
    bbox misses the geometry's bbox is decided without the exact test.

    >>> predicate_sql("within", shapely.box(0, 0, 1, 1)).text.count("?")
    7
    """
    return _prefiltered(op, geometry, _geometry_boxes(geometry), inside_is_true=False)


#: A multi-part geometry of at most this many parts is prefiltered part by part.
_MAX_PART_BOXES = 8


def _geometry_boxes(geometry: shapely.Geometry) -> list[tuple[float, float, float, float]]:
    """The bbox of each part of a multi-part geometry (e.g. a polygon split at the
    antimeridian: two narrow boxes, not one around the world), or of the whole.

    >>> _geometry_boxes(bbox_geometry([170, 0, -170, 10]))
    [(170.0, 0.0, 180.0, 10.0), (-180.0, 0.0, -170.0, 10.0)]
    """
    parts = shapely.get_parts(geometry)
    bounds = np.atleast_2d(shapely.bounds(parts if 1 < len(parts) <= _MAX_PART_BOXES else geometry))
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in bounds]


def self_predicate_sql(op: str) -> Sql:
    """SQL for ``op(geometry, geometry)`` on the item's own geometry (property vs property)."""
    if op not in SPATIAL_OPERATORS:
        raise ValueError(f"unknown spatial operator {op!r}")
    return Sql(f"(CASE WHEN i.wkb IS NULL THEN NULL ELSE {FUNCTION}('{op}', i.wkb, i.wkb) END)")


def intersects_sql(geometry: shapely.Geometry) -> tuple[str, list[Any]]:
    """SQL (and parameters) for the search parameter ``intersects``.

    >>> text, params = intersects_sql(shapely.Point(1, 2))
    >>> FUNCTION in text, len(params)
    (True, 7)
    """
    query = _intersects_conjunct(IntersectsQuery.of_geometry(geometry))
    return query.text, list(query.params)


def bbox_sql(bbox: list[float]) -> tuple[str, list[Any]]:
    """SQL (and parameters) for the search parameter ``bbox``: items whose geometry
    intersects the box (both boxes when it crosses the antimeridian). An item whose own
    bbox lies inside the box matches without the exact test.

    >>> text, params = bbox_sql([170.0, -10.0, -170.0, 10.0])
    >>> params[:4]
    [10.0, -10.0, 180.0, 170.0]
    """
    query = _intersects_conjunct(IntersectsQuery.of_bbox(bbox))
    return query.text, list(query.params)


@dataclass(frozen=True)
class IntersectsQuery:
    """What the ``bbox`` and ``intersects`` search parameters ask: items whose geometry
    intersects ``geometry``. ``boxes``: the bbox prefilter (one box per part, none crossing
    the antimeridian); ``inside_is_true``: an item whose own bbox lies inside a box matches
    without the exact test (true for ``bbox``, whose geometry is the boxes themselves).

    >>> IntersectsQuery.of_bbox([170, -10, -170, 10]).boxes
    [(170.0, -10.0, 180.0, 10.0), (-180.0, -10.0, -170.0, 10.0)]
    """

    geometry: shapely.Geometry
    boxes: list[tuple[float, float, float, float]]
    inside_is_true: bool

    @classmethod
    def of_bbox(cls, bbox: Sequence[float]) -> IntersectsQuery:
        return cls(bbox_geometry(bbox), [tuple(float(v) for v in b) for b in _boxes(bbox)],  # type: ignore[misc]
                   inside_is_true=True)

    @classmethod
    def of_geometry(cls, geometry: shapely.Geometry) -> IntersectsQuery:
        return cls(geometry, _geometry_boxes(geometry), inside_is_true=False)


def _intersects_conjunct(query: IntersectsQuery) -> Sql:
    """``intersects(item geometry, geometry)`` for a condition ANDed with the others of a
    search (never negated): the bbox overlap as plain comparisons, which DuckDB pushes into
    the scan, then the CASE of the exact test for the rows that pass (an item with no
    geometry is NULL there: not matched)."""
    shortcut = sql(" WHEN {} THEN true", _any([_inside_box(b) for b in query.boxes])) if query.inside_is_true \
        else Sql("")
    return sql("{} AND (CASE WHEN i.wkb IS NULL THEN NULL{} ELSE " + FUNCTION + "('intersects', i.wkb, {}) END)",
               _any([_overlaps_box(b) for b in query.boxes]), shortcut, shapely.to_wkb(query.geometry))


def intersects_exactly(wkb: np.ndarray[Any, Any], geometry: shapely.Geometry) -> np.ndarray[Any, Any]:
    """For each WKB value, whether its geometry intersects ``geometry``; False for a NULL, an
    unreadable value, or one GEOS cannot test (as ``halodb_spatial`` answers NULL for them).

    >>> intersects_exactly(np.array([shapely.to_wkb(shapely.Point(1, 1)), None], dtype=object), shapely.box(0, 0, 2, 2))
    array([ True, False])
    """
    result, _ = _test(SPATIAL_OPERATORS["intersects"], shapely.from_wkb(wkb, on_invalid="ignore"),
                      _query_geometry(shapely.to_wkb(geometry)))
    return result  # False where unknown


def evaluate(op: str, left: shapely.Geometry, right: shapely.Geometry) -> bool:
    """``op(left, right)`` for two literal geometries (a constant of a CQL2 filter).

    >>> evaluate("contains", shapely.box(0, 0, 2, 2), shapely.Point(1, 1))
    True
    """
    return bool(SPATIAL_OPERATORS[op](left, right))


# --- the SQL function --------------------------------------------------------------------
class _PreparedCache(threading.local):
    """Each thread's query geometries by WKB, prepared (a prepared GEOS geometry is not
    safe to share between threads)."""

    def __init__(self) -> None:
        self.geometries: dict[bytes, shapely.Geometry] = {}


_prepared = _PreparedCache()
_MAX_PREPARED = 16


def _query_geometry(wkb: bytes) -> shapely.Geometry:
    cache = _prepared.geometries
    geometry = cache.get(wkb)
    if geometry is None:
        geometry = shapely.from_wkb(wkb)
        shapely.prepare(geometry)
        if len(cache) >= _MAX_PREPARED:
            cache.pop(next(iter(cache)))
        cache[wkb] = geometry
    return geometry


def _spatial_udf(op: pa.Array, wkb: pa.Array, query: pa.Array) -> pa.Array:
    """``halodb_spatial(op, wkb, query)`` over one vector of rows (NULL in, NULL out)."""
    ops = op.to_numpy(zero_copy_only=False)
    items = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False), on_invalid="ignore")
    queries = query.to_numpy(zero_copy_only=False)
    result = np.zeros(len(items), dtype=bool)
    valid = np.ones(len(items), dtype=bool)
    groups: dict[tuple[str, bytes], list[int]] = {}
    if len(items) and all(o == ops[0] for o in ops) and all(q == queries[0] for q in queries):
        groups[(ops[0], queries[0])] = list(range(len(items)))
    else:
        for n, key in enumerate(zip(ops, queries, strict=True)):
            groups.setdefault(key, []).append(n)
    for (name, query_wkb), rows in groups.items():
        if name is None or query_wkb is None:
            valid[rows] = False
            continue
        index = np.asarray(rows)
        result[index], valid[index] = _test(SPATIAL_OPERATORS[name], items[index], _query_geometry(query_wkb))
    return pa.array(result, mask=~valid)


def _test(predicate: Callable[..., Any], items: np.ndarray[Any, Any],
          query: shapely.Geometry) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``predicate(item, query)`` for each item geometry, and which answers are known (not
    for a missing or unreadable geometry, nor one GEOS cannot test)."""
    valid = ~shapely.is_missing(items)
    try:
        result = np.asarray(predicate(items, query), dtype=bool)
    except shapely.errors.GEOSException:  # an item geometry GEOS cannot test: unknown
        result = np.zeros(len(items), dtype=bool)
        for n in range(len(items)):
            try:
                result[n] = bool(predicate(items[n], query))
            except shapely.errors.GEOSException:
                valid[n] = False
    return result & valid, valid


_register_lock = threading.Lock()


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Add ``halodb_spatial`` to the database of ``con`` (a connection or a cursor).

    A function is added to the database, not to the one cursor: every cursor of it sees
    the function, and registering again is a no-op.

    >>> con = duckdb.connect()
    >>> register(con.cursor()); register(con.cursor())
    >>> con.execute("SELECT halodb_spatial('intersects', ?, ?)",
    ...             [shapely.to_wkb(shapely.Point(0, 0)), shapely.to_wkb(shapely.box(-1, -1, 1, 1))]).fetchall()
    [(True,)]
    """
    with _register_lock:
        if _registered(con):
            return
        try:
            con.create_function(
                FUNCTION, _spatial_udf,
                [duckdb.sqltype("VARCHAR"), duckdb.sqltype("BLOB"), duckdb.sqltype("BLOB")],
                duckdb.sqltype("BOOLEAN"), type=duckdb.func.ARROW, null_handling=duckdb.func.SPECIAL, side_effects=False,
            )
        except (duckdb.CatalogException, duckdb.NotImplementedException):
            if not _registered(con):  # another connection of this database added it first
                raise


def _registered(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [FUNCTION]).fetchall()
    return bool(rows and rows[0][0])  # fetchall: a half-read result blocks the connection
