"""More processes for ``halodb serve --workers N``: each answers from a snapshot of its own.

One Python process answers a search in a few milliseconds of DuckDB (which runs without the
GIL) and a few of Python (which holds it): with many clients the Python part of every request
is serialized, and the process uses about one and a fifth of two cores
(docs/internals/serve.md, Performance). ``--workers N`` starts N-1 worker processes beside the
server process; all of them accept connections on the one listening socket, which each worker
inherits (the kernel hands every new connection to one of them).

A worker is a Python process running :func:`worker_main` with the socket's file descriptor. It builds
its snapshot from the cache file (read-only, as the server does) and then talks to the
server process over its stdin and stdout, one line each way::

    server -> worker     worker -> server
                         ready CID            (its first snapshot, at commit CID)
    build                built CID | failed WHY
    swap                 (starts answering from the snapshot it built)

``build`` then ``swap`` lets the server move every process to a new version together
(:meth:`Workers.build`, :meth:`Workers.swap`): all build first, then all swap, so that the versions the processes
answer from differ only for the moment between two swaps, not for a whole build. A worker
stops when its stdin closes (the server process ended, however it ended) or on SIGINT or
SIGTERM, and finishes its requests in flight first.

>>> # with Workers.spawn(cache_path, "orcestra", 3, sock, options) as workers:
>>> #     workers.wait_ready(); ...; workers.build(); workers.swap()
"""

from __future__ import annotations

import argparse
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from halodb.errors import InputError
from halodb.serve.app import ServeOptions

__all__ = ["Workers", "worker_main"]

#: how long the server waits for a worker to build a snapshot (the first, or a new one)
BUILD_TIMEOUT = 900.0
_ANSWERS = frozenset({"ready", "built", "failed"})
# -c, not -m: running a module of an imported package with -m imports it twice
_ENTRY = "import sys; from halodb.serve.workers import worker_main; worker_main(sys.argv[1:])"


class _Worker:
    """One worker process and the lines it has written."""

    def __init__(self, argv: list[str], fd: int) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        pass_fds=(fd,), bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"halodb-serve-worker-{self.process.pid}", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.split(" ", 1)[0] in _ANSWERS:  # anything else a library printed is not an answer
                self.lines.put(line.strip())
        self.lines.put(None)  # the worker ended

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):  # it ended; the next answer says so
            pass

    def answer(self, timeout: float) -> str:
        """The next line the worker writes; ``ended`` if it exits, ``timeout`` if none comes."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        return "ended" if line is None else line


class Workers:
    """``count`` worker processes serving ``name`` from the cache at ``cache_path`` on ``sock``."""

    def __init__(self, workers: list[_Worker]) -> None:
        self._workers = workers

    @classmethod
    def spawn(cls, cache_path: Path, name: str, count: int, sock: socket.socket, options: ServeOptions) -> Workers:
        """Start ``count`` workers (each builds its first snapshot; :meth:`wait_ready` waits)."""
        argv = [sys.executable, "-c", _ENTRY, "--cache", str(cache_path), "--name", name,
                "--fd", str(sock.fileno()), "--deadline", repr(options.deadline), "--gateway", options.gateway]
        return cls([_Worker(argv, sock.fileno()) for _ in range(count)])

    def __len__(self) -> int:
        return len(self._workers)

    def wait_ready(self) -> None:
        """Wait until every worker answers from its first snapshot; an error if one cannot."""
        for n, worker in enumerate(self._workers):
            line = worker.answer(BUILD_TIMEOUT)
            if not line.startswith("ready "):
                raise InputError(f"serve: worker {n + 1} did not start ({_why(worker, line)})", source="--workers")

    def build(self) -> None:
        """Ask every worker to build a snapshot of the newest version the cache holds."""
        for worker in self._workers:
            worker.send("build")

    def swap(self) -> list[str]:
        """Wait for the snapshots :meth:`build` asked for, then have every worker that built one
        answer from it. Returns what went wrong (a worker that could not build keeps its
        version)."""
        problems: list[str] = []
        built = []
        for n, worker in enumerate(self._workers):
            line = worker.answer(BUILD_TIMEOUT)
            if line.startswith("built "):
                built.append(worker)
            else:
                problems.append(f"worker {n + 1}: {_why(worker, line)}")
        for worker in built:
            worker.send("swap")
        return problems

    def ended(self) -> list[str]:
        """The workers that have exited, with their exit codes."""
        return [f"worker {n + 1} exited with code {w.process.returncode}"
                for n, w in enumerate(self._workers) if w.process.poll() is not None]

    def close(self) -> None:
        """Stop every worker (its requests in flight finish first) and wait for it."""
        for worker in self._workers:
            if worker.process.stdin is not None:
                try:
                    worker.process.stdin.close()
                except BrokenPipeError:
                    pass
        deadline = time.monotonic() + 30
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            if worker.process.stdout is not None:
                worker.process.stdout.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _why(worker: _Worker, line: str) -> str:
    if line == "ended":
        worker.process.wait()
        return f"it exited with code {worker.process.returncode}"
    if line == "timeout":
        return f"no answer in {BUILD_TIMEOUT:g} s"
    return line.removeprefix("failed ")


# --- the worker process ---------------------------------------------------------------------
def worker_main(argv: list[str]) -> None:
    """A worker process: ``python -c "...; worker_main(sys.argv[1:])" --cache C --name N --fd F ...``."""
    import uvicorn

    from halodb.cache import open_for_queries
    from halodb.errors import HaloDBError
    from halodb.serve.app import create_app
    from halodb.serve.snapshot import Snapshot, SnapshotHolder

    ap = argparse.ArgumentParser(prog="halodb serve worker")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--gateway", required=True)
    args = ap.parse_args(argv)
    out = sys.stdout

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    def build() -> Snapshot:
        cache = open_for_queries(args.cache)
        try:
            return Snapshot.build(cache, args.name)
        finally:
            cache.close()

    try:
        holder = SnapshotHolder(build())
    except HaloDBError as exc:
        say(f"failed {type(exc).__name__}: {' '.join(str(exc).split())}")
        sys.exit(2)
    sock = socket.socket(fileno=args.fd)
    app = create_app(holder, ServeOptions(deadline=args.deadline, gateway=args.gateway))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))

    def listen() -> None:
        built: Snapshot | None = None
        for line in sys.stdin:
            command = line.strip()
            if command == "build":
                try:
                    built = build()
                    say(f"built {built.head.cid}")
                except HaloDBError as exc:
                    say(f"failed {type(exc).__name__}: {' '.join(str(exc).split())}")
            elif command == "swap" and built is not None:
                holder.replace(built)
                built = None
        server.should_exit = True  # stdin closed: the server process ended

    threading.Thread(target=listen, name="halodb-serve-worker-control", daemon=True).start()
    say(f"ready {holder.current.head.cid}")
    server.run(sockets=[sock])

