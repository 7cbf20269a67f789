"""Run the STAC ecosystem's own validator, ``stac-api-validator``, offline (tests only).

``stac_api_validator.validations.validate_api`` checks a STAC API by asking it questions over
HTTP, and checks every Item and Collection it gets back against the STAC JSON schemas, which it
downloads from ``schemas.stacspec.org`` (and ``geojson.org``, ``json-schema.org``, and
``stac-extensions.github.io`` for any extension an object declares). The test machines cannot
reach those hosts, so :func:`offline` answers every request to a host that is not loopback
from a local copy that an installed package bundles:

- pystac bundles the STAC 1.1.0 core schemas and the GeoJSON Feature and Geometry schemas
  (``pystac.validation.local_validator.get_local_schema_cache``);
- jsonschema-specifications bundles the JSON Schema meta-schemas (draft 3 to 2020-12).

A request for anything else FAILS LOUDLY: it raises :class:`NoLocalCopy` where it was made and
is recorded, and leaving :func:`offline` raises :class:`OfflineViolation` naming every such URL,
even when the validator caught the first exception and went on. Nothing is ever faked: there is
no empty schema, no skipped check. Requests to 127.0.0.1, ``localhost`` and ``::1`` (the server
under test) go through untouched.

Where the requests are caught (the validator, stac-validator, stac-check, pystac and
pystac-client fetch in four different ways):

- ``urllib3.connectionpool.HTTPConnectionPool.urlopen``: every ``requests`` session (the
  validator's own, ``requests.get`` in stac-validator and stac-check, pystac-client's
  ``StacApiIO``) and pystac's ``DefaultStacIO`` (a ``urllib3.PoolManager``) end there;
- an opener installed for ``urllib.request.urlopen`` (stac-validator's link and asset checks);
- ``socket.getaddrinfo`` and ``socket.socket.connect``, as a backstop: any other way out to a
  host that is not loopback is refused and recorded the same way.

>>> from urllib.request import urlopen
>>> with offline() as net:
...     schema = json.load(urlopen("https://geojson.org/schema/Geometry.json"))
>>> schema["title"], net.served
('GeoJSON Geometry', ['https://geojson.org/schema/Geometry.json'])
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from unittest import mock
from urllib.parse import urldefrag, urlsplit
from urllib.response import addinfourl

import requests
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

__all__ = ["NoLocalCopy", "OfflineNetwork", "OfflineViolation", "ValidatorReport", "installed_copies",
           "offline", "validate_offline"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class NoLocalCopy(requests.exceptions.ConnectionError):
    """A request for a URL outside the loopback that has no local copy (raised where it was made).

    A ``requests`` ``ConnectionError`` (hence an ``OSError``), what the callers expect of a
    host they cannot reach, so each reports it in its own words."""


class OfflineViolation(AssertionError):
    """Leaving :func:`offline` after something asked for a URL that has no local copy."""


def copy_key(url: str) -> str:
    """The key of a document in the local copies: host and path (no scheme, port or fragment).

    >>> copy_key("http://json-schema.org/draft-07/schema#")
    'json-schema.org/draft-07/schema'
    """
    parts = urlsplit(urldefrag(url).url)
    return f"{(parts.hostname or '').lower()}{parts.path}"


def is_loopback(host: str | None) -> bool:
    """True for the hosts a test may talk to: ``localhost`` and loopback addresses.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("schemas.stacspec.org")
    (True, True, False)
    """
    if host is None:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def installed_copies() -> dict[str, bytes]:
    """Every schema an installed package bundles, by :func:`copy_key` of the URL it lives at.

    >>> copies = installed_copies()
    >>> "schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json" in copies
    True
    >>> "json-schema.org/draft-07/schema" in copies
    True
    """
    import jsonschema_specifications  # type: ignore[import-untyped]
    from pystac.validation.local_validator import get_local_schema_cache

    copies = {copy_key(url): json.dumps(schema).encode() for url, schema in get_local_schema_cache().items()}
    for uri in jsonschema_specifications.REGISTRY:
        copies[copy_key(uri)] = json.dumps(jsonschema_specifications.REGISTRY.contents(uri)).encode()
    return copies


@dataclass
class OfflineNetwork:
    """What happened inside :func:`offline`: URLs answered from local copies, URLs refused."""

    copies: dict[str, bytes]
    served: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def answer(self, url: str) -> bytes:
        """The local copy of ``url``; records and raises :class:`NoLocalCopy` when there is none."""
        body = self.copies.get(copy_key(url))
        if body is None:
            self.refused.append(url)
            raise NoLocalCopy(f"offline test: no local copy of {url} (only loopback hosts and bundled "
                              f"schemas are reachable; see tests/stac_api_validator_offline.py)")
        if url not in self.served:
            self.served.append(url)
        return body

    def refuse(self, what: str) -> None:
        """Record and raise for a connection attempt that no local copy can answer."""
        self.refused.append(what)
        raise NoLocalCopy(f"offline test: refused to connect to {what} (not a loopback host)")


def _pool_url(pool: HTTPConnectionPool, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    default = {"http": 80, "https": 443}.get(pool.scheme)
    port = "" if pool.port in (None, default) else f":{pool.port}"
    return f"{pool.scheme}://{pool.host}{port}{url}"


class _LocalCopyHandler(urllib.request.BaseHandler):
    """``urllib.request`` handler: loopback falls through to the default handlers, the rest is
    answered from a local copy or refused."""

    handler_order = 100  # before HTTPHandler / HTTPSHandler (500)

    def __init__(self, net: OfflineNetwork) -> None:
        self.net = net

    def _open(self, req: urllib.request.Request) -> addinfourl | None:
        if is_loopback(urlsplit(req.full_url).hostname):
            return None
        body = self.net.answer(req.full_url)
        headers = Message()
        headers["Content-Type"] = "application/schema+json"
        headers["Content-Length"] = str(len(body))
        response = addinfourl(io.BytesIO(body), headers, req.full_url, 200)
        response.msg = "OK"  # type: ignore[attr-defined]  # what urllib's own handlers set
        return response

    def http_open(self, req: urllib.request.Request) -> addinfourl | None:
        return self._open(req)

    def https_open(self, req: urllib.request.Request) -> addinfourl | None:
        return self._open(req)


@contextmanager
def offline(copies: dict[str, bytes] | None = None) -> Iterator[OfflineNetwork]:
    """Inside: no request leaves the loopback; the rest is served from ``copies``
    (default :func:`installed_copies`) or refused with :class:`NoLocalCopy`.

    Raises :class:`OfflineViolation` on leaving when anything was refused.
    """
    net = OfflineNetwork(installed_copies() if copies is None else copies)
    real_pool_urlopen = HTTPConnectionPool.urlopen
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_opener = getattr(urllib.request, "_opener", None)

    def pool_urlopen(pool: HTTPConnectionPool, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if is_loopback(pool.host):
            return real_pool_urlopen(pool, method, url, *args, **kwargs)
        full = _pool_url(pool, url)
        body = net.answer(full)
        return urllib3.HTTPResponse(
            body=io.BytesIO(body), headers={"Content-Type": "application/schema+json", "Content-Length": str(len(body))},
            status=200, reason="OK", preload_content=kwargs.get("preload_content", True),
            decode_content=kwargs.get("decode_content", True), request_method=method, request_url=full)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not is_loopback(str(name)):
            net.refuse(f"{name}:{port} (name lookup)")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def check_address(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(str(address[0])):
            net.refuse(f"{address[0]}:{address[1]} (socket connect)")

    def connect(sock: socket.socket, address: Any) -> None:
        check_address(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check_address(sock, address)
        return real_connect_ex(sock, address)

    with mock.patch.object(HTTPConnectionPool, "urlopen", pool_urlopen), \
            mock.patch.object(socket, "getaddrinfo", getaddrinfo), \
            mock.patch.object(socket.socket, "connect", connect), \
            mock.patch.object(socket.socket, "connect_ex", connect_ex):
        urllib.request.install_opener(urllib.request.build_opener(_LocalCopyHandler(net)))
        try:
            yield net
        except BaseException as exc:
            if net.refused:
                exc.add_note(f"offline test: requests without a local copy: {net.refused}")
            raise
        finally:
            urllib.request.install_opener(real_opener)  # type: ignore[arg-type]
    if net.refused:
        raise OfflineViolation(f"{len(net.refused)} request(s) left the loopback and had no local copy: "
                               f"{net.refused}")


@dataclass(frozen=True)
class ValidatorReport:
    """What ``validate_api`` answered, and which schemas it read from local copies."""

    errors: list[str]
    warnings: list[str]
    schemas: list[str]

    def describe(self) -> str:
        """Errors and warnings, one a line, for an assertion message or a log."""
        lines = [f"errors ({len(self.errors)}):", *(f"  - {e}" for e in self.errors),
                 f"warnings ({len(self.warnings)}):", *(f"  - {w}" for w in self.warnings),
                 f"schemas served from local copies ({len(self.schemas)}):", *(f"  - {s}" for s in self.schemas)]
        return "\n".join(lines)


def validate_offline(root_url: str, conformance: list[str], *, collection: str, geometry: str | None = None,
                     fields_nested_property: str | None = None, validate_pagination: bool = True,
                     copies: dict[str, bytes] | None = None) -> ValidatorReport:
    """Run ``stac_api_validator.validations.validate_api`` on ``root_url`` inside :func:`offline`.

    ``conformance`` takes the validator's own names (``core``, ``collections``, ``features``,
    ``item-search``, ``filter``, ``item-search#sort``, ``item-search#fields``, ...).
    Raises :class:`OfflineViolation` when it asked for a URL that has no local copy.
    """
    from stac_api_validator.validations import QueryConfig, validate_api
    from stac_validator.utilities import fetch_and_parse_schema  # type: ignore[import-untyped]

    logging.getLogger("stac_api_validator").setLevel(logging.WARNING)
    fetch_and_parse_schema.cache_clear()  # stac-validator keeps schemas per process: fetch them here
    with offline(copies) as net:
        warnings, errors = validate_api(
            root_url=root_url, ccs_to_validate=conformance, collection=collection, geometry=geometry,
            auth_bearer_token=None, auth_query_parameter=None, fields_nested_property=fields_nested_property,
            validate_pagination=validate_pagination, query_config=QueryConfig(*([None] * 13)),
            transaction_collection=None, headers=None, open_assets_urls=True, stac_check_config=None)
    return ValidatorReport(errors=errors.as_list(), warnings=warnings.as_list(), schemas=list(net.served))
