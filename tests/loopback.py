"""Helpers for the real processes and loopback HTTP endpoints that tests start.

>>> from http.server import BaseHTTPRequestHandler
>>> class Hello(QuietHandler):
...     def do_GET(self) -> None:
...         respond(self, b"hi", "text/plain")
>>> import httpx
>>> with serve(Hello) as url:
...     httpx.get(url).text
'hi'
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """``preexec_fn`` for daemons a test starts: the kernel sends them SIGTERM when the test
    process dies, even by SIGKILL, so no ``ipfs daemon`` or ``named`` outlives its run.
    Start them from the main thread: the signal follows the death of the *thread* that forked."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float) -> None:
    """Terminate ``process`` and wait for it; kill it when it has not exited after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log every request to stderr."""

    def log_message(self, *args: Any) -> None:
        pass


def respond(handler: BaseHTTPRequestHandler, body: bytes, content_type: str, status: int = 200,
            headers: dict[str, str] | None = None) -> None:
    """Send one whole response (with ``headers`` besides its type and length)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread; yields ``http://127.0.0.1:PORT/``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Relay(QuietHandler):
    """Relays GETs to the Kubo gateway ``upstream``, with faults: answers for CIDs in ``bad``
    get a flipped byte (for CIDs in ``bad_plain``, only the plain answers: no ``format``), ``status(n)`` forces the status of the n-th request (None: relay),
    with ``cut_cars`` a CAR answer loses its last third, and with ``plain_paths`` a request for
    a CAR is answered as a plain path gateway answers it: the file's bytes, ``format`` and the
    CAR's parameters ignored. A ``Range`` header is passed on (and recorded in ``calls``:
    ``PATH range=bytes=A-B``), and the ``Content-Range`` of the answer back."""

    upstream: ClassVar[str] = ""
    bad: ClassVar[set[str]] = set()
    bad_plain: ClassVar[set[str]] = set()
    status: ClassVar[Callable[[int], int | None] | None] = None
    cut_cars: ClassVar[bool] = False
    plain_paths: ClassVar[bool] = False
    calls: ClassVar[list[str]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()
    client: ClassVar[httpx.Client] = httpx.Client(limits=httpx.Limits(max_keepalive_connections=32))
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    protocol_version = "HTTP/1.1"  # connections kept alive (every answer has a Content-Length)

    def do_GET(self) -> None:
        with self.lock:
            self.calls.append(self.path + (f" range={self.headers['Range']}" if self.headers.get("Range") else ""))
            n = len(self.calls)
        status = type(self).status
        forced = status(n) if status is not None else None
        if forced is not None:
            respond(self, b"injected", "text/plain", forced)
            return
        path, accept = self.path, self.headers.get("Accept", "*/*")
        if self.plain_paths and "format=car" in path:
            path, accept = urlsplit(path).path, "*/*"
        asked = {"Accept": accept}
        if self.headers.get("Range"):  # a plain read of a byte range of a file
            asked["Range"] = self.headers["Range"]
        answer = self.client.get(self.upstream.rstrip("/") + path, headers=asked)
        body = answer.content
        last = urlsplit(self.path).path.rsplit("/", 1)[-1]
        tampered = last in self.bad or (last in self.bad_plain and "format=" not in self.path)
        if tampered and answer.status_code in (200, 206):
            flipped = bytearray(body)
            flipped[len(flipped) // 2] ^= 0xFF
            body = bytes(flipped)
        if self.cut_cars and "format=car" in self.path:
            body = body[: len(body) * 2 // 3]
        extra = {"Content-Range": answer.headers["content-range"]} if "content-range" in answer.headers else None
        respond(self, body, answer.headers.get("content-type", "application/octet-stream"), answer.status_code, extra)


@contextmanager
def relay(upstream: str, *, bad: set[str] | None = None, bad_plain: set[str] | None = None,
          status: Callable[[int], int | None] | None = None, cut_cars: bool = False,
          plain_paths: bool = False) -> Iterator[tuple[str, type[Relay]]]:
    """A :class:`Relay` in front of the gateway ``upstream``: ``(its URL, its class)``."""
    handler = type("ARelay", (Relay,), {"upstream": upstream, "bad": bad if bad is not None else set(),
                                         "bad_plain": bad_plain if bad_plain is not None else set(),
                                         "status": staticmethod(status) if status else None, "cut_cars": cut_cars,
                                         "plain_paths": plain_paths, "calls": []})
    with serve(handler) as url:
        yield url, handler
