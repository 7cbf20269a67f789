"""The HTML pages of ``halodb serve``: an item, a collection, and the search page (the API's
landing page). Pure functions from what the routes already hold to one HTML string; no
database, no request. Plain HTML and inline CSS from Jinja2 templates (``templates/``),
readable without JavaScript and offline (no external file, font, script or tile).

Everything that comes from an item is hostile: templates autoescape, maps draw only numbers
(:mod:`halodb.serve.svgmap`), and an href from an item is a link only when its scheme is
http, https or ipfs.

>>> ctx = PageContext(name="demo", commit="bafycommit", commit_time="2024-09-30T12:00:00Z",
...                   root_url="http://127.0.0.1:8000")
>>> html = render_item({"id": "x", "collection": "c", "properties": {"title": "<script>"}}, [], ctx)
>>> "<script>" in html, "&lt;script&gt;" in html
(False, True)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from halodb.errors import HaloDBError, RequestError
from halodb.serve.svgmap import bbox_bounds, svg_map
from halodb.stac.items import data_cid as item_data_cid

__all__ = [
    "HistoryEntry",
    "PageContext",
    "Paging",
    "SearchChoices",
    "SearchForm",
    "SearchResults",
    "render_api",
    "render_collection",
    "render_item",
    "render_search",
    "safe_href",
]

#: schemes an href from an item may have to be shown as a link
LINK_SCHEMES = frozenset({"http", "https", "ipfs"})
#: properties the item page shows in their own place (the rest go to "All properties")
_SHOWN = frozenset({"title", "description", "datetime", "start_datetime", "end_datetime", "platform",
                    "instruments", "keywords", "sci:doi", "sci:citation", "sci:publications"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True)
class PageContext:
    """Which registry version a page shows and where the server lives.

    ``root_url``: the server's root (no trailing slash). ``pinned``: the page was asked under
    ``/versions/{commit}/``, so its links stay there; otherwise an ``as_of`` is kept on links
    as a query parameter. ``gateway``: the HTTP gateway for the ``/ipfs/CID/`` links.

    >>> ctx = PageContext("demo", "bafyc", "2024-09-30T12:00:00Z", "http://h", as_of="2024-09-15T00:00:00Z")
    >>> ctx.url("/collections/a b", f="json")
    'http://h/collections/a%20b?f=json&as_of=2024-09-15T00%3A00%3A00Z'
    >>> PageContext("demo", "bafyc", "t", "http://h", pinned=True).url("/search")
    'http://h/versions/bafyc/search'
    """

    name: str
    commit: str
    commit_time: str
    root_url: str
    as_of: str | None = None
    pinned: bool = False
    gateway: str = "https://ipfs.io"

    @property
    def base_url(self) -> str:
        """The root of this view: the server's root, or ``/versions/{commit}`` under it."""
        root = self.root_url.rstrip("/")
        return f"{root}/versions/{quote(self.commit, safe='')}" if self.pinned else root

    def kept(self) -> dict[str, str]:
        """The query parameters every link of this view keeps (``as_of`` when not pinned)."""
        return {"as_of": self.as_of} if self.as_of and not self.pinned else {}

    def url(self, path: str, **params: str) -> str:
        """The URL of ``path`` (already quoted where needed) in this view, with ``params``."""
        query = {k: v for k, v in params.items() if v} | self.kept()
        return f"{self.base_url}{quote(path, safe='/%')}" + (f"?{urlencode(query)}" if query else "")

    def version_url(self, commit: str, path: str) -> str:
        """The URL of ``path`` as of the version ``commit`` (``/versions/{commit}{path}``)."""
        return f"{self.root_url.rstrip('/')}/versions/{quote(commit, safe='')}{quote(path, safe='/%')}"

    def ipfs_gateway_url(self, cid: str, sub: str = "") -> str:
        """``{gateway}/ipfs/{cid}/{sub}``."""
        return f"{self.gateway.rstrip('/')}/ipfs/{quote(cid, safe='')}/{quote(sub, safe='/')}"


