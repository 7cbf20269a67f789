"""A server in a subprocess, for tests and benchmarks: started, waited for, stopped.

:class:`ServerProcess` runs a command line (``halodb serve … --port 0``, or another STAC
API such as ``rustac serve``), learns its URL from the line ``… at http://HOST:PORT/`` it
prints on stderr (``halodb serve`` does) or is told it, waits until ``GET URL`` answers
200, and stops it with SIGINT (then SIGKILL after 30 s).

>>> # server = ServerProcess("halodb serve", ["halodb", "--home", "h", "serve", "--port", "0"])
>>> # server.url -> 'http://127.0.0.1:40123/'; server.stop()
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import httpx

__all__ = ["ServerProcess"]

_LISTENING = re.compile(r" at (http://\S+/)$")


class ServerProcess:
    """``argv`` in a subprocess; :attr:`url` and :attr:`startup_s` once it answers."""

    def __init__(self, label: str, argv: list[str], *, url: str | None = None, timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> None:
        self.label = label
        started = time.perf_counter()
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self.url = url or ""
        announced = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line.rstrip("\n"))
                match = _LISTENING.search(line.strip())
                if match and not self.url:
                    self.url = match.group(1)
                    announced.set()
            announced.set()  # the process ended

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        if url is None and (not announced.wait(timeout) or not self.url):
            self._fail("did not say where it listens")
        while not self._answers():
            if self.process.poll() is not None:
                self._fail("exited")
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {timeout:g} s")
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - started

    def _answers(self) -> bool:
        try:
            return bool(self.url) and httpx.get(self.url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def _fail(self, what: str) -> None:
        self.stop()
        raise RuntimeError(f"{self.label} {what}:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it has not exited after 30 s. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
