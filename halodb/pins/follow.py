"""``halodb pins follow``: make a Kubo node pin what a name references, and converge when it moves.

One run (:func:`follow_once`):

1. resolve the name to its head and pin the head commit recursively on the node (the node
   fetches what it lacks from its peers): that keeps the index DAG of every version, which
   the rest then reads from the node (the registry is used for names only);
2. refuse a head that does not descend from the one this follower pinned before (a name
   moved back, or to a forged history: :class:`~halodb.errors.RewindError`), unless
   ``allow_rewind``; the previous head's pin goes only once the new one holds;
3. plan the data pins (:mod:`halodb.pins.plan`: every version's, or the newest's), write
   the follower's state to the node's MFS (so ``pins status`` can tell queued from missing),
   and pin what the node does not hold yet, ``concurrency`` at a time; a pin that fails or
   times out is reported and the others go on;
4. unpin nothing, unless ``unpin_after``: then a pin of this follower's that no version in
   the plan references any more is unpinned once it has been unwanted that long.

Whose pin is whose: every pin a follower makes is named ``halodb[LABEL] …`` (LABEL is the
name). A pin under any other name (a human's, another tool's, another name's follower) is
counted as held and never touched, not even renamed. Kubo keeps one pin per CID, so a data
CID two followed names share is pinned by the first and held for the second.

Every step can be repeated: a run killed at any point (``kill -9``) leaves only complete
pins behind, and the next run pins the rest.

>>> label_of("latest.orcestra-campaign.org"), owns("latest", "halodb[latest] halo/a v0"), owns("latest", "mine")
('halodb[latest.orcestra-campaign.org] ', True, False)
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from halodb.blockstore.base import BlockStore
from halodb.blockstore.kubo import KuboStore
from halodb.errors import HaloDBError, InputError, PinError, RewindError
from halodb.index.history import walk
from halodb.index.index import Index
from halodb.ipld import CID
from halodb.pins.model import Pin
from halodb.pins.node import KuboPinNode, NodePin
from halodb.pins.plan import plan_pins
from halodb.util.times import format_time, parse_time

if TYPE_CHECKING:
    from halodb.api.registry import Registry
    from halodb.api.watch import WatchEvent, WatchPolicy

__all__ = ["FollowPolicy", "FollowReport", "follow_once", "follow_watch", "label_of", "owns", "state_path"]

Progress = Callable[[int, int], None]


def label_of(name: str) -> str:
    """The prefix of the names of the pins a follower of ``name`` makes."""
    return f"halodb[{name}] "


def owns(name: str, pin_name: str) -> bool:
    """Whether a node's pin named ``pin_name`` was made by the follower of ``name``."""
    return pin_name.startswith(label_of(name))


