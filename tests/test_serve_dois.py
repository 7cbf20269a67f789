"""``GET /doi/{doi}`` of a real ``halodb serve``: what a DOI was minted for, as ``halodb at doi:`` answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import halodb
from halodb.ipld import CID

from .conftest import cid_for
from .serve_fixture import ServerProcess, start_server
from .test_dois import three_versions


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[CID]]]:
    home = tmp_path_factory.mktemp("dois") / "home"
    with halodb.open(home, create=True) as reg:
        commits = three_versions(reg)
        reg.publish("latest", commits[-1])
        reg.sync("latest")
    server: ServerProcess
    for server in start_server(home, "latest"):
        yield server.url, commits


def test_a_doi_resolves_to_the_data_it_was_minted_for(served: tuple[str, list[CID]]) -> None:
    url, (c1, c2, c3) = served
    for spelling in ["10.82246/f1", "10.82246/F1", "doi:10.82246/f1", "https://doi.org/10.82246/f1"]:
        got = httpx.get(f"{url}doi/{spelling}")
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["key"], body["data_cid"], body["commit"], body["version"], body["state"]) == (
            "halo/f1", cid_for("a1"), str(c1), 1, "withdrawn")
        assert got.headers["HaloDB-Commit"] == str(c3)
    body = httpx.get(f"{url}doi/10.82246/f1.v2").json()
    assert (body["data_cid"], body["commit"], body["state"]) == (cid_for("a3"), str(c3), "current")
    # as of the second version: the DOI is still on f1, whose data moved on
    body = httpx.get(f"{url}versions/{c2}/doi/10.82246/f1").json()
    assert (body["data_cid"], body["state"], body["halodb:commit"]) == (cid_for("a1"), "superseded", str(c2))
    body = httpx.get(f"{url}doi/10.82246/f2", params={"as_of": "2024-09-05T00:00:00Z"}).json()
    assert (body["key"], body["state"]) == ("halo/f2", "current")


def test_a_browser_is_sent_to_the_item_as_it_was_minted(served: tuple[str, list[CID]]) -> None:
    url, (c1, _, _) = served
    got = httpx.get(f"{url}doi/10.82246/f1", headers={"Accept": "text/html"})
    assert got.status_code == 303 and got.headers["location"] == f"{url}versions/{c1}/collections/halo/items/f1"
    page = httpx.get(got.headers["location"], headers={"Accept": "text/html"})
    assert page.status_code == 200 and cid_for("a1") in page.text


@pytest.mark.parametrize("path, status, parameter", [
    ("doi/nope", 400, "doi"), ("doi/10.1/x", 400, "doi"), ("doi/" + "1" * 5000, 400, "doi"),
    ("doi/10.82246/nobody", 404, "doi"), ("doi/10.82246/f1.v2?as_of=2024-09-15T00:00:00Z", 404, "doi"),
    ("doi/10.82246/f1?limit=3", 400, "limit")])
def test_a_bad_or_unknown_doi_is_refused_naming_it(served: tuple[str, list[CID]], path: str, status: int,
                                                    parameter: str) -> None:
    url, _ = served
    got = httpx.get(url + path)
    assert got.status_code == status, got.text
    assert got.json()["parameter"] == parameter
