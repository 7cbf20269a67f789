"""Pin lists: ORCESTRA's ``pinlist.yaml``, a YAML list of Pin objects, read and written.

Reading checks every entry (:meth:`Pin.from_json`) and the list as a whole: no CID pinned
twice, no name given twice (unless ``allow_duplicate_names``: ORCESTRA's own list names three
entries "ORCESTRA HEAD v14"), and every ``meta.prev`` chain intact: it names the CID of
another entry, no entry is followed by two, and no chain comes back on itself. CIDs are
compared by multihash, so ``Qm…`` and its ``bafy…`` spelling are one CID. Every error is a
:class:`~halodb.errors.PinListError` naming the file and the 1-based entry.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "pinlist.yaml"
>>> a, b = "QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm", "QmRpRyRX75cauJKMPSTHMrwJQpNCKLayQJScm29VMVZjkb"
>>> _ = path.write_text(dump_pinlist([Pin(a, "HEAD v0"), Pin(b, "HEAD v1", meta={"prev": a})]))
>>> [p.name for p in load_pinlist(path)]
['HEAD v0', 'HEAD v1']
>>> _ = path.write_text(dump_pinlist([Pin(b, "HEAD v1", meta={"prev": a})]))
>>> load_pinlist(path)
Traceback (most recent call last):
...
halodb.errors.PinListError: ...pinlist.yaml: entry 1 ('HEAD v1'): broken chain: meta.prev QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm is the CID of no entry
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from halodb.campaign import load_yaml
from halodb.errors import PinListError
from halodb.pins.model import Pin
from halodb.util.oserrors import describe_os_error

__all__ = ["MAX_PINLIST_BYTES", "chains", "check_pinlist", "dump_pinlist", "load_pinlist"]

MAX_PINLIST_BYTES = 256 << 20  #: a larger pin list file is refused before it is parsed


def load_pinlist(path: str | Path, *, allow_duplicate_names: bool = False) -> list[Pin]:
    """Read and check a pin list file (see the module docstring)."""
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise PinListError(f"{path}: {describe_os_error(exc)}", source=str(path)) from None
    if size > MAX_PINLIST_BYTES:
        raise PinListError(f"{path}: {size} bytes, more than a pin list may have ({MAX_PINLIST_BYTES})",
                           source=str(path))
    value = load_yaml(path, what="pin list")
    if value is None or value == []:
        raise PinListError(f"{path}: holds no pins (a pin list is a YAML list of pins: cid, name, meta)",
                           source=str(path))
    if not isinstance(value, list):
        raise PinListError(f"{path}: a pin list is a YAML list of pins (cid, name, meta), not a "
                           f"{type(value).__name__}", source=str(path))
    pins = [Pin.from_json(entry, where=f"{path}: entry {n}", entry=n) for n, entry in enumerate(value, 1)]
    check_pinlist(pins, source=str(path), allow_duplicate_names=allow_duplicate_names)
    return pins


def check_pinlist(pins: Sequence[Pin], *, source: str = "pin list", allow_duplicate_names: bool = False) -> None:
    """Check a list as a whole: unique CIDs and names, intact ``meta.prev`` chains."""

    def fail(n: int, message: str) -> PinListError:
        label = f" ({pins[n - 1].name!r})" if pins[n - 1].name is not None else ""
        return PinListError(f"{source}: entry {n}{label}: {message}", source=source, entry=n, cid=pins[n - 1].cid)

    by_hash: dict[bytes, int] = {}
    by_name: dict[str, int] = {}
    for n, pin in enumerate(pins, 1):
        digest = pin.parsed_cid.multihash
        if digest in by_hash:
            raise fail(n, f"pins {pin.cid}, which entry {by_hash[digest]} pins already")
        by_hash[digest] = n
        if pin.name is not None and not allow_duplicate_names:
            if pin.name in by_name:
                raise fail(n, f"has the name of entry {by_name[pin.name]}: names must be unique")
            by_name[pin.name] = n
    followed_by: dict[int, int] = {}
    for n, pin in enumerate(pins, 1):
        if pin.prev is None:
            continue
        before = by_hash.get(Pin(pin.prev).parsed_cid.multihash)
        if before is None:
            raise fail(n, f"broken chain: meta.prev {pin.prev} is the CID of no entry")
        if before == n:
            raise fail(n, "broken chain: meta.prev is its own CID")
        if before in followed_by:
            raise fail(n, f"broken chain: entry {followed_by[before]} follows entry {before} already")
        followed_by[before] = n
    for start in range(1, len(pins) + 1):  # a chain that comes back on itself has no first entry
        n, steps = start, 0
        while (prev := pins[n - 1].prev) is not None:
            n = by_hash[Pin(prev).parsed_cid.multihash]
            steps += 1
            if steps > len(pins):
                raise fail(start, "broken chain: following meta.prev comes back to this entry (a cycle)")


def chains(pins: Sequence[Pin]) -> list[list[Pin]]:
    """The ``meta.prev`` chains of a checked list, each oldest first (an entry on no chain is a
    chain of one)."""
    index = {p.parsed_cid.multihash: p for p in pins}
    followed = {index[Pin(p.prev).parsed_cid.multihash].cid for p in pins if p.prev is not None}
    out = []
    for pin in pins:
        if pin.cid in followed:
            continue  # not the newest of its chain
        chain = [pin]
        while chain[-1].prev is not None:
            chain.append(index[Pin(chain[-1].prev).parsed_cid.multihash])
        out.append(chain[::-1])
    return out


def dump_pinlist(pins: Iterable[Pin]) -> str:
    """The YAML text of a pin list, in ORCESTRA's form (``cid``, ``name``, ``meta``: ``prev``, ``tags``)."""
    return yaml.safe_dump([p.to_json() for p in pins], sort_keys=False, allow_unicode=True, width=1 << 16)
