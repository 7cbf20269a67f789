"""Running the STAC API: ``halodb serve [NAME] [--host] [--port] [--watch] [--pinning]``.

The server answers from a :class:`~halodb.serve.snapshot.Snapshot` of NAME's synced history.
With ``watch`` a thread runs :func:`halodb.api.watch.watch` (as ``halodb sync --watch``
does): whenever NAME moves it syncs the cache, builds a new snapshot from it, and swaps it in;
requests keep being answered from the old snapshot until then, and none is dropped. It
binds 127.0.0.1 unless told otherwise. With ``pinning`` it also answers the IPFS Pinning
Service API under ``/pins`` (:mod:`halodb.serve.pinning`), and serves that alone when no name
is synced.

>>> # with halodb.open() as reg: serve(reg, "orcestra", port=8000)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import uvicorn
from starlette.types import ASGIApp

from halodb.api import Registry
from halodb.api.watch import WatchEvent, WatchPolicy, watch
from halodb.errors import HaloDBError, InputError
from halodb.serve.app import ServeOptions, create_app
from halodb.serve.pinning import PinningOptions, PinningService, combine, create_pinning_app
from halodb.serve.snapshot import Snapshot, SnapshotHolder
from halodb.serve.workers import Workers

__all__ = ["ServeConfig", "pick_name", "serve"]


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen and whether to follow the name."""

    host: str = "127.0.0.1"
    port: int = 8000
    watch: bool = False
    policy: WatchPolicy = WatchPolicy()
    options: ServeOptions = ServeOptions()
    workers: int = 1  #: processes answering requests (this one and workers - 1 more)
    pinning: PinningOptions | None = None  #: also answer the Pinning Service API under /pins


def pick_name(reg: Registry, name: str | None) -> str:
    """The synced name to serve: ``name`` (its canonical form), or the only synced one."""
    states = {s.name for s in reg.queries.sync_states()}
    if name is None:
        if len(states) != 1:
            choices = ", ".join(sorted(states)) if states else "none"
            raise InputError(f"serve: give NAME: the cache holds {len(states)} synced names ({choices})"
                             + (f"; e.g. `halodb serve {min(states)}`" if states else "; `halodb sync NAME` syncs one"),
                             source="NAME")
        return next(iter(states))
    return reg.canonical_name(name)


def serve(
    reg: Registry, name: str | None, config: ServeConfig, *,
    on_ready: Callable[[str, Snapshot | None], None] = lambda url, snap: None,
    on_event: Callable[[WatchEvent], None] = lambda event: None,
) -> None:
    """Serve ``name`` until interrupted (SIGINT/SIGTERM). ``on_ready(url, snapshot)`` is called
    once the socket listens (snapshot None when only the Pinning Service API is served: with
    ``pinning``, no NAME and no name synced); ``on_event`` with each watch event (with ``watch``)."""
    if config.pinning is not None:
        if config.workers > 1:
            raise InputError("serve: --pinning runs in one process (its workers and request store are "
                             "this process's); give --workers 1", source="--workers")
        if name is None and not reg.queries.sync_states():
            if config.watch:
                raise InputError("serve: --watch follows a NAME; give one", source="--watch")
            _serve_pinning_only(reg, config, on_ready)
            return
    if config.watch and name is not None:
        try:
            reg.sync(name)  # the newest version to serve first; later ones come from the watcher
        except HaloDBError as exc:
            # unreachable, moved back, ...: serve what the cache holds (if anything) and let
            # the watcher retry, as `halodb sync --watch` keeps the cache on a failed poll
            if reg.queries.sync_state(reg.canonical_name(name)) is None:
                raise
            on_event(WatchEvent("failed", reg.canonical_name(name), datetime.now(timezone.utc),
                                wait=config.policy.floor,
                                detail=f"{type(exc).__name__}: {exc}; serving the version the cache holds"))
    key = pick_name(reg, name)
    if reg.queries.sync_state(key) is None:
        raise InputError(f"serve: {name!r} is not synced into the cache {reg.cache_path}; run `halodb sync {name}` "
                         "first, or serve it with --watch", source=name)
    sock = _listen(config.host, config.port)
    # the workers build their snapshots while this process builds its own
    workers = Workers.spawn(reg.cache_path, key, config.workers - 1, sock, config.options)
    try:
        holder = SnapshotHolder(Snapshot.build(reg.queries, key))
        workers.wait_ready()
        _run(reg, key, config, sock, holder, workers, on_ready, on_event)
    finally:
        workers.close()
        sock.close()