@dataclass(frozen=True)
class HistoryEntry:
    """One version of a dataset: the ``commit`` (CID) and its ``time``, the ``data_cid`` and
    ``item_cid`` it had from then (None when removed), and ``change``: added, changed, respelled or
    removed. ``current`` marks the version the page shows."""

    commit: str
    time: str
    data_cid: str | None
    item_cid: str | None
    change: str
    current: bool = False


@dataclass(frozen=True)
class Paging:
    """A page of a list: how many matched in all (None: unknown), the URLs of the next and
    previous pages (None: none), and the 1-based position of the first item shown."""

    matched: int | None = None
    next_url: str | None = None
    prev_url: str | None = None
    first: int = 1


@dataclass(frozen=True)
class SearchResults(Paging):
    """The items a search found (STAC item dicts), and where they stand (:class:`Paging`)."""

    items: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class SearchChoices:
    """The options of the search form's selects: platforms, and collections as (id, title)."""

    platforms: Sequence[str] = ()
    collections: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class SearchForm:
    """The search page's form, as typed (strings; empty = not given). Its GET parameters are
    its field names: ``q``, ``start``, ``end`` (dates or RFC 3339 times), ``platform``,
    ``collection``, ``west``, ``south``, ``east``, ``north``.

    >>> form = SearchForm.from_query({"q": "dropsonde", "start": "2024-08-10", "west": "-60",
    ...                               "south": "10", "east": "-20", "north": "20", "platform": "HALO"})
    >>> form.search_parameters()
    {'q': 'dropsonde', 'datetime': '2024-08-10T00:00:00Z/..', 'bbox': '-60,10,-20,20', 'filter': "platform = 'HALO'", 'filter-lang': 'cql2-text'}
    >>> form.as_query()["start"]
    '2024-08-10'
    """

    q: str = ""
    start: str = ""
    end: str = ""
    platform: str = ""
    collection: str = ""
    west: str = ""
    south: str = ""
    east: str = ""
    north: str = ""

    FIELDS = ("q", "start", "end", "platform", "collection", "west", "south", "east", "north")

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> SearchForm:
        """The form from a request's query parameters (others are ignored; values stripped)."""
        return cls(**{f: str(params.get(f, "")).strip() for f in cls.FIELDS})

    def as_query(self) -> dict[str, str]:
        """The non-empty fields, as query parameters (for paging links)."""
        return {f: getattr(self, f) for f in self.FIELDS if getattr(self, f)}

    def is_empty(self) -> bool:
        """True when nothing was filled in."""
        return not self.as_query()

    def search_parameters(self) -> dict[str, str]:
        """The STAC API item-search GET parameters this form asks for: ``q``, ``datetime``
        (``start/end``, ``..`` when open; a date alone covers its whole day), ``bbox``,
        ``collections`` and a CQL2-text ``filter`` on the platform. A malformed field is a
        :class:`RequestError` naming it (status 400).

        >>> SearchForm(end="2024-09-01").search_parameters()
        {'datetime': '../2024-09-01T23:59:59Z'}
        >>> SearchForm(west="x", south="1", east="2", north="3").search_parameters()
        Traceback (most recent call last):
        ...
        halodb.errors.RequestError: west: 'x' is not a number
        """
        out: dict[str, str] = {}
        if self.q:
            out["q"] = self.q
        if self.start or self.end:
            out["datetime"] = f"{_instant(self.start, 'start', 'T00:00:00Z')}/{_instant(self.end, 'end', 'T23:59:59Z')}"
        corners = (self.west, self.south, self.east, self.north)
        if any(corners):
            numbers = [_degrees(v, f) for v, f in zip(corners, ("west", "south", "east", "north"), strict=True)]
            out["bbox"] = ",".join(f"{n:g}" for n in numbers)
        if self.collection:
            out["collections"] = self.collection
        if self.platform:
            out["filter"] = "platform = '" + self.platform.replace("'", "''") + "'"
            out["filter-lang"] = "cql2-text"
        return out


def _instant(value: str, parameter: str, day_time: str) -> str:
    if not value:
        return ".."
    if _DATE.match(value):
        return value + day_time
    if _TIME.match(value):
        return value
    raise RequestError(f"{parameter}: {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 time",
                       parameter=parameter, status=400)


