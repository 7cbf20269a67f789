"""Where third-party exceptions become HaloDB errors in the block store layer: httpx.

The Kubo RPC client and the trustless gateways talk HTTP through httpx. Every exception
httpx raises derives from one of :data:`HTTPX_EXCEPTIONS`: :class:`httpx.HTTPError` (transport,
timeouts, protocol, TLS, redirects, decoding, status), :class:`httpx.InvalidURL` (a store or
gateway URL that does not parse, e.g. a port that is not a number), :class:`httpx.StreamError`
(a response body read twice or after closing) and :class:`httpx.CookieConflict`. At this
boundary all of them mean "the store could not be reached": :class:`BlockStoreError`. The
naming layer reuses the roots for IPNS records fetched from gateways.

>>> HTTPX.error_class(httpx.ConnectTimeout).__name__, HTTPX.error_class(httpx.InvalidURL("x")).__name__
('BlockStoreError', 'BlockStoreError')
"""

from __future__ import annotations

import httpx

from halodb.errors import BlockStoreError, ErrorMap

#: The roots of httpx's exception classes (``httpx.__all__`` holds no exception outside them).
HTTPX_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)

#: Requests to a Kubo node's RPC API and to trustless gateways.
HTTPX: ErrorMap[BlockStoreError] = ErrorMap(
    "httpx", "block store requests (Kubo RPC, trustless gateways)", dict.fromkeys(HTTPX_EXCEPTIONS, BlockStoreError)
)
