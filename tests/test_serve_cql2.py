"""The CQL2 ``filter`` of ``halodb serve`` (halodb/serve/cql2_sql.py) against real DuckDB.

A few hundred generated items (points, flight-track lines, polygons, antimeridian cases,
items without geometry or time, time ranges, arrays) fill the snapshot schema in memory.
Hypothesis writes filters; the SQL must select exactly the items the ``cql2`` package's own
evaluator (``Expr.matches``, Rust) accepts. Where the two read CQL2 differently on purpose
(the span of a range item's ``datetime``, DATE literals) the test says so and checks the
spec's reading by hand. Malformed filters each get a RequestError naming the problem.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cql2
import duckdb
import pyarrow as pa
import pytest
import shapely
import shapely.geometry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halodb.errors import RequestError
from halodb.serve import cql2_sql, spatial
from halodb.serve.snapshot import FILL_SEARCH_ROWS, SCHEMA

T0 = datetime(2024, 8, 1, tzinfo=timezone.utc)

PLATFORMS = ["HALO", "HALO-2", "P3", "halo", "Hälo", "it's", 'a"b', "50%_x", "a\\b"]
INSTRUMENTS = ["specMACS", "HAMP", "WALES", "BAHAMAS", "o'q"]
KEYWORDS = ["cloud", "rain", "dust", "ocean"]
TITLES = ["Flight RF01", "flight rf02", "Dropsondes RF01", "Ölfleck", "Über alles", "x_y%z"]


# --- the generated items -----------------------------------------------------------------
@dataclass
class Item:
    """One generated item: its row of the snapshot and its STAC form for the oracle."""

    n: int
    geometry: dict[str, Any] | None
    bbox: list[float] | None
    instant: datetime | None
    start: datetime | None
    end: datetime | None
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"item-{self.n:04d}"

    @property
    def is_range(self) -> bool:
        return self.start is not None

    def stac(self) -> dict[str, Any]:
        """The item as cql2's evaluator reads it (a missing value is left out)."""
        properties = {k: v for k, v in self.props.items() if v is not None}
        for key, value in (("datetime", self.instant), ("start_datetime", self.start), ("end_datetime", self.end)):
            if value is not None:
                properties[key] = _rfc3339(value)
        stac: dict[str, Any] = {"type": "Feature", "id": self.id, "geometry": self.geometry, "properties": properties}
        if self.props.get("collection") is not None:
            stac["collection"] = self.props["collection"]
        properties.pop("collection", None)
        return stac


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_geometry(rng: random.Random, n: int) -> tuple[dict[str, Any] | None, list[float] | None]:
    """A geometry (GeoJSON) and the bbox the snapshot gets for it."""
    kind = n % 9
    x, y = rng.uniform(-175, 175), rng.uniform(-80, 80)
    if kind == 0:
        return None, None
    if kind in (1, 2):
        geometry = {"type": "Point", "coordinates": [round(x, 3), round(y, 3)]}
    elif kind in (3, 4):  # a flight track
        points = [[round(x + i * rng.uniform(-1, 1), 3), round(y + i * rng.uniform(-0.5, 0.5), 3)] for i in range(6)]
        geometry = {"type": "LineString", "coordinates": [[min(max(px, -180), 180), min(max(py, -90), 90)] for px, py in points]}
    elif kind in (5, 6):
        w, h = rng.uniform(0.2, 4), rng.uniform(0.2, 3)
        geometry = {"type": "Polygon", "coordinates": [[[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]]}
    elif kind == 7:  # a polygon split at the antimeridian: the STAC bbox crosses it (west > east)
        lat = rng.uniform(-60, 60)
        west, east = rng.uniform(170, 179), rng.uniform(-179, -170)
        geometry = {"type": "MultiPolygon", "coordinates": [
            [[[west, lat], [180, lat], [180, lat + 2], [west, lat + 2], [west, lat]]],
            [[[-180, lat], [east, lat], [east, lat + 2], [-180, lat + 2], [-180, lat]]],
        ]}
        return geometry, [west, lat, east, lat + 2]
    else:  # a track near the antimeridian, with no bbox in the item (the SQL falls back on the exact test)
        lat = rng.uniform(-60, 60)
        geometry = {"type": "LineString", "coordinates": [[178.0, lat], [179.9, lat + 1]]}
        return geometry, None
    shape = shapely.geometry.shape(geometry)
    return geometry, [float(v) for v in shape.bounds]


def make_items(count: int, seed: int = 11) -> list[Item]:
    """``count`` varied items (the same ones for the same seed)."""
    rng = random.Random(seed)
    items = []
    for n in range(count):
        geometry, bbox = _random_geometry(rng, n)
        when = T0 + timedelta(hours=rng.randrange(0, 24 * 40), minutes=rng.choice([0, 0, 30]))
        timing = n % 5
        dt = start = end = None
        if timing in (0, 1, 2):
            dt = when
        elif timing == 3:
            start, end = when, when + timedelta(hours=rng.choice([0, 1, 6, 48]))
        props = {
            "collection": rng.choice(["flights", "sondes", "flights"]),
            "platform": rng.choice([*PLATFORMS, None]),
            "instruments": rng.choice([None, [], *([sorted(rng.sample(INSTRUMENTS, rng.randint(1, 3)))] * 4)]),
            "keywords": rng.choice([None, sorted(rng.sample(KEYWORDS, rng.randint(0, 2)))]),
            "title": rng.choice([*TITLES, None]),
            "description": rng.choice(["Research flight", "", None]),
            "halodb:key": f"campaign/{'flights' if n % 2 else 'sondes'}/{n}",
            "halodb:data_cid": None if n % 7 == 0 else f"bafy{n:06d}",
            "halodb:path": f"/data/{n}",
            "mission": rng.choice(["EUREC4A", "ORCESTRA", "sentinel-2", None]),
            "eo:cloud_cover": rng.choice([None, 0, 10, 50.5, 100, round(rng.uniform(0, 100), 2)]),
        }
        items.append(Item(n, geometry, bbox, dt, start, end, props))
    return items


def _number(value: Any) -> float | None:
    """``eo:cloud_cover`` as the snapshot reads it (TRY_CAST to DOUBLE: a non-number is NULL)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def snapshot(items: list[Item]) -> duckdb.DuckDBPyConnection:
    """An in-memory snapshot database holding ``items`` (one version each), with
    ``halodb_spatial`` registered."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(SCHEMA)
    rows = []
    for item in items:
        shape = shapely.geometry.shape(item.geometry) if item.geometry else None
        t_start = item.start or item.instant
        t_end = item.end or item.instant
        # as Snapshot.build: the item's bbox, or else its geometry's bounds
        xmin, ymin, xmax, ymax = item.bbox or (shape.bounds if shape is not None else (None, None, None, None))
        p = item.props
        rows.append((
            f"cid-{item.n}", item.id, p["collection"], item.instant, item.start, item.end, t_start, t_end,
            xmin, ymin, xmax, ymax, p["platform"], p["instruments"], p["title"], p["description"], p["keywords"],
            p.get("mission"), _number(p.get("eo:cloud_cover")), "", json.dumps(item.geometry) if item.geometry else None,
            shapely.to_wkb(shape) if shape is not None else None,
        ))
    columns = [name for name, *_ in con.execute("DESCRIBE items").fetchall()]
    item_rows = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in rows])  # noqa: F841 - read by DuckDB
    con.execute("INSERT INTO items SELECT * FROM item_rows")
    version_rows = pa.Table.from_pylist([  # noqa: F841 - read by DuckDB
        {"key": i.props["halodb:key"], "item_cid": f"cid-{i.n}", "data_cid": i.props["halodb:data_cid"],
         "path": i.props["halodb:path"]} for i in items])
    con.execute("INSERT INTO versions SELECT key, item_cid, data_cid, path, 0, NULL, false, 1 FROM version_rows")
    con.execute(FILL_SEARCH_ROWS)
    spatial.register(con)
    return con


