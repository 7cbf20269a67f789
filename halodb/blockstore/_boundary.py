"""Where third-party exceptions become HaloDB errors in the block store layer: httpx, aiohttp.

The Kubo RPC client talks HTTP through httpx. Every exception httpx raises derives from one
of :data:`HTTPX_EXCEPTIONS`: :class:`httpx.HTTPError` (transport, timeouts, protocol, TLS,
redirects, decoding, status), :class:`httpx.InvalidURL` (a store URL that does not parse,
e.g. a port that is not a number), :class:`httpx.StreamError` (a response body read twice or
after closing) and :class:`httpx.CookieConflict`. At this boundary all of them mean "the
store could not be reached": :class:`BlockStoreError`.

The trustless-gateway store talks HTTP through aiohttp (its C parser reads large bodies
several times faster, see ``docs/dependencies.md``). A GET raises aiohttp's client errors
(:class:`aiohttp.ClientError`: connecting, timeouts of a socket, payload, invalid URL) or,
rarely, its HTTP parser's (:class:`aiohttp.http_exceptions.HttpProcessingError`): that
gateway failed, :class:`BlockStoreError`. That map lives in
:mod:`halodb.blockstore._gateway_boundary` (the gateway store imports it without httpx) and
is re-exported here.

>>> HTTPX.error_class(httpx.ConnectTimeout).__name__, HTTPX.error_class(httpx.InvalidURL("x")).__name__
('BlockStoreError', 'BlockStoreError')
>>> AIOHTTP.error_class(aiohttp.ServerTimeoutError).__name__
'BlockStoreError'
"""

from __future__ import annotations

import aiohttp  # noqa: F401 - the doctest names its exceptions
import httpx

from halodb.blockstore._gateway_boundary import AIOHTTP, AIOHTTP_EXCEPTIONS
from halodb.errors import BlockStoreError, ErrorMap

__all__ = ["AIOHTTP", "AIOHTTP_EXCEPTIONS", "HTTPX", "HTTPX_EXCEPTIONS"]

#: The roots of httpx's exception classes (``httpx.__all__`` holds no exception outside them).
HTTPX_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)

#: Requests to a Kubo node's RPC API.
HTTPX: ErrorMap[BlockStoreError] = ErrorMap(
    "httpx", "block store requests (Kubo RPC)", dict.fromkeys(HTTPX_EXCEPTIONS, BlockStoreError)
)

