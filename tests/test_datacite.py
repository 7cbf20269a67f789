"""DataCite 4.5 metadata from STAC items, checked with the `datacite` package's own validator."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from halodb.api.registry import Registry
from halodb.errors import DataCiteError
from halodb.stac import parse_item
from halodb.stac.datacite import datacite_metadata, datacite_schema, validate_datacite

from .conftest import ROOT, cid_for, make_item, run_cli, shared_data

#: DataCite's date forms as its schema names them (format: date, datetime, datetime-range...)
DATE = re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?Z)?)?)?")


def datacite_validates(meta: dict[str, Any]) -> bool:
    from datacite import schema45  # type: ignore[import-untyped]

    return bool(schema45.validate(meta))


def full_item() -> dict[str, Any]:
    item = make_item("BAHAMAS-20240811a", cid_for("a1"), path="products/HALO/bahamas/HALO-20240811a.zarr",
                     title="BAHAMAS flight data HALO-20240811a")
    item["bbox"] = [-59.5, 10.0, -20.1, 17.2]
    item["geometry"] = {"type": "LineString", "coordinates": [[-59.5, 13.1], [-20.1, 17.2], [-30.0, 10.0]]}
    item["properties"].update({
        "datetime": None, "start_datetime": "2024-08-11T10:00:00Z", "end_datetime": "2024-08-11T18:30:00Z",
        "created": "2024-09-01T00:00:00Z", "description": "Aircraft state from BAHAMAS.", "license": "CC-BY-4.0",
        "keywords": ["HALO", "BAHAMAS", "ORCESTRA", "HALO"], "sci:doi": "10.82246/ORCESTRA.BAHAMAS.20240811A",
        "sci:publications": [{"citation": "Doe et al. (2025)", "doi": "10.5194/essd-17-1-2025"},
                             {"citation": "a talk, no DOI"}, {"citation": "broken", "doi": "see above"}],
        "contacts": [{"name": "Doe, Jane", "organization": "MPI-M", "identifier": "https://orcid.org/0000-0002-1825-0097",
                      "roles": ["creator"]},
                     {"name": "Rick Roe", "roles": ["principalInvestigator"]},
                     {"organization": "University of Leipzig", "roles": ["author"]},
                     {"name": "Help Desk", "roles": ["pointOfContact"]},
                     {"organization": "ORCESTRA", "roles": ["publisher"]}],
        "providers": [{"name": "DKRZ", "roles": ["host"]}],
    })
    return parse_item(item, "full.json")


def test_the_schema_is_the_one_the_datacite_package_ships() -> None:
    shipped = resources.files("datacite").joinpath("schemas", "datacite-v4.5.json").read_text(encoding="utf-8")
    assert json.loads(shipped) == datacite_schema()
    assert (ROOT / "schemas" / "datacite-v4.5.json").read_text(encoding="utf-8") == shipped


def test_a_full_item_maps_to_valid_datacite() -> None:
    meta = datacite_metadata(full_item(), key="halo/BAHAMAS-20240811a", year=2024, version="bafyrei-v",
                             previous_dois=["10.82246/old"], later_dois=["10.82246/new"])
    assert datacite_validates(meta)
    assert meta["doi"] == "10.82246/orcestra.bahamas.20240811a"
    assert [c["name"] for c in meta["creators"]] == ["Doe, Jane", "Rick Roe", "University of Leipzig"]
    assert meta["creators"][0]["nameIdentifiers"][0]["nameIdentifier"] == "https://orcid.org/0000-0002-1825-0097"
    assert (meta["creators"][0]["familyName"], meta["creators"][0]["affiliation"]) == ("Doe", [{"name": "MPI-M"}])
    assert meta["creators"][2]["nameType"] == "Organizational"
    assert meta["publisher"] == {"name": "ORCESTRA"} and meta["publicationYear"] == "2024"
    assert [s["subject"] for s in meta["subjects"]] == ["HALO", "BAHAMAS", "ORCESTRA"]
    assert meta["geoLocations"] == [{"geoLocationBox": {"westBoundLongitude": -59.5, "eastBoundLongitude": -20.1,
                                                        "southBoundLatitude": 10.0, "northBoundLatitude": 17.2}}]
    assert {"alternateIdentifier": cid_for("a1"), "alternateIdentifierType": "IPFS CID"} in meta["alternateIdentifiers"]
    assert [(r["relatedIdentifier"], r["relationType"]) for r in meta["relatedIdentifiers"]] == [
        ("10.82246/old", "IsNewVersionOf"), ("10.82246/new", "IsPreviousVersionOf"),
        ("10.5194/essd-17-1-2025", "IsReferencedBy")]
    assert {"date": "2024-08-11T10:00:00Z/2024-08-11T18:30:00Z", "dateType": "Collected"} in meta["dates"]
    for date in meta["dates"]:
        assert all(DATE.fullmatch(part) for part in date["date"].split("/")), date
    assert meta["rightsList"][0]["rightsIdentifier"] == "CC-BY-4.0"


@pytest.mark.parametrize("drop, missing", [
    ("title", ["titles"]), ("contacts", ["creators", "publisher"]),
    ("creators", ["creators"]), ("publisher", ["publisher"]), ("all", ["titles", "creators", "publisher"])])
def test_what_a_datacite_record_needs_is_named_when_missing(drop: str, missing: list[str]) -> None:
    item = full_item()
    props = item["properties"]
    del props["providers"]
    if drop in ("title", "all"):
        del props["title"]
    if drop in ("contacts", "all"):
        del props["contacts"]
    if drop == "creators":
        props["contacts"] = [c for c in props["contacts"] if "publisher" in c["roles"] or "pointOfContact" in c["roles"]]
    if drop == "publisher":
        props["contacts"] = [c for c in props["contacts"] if "publisher" not in c["roles"]]
    with pytest.raises(DataCiteError) as info:
        datacite_metadata(item, key="halo/x", year=2024)
    assert info.value.missing == missing and info.value.key == "halo/x"
    assert str(info.value).startswith("cannot make DataCite metadata for halo/x: the item gives no ")
    assert "\n" not in str(info.value)


def test_a_minimal_item_gives_a_minimal_valid_record() -> None:
    item = parse_item({"type": "Feature", "stac_version": "1.1.0", "id": "x", "geometry": None, "links": [], "assets": {},
                       "properties": {"datetime": "2024-08-11T12:00:00Z", "title": "X",
                                      "contacts": [{"name": "Jane Doe", "roles": ["creator"]}]}}, "x.json")
    meta = datacite_metadata(item, key="c/x", year=2025, publisher="ORCESTRA")
    assert datacite_validates(meta)
    assert set(meta) == {"types", "titles", "creators", "publisher", "publicationYear", "dates", "alternateIdentifiers",
                         "schemaVersion"}
    assert meta["alternateIdentifiers"] == [{"alternateIdentifier": "c/x", "alternateIdentifierType": "HaloDB dataset key"}]


def test_the_publisher_comes_from_the_option_then_contacts_then_providers() -> None:
    item = full_item()
    assert datacite_metadata(item, key="k/x", year=2024, publisher="Given")["publisher"] == {"name": "Given"}
    item["properties"]["contacts"] = [c for c in item["properties"]["contacts"] if "publisher" not in c["roles"]]
    assert datacite_metadata(item, key="k/x", year=2024)["publisher"] == {"name": "DKRZ"}
    item["properties"]["providers"] = [{"name": "MPI-M", "roles": ["producer"]}, {"name": "X", "roles": ["licensor"]}]
    assert datacite_metadata(item, key="k/x", year=2024)["publisher"] == {"name": "MPI-M"}


def test_the_stac_specs_own_example_needs_creators_and_a_publisher() -> None:
    item = parse_item(json.loads(shared_data("stac-examples", "examples", "extended-item.json").read_text()), "extended-item.json")
    with pytest.raises(DataCiteError) as info:
        datacite_metadata(item, key="simple-collection/20201211_223832_CS2", year=2020)
    assert info.value.missing == ["creators", "publisher"]
    item["properties"]["contacts"] = [{"organization": "Remote Data", "roles": ["creator", "publisher"]}]
    meta = datacite_metadata(item, key="simple-collection/20201211_223832_CS2", year=2020)
    assert datacite_validates(meta) and meta["doi"] == "10.5061/dryad.s2v81.2/27.2"
    assert meta["geoLocations"][0]["geoLocationBox"]["westBoundLongitude"] == 172.91173669923782


def test_invalid_metadata_is_refused_with_every_problem() -> None:
    with pytest.raises(DataCiteError) as info:
        validate_datacite({"titles": [{"title": 5}], "publicationYear": "24"}, "k/x")
    assert info.value.detail is not None and "titles.0.title: 5 is not of type 'string'" in info.value.detail
    assert "publicationYear" in info.value.detail


# -- through the registry and the CLI ----------------------------------------------------------------
def test_datacite_between_versions_of_a_dataset(registry: Registry, home: Path) -> None:
    v1 = full_item()
    registry.add([v1])
    registry.commit("mint v1", time="2024-09-01T00:00:00Z")
    v2 = copy.deepcopy(v1)
    v2["properties"]["sci:doi"] = "10.82246/orcestra.bahamas.20240811a.v2"
    v2["assets"]["data"]["href"] = f"ipfs://{cid_for('a2')}"
    registry.add([v2])
    head = registry.commit("v2", time="2025-01-10T00:00:00Z")
    registry.publish("latest", head)
    old = registry.datacite("products/HALO/bahamas/HALO-20240811a.zarr", "latest@2024-12-01", history="latest")
    new = registry.datacite("halo/BAHAMAS-20240811a", "latest")
    assert datacite_validates(old) and datacite_validates(new)
    assert [(r["relatedIdentifier"], r["relationType"]) for r in old["relatedIdentifiers"]][0] == (
        "10.82246/orcestra.bahamas.20240811a.v2", "IsPreviousVersionOf")
    assert [(r["relatedIdentifier"], r["relationType"]) for r in new["relatedIdentifiers"]][0] == (
        "10.82246/orcestra.bahamas.20240811a", "IsNewVersionOf")
    assert (old["publicationYear"], new["publicationYear"]) == ("2024", "2025")
    assert new["alternateIdentifiers"][0]["alternateIdentifier"] == cid_for("a2")
    # without the name's history the older version knows of no later DOI
    assert "IsPreviousVersionOf" not in json.dumps(registry.datacite("halo/BAHAMAS-20240811a", "latest@2024-12-01"))

    result = run_cli(home, "doi", "datacite", "halo/BAHAMAS-20240811a", "--name", "latest", "--at", "2024-12-01")
    assert result.code == 0 and json.loads(result.out) == old
    bad = copy.deepcopy(v2)
    bad["id"] = "no-creators"
    bad["properties"]["halodb:path"] = "products/HALO/no-creators.zarr"
    del bad["properties"]["contacts"], bad["properties"]["sci:doi"], bad["properties"]["providers"]
    registry.add([bad])
    registry.commit("no creators", time="2025-01-11T00:00:00Z")
    result = run_cli(home, "doi", "datacite", "halo/no-creators")
    assert result.code == 2 and result.err.count("\n") == 1 and "no creators" in result.err and "no publisher" in result.err
    result = run_cli(home, "doi", "datacite", "halo/no-creators", "--publisher", "ORCESTRA")
    assert result.code == 2 and "no creators" in result.err and "publisher" not in result.err