def select(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> set[str]:
    """The ids of the items ``where`` selects, through a fresh cursor (as the server does)."""
    cur = con.cursor()
    try:
        rows = cur.execute(f"SELECT i.id FROM search_rows AS i WHERE {where}", params).fetchall()
    finally:
        cur.close()
    return {r[0] for r in rows}


def oracle(items: list[Item], tree: dict[str, Any] | bool) -> set[str]:
    """The ids cql2's own evaluator accepts (an expression it cannot reduce to a boolean,
    because a value is missing, is unknown: not selected, as in SQL)."""
    expr = cql2.Expr(tree)  # type: ignore[arg-type]
    selected = set()
    for item in items:
        try:
            if expr.matches(item.stac()):
                selected.add(item.id)
        except Exception:  # noqa: BLE001 - "could not reduce expression to boolean": a NULL
            pass
    return selected


ITEMS = make_items(400)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = snapshot(ITEMS)
    yield connection
    connection.close()


def run(con: duckdb.DuckDBPyConnection, text: str, lang: str | None = "cql2-text") -> set[str]:
    tree = cql2_sql.parse_filter(text, lang)
    return select(con, *cql2_sql.filter_sql(tree))


def ids(predicate: Any) -> set[str]:
    return {i.id for i in ITEMS if predicate(i)}


# --- Hypothesis: the SQL against cql2's evaluator ------------------------------------------
STRING_PROPERTIES = ["id", "collection", "platform", "title", "description", "halodb:key", "halodb:data_cid", "mission"]
STRINGS = st.sampled_from([*PLATFORMS, *TITLES, "item-0007", "flights", "sondes", "", "Research flight",
                           "campaign/flights/3", "bafy000010", "x' OR '1'='1", "é"])
PATTERNS = st.sampled_from(["H%", "%LO", "h_lo", "%", "_", "HAL_", "%RF0_", "50\\%\\_x", "a\\\\b", "%'%", "%flight%",
                            "item-00_1", "Ö%", "%e"])
TIMES = st.integers(min_value=-48, max_value=24 * 42).map(lambda h: T0 + timedelta(hours=h))
TIMESTAMPS = TIMES.map(lambda t: {"timestamp": _rfc3339(t)})


def _prop(name: str) -> dict[str, Any]:
    return {"property": name}


def _maybe_casei(value: Any, fn: str | None) -> Any:
    return value if fn is None else {"op": fn, "args": [value]}


@st.composite
def string_predicates(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(STRING_PROPERTIES))
    fn = draw(st.sampled_from([None, None, "casei", "accenti"]))
    left = _maybe_casei(_prop(name), fn)
    kind = draw(st.sampled_from(["cmp", "like", "between", "in", "isNull"]))
    if kind == "cmp":
        op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        return {"op": op, "args": [left, _maybe_casei(draw(STRINGS), fn)]}
    if kind == "like":
        return {"op": "like", "args": [left, _maybe_casei(draw(PATTERNS), fn)]}
    if kind == "between":
        low, high = sorted([draw(STRINGS), draw(STRINGS)])
        return {"op": "between", "args": [_prop(name), low, high]}
    if kind == "in":
        return {"op": "in", "args": [_prop(name), draw(st.lists(STRINGS, min_size=1, max_size=4))]}
    return {"op": "isNull", "args": [_prop(name)]}


@st.composite
def number_predicates(draw: st.DrawFn) -> dict[str, Any]:
    value = st.sampled_from([0, 10, 50.5, 99.99, 100, -1, 33])
    kind = draw(st.sampled_from(["cmp", "between", "in", "isNull"]))
    left = _prop("eo:cloud_cover")
    if kind == "cmp":
        return {"op": draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="])), "args": [left, draw(value)]}
    if kind == "between":
        low, high = sorted([draw(value), draw(value)])
        return {"op": "between", "args": [left, low, high]}
    if kind == "in":
        return {"op": "in", "args": [left, draw(st.lists(value, min_size=1, max_size=3))]}
    return {"op": "isNull", "args": [left]}


@st.composite
def time_predicates(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(["datetime", "start_datetime", "end_datetime"]))
    if draw(st.booleans()):
        op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
        return {"op": op, "args": [_prop(name), draw(TIMESTAMPS)]}
    op = draw(st.sampled_from(sorted(cql2_sql._TEMPORAL)))
    op = {"t_finishedby": "t_finishedBy", "t_metby": "t_metBy", "t_overlappedby": "t_overlappedBy",
          "t_startedby": "t_startedBy"}.get(op, op)
    if draw(st.booleans()):
        other: Any = draw(TIMESTAMPS)
    else:
        a, b = sorted([draw(TIMES), draw(TIMES)])
        other = {"interval": [draw(st.sampled_from([_rfc3339(a), ".."])), draw(st.sampled_from([_rfc3339(b), ".."]))]}
    return {"op": op, "args": [_prop(name), other]}


@st.composite
def array_predicates(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(["instruments", "keywords"]))
    op = draw(st.sampled_from(["a_equals", "a_contains", "a_containedBy", "a_overlaps"]))
    pool = INSTRUMENTS if name == "instruments" else KEYWORDS
    values = draw(st.lists(st.sampled_from([*pool, "other"]), min_size=1, max_size=4, unique=True))
    return {"op": op, "args": [_prop(name), values]}


@st.composite
def query_geometries(draw: st.DrawFn) -> dict[str, Any]:
    x = draw(st.floats(min_value=-179, max_value=170))
    y = draw(st.floats(min_value=-85, max_value=80))
    w = draw(st.floats(min_value=0.5, max_value=60))
    h = draw(st.floats(min_value=0.5, max_value=10))
    kind = draw(st.sampled_from(["box", "bbox", "triangle", "point", "line"]))
    if kind == "box":
        x2, y2 = min(x + w, 180), min(y + h, 90)
        return {"type": "Polygon", "coordinates": [[[x, y], [x2, y], [x2, y2], [x, y2], [x, y]]]}
    if kind == "bbox":
        return {"bbox": [x, y, min(x + w, 180), min(y + h, 90)]}
    if kind == "triangle":
        return {"type": "Polygon", "coordinates": [[[x, y], [min(x + w, 180), y], [x, min(y + h, 90)], [x, y]]]}
    if kind == "point":
        return {"type": "Point", "coordinates": [x, y]}
    return {"type": "LineString", "coordinates": [[x, y], [min(x + w, 180), min(y + h, 90)]]}


@st.composite
def spatial_predicates(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["s_intersects", "s_disjoint", "s_within", "s_contains", "s_touches",
                               "s_overlaps", "s_crosses", "s_equals"]))
    return {"op": op, "args": [_prop("geometry"), draw(query_geometries())]}


LEAVES = st.one_of(string_predicates(), number_predicates(), time_predicates(), array_predicates(),
                   spatial_predicates())
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda a: {"op": "not", "args": [a]}, inner),
        st.builds(lambda a: {"op": "and", "args": a}, st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda a: {"op": "or", "args": a}, st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=5,
)


