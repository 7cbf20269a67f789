"""``bbox``, ``intersects`` and the spatial SQL of ``halodb serve`` (halodb/serve/spatial.py).

The SQL (bbox prefilter + the shapely function ``halodb_spatial``) runs in a real in-memory
DuckDB over the generated items of test_serve_cql2; every answer is compared with shapely
evaluated directly in Python on the items' geometries.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import shapely
import shapely.geometry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halodb.errors import RequestError
from halodb.serve import spatial
from halodb.serve.arrays import SearchArrays
from halodb.serve.params import SearchParams
from halodb.serve.snapshot import SCHEMA

from .test_serve_cql2 import ITEMS, Item, select, snapshot

SHAPES = {i.id: shapely.geometry.shape(i.geometry) for i in ITEMS if i.geometry is not None}


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = snapshot(ITEMS)
    yield connection
    connection.close()


def expected(op: str, query: shapely.Geometry) -> set[str]:
    return {n for n, shape in SHAPES.items() if spatial.SPATIAL_OPERATORS[op](shape, query)}


# --- the SQL against shapely -------------------------------------------------------------------
@st.composite
def polygons(draw: st.DrawFn) -> shapely.Geometry:
    x = draw(st.floats(min_value=-180, max_value=175))
    y = draw(st.floats(min_value=-90, max_value=80))
    w = draw(st.floats(min_value=0.01, max_value=180))
    h = draw(st.floats(min_value=0.01, max_value=60))
    x2, y2 = min(x + w, 180.0), min(y + h, 90.0)
    kind = draw(st.sampled_from(["box", "triangle", "star", "multi"]))
    if kind == "box":
        return shapely.box(x, y, x2, y2)
    if kind == "triangle":
        return shapely.Polygon([(x, y), (x2, y), (x, y2)])
    if kind == "star":  # a concave polygon: its bbox is much bigger than it
        cx, cy = (x + x2) / 2, (y + y2) / 2
        points = [(cx + (w / 2 if k % 2 else w / 10) * math.cos(k * math.pi / 5),
                   cy + (h / 2 if k % 2 else h / 10) * math.sin(k * math.pi / 5)) for k in range(10)]
        return shapely.Polygon([(min(max(px, -180), 180), min(max(py, -90), 90)) for px, py in points])
    return shapely.MultiPolygon([shapely.box(x, y, (x + x2) / 2, (y + y2) / 2), shapely.box(-x2, -y2, -x, -y)])


QUERIES = st.one_of(
    polygons(),
    st.builds(lambda x, y: shapely.Point(x, y), st.floats(-180, 180), st.floats(-90, 90)),
    st.builds(lambda a, b: shapely.LineString([a, b]),
              st.tuples(st.floats(-180, 180), st.floats(-90, 90)), st.tuples(st.floats(-180, 180), st.floats(-90, 90))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES, op=st.sampled_from(sorted(spatial.SPATIAL_OPERATORS)))
def test_predicates_match_shapely(con: duckdb.DuckDBPyConnection, query: shapely.Geometry, op: str) -> None:
    """Every operator, on points, tracks, polygons and split antimeridian polygons."""
    if not shapely.is_valid(query) or shapely.is_empty(query):
        return
    predicate = spatial.predicate_sql(op, query)
    assert select(con, predicate.text, list(predicate.params)) == expected(op, query)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES)
def test_intersects_matches_shapely(con: duckdb.DuckDBPyConnection, query: shapely.Geometry) -> None:
    if not shapely.is_valid(query) or shapely.is_empty(query):
        return
    assert select(con, *spatial.intersects_sql(query)) == expected("intersects", query)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(west=st.floats(-180, 180), east=st.floats(-180, 180), south=st.floats(-90, 90), north=st.floats(-90, 90))
def test_bbox_matches_shapely(con: duckdb.DuckDBPyConnection, west: float, east: float, south: float,
                              north: float) -> None:
    """Any box, also one crossing the antimeridian (west > east): both of its parts."""
    south, north = sorted([south, north])
    bbox = [west, south, east, north]
    assert select(con, *spatial.bbox_sql(bbox)) == expected("intersects", spatial.bbox_geometry(bbox))


# --- the antimeridian and missing bboxes, by hand ----------------------------------------------
def _point(n: int, x: float, y: float) -> Item:
    return Item(n, {"type": "Point", "coordinates": [x, y]}, [x, y, x, y], None, None, None,
                {"collection": "c", "platform": None, "instruments": None, "keywords": None, "title": None,
                 "description": None, "halodb:key": f"k{n}", "halodb:data_cid": None, "halodb:path": None})


def test_bbox_across_the_antimeridian() -> None:
    split = _point(4, 0, 0)
    split.geometry = {"type": "MultiPolygon", "coordinates": [
        [[[175, 10], [180, 10], [180, 12], [175, 12], [175, 10]]],
        [[[-180, 10], [-175, 10], [-175, 12], [-180, 12], [-180, 10]]]]}
    split.bbox = [175, 10, -175, 12]  # as STAC writes it: west > east
    no_bbox = _point(5, 179.2, -5)
    no_bbox.bbox = None  # the exact test still finds it
    items = [_point(1, 179.5, 0), _point(2, -179.5, 0), _point(3, 0, 0), split, no_bbox]
    db = snapshot(items)
    try:
        assert select(db, *spatial.bbox_sql([179, -10, -179, 20])) == {"item-0001", "item-0002", "item-0004",
                                                                        "item-0005"}
        assert select(db, *spatial.bbox_sql([-178, 9, -176, 11])) == {"item-0004"}  # the western part
        assert select(db, *spatial.bbox_sql([176, 9, 177, 11])) == {"item-0004"}    # the eastern part
        assert select(db, *spatial.bbox_sql([-1, -1, 1, 1, 0, 100])) == {"item-0003"}  # 3D: the 2D part
        assert select(db, *spatial.bbox_sql([-170, -90, 170, 90])) == {"item-0003"}
        assert select(db, *spatial.intersects_sql(shapely.box(179, -6, 180, -4))) == {"item-0005"}
    finally:
        db.close()


def test_items_without_geometry_never_match(con: duckdb.DuckDBPyConnection) -> None:
    without = {i.id for i in ITEMS if i.geometry is None}
    assert without
    world = [-180.0, -90.0, 180.0, 90.0]
    assert select(con, *spatial.bbox_sql(world)) == set(SHAPES)
    disjoint = spatial.predicate_sql("disjoint", shapely.Point(0, 89.99))
    assert not select(con, f"NOT {disjoint.text}", list(disjoint.params)) & without


def test_function_survives_unreadable_and_invalid_geometry() -> None:
    """Garbage WKB is unknown (NULL, not selected), an invalid polygon is tested, no error."""
    db = snapshot([_point(1, 0.5, 0.5), _point(2, 0.2, 0.2)])
    try:
        bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
        db.execute("UPDATE search_rows SET wkb = ? WHERE id = 'item-0001'", [shapely.to_wkb(bowtie)])
        db.execute("UPDATE search_rows SET wkb = ? WHERE id = 'item-0002'", [b"\x01\x02garbage"])
        assert select(db, *spatial.intersects_sql(shapely.box(0, 0, 1, 1))) == {"item-0001"}
    finally:
        db.close()


def test_register_on_cursors_of_one_database() -> None:
    """The server registers on a per-request cursor: the function belongs to the database,
    so registering again (on any cursor, from many threads at once) is harmless."""
    db = duckdb.connect(":memory:")
    try:
        errors: list[BaseException] = []

        def register() -> None:
            try:
                cur = db.cursor()
                spatial.register(cur)
                cur.close()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=register) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        other = db.cursor()
        spatial.register(other)
        other.execute(SCHEMA)
        other.execute("INSERT INTO items (item_cid, xmin, ymin, xmax, ymax, wkb) VALUES ('c', 0, 0, 2, 2, ?)",
                      [shapely.to_wkb(shapely.box(0, 0, 2, 2))])
        query = spatial.predicate_sql("contains", shapely.Point(1, 1))
        assert other.execute(f"SELECT {query.text} FROM items i", list(query.params)).fetchall() == [(True,)]
    finally:
        db.close()


# --- malformed input ------------------------------------------------------------------------------
def test_parse_bbox_accepts() -> None:
    assert spatial.parse_bbox("-10, 40,10.5,50") == [-10.0, 40.0, 10.5, 50.0]
    assert spatial.parse_bbox([170, -10, 0, -170, 10, 1000]) == [170.0, -10.0, 0.0, -170.0, 10.0, 1000.0]
    assert spatial.parse_bbox([0, 0, 0, 0]) == [0.0, 0.0, 0.0, 0.0]


BAD_BBOXES: list[tuple[Any, str | None]] = [
    ("1,2,3", "needs 4 numbers (west, south, east, north) or 6 (with heights), got 3"),
    ("", "got 0"),
    ([1, 2, 3, 4, 5], "got 5"),
    ("a,2,3,4", "value 1 is not a number: 'a'"),
    ([0, "1", 2, 3], None),
    ([0, True, 2, 3], "value 2 is not a number: True"),
    ([0, None, 2, 3], "value 2 is not a number: None"),
    ("nan,0,1,1", "value 1 is not a finite number: 'nan'"),
    ([0, 0, float("inf"), 1], "value 3 is not a finite number: inf"),
    ([0, 10, 1, 5], "south 10.0 is north of north 5.0"),
    ([0, -91, 1, 5], "latitude -91.0 (west, south) is outside [-90, 90]"),
    ([0, 0, 181, 5], "longitude 181.0 (east, north) is outside [-180, 180]"),
    ([0, 0, 10, 1, 1, 5], "the lower height 10.0 is above the upper height 5.0"),
    ({"w": 1}, "is not a list of numbers"),
]


@pytest.mark.parametrize(("value", "message"), BAD_BBOXES)
def test_parse_bbox_refuses(value: Any, message: str | None) -> None:
    if message is None:  # a numeric string inside a POST list is taken as its number
        assert spatial.parse_bbox(value) == [0.0, 1.0, 2.0, 3.0]
        return
    with pytest.raises(RequestError) as caught:
        spatial.parse_bbox(value, "bbox")
    assert caught.value.parameter == "bbox"
    assert caught.value.message == f"bbox: {message}" or message in caught.value.message


def _ring(n: int) -> list[list[float]]:
    return [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]][:n]


BAD_GEOMETRIES: list[tuple[Any, str]] = [
    ([1, 2], "the geometry is not a GeoJSON geometry object: [1, 2]"),
    ("{oops", "is not GeoJSON"),
    ({"type": "Circle", "coordinates": [0, 0]}, "type 'Circle' is not a GeoJSON geometry type"),
    ({"coordinates": [0, 0]}, "type None is not a GeoJSON geometry type"),
    ({"type": "Point", "coordinates": [0]}, "coordinates is not a position [longitude, latitude(, height)]: [0]"),
    ({"type": "Point", "coordinates": [0, "1"]}, "holds text, not numbers"),
    ({"type": "Point", "coordinates": [0, float("nan")]}, "coordinates[1] is not a finite number: nan"),
    ({"type": "Point", "coordinates": [200, 0]}, "longitude 200.0 at coordinates is outside [-180, 180]"),
    ({"type": "Point", "coordinates": [0, -95]}, "latitude -95.0 at coordinates is outside [-90, 90]"),
    ({"type": "LineString", "coordinates": [[0, 0]]}, "a line needs at least 2 positions, got 1"),
    ({"type": "LineString", "coordinates": {"a": 1}}, "coordinates of the LineString is not a list"),
    ({"type": "Polygon", "coordinates": [_ring(3)]}, "a polygon ring needs at least 4 positions, got 3"),
    ({"type": "Polygon", "coordinates": [[*_ring(4), [0, 0.5]]]}, "the polygon ring is not closed"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
     "the Polygon is not valid: Self-intersection"),
    ({"type": "MultiPoint", "coordinates": []}, "coordinates of the MultiPoint is empty"),
    ({"type": "MultiPolygon", "coordinates": [[_ring(5)], [[[0, 0], [1, 0], [0, 0]]]]},
     "coordinates[1][0]: a polygon ring needs at least 4 positions"),
    ({"type": "GeometryCollection", "geometries": []}, "the GeometryCollection is empty"),
    ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 91]}]},
     "latitude 91.0 at geometries[0].coordinates is outside"),
    ({"type": "MultiPoint", "coordinates": [[0, 0]] * (spatial.MAX_POSITIONS + 1)}, "more than 100000 positions"),
]


@pytest.mark.parametrize(("value", "message"), BAD_GEOMETRIES, ids=[m[:40] for _, m in BAD_GEOMETRIES])
def test_parse_geometry_refuses(value: Any, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        spatial.parse_geometry(value, "intersects")
    assert caught.value.parameter == "intersects"
    assert caught.value.message.startswith("intersects: ")
    assert message in caught.value.message


def test_nested_geometry_collections_are_bounded() -> None:
    geometry: dict[str, Any] = {"type": "Point", "coordinates": [0, 0]}
    for _ in range(spatial.MAX_COLLECTION_DEPTH + 1):
        geometry = {"type": "GeometryCollection", "geometries": [geometry]}
    with pytest.raises(RequestError, match="nest deeper than 8"):
        spatial.parse_geometry(geometry, "intersects")
    with pytest.raises(RequestError, match="is not GeoJSON"):
        spatial.parse_geometry("[" * 100_000, "intersects")


def test_parse_geometry_accepts() -> None:
    assert shapely.has_z(spatial.parse_geometry(json.dumps({"type": "Point", "coordinates": [8, 47, 500]}), "intersects"))
    line = spatial.parse_geometry({"type": "LineString", "coordinates": [[179, 0], [-179, 1]]}, "intersects")
    assert shapely.length(line) > 300  # planar, as GeoJSON says: the long way round
    collection = spatial.parse_geometry({"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [0, 0]}, {"type": "Polygon", "coordinates": [_ring(5)]}]}, "intersects")
    assert shapely.get_type_id(collection) == 7


# --- the arrays (halodb/serve/arrays.py) answer as the SQL does ---------------------------------
@pytest.fixture(scope="module")
def arrays(con: duckdb.DuckDBPyConnection) -> SearchArrays:
    wkb = pa.array([row[0] for row in con.execute("SELECT wkb FROM items ORDER BY rowid").fetchall()], type=pa.binary())
    return SearchArrays.build(con, wkb)


def _array_ids(con: duckdb.DuckDBPyConnection, arrays: SearchArrays, p: SearchParams) -> set[str]:
    rows, matched = arrays.search(0, p, 0)
    assert matched == len(rows)
    keys = [row[0] for row in rows]
    found = con.execute("SELECT key, id FROM search_rows").fetchall()
    by_key = dict(found)
    return {by_key[k] for k in keys}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(west=st.floats(-180, 180), east=st.floats(-180, 180), south=st.floats(-90, 90), north=st.floats(-90, 90))
def test_arrays_bbox_is_the_sql_bbox(con: duckdb.DuckDBPyConnection, arrays: SearchArrays, west: float, east: float,
                                     south: float, north: float) -> None:
    """Also across the antimeridian, for items whose own bbox crosses it."""
    south, north = sorted([south, north])
    bbox = [west, south, east, north]
    assert _array_ids(con, arrays, SearchParams(bbox=bbox, limit=10_000)) == select(con, *spatial.bbox_sql(bbox))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES)
def test_arrays_intersects_is_the_sql_intersects(con: duckdb.DuckDBPyConnection, arrays: SearchArrays,
                                                 query: shapely.Geometry) -> None:
    if not shapely.is_valid(query) or shapely.is_empty(query):
        return
    found = _array_ids(con, arrays, SearchParams(intersects=query, limit=10_000))
    assert found == select(con, *spatial.intersects_sql(query)) == expected("intersects", query)
