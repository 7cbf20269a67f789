"""DataCite Metadata Schema 4.5 (JSON, as DataCite's REST API takes it) from a STAC item.

HaloDB prepares and checks the metadata a campaign's DataCite account mints a DOI with; it
mints nothing. :func:`datacite_metadata` maps the item and what the index knows of it:

* ``titles`` ← ``title``; ``descriptions`` (Abstract) ← ``description``;
* ``creators`` ← the ``contacts`` (STAC contacts extension) whose ``roles`` name them
  ``creator``, ``author``, ``principalInvestigator`` or ``originator`` (a contact with only an
  ``organization`` is an organizational creator; an ORCID ``identifier`` becomes a name
  identifier; a person's ``organization`` the affiliation);
* ``publisher`` ← ``publisher=`` (``--publisher``), else a contact with the role
  ``publisher``, else a provider with the role ``host``, ``producer``, or any provider;
* ``publicationYear`` ← the year of the version the DOI was minted for (else of the version
  described); ``subjects`` ← ``keywords``; ``rightsList`` ← an SPDX ``license``;
* ``dates`` ← ``start_datetime``/``end_datetime`` (or ``datetime``) as Collected,
  ``created``, ``updated``, and the version's time as Available;
* ``geoLocations`` ← the ``bbox`` (a box, or a point when it has no extent);
* ``alternateIdentifiers`` ← the data CID (type ``IPFS CID``) and the dataset key;
* ``relatedIdentifiers`` ← the DOIs the same dataset had in earlier versions
  (``IsNewVersionOf``) and later ones (``IsPreviousVersionOf``), and the DOIs of
  ``sci:publications`` (``IsReferencedBy``);
* ``doi`` ← ``sci:doi``; ``types`` Dataset (the data asset's media type as ``resourceType``).

The result is checked against the DataCite JSON schema (``schemas/datacite-v4.5.json``,
the one the ``datacite`` package ships) before it is returned: an item that lacks a
mandatory property is a :class:`~halodb.errors.DataCiteError` naming each one missing,
never invalid metadata.

>>> item = {"id": "f1", "bbox": [-59.4, 13.1, -59.4, 13.2], "properties": {"title": "BAHAMAS",
...     "datetime": "2024-08-11T12:00:00Z", "contacts": [{"name": "Jane Doe", "roles": ["creator"]}]}}
>>> meta = datacite_metadata(item, key="halo/f1", publisher="ORCESTRA", year=2024)
>>> meta["creators"], meta["publisher"], meta["publicationYear"]
([{'name': 'Jane Doe', 'nameType': 'Personal'}], {'name': 'ORCESTRA'}, '2024')
>>> datacite_metadata({"id": "f1", "properties": {}}, key="halo/f1", year=2024)
Traceback (most recent call last):
...
halodb.errors.DataCiteError: cannot make DataCite metadata for halo/f1: the item gives no titles (properties.title), no creators (properties.contacts with the role creator, author, principalInvestigator or originator), no publisher (a contact with the role publisher, properties.providers, or --publisher)
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from halodb.errors import DataCiteError, InputError
from halodb.stac.items import data_cid, item_doi
from halodb.util.doi import normalize_doi

__all__ = ["SCHEMA_FILE", "datacite_metadata", "datacite_schema", "validate_datacite"]

SCHEMA_FILE = "datacite-v4.5.json"  #: the schema the metadata is checked against
KERNEL = "http://datacite.org/schema/kernel-4"
CREATOR_ROLES = ("creator", "author", "principalInvestigator", "originator")
_ORCID = re.compile(r"(?:https?://orcid\.org/)?(\d{4}-\d{4}-\d{4}-\d{3}[\dX])")
_SPDX = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")
_NOT_SPDX = frozenset({"other", "various", "proprietary"})


def _schema_path() -> Path:
    packaged = importlib.resources.files("halodb").joinpath("_data", "schemas", SCHEMA_FILE)
    if packaged.is_file():
        return Path(str(packaged))
    # repository checkout / editable install: <repo>/halodb/stac/datacite.py -> <repo>/schemas
    return Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE


@cache
def datacite_schema() -> dict[str, Any]:
    """The DataCite 4.5 JSON schema (a copy of the ``datacite`` package's).

    >>> datacite_schema()["title"]
    'DataCite v4.5'
    """
    schema: dict[str, Any] = json.loads(_schema_path().read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Any:
    from jsonschema import Draft201909Validator  # type: ignore[import-untyped]

    return Draft201909Validator(datacite_schema())


def validate_datacite(metadata: dict[str, Any], key: str) -> None:
    """Raise :class:`DataCiteError` (``.detail``: every problem, by JSON path) unless ``metadata``
    is valid DataCite 4.5 JSON.

    >>> validate_datacite({"titles": []}, "halo/f1")
    Traceback (most recent call last):
    ...
    halodb.errors.DataCiteError: DataCite metadata for halo/f1 is not valid DataCite 4.5: (top): 'creators' is a required property; (top): 'publicationYear' is a required property; (top): 'publisher' is a required property; (top): 'schemaVersion' is a required property; (top): 'types' is a required property; titles: [] should be non-empty
    """
    problems = sorted(f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                      for e in _validator().iter_errors(metadata))
    if problems:
        detail = "; ".join(problems)
        raise DataCiteError(f"DataCite metadata for {key} is not valid DataCite 4.5: {detail}", key=key, detail=detail)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _texts(value: Any) -> list[str]:
    return [v.strip() for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def _roles(contact: dict[str, Any]) -> set[str]:
    return set(_texts(contact.get("roles")))


def _creator(contact: dict[str, Any]) -> dict[str, Any] | None:
    name, org = _text(contact.get("name")), _text(contact.get("organization"))
    if name is None and org is None:
        return None
    out: dict[str, Any]
    if name is not None:
        out = {"name": name, "nameType": "Personal"}
        family, comma, given = name.partition(",")
        if comma and family.strip() and given.strip():
            out["givenName"], out["familyName"] = given.strip(), family.strip()
        if org is not None:
            out["affiliation"] = [{"name": org}]
    else:
        out = {"name": org, "nameType": "Organizational"}
    ident = _text(contact.get("identifier"))
    orcid = _ORCID.fullmatch(ident) if ident else None
    if orcid is not None:
        out["nameIdentifiers"] = [{"nameIdentifier": f"https://orcid.org/{orcid[1]}", "nameIdentifierScheme": "ORCID",
                                   "schemeUri": "https://orcid.org"}]
    return out


def _publisher(props: dict[str, Any], given: str | None) -> str | None:
    if given is not None:
        return _text(given)
    contacts = [c for c in props.get("contacts") or [] if isinstance(c, dict)]
    for contact in contacts:
        if "publisher" in _roles(contact):
            found = _text(contact.get("organization")) or _text(contact.get("name"))
            if found:
                return found
    providers = [p for p in props.get("providers") or [] if isinstance(p, dict) and _text(p.get("name"))]
    for role in ("host", "producer", None):
        for provider in providers:
            if role is None or role in _roles(provider):
                return _text(provider.get("name"))
    return None


def _dates(props: dict[str, Any], version_time: datetime | None) -> list[dict[str, str]]:
    dates = []
    start, end = _text(props.get("start_datetime")), _text(props.get("end_datetime"))
    instant = _text(props.get("datetime"))
    if start and end:
        dates.append({"date": f"{start}/{end}", "dateType": "Collected"})
    elif instant:
        dates.append({"date": instant, "dateType": "Collected"})
    for prop, kind in (("created", "Created"), ("updated", "Updated")):
        when = _text(props.get(prop))
        if when:
            dates.append({"date": when, "dateType": kind})
    if version_time is not None:
        dates.append({"date": version_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "dateType": "Available",
                      "dateInformation": "the HaloDB version this metadata describes"})
    return dates


def _geolocations(item: dict[str, Any]) -> list[dict[str, Any]]:
    bbox = item.get("bbox")
    if not isinstance(bbox, list) or len(bbox) not in (4, 6) or not all(isinstance(v, (int, float)) for v in bbox):
        return []
    half = len(bbox) // 2
    west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
    if west == east and south == north:
        return [{"geoLocationPoint": {"pointLongitude": west, "pointLatitude": south}}]
    return [{"geoLocationBox": {"westBoundLongitude": west, "eastBoundLongitude": east,
                                "southBoundLatitude": south, "northBoundLatitude": north}}]


def _unique(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def datacite_metadata(
    item: dict[str, Any], *, key: str, year: int, version: str | None = None, version_time: datetime | None = None,
    publisher: str | None = None, previous_dois: Sequence[str] = (), later_dois: Sequence[str] = (),
) -> dict[str, Any]:
    """DataCite 4.5 JSON for ``item`` (a parsed STAC item, the dataset ``key``), checked (see the module).

    ``year`` is the publication year; ``version`` and ``version_time`` the HaloDB version
    described (its commit CID and time); ``previous_dois`` and ``later_dois`` the DOIs the
    dataset had in earlier and later versions.
    """
    props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
    assert isinstance(props, dict)
    title = _text(props.get("title"))
    contacts = [c for c in props.get("contacts") or [] if isinstance(c, dict)]
    creators = [c for c in (_creator(c) for c in contacts if _roles(c) & set(CREATOR_ROLES)) if c is not None]
    publisher_name = _publisher(props, publisher)
    missing = []
    if title is None:
        missing.append(("titles", "properties.title"))
    if not creators:
        missing.append(("creators", f"properties.contacts with the role {', '.join(CREATOR_ROLES[:-1])} or {CREATOR_ROLES[-1]}"))
    if publisher_name is None:
        missing.append(("publisher", "a contact with the role publisher, properties.providers, or --publisher"))
    if missing:
        what = ", ".join(f"no {name} ({where})" for name, where in missing)
        raise DataCiteError(f"cannot make DataCite metadata for {key}: the item gives {what}", key=key,
                            missing=[name for name, _ in missing])
    assert title is not None and publisher_name is not None
    meta: dict[str, Any] = {}
    doi = item_doi(item, source=key)
    if doi is not None:
        meta["doi"] = doi
    asset = (item.get("assets") or {}).get("data") if isinstance(item.get("assets"), dict) else None
    media = _text(asset.get("type")) if isinstance(asset, dict) else None
    meta["types"] = {"resourceTypeGeneral": "Dataset", **({"resourceType": media} if media else {})}
    meta["titles"] = [{"title": title}]
    meta["creators"] = _unique(creators)
    meta["publisher"] = {"name": publisher_name}
    meta["publicationYear"] = f"{year:04d}"
    subjects = _unique([{"subject": k} for k in _texts(props.get("keywords"))])
    if subjects:
        meta["subjects"] = subjects
    dates = _dates(props, version_time)
    if dates:
        meta["dates"] = dates
    description = _text(props.get("description"))
    if description:
        meta["descriptions"] = [{"description": description, "descriptionType": "Abstract"}]
    licence = _text(props.get("license"))
    if licence and _SPDX.fullmatch(licence) and licence.lower() not in _NOT_SPDX:
        meta["rightsList"] = [{"rights": licence, "rightsIdentifier": licence, "rightsIdentifierScheme": "SPDX",
                               "schemeUri": "https://spdx.org/licenses/"}]
    places = _geolocations(item)
    if places:
        meta["geoLocations"] = places
    alternate = [{"alternateIdentifier": key, "alternateIdentifierType": "HaloDB dataset key"}]
    data = data_cid(item, source=key)
    if data is not None:
        alternate.insert(0, {"alternateIdentifier": data, "alternateIdentifierType": "IPFS CID"})
    meta["alternateIdentifiers"] = alternate
    related = [{"relatedIdentifier": d, "relatedIdentifierType": "DOI", "relationType": "IsNewVersionOf"}
               for d in previous_dois if d != doi]
    related += [{"relatedIdentifier": d, "relatedIdentifierType": "DOI", "relationType": "IsPreviousVersionOf"}
                for d in later_dois if d != doi]
    for pub in props.get("sci:publications") or []:
        pub_doi = pub.get("doi") if isinstance(pub, dict) else None
        if isinstance(pub_doi, str):
            try:
                related.append({"relatedIdentifier": normalize_doi(pub_doi, "sci:publications"),
                                "relatedIdentifierType": "DOI", "relationType": "IsReferencedBy"})
            except InputError:  # a citation's DOI that is none is left out: the citation is not the dataset
                continue
    if related:
        meta["relatedIdentifiers"] = _unique(related)
    if media:
        meta["formats"] = [media]
    if version is not None:
        meta["version"] = version
    meta["schemaVersion"] = KERNEL
    validate_datacite(meta, key)
    return meta