def state_path(name: str) -> str:
    """Where in the node's MFS the follower of ``name`` keeps its state."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"/halodb/follow/{slug}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.json"


@dataclass(frozen=True)
class FollowPolicy:
    """``current_only``: keep only the newest version's data; ``unpin_after``: seconds a pin of
    this follower must have been unwanted before it is unpinned (None: never unpin)."""

    current_only: bool = False
    unpin_after: float | None = None
    concurrency: int = 4
    allow_rewind: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InputError(f"concurrency must be at least 1, not {self.concurrency}", source="pins follow")
        if self.unpin_after is not None and self.unpin_after < 0:
            raise InputError(f"unpin_after must be 0 or more seconds, not {self.unpin_after}", source="pins follow")

    def to_json(self) -> dict[str, Any]:
        return {"current_only": self.current_only, "unpin_after": self.unpin_after}


@dataclass
class FollowReport:
    """What one run did on one node."""

    name: str
    node: str
    head: str
    versions: int
    wanted: int = 0  #: data pins in the plan
    already: int = 0  #: ... that this follower had pinned before
    held: int = 0  #: ... that someone else's pin holds
    pinned: list[str] = field(default_factory=list)  #: pinned by this run
    failed: dict[str, str] = field(default_factory=dict)  #: CID -> why
    unpinned: list[str] = field(default_factory=list)
    unwanted: int = 0  #: pins of this follower no version wants, kept (policy or grace period)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "node": self.node, "head": self.head, "versions": self.versions,
                "wanted": self.wanted, "already": self.already, "held": self.held, "pinned": self.pinned,
                "failed": self.failed, "unpinned": self.unpinned, "unwanted_kept": self.unwanted,
                "seconds": round(self.seconds, 3), "ok": self.ok}

    def lines(self) -> list[str]:
        out = [f"{self.node}: {self.name} at {self.head} ({self.versions} version(s)): {self.wanted} data pin(s) "
               f"wanted, {len(self.pinned)} pinned now, {self.already} pinned before, {self.held} held by "
               f"other pins, {len(self.failed)} failed, {len(self.unpinned)} unpinned "
               f"({self.seconds:.1f} s)"]
        if self.unwanted:
            out.append(f"  kept {self.unwanted} pin(s) no version wants any more (unpinning is --unpin-after)")
        out.extend(f"  failed {cid}: {why}" for cid, why in self.failed.items())
        return out


def follow_once(registry: Registry, name: str, node: KuboPinNode, policy: FollowPolicy | None = None, *,
                progress: Progress | None = None, now: Callable[[], datetime] | None = None) -> FollowReport:
    """One converging run (see the module docstring); raises only when nothing could be done
    (the name does not resolve, the node cannot pin the index, a rewind): per-CID failures
    are in the report."""
    policy = policy or FollowPolicy()
    clock = now or (lambda: datetime.now(timezone.utc))
    started = time.monotonic()
    label = registry.canonical_name(name)
    head = registry.resolve(name)
    path = state_path(label)
    state = node.read_state(path) or {}
    before = _previous_head(state)
    pins = {p.multihash: p for p in node.pins()}
    head_name = label_of(label) + "HEAD"
    pinned_head = head.multihash not in pins
    if pinned_head:
        node.pin(str(head), head_name)  # the index DAG of every version, fetched from peers
        pins[head.multihash] = NodePin(str(head), head_name)
    # the head's pin brought the index of every version to the node: read it there, whatever
    # the registry's own store is (its local store has none of it on a fresh follower)
    store = KuboStore(node.url)
    try:
        if before is not None and before != head and not policy.allow_rewind:
            _check_descends(store, name, head, before, node, unpin=pinned_head)
        plan = plan_pins(store, Index(store), head, label=label, current_only=policy.current_only)
    finally:
        store.close()
    report = FollowReport(name=label, node=node.url, head=str(head), versions=plan.versions,
                          wanted=len(plan.data))
    state = {**state, "name": label, "head": str(head), "policy": policy.to_json(),
             "started": format_time(clock()), "done": None}
    node.write_state(path, state)
    todo: list[Pin] = []
    for pin in plan.data:
        found = pins.get(pin.parsed_cid.multihash)
        if found is None:
            todo.append(pin)
        elif owns(label, found.name):
            report.already += 1
        else:
            report.held += 1
    _pin_all(node, label, todo, policy.concurrency, report, progress)
    # the previous head's pin goes once the new head's holds (pinning it may have failed above)
    for old in [p for p in pins.values() if p.name == head_name and p.multihash != head.multihash]:
        node.unpin(old.cid)
    wanted = {p.parsed_cid.multihash for p in plan.data} | {head.multihash}
    unwanted = [p for p in pins.values() if owns(label, p.name) and p.name != head_name and p.multihash not in wanted]
    state["unwanted"] = _unpin_unwanted(node, unwanted, policy, state.get("unwanted"), clock(), report)
    state["done"] = format_time(clock())
    state["failed"] = len(report.failed)
    node.write_state(path, state)
    report.seconds = time.monotonic() - started
    return report


def _previous_head(state: dict[str, Any]) -> CID | None:
    text = state.get("head")
    if not isinstance(text, str):
        return None
    try:
        return CID.parse(text)
    except HaloDBError:
        return None


def _check_descends(store: BlockStore, name: str, head: CID, before: CID, node: KuboPinNode, *,
                    unpin: bool) -> None:
    """Refuse ``head`` unless ``before`` is on its first-parent chain; with ``unpin``, the pin
    of ``head`` made for the check goes again."""
    for cid, _ in walk(store, head):
        if cid == before:
            return
    if unpin:
        node.unpin(str(head))
    raise RewindError(
        f"{name} now points at {head}, which does not descend from {before}, the head this follower "
        f"pinned on {node.url} before: the name moved back or to another history; nothing was pinned "
        "or unpinned (follow it anyway with --allow-rewind)", name=name, head=head, synced=before)


def _pin_all(node: KuboPinNode, label: str, todo: list[Pin], concurrency: int, report: FollowReport,
             progress: Progress | None) -> None:
    if not todo:
        return
    lock = threading.Lock()
    done = 0
    if progress is not None:
        progress(0, len(todo))
    with ThreadPoolExecutor(min(concurrency, len(todo))) as pool:
        futures = {pool.submit(node.pin, pin.cid, label_of(label) + (pin.name or "")): pin for pin in todo}
        for future in as_completed(futures):
            pin = futures[future]
            try:
                future.result()
            except PinError as exc:
                with lock:
                    report.failed[pin.cid] = str(exc)
            else:
                report.pinned.append(pin.cid)
            done += 1
            if progress is not None:
                progress(done, len(todo))


def _unpin_unwanted(node: KuboPinNode, unwanted: list[NodePin], policy: FollowPolicy, since: Any,
                    now: datetime, report: FollowReport) -> dict[str, str]:
    """Unpin what has been unwanted for ``policy.unpin_after`` seconds; returns the new
    ``{cid: unwanted since}`` record."""
    record = since if isinstance(since, dict) else {}
    kept: dict[str, str] = {}
    for pin in unwanted:
        try:
            first = parse_time(record[pin.cid]) if isinstance(record.get(pin.cid), str) else now
        except HaloDBError:
            first = now
        if policy.unpin_after is not None and (now - first).total_seconds() >= policy.unpin_after:
            try:
                node.unpin(pin.cid)
            except PinError as exc:
                report.failed[pin.cid] = f"unpin: {exc}"
            else:
                report.unpinned.append(pin.cid)
                continue
        kept[pin.cid] = format_time(first)
        report.unwanted += 1
    return kept


def follow_watch(registry: Registry, name: str, node: KuboPinNode, policy: FollowPolicy | None = None, *,
                 watch_policy: WatchPolicy | None = None, on_event: Callable[[WatchEvent], None] = lambda e: None,
                 on_report: Callable[[FollowReport], None] = lambda r: None, stop: threading.Event | None = None,
                 max_polls: int | None = None, progress: Progress | None = None) -> None:
    """Run :func:`follow_once` whenever ``name`` moves (and again after a run with failures,
    backing off), until ``stop`` is set or after ``max_polls`` polls. Events as ``sync --watch``."""
    from halodb.api.watch import WatchEvent, WatchPolicy

    watch_policy = watch_policy or WatchPolicy()
    stop = stop or threading.Event()
    label = registry.canonical_name(name)
    done: str | None = None  # the head of the last run without failures
    failures = polls = 0

    def emit(kind: str, **fields: Any) -> None:
        on_event(WatchEvent(kind=kind, name=label, time=datetime.now(timezone.utc), **fields))

    while not stop.is_set():
        polls += 1
        try:
            resolution = registry.names.resolve(name)
            wait = watch_policy.wait(resolution.ttl)
            if done != str(resolution.cid):
                report = follow_once(registry, name, node, policy, progress=progress)
                on_report(report)
                if not report.ok:
                    raise PinError(f"{len(report.failed)} pin(s) failed on {node.url}", node=node.url)
                done = report.head
                emit("recovered" if failures else "synced", cid=report.head, ttl=resolution.ttl, wait=wait,
                     detail=f"{len(report.pinned)} pinned, {report.wanted} wanted")
            elif polls == 1:
                emit("started", cid=done, ttl=resolution.ttl, wait=wait, detail="pins are current")
            failures = 0
        except HaloDBError as exc:
            failures += 1
            wait = watch_policy.backoff(failures)
            emit("failed", wait=wait, detail=f"{type(exc).__name__}: {exc}")
        if max_polls is not None and polls >= max_polls:
            return
        stop.wait(wait)
