"""What to pin to keep a name's campaign alive: every CID its index references, as Pin objects.

Two kinds of pins:

* **the index**: one pin per version, its commit, named ``LABEL HEAD vN`` (N counts from 0,
  the oldest) and chained by ``meta.prev``, as ORCESTRA's ``pinlist.yaml`` chains its heads.
  Commits link their parents, so a recursive pin of the newest head keeps the whole index
  DAG of every version; the older heads are listed for the pin list's record.
* **the data**: one pin per distinct data CID the versions reference (the dataset's UnixFS
  tree, which the index names but does not link), named ``KEY vN`` (N counting that key's
  distinct data CIDs, oldest first) and chained per key by ``meta.prev``; ``meta`` also
  carries ``halodb:key``, ``halodb:path`` and ``halodb:since`` (the time of the first version
  that referenced it). CIDs are compared by multihash: ``Qm…`` and its ``bafy…`` spelling are
  one pin, under the spelling seen first.

With ``current_only`` only the newest version counts: its head, and its datasets' data (as
spelled there, and without ``meta.prev``: the pins before are not in the plan); names and
``halodb:since`` still come from the whole history, so a pin has one name in every plan.

The work is that of the history's changes, not versions times datasets: the oldest version
is listed once and each later one is diffed against the one before.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.index.model import Commit, Entry
>>> from halodb.util.times import parse_time
>>> from halodb.ipld import CID, RAW, encode
>>> store = MemoryStore(); index = Index(store)
>>> item = store.put(encode({"id": "a"}))
>>> data = str(CID.for_bytes(b"dataset a", RAW))
>>> root = index.write_root(index.apply(index.empty(), {"halo/a": Entry(item, data, "HALO/a.zarr")}, []))
>>> head = write_commit(store, Commit(index=root, time=parse_time("2024-08-12"), author="x", message="m"))
>>> plan = plan_pins(store, index, head, label="latest")
>>> [(p.name, p.meta.get("halodb:path")) for p in plan.pins]
[('latest HEAD v0', None), ('halo/a v0', 'HALO/a.zarr')]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from halodb.blockstore.base import BlockStore
from halodb.index.history import CommitCache, walk
from halodb.index.index import Index
from halodb.index.model import Commit, Entry
from halodb.ipld import CID
from halodb.pins.model import MAX_NAME, Pin
from halodb.util.times import format_time

__all__ = ["Plan", "plan_pins"]


@dataclass(frozen=True)
class Plan:
    """The pins of one name at one head: ``index`` (HEAD chain, oldest first), then ``data``."""

    label: str
    head: CID
    versions: int  #: versions the plan covers (1 with ``current_only``)
    index: list[Pin] = field(default_factory=list)
    data: list[Pin] = field(default_factory=list)

    @property
    def pins(self) -> list[Pin]:
        return [*self.index, *self.data]

    @property
    def head_pin(self) -> Pin:
        """The newest head's pin: recursively, the index DAG of every version."""
        return self.index[-1]


def plan_pins(store: BlockStore, index: Index, head: CID, *, label: str, current_only: bool = False,
              tags: Iterable[str] = (), commits: CommitCache | None = None) -> Plan:
    """The pins that keep ``head`` (and, unless ``current_only``, every version before it) alive;
    ``label`` names the HEAD pins (the name, usually); ``tags`` go into every pin's ``meta.tags``."""
    tags = tuple(dict.fromkeys(tags))
    chain = list(walk(store, head, cache=commits))
    chain.reverse()  # oldest first
    index_pins: list[Pin] = []
    for n, (cid, commit) in enumerate(chain):
        meta: dict[str, str | tuple[str, ...]] = {"halodb:time": format_time(commit.time)}
        if index_pins and not current_only:
            meta["prev"] = index_pins[-1].cid
        if tags:
            meta["tags"] = tags
        index_pins.append(Pin(str(cid), _name(f"{label} HEAD v{n}"), meta=meta))
    # names and times come from the whole history, also when only the newest version counts
    data = list(_data_pins(index, chain, tags))
    if current_only:
        index_pins = index_pins[-1:]
        now = {CID.parse(e.data).multihash: e.data for _, e in index.entries(index.load_root(chain[-1][1].index))
               if e.data is not None}
        data = [replace(p, cid=now[digest], meta={k: v for k, v in p.meta.items() if k != "prev"})
                for p in data if (digest := p.parsed_cid.multihash) in now]
    return Plan(label=label, head=head, versions=1 if current_only else len(chain), index=index_pins, data=data)


def _data_pins(index: Index, chain: list[tuple[CID, Commit]], tags: tuple[str, ...]) -> Iterator[Pin]:
    seen: set[bytes] = set()  # multihashes already pinned
    followed: set[bytes] = set()  # ... and those a later pin names as meta.prev already
    last: dict[str, tuple[str, bytes]] = {}  # key -> its newest data pin (CID, multihash)
    counts: dict[str, int] = {}  # key -> its data pins so far
    previous = None
    for cid, commit in chain:
        root = index.load_root(commit.index)
        if previous is None:
            changed: Iterable[tuple[str, Entry]] = index.entries(root)
        else:
            changed = ((c.key, c.new) for c in index.diff(previous, root) if c.new is not None)
        previous = root
        for key, entry in changed:
            if entry.data is None:
                continue
            digest = CID.parse(entry.data).multihash
            if digest in seen:
                continue
            seen.add(digest)
            meta: dict[str, str | tuple[str, ...]] = {"halodb:key": key}
            if entry.path is not None:
                meta["halodb:path"] = entry.path
            meta["halodb:since"] = format_time(commit.time)
            before = last.get(key)
            if before is not None and before[1] not in followed:
                meta["prev"] = before[0]
                followed.add(before[1])
            if tags:
                meta["tags"] = tags
            n = counts.get(key, 0)
            counts[key] = n + 1
            last[key] = (entry.data, digest)
            yield Pin(entry.data, _name(f"{key} v{n}"), meta=meta)


def _name(text: str) -> str:
    """A pin name within the API's limit (cut in the middle, keeping the version at the end)."""
    if len(text) <= MAX_NAME:
        return text
    return text[: MAX_NAME // 2 - 1] + "…" + text[-(MAX_NAME - MAX_NAME // 2):]