def _comparable(tree: dict[str, Any]) -> list[Item]:
    """The items cql2's evaluator can judge like the SQL: ``datetime`` of a range item is
    its span in the SQL (the spec's reading for STAC), absent for the evaluator."""
    if '"datetime"' in json.dumps(tree):
        return [i for i in ITEMS if not i.is_range]
    return ITEMS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=FILTERS)
def test_sql_selects_what_cql2_matches(con: duckdb.DuckDBPyConnection, tree: dict[str, Any]) -> None:
    """Filter trees of every supported family, nested with and/or/not: the SQL selects
    exactly the items ``cql2.Expr.matches`` accepts (both read from the same JSON)."""
    parsed = cql2_sql.parse_filter(json.dumps(tree), "cql2-json")
    items = _comparable(tree)
    got = select(con, *cql2_sql.filter_sql(parsed)) & {i.id for i in items}
    assert got == oracle(items, tree), json.dumps(tree)


@pytest.mark.parametrize("text", [
    "platform = 'HALO'",
    "NOT platform = 'HALO'",
    "platform LIKE 'H%' OR title IS NULL",
    "CASEI(title) LIKE casei('%rf01')",
    "ACCENTI(platform) = accenti('Halo')",
    "platform IN ('HALO', 'P3') AND NOT (title IS NULL)",
    "\"halodb:key\" LIKE 'campaign/flights/%'",
    "A_CONTAINS(instruments, ('HAMP', 'WALES'))",
    "A_OVERLAPS(keywords, ('rain', 'dust'))",
    "S_INTERSECTS(geometry, POLYGON((-60 -40, 60 -40, 60 40, -60 40, -60 -40)))",
    "S_WITHIN(geometry, BBOX(-180, -90, 0, 90))",
    "S_DISJOINT(geometry, BBOX(-180, -90, 0, 90))",
    "T_INTERSECTS(start_datetime, INTERVAL('2024-08-05T00:00:00Z', '2024-08-20T00:00:00Z'))",
    "end_datetime > TIMESTAMP('2024-08-20T00:00:00Z') AND platform <> 'HALO'",
])
def test_text_examples_match_cql2(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Hand-written cql2-text filters (the GET form) agree with cql2's evaluator too."""
    tree = cql2.parse_text(text).to_json()
    assert run(con, text) == oracle(ITEMS, tree)
    assert run(con, text) != set() or text.startswith("NOT")


# --- the spec's reading where the evaluator differs ---------------------------------------
def test_datetime_of_a_range_item_is_its_span(con: duckdb.DuckDBPyConnection) -> None:
    """``datetime`` compares the start of the span; t_* operators use the whole span."""
    moment = T0 + timedelta(days=10)
    stamp = _rfc3339(moment)

    def span(i: Item) -> tuple[datetime, datetime] | None:
        start, end = i.start or i.instant, i.end or i.instant
        return (start, end) if start is not None and end is not None else None

    got = run(con, f"T_INTERSECTS(datetime, TIMESTAMP('{stamp}'))")
    assert got == ids(lambda i: (s := span(i)) is not None and s[0] <= moment <= s[1])
    assert any(ITEMS[int(x[5:])].is_range for x in got)
    got = run(con, f"datetime >= TIMESTAMP('{stamp}')")
    assert got == ids(lambda i: (s := span(i)) is not None and s[0] >= moment)
    got = run(con, f"T_DURING(datetime, INTERVAL('{_rfc3339(T0)}', '..'))")
    assert got == ids(lambda i: (s := span(i)) is not None and s[0] > T0)


def test_date_is_the_whole_utc_day(con: duckdb.DuckDBPyConnection) -> None:
    """DATE('2024-08-10') is every time of that day (cql2's evaluator answers false for any
    comparison of a timestamp with a date: not what the user means)."""
    day = T0 + timedelta(days=9)
    next_day = day + timedelta(days=1)

    def start(i: Item) -> datetime | None:
        return i.start or i.instant

    assert run(con, "datetime = DATE('2024-08-10')") == ids(lambda i: (s := start(i)) is not None and day <= s < next_day)
    assert run(con, "datetime < DATE('2024-08-10')") == ids(lambda i: (s := start(i)) is not None and s < day)
    assert run(con, "datetime > DATE('2024-08-10')") == ids(lambda i: (s := start(i)) is not None and s >= next_day)
    assert run(con, "DATE('2024-08-10') < datetime") == run(con, "datetime > DATE('2024-08-10')")
    assert run(con, "datetime BETWEEN DATE('2024-08-10') AND DATE('2024-08-11')") == ids(
        lambda i: (s := start(i)) is not None and day <= s < next_day + timedelta(days=1))
    by_interval = run(con, "T_INTERSECTS(datetime, INTERVAL('2024-08-10', '2024-08-10'))")
    assert by_interval == run(con, "T_INTERSECTS(datetime, DATE('2024-08-10'))")
    assert by_interval == ids(lambda i: (s := start(i)) is not None and s < next_day and (i.end or i.instant or s) >= day)


def test_null_is_unknown_never_selected(con: duckdb.DuckDBPyConnection) -> None:
    """A predicate on a missing value selects nothing, and neither does its NOT."""
    no_title = ids(lambda i: i.props["title"] is None)
    assert no_title and no_title == run(con, "title IS NULL")
    assert not (run(con, "title = 'x'") | run(con, "NOT title = 'x'")) & no_title
    no_geometry = ids(lambda i: i.geometry is None)
    assert not run(con, "NOT S_INTERSECTS(geometry, BBOX(-180, -90, 180, 90))") & no_geometry
    assert run(con, "S_DISJOINT(geometry, POINT(0 89.9))") == ids(lambda i: i.geometry is not None) - run(
        con, "S_INTERSECTS(geometry, POINT(0 89.9))")
    assert run(con, "geometry IS NULL") == no_geometry
    assert run(con, "true") == ids(lambda i: True)
    assert run(con, "false") == set()


def test_literal_only_and_property_property(con: duckdb.DuckDBPyConnection) -> None:
    """Literal comparisons are constants; properties may be compared with each other."""
    assert run(con, "1 = 1") == ids(lambda i: True)
    assert run(con, "'a' > 'b'") == set()
    assert run(con, "S_CONTAINS(POLYGON((0 0, 2 0, 2 2, 0 2, 0 0)), POINT(1 1))") == ids(lambda i: True)
    assert run(con, "S_WITHIN(POINT(1 1), geometry)") == run(con, "S_CONTAINS(geometry, POINT(1 1))")
    assert run(con, "S_EQUALS(geometry, geometry)") == ids(lambda i: i.geometry is not None)
    assert run(con, "start_datetime <= end_datetime") == ids(lambda i: i.is_range)
    assert run(con, "T_EQUALS(INTERVAL(start_datetime, end_datetime), datetime)") == ids(lambda i: i.is_range)
    assert run(con, "collection = \"collection\"") == ids(lambda i: True)


# --- malformed filters -------------------------------------------------------------------
BAD: list[tuple[Any, str | None, str, str]] = [
    # (filter, filter-lang, parameter, part of the message)
    ("platform = ", "cql2-text", "filter", "cql2-text syntax error: expected"),
    ("platform = 'HALO'", "cql-json", "filter-lang", "unknown filter language 'cql-json'"),
    ({"op": "=", "args": [{"property": "platform"}, "x"]}, "cql2-text", "filter", "must be a string"),
    ("{not json", "cql2-json", "filter", "not JSON"),
    ({"op": 1}, "cql2-json", "filter", "malformed operator node {\"op\": 1}"),
    ("cloud_cover < 10", "cql2-text", "filter", "unknown property 'cloud_cover'; the queryables are: id, "),
    ("\"pla'tform\" = 'x'", "cql2-text", "filter", "unknown property \"pla'tform\""),
    ("foo(platform)", "cql2-text", "filter", "unsupported operator 'foo'"),
    ("platform + 1 > 2", "cql2-text", "filter", "arithmetic (+) is not supported"),
    ("platform = 1", "cql2-text", "filter", "cannot compare property 'platform' (a string) with the number 1"),
    ("datetime > 5", "cql2-text", "filter", "cannot compare property 'datetime' (a timestamp) with the number 5"),
    ("datetime > '2024-08-01'", "cql2-text", "filter", "with the string '2024-08-01'"),
    ("datetime > TIMESTAMP('2024-13-01T00:00:00Z')", "cql2-text", "filter", "is not a valid timestamp"),
    ({"op": ">", "args": [{"property": "datetime"}, {"timestamp": "yesterday"}]}, None, "filter",
     "'yesterday' is not an RFC 3339 timestamp"),
    ("datetime > DATE('2024-02-30')", "cql2-text", "filter", "is not a valid date"),
    ("T_INTERSECTS(datetime, INTERVAL('2024-09-01', '2024-08-01'))", "cql2-text", "filter", "starts after it ends"),
    ("T_INTERSECTS(platform, TIMESTAMP('2024-08-01T00:00:00Z'))", "cql2-text", "filter",
     "property 'platform' is not temporal"),
    ("instruments = 'HAMP'", "cql2-text", "filter", "property 'instruments' is an array"),
    ("A_CONTAINS(platform, ('x'))", "cql2-text", "filter", "property 'platform' is not an array"),
    ("A_CONTAINS(instruments, (1, 2))", "cql2-text", "filter", "must hold strings only"),
    ("S_INTERSECTS(platform, POINT(0 0))", "cql2-text", "filter", "property 'platform' is not a geometry"),
    ("S_INTERSECTS(geometry, POINT(200 0))", "cql2-text", "filter", "longitude 200.0"),
    ("S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1)))", "cql2-text", "filter", "ring needs at least 4 positions"),
    ("S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 1, 0 0.5)))", "cql2-text", "filter", "not closed"),
    ("S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))", "cql2-text", "filter", "not valid: Self-intersection"),
    ("S_INTERSECTS(geometry, BBOX(0, 10, 1, 5))", "cql2-text", "filter", "south 10.0 is north of north 5.0"),
    ({"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Blob", "coordinates": []}]}, None, "filter",
     "type 'Blob' is not a GeoJSON geometry type"),
    ("platform LIKE 'x\\'", "cql2-text", "filter", "ends with the escape character"),
    ("platform LIKE title", "cql2-text", "filter", "pattern of like must be a string literal"),
    ("platform", "cql2-text", "filter", "property 'platform' is not a predicate"),
    ("'text'", "cql2-text", "filter", "is not a predicate"),
    ("CASEI(platform)", "cql2-text", "filter", "casei(...) is a string, not a predicate"),
    ("CASEI(datetime) = 'x'", "cql2-text", "filter", "casei takes a string"),
    ({"op": "in", "args": [{"property": "platform"}, []]}, None, "filter", "in needs a non-empty list"),
    ({"op": "not", "args": [True, False]}, None, "filter", "not takes 1 argument, got 2"),
    ({"op": "and", "args": [True]}, None, "filter", "and takes at least 2 arguments"),
    ({"op": "=", "args": [{"property": "platform", "x": 1}, "a"]}, None, "filter", "unknown property"),
    ({"op": "isNull", "args": [{"property": "platform"}], "extra": 1}, None, "filter", "malformed operator node"),
    ({"op": "=", "args": [{"property": "platform"}, float("inf")]}, None, "filter", "holds the number inf"),
    ("x" * (64 * 1024 + 1), "cql2-text", "filter", "longer than 64 KiB"),
    ("(" * 65 + "true" + ")" * 65, "cql2-text", "filter", "parentheses nest deeper than 64"),
    (" AND ".join(["platform = 'x'"] * 400), "cql2-text", "filter", "more than 1000 terms"),
    ("NOT " * 80 + "true", "cql2-text", "filter", "nests deeper than 64"),
]