@contextmanager
def _pinning(reg: Registry, config: ServeConfig) -> Iterator[PinningService | None]:
    """The pinning service of the home, its workers running, while the block runs (None without ``pinning``)."""
    if config.pinning is None:
        yield None
        return
    service = PinningService.open(reg.home, config.pinning)
    try:
        service.start()
        yield service
    finally:
        service.stop()


def _serve_pinning_only(reg: Registry, config: ServeConfig, on_ready: Callable[[str, Snapshot | None], None]) -> None:
    sock = _listen(config.host, config.port)
    try:
        with _pinning(reg, config) as service:
            assert service is not None
            server = uvicorn.Server(uvicorn.Config(combine(create_pinning_app(service), None), log_level="warning",
                                                   access_log=False, lifespan="off"))
            on_ready(_url(sock), None)
            server.run(sockets=[sock])
    finally:
        sock.close()


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _run(reg: Registry, key: str, config: ServeConfig, sock: socket.socket, holder: SnapshotHolder,
         workers: Workers, on_ready: Callable[[str, Snapshot | None], None],
         on_event: Callable[[WatchEvent], None]) -> None:
    with _pinning(reg, config) as service:
        app = create_app(holder, config.options)
        _run_app(reg, key, config, sock, holder, workers, on_ready, on_event,
                 app if service is None else combine(create_pinning_app(service), app))


def _run_app(reg: Registry, key: str, config: ServeConfig, sock: socket.socket, holder: SnapshotHolder,
             workers: Workers, on_ready: Callable[[str, Snapshot | None], None], on_event: Callable[[WatchEvent], None],
             app: ASGIApp) -> None:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    stop = threading.Event()
    failures: list[str] = []
    threads = [threading.Thread(target=_mind, args=(workers, server, stop, failures), name="halodb-serve-workers",
                                daemon=True)] if len(workers) else []
    if config.watch:
        def follow(event: WatchEvent) -> None:
            on_event(event)
            if event.cid is not None and event.cid != holder.current.head.cid:
                workers.build()  # all processes build, then all swap: they move together
                snapshot = Snapshot.build(reg.queries, key)
                problems = workers.swap()
                holder.replace(snapshot)
                for problem in problems:
                    on_event(WatchEvent("failed", key, datetime.now(timezone.utc), cid=event.cid,
                                        detail=f"{problem}; it answers from its previous version"))

        threads.append(threading.Thread(target=watch, args=(reg, key), name="halodb-serve-watch", daemon=True,
                                        kwargs={"policy": config.policy, "on_event": follow, "stop": stop}))
    on_ready(_url(sock), holder.current)
    for thread in threads:
        thread.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    if failures:
        raise InputError(f"serve: stopped: {failures[0]}", source="--workers")


def _mind(workers: Workers, server: uvicorn.Server, stop: threading.Event, failures: list[str]) -> None:
    """Stop the server when a worker process ends on its own (its share of the connections
    would go unanswered): better a loud exit a supervisor restarts than a server half down."""
    while not stop.wait(1.0):
        ended = workers.ended()
        if ended:
            failures.extend(ended)
            server.should_exit = True
            return


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP; without it every response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"serve: cannot listen on {host}:{port}: {exc.strerror or exc}", source="--port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
