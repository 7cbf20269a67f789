"""Request bodies from outside: read up to a limit and parsed as JSON, every failure a
:class:`~halodb.errors.RequestError` naming the body (413 when too large, 400 when not JSON).

>>> import asyncio
>>> from starlette.requests import Request
>>> async def receive():
...     return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
>>> asyncio.run(read_json_body(Request({"type": "http", "headers": []}, receive)))
{'a': 1}
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from halodb.errors import RequestError

__all__ = ["MAX_BODY", "read_json_body"]

MAX_BODY = 1 << 20  #: the largest request body read (a search, a Pin); larger ones get 413


async def read_json_body(request: Request, *, limit: int = MAX_BODY, empty: bytes | None = None) -> Any:
    """The body as JSON; a declared or streamed size over ``limit`` is refused before more is
    read. ``empty``: what an empty body stands for (None: it is not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body is larger than {limit} bytes", parameter="body", status=413)
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than {limit} bytes", parameter="body", status=413)
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        return orjson.loads(data or empty or b"")
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"the request body is not JSON: {exc}", parameter="body") from None
