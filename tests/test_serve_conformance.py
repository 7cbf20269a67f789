"""Conformance of ``halodb serve``, judged by the STAC ecosystem's own ``stac-api-validator``.

The validator runs in-process and offline (``tests/stac_api_validator_offline.py``): the STAC
JSON schemas it downloads are served from the copies pystac and jsonschema-specifications
bundle, and a request for anything else fails the test. It checks ``halodb serve`` over the
generated campaign of ``tests/serve_fixture.py`` (three versions) at the newest version and,
through ``/versions/{commit}/``, at the first; the sort extension over a second catalog whose
items all have a ``datetime`` (see :func:`test_sort_extension`). The same harness also runs
against ``rustac serve`` to show it does not lean on our server, and is shown to fail loudly
on a URL it has no copy of.

Each run prints the validator's errors and warnings (``pytest -rP`` shows them on a pass).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import cid_for, make_item
from .loopback import die_with_parent, stop_process
from .requirements import require
from .serve_fixture import Catalog, ServerProcess, build_catalog, start_server
from .stac_api_validator_offline import (
    NoLocalCopy,
    OfflineViolation,
    offline,
    validate_offline,
)
from .waiting import wait_until

#: a box over the generated items (both catalogs), for the validator's intersects checks
SEARCH_AREA = json.dumps({"type": "Polygon", "coordinates": [[[-50, 0], [25, 0], [25, 25], [-50, 25], [-50, 0]]]})

#: what every run must have checked against the local schema copies (never skipped)
CORE_SCHEMAS = ("https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
                "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json")

#: the classes the validator checks that ``halodb serve`` declares (its names for them); it
#: has no check for free-text, and logs "not yet supported" for features#fields/#sort
CONFORMANCE = ["core", "collections", "features", "item-search", "filter", "features#filter", "item-search#fields"]


def generated_items(count: int) -> list[dict[str, object]]:
    """``count`` items in two collections, one of them inside the box 20,20,21,21 the validator
    uses to check that ``ids`` does not override the other search parameters."""
    items = []
    for i in range(count):
        item = make_item(f"item-{i:03d}", cid_for(f"data {i}"), collection="halo" if i % 3 else "dropsondes",
                         when=f"2024-08-{1 + i % 28:02d}T12:00:00Z")
        lon, lat = (20.5, 20.5) if i == 5 else (-30.0 + i, 10.0 + i * 0.3)
        item["geometry"] = {"type": "Point", "coordinates": [lon, lat]}
        item["bbox"] = [lon, lat, lon, lat]
        items.append(item)
    return items


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def rustac_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rustac serve`` (the rustac CLI's in-memory STAC API) over 30 generated items; its root URL."""
    rustac = shutil.which("rustac", path=str(Path(sys.executable).parent))
    require(rustac is not None, "the rustac CLI is missing from the virtualenv (pip install rustac)")
    assert rustac is not None
    folder = tmp_path_factory.mktemp("rustac")
    items = folder / "items.ndjson"
    items.write_text("".join(json.dumps(item) + "\n" for item in generated_items(30)))
    port = _free_port()
    root = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen([rustac, "serve", "--addr", f"127.0.0.1:{port}", "--create-collections",
                                "--input-format", "ndjson", str(items)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: PLW1509

    def answers() -> bool:
        assert process.poll() is None, f"rustac serve exited with {process.returncode}"
        try:
            return requests.get(root, timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=60, what="rustac serve to answer")
        yield root
    finally:
        stop_process(process, timeout=10)


def test_harness_runs_the_validator_against_rustac_serve(rustac_api: str) -> None:
    """The harness is not built around our server: against rustac's STAC API, the validator's
    core, collections and features checks pass, each Item and Collection schema-checked with
    the local copies. (rustac 0.9.18 answers ``GET /search?collections=...`` with a 500,
    "unsupported value", so its item-search is not held to the validator here.)"""
    report = validate_offline(rustac_api, ["core", "collections", "features"], collection="halo")

    assert report.errors == [], report.describe()
    assert "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json" in report.schemas
    assert "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json" in report.schemas
    assert "https://geojson.org/schema/Geometry.json" in report.schemas


def test_harness_fails_loudly_on_a_url_it_has_no_copy_of() -> None:
    """Every way out is caught: requests, urllib, a raw socket. Each raises where it is made,
    and leaving the block raises again naming every URL, even when the caller swallowed the
    first error (as stac-validator does, reporting an item with an extension it cannot fetch
    as merely invalid)."""
    from stac_validator.stac_validator import StacValidate  # type: ignore[import-untyped]

    extension = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
    item = {**make_item("with-eo", cid_for("eo")), "stac_extensions": [extension]}

    with pytest.raises(OfflineViolation) as raised, offline():
        with pytest.raises(requests.ConnectionError, match="no local copy of https://schemas.stacspec.org/v9.9.9/"):
            requests.get("https://schemas.stacspec.org/v9.9.9/item-spec/json-schema/item.json", timeout=5)
        with pytest.raises(NoLocalCopy, match="no local copy of https://api.stacspec.org/v1.0.0/core"):
            urllib.request.urlopen("https://api.stacspec.org/v1.0.0/core", timeout=5)
        with pytest.raises(NoLocalCopy, match=r"192\.0\.2\.1:80"):
            socket.create_connection(("192.0.2.1", 80), timeout=5)
        assert StacValidate(extensions=True).validate_dict(item) is False

    message = str(raised.value)
    for refused in ("https://schemas.stacspec.org/v9.9.9/item-spec/json-schema/item.json",
                    "https://api.stacspec.org/v1.0.0/core", "192.0.2.1:80", extension):
        assert refused in message


def test_harness_serves_only_bundled_copies_and_lets_loopback_through(rustac_api: str) -> None:
    """A bundled schema comes back byte for byte as pystac has it; a request to 127.0.0.1 reaches
    the real server."""
    from pystac.validation.local_validator import get_local_schema_cache

    url = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
    with offline() as net:
        schema = requests.get(url, timeout=5).json()
        landing = requests.get(rustac_api, timeout=5).json()
    assert schema == get_local_schema_cache()[url]
    assert landing["type"] == "Catalog"
    assert net.served == [url] and net.refused == []


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The generated campaign of tests/serve_fixture.py: 300 items in four collections, three versions."""
    return build_catalog(tmp_path_factory.mktemp("conformance") / "home", 300, seed=11)


@pytest.fixture(scope="module")
def campaign_server(campaign: Catalog) -> Iterator[ServerProcess]:
    yield from start_server(campaign.home)


def validate_halodb(root: str, conformance: list[str], collection: str) -> None:
    """Run the validator on ``root``; fail listing every error, print its warnings either way."""
    report = validate_offline(root, conformance, collection=collection, geometry=SEARCH_AREA,
                              fields_nested_property="properties.platform", validate_pagination=True)
    print(f"stac-api-validator on {root} for {', '.join(conformance)}:\n{report.describe()}")
    assert report.errors == [], report.describe()
    if {"collections", "features"} & set(conformance):  # they schema-check Collections and Items
        assert set(CORE_SCHEMAS) <= set(report.schemas), report.describe()


def test_stac_api_validator_passes(campaign_server: ServerProcess) -> None:
    """core, collections, features, item-search (with paging), filter and fields, as the
    validator checks them, at the newest version."""
    validate_halodb(campaign_server.url, CONFORMANCE, collection="halo-tracks")


def test_stac_api_validator_passes_on_a_past_version(campaign: Catalog, campaign_server: ServerProcess) -> None:
    """Time travel keeps the API conformant: the same checks with ``/versions/{first commit}/``
    as the root (every link the validator follows stays under that prefix)."""
    first_commit = campaign.versions[0][0]
    validate_halodb(f"{campaign_server.url}versions/{first_commit}/", CONFORMANCE, collection="dropsondes")


@pytest.fixture(scope="module")
def instants_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``halodb serve`` over :func:`generated_items`: every item has a ``datetime``; one lies in
    the box 20,20,21,21."""
    import halodb

    home = tmp_path_factory.mktemp("instants") / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(generated_items(30))
        reg.commit("first", time="2024-08-30T00:00:00Z", author="tester")
        reg.publish("instants")
        reg.sync("instants")
    yield from start_server(home)


def test_sort_extension(instants_server: ServerProcess) -> None:
    """item-search#sort, and the item-search checks that need an item in the box 20,20,21,21.

    On its own catalog because the validator's sort check compares ``properties.datetime``
    with Python's ``sorted`` and crashes (``TypeError``) on an item whose ``datetime`` is null,
    as STAC allows for a time range; the campaign has such items in every collection."""
    validate_halodb(instants_server.url, ["core", "item-search", "item-search#sort"], collection="halo")
