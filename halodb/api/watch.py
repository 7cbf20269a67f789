"""Keep the cache current: re-sync whenever a name moves (``halodb sync --watch NAME``).

The watcher resolves the name, syncs when the CID differs from the cache's head, and then
waits as long as the answer may be cached — the DNSLink TTL, or ``default`` when the name
has none — but never less than ``floor`` nor more than ``ceiling`` seconds. When resolving
or syncing fails it backs off (``floor``, doubling up to ``ceiling``) and keeps the cache as
it was; each change of state (started, synced, failed, recovered) is reported as a
:class:`WatchEvent`. Between syncs the cache file is closed, so other processes can query it.

A name that moves back (a head that does not descend from the synced one) is a failure
like any other: the sync raises :class:`~halodb.errors.RewindError`, the watcher reports it
as a ``failed`` event and keeps watching with the cache at the synced head, and recovers
when the name moves forward again; unless ``allow_rewind``, which rebuilds the cache at it.

>>> policy = WatchPolicy(floor=5, ceiling=600, default=60)
>>> policy.wait(ttl=1), policy.wait(ttl=None), policy.wait(ttl=86400), policy.backoff(failures=3)
(5.0, 60.0, 600.0, 20.0)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from halodb.errors import HaloDBError, InputError
from halodb.naming import parse_ref

if TYPE_CHECKING:
    from halodb.api.registry import Registry


@dataclass(frozen=True)
class WatchPolicy:
    """How often to poll: ``floor`` <= TTL-derived wait <= ``ceiling`` seconds."""

    floor: float = 5.0
    ceiling: float = 3600.0
    default: float = 60.0  #: the wait when the name reports no TTL (local and IPNS names)

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise InputError(f"watch intervals must satisfy 0 < floor <= ceiling, not {self.floor} and {self.ceiling}",
                             source="watch")

    def wait(self, ttl: int | None) -> float:
        """Seconds until the next poll after a successful one."""
        return float(min(max(self.default if ttl is None else ttl, self.floor), self.ceiling))

    def backoff(self, failures: int) -> float:
        """Seconds until the next try after ``failures`` failures in a row."""
        return float(min(self.floor * 2 ** max(failures - 1, 0), self.ceiling))


@dataclass(frozen=True)
class WatchEvent:
    """One transition: ``kind`` is started, synced, failed or recovered."""

    kind: str
    name: str
    time: datetime
    cid: str | None = None
    ttl: int | None = None
    wait: float = 0.0
    detail: str = ""

    def __str__(self) -> str:
        when = self.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [when, self.kind, self.name]
        if self.cid:
            parts.append(self.cid)
        if self.detail:
            parts.append(f"({self.detail})")
        parts.append(f"next check in {self.wait:g} s")
        return " ".join(parts)


def watch(
    registry: Registry,
    name: str,
    *,
    policy: WatchPolicy | None = None,
    on_event: Callable[[WatchEvent], None] = lambda e: None,
    stop: threading.Event | None = None,
    max_polls: int | None = None,
    allow_rewind: bool = False,
    prefix: str | None = None,
) -> None:
    """Poll ``name`` and sync on every move until ``stop`` is set (or ``max_polls`` polls).

    ``allow_rewind``: follow the name back to an older version or another history (see
    :meth:`Registry.sync`); otherwise such a move is reported as a ``failed`` event.
    ``prefix``: a partial sync (:meth:`Registry.sync`)."""
    policy = policy or WatchPolicy()
    ref = parse_ref(name)
    if ref.name is None or ref.when is not None:
        raise InputError(f"cannot watch {name!r}: watch a name (not a CID, not NAME@TIME)", source=name)
    stop = stop or threading.Event()
    key = registry.canonical_name(name)
    failures, polls, started = 0, 0, False
    synced: str | None = None  # the head this watcher last saw in the cache: polls don't open it

    def emit(kind: str, **fields: object) -> None:
        on_event(WatchEvent(kind=kind, name=key, time=datetime.now(timezone.utc), **fields))  # type: ignore[arg-type]

    while not stop.is_set():
        polls += 1
        try:
            resolution = registry.names.resolve(name)
            if synced is None and registry.cache_path.exists():
                state = registry.cache.sync_state(key)
                synced = state.head if state is not None and state.scope == prefix else None
            wait = policy.wait(resolution.ttl)
            detail = ""
            if synced != str(resolution.cid):
                # a no-op if another process did it; RewindError (a failure below) if the name moved back
                result = registry.sync(name, head=resolution.cid, allow_rewind=allow_rewind, prefix=prefix)
                synced = str(result.head)
                if not result.up_to_date:
                    detail = f"{result.commits} commit(s), {result.changes} change(s)"
            if failures:
                emit("recovered", cid=str(resolution.cid), ttl=resolution.ttl, wait=wait,
                     detail=f"after {failures} failure(s)" + (f"; {detail}" if detail else ""))
            elif detail:
                emit("synced", cid=str(resolution.cid), ttl=resolution.ttl, wait=wait, detail=detail)
            elif not started:
                emit("started", cid=str(resolution.cid), ttl=resolution.ttl, wait=wait, detail="cache is current")
            failures = 0
        except HaloDBError as exc:
            failures += 1
            wait = policy.backoff(failures)
            emit("failed", wait=wait, detail=f"{type(exc).__name__}: {exc}")
        started = True
        if max_polls is not None and polls >= max_polls:
            return
        stop.wait(wait)


__all__ = ["WatchEvent", "WatchPolicy", "watch"]
