"""A client of the IPFS Pinning Service API (v1.0.0): add, get, list, replace and delete pin
requests at a service, and :func:`push` a pin list to one without adding anything twice.

Everything a service answers is hostile until checked: an answer is read up to
:data:`MAX_ANSWER` bytes, each ``PinStatus`` is checked field by field (:meth:`PinStatus.from_json`),
and any failure is one :class:`~halodb.errors.PinError` line naming the service, what was asked
and the HTTP status. Answers 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``, capped) a bounded number of times; a refused token (401/403) is never retried.

>>> status = PinStatus.from_json({"requestid": "r1", "status": "queued", "created": "2024-09-15T10:00:00.5+02:00",
...     "pin": {"cid": "QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm"}, "delegates": ["/ip4/1.2.3.4/tcp/4001/p2p/Qm"]},
...     where="answer")
>>> status.to_json()["created"], status.pin.name
('2024-09-15T08:00:00.500Z', None)
>>> PinStatus.from_json({"requestid": "r1", "status": "done"}, where="answer")
Traceback (most recent call last):
...
halodb.errors.PinListError: answer: 'status' is not one of queued, pinning, pinned, failed: 'done'
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx

from halodb.errors import CIDError, InputError, PinError, PinListError
from halodb.ipld import CID
from halodb.pins._boundary import HTTPX
from halodb.pins.model import STATUSES, Pin

__all__ = ["MATCHES", "MAX_ANSWER", "PinResults", "PinStatus", "PinningServiceClient", "PushOutcome", "PushReport",
           "format_created", "parse_rfc3339", "push"]

MAX_ANSWER = 32 << 20  #: bytes of one answer read from a service (1000 PinStatus with full meta fit)
MAX_REQUESTID = 256  #: characters of a request id HaloDB accepts from a service
MAX_INFO = 1000  #: keys of ``PinStatus.info`` (the API's limit)
MAX_DELEGATES = 20  #: multiaddrs in ``PinStatus.delegates`` (the API's limit)
MAX_CIDS_PER_QUERY = 10  #: CIDs in one ``cid`` filter (the API's limit)
MAX_LIMIT = 1000  #: results in one page (the API's limit)
MATCHES = ("exact", "iexact", "partial", "ipartial")  #: the API's name matching strategies

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: Any, *, what: str = "time") -> datetime:
    """An RFC 3339 date-time with a zone (up to 9 fractional digits, kept to the microsecond),
    in UTC; ``ValueError`` naming ``what`` otherwise."""
    if not isinstance(text, str) or len(text) > 64 or not _RFC3339.fullmatch(text):
        raise ValueError(f"{what} is not an RFC 3339 date-time with a zone such as 2024-09-15T10:00:00Z: "
                         f"{str(text)[:64]!r}")
    frac = re.search(r"\.(\d+)", text)
    clean = text[:frac.start()] + "." + frac.group(1)[:6].ljust(6, "0") + text[frac.end():] if frac else text
    try:
        t = datetime.fromisoformat(clean.replace("Z", "+00:00").replace("z", "+00:00").replace("t", "T"))
        return t.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"{what} is not a valid date-time: {text!r}") from None


def format_created(t: datetime) -> str:
    """A time as the API shows ``created``: RFC 3339, UTC, milliseconds (``2020-07-27T17:32:28.276Z``)."""
    t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class PinStatus:
    """A pin request at a service: its id, state, creation time, the pin, the service's peers
    that receive the data (``delegates``), and what the service says about it (``info``)."""

    requestid: str
    status: str
    created: datetime
    pin: Pin
    delegates: tuple[str, ...] = ()
    info: Mapping[str, str] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The API's PinStatus object."""
        return {"requestid": self.requestid, "status": self.status, "created": format_created(self.created),
                "pin": self.pin.to_json(strings_only=True), "delegates": list(self.delegates), "info": dict(self.info)}

    @classmethod
    def from_json(cls, value: Any, *, where: str) -> PinStatus:
        """Check a PinStatus from outside; :class:`~halodb.errors.PinListError` naming ``where`` and the field."""

        def fail(message: str) -> PinListError:
            return PinListError(f"{where}: {message}", source=where)

        if not isinstance(value, dict):
            raise fail(f"a PinStatus is an object, not {type(value).__name__}")
        requestid = value.get("requestid")
        if not isinstance(requestid, str) or not requestid or len(requestid) > MAX_REQUESTID:
            raise fail(f"'requestid' is missing, not text or longer than {MAX_REQUESTID} characters")
        status = value.get("status")
        if status not in STATUSES:
            raise fail(f"'status' is not one of {', '.join(STATUSES)}: {str(status)[:40]!r}")
        try:
            created = parse_rfc3339(value.get("created"), what="'created'")
        except ValueError as exc:
            raise fail(str(exc)) from None
        pin = Pin.from_json(value.get("pin"), where=f"{where}: 'pin'")
        delegates = value.get("delegates") or []
        if (not isinstance(delegates, list) or len(delegates) > MAX_DELEGATES
                or not all(isinstance(d, str) and d.startswith("/") and len(d) <= 1024 for d in delegates)):
            raise fail(f"'delegates' is not a list of at most {MAX_DELEGATES} multiaddrs")
        info = value.get("info") or {}
        if (not isinstance(info, dict) or len(info) > MAX_INFO
                or not all(isinstance(k, str) and isinstance(v, str) and len(k) + len(v) <= 8192 for k, v in info.items())):
            raise fail(f"'info' is not a map of at most {MAX_INFO} strings to strings")
        return cls(requestid=requestid, status=status, created=created, pin=pin, delegates=tuple(delegates), info=info)