@pytest.mark.parametrize(("value", "lang", "parameter", "message"), BAD,
                         ids=[f"{n}-{str(b[0])[:30]}" for n, b in enumerate(BAD)])
def test_malformed_filters_are_refused(value: Any, lang: str | None, parameter: str, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        cql2_sql.parse_filter(value, lang)
    assert caught.value.parameter == parameter
    assert message in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("text", [
    "(" * 40_000 + "true" + ")" * 40_000,           # the parser recurses per parenthesis
    "NOT " * 16_000 + "true",                        # ... per NOT
    "1" + "+1" * 30_000 + " = 2",                    # ... per operator of a chain
    "-" * 60_000 + "1 = 2",
    "1" + "=1" * 30_000,
    "A_CONTAINS(instruments, " + "(" * 30_000 + "'a'" + ")" * 30_001,
])
def test_deep_text_is_refused_not_a_crash(text: str) -> None:
    """Each of these (under 64 KiB) overflowed the stack of cql2's parser and killed Python;
    they are refused before the parser runs."""
    with pytest.raises(RequestError) as caught:
        cql2_sql.parse_filter(text[:64 * 1024], "cql2-text")
    assert caught.value.parameter == "filter"


def test_deep_and_large_json_is_refused() -> None:
    deep: dict[str, Any] = {"op": "isNull", "args": [{"property": "title"}]}
    for _ in range(5000):
        deep = {"op": "not", "args": [deep]}
    deep_text = '{"op": "not", "args": [' * 2000 + "true" + "]}" * 2000
    for value in (deep, deep_text, "[" * 30_000 + "]" * 30_000):
        with pytest.raises(RequestError) as caught:
            cql2_sql.parse_filter(value, "cql2-json")
        assert caught.value.parameter == "filter"
    wide = {"op": "or", "args": [{"op": "=", "args": [{"property": "id"}, str(n)]} for n in range(400)]}
    with pytest.raises(RequestError, match="more than 1000 nodes"):
        cql2_sql.parse_filter(wide, "cql2-json")
    with pytest.raises(RequestError, match="more than 1000 nodes"):
        cql2_sql.filter_sql(wide)


def test_geometry_inside_text_does_not_count_as_terms(con: duckdb.DuckDBPyConnection) -> None:
    """A big polygon literal (2000 vertices) is flat: it is not refused as 'too many terms'."""
    ring = list(shapely.Point(0, 0).buffer(10, 500).exterior.coords)
    assert len(ring) == 2001
    text = "S_INTERSECTS(geometry, POLYGON((" + ", ".join(f"{x:.5f} {y:.5f}" for x, y in ring) + ")))"
    assert len(text) < 64 * 1024
    assert run(con, text) == ids(lambda i: i.geometry is not None and shapely.geometry.shape(i.geometry).intersects(
        shapely.Polygon(ring)))


# --- SQL injection ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "platform = 'x''; DROP TABLE items; --'",
    "platform LIKE '%'' OR 1=1 --'",
    "platform IN ('a'') OR (''1''=''1', 'b')",
    "A_CONTAINS(instruments, ('o''q'))",
    "title = 'x\" OR \"1\"=\"1'",
])
def test_values_never_become_sql(con: duckdb.DuckDBPyConnection, text: str) -> None:
    tree = cql2_sql.parse_filter(text, "cql2-text")
    where, params = cql2_sql.filter_sql(tree)
    assert "'" not in where.replace("ESCAPE '\\'", "").replace("'infinity'", "")
    assert "DROP" not in where and "OR 1=1" not in where and "\"" not in where
    assert select(con, where, params) == oracle(ITEMS, tree)
    assert con.execute("SELECT count(*) FROM items").fetchall() == [(len(ITEMS),)]


