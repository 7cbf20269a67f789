"""Where httpx's exceptions become HaloDB errors in the pins layer: requests to a Kubo node's
RPC API and to Pinning Service API servers both mean "the node or service failed":
:class:`~halodb.errors.PinError`.

>>> HTTPX.error_class(httpx.ConnectTimeout).__name__
'PinError'
"""

from __future__ import annotations

import httpx  # noqa: F401 - the doctest names its exceptions

from halodb.blockstore._boundary import HTTPX_EXCEPTIONS
from halodb.errors import ErrorMap, PinError

#: Requests to pinning nodes (Kubo RPC) and pinning services.
HTTPX: ErrorMap[PinError] = ErrorMap("httpx", "pinning nodes and services", dict.fromkeys(HTTPX_EXCEPTIONS, PinError))
