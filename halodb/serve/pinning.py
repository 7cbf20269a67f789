"""The IPFS Pinning Service API (v1.0.0) in ``halodb serve --pinning``: ``/pins`` beside the
STAC API, backed by one Kubo node.

``GET /pins`` (filters ``cid``, ``name`` + ``match``, ``status``, ``before``, ``after``,
``limit``, ``meta``) · ``POST /pins`` · ``GET /pins/{requestid}`` · ``POST /pins/{requestid}``
(replace) · ``DELETE /pins/{requestid}``. Every request needs ``Authorization: Bearer TOKEN``
(compared in constant time); every failure is the API's ``Failure`` object
``{"error": {"reason", "details"}}``, the details naming the parameter or field.

Requests are kept in a :class:`~halodb.pins.requests.RequestStore` (SQLite in the registry
home) and carried out by a few worker threads: ``queued`` → ``pinning`` → ``pinned`` or
``failed``, pinning on the node under the name ``halodb-psa[REQUESTID] NAME``. A deleted or
replaced request is released on the node only when no other request holds its CID and the
node's pin carries that label: a pin a person or another tool made is never removed, nor
relabelled.

>>> route_reason(404), route_reason(413)
('NOT_FOUND', 'PAYLOAD_TOO_LARGE')
>>> node_label("0b5e…", "ORCESTRA HEAD v14")
'halodb-psa[0b5e…] ORCESTRA HEAD v14'
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from halodb.errors import HaloDBError, PinError, PinListError, RequestError
from halodb.pins.model import MAX_META, MAX_META_TEXT, MAX_NAME, STATUSES, Pin
from halodb.pins.node import MAX_PIN_NAME, KuboPinNode
from halodb.pins.requests import PinQuery, RequestRow, RequestStore
from halodb.pins.service import MATCHES, MAX_CIDS_PER_QUERY, MAX_LIMIT, PinStatus, parse_rfc3339
from halodb.pins.tokens import SERVER_TOKEN, read_token
from halodb.serve.bodies import MAX_BODY, read_json_body
from halodb.ipld import CID

__all__ = ["LABEL_PREFIX", "PinningOptions", "PinningService", "combine", "create_pinning_app", "load_token",
           "node_label", "route_reason"]

log = logging.getLogger("halodb.serve.pinning")

LABEL_PREFIX = "halodb-psa["  #: how the node's pins this service made are named
MAX_QUERY = 16 << 10  #: bytes of a query string of GET /pins
MAX_REQUESTID = 64  #: characters of a request id in a path (ours are 36)
DELEGATES_TTL = 60.0  #: seconds the node's addresses are reused before they are asked again
_QUERY_KEYS = frozenset({"cid", "name", "match", "status", "before", "after", "limit", "meta"})
_REASONS = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
            413: "PAYLOAD_TOO_LARGE", 500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}


def route_reason(status: int) -> str:
    """The ``reason`` of a Failure answered with ``status``."""
    return _REASONS.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_SERVER_ERROR")


def node_label(requestid: str, name: str | None) -> str:
    """The name of the node's pin made for a request (at most 255 characters)."""
    return f"{LABEL_PREFIX}{requestid}]{' ' + name if name else ''}"[:MAX_PIN_NAME]


