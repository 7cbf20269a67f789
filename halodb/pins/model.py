"""The IPFS Pinning Service API's ``Pin`` object, as HaloDB plans, lists and sends them.

A pin asks a node to keep a DAG: ``cid`` (kept as spelled), an optional ``name`` (at most
255 characters), ``origins`` (multiaddrs known to hold the data, at most 20) and ``meta``
(string keys; the API's values are strings, and ORCESTRA's ``pinlist.yaml`` also uses a list
of strings for ``tags``, so a value may be either). Anything from outside is checked by
:meth:`Pin.from_json`, which names the entry that was wrong.

>>> pin = Pin.from_json({"cid": "QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm", "name": "ORCESTRA HEAD v0",
...                      "meta": {"tags": ["all"]}})
>>> pin.name, pin.tags, pin.to_json()["meta"]
('ORCESTRA HEAD v0', ('all',), {'tags': ['all']})
>>> Pin.from_json({"cid": "Qm-not-a-cid"}, where="pinlist.yaml entry 3")
Traceback (most recent call last):
...
halodb.errors.PinListError: pinlist.yaml entry 3: 'cid' is not a CID: 'Qm-not-a-cid'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from halodb.errors import CIDError, PinListError
from halodb.ipld import CID

__all__ = ["MAX_META", "MAX_NAME", "MAX_ORIGINS", "STATUSES", "Pin"]

MAX_NAME = 255  #: characters in a pin's name (the API's limit)
MAX_ORIGINS = 20  #: multiaddrs in ``origins`` (the API's limit)
MAX_META = 1000  #: keys in ``meta`` (the API's limit)
MAX_META_TEXT = 4096  #: characters in one meta key or value (HaloDB's bound on input)
STATUSES = ("queued", "pinning", "pinned", "failed")  #: a pin request's states in the API

_FIELDS = frozenset({"cid", "name", "origins", "meta"})
MetaValue = str | tuple[str, ...]


@dataclass(frozen=True)
class Pin:
    """One pin: what to keep (``cid``), under which ``name``, with which ``meta``."""

    cid: str
    name: str | None = None
    origins: tuple[str, ...] = ()
    meta: Mapping[str, MetaValue] = field(default_factory=dict, hash=False, compare=True)

    @property
    def parsed_cid(self) -> CID:
        return CID.parse(self.cid)

    @property
    def prev(self) -> str | None:
        """``meta.prev``: the CID of the entry this one follows (ORCESTRA's HEAD chain)."""
        value = self.meta.get("prev")
        return value if isinstance(value, str) else None

    @property
    def tags(self) -> tuple[str, ...]:
        """``meta.tags`` as a tuple (a list, or a comma-separated string as the API carries it)."""
        value = self.meta.get("tags")
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(t for t in (part.strip() for part in value.split(",")) if t)
        return value

    def to_json(self, *, strings_only: bool = False) -> dict[str, Any]:
        """The Pin object as JSON (the order of the API's schema). ``strings_only``: the API's
        form, every meta value a string (a list joined with commas)."""
        out: dict[str, Any] = {"cid": self.cid}
        if self.name is not None:
            out["name"] = self.name
        if self.origins:
            out["origins"] = list(self.origins)
        if self.meta:
            out["meta"] = {k: (",".join(v) if strings_only else list(v)) if isinstance(v, tuple) else v
                           for k, v in self.meta.items()}
        return out

    @classmethod
    def from_json(cls, value: Any, *, where: str = "pin", entry: int | None = None) -> Pin:
        """Check a Pin object from outside; :class:`PinListError` naming ``where`` (and carrying
        ``entry``, its place in a list) and the field."""

        def fail(message: str) -> PinListError:
            return PinListError(f"{where}: {message}", source=where, entry=entry)

        if not isinstance(value, dict):
            raise fail(f"a pin is a mapping with 'cid', not {type(value).__name__}")
        unknown = sorted(map(str, value.keys() - _FIELDS))
        if unknown:
            raise fail(f"unknown field(s) {', '.join(map(repr, unknown))} (a pin has cid, name, origins, meta)")
        cid = value.get("cid")
        if not isinstance(cid, str):
            raise fail("'cid' is missing or not text")
        _check_cid(cid, "'cid'", fail)
        name = value.get("name")
        if name is not None and not isinstance(name, str):
            raise fail("'name' is not text")
        if name is not None and len(name) > MAX_NAME:
            raise fail(f"'name' is longer than {MAX_NAME} characters")
        origins = value.get("origins") or []
        if not isinstance(origins, list) or not all(isinstance(o, str) and o.startswith("/") for o in origins):
            raise fail("'origins' is not a list of multiaddrs (/ip4/..., /dns/...)")
        if len(origins) > MAX_ORIGINS or len(set(origins)) != len(origins):
            raise fail(f"'origins' holds more than {MAX_ORIGINS} multiaddrs, or one twice")
        return cls(cid=cid, name=name, origins=tuple(origins), meta=_check_meta(value.get("meta"), fail))


def _check_meta(meta: Any, fail: Any) -> dict[str, MetaValue]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise fail("'meta' is not a mapping")
    if len(meta) > MAX_META:
        raise fail(f"'meta' has more than {MAX_META} keys")
    out: dict[str, MetaValue] = {}
    for key, item in meta.items():
        if not isinstance(key, str) or len(key) > MAX_META_TEXT:
            raise fail(f"'meta' key {str(key)[:60]!r} is not text (or longer than {MAX_META_TEXT} characters)")
        if isinstance(item, str) and len(item) <= MAX_META_TEXT:
            out[key] = item
        elif (isinstance(item, list) and len(item) <= MAX_META
              and all(isinstance(x, str) and len(x) <= MAX_META_TEXT for x in item)):
            out[key] = tuple(item)
        else:
            raise fail(f"'meta.{key}' is not text or a list of text")
    if "prev" in out:
        prev = out["prev"]
        if not isinstance(prev, str):
            raise fail("'meta.prev' is not a CID")
        _check_cid(prev, "'meta.prev'", fail)
    return out


def _check_cid(text: str, field: str, fail: Any) -> None:
    try:
        CID.parse(text)
    except CIDError:
        raise fail(f"{field} is not a CID: {text[:100]!r}") from None
