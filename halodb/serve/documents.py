"""The JSON documents of the STAC API: landing page, conformance, items with their links,
feature collections, and the OpenAPI description.

Every document is built for one :class:`Base`: the URL prefix of the version it answers
from — the server's root for the newest version, ``/versions/{commit}/`` for a past one —
so the links of a past version stay in that version, and a link taken from a response
today answers the same tomorrow.

>>> base = Base("http://127.0.0.1:8000/", "http://127.0.0.1:8000/versions/bafyc/")
>>> base.url("collections", "HALO")
'http://127.0.0.1:8000/versions/bafyc/collections/HALO'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from halodb.serve import cql2_sql
from halodb.serve.search import Hit

__all__ = ["CONFORMANCE", "TIME_TRAVEL", "Base", "item_document", "landing", "openapi"]

STAC_VERSION = "1.1.0"
GEOJSON = "application/geo+json"
JSON = "application/json"
#: the conformance URI of HaloDB's time-travel extension (docs/stac-api-time-travel.md)
TIME_TRAVEL = "https://halodb.org/spec/stac-api/time-travel/v1.0.0"
#: the conformance URI of the changes endpoint (same document)
CHANGES = "https://halodb.org/spec/stac-api/changes/v1.0.0"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/ogcapi-features#free-text",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    *cql2_sql.CONFORMANCE,
    TIME_TRAVEL,
    CHANGES,
]


@dataclass(frozen=True)
class Base:
    """``root``: the server's root URL; ``version``: the root of the version answered from."""

    root: str
    version: str

    def url(self, *parts: str, query: str = "") -> str:
        """The URL of ``parts`` (each quoted) under the version's root."""
        path = "/".join(quote(p, safe="") for p in parts)
        return f"{self.version}{path}" + (f"?{query}" if query else "")


def link(rel: str, href: str, type_: str = JSON, title: str | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"rel": rel, "href": href, "type": type_}
    if title:
        found["title"] = title
    found.update(extra)
    return found


def landing(base: Base, *, name: str, commit: str, commit_time: str, collections: list[str]) -> dict[str, Any]:
    """The landing page (``/``): the catalog of this name, linking everything else."""
    links = [
        link("self", base.url(), JSON, "This document"),
        link("root", base.url(), JSON, f"HaloDB: {name}"),
        link("conformance", base.url("conformance"), JSON, "Conformance classes"),
        link("service-desc", base.url("api"), "application/vnd.oai.openapi+json;version=3.0", "OpenAPI description"),
        link("service-doc", base.url("api", query="f=html"), "text/html", "The API, for people"),
        link("data", base.url("collections"), JSON, "Collections"),
        link("search", base.url("search"), GEOJSON, "Item search (GET)", method="GET"),
        link("search", base.url("search"), GEOJSON, "Item search (POST)", method="POST"),
        link("http://www.opengis.net/def/rel/ogc/1.0/queryables", base.url("queryables"),
             "application/schema+json", "Queryables"),
        link("alternate", base.url(), "text/html", "Search page (HTML)"),
        link("version-history", base.url("versions"), JSON, "Every version of this name"),
        link("changes", base.url("changes"), JSON, "What changed (JSON; Atom with Accept: application/atom+xml)"),
    ]
    links += [link("child", base.url("collections", c), JSON, f"Collection {c}") for c in collections]
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": f"halodb-{name}",
        "title": f"HaloDB: {name}",
        "description": f"The STAC API of the HaloDB name {name}, answered from commit {commit} ({commit_time}).",
        "conformsTo": CONFORMANCE,
        "links": links,
        "halodb:name": name,
        "halodb:commit": commit,
        "halodb:commit_time": commit_time,
    }


def item_document(hit: Hit, base: Base) -> dict[str, Any]:
    """The stored item with its catalog links (self, parent, collection, root) made ours; its
    other links are kept as they are."""
    item = dict(hit.item)
    own = [lk for lk in item.get("links") or [] if isinstance(lk, dict)
           and lk.get("rel") not in ("self", "root", "parent", "collection")]
    collection = item.get("collection")
    item_id = str(item.get("id"))
    links = [link("root", base.url(), JSON, "Landing page")]
    if isinstance(collection, str):
        links.append(link("self", base.url("collections", collection, "items", item_id), GEOJSON))
        links.append(link("parent", base.url("collections", collection), JSON, f"Collection {collection}"))
        links.append(link("collection", base.url("collections", collection), JSON, f"Collection {collection}"))
        links.append(link("alternate", base.url("collections", collection, "items", item_id), "text/html",
                          "Landing page of this dataset"))
    else:  # an item outside every collection is found by search only
        links.append(link("self", base.url("search", query=urlencode({"ids": item_id})), GEOJSON))
    item["links"] = links + own
    return item


def openapi(base: Base, name: str) -> dict[str, Any]:
    """A short OpenAPI 3.0 description of the endpoints (``/api``)."""
    def get(summary: str, *params: str) -> dict[str, Any]:
        return {"get": {"summary": summary,
                        "parameters": [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                                       for p in params],
                        "responses": {"200": {"description": "OK"}, "400": {"description": "Bad request"}}}}

    search = ("bbox", "intersects", "datetime", "ids", "collections", "limit", "token", "filter", "filter-lang",
              "sortby", "fields", "q", "as_of")
    paths: dict[str, Any] = {
        "/": get("Landing page", "as_of"),
        "/conformance": get("Conformance classes"),
        "/collections": get("Collections", "as_of"),
        "/collections/{collectionId}": get("One collection", "as_of"),
        "/collections/{collectionId}/items": get("The items of a collection", *search),
        "/collections/{collectionId}/items/{itemId}": get("One item", "as_of"),
        "/collections/{collectionId}/queryables": get("Queryables of a collection"),
        "/search": {**get("Item search", *search),
                    "post": {"summary": "Item search", "requestBody": {"content": {JSON: {"schema": {"type": "object"}}}},
                             "responses": {"200": {"description": "OK"}, "400": {"description": "Bad request"}}}},
        "/queryables": get("Queryables"),
        "/versions": get("Every version of the name"),
        "/changes": get("Changes between two versions", "from", "to", "limit", "token"),
        "/doi/{doi}": get("What a DOI was minted for: the dataset, its version and data CID", "as_of"),
    }
    return {"openapi": "3.0.3", "info": {"title": f"HaloDB STAC API: {name}", "version": "1.0.0"},
            "servers": [{"url": base.root}], "paths": paths}
