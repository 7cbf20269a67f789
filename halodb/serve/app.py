"""The ASGI application of ``halodb serve``: a read-only STAC API 1.0 with time travel.

Routes (each also under ``/versions/{commit}/``, and each taking ``?as_of=TIME``, to answer
from a past version of the name):

``/`` landing page · ``/conformance`` · ``/api`` (OpenAPI) · ``/collections`` ·
``/collections/{id}`` · ``/collections/{id}/items`` · ``/collections/{id}/items/{item}`` ·
``/collections/{id}/queryables`` · ``/queryables`` · ``/search`` (GET, POST) ·
``/versions`` · ``/changes`` · ``/doi/{doi}`` (what a DOI was minted for).

Every response carries the commit it was answered from (``HaloDB-Commit`` and
``HaloDB-Commit-Time`` headers; ``halodb:commit`` in the JSON of pages that are not items).
A bad request is a 400 (404 for an unknown collection, item or version) with a JSON body
``{"code", "description", "parameter"}`` naming the parameter; a query that runs past the
deadline is interrupted (503), never left running.

>>> # app = create_app(SnapshotHolder(Snapshot.build(reg.queries, "orcestra")))
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import duckdb
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from halodb.errors import HaloDBError, RequestError
from halodb.serve import changes as changes_mod
from halodb.serve import collections as collections_mod
from halodb.serve import dois as dois_mod
from halodb.serve import documents, pages, params, search
from halodb.serve.bodies import read_json_body
from halodb.serve.deadlines import Deadline, bounded
from halodb.serve.documents import GEOJSON, JSON, Base, link
from halodb.serve.queryables import queryables_document
from halodb.serve.snapshot import Snapshot, SnapshotHolder, Version

__all__ = ["ServeOptions", "create_app"]

log = logging.getLogger("halodb.serve")



@dataclass(frozen=True)
class ServeOptions:
    """``deadline``: seconds a request's queries may run; ``gateway``: the IPFS gateway pages link to."""

    deadline: float = 10.0
    gateway: str = "https://ipfs.io"


@dataclass
class Ask:
    """One request, resolved: the snapshot and version it reads, its base URL and format."""

    request: Request
    snap: Snapshot
    version: Version
    base: Base
    travelled: bool  # answering from a past version (as_of or /versions/{cid}/)
    pinned: bool  # asked under /versions/{cid}/
    as_of: datetime | None
    fmt: str  # json, html or atom
    options: ServeOptions

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def headers(self) -> dict[str, str]:
        return {"HaloDB-Name": self.snap.name, "HaloDB-Commit": self.version.cid,
                "HaloDB-Commit-Time": _time(self.version.time)}

    def json(self, body: Any, media_type: str = JSON, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status,
                        media_type=media_type, headers=self.headers())

    def html(self, text: str, status: int = 200) -> Response:
        return HTMLResponse(text, status_code=status, headers=self.headers())

    def page_context(self) -> pages.PageContext:
        return pages.PageContext(
            name=self.snap.name, commit=self.version.cid, commit_time=_time(self.version.time),
            root_url=self.base.root, as_of=None if self.as_of is None else _time(self.as_of), pinned=self.pinned,
            gateway=self.options.gateway)


