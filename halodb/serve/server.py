"""Running the STAC API: ``halodb serve [NAME] [--host] [--port] [--watch]``.

The server answers from a :class:`~halodb.serve.snapshot.Snapshot` of NAME's synced history.
With ``watch`` a thread runs :func:`halodb.api.watch.watch` (as ``halodb sync --watch``
does): whenever NAME moves it syncs the cache, builds a new snapshot from it, and swaps it in;
requests keep being answered from the old snapshot until then, and none is dropped. It
binds 127.0.0.1 unless told otherwise.

>>> # with halodb.open() as reg: serve(reg, "orcestra", port=8000)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import uvicorn

from halodb.api import Registry
from halodb.api.watch import WatchEvent, WatchPolicy, watch
from halodb.errors import HaloDBError, InputError
from halodb.serve.app import ServeOptions, create_app
from halodb.serve.snapshot import Snapshot, SnapshotHolder

__all__ = ["ServeConfig", "pick_name", "serve"]


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen and whether to follow the name."""

    host: str = "127.0.0.1"
    port: int = 8000
    watch: bool = False
    policy: WatchPolicy = WatchPolicy()
    options: ServeOptions = ServeOptions()


def pick_name(reg: Registry, name: str | None) -> str:
    """The synced name to serve: ``name`` (its canonical form), or the only synced one."""
    states = {s.name for s in reg.queries.sync_states()}
    if name is None:
        if len(states) != 1:
            choices = ", ".join(sorted(states)) if states else "none"
            raise InputError(f"serve: give NAME: the cache holds {len(states)} synced names ({choices}); "
                             "`halodb sync NAME` syncs one", source="NAME")
        return next(iter(states))
    return reg.canonical_name(name)


def serve(
    reg: Registry, name: str | None, config: ServeConfig, *,
    on_ready: Callable[[str, Snapshot], None] = lambda url, snap: None,
    on_event: Callable[[WatchEvent], None] = lambda event: None,
) -> None:
    """Serve ``name`` until interrupted (SIGINT/SIGTERM). ``on_ready(url, snapshot)`` is called
    once the socket listens; ``on_event`` with each watch event (with ``watch``)."""
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
    holder = SnapshotHolder(Snapshot.build(reg.queries, key))
    app = create_app(holder, config.options)
    sock = _listen(config.host, config.port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    stop = threading.Event()
    watcher = None
    if config.watch:
        def follow(event: WatchEvent) -> None:
            on_event(event)
            if event.cid is not None and event.cid != holder.current.head.cid:
                holder.replace(Snapshot.build(reg.queries, key))

        watcher = threading.Thread(target=watch, args=(reg, key), name="halodb-serve-watch", daemon=True,
                                   kwargs={"policy": config.policy, "on_event": follow, "stop": stop})
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    on_ready(f"http://{shown}:{port}/", holder.current)
    if watcher is not None:
        watcher.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        sock.close()
        if watcher is not None:
            watcher.join(timeout=30)


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