def test_quotes_in_values_match_exactly(con: duckdb.DuckDBPyConnection) -> None:
    assert run(con, "platform = 'it''s'") == ids(lambda i: i.props["platform"] == "it's")
    assert run(con, "platform = 'a\"b'") == ids(lambda i: i.props["platform"] == 'a"b')
    assert run(con, "A_CONTAINS(instruments, ('o''q'))") == ids(lambda i: "o'q" in (i.props["instruments"] or []))
    assert run(con, "platform LIKE '50\\%\\_x'") == ids(lambda i: i.props["platform"] == "50%_x")
    assert run(con, "platform LIKE 'a\\\\b'") == ids(lambda i: i.props["platform"] == "a\\b")


def test_filter_lang_defaults_and_json_strings(con: duckdb.DuckDBPyConnection) -> None:
    tree = {"op": "=", "args": [{"property": "properties.platform"}, "HALO"]}
    expected = ids(lambda i: i.props["platform"] == "HALO")
    assert expected
    assert select(con, *cql2_sql.filter_sql(cql2_sql.parse_filter(tree, None))) == expected
    assert select(con, *cql2_sql.filter_sql(cql2_sql.parse_filter(json.dumps(tree), "cql2-json"))) == expected
    assert select(con, *cql2_sql.filter_sql(cql2_sql.parse_filter("properties.platform = 'HALO'", None))) == expected
    assert cql2_sql.parse_filter("true", None) == {"op": "and", "args": [True, True]}


def test_the_filters_of_stac_api_validator(con: duckdb.DuckDBPyConnection) -> None:
    """What stac-api-validator sends (eo:cloud_cover, mission, the draft ``between`` with a
    [low, high] list) is accepted and selects what cql2's evaluator does."""
    from stac_api_validator import filters

    texts = [filters.cql2_text_ex_3, filters.cql2_text_ex_9, filters.cql2_text_between, filters.cql2_text_not_like,
             filters.cql2_text_ex_2("flights"), *filters.cql2_text_numeric_comparisons]
    for text in texts:
        assert run(con, text) == oracle(ITEMS, cql2.parse_text(text).to_json()), text
    between = filters.cql2_json_between
    assert select(con, *cql2_sql.filter_sql(cql2_sql.parse_filter(between, "cql2-json"))) == run(
        con, "eo:cloud_cover BETWEEN 0 AND 50") != set()


def test_conformance_classes() -> None:
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text" in cql2_sql.CONFORMANCE
    assert "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter" in cql2_sql.CONFORMANCE
    assert len(set(cql2_sql.CONFORMANCE)) == len(cql2_sql.CONFORMANCE)
    assert not any("arithmetic" in c or c.endswith("/functions") for c in cql2_sql.CONFORMANCE)