def _degrees(value: str, parameter: str) -> float:
    if not value:
        raise RequestError(f"{parameter}: missing; a box needs all four of west, south, east and north",
                           parameter=parameter, status=400)
    try:
        number = float(value)
    except ValueError:
        raise RequestError(f"{parameter}: {value!r} is not a number", parameter=parameter, status=400) from None
    limit = 90 if parameter in ("south", "north") else 180
    if not -limit <= number <= limit:
        raise RequestError(f"{parameter}: {value!r} is outside -{limit}..{limit}", parameter=parameter, status=400)
    return number


# --- helpers the templates use -----------------------------------------------------------------
def safe_href(href: Any) -> str | None:
    """``href`` when it is a string with an http, https or ipfs scheme, else None.

    >>> safe_href("https://doi.org/10.1/x"), safe_href("javascript:alert(1)"), safe_href(" ipfs://bafy")
    ('https://doi.org/10.1/x', None, None)
    """
    if not isinstance(href, str) or href != href.strip() or any(ord(c) < 32 for c in href):
        return None
    try:
        scheme = urlsplit(href).scheme.lower()
    except ValueError:
        return None
    return href if scheme in LINK_SCHEMES else None


def when(value: str) -> str:
    """An RFC 3339 time as people read it (the ``T`` a space); anything else as it is.

    >>> when("2024-08-09T10:10:30Z"), when("..")
    ('2024-08-09 10:10:30Z', '..')
    """
    return value.replace("T", " ", 1) if _TIME.match(value) else value


def _text(value: Any) -> str:
    """A property value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True, default=str)


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> list[str]:
    """A string or a list of values as a list of strings (empty for None)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return [_text(value)]


def _time_range(props: Mapping[str, Any]) -> tuple[str, str]:
    """(start, end) of an item's time as written (end empty for an instant)."""
    start, end = props.get("start_datetime"), props.get("end_datetime")
    if start is not None or end is not None:
        return _text(start) if start is not None else "..", _text(end) if end is not None else ".."
    when = props.get("datetime")
    return (_text(when) if when is not None else "", "")


def _doi_url(doi: str) -> str:
    """``https://doi.org/DOI`` (a ``doi:`` prefix or a doi.org URL given as the DOI is kept once)."""
    doi = re.sub(r"^(doi:|https?://(dx\.)?doi\.org/)", "", doi.strip(), flags=re.IGNORECASE)
    return "https://doi.org/" + quote(doi, safe="/:;()._-<>[]")


def _data(item: Mapping[str, Any], ctx: PageContext, data_cid: str | None) -> dict[str, str] | None:
    """The dataset's data: CID, ``ipfs://`` URL (with the asset's sub-path), gateway URL, snippet."""
    cid = data_cid
    if cid is None:
        try:
            cid = item_data_cid(dict(item))
        except HaloDBError:
            cid = None
    if not cid:
        return None
    sub = ""
    assets = item.get("assets")
    if isinstance(assets, Mapping):
        for asset in assets.values():
            href = asset.get("href") if isinstance(asset, Mapping) else None
            if isinstance(href, str) and cid in href:
                sub = href.split(cid, 1)[1].strip("/")
                break
    url = f"ipfs://{cid}" + (f"/{sub}" if sub else "")
    snippet = f'import xarray as xr\n\nds = xr.open_dataset("{url}", engine="zarr")'
    return {"cid": cid, "ipfs": url, "gateway": ctx.ipfs_gateway_url(cid, sub), "snippet": snippet}


def item_url(ctx: PageContext, collection: Any, item_id: Any, **params: str) -> str:
    """The page of an item in this view."""
    return ctx.url(f"/collections/{quote(_text(collection), safe='')}/items/{quote(_text(item_id), safe='')}",
                   **params)


def collection_url(ctx: PageContext, collection: Any, **params: str) -> str:
    """The page of a collection in this view."""
    return ctx.url(f"/collections/{quote(_text(collection), safe='')}", **params)