@dataclass(frozen=True)
class PinResults:
    """One page of ``GET /pins``: ``count`` requests match in all, ``results`` are the newest of them."""

    count: int
    results: tuple[PinStatus, ...]


# -- the client ------------------------------------------------------------------------------
class PinningServiceClient:
    """A Pinning Service API endpoint (``url``, to which ``/pins`` is appended, as Kubo does)
    and its access token.

    ``retries``: how often an answer 429 or 5xx (or a connection that could not be made) is
    retried before giving up; the wait doubles from ``backoff`` seconds (with jitter), a
    ``Retry-After`` the service sends is honoured, and no wait exceeds ``max_wait``.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, retries: int = 4, backoff: float = 0.5,
                 max_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"a pinning service URL starts with http:// or https://, not {url[:80]!r}", source="url")
        if not token or any(c.isspace() for c in token):
            raise InputError("a pinning service token is non-empty text without whitespace", source="token")
        if retries < 0 or backoff < 0 or max_wait < 0:
            raise InputError("retries, backoff and max_wait are at least 0", source="retries")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False,
                                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"PinningServiceClient({self.url!r})"  # never the token

    # -- the API ------------------------------------------------------------------------------
    def add(self, pin: Pin) -> PinStatus:
        """``POST /pins``: ask the service to pin ``pin``; its new request."""
        r = self._request("POST", "/pins", body=pin.to_json(strings_only=True), what=f"POST /pins {_label(pin)}",
                          cid=pin.cid)
        return self._status(r, f"POST /pins {_label(pin)}", pin.cid)

    def get(self, requestid: str) -> PinStatus:
        """``GET /pins/{requestid}``: the request now; a :class:`PinError` with status 404 when the
        service has no such request."""
        what = f"GET /pins/{requestid[:100]}"
        return self._status(self._request("GET", _request_path(requestid), what=what), what, None)

    def list(self, *, cid: Sequence[str] | None = None, name: str | None = None, match: str | None = None,
             status: Sequence[str] | None = None, before: datetime | None = None, after: datetime | None = None,
             limit: int | None = None, meta: Mapping[str, str] | None = None) -> PinResults:
        """``GET /pins``: one page of the requests matching every filter given, newest first
        (the service's default ``status`` is ``pinned`` alone)."""
        params = _list_params(cid=cid, name=name, match=match, status=status, before=before, after=after,
                              limit=limit, meta=meta)
        r = self._request("GET", "/pins", params=params, what="GET /pins")
        value = self._json(r, "GET /pins", None)
        if not isinstance(value, dict) or not isinstance(value.get("results"), list):
            raise self._malformed("GET /pins", "not a PinResults object (count, results)", None, r.status_code)
        count, results = value.get("count"), value["results"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 0 or len(results) > MAX_LIMIT:
            raise self._malformed("GET /pins", f"'count' is not a number of results, or more than {MAX_LIMIT} came",
                                  None, r.status_code)
        try:
            found = tuple(PinStatus.from_json(v, where=f"results[{n}]") for n, v in enumerate(results))
        except PinListError as exc:
            raise self._malformed("GET /pins", str(exc), None, r.status_code) from None
        return PinResults(count=count, results=found)

    def list_all(self, *, cid: Sequence[str] | None = None, name: str | None = None, match: str | None = None,
                 status: Sequence[str] | None = None, after: datetime | None = None,
                 meta: Mapping[str, str] | None = None, page: int = MAX_LIMIT) -> Iterator[PinStatus]:
        """Every request matching the filters, newest first, page by page (``before`` the oldest
        ``created`` of the page before, as the API says to page)."""
        before: datetime | None = None
        while True:
            got = self.list(cid=cid, name=name, match=match, status=status, before=before, after=after,
                            limit=page, meta=meta)
            if not got.results:
                return
            yield from got.results
            oldest = min(s.created for s in got.results)
            if before is not None and oldest >= before:
                raise PinError(f"pinning service {self.url} answered GET /pins?before={format_created(before)} with "
                               "requests created at or after that time: it does not page", node=self.url)
            if len(got.results) >= got.count:
                return
            before = oldest

    def replace(self, requestid: str, pin: Pin) -> PinStatus:
        """``POST /pins/{requestid}``: replace the request with a new one for ``pin`` (the service
        keeps the old pin until the new one is made); the new request."""
        what = f"POST /pins/{requestid[:100]} {_label(pin)}"
        r = self._request("POST", _request_path(requestid), body=pin.to_json(strings_only=True), what=what, cid=pin.cid)
        return self._status(r, what, pin.cid)

    def delete(self, requestid: str) -> None:
        """``DELETE /pins/{requestid}``: remove the request (the service unpins what no other
        request of it holds)."""
        self._request("DELETE", _request_path(requestid), what=f"DELETE /pins/{requestid[:100]}", gone_ok=True)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PinningServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, what: str, params: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None, cid: str | None = None, gone_ok: bool = False) -> httpx.Response:
        """Send one request, retrying 429, 5xx and failed connections; the answer (2xx), or a
        :class:`PinError`. With ``gone_ok`` a 404 after a retried attempt counts as done (the
        attempt before may have been carried out)."""
        attempts = self.retries + 1
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        for attempt in range(1, attempts + 1):
            try:
                r = self._send(method, path, params, content, headers)
            except HTTPX.caught as exc:
                # a connection never made sent nothing: safe to repeat; any other failure of a
                # request that changes something may have been carried out, so only reads repeat
                repeatable = isinstance(exc, httpx.ConnectError) or method == "GET"
                if repeatable and attempt < attempts:
                    self._sleep(self._wait(attempt, None))
                    continue
                reason = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else f"cannot be reached: {exc}"
                raise HTTPX.translate(exc, f"pinning service {self.url} {reason} ({what}, attempt {attempt} of "
                                      f"{attempts})", node=self.url, cid=cid) from exc
            status = r.status_code
            if status in (401, 403):
                raise PinError(f"pinning service {self.url} refused the access token (HTTP {status}) to {what}: "
                               f"{_failure(r)}", node=self.url, cid=cid, status=status)
            if status == 429 or status >= 500:
                if attempt < attempts:
                    self._sleep(self._wait(attempt, r.headers.get("retry-after")))
                    continue
                raise PinError(f"pinning service {self.url} answered HTTP {status} to {what} {attempts} time(s), "
                               f"giving up: {_failure(r)}", node=self.url, cid=cid, status=status)
            if status == 404 and gone_ok and attempt > 1:
                return r
            if not 200 <= status < 300:
                raise PinError(f"pinning service {self.url} refused {what}: HTTP {status}: {_failure(r)}",
                               node=self.url, cid=cid, status=status)
            return r
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, params: dict[str, str] | None, content: bytes | None,
              headers: dict[str, str]) -> httpx.Response:
        """One request; the answer read up to :data:`MAX_ANSWER` bytes."""
        request = self._client.build_request(method, self.url + path, params=params, content=content, headers=headers)
        response = self._client.send(request, stream=True)
        try:
            size, chunks = 0, []
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise PinError(f"pinning service {self.url} answered {method} {path[:100]} with more than "
                                   f"{MAX_ANSWER} bytes", node=self.url, status=response.status_code)
                chunks.append(chunk)
        finally:
            response.close()
        return httpx.Response(response.status_code, headers=response.headers, content=b"".join(chunks),
                              request=request)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the service's ``Retry-After`` when it
        gives one, else ``backoff * 2**(attempt-1)`` with up to 25 % jitter; at most ``max_wait``."""
        told = _retry_after(retry_after)
        if told is not None:
            return min(told, self.max_wait)
        wait = self.backoff * 2 ** (attempt - 1)
        return float(min(wait * (1 + random.random() / 4), self.max_wait))

    def _json(self, r: httpx.Response, what: str, cid: str | None) -> Any:
        try:
            return json.loads(r.content)
        except ValueError:
            raise self._malformed(what, f"not JSON: {r.content[:100]!r}", cid, r.status_code) from None

    def _status(self, r: httpx.Response, what: str, cid: str | None) -> PinStatus:
        try:
            return PinStatus.from_json(self._json(r, what, cid), where="PinStatus")
        except PinListError as exc:
            raise self._malformed(what, str(exc), cid, r.status_code) from None

    def _malformed(self, what: str, detail: str, cid: str | None, status: int) -> PinError:
        return PinError(f"pinning service {self.url} answered {what} with a malformed answer: {detail}",
                        node=self.url, cid=cid, status=status)


def _label(pin: Pin) -> str:
    return f"{pin.cid}" + (f" ({pin.name[:80]!r})" if pin.name else "")


def _request_path(requestid: str) -> str:
    if not requestid or len(requestid) > MAX_REQUESTID:
        raise InputError(f"a request id is 1 to {MAX_REQUESTID} characters, not {len(requestid)}", source="requestid")
    return "/pins/" + quote(requestid, safe="")


def _list_params(*, cid: Sequence[str] | None, name: str | None, match: str | None, status: Sequence[str] | None,
                 before: datetime | None, after: datetime | None, limit: int | None,
                 meta: Mapping[str, str] | None) -> dict[str, str]:
    """The query of ``GET /pins``, checked before it is sent."""
    params: dict[str, str] = {}
    if cid is not None:
        cids = list(dict.fromkeys(cid))
        if not 1 <= len(cids) <= MAX_CIDS_PER_QUERY:
            raise InputError(f"cid: 1 to {MAX_CIDS_PER_QUERY} CIDs per query, not {len(cids)}", source="cid")
        params["cid"] = ",".join(cids)
    if name is not None:
        params["name"] = name
    if match is not None:
        if match not in MATCHES:
            raise InputError(f"match is one of {', '.join(MATCHES)}, not {match!r}", source="match")
        params["match"] = match
    if status is not None:
        wrong = [s for s in status if s not in STATUSES]
        if wrong or not status:
            raise InputError(f"status: one or more of {', '.join(STATUSES)}, not {wrong or 'none'}", source="status")
        params["status"] = ",".join(dict.fromkeys(status))
    if before is not None:
        params["before"] = _query_time(before)
    if after is not None:
        params["after"] = _query_time(after)
    if limit is not None:
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"limit is 1 to {MAX_LIMIT}, not {limit}", source="limit")
        params["limit"] = str(limit)
    if meta is not None:
        params["meta"] = json.dumps(dict(meta), separators=(",", ":"))
    return params


def _query_time(t: datetime) -> str:
    """A time in a query: RFC 3339, UTC, to the microsecond (``before`` a ``created`` in milliseconds
    excludes that request)."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()[:64]
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _failure(r: httpx.Response) -> str:
    """What a service said about a failure, on one line: the Failure object's reason and
    details, or the start of the body."""
    text: str
    try:
        value = json.loads(r.content)
        error = value.get("error") if isinstance(value, dict) else None
        if isinstance(error, dict):
            reason, details = error.get("reason"), error.get("details")
            text = f"{reason}" + (f": {details}" if details else "")
        else:
            text = r.content[:300].decode("utf-8", "replace")
    except ValueError:
        text = r.content[:300].decode("utf-8", "replace")
    text = " ".join(str(text).split())
    return text[:300] or "(no body)"


