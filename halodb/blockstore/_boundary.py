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
gateway failed, :class:`BlockStoreError`.

>>> HTTPX.error_class(httpx.ConnectTimeout).__name__, HTTPX.error_class(httpx.InvalidURL("x")).__name__
('BlockStoreError', 'BlockStoreError')
>>> AIOHTTP.error_class(aiohttp.ServerTimeoutError).__name__
'BlockStoreError'
"""

from __future__ import annotations

import aiohttp
import aiohttp.http_exceptions
import httpx

from halodb.errors import BlockStoreError, ErrorMap

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

#: The roots of what an aiohttp client request raises (websockets, multipart and the server
#: side of aiohttp are not used).
AIOHTTP_EXCEPTIONS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    aiohttp.http_exceptions.HttpProcessingError,
)

#: Requests to trustless gateways (blocks, CARs, IPNS records).
AIOHTTP: ErrorMap[BlockStoreError] = ErrorMap(
    "aiohttp", "trustless gateway requests", dict.fromkeys(AIOHTTP_EXCEPTIONS, BlockStoreError)
)