def _summary(item: Mapping[str, Any], ctx: PageContext, thumbnail: bool) -> dict[str, Any]:
    """What a list of items shows of one item."""
    props = item.get("properties")
    props = props if isinstance(props, Mapping) else {}
    ident, collection = item.get("id"), item.get("collection")
    start, end = _time_range(props)
    return {
        "id": _text(ident),
        "title": _text(props.get("title") or ident),
        "collection": _text(collection) if collection is not None else "",
        "url": item_url(ctx, collection, ident),
        "start": start,
        "end": end,
        "platform": ", ".join(_strings(props.get("platform"))),
        "instruments": ", ".join(_strings(props.get("instruments"))),
        "map": svg_map(item.get("geometry"), width=120, height=80, labels=False) if thumbnail else Markup(""),
    }


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("halodb.serve", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe_href"] = safe_href
    env.filters["text"] = _text
    env.filters["when"] = when
    return env


_ENV = _environment()


def _render(template: str, ctx: PageContext, **values: Any) -> str:
    return _ENV.get_template(template).render(ctx=ctx, **values)


# --- the pages -----------------------------------------------------------------------------------
def render_item(
    item: Mapping[str, Any],
    history: Sequence[HistoryEntry],
    ctx: PageContext,
    *,
    data_cid: str | None = None,
) -> str:
    """The page of one STAC item: what it is, where and when (map, time range), its data
    (CID, links, a snippet that opens exactly this version), DOI and citation, its history,
    every other property, its assets and links. ``data_cid``: the version's data CID when the
    caller knows it (else read from the item's IPFS asset)."""
    props = item.get("properties")
    props = props if isinstance(props, Mapping) else {}
    ident, collection = item.get("id"), item.get("collection")
    start, end = _time_range(props)
    doi = props.get("sci:doi")
    publications = []
    if isinstance(props.get("sci:publications"), list):
        for pub in props["sci:publications"]:
            if isinstance(pub, Mapping):
                pub_doi = pub.get("doi")
                publications.append({
                    "citation": _text(pub.get("citation", "")),
                    "doi": _text(pub_doi) if pub_doi else "",
                    "doi_url": _doi_url(_text(pub_doi)) if pub_doi else "",
                })
    assets = []
    if isinstance(item.get("assets"), Mapping):
        for key, asset in item["assets"].items():
            asset = asset if isinstance(asset, Mapping) else {}
            assets.append({"key": _text(key), "title": _text(asset.get("title", "")), "type": _text(asset.get("type", "")),
                           "roles": ", ".join(_strings(asset.get("roles"))), "href": _text(asset.get("href", ""))})
    links = []
    if isinstance(item.get("links"), list):
        links = [{"rel": _text(ln.get("rel", "")), "title": _text(ln.get("title", "")), "href": _text(ln.get("href", ""))}
                 for ln in item["links"] if isinstance(ln, Mapping)]
    others = [(_text(k), _text(v)) for k, v in sorted(props.items(), key=lambda kv: str(kv[0])) if k not in _SHOWN]
    title = _text(props.get("title") or ident)
    page_url = item_url(ctx, collection, ident)
    view: dict[str, Any] = {
        "id": _text(ident),
        "title": title,
        "description": _text(props.get("description", "")),
        "collection": _text(collection) if collection is not None else "",
        "collection_url": collection_url(ctx, collection) if collection is not None else "",
        "url": page_url,
        "json_url": item_url(ctx, collection, ident, f="json"),
        "platform": _strings(props.get("platform")),
        "instruments": _strings(props.get("instruments")),
        "keywords": _strings(props.get("keywords")),
        "start": start,
        "end": end,
        "map": svg_map(item.get("geometry"), bbox=None, title=f"Map of {title}"),
        "bbox": ", ".join(f"{v:g}" for v in (b.west, b.south, b.east, b.north))
        if (b := bbox_bounds(item.get("bbox"))) else "",
        "data": _data(item, ctx, data_cid),
        "doi": _text(doi) if doi else "",
        "doi_url": _doi_url(_text(doi)) if doi else "",
        "citation": _text(props.get("sci:citation", "")),
        "publications": publications,
        "assets": assets,
        "links": links,
        "others": others,
    }
    rows = [{
        "commit": h.commit, "time": h.time, "data_cid": h.data_cid or "", "item_cid": h.item_cid or "",
        "change": h.change, "current": h.current,
        "url": ctx.version_url(h.commit, f"/collections/{quote(view['collection'], safe='')}/items/"
                                         f"{quote(view['id'], safe='')}") if h.change != "removed" else "",
    } for h in history]
    return _render("item.html", ctx, item=view, history=rows, page_title=title)


def render_collection(
    collection: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    paging: Paging,
    ctx: PageContext,
) -> str:
    """The page of one collection: title, description, extents (a map of the spatial extent
    with the footprints of the items listed, the temporal interval), summaries (platform,
    instruments, keywords), the item count, and one page of its items."""
    ident = collection.get("id")
    extent = _mapping(collection.get("extent"))
    bboxes = _mapping(extent.get("spatial")).get("bbox")
    union = bboxes[0] if isinstance(bboxes, list) and bboxes else None
    intervals = _mapping(extent.get("temporal")).get("interval")
    first = intervals[0] if isinstance(intervals, list) and intervals else None
    interval = first if isinstance(first, list) and len(first) == 2 else [None, None]
    summaries = _mapping(collection.get("summaries"))
    title = _text(collection.get("title") or ident)
    view: dict[str, Any] = {
        "id": _text(ident),
        "title": title,
        "description": _text(collection.get("description", "")),
        "json_url": collection_url(ctx, ident, f="json"),
        "items_url": ctx.url(f"/collections/{quote(_text(ident), safe='')}/items"),
        "map": svg_map(None, bbox=union, footprints=[i.get("geometry") for i in items], title=f"Extent of {title}"),
        "bbox": ", ".join(f"{v:g}" for v in (b.west, b.south, b.east, b.north)) if (b := bbox_bounds(union)) else "",
        "start": _text(interval[0]) if interval[0] is not None else "..",
        "end": _text(interval[1]) if interval[1] is not None else "..",
        "summaries": [(name, _strings(summaries.get(key))) for key, name in
                      (("platform", "Platforms"), ("instruments", "Instruments"), ("keywords", "Keywords"))
                      if summaries.get(key)],
        "license": _text(collection.get("license", "")),
    }
    rows = [_summary(i, ctx, thumbnail=False) for i in items]
    return _render("collection.html", ctx, collection=view, items=rows, paging=paging, page_title=title)


def render_search(
    form: SearchForm,
    results: SearchResults | None,
    choices: SearchChoices,
    ctx: PageContext,
    *,
    error: str | None = None,
) -> str:
    """The search page (the API's landing page): a plain GET form (free text, time range,
    platform, collection, a box), the number matched, one page of results with previous and
    next links, and links to the collections, the conformance and the JSON API. ``results``
    None: nothing searched yet; ``error``: why the form's search could not run."""
    rows = [_summary(i, ctx, thumbnail=True) for i in results.items] if results is not None else []
    platforms = list(choices.platforms)
    if form.platform and form.platform not in platforms:
        platforms.append(form.platform)
    collections = list(choices.collections)
    if form.collection and form.collection not in [c for c, _ in collections]:
        collections.append((form.collection, form.collection))
    links = {
        "collections": ctx.url("/collections"),
        "conformance": ctx.url("/conformance"),
        "json": ctx.url("/", f="json"),
        "search_json": ctx.url("/search", **_search_json_params(form)),
    }
    return _render("search.html", ctx, form=form, results=results, rows=rows, platforms=platforms,
                   collections=collections, links=links, error=error, page_title="Search")


def _search_json_params(form: SearchForm) -> dict[str, str]:
    try:
        return form.search_parameters()
    except RequestError:
        return {}



def render_api(openapi: Mapping[str, Any], ctx: PageContext) -> str:
    """The human-readable description of the API (the landing page's ``service-doc``): every
    path of the OpenAPI document with its methods, summary and query parameters."""
    endpoints = []
    for path, methods in (openapi.get("paths") or {}).items():
        for method, operation in methods.items():
            endpoints.append({"method": method.upper(), "path": path, "summary": _text(operation.get("summary", "")),
                              "parameters": [_text(p.get("name")) for p in operation.get("parameters") or []]})
    title = _text((openapi.get("info") or {}).get("title", "HaloDB STAC API"))
    return _render("api.html", ctx, title=title, endpoints=endpoints, json_url=ctx.url("/api", f="json"),
                   page_title="API")
