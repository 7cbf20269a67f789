"""``halodb serve``: the STAC API answers what the cache holds, as of any version.

A real home with 3,000 generated items in three versions (tests/serve_fixture.py), synced
into a real DuckDB cache and served by the CLI in a subprocess. Searches made with
``pystac-client`` (the client this field uses) are compared with the same question asked in
SQL of the cache (``halodb sql``'s read-only path), with shapely as the oracle of exact
geometry; time travel with the items each version held when it was committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
import shapely
import shapely.geometry
from pystac_client import Client

import halodb
from halodb.serve import search

from .serve_fixture import Catalog, ServerProcess, build_catalog, start_server

N_ITEMS = 3000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return build_catalog(tmp_path_factory.mktemp("serve") / "home", N_ITEMS, seed=7)


@pytest.fixture(scope="module")
def server(catalog: Catalog) -> Iterator[ServerProcess]:
    yield from start_server(catalog.home)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def sql_ids(catalog: Catalog, where: str, params: list[Any], *, table: str = "items WHERE name = ?") -> set[str]:
    """The ids the cache's SQL gives for ``where`` (over the ``items`` view of the served name)."""
    with halodb.open(catalog.home) as reg:
        _, rows = reg.sql(f"SELECT id, item FROM {table} AND ({where})", [catalog.name, *params])
    return {r[0] for r in rows}


def sql_items(catalog: Catalog, where: str, params: list[Any]) -> dict[str, dict[str, Any]]:
    with halodb.open(catalog.home) as reg:
        _, rows = reg.sql(f"SELECT id, item FROM items WHERE name = ? AND ({where})", [catalog.name, *params])
    return {r[0]: json.loads(r[1]) for r in rows}


