"""The landing pages' HTML, rendered without a server (halodb/serve/pages.py, svgmap.py).

Shows: every field of an item reaches its page (title, description, platform, instruments,
time range, map, data CID with ipfs:// and gateway links, the snippet, DOI and citation,
history, other properties, assets, links, the registry version); hostile items render as
text and their hrefs are links only for http/https/ipfs; maps are well-formed SVG drawing
only valid positions; the search form turns into STAC search parameters or a RequestError
naming the field; links keep the version a page shows (as_of or /versions/CID).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest

from halodb.errors import RequestError
from halodb.serve.pages import (
    HistoryEntry,
    PageContext,
    Paging,
    SearchChoices,
    SearchForm,
    SearchResults,
    render_collection,
    render_item,
    render_search,
)
from halodb.serve.svgmap import svg_map

DATA_CID = "bafkreiaaqgrgfpkqx6h2xybvvjfnnd3frfiw7tn57mjyd6nvsufakjcgyi"
CTX = PageContext(name="orcestra", commit="bafyreicommithead", commit_time="2024-10-01T12:00:00Z",
                  root_url="http://127.0.0.1:8000")
SVG = "{http://www.w3.org/2000/svg}"


class _Dom(HTMLParser):
    """The hrefs, ids, element names and text of a page (enough to check it as a browser would)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "href" and value is not None:
                self.hrefs.append(value)
            if name == "id" and value is not None:
                self.ids.add(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def halo_item(**props: Any) -> dict[str, Any]:
    track = [[-59.49, 13.07], [-55.0, 13.5], [-52.0, 12.0], [-53.0, 11.0], [-59.49, 13.07]]
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": "HALO-20240903a", "collection": "halo-flights",
        "geometry": {"type": "LineString", "coordinates": track},
        "bbox": [-59.49, 11.0, -52.0, 13.5],
        "properties": {
            "title": "HALO HALO-20240903a position and state",
            "description": "BAHAMAS aircraft state of research flight HALO-20240903a from Barbados.",
            "start_datetime": "2024-09-03T11:02:00Z", "end_datetime": "2024-09-03T19:40:00Z",
            "datetime": "2024-09-03T11:02:00Z",
            "platform": "HALO", "instruments": ["BAHAMAS", "HAMP"], "keywords": ["ORCESTRA", "flight track"],
            "sci:doi": "10.5281/zenodo.1234567", "sci:citation": "Gutleben et al. (2025): HALO BAHAMAS data",
            "orcestra:flight_id": "HALO-20240903a", "license": "CC-BY-4.0",
            **props,
        },
        "links": [{"rel": "license", "href": "https://creativecommons.org/licenses/by/4.0/", "title": "CC-BY-4.0"}],
        "assets": {"data": {"href": f"ipfs://{DATA_CID}", "type": "application/vnd.zarr", "roles": ["data"]}},
    }


HISTORY = [
    HistoryEntry("bafyreicommit3", "2024-09-20T08:00:00Z", DATA_CID, "bafyreiitem2", "changed", current=True),
    HistoryEntry("bafyreicommit1", "2024-09-05T08:00:00Z", "bafkreiolddata", "bafyreiitem1", "added"),
]


def test_an_item_page_shows_every_field() -> None:
    html = render_item(halo_item(), HISTORY, CTX)
    dom = _Dom(html)
    text = dom.all_text
    for shown in ("HALO HALO-20240903a position and state", "BAHAMAS aircraft state of research flight",
                  "HALO", "BAHAMAS, HAMP", "2024-09-03 11:02:00Z", "2024-09-03 19:40:00Z", "ORCESTRA", "flight track",
                  DATA_CID, "Gutleben et al. (2025): HALO BAHAMAS data", "10.5281/zenodo.1234567",
                  "orcestra:flight_id", "CC-BY-4.0", "-59.49, 11, -52, 13.5"):
        assert shown in text, shown
    assert f'xr.open_dataset("ipfs://{DATA_CID}", engine="zarr")' in text
    assert f"ipfs://{DATA_CID}" in dom.hrefs
    assert f"https://ipfs.io/ipfs/{DATA_CID}/" in dom.hrefs
    assert "https://doi.org/10.5281/zenodo.1234567" in dom.hrefs
    item_url = "http://127.0.0.1:8000/collections/halo-flights/items/HALO-20240903a"
    assert item_url + "?f=json" in dom.hrefs
    assert "http://127.0.0.1:8000/collections/halo-flights" in dom.hrefs
    assert "https://creativecommons.org/licenses/by/4.0/" in dom.hrefs
    # the history: both versions, newest first as given, each linking to the item as of its commit
    for entry in HISTORY:
        assert entry.commit in text and entry.change in text and (entry.data_cid or "") in text
    assert "http://127.0.0.1:8000/versions/bafyreicommit1/collections/halo-flights/items/HALO-20240903a" in dom.hrefs
    assert html.index("bafyreicommit3") < html.index("bafyreicommit1")
    # the registry version the page shows
    assert "bafyreicommithead" in text and "2024-10-01 12:00:00Z" in text and "as of" not in text
    # the map: a track path in an inline SVG, no image or script fetched
    assert {"svg", "path", "pre", "code"} <= set(dom.tags)
    assert not {"script", "img", "link", "iframe"} & set(dom.tags)
    assert {"title", "map", "data-cid", "snippet", "history", "doi", "citation"} <= dom.ids