def load_token(file: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The access token clients must send: from ``file`` (or the file named by
    ``HALODB_PINNING_TOKEN_FILE``), or from ``HALODB_PINNING_TOKEN``; never from a command line
    (:func:`halodb.pins.tokens.read_token`)."""
    return read_token(SERVER_TOKEN, file=file, environ=environ)


@dataclass(frozen=True)
class PinningOptions:
    """``node``: the Kubo node (``kubo+http://host:port``) that pins; ``token``: the access
    token; ``workers``: requests pinned at once; ``pin_timeout``: seconds one pin may take."""

    node: str
    token: str = field(repr=False)
    workers: int = 4
    pin_timeout: float = 600.0


# -- the service ---------------------------------------------------------------------------
class _KeyLocks:
    """One lock per CID, held while the node pins or releases it: a release never decides
    "nobody holds it" while a pin of the same CID is being made."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[bytes, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: bytes) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class PinningService:
    """The requests (``store``), the node that pins them, and the workers between."""

    def __init__(self, store: RequestStore, node: KuboPinNode, options: PinningOptions) -> None:
        self.store = store
        self.node = node
        self.options = options
        self._jobs: queue.Queue[tuple[str, str]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._locks = _KeyLocks()
        self._delegates: tuple[str, ...] = ()
        self._delegates_at = 0.0
        self._delegates_lock = threading.Lock()

    @classmethod
    def open(cls, home: Path, options: PinningOptions) -> PinningService:
        """The service of the registry home ``home`` (its requests in ``home/pinning/``)."""
        node = KuboPinNode(options.node, pin_timeout=options.pin_timeout)
        return cls(RequestStore(Path(home) / "pinning" / "requests.sqlite"), node, options)

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Ask the node who it is (it must answer), queue again what was pending, start the workers."""
        self.delegates(refresh=True)
        queued, removed = self.store.pending()
        for requestid in queued:
            self._jobs.put(("pin", requestid))
        for requestid in removed:
            self._settle(requestid)
        for n in range(self.options.workers):
            thread = threading.Thread(target=self._work, name=f"halodb-pinning-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a pin still running stays ``pinning`` and is resumed at the next start."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads):
            self.store.close()
            self.node.close()

    def delegates(self, *, refresh: bool = False) -> tuple[str, ...]:
        """The node's swarm addresses with its peer ID (1 to 20, as the API requires). With
        ``refresh`` (at the start) they are asked for and must come; else the last known are
        given at once, and asked for again in the background after :data:`DELEGATES_TTL`
        seconds (a request never waits for the node)."""
        if refresh:
            self._refresh_delegates(strict=True)
        elif time.monotonic() - self._delegates_at > DELEGATES_TTL and self._delegates_lock.acquire(blocking=False):
            self._delegates_at = time.monotonic()  # one refresh at a time, and not again at once if it fails
            threading.Thread(target=self._refresh_delegates, name="halodb-pinning-delegates", daemon=True).start()
        return self._delegates

    def _refresh_delegates(self, strict: bool = False) -> None:
        try:
            found = tuple(dict.fromkeys(a for a in self.node.peer_addresses() if "/p2p/" in a))[:20]
            if found:
                self._delegates, self._delegates_at = found, time.monotonic()
            elif strict:
                raise PinError(f"Kubo node {self.node.url} has no swarm address to give as delegates",
                               node=self.node.url)
        except PinError as exc:
            if strict:
                raise
            log.warning("pinning service: the node's addresses: %s (the last known are kept)", exc)
        finally:
            if not strict:
                self._delegates_lock.release()

    # -- the API's operations (blocking: run them in a thread) ------------------------------
    def status_of(self, row: RequestRow) -> PinStatus:
        return PinStatus(requestid=row.requestid, status=row.status, created=row.created, pin=row.pin,
                         delegates=self.delegates(), info=row.info)

    def add(self, pin: Pin) -> PinStatus:
        row = self.store.add(pin)
        self._jobs.put(("pin", row.requestid))
        return self.status_of(row)

    def get(self, requestid: str) -> PinStatus | None:
        row = self.store.get(requestid)
        return None if row is None else self.status_of(row)

    def replace(self, requestid: str, pin: Pin) -> PinStatus | None:
        """A new request for ``pin`` in place of ``requestid`` (None when unknown); the old pin
        is released once the new one is made or has failed."""
        try:
            row = self.store.add(pin, replacing=requestid)
        except KeyError:
            return None
        self._jobs.put(("pin", row.requestid))
        return self.status_of(row)

    def delete(self, requestid: str) -> bool:
        row = self.store.remove(requestid)
        if row is None:
            return False
        self._settle(requestid)
        return True

    # -- the workers -------------------------------------------------------------------------
    def _settle(self, requestid: str) -> None:
        """Queue the release of a removed request when nothing keeps it any longer."""
        if self.store.releasable(requestid):
            self._jobs.put(("release", requestid))

    def _work(self) -> None:
        wait = 0.0  # grows while the node cannot be reached
        while not self._stop.is_set():
            try:
                kind, requestid = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                reached = self._pin(requestid) if kind == "pin" else self._release(requestid)
            except Exception as exc:  # a worker must outlive any one request
                if self._stop.is_set():
                    return
                log.exception("pinning service: %s of request %s failed", kind, requestid)
                if kind == "pin":  # never left "pinning" until the next start
                    try:
                        self.store.finish(requestid, "failed", {"status_details": f"internal error: {exc}"[:500]})
                    except Exception:
                        log.exception("pinning service: request %s could not be marked failed", requestid)
                reached = True
            if reached:
                wait = 0.0
            else:  # the node did not answer: put the job back, and slow down
                self._jobs.put((kind, requestid))
                wait = min(max(wait * 2, 1.0), 60.0)
                self._stop.wait(wait)

    def _pin(self, requestid: str) -> bool:
        """Pin one queued request; False when the node could not be reached (it stays queued)."""
        row = self.store.claim(requestid)
        if row is None:
            return True
        cid = row.pin.cid
        with self._locks.hold(row.cid_key):
            try:
                existing = self.node.pin_of(cid)
                if existing is not None and not existing.name.startswith(LABEL_PREFIX):
                    info = {"status_details": "the node already had a pin of this CID, made outside this service; "
                                              "it is kept, and never removed by this service"}
                elif existing is not None:
                    info = {"status_details": "pinned (the node's pin made for an earlier request)"}
                else:
                    origins = [o for o in row.pin.origins if "/p2p/" in o]
                    if origins:
                        self.node.connect(origins, timeout=min(15.0, self.options.pin_timeout))
                    self.node.pin(cid, node_label(requestid, row.pin.name))
                    info = {"status_details": "pinned"}
                outcome = "pinned"
            except PinError as exc:
                if exc.status is None:  # no answer from the node: try again later
                    log.warning("pinning service: %s; request %s stays queued", exc, requestid)
                    self.store.finish(requestid, "queued", {"status_details": f"waiting for the node: {exc}"[:500]})
                    return False
                outcome, info = "failed", {"status_details": " ".join(str(exc).split())[:1000]}
            done = self.store.finish(requestid, outcome, info)
        if done is not None and done.removed:
            self._settle(requestid)
        for old in self.store.replaced(requestid):
            self._settle(old)
        return True

    def _release(self, requestid: str) -> bool:
        """Forget a removed request; unpin its CID on the node when no other request holds it
        and the node's pin is one this service made. False when the node could not be reached."""
        row = self.store.get(requestid, removed=True)
        if row is None or not self.store.releasable(requestid):
            return True
        with self._locks.hold(row.cid_key):
            if self.store.holders(row.cid_key, excluding=requestid) == 0:
                try:
                    existing = self.node.pin_of(row.pin.cid)
                    if existing is not None and existing.name.startswith(LABEL_PREFIX):
                        self.node.unpin(row.pin.cid)
                except PinError as exc:
                    if exc.status is None:
                        log.warning("pinning service: %s; request %s is released later", exc, requestid)
                        return False
                    log.warning("pinning service: releasing request %s: %s", requestid, exc)
            self.store.forget(requestid)
        for old in self.store.replaced(requestid):
            self._settle(old)
        return True


# -- HTTP ------------------------------------------------------------------------------------
def _failure(status: int, details: str, headers: Mapping[str, str] | None = None) -> Response:
    body = {"error": {"reason": route_reason(status), "details": details}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _authorized(request: Request, token: str) -> Response | None:
    """None when the request carries the token; else the 401 to answer."""
    header = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": 'Bearer realm="halodb pinning service"'}
    if header is None:
        return _failure(401, "no access token: send the header Authorization: Bearer TOKEN", challenge)
    scheme, _, given = header.partition(" ")
    ok = hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode())
    if scheme.lower() != "bearer" or not ok:
        return _failure(401, "the access token is missing or not valid", challenge)
    return None


def parse_query(params: QueryParams) -> PinQuery:
    """The filters of ``GET /pins``, checked; a :class:`RequestError` naming the parameter."""
    for key in params.keys():
        if key not in _QUERY_KEYS:
            raise RequestError(f"unknown parameter {key[:60]!r} (GET /pins takes {', '.join(sorted(_QUERY_KEYS))})",
                               parameter=key[:60])
        if len(params.getlist(key)) > 1:
            raise RequestError(f"{key} is given more than once (give a list once, comma-separated)", parameter=key)
    cids: list[str] = []
    if "cid" in params:
        cids = list(dict.fromkeys(params["cid"].split(",")))
        if not 1 <= len(cids) <= MAX_CIDS_PER_QUERY:
            raise RequestError(f"cid: 1 to {MAX_CIDS_PER_QUERY} CIDs, comma-separated, not {len(cids)}", parameter="cid")
        for c in cids:
            try:
                CID.parse(c)
            except HaloDBError:
                raise RequestError(f"cid: {c[:100]!r} is not a CID", parameter="cid") from None
    name = params.get("name")
    if name is not None and len(name) > MAX_NAME:
        raise RequestError(f"name is longer than {MAX_NAME} characters", parameter="name")
    match = params.get("match", "exact")
    if match not in MATCHES:
        raise RequestError(f"match is one of {', '.join(MATCHES)}, not {match[:40]!r}", parameter="match")
    statuses: tuple[str, ...] = ("pinned",)
    if "status" in params:
        statuses = tuple(dict.fromkeys(params["status"].split(",")))
        wrong = [s for s in statuses if s not in STATUSES]
        if wrong:
            raise RequestError(f"status: {wrong[0][:40]!r} is not one of {', '.join(STATUSES)}", parameter="status")
    times = {}
    for key in ("before", "after"):
        if key in params:
            try:
                times[key] = parse_rfc3339(params[key], what=key)
            except ValueError as exc:
                raise RequestError(str(exc), parameter=key) from None
    limit = 10
    if "limit" in params:
        text = params["limit"]
        if not (text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= MAX_LIMIT):
            raise RequestError(f"limit is a whole number from 1 to {MAX_LIMIT}, not {text[:20]!r}", parameter="limit")
        limit = int(text)
    meta: dict[str, str] = {}
    if "meta" in params:
        try:
            value = json.loads(params["meta"])
        except ValueError:
            raise RequestError("meta is not JSON (a URL-encoded JSON object of strings, e.g. {\"app_id\":\"x\"})",
                               parameter="meta") from None
        if (not isinstance(value, dict) or len(value) > MAX_META
                or not all(isinstance(v, str) and len(k) <= MAX_META_TEXT and len(v) <= MAX_META_TEXT
                           for k, v in value.items())):
            raise RequestError(f"meta is not a JSON object of at most {MAX_META} strings", parameter="meta")
        meta = value
    return PinQuery(cids=cids, name=name, match=match, statuses=statuses, before=times.get("before"),
                    after=times.get("after"), limit=limit, meta=meta)


async def _read_pin(request: Request) -> Pin:
    """The request body: a Pin object (a :class:`RequestError` naming what is wrong)."""
    body = await read_json_body(request, limit=MAX_BODY)
    try:
        return Pin.from_json(body, where="request body")
    except PinListError as exc:
        raise RequestError(str(exc), parameter="body") from None


def create_pinning_app(service: PinningService) -> Starlette:
    """The ``/pins`` routes of ``service`` as an application."""
    token = service.options.token

    def guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = _authorized(request, token)
            if refused is not None:
                return refused
            try:
                return await fn(request)
            except RequestError as exc:
                return _failure(exc.status or 400, str(exc))
            except PinError as exc:  # the node does not answer (delegates unknown)
                return _failure(503, str(exc))
        return endpoint

    def requestid_of(request: Request) -> str:
        requestid: str = request.path_params["requestid"]
        if len(requestid) > MAX_REQUESTID:
            raise RequestError(f"no pin request {requestid[:MAX_REQUESTID]!r}…", parameter="requestid", status=404)
        return requestid

    async def pins(request: Request) -> Response:
        if request.method == "GET":
            if len(request.url.query) > MAX_QUERY:
                raise RequestError(f"the query is longer than {MAX_QUERY} bytes", parameter="query")
            q = parse_query(request.query_params)

            def listing() -> dict[str, Any]:
                page = service.store.query(q)
                return {"count": page.count, "results": [service.status_of(r).to_json() for r in page.rows]}

            return _json(await run_in_threadpool(listing))
        if request.method == "POST":
            _no_query(request)
            pin = await _read_pin(request)
            status = await run_in_threadpool(service.add, pin)
            return _json(status.to_json(), 202)
        return _failure(405, f"{request.method} is not allowed on /pins (GET, POST)", {"Allow": "GET, POST"})

    async def one(request: Request) -> Response:
        requestid = requestid_of(request)
        _no_query(request)
        if request.method == "GET":
            found = await run_in_threadpool(service.get, requestid)
            if found is None:
                raise RequestError(f"no pin request {requestid!r}", parameter="requestid", status=404)
            return _json(found.to_json())
        if request.method == "POST":
            pin = await _read_pin(request)
            made = await run_in_threadpool(service.replace, requestid, pin)
            if made is None:
                raise RequestError(f"no pin request {requestid!r} to replace", parameter="requestid", status=404)
            return _json(made.to_json(), 202)
        if request.method == "DELETE":
            if not await run_in_threadpool(service.delete, requestid):
                raise RequestError(f"no pin request {requestid!r}", parameter="requestid", status=404)
            return Response(status_code=202)
        return _failure(405, f"{request.method} is not allowed on /pins/{{requestid}} (GET, POST, DELETE)",
                        {"Allow": "GET, POST, DELETE"})

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    app = Starlette(routes=[Route("/pins", guarded(pins), methods=methods),
                            Route("/pins/{requestid}", guarded(one), methods=methods)])
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(Exception, _internal)
    return app


def _no_query(request: Request) -> None:
    if request.url.query:
        key = next(iter(request.query_params.keys()), "query")
        raise RequestError(f"unknown parameter {key[:60]!r} ({request.method} takes none)", parameter=key[:60])


async def _not_found(request: Request, exc: Exception) -> Response:
    return _failure(404, f"no such resource: {request.url.path[:200]}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _failure(405, f"{request.method} is not allowed here")


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("pinning service: internal error answering %s %s", request.method, request.url.path)
    return _failure(500, f"{type(exc).__name__}: {exc}"[:500])


def combine(pinning: ASGIApp, stac: ASGIApp | None) -> ASGIApp:
    """One application: ``/pins`` and below go to ``pinning``, everything else to ``stac``
    (without one, ``/`` says where the API is and the rest is 404)."""
    other = stac if stac is not None else _pinning_only_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        target = pinning if path == "/pins" or path.startswith("/pins/") else other
        await target(scope, receive, send)

    return app


def _pinning_only_app() -> Starlette:
    async def landing(request: Request) -> Response:
        return _json({"title": "HaloDB: IPFS Pinning Service API", "endpoint": str(request.base_url).rstrip("/"),
                      "pins": str(request.base_url) + "pins",
                      "spec": "https://ipfs.github.io/pinning-services-api-spec/"})

    app = Starlette(routes=[Route("/", landing)])
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    return app