def all_pages(http: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every feature of a GET search, following next links."""
    features: list[dict[str, Any]] = []
    response = http.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        features += body["features"]
        nexts = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nexts:
            return features
        response = http.get(nexts[0])


def test_listens_on_loopback_and_says_where(server: ServerProcess) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert any("serving campaign" in line for line in server.lines)


def test_sigterm_ends_the_server_cleanly(catalog: Catalog) -> None:
    """A service manager stops the server with SIGTERM: requests drain, and it exits 0 (as
    `halodb sync --watch` does), not 143."""
    import signal

    server = ServerProcess(catalog.home)
    try:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, "\n".join(server.lines[-10:])
    finally:
        server.stop()


def test_landing_page_names_the_version_and_declares_time_travel(http: httpx.Client, catalog: Catalog) -> None:
    response = http.get("/")
    head = catalog.versions[-1][0]
    assert response.status_code == 200 and response.headers["HaloDB-Commit"] == head
    body = response.json()
    assert body["halodb:commit"] == head and body["type"] == "Catalog"
    assert "https://halodb.org/spec/stac-api/time-travel/v1.0.0" in body["conformsTo"]
    rels = {link["rel"] for link in body["links"]}
    assert {"self", "root", "conformance", "service-desc", "data", "search", "child"} <= rels
    assert http.get("/conformance").json()["conformsTo"] == body["conformsTo"]


def test_the_openapi_document_names_every_route(http: httpx.Client) -> None:
    """Every route the server answers (read from the app itself) is in ``/api``'s paths."""
    from starlette.routing import Route

    from halodb.serve.app import create_app
    from halodb.serve.snapshot import SnapshotHolder

    app = create_app(SnapshotHolder.__new__(SnapshotHolder))
    routes = {r.path.replace("{collection}", "{collectionId}").replace("{item:path}", "{itemId}")
              .replace("{doi:path}", "{doi}") for r in app.routes if isinstance(r, Route)}
    documented = set(http.get("/api").json()["paths"])
    assert routes - {"/api"} <= documented, routes - documented


def test_collections_are_derived_from_the_items(http: httpx.Client, catalog: Catalog) -> None:
    items = list(catalog.versions[-1][2].values())
    body = http.get("/collections").json()
    by_id = {c["id"]: c for c in body["collections"]}
    assert set(by_id) == {i["collection"] for i in items}
    for cid, doc in by_id.items():
        mine = [i for i in items if i["collection"] == cid]
        assert doc["halodb:item_count"] == len(mine)
        west, south, east, north = doc["extent"]["spatial"]["bbox"][0]
        for item in mine:
            if "bbox" in item and item["bbox"][0] <= item["bbox"][2]:
                assert west <= item["bbox"][0] and item["bbox"][2] <= east and south <= item["bbox"][1]
        assert set(doc["summaries"]["platform"]) == {i["properties"]["platform"] for i in mine}
        assert {link["rel"] for link in doc["links"]} >= {"self", "root", "parent", "items"}
        assert http.get(f"/collections/{cid}").json()["halodb:item_count"] == len(mine)


def test_an_item_is_the_stored_item_with_our_links(http: httpx.Client, catalog: Catalog) -> None:
    item = next(iter(catalog.versions[-1][2].values()))
    response = http.get(f"/collections/{item['collection']}/items/{item['id']}")
    assert response.status_code == 200
    got = response.json()
    assert {k: v for k, v in got.items() if k != "links"} == {k: v for k, v in item.items() if k != "links"}
    self_link = next(link for link in got["links"] if link["rel"] == "self")
    assert self_link["href"] == f"{http.base_url}collections/{item['collection']}/items/{item['id']}"


def _intersects(item: dict[str, Any], box: list[float]) -> bool:
    return item.get("geometry") is not None and shapely.geometry.shape(item["geometry"]).intersects(shapely.box(box[0], box[1], box[2], box[3]))


def test_pystac_client_bbox_datetime_collections_equal_sql(server: ServerProcess, catalog: Catalog) -> None:
    box = [-45.0, 0.0, -25.0, 15.0]
    start, end = "2024-08-20T00:00:00Z", "2024-09-05T00:00:00Z"
    client = Client.open(server.url)
    found = client.search(bbox=box, datetime=f"{start}/{end}", collections=["halo-tracks", "satellite"], limit=50)
    got = [i.id for i in found.items()]
    # the same question in SQL over the cache; the bbox overlap picks candidates, shapely decides
    candidates = sql_items(
        catalog,
        "collection IN ('halo-tracks', 'satellite') AND (bbox IS NULL OR"
        " (bbox[1] <= ? AND bbox[3] >= ? AND bbox[2] <= ? AND bbox[4] >= ?))"
        " AND coalesce(end_datetime, datetime) >= ? AND coalesce(start_datetime, datetime) <= ?",
        [box[2], box[0], box[3], box[1], start, end])
    expected = {i for i, item in candidates.items() if _intersects(item, box)}
    assert len(got) == len(set(got)), "an item came twice: paging is not stable"
    assert set(got) == expected and len(expected) > 20


def test_datetime_intervals_match_ranges_that_straddle_their_ends(server: ServerProcess, catalog: Catalog) -> None:
    items = list(catalog.versions[-1][2].values())
    ranged = next(i for i in items if i["properties"].get("start_datetime"))
    start = datetime.fromisoformat(ranged["properties"]["start_datetime"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(ranged["properties"]["end_datetime"].replace("Z", "+00:00"))
    middle = (start + (end - start) / 2).strftime("%Y-%m-%dT%H:%M:%SZ")  # inside the range, after its start
    client = Client.open(server.url)
    for interval in (f"{middle}/..", f"../{middle}", f"{middle}/2024-09-30T00:00:00Z", middle):
        got = {i.id for i in client.search(datetime=interval, limit=500).items()}
        lo, _, hi = interval.partition("/") if "/" in interval else (interval, "", interval)
        expected = sql_ids(catalog, "(CAST(? AS VARCHAR) = '..' OR coalesce(end_datetime, datetime) >= CAST(? AS TIMESTAMPTZ))"
                                    " AND (CAST(? AS VARCHAR) = '..' OR coalesce(start_datetime, datetime) <= CAST(? AS TIMESTAMPTZ))",
                           [lo, None if lo == ".." else lo, hi, None if hi == ".." else hi])
        assert ranged["id"] in expected and got == expected, interval


def test_pystac_client_cql2_filter_equals_sql(server: ServerProcess, catalog: Catalog) -> None:
    client = Client.open(server.url)
    text = "platform = 'HALO' AND datetime >= TIMESTAMP('2024-09-01T00:00:00Z')"
    got = {i.id for i in client.search(filter=text, filter_lang="cql2-text", limit=100).items()}
    expected = sql_ids(catalog, "platform = 'HALO' AND coalesce(start_datetime, datetime) >= ?",
                       [datetime(2024, 9, 1, tzinfo=timezone.utc)])
    assert got == expected and len(expected) > 50
    as_json = {"op": "a_contains", "args": [{"property": "instruments"}, ["HAMP"]]}
    got_json = {i.id for i in client.search(filter=as_json, filter_lang="cql2-json", method="POST", limit=100).items()}
    assert got_json == sql_ids(catalog, "list_contains(instruments, 'HAMP')", []) and got_json


def test_free_text_q_equals_sql(http: httpx.Client, catalog: Catalog) -> None:
    got = {f["id"] for f in all_pages(http, "/search", {"q": "cold pool,dust", "limit": "200"})}
    expected = sql_ids(catalog, "lower(concat_ws(' ', title, item->>'$.properties.description', "
                                "array_to_string(keywords, ' '))) SIMILAR TO '.*(cold pool|dust).*'", [])
    assert got == expected and len(expected) > 50


def test_pages_cover_every_item_once(http: httpx.Client, catalog: Catalog) -> None:
    features = all_pages(http, "/collections/radiosondes/items", {"limit": "37"})
    ids = [f["id"] for f in features]
    assert len(ids) == len(set(ids))
    assert set(ids) == {i["id"] for i in catalog.versions[-1][2].values() if i["collection"] == "radiosondes"}


@pytest.mark.parametrize("version", [0, 1])
def test_as_of_and_versions_answer_from_the_past(http: httpx.Client, catalog: Catalog, version: int) -> None:
    commit, when, state = catalog.versions[version]
    expected = {i["id"] for i in state.values()}
    by_date = all_pages(http, "/search", {"as_of": when, "limit": "1000"})
    by_commit = all_pages(http, f"/versions/{commit}/search", {"limit": "1000"})
    assert {f["id"] for f in by_date} == expected == {f["id"] for f in by_commit}
    response = http.get("/search", params={"as_of": when, "limit": "1"})
    assert response.headers["HaloDB-Commit"] == commit and response.json()["halodb:commit"] == commit
    item = next(iter(state.values()))
    past = http.get(f"/versions/{commit}/collections/{item['collection']}/items/{item['id']}").json()
    assert past["properties"] == item["properties"]
    assert all(f"/versions/{commit}/" in link["href"] for link in past["links"] if link["rel"] in ("self", "root"))


def test_post_search_pages_with_post_next_links(http: httpx.Client, catalog: Catalog) -> None:
    body: dict[str, Any] = {"collections": ["dropsondes"], "limit": 100}
    ids: list[str] = []
    while True:
        response = http.post("/search", json=body)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [f["id"] for f in page["features"]]
        nexts = [link for link in page["links"] if link["rel"] == "next"]
        if not nexts:
            break
        assert nexts[0]["method"] == "POST"
        body = nexts[0]["body"]
    assert sorted(ids) == sorted(i["id"] for i in catalog.versions[-1][2].values() if i["collection"] == "dropsondes")


def test_sortby_and_fields(http: httpx.Client) -> None:
    body = http.get("/search", params={"sortby": "-id", "fields": "id,properties.title,-links", "limit": "5"}).json()
    ids = [f["id"] for f in body["features"]]
    assert ids == sorted(ids, reverse=True)
    assert all(set(f) == {"type", "stac_version", "id", "properties"} and set(f["properties"]) == {"title"}
               for f in body["features"])
    default = http.post("/search", json={"fields": {}, "limit": 3}).json()["features"]
    assert all(set(f) <= set(search.DEFAULT_FIELDS) | {"properties"} and "geometry" in f and "title" not in f["properties"]
               for f in default)
    nested = http.get("/search", params={"fields": "-properties,+properties.platform", "limit": "3"}).json()
    assert all(set(f) == {"type", "stac_version", "id", "links", "properties"} and set(f["properties"]) == {"platform"}
               for f in nested["features"])
    assert http.post("/search", json={"fields": None}).status_code == 400


def test_changes_between_versions_as_json_and_atom(http: httpx.Client, catalog: Catalog) -> None:
    (c1, _, s1), (c2, _, s2) = catalog.versions[0], catalog.versions[1]
    body = http.get("/changes", params={"from": c1, "to": c2, "limit": "10000"}).json()
    kinds: dict[str, set[str]] = {"added": set(), "changed": set(), "removed": set()}
    for change in body["changes"]:
        kinds[change["change"]].add(change["key"])
        assert change["commit"] == c2
    assert kinds["removed"] == set(s1) - set(s2) and kinds["added"] == set(s2) - set(s1)
    assert kinds["changed"] == {k for k in set(s1) & set(s2) if s1[k] != s2[k]} and kinds["changed"]
    removed = next(c for c in body["changes"] if c["change"] == "removed")
    assert removed["new"] is None and removed["old"]["data_cid"]
    atom = http.get("/changes", params={"from": c1, "to": c2, "limit": "10000"},
                    headers={"Accept": "application/atom+xml"})
    assert atom.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(atom.content)
    assert len(feed.findall("{http://www.w3.org/2005/Atom}entry")) == len(body["changes"])


@pytest.mark.parametrize(("path", "params", "parameter", "status"), [
    ("/search", {"bbox": "1,2,3"}, "bbox", 400),
    ("/search", {"bbox": "a,b,c,d"}, "bbox", 400),
    ("/search", {"datetime": "yesterday"}, "datetime", 400),
    ("/search", {"datetime": "2024-09-02T00:00:00Z/2024-09-01T00:00:00Z"}, "datetime", 400),
    ("/search", {"filter": "platform = "}, "filter", 400),
    ("/search", {"filter": "nosuchproperty = 1"}, "filter", 400),
    ("/search", {"limit": str(10**9)}, "limit", 400),
    ("/search", {"limit": "0"}, "limit", 400),
    ("/search", {"fields": "nosuchfield"}, "fields", 400),
    ("/search", {"sortby": "geometry"}, "sortby", 400),
    ("/search", {"token": "bafyforged:10"}, "token", 400),
    ("/search", {"colections": "typo"}, "colections", 400),
    ("/search", {"as_of": "2020-01-01T00:00:00Z"}, "as_of", 404),
    ("/search", {"as_of": "yesterday"}, "as_of", 400),
    ("/collections", {"as_of": "2024-09-01T00:00:00Z/.."}, "as_of", 400),
    ("/search", {"intersects": "{not json"}, "intersects", 400),
    ("/search", {"bbox": "0,0,1,1", "intersects": '{"type": "Point", "coordinates": [0, 0]}'}, "intersects", 400),
    ("/collections/nosuch", {}, "collection", 404),
    ("/collections/nosuch/items", {}, "collection", 404),
    ("/collections/radiosondes/items/nosuch", {}, "item", 404),
    ("/versions/bafynosuch/search", {}, "version", 404),
    ("/changes", {"from": "not a version"}, "from", 400),
])
def test_bad_requests_get_a_json_error_naming_the_parameter(
    http: httpx.Client, path: str, params: dict[str, str], parameter: str, status: int,
) -> None:
    response = http.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["parameter"] == parameter and body["description"]


def test_a_limit_above_the_maximum_is_served_as_the_maximum(http: httpx.Client) -> None:
    body = http.get("/search", params={"limit": "100000"}).json()  # OGC API Features: not an error
    assert body["numberReturned"] == min(10_000, body["numberMatched"]) > 10


def test_bad_post_bodies(http: httpx.Client) -> None:
    assert http.post("/search", content=b"{nope").json()["parameter"] == "body"
    assert http.post("/search", json=["a"]).json()["parameter"] == "body"
    assert http.post("/search", json={"limit": "many"}).json()["parameter"] == "limit"
    assert http.post("/search", json={"bbox": "0,0,1,1"}).json()["parameter"] == "bbox"
    big = http.post("/search", content=b"[" + b"0," * (1 << 20) + b"0]")
    assert big.status_code == 413 and big.json()["parameter"] == "body"


def test_html_for_browsers(http: httpx.Client, catalog: Catalog) -> None:
    item = next(iter(catalog.versions[-1][2].values()))
    page = http.get(f"/collections/{item['collection']}/items/{item['id']}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and item["id"] in page.text


def test_serve_refuses_an_unsynced_name(tmp_path: Path) -> None:
    from .conftest import run_cli

    halodb.open(tmp_path / "home", create=True).close()
    result = run_cli(tmp_path / "home", "serve", "nosuchname", "--port", "0")
    assert result.code == 2 and result.err.count("\n") == 1 and "nosuchname" in result.err