def test_a_gateway_and_a_caller_known_data_cid_are_used() -> None:
    ctx = PageContext("orcestra", "bafyc", "2024-10-01T12:00:00Z", "http://h", gateway="http://127.0.0.1:8080/")
    item = halo_item()
    item["assets"] = {"data": {"href": "ipfs://bafkreisub/products/HALO/x.zarr"}}
    dom = _Dom(render_item(item, [], ctx, data_cid="bafkreisub"))
    assert "http://127.0.0.1:8080/ipfs/bafkreisub/products/HALO/x.zarr" in dom.hrefs
    assert 'xr.open_dataset("ipfs://bafkreisub/products/HALO/x.zarr", engine="zarr")' in dom.all_text
    assert "No history recorded." in dom.all_text


def test_an_item_without_data_doi_time_or_geometry_still_renders() -> None:
    html = render_item({"id": "bare", "properties": {}}, [], CTX)
    text = _Dom(html).all_text
    assert "bare" in text and "This item names no data on IPFS." in text and "This item has no geometry." in text
    assert "Cite" not in text and "no time" in text


HOSTILE = "<script>alert('x')</script>"


def test_hostile_items_render_as_text_and_keep_only_safe_links() -> None:
    item = halo_item(title=HOSTILE, description=HOSTILE, platform=HOSTILE, instruments=[HOSTILE, {"a": 1}],
                     keywords=[HOSTILE], **{"sci:doi": HOSTILE, "sci:citation": HOSTILE, HOSTILE: HOSTILE})
    item["id"] = "\"><img src=x onerror=alert(1)>"
    item["links"] = [{"rel": HOSTILE, "href": "javascript:alert(1)"}, {"rel": "x", "href": "data:text/html,<b>"},
                     {"rel": "ok", "href": "ipfs://bafyok"}]
    item["assets"] = {HOSTILE: {"href": "JavaScript:alert(2)", "title": HOSTILE}}
    history = [HistoryEntry(HOSTILE, HOSTILE, HOSTILE, None, "removed")]
    html = render_item(item, history, CTX)
    dom = _Dom(html)
    assert "<script" not in html and "<img" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "script" not in dom.tags and "img" not in dom.tags
    assert HOSTILE in dom.all_text  # shown, as text
    assert not [h for h in dom.hrefs if h.lower().startswith(("javascript:", "data:"))]
    assert "ipfs://bafyok" in dom.hrefs
    # the item id is quoted into the URL path, never breaking out of the attribute
    assert any("%22%3E%3Cimg" in h for h in dom.hrefs)


def test_hostile_collections_and_search_results_render_as_text() -> None:
    collection = {"id": HOSTILE, "title": HOSTILE, "description": HOSTILE, "summaries": {"platform": [HOSTILE]},
                  "extent": {"spatial": {"bbox": [["x", 1, 2, 3]]}, "temporal": {"interval": [[HOSTILE, None]]}}}
    items = [halo_item(title=HOSTILE)]
    html = render_collection(collection, items, Paging(matched=1), CTX)
    assert "<script" not in html and HOSTILE in _Dom(html).all_text
    form = SearchForm(q=HOSTILE, platform=HOSTILE, collection=HOSTILE)
    html = render_search(form, SearchResults(items=items, matched=1), SearchChoices([HOSTILE], [(HOSTILE, HOSTILE)]), CTX,
                         error=HOSTILE)
    assert "<script" not in html and HOSTILE in _Dom(html).all_text