# -- push ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushOutcome:
    """What :func:`push` did with one pin: ``added`` (a new request), ``already`` (the service
    held a request for it) or ``failed`` (``detail`` says why); ``requestid`` when known."""

    pin: Pin
    outcome: str
    requestid: str | None = None
    detail: str = ""


@dataclass
class PushReport:
    """Every pin :func:`push` was given, with its outcome, in the order given."""

    outcomes: list[PushOutcome] = field(default_factory=list)

    def of(self, outcome: str) -> list[PushOutcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    @property
    def added(self) -> list[PushOutcome]:
        return self.of("added")

    @property
    def already(self) -> list[PushOutcome]:
        return self.of("already")

    @property
    def failed(self) -> list[PushOutcome]:
        return self.of("failed")


def push(pins: Sequence[Pin], client: PinningServiceClient, *,
         progress: Callable[[PushOutcome], None] | None = None) -> PushReport:
    """Make the service hold every pin of ``pins``: add those it holds no request for (same CID
    and name, in any status but ``failed``); never remove or replace anything. Running it again
    adds nothing. A pin the service refuses is ``failed`` and the others go on; a refused token
    raises (every pin would fail alike)."""
    held: dict[tuple[bytes, str], str] = {}
    keys = list(dict.fromkeys(CID.parse(p.cid).buffer for p in pins))
    spelled = {CID.parse(p.cid).buffer: p.cid for p in pins}
    live = [s for s in STATUSES if s != "failed"]
    for start in range(0, len(keys), MAX_CIDS_PER_QUERY):
        batch = [spelled[k] for k in keys[start:start + MAX_CIDS_PER_QUERY]]
        for status in client.list_all(cid=batch, status=live):
            try:
                found = CID.parse(status.pin.cid).buffer
            except CIDError:  # Pin.from_json checked it: cannot happen
                continue
            held.setdefault((found, status.pin.name or ""), status.requestid)
    report = PushReport()
    for pin in pins:
        wanted = (CID.parse(pin.cid).buffer, pin.name or "")
        if wanted in held:
            outcome = PushOutcome(pin, "already", held[wanted])
        else:
            try:
                made = client.add(pin)
            except PinError as exc:
                if exc.status in (401, 403):
                    raise
                outcome = PushOutcome(pin, "failed", None, str(exc))
            else:
                held[wanted] = made.requestid
                outcome = PushOutcome(pin, "added", made.requestid)
        report.outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return report

