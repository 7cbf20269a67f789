"""``search.run_search`` on a real snapshot: its three ways of answering give the same pages,
counts and items — the arrays (the core parameters, no SQL: halodb/serve/arrays.py), the
one-query SQL path (a search matching at most ``COUNTED_IN_PAGE`` items is gathered, ordered,
counted and paged in one query) and the table path (a top-N scan and a count).

The snapshot is built from a real home (tests/serve_fixture.py) with three versions; the
SQL paths are forced by telling ``run_search`` the arrays do not answer, the table path by
lowering ``COUNTED_IN_PAGE`` below the number of matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import halodb
from halodb.errors import RequestError
from halodb.serve import params, search
from halodb.serve.arrays import answers
from halodb.serve.deadlines import Deadline
from halodb.serve.snapshot import Snapshot

from .serve_fixture import Catalog, build_catalog

QUERIES: list[dict[str, str]] = [
    {},
    {"limit": "7"},
    {"bbox": "-60,0,-20,20", "limit": "5"},
    {"datetime": "2024-08-12T00:00:00Z/2024-08-20T00:00:00Z", "limit": "9"},
    {"collections": "halo-tracks,radiosondes", "sortby": "-properties.platform,+id", "limit": "4"},
    {"sortby": "properties.title", "limit": "6"},
    {"filter": "platform = 'HALO' OR platform = 'BCO'", "limit": "8"},
    {"q": "convection,dust", "limit": "3"},
    {"ids": "nothing-has-this-id"},
]
OFFSETS = (0, 3, 50, 5000)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return build_catalog(tmp_path_factory.mktemp("search") / "home", 300, seed=3)


@pytest.fixture(scope="module")
def snap(catalog: Catalog) -> Iterator[Snapshot]:
    reg = halodb.open(Path(catalog.home))
    try:
        snapshot = Snapshot.build(reg.queries, catalog.name)
    finally:
        reg.close()
    yield snapshot
    snapshot.close()


def _page(snap: Snapshot, query: dict[str, str], offset: int, version: int = -1) -> search.Page:
    cur = snap.cursor()
    try:
        return search.run_search(snap, cur, snap.versions[version], params.from_query(query), offset=offset)
    finally:
        cur.close()


@pytest.mark.parametrize("query", QUERIES, ids=[str(q) for q in QUERIES])
def test_the_one_query_path_and_the_table_path_agree(snap: Snapshot, query: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "answers", lambda p: False)
    gathered = {offset: _page(snap, query, offset) for offset in OFFSETS}
    monkeypatch.setattr(search, "COUNTED_IN_PAGE", 2)
    scanned = {offset: _page(snap, query, offset) for offset in OFFSETS}
    for offset in OFFSETS:
        a, b = gathered[offset], scanned[offset]
        assert [h.key for h in a.hits] == [h.key for h in b.hits], (query, offset)
        assert [h.item for h in a.hits] == [h.item for h in b.hits]
        assert a.matched == b.matched, (query, offset)
    assert gathered[0].matched > 2 or query.get("ids"), "the query must match more than the lowered limit"


def test_pages_cover_the_matches_once_in_order(snap: Snapshot) -> None:
    """Paging through a search gives every match once; numberMatched is their number."""
    query = {"datetime": "2024-08-10T00:00:00Z/2024-08-30T00:00:00Z", "limit": "10"}
    keys: list[str] = []
    offset = 0
    while True:
        page = _page(snap, query, offset)
        keys += [h.key for h in page.hits]
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert len(keys) == len(set(keys)) == page.matched > 10


@pytest.mark.parametrize("version", [0, 1, 2])
def test_each_hit_is_the_item_its_key_had_in_the_version(snap: Snapshot, catalog: Catalog, version: int) -> None:
    """The JSON a hit carries (kept beside the database, by row) is the item of its key in
    the version asked for."""
    page = _page(snap, {"limit": "10000"}, 0, version)
    expected = catalog.versions[version][2]
    assert page.matched == len(page.hits) == len(expected)
    for hit in page.hits:
        assert hit.item["id"] == expected[hit.key]["id"]
        assert hit.item["properties"]["title"] == expected[hit.key]["properties"]["title"]


_TIMES = st.datetimes(min_value=datetime(2024, 8, 1), max_value=datetime(2024, 10, 1), timezones=st.just(timezone.utc))
_BOXES = st.tuples(st.floats(-180, 180), st.floats(-90, 90), st.floats(-180, 180), st.floats(-90, 90)).map(
    lambda b: f"{b[0]},{min(b[1], b[3])},{b[2]},{max(b[1], b[3])}")
_COLLECTIONS = st.lists(st.sampled_from(["halo-tracks", "dropsondes", "radiosondes", "satellite", "no-such"]),
                        min_size=1, max_size=3, unique=True)


@st.composite
def core_searches(draw: st.DrawFn) -> dict[str, str]:
    """A GET query of the core parameters only (what the arrays answer)."""
    query: dict[str, str] = {"limit": str(draw(st.integers(1, 40)))}
    if draw(st.booleans()):
        query["collections"] = ",".join(draw(_COLLECTIONS))
    if draw(st.booleans()):
        query["bbox"] = draw(_BOXES)
    elif draw(st.booleans()):
        x, y = draw(st.floats(-170, 170)), draw(st.floats(-80, 80))
        w, h = draw(st.floats(0.5, 9)), draw(st.floats(0.5, 9))
        query["intersects"] = json.dumps({"type": "Polygon", "coordinates": [
            [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]]})
    if draw(st.booleans()):
        start, end = sorted([draw(_TIMES), draw(_TIMES)])
        query["datetime"] = draw(st.sampled_from([f"{_iso(start)}/{_iso(end)}", f"../{_iso(end)}", f"{_iso(start)}/..",
                                                  _iso(start)]))
    if draw(st.integers(0, 5)) == 0:
        query["ids"] = ",".join(draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4)))
    if draw(st.integers(0, 2)) == 0:
        query["q"] = draw(st.sampled_from(WORDS))
    return query


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# whole words, parts of words, phrases, across-word fragments, case, OR-alternatives, no match
WORDS = ["dust", "convection", "conv", '"deep convection"', "deep cumulus", "Cold Pool", "ld po", "sea, radiation",
         "itcz,boundary layer", "7:", "halo", "s 1", "zzzz", '"shallow clouds" moisture', "e", '"p  cold"',
         "2,", "layer radiation", "-0"]
IDS = [f"{c[:4].upper()}-{k:05d}" for c in ("halo-tracks", "dropsondes", "radiosondes", "satellite") for k in range(0, 300, 7)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=core_searches(), version=st.integers(0, 2), offset=st.sampled_from([0, 0, 1, 7, 40]),
       collection=st.sampled_from([None, None, "dropsondes", "satellite"]))
def test_the_arrays_answer_as_the_sql_does(snap: Snapshot, query: dict[str, str], version: int, offset: int,
                                           collection: str | None) -> None:
    p = params.from_query(query)
    assert answers(p)
    cur = snap.cursor()
    try:
        by_arrays = search.run_search(snap, cur, snap.versions[version], p, offset=offset, collection=collection)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(search, "answers", lambda p: False)
            by_sql = search.run_search(snap, cur, snap.versions[version], p, offset=offset, collection=collection)
    finally:
        cur.close()
    assert [h.key for h in by_arrays.hits] == [h.key for h in by_sql.hits], query
    assert by_arrays.matched == by_sql.matched, query
    assert [h.item for h in by_arrays.hits] == [h.item for h in by_sql.hits]


def test_free_text_stops_at_the_deadline(snap: Snapshot) -> None:
    """Free text is the part of the arrays' work that grows with the request (1,000
    characters of q can ask for hundreds of phrase scans): it stops at the request's
    deadline with a 503, as a query the watchdog interrupts does."""
    cur = snap.cursor()
    try:
        p = params.from_query({"q": ",".join(['"s 1"'] * 150)})
        with pytest.raises(RequestError) as caught:
            search.run_search(snap, cur, snap.head, p, deadline=Deadline(0.0))
        assert caught.value.status == 503 and "stopped" in str(caught.value)
        assert search.run_search(snap, cur, snap.head, p, deadline=Deadline(60.0)).matched > 0
    finally:
        cur.close()
