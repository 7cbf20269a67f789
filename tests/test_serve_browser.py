"""The landing pages in a real browser: Debian's headless Chromium against a real ``halodb serve``.

A catalog of generated items in three versions (tests/serve_fixture.py) is served by the CLI
on 127.0.0.1. With JavaScript off, as a reader on a locked-down ship might have it, the
browser loads the search page (the API's landing page, asked with the browser's own
``Accept: text/html``), types a term, picks a platform and submits the plain GET form,
reads the results, and follows one to its item page; the DOM holds the item's title, a map
drawn as inline SVG, the history table and the snippet with the data CID. Screenshots go to
``test-artefacts/`` (valid PNGs). No page asks anything of a host but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from playwright.sync_api import Dialog

from halodb.serve.pages import HistoryEntry, PageContext, render_item
from halodb.stac.items import data_cid
from tests.browser import chromium, is_png, require_chromium, screenshot
from tests.serve_fixture import Catalog, ServerProcess, build_catalog, start_server


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    require_chromium()  # before building anything
    return build_catalog(tmp_path_factory.mktemp("serve-pages") / "home", 60, seed=7)


@pytest.fixture(scope="module")
def server(catalog: Catalog) -> Iterator[ServerProcess]:
    yield from start_server(catalog.home, catalog.name)


def _item_of(catalog: Catalog, url: str, version: int = -1) -> dict[str, object]:
    """The item a page URL ``.../collections/C/items/I`` shows, from the catalog's version."""
    parts = [unquote(p) for p in urlsplit(url).path.split("/")]
    collection, item_id = parts[parts.index("collections") + 1], parts[parts.index("items") + 1]
    return catalog.versions[version][2][f"{collection}/{item_id}"]


def test_search_then_an_item_page_without_javascript(catalog: Catalog, server: ServerProcess) -> None:
    with chromium(javascript=False) as session:
        page = session.page
        page.goto(server.url)
        assert page.locator("h1").inner_text().startswith("Search the datasets of")
        assert page.locator("form.search").get_attribute("method") == "get"
        links = {a.get_attribute("href") for a in page.locator("a").all()}
        assert any(h and h.endswith("/collections") for h in links)
        assert any(h and h.endswith("/conformance") for h in links)
        assert any(h and h.endswith("/?f=json") for h in links)

        # a search as a person makes it: type a word, pick a platform, press the button
        page.fill("#q", "convection")
        page.fill("#start", "2024-08-20")
        page.select_option("#platform", "HALO")
        with page.expect_navigation() as navigation:
            page.click("form.search button[type=submit]")
        assert navigation.value is not None and navigation.value.status == 200, page.inner_text("body")
        query = parse_qs(urlsplit(page.url).query)
        assert query["q"] == ["convection"] and query["platform"] == ["HALO"] and query["start"] == ["2024-08-20"]
        # what the search must find: HALO items about convection whose time reaches 2024-08-20 or later
        expected = [i for i in catalog.versions[-1][2].values()
                    if i["properties"]["platform"] == "HALO"
                    and (i["properties"].get("end_datetime") or i["properties"]["datetime"]) >= "2024-08-20T00:00:00Z"
                    and "convection" in " ".join([i["properties"]["title"], i["properties"]["description"],
                                                  *i["properties"]["keywords"]]).lower()]
        assert expected, "the generated catalog has HALO items about convection"
        matched = page.locator("#matched").inner_text()
        assert matched.startswith(f"{len(expected)} dataset"), matched
        results = page.locator("#results a.result")
        titles = set(results.all_inner_texts())
        assert titles and titles <= {i["properties"]["title"] for i in expected}
        assert page.locator("#results svg.map").count() >= 1  # thumbnails
        search_png = screenshot(page, "serve-search")

        # follow the first result to its page
        results.first.click()
        page.wait_for_load_state()
        item = _item_of(catalog, page.url)
        props = item["properties"]
        assert isinstance(props, dict)
        assert page.locator("h1#title").inner_text() == props["title"]
        assert page.locator("#platform").inner_text() == "HALO"
        svg = page.locator("#map svg.map")
        assert svg.count() == 1
        assert svg.locator("path.track, path.area, circle").count() >= 1
        assert page.locator("#history tbody tr").count() >= 1
        cid = data_cid(dict(item))
        assert cid is not None
        assert page.locator("#data-cid").inner_text() == cid
        assert f'xr.open_dataset("ipfs://{cid}", engine="zarr")' in page.locator("#snippet").inner_text()
        assert page.locator("#ipfs-link").get_attribute("href") == f"ipfs://{cid}"
        assert catalog.versions[-1][0] in page.locator("footer").inner_text()
        item_png = screenshot(page, "serve-item")
        assert session.outside == []
    for png in (search_png, item_png):
        assert is_png(png), png


