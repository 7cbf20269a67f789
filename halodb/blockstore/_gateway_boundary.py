"""Where aiohttp's exceptions become HaloDB errors: the trustless-gateway store's half of
:mod:`halodb.blockstore._boundary`, apart so that a reader through a gateway does not import
httpx (the Kubo RPC client's, with its command line: ~0.05-0.1 s) for nothing.

The trustless-gateway store talks HTTP through aiohttp (its C parser reads large bodies
several times faster, see ``docs/dependencies.md``). A GET raises aiohttp's client errors
(:class:`aiohttp.ClientError`: connecting, timeouts of a socket, payload, invalid URL) or,
rarely, its HTTP parser's (:class:`aiohttp.http_exceptions.HttpProcessingError`): that
gateway failed, :class:`BlockStoreError`.

>>> AIOHTTP.error_class(aiohttp.ServerTimeoutError).__name__
'BlockStoreError'
"""

from __future__ import annotations

import aiohttp
import aiohttp.http_exceptions

from halodb.errors import BlockStoreError, ErrorMap

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