def test_a_collection_page_shows_extents_summaries_count_and_paged_items() -> None:
    collection = {
        "id": "halo-flights", "title": "HALO research flights", "description": "Flight tracks of HALO.",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [[-60.0, 8.0, -20.0, 18.0]]},
                   "temporal": {"interval": [["2024-08-09T10:00:00Z", "2024-09-29T18:00:00Z"]]}},
        "summaries": {"platform": ["HALO"], "instruments": ["BAHAMAS", "HAMP"], "keywords": ["ORCESTRA"]},
    }
    paging = Paging(matched=45, next_url="http://127.0.0.1:8000/collections/halo-flights?token=abc",
                    prev_url=None, first=11)
    html = render_collection(collection, [halo_item()], paging, CTX)
    dom = _Dom(html)
    text = dom.all_text
    for shown in ("HALO research flights", "Flight tracks of HALO.", "2024-08-09 10:00:00Z", "2024-09-29 18:00:00Z",
                  "BAHAMAS", "HAMP", "ORCESTRA", "45", "Items 11–11 of 45", "-60, 8, -20, 18", "Next"):
        assert shown in text, shown
    assert "Previous" not in text
    assert paging.next_url in dom.hrefs
    assert "http://127.0.0.1:8000/collections/halo-flights/items/HALO-20240903a" in dom.hrefs
    assert "http://127.0.0.1:8000/collections/halo-flights?f=json" in dom.hrefs
    svg = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + 6])
    assert svg.find(f".//{SVG}path[@class='bbox']") is not None
    assert svg.find(f".//{SVG}path[@class='track']") is not None  # the item's footprint


def test_the_search_page_has_a_plain_form_results_paging_and_api_links() -> None:
    form = SearchForm(q="HALO", start="2024-09-01", platform="HALO", collection="halo-flights")
    choices = SearchChoices(platforms=["HALO", "METEOR"], collections=[("halo-flights", "HALO research flights")])
    results = SearchResults(items=[halo_item()], matched=12, next_url="http://127.0.0.1:8000/?q=HALO&token=n1",
                            prev_url="http://127.0.0.1:8000/?q=HALO&token=p1", first=6)
    html = render_search(form, results, choices, CTX)
    dom = _Dom(html)
    text = dom.all_text
    assert "12 datasets matched; showing 6–6." in text
    assert {results.next_url, results.prev_url} <= set(dom.hrefs)
    assert "http://127.0.0.1:8000/collections/halo-flights/items/HALO-20240903a" in dom.hrefs
    for link in ("http://127.0.0.1:8000/collections", "http://127.0.0.1:8000/conformance",
                 "http://127.0.0.1:8000/?f=json"):
        assert link in dom.hrefs
    assert '<form class="search" method="get" action="http://127.0.0.1:8000/"' in html
    for name in SearchForm.FIELDS:
        assert f'name="{name}"' in html
    assert 'value="HALO"' in html and '<option value="HALO" selected>' in html
    assert '<option value="halo-flights" selected>HALO research flights</option>' in html
    assert "script" not in dom.tags
    # nothing searched yet: the form alone
    assert "Results" not in _Dom(render_search(SearchForm(), None, choices, CTX)).all_text


def test_the_search_form_becomes_stac_search_parameters() -> None:
    form = SearchForm.from_query({"q": " sonde ", "start": "2024-08-10", "end": "2024-08-20T12:00:00Z",
                                  "west": "-60", "south": "5.5", "east": "-20", "north": "20",
                                  "collection": "radiosondes", "platform": "RV Meteor's", "token": "ignored"})
    assert form.search_parameters() == {
        "q": "sonde", "datetime": "2024-08-10T00:00:00Z/2024-08-20T12:00:00Z", "bbox": "-60,5.5,-20,20",
        "collections": "radiosondes", "filter": "platform = 'RV Meteor''s'", "filter-lang": "cql2-text",
    }
    assert SearchForm().search_parameters() == {} and SearchForm().is_empty()
    assert form.as_query()["q"] == "sonde" and "token" not in form.as_query()


@pytest.mark.parametrize(("fields", "parameter"), [
    ({"start": "yesterday"}, "start"),
    ({"end": "2024-13"}, "end"),
    ({"west": "1", "south": "2", "east": "3"}, "north"),
    ({"west": "1", "south": "-91", "east": "3", "north": "4"}, "south"),
    ({"west": "nan", "south": "1", "east": "3", "north": "4"}, "west"),
    ({"west": "1", "south": "1", "east": "1e999", "north": "4"}, "east"),
])
def test_a_malformed_form_field_is_a_request_error_naming_it(fields: dict[str, str], parameter: str) -> None:
    with pytest.raises(RequestError) as caught:
        SearchForm.from_query(fields).search_parameters()
    assert caught.value.parameter == parameter and caught.value.status == 400
    assert str(caught.value).startswith(parameter)


def test_links_keep_the_version_the_page_shows() -> None:
    as_of = PageContext("orcestra", "bafyc", "2024-09-14T20:00:00Z", "http://h", as_of="2024-09-15T00:00:00Z")
    html = render_search(SearchForm(), None, SearchChoices(), as_of)
    assert '<input type="hidden" name="as_of" value="2024-09-15T00:00:00Z">' in html
    assert "as of" in _Dom(html).all_text
    item_html = render_item(halo_item(), HISTORY, as_of)
    assert "http://h/collections/halo-flights?as_of=2024-09-15T00%3A00%3A00Z" in _Dom(item_html).hrefs
    pinned = PageContext("orcestra", "bafyc", "2024-09-14T20:00:00Z", "http://h", pinned=True)
    hrefs = _Dom(render_item(halo_item(), HISTORY, pinned)).hrefs
    assert "http://h/versions/bafyc/collections/halo-flights" in hrefs
    assert "http://h/versions/bafyc/collections/halo-flights/items/HALO-20240903a?f=json" in hrefs
    assert 'name="as_of"' not in render_search(SearchForm(), None, SearchChoices(), pinned)