def create_app(holder: SnapshotHolder, options: ServeOptions | None = None) -> Starlette:
    """The Starlette application answering from ``holder``'s current snapshot."""
    options = options or ServeOptions()

    def handler(fn: Callable[[Ask], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                ask = _resolve(request, holder.current, options)
                return await run_in_threadpool(fn, ask)
            except RequestError as exc:
                return _error(exc)
        return endpoint

    async def post_search(request: Request) -> Response:
        try:
            ask = _resolve(request, holder.current, options)
            body = await read_json_body(request, empty=b"{}")
            return await run_in_threadpool(_search_post, ask, body)
        except RequestError as exc:
            return _error(exc)

    routes = [
        Route("/", handler(_landing)),
        Route("/conformance", handler(_conformance)),
        Route("/api", handler(_openapi)),
        Route("/collections", handler(_collections)),
        Route("/collections/{collection}", handler(_collection)),
        Route("/collections/{collection}/items", handler(_collection_items)),
        Route("/collections/{collection}/items/{item:path}", handler(_item)),  # ids may hold "/"
        Route("/collections/{collection}/queryables", handler(_queryables)),
        Route("/queryables", handler(_queryables)),
        Route("/search", handler(_search_get), methods=["GET"]),
        Route("/search", post_search, methods=["POST"]),
        Route("/versions", handler(_versions)),
        Route("/changes", handler(_changes)),
        Route("/doi/{doi:path}", handler(_doi)),
    ]
    app = Starlette(routes=[*routes, Mount("/versions/{version}", routes=routes)])
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(Exception, _internal)
    app.state.holder = holder
    return app


# -- resolving a request ------------------------------------------------------------------
def _resolve(request: Request, snap: Snapshot, options: ServeOptions) -> Ask:
    root = str(request.base_url)
    fmt = _format(request)
    version, travelled, as_of = snap.head, False, None
    cid = request.path_params.get("version")
    if cid is not None:
        found = snap.version(cid)
        if found is None:
            raise RequestError(f"{cid[:80]!r} is not a commit of {snap.name}'s history (see /versions)",
                               parameter="version", status=404)
        version, travelled = found, True
    if "as_of" in request.query_params:
        if travelled:
            raise RequestError("give as_of or /versions/{commit}/, not both", parameter="as_of")
        text = request.query_params["as_of"]
        try:
            as_of = None if "/" in text else params.parse_datetime_interval(text)[0]
        except RequestError:
            as_of = None
        if as_of is None:
            raise RequestError(f"as_of must be one RFC 3339 date-time such as 2024-09-15T00:00:00Z, not {text[:40]!r}",
                               parameter="as_of")
        found = snap.version_at(as_of)
        if found is None:
            raise RequestError(f"{snap.name} had no version at {_time(as_of)}; its first is {_time(snap.versions[0].time)}",
                               parameter="as_of", status=404)
        version, travelled = found, True
    base = Base(root, f"{root}versions/{version.cid}/" if travelled else root)
    return Ask(request, snap, version, base, travelled, cid is not None, as_of, fmt, options)


def _format(request: Request) -> str:
    f = request.query_params.get("f")
    if f is not None:
        if f not in ("json", "html", "atom", "geojson"):
            raise RequestError(f"f must be json, html or atom, not {f[:20]!r}", parameter="f")
        return "json" if f == "geojson" else f
    accept = request.headers.get("accept", "")
    if "application/atom+xml" in accept:
        return "atom"
    if "text/html" in accept:
        return "html"
    return "json"


def _deadline(ask: Ask) -> Deadline:
    """The deadline of this request's work in Python (its queries have the watchdog)."""
    return Deadline(ask.options.deadline)


def _cursor(ask: Ask) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A cursor for this request, interrupted if its queries outlast the deadline."""
    return bounded(ask.snap.cursor(), ask.options.deadline)


# -- errors --------------------------------------------------------------------------------
def _error(exc: RequestError) -> Response:
    status = exc.status or 400
    code = {404: "NotFound", 413: "PayloadTooLarge", 503: "ServiceUnavailable"}.get(status, "BadRequest")
    body = {"code": code, "description": str(exc), "parameter": exc.parameter}
    return JSONResponse(body, status_code=status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(RequestError(f"no such resource: {request.url.path[:200]}", parameter="path", status=404))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"code": "MethodNotAllowed", "description": f"{request.method} is not allowed here",
                         "parameter": None}, status_code=405)


async def _internal(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestError):
        return _error(exc)
    if isinstance(exc, HaloDBError):
        return _error(RequestError(str(exc)))
    log.exception("internal error answering %s", request.url)
    return JSONResponse({"code": "InternalServerError", "description": f"{type(exc).__name__}: {exc}",
                         "parameter": None}, status_code=500)


# -- endpoints -----------------------------------------------------------------------------
def _collection_stats(ask: Ask) -> list[collections_mod.CollectionStats]:
    def compute() -> list[collections_mod.CollectionStats]:
        with _cursor(ask) as cur:
            return collections_mod.derive(cur, ask.version)
    stats: list[collections_mod.CollectionStats] = ask.snap.memo(("collections", ask.version.seq), compute)
    return stats


def _stats_of(ask: Ask, collection: str) -> collections_mod.CollectionStats:
    for stats in _collection_stats(ask):
        if stats.id == collection:
            return stats
    raise RequestError(f"no collection {collection[:80]!r} in {ask.snap.name} at commit {ask.version.cid}",
                       parameter="collection", status=404)


def _landing(ask: Ask) -> Response:
    _no_params(ask, {"as_of", "f", "page", *pages.SearchForm.FIELDS})
    names = [s.id for s in _collection_stats(ask)]
    if ask.fmt == "html":
        form = pages.SearchForm.from_query(ask.query)
        results, error = None, None
        choices = pages.SearchChoices(collections=[(n, n) for n in names],
                                      platforms=sorted({p for s in _collection_stats(ask) for p in s.platforms}))
        if not form.is_empty():
            try:
                p = params.from_query(form.search_parameters())
                p.limit = 20
                offset = _page_offset(ask.query)
                with _cursor(ask) as cur:
                    page = search.run_search(ask.snap, cur, ask.version, p, offset=offset, deadline=_deadline(ask))
            except RequestError as exc:
                return ask.html(pages.render_search(form, None, choices, ask.page_context(), error=str(exc)), status=400)
            results = pages.SearchResults(
                items=[documents.item_document(h, ask.base) for h in page.hits], matched=page.matched,
                next_url=_html_page_url(ask, page.next_offset), prev_url=_html_page_url(ask, page.prev_offset),
                first=page.offset + 1)
        return ask.html(pages.render_search(form, results, choices, ask.page_context()))
    doc = documents.landing(ask.base, name=ask.snap.name, commit=ask.version.cid, commit_time=_time(ask.version.time),
                            collections=names)
    return ask.json(doc)


def _html_page_url(ask: Ask, offset: int | None) -> str | None:
    if offset is None:
        return None
    query = {k: v for k, v in ask.query.items() if k != "page"}
    query["page"] = str(offset)
    return f"{ask.request.url.path}?{urlencode(query)}"


def _page_offset(query: dict[str, str]) -> int:
    text = query.get("page", "0")
    if not text.isdigit() or int(text) > search.MAX_OFFSET:
        raise RequestError("page must be an offset from a next link", parameter="page")
    return int(text)


def _conformance(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    return ask.json({"conformsTo": documents.CONFORMANCE})


def _openapi(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    doc = documents.openapi(ask.base, ask.snap.name)
    if ask.fmt == "html":
        return ask.html(pages.render_api(doc, ask.page_context()))
    return ask.json(doc, media_type="application/vnd.oai.openapi+json;version=3.0")


def _collection_document(ask: Ask, stats: collections_mod.CollectionStats) -> dict[str, Any]:
    doc = stats.document(ask.snap.name)
    doc["links"] = [
        link("self", ask.base.url("collections", stats.id), JSON),
        link("root", ask.base.url(), JSON, "Landing page"),
        link("parent", ask.base.url(), JSON, "Landing page"),
        link("items", ask.base.url("collections", stats.id, "items"), GEOJSON, f"Items of {stats.id}"),
        link("http://www.opengis.net/def/rel/ogc/1.0/queryables", ask.base.url("collections", stats.id, "queryables"),
             "application/schema+json", "Queryables"),
        link("alternate", ask.base.url("collections", stats.id), "text/html", "Landing page of this collection"),
    ]
    doc["halodb:commit"] = ask.version.cid
    return doc


def _collections(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    docs = [_collection_document(ask, s) for s in _collection_stats(ask)]
    return ask.json({
        "collections": docs,
        "links": [link("self", ask.base.url("collections"), JSON), link("root", ask.base.url(), JSON, "Landing page"),
                  link("parent", ask.base.url(), JSON, "Landing page")],
        "numberMatched": len(docs), "numberReturned": len(docs), "halodb:commit": ask.version.cid,
    })


def _collection(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of", "page"})
    stats = _stats_of(ask, ask.request.path_params["collection"])
    doc = _collection_document(ask, stats)
    if ask.fmt == "html":
        p = params.SearchParams(limit=50)
        with _cursor(ask) as cur:
            page = search.run_search(ask.snap, cur, ask.version, p, offset=_page_offset(ask.query),
                                       collection=stats.id, deadline=_deadline(ask))
        paging = pages.Paging(matched=page.matched, next_url=_html_page_url(ask, page.next_offset),
                              prev_url=_html_page_url(ask, page.prev_offset), first=page.offset + 1)
        return ask.html(pages.render_collection(doc, [documents.item_document(h, ask.base) for h in page.hits],
                                                paging, ask.page_context()))
    return ask.json(doc)


def _queryables(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    collection = ask.request.path_params.get("collection")
    if collection is not None:
        _stats_of(ask, collection)
        url = ask.base.url("collections", collection, "queryables")
    else:
        url = ask.base.url("queryables")
    return ask.json(queryables_document(url, f"Queryables of {collection or ask.snap.name}"),
                    media_type="application/schema+json")


def _collection_items(ask: Ask) -> Response:
    collection = ask.request.path_params["collection"]
    _stats_of(ask, collection)
    p = params.from_query(ask.query)
    if p.collections is not None:
        raise RequestError("collections is not a parameter of /collections/{id}/items", parameter="collections")
    return _feature_collection(ask, p, collection=collection)


def _search_get(ask: Ask) -> Response:
    return _feature_collection(ask, params.from_query(ask.query))


def _search_post(ask: Ask, body: Any) -> Response:
    return _feature_collection(ask, params.from_body(body), post_body=body)


def _feature_collection(ask: Ask, p: params.SearchParams, *, collection: str | None = None,
                        post_body: Any = None) -> Response:
    version, offset = ask.version, 0
    if p.token is not None:
        version, offset = search.decode_token(ask.snap, p.token)
    with _cursor(ask) as cur:
        page = search.run_search(ask.snap, cur, version, p, offset=offset, collection=collection,
                                  deadline=_deadline(ask))
    features = [search.select_fields(documents.item_document(h, ask.base), p.fields) for h in page.hits]
    here = ask.base.url("collections", collection, "items") if collection else ask.base.url("search")
    links = [link("root", ask.base.url(), JSON, "Landing page")]
    if collection:
        links.append(link("collection", ask.base.url("collections", collection), JSON))
        links.append(link("parent", ask.base.url("collections", collection), JSON))
    links.append(link("self", str(ask.request.url), GEOJSON))
    for rel, at in (("next", page.next_offset), ("prev", page.prev_offset)):
        if at is None:
            continue
        token = search.encode_token(page.version, at)
        if post_body is not None:
            links.append(link(rel, here, GEOJSON, method="POST", body={**post_body, "token": token}, merge=False))
        else:
            query = {k: v for k, v in ask.query.items() if k not in ("token", "as_of")}
            links.append(link(rel, here + "?" + urlencode({**query, "token": token}), GEOJSON, method="GET"))
    body = {
        "type": "FeatureCollection",
        "features": features,
        "links": links,
        "numberMatched": page.matched,
        "numberReturned": len(features),
        "halodb:commit": page.version.cid,
        "halodb:commit_time": _time(page.version.time),
    }
    response = ask.json(body, media_type=GEOJSON)
    response.headers["HaloDB-Commit"] = page.version.cid
    return response


def _item(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    collection, item_id = ask.request.path_params["collection"], ask.request.path_params["item"]
    p = params.SearchParams(ids=[item_id], limit=1)
    with _cursor(ask) as cur:
        page = search.run_search(ask.snap, cur, ask.version, p, collection=collection, deadline=_deadline(ask))
        if not page.hits:
            _stats_of(ask, collection)
            raise RequestError(f"no item {item_id[:80]!r} in collection {collection[:80]!r} at commit {ask.version.cid}",
                               parameter="item", status=404)
        hit = page.hits[0]
        history = _history(cur, ask.snap, hit.key, ask.version) if ask.fmt == "html" else []
    doc = documents.item_document(hit, ask.base)
    if ask.fmt == "html":
        return ask.html(pages.render_item(doc, history, ask.page_context(), data_cid=hit.data_cid))
    return ask.json(doc, media_type=GEOJSON)


def _history(cur: duckdb.DuckDBPyConnection, snap: Snapshot, key: str, shown: Version) -> list[pages.HistoryEntry]:
    """Every version of dataset ``key``: when it was added, changed, respelled (its data CID
    written in another spelling, same content) and removed (newest first); the one valid in
    ``shown`` is marked current."""
    rows = cur.execute("SELECT item_cid, data_cid, from_seq, to_seq, respelled FROM versions WHERE key = ? ORDER BY from_seq",
                       [key]).fetchall()
    starts = {r[2] for r in rows}
    entries: list[pages.HistoryEntry] = []
    previous_end: int | None = None
    for item_cid, data_cid, from_seq, to_seq, respelled in rows:
        commit = snap.versions[from_seq]
        kind = ("respelled" if respelled else "changed") if previous_end == from_seq else "added"
        current = from_seq <= shown.seq and (to_seq is None or shown.seq < to_seq)
        entries.append(pages.HistoryEntry(commit=commit.cid, time=_time(commit.time), data_cid=data_cid,
                                          item_cid=item_cid, change=kind, current=current))
        if to_seq is not None and to_seq not in starts:
            removed = snap.versions[to_seq]
            entries.append(pages.HistoryEntry(commit=removed.cid, time=_time(removed.time), data_cid=None,
                                              item_cid=None, change="removed"))
        previous_end = to_seq
    return list(reversed(entries))


def _doi(ask: Ask) -> Response:
    """What a DOI was minted for (JSON); a browser is sent to that version's item page."""
    _no_params(ask, {"f", "as_of"})
    with _cursor(ask) as cur:
        found = dois_mod.resolve_doi(ask.snap, cur, ask.version, ask.request.path_params["doi"], ask.base.root)
    if ask.fmt == "html" and found["links"]:
        return RedirectResponse(found["links"][0]["href"], status_code=303, headers=ask.headers())
    return ask.json({**found, "halodb:commit": ask.version.cid})


def _versions(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of"})
    versions = [{"seq": v.seq, "commit": v.cid, "time": _time(v.time), "parents": list(v.parents), "author": v.author,
                 "message": v.message, "href": f"{ask.base.root}versions/{v.cid}/"}
                for v in reversed(ask.snap.versions[: ask.version.seq + 1])]
    return ask.json({"name": ask.snap.name, "head": ask.snap.head.cid, "versions": versions,
                     "links": [link("self", str(ask.request.url), JSON), link("root", ask.base.url(), JSON)],
                     "halodb:commit": ask.version.cid})


def _changes(ask: Ask) -> Response:
    _no_params(ask, {"f", "as_of", "from", "to", "limit", "token"})
    new = _named_version(ask, ask.query.get("to"), "to") if "to" in ask.query else ask.version
    old = _named_version(ask, ask.query["from"], "from") if "from" in ask.query else None
    if old is not None and old.seq > new.seq:
        raise RequestError(f"from ({old.cid}) is newer than to ({new.cid})", parameter="from")
    limit = params.DEFAULT_LIMIT * 10 if "limit" not in ask.query else params.from_query({"limit": ask.query["limit"]}).limit
    offset = 0
    if "token" in ask.query:
        text = ask.query["token"]
        if not text.isdigit() or int(text) > search.MAX_OFFSET:
            raise RequestError("token must be taken from a next link", parameter="token")
        offset = int(text)
    with _cursor(ask) as cur:
        found, total = changes_mod.list_changes(cur, ask.snap, old, new, limit=limit, offset=offset)

    def page_of(change: changes_mod.Change) -> str:
        if change.collection is None or change.id is None:
            return ask.base.url("versions")
        return f"{ask.base.root}versions/{change.commit.cid}/" + "/".join(
            ["collections", change.collection, "items", change.id])

    if ask.fmt == "atom":
        feed = changes_mod.atom_feed(found, feed_url=str(ask.request.url), title=f"Changes of {ask.snap.name}",
                                     updated=new.time, link_for=page_of)
        return Response(feed, media_type="application/atom+xml", headers=ask.headers())
    links = [link("self", str(ask.request.url), JSON), link("root", ask.base.url(), JSON),
             link("alternate", str(ask.request.url.include_query_params(f="atom")), "application/atom+xml", "Atom feed")]
    if offset + len(found) < total:
        links.append(link("next", str(ask.request.url.include_query_params(token=str(offset + len(found)))), JSON))
    return ask.json({
        "name": ask.snap.name,
        "from": None if old is None else {"commit": old.cid, "time": _time(old.time)},
        "to": {"commit": new.cid, "time": _time(new.time)},
        "numberMatched": total, "numberReturned": len(found),
        "changes": [dict(c.record(), href=page_of(c)) for c in found],
        "links": links,
    })


def _named_version(ask: Ask, text: str | None, parameter: str) -> Version:
    """A version named by its commit CID or by a time (the commit current then)."""
    text = text or ""
    found = ask.snap.version(text)
    if found is not None:
        return found
    if len(text) > 100:
        raise RequestError(f"{parameter} is neither a commit nor a date-time", parameter=parameter)
    try:
        when = params.parse_datetime_interval(text)[0]
    except RequestError:
        raise RequestError(f"{parameter} {text[:80]!r} is neither a commit of {ask.snap.name} nor an RFC 3339 "
                           "date-time", parameter=parameter) from None
    at = ask.snap.version_at(when) if when is not None else None
    if at is None:
        raise RequestError(f"{ask.snap.name} had no version at {text}", parameter=parameter, status=404)
    return at


def _no_params(ask: Ask, allowed: set[str]) -> None:
    unknown = sorted(set(ask.query) - allowed)
    if unknown:
        raise RequestError(f"unknown parameter {unknown[0][:80]!r} for {ask.request.url.path[:200]}",
                           parameter=unknown[0][:80])


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