def test_a_changed_item_shows_its_history_and_its_past(catalog: Catalog, server: ServerProcess) -> None:
    first, second = catalog.versions[0], catalog.versions[1]
    key = next(k for k, item in second[2].items() if item["properties"]["title"].endswith("(revised)"))
    collection, item_id = key.split("/", 1)
    url = f"{server.url}collections/{collection}/items/{item_id}"
    with chromium(javascript=True) as session:
        page = session.page
        page.goto(url)
        assert page.locator("h1#title").inner_text() == second[2][key]["properties"]["title"]
        rows = page.locator("#history tbody tr")
        assert rows.count() == 2
        history = page.locator("#history").inner_text()
        assert "added" in history and "changed" in history
        assert first[0] in history and second[0] in history
        # the older version, as of a time between the first and the second commit
        page.goto(url + "?as_of=2024-09-05T00:00:00Z")
        assert page.locator("h1#title").inner_text() == first[2][key]["properties"]["title"]
        footer = page.locator("footer").inner_text()
        assert "as of" in footer and first[0] in footer
        # the collection page lists its items and shows its extent
        page.goto(url)
        page.click(f"nav a[href*='/collections/{collection}']")
        page.wait_for_load_state()
        assert page.locator("h1#title").count() == 1
        assert page.locator("#map svg.map").count() == 1
        assert page.locator("#items a").count() >= 1
        path = screenshot(page, "serve-collection")
        # the search page pages on: Next shows the following results
        page.goto(server.url + "?q=orcestra")
        total = len(catalog.versions[-1][2])
        assert page.locator("#matched").inner_text().startswith(f"{total} datasets matched; showing 1–20")
        with page.expect_navigation() as navigation:
            page.click("a[rel=next]")
        assert navigation.value is not None and navigation.value.status == 200, page.inner_text("body")
        assert page.locator("#matched").inner_text().startswith(f"{total} datasets matched; showing 21–40")
        assert page.locator("a[rel=prev]").count() == 1
        assert session.outside == []
    assert is_png(path)



def test_a_hostile_item_page_runs_nothing_in_the_browser() -> None:
    """An item whose every text is markup: with JavaScript on, no script runs, no dialog opens,
    no request leaves; the title reads as the text it is."""
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    item = {"id": hostile, "collection": hostile, "geometry": {"type": "Point", "coordinates": [-24.5, 14.9]},
            "properties": {"title": hostile, "description": hostile, "platform": hostile, "sci:doi": hostile},
            "links": [{"rel": hostile, "href": "javascript:alert(3)"}],
            "assets": {"data": {"href": "javascript:alert(4)", "title": hostile}}}
    ctx = PageContext("hostile", "bafyc", "2024-10-01T12:00:00Z", "http://127.0.0.1:9")
    html = render_item(item, [HistoryEntry(hostile, hostile, hostile, None, "removed")], ctx)
    with chromium(javascript=True) as session:
        dialogs: list[str] = []

        def seen(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        session.page.on("dialog", seen)
        session.page.set_content(html)
        assert session.page.locator("h1#title").inner_text() == hostile
        assert session.page.locator("main script, main img").count() == 0
        assert session.page.evaluate("document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0
        assert dialogs == [] and session.outside == []