def _svg(geometry: Any, **kwargs: Any) -> ET.Element:
    return ET.fromstring(str(svg_map(geometry, **kwargs)))


@pytest.mark.parametrize(("geometry", "element", "count"), [
    ({"type": "LineString", "coordinates": [[-59.5, 13.1], [-50, 14], [-51, 12]]}, "path[@class='track']", 1),
    ({"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 2]]]}, "path[@class='track']", 1),
    ({"type": "Point", "coordinates": [-24.5, 14.9]}, "circle", 1),
    ({"type": "MultiPoint", "coordinates": [[-24.5, 14.9], [-25, 15], [-26, 15.5]]}, "circle", 3),
    ({"type": "Polygon", "coordinates": [[[-60, 8], [-20, 8], [-20, 18], [-60, 18], [-60, 8]]]}, "path[@class='area']", 1),
    ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]},
                                                   {"type": "Point", "coordinates": [1, 1]}]}, "circle", 2),
])
def test_the_map_draws_each_geometry_kind(geometry: dict[str, Any], element: str, count: int) -> None:
    svg = _svg(geometry)
    assert svg.tag == f"{SVG}svg" and svg.get("viewBox") == "0 0 480 300"
    assert len(svg.findall(f".//{SVG}{element}")) == count
    assert svg.find(f".//{SVG}path[@class='graticule']") is not None
    labels = [t.text or "" for t in svg.iter(f"{SVG}text")]
    assert labels and all("°" in label for label in labels)
    # everything drawn lies inside the picture
    for circle in svg.iter(f"{SVG}circle"):
        assert 0 <= float(circle.get("cx", "-1")) <= 480 and 0 <= float(circle.get("cy", "-1")) <= 300


def test_the_map_fits_the_geometry_with_labels_in_degrees() -> None:
    svg = _svg({"type": "LineString", "coordinates": [[-59.5, 10.0], [-50.0, 15.0]]})
    labels = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"54°W", "52°W", "12°N"} <= labels, labels
    small = _svg({"type": "Point", "coordinates": [-24.51, 14.92]})
    assert any("." in (t.text or "") for t in small.iter(f"{SVG}text"))  # a point: a fine graticule


def test_the_map_leaves_out_what_is_not_a_position() -> None:
    nan, inf = math.nan, math.inf
    assert svg_map(None) == "" and svg_map({"type": "Point", "coordinates": [nan, 1]}) == ""
    assert svg_map({"type": "Nope", "coordinates": [1, 2]}) == "" and svg_map("x") == ""
    svg = _svg({"type": "MultiPoint", "coordinates": [[1, 2], [inf, 2], ["a", 3], [True, 1], [5], [1, 95], [3, 4]]})
    assert len(svg.findall(f".//{SVG}circle")) == 2
    many = _svg({"type": "LineString", "coordinates": [[i / 1000, i / 2000] for i in range(20_000)]})
    path = many.find(f".//{SVG}path[@class='track']")
    assert path is not None and path.get("d", "").count("L") < 4_100


def test_the_map_title_is_escaped_and_the_bbox_drawn() -> None:
    svg = svg_map(None, bbox=[-60, 8, -20, 18], title=HOSTILE)
    assert "<script" not in svg
    tree = ET.fromstring(str(svg))
    assert tree.findtext(f"{SVG}title") == HOSTILE
    assert tree.find(f".//{SVG}path[@class='bbox']") is not None


def test_a_geometry_across_the_antimeridian_is_drawn_in_one_piece() -> None:
    geometry = {"type": "MultiPolygon", "coordinates": [
        [[[170.0, 0.0], [180.0, 0.0], [180.0, 5.0], [170.0, 5.0], [170.0, 0.0]]],
        [[[-180.0, 0.0], [-170.0, 0.0], [-170.0, 5.0], [-180.0, 5.0], [-180.0, 0.0]]]]}
    svg = _svg(geometry, bbox=[170.0, 0.0, -170.0, 5.0])
    labels = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"175°E", "175°W"} <= labels, labels
    xs = [float(v) for path in svg.iter(f"{SVG}path") if path.get("class") in ("area", "bbox")
          for v in (path.get("d") or "").replace("M", " ").replace("L", " ").replace("Z", " ").split()[::2]]
    assert xs and 0 < min(xs) and max(xs) < 480  # 20 degrees wide, not the whole world
    assert max(xs) - min(xs) < 480 * 0.9
