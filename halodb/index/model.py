"""The values stored in the index DAG, as typed Python objects.

See ``schemas/halodb.ipldsch`` for the IPLD schema these map to.

>>> e = Entry(item=CID.for_bytes(b"{}"), data="QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", path="products/x.zarr")
>>> Entry.from_ipld(e.to_ipld(), cid=None) == e
True
>>> small = Entry.from_ipld({"item": b"\\xa0"}, cid=None)  # an inline item: its CID is computed
>>> small.item == CID.for_bytes(b"\\xa0"), small.inline
(True, b'\\xa0')
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any, Protocol, runtime_checkable

from halodb.errors import SchemaError
from halodb.ipld import CID, DAG_CBOR
from halodb.util.doi import is_normal_doi
from halodb.util.times import format_time, parse_time


#: Index format 3: an item whose DAG-CBOR encoding takes at most this many bytes is held in
#: its dataset entry (``inline``), a larger one is linked. Part of the format: the rule that
#: makes the same datasets give the same blocks.
INLINE_MAX = 2048


@dataclass(frozen=True, slots=True)
class Entry:
    """One dataset in the index: its STAC item, data CID, path in the campaign tree and DOI
    (the item's ``sci:doi``, lower-case: :func:`halodb.util.doi.normalize_doi`).

    ``item`` is the CID of the item's DAG-CBOR block. In index format 3 a small item
    (:data:`INLINE_MAX`) travels in the entry itself: ``inline`` holds the block's bytes,
    and ``item`` is their CID, computed, not a block of the DAG. Two entries with the same
    ``item`` hold the same bytes, so ``inline`` takes no part in comparisons.
    """

    item: CID
    data: str | None = None
    path: str | None = None
    doi: str | None = None
    inline: bytes | None = field(default=None, compare=False)

    def to_ipld(self) -> dict[str, Any]:
        return self.to_ipld_holding(self.inline)

    def to_ipld_holding(self, inline: bytes | None) -> dict[str, Any]:
        """:meth:`to_ipld` of this entry holding ``inline`` (the item's bytes; None: linked)
        instead of :attr:`inline`, without making that entry first."""
        out: dict[str, Any] = {"item": self.item if inline is None else inline}
        if self.data is not None:
            out["data"] = self.data
        if self.path is not None:
            out["path"] = self.path
        if self.doi is not None:
            out["doi"] = self.doi
        return out

    @classmethod
    def from_ipld(cls, value: Any, *, cid: CID | None, inline: bool = True) -> Entry:
        """The entry of a leaf of the tree ``cid``; ``inline``: whether its format (3) allows
        inline items (at most :data:`INLINE_MAX` bytes; a larger one must be linked)."""
        item = value.get("item") if isinstance(value, dict) else None
        held: bytes | None = None
        if type(item) is bytes:
            if not inline:
                raise SchemaError(f"dataset entry in block {cid} holds its item inline, which only index "
                                  "format 3 allows", cid=cid)
            if not 0 < len(item) <= INLINE_MAX:
                raise SchemaError(f"dataset entry in block {cid} holds an item of {len(item)} bytes inline; "
                                  f"inline items take 1 to {INLINE_MAX} bytes, larger ones are linked", cid=cid)
            held, item = item, CID.for_bytes(item, DAG_CBOR)
        elif not isinstance(item, CID):
            raise SchemaError(f"dataset entry in block {cid} is not {{item: Link or Bytes, ...}}: {str(value)[:200]}",
                              cid=cid)
        data = value.get("data")
        path = value.get("path")
        if data is not None and not isinstance(data, str):
            raise SchemaError(f"dataset entry 'data' in block {cid} is not a string", cid=cid)
        if path is not None and not isinstance(path, str):
            raise SchemaError(f"dataset entry 'path' in block {cid} is not a string", cid=cid)
        doi = value.get("doi")
        if doi is not None and not is_normal_doi(doi):
            raise SchemaError(f"dataset entry 'doi' in block {cid} is not a lower-case DOI", cid=cid)
        return cls(item=item, data=data, path=path, doi=doi, inline=held)


_STR_OR_NONE: set[type] = {str, type(None)}
_NONE_ONLY: set[type] = {type(None)}


#: the fields of a dataset entry's map (what :meth:`Entry.from_ipld` reads)
ENTRY_FIELDS = ["item", "data", "path", "doi"]


def inline_entry_columns(values: list[Any]) -> tuple[list[bytes], list[str | None], list[str | None]] | None:
    """The fast path of :meth:`Entry.from_ipld` for the values of one format-3 leaf whose
    entries all hold their item inline: their items' bytes, data CIDs and paths as columns,
    checked as ``from_ipld`` checks them (:func:`inline_columns`). None when any entry is
    not such an entry (take ``from_ipld`` one by one: it says what is wrong, or reads a
    linked item). The items' CIDs are not computed here.

    >>> inline_entry_columns([{"item": b"\\xa0", "path": "p"}])
    ([b'\\xa0'], [None], ['p'])
    >>> inline_entry_columns([{"item": b"\\xa0", "doi": "10.1/X"}]) is None
    True
    """
    if set(map(type, values)) != {dict}:
        return None
    items, data, paths, dois = (list(map(dict.get, values, repeat(name))) for name in ENTRY_FIELDS)
    return inline_columns(items, data, paths, dois)


def inline_columns(items: list[Any], data: list[Any], paths: list[Any], dois: list[Any]
                   ) -> tuple[list[bytes], list[str | None], list[str | None]] | None:
    """The columns of a leaf's entries (one value per entry of each of :data:`ENTRY_FIELDS`,
    None where absent) when every entry holds its item inline and is one that
    :meth:`Entry.from_ipld` takes — a column at a time, in C loops — as ``(items, data,
    paths)``; else None. A DOI is checked, not returned (the cache does not hold it).

    >>> inline_columns([b"\\xa0"], [None], ["p"], ["10.1234/x"])
    ([b'\\xa0'], [None], ['p'])
    >>> inline_columns([b"\\xa0"], [None], ["p"], ["10.1234/X"]) is None
    True
    """
    if set(map(type, items)) != {bytes} or not 0 < min(map(len, items)) or max(map(len, items)) > INLINE_MAX:
        return None
    if not set(map(type, data)) <= _STR_OR_NONE or not set(map(type, paths)) <= _STR_OR_NONE:
        return None
    if set(map(type, dois)) != _NONE_ONLY and not all(doi is None or is_normal_doi(doi) for doi in dois):
        return None
    return items, data, paths


@dataclass(frozen=True, slots=True)
class EntryBatch:
    """Dataset entries in strictly increasing key order, as columns: how a build of many
    (:meth:`~halodb.index.index.Index.build_sorted`) reads them without an :class:`Entry`
    each. ``items``: each item's binary CID; ``held``: its bytes (None: in the block store),
    which the batch's maker has checked against that CID.

    >>> cid = CID.for_bytes(b"\\xa0")
    >>> batch = EntryBatch(["c/a"], [cid.buffer], [None], ["p/a"], [None], [b"\\xa0"])
    >>> [(k, e.item == cid, e.path, e.inline) for k, e in batch.entries()]
    [('c/a', True, 'p/a', b'\\xa0')]
    """

    keys: Sequence[str]
    items: Sequence[bytes]
    data: Sequence[str | None]
    paths: Sequence[str | None]
    dois: Sequence[str | None]
    held: Sequence[bytes | None]

    def entry(self, row: int) -> Entry:
        """The entry of row ``row`` (its item's CID parsed: :class:`~halodb.errors.CIDError`)."""
        return Entry(CID.parse(self.items[row]), self.data[row], self.paths[row], self.dois[row],
                     inline=self.held[row])

    def entries(self) -> Iterator[tuple[str, Entry]]:
        """``(key, entry)`` of each row."""
        return ((key, self.entry(row)) for row, key in enumerate(self.keys))


@runtime_checkable
class EntryBatches(Protocol):
    """A source of :class:`EntryBatch` es, in key order (each read once)."""

    def batches(self) -> Iterator[EntryBatch]: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two versions of a tree: ``old`` None = added, ``new`` None = removed."""

    key: str
    old: Any
    new: Any

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


@dataclass(frozen=True, slots=True)
class IndexRoot:
    """The roots of the trees that make one version of the index.

    Format 3 (``inline_items``, what HaloDB writes now): small items travel inline in their
    dataset entries (:data:`INLINE_MAX`) and the trees have larger leaves
    (:mod:`halodb.index.index`); ``by_doi`` is optional. Before it, a root without DOIs was
    ``version`` 1 (no ``by_doi`` field) and one with DOIs ``version`` 2, every item linked.
    A reader takes all three, and refuses a version it does not know.

    >>> e = CID.for_bytes(b"x")
    >>> [IndexRoot(e, e, e, 0).to_ipld()["version"], IndexRoot(e, e, e, 1, by_doi=e).to_ipld()["version"],
    ...  IndexRoot(e, e, e, 1, inline_items=True).to_ipld()["version"]]
    [1, 2, 3]
    """

    datasets: CID  #: key -> Entry
    by_path: CID  #: path -> key
    by_data: CID  #: "<data cid>/<key>" -> null
    count: int  #: number of datasets: the entries of ``datasets``, and a bound on those of the other trees
    by_doi: CID | None = None  #: DOI -> key (None: no dataset has a DOI)
    inline_items: bool = False  #: format 3: small items inline, larger leaves

    @property
    def version(self) -> int:
        if self.inline_items:
            return 3
        return 1 if self.by_doi is None else 2

    def to_ipld(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "halodb/index",
            "version": self.version,
            "datasets": self.datasets,
            "by_path": self.by_path,
            "by_data": self.by_data,
            "count": self.count,
        }
        if self.by_doi is not None:
            out["by_doi"] = self.by_doi
        return out

    @classmethod
    def from_ipld(cls, value: Any, *, cid: CID | None) -> IndexRoot:
        if not isinstance(value, dict) or value.get("type") != "halodb/index":
            raise SchemaError(f"block {cid} is not a HaloDB index root", cid=cid)
        version = value.get("version", 1)
        if type(version) is not int or version not in (1, 2, 3):
            raise SchemaError(f"index root {cid} has version {version!r}; this HaloDB reads versions 1 to 3 "
                              "(a newer HaloDB wrote it?)", cid=cid)
        try:
            roots = {k: value[k] for k in ("datasets", "by_path", "by_data")}
            count = value["count"]
        except KeyError as exc:
            raise SchemaError(f"index root {cid} lacks field {exc}", cid=cid) from None
        by_doi = value.get("by_doi")
        if not all(isinstance(v, CID) for v in roots.values()) or type(count) is not int or not (
                by_doi is None or isinstance(by_doi, CID)):
            raise SchemaError(f"index root {cid} has fields of the wrong kind", cid=cid)
        if count < 0:
            raise SchemaError(f"index root {cid} declares {count} datasets", cid=cid)
        return cls(count=count, by_doi=by_doi, inline_items=version == 3, **roots)


MAX_SIGNATURES = 16  #: signatures one commit may carry
MAX_KEY_CHANGES = 64  #: keys one commit may add, and retire


@dataclass(frozen=True, slots=True)
class Signature:
    """An Ed25519 signature by ``key`` (a ``did:key``) over a commit's signed bytes."""

    key: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """Keys a signed commit adds to, or retires from, those allowed to sign later versions."""

    add: tuple[str, ...] = ()
    retire: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Commit:
    """One version in the history: ``{parents, index, time, author, message}``.

    Format version 2 adds ``signatures`` (see :mod:`halodb.index.signing`), ``keys`` (key
    changes for later versions) and ``tags``. Format version 3 adds ``history`` and
    ``height``: the root of a tree of every earlier version on the main line, keyed by time
    and height (:mod:`halodb.index.timeline`), so that the version current at a date is
    found in O(log n) blocks; ``height`` is the number of versions before this one. A
    commit with none of these is written as version 1, with no history as version 2.
    """

    index: CID
    time: datetime
    author: str
    message: str
    parents: tuple[CID, ...] = field(default=())
    signatures: tuple[Signature, ...] = field(default=())
    keys: KeyChanges | None = None
    tags: CID | None = None  #: the version's tags block (:class:`Tags`), format version 2
    history: CID | None = None  #: tree of the earlier versions (:mod:`halodb.index.timeline`), format 3
    height: int | None = None  #: versions before this one on the main line, format 3

    @property
    def version(self) -> int:
        if self.history is not None:
            return 3
        return 2 if self.signatures or self.keys is not None or self.tags is not None else 1

    def to_ipld(self, *, signatures: bool = True) -> dict[str, Any]:
        """The block's value; without its ``signatures`` when ``signatures`` is False (the signed bytes)."""
        out: dict[str, Any] = {
            "type": "halodb/commit",
            "version": self.version,
            "parents": list(self.parents),
            "index": self.index,
            "time": format_time(self.time),
            "author": self.author,
            "message": self.message,
        }
        if self.keys is not None:
            out["keys"] = {"add": list(self.keys.add), "retire": list(self.keys.retire)}
        if self.tags is not None:
            out["tags"] = self.tags
        if self.history is not None:
            out["history"] = self.history
            out["height"] = self.height
        if signatures and self.signatures:
            out["signatures"] = [{"key": s.key, "sig": s.sig} for s in self.signatures]
        return out

    @classmethod
    def from_ipld(cls, value: Any, *, cid: CID | None) -> Commit:
        if not isinstance(value, dict) or value.get("type") != "halodb/commit":
            raise SchemaError(f"block {cid} is not a HaloDB commit", cid=cid)
        version = value.get("version", 1)
        if version not in (1, 2, 3) or type(version) is not int:
            raise SchemaError(f"commit {cid} has format version {version!r}; this HaloDB reads versions 1 to 3",
                              cid=cid)
        try:
            parents = value["parents"]
            index = value["index"]
            time = parse_time(value["time"])
            author = value["author"]
            message = value["message"]
        except (KeyError, ValueError, AttributeError) as exc:
            raise SchemaError(f"commit {cid} is malformed: {exc}", cid=cid) from None
        if not isinstance(parents, list) or not all(isinstance(p, CID) for p in parents):
            raise SchemaError(f"commit {cid}: parents must be a list of links", cid=cid)
        if not isinstance(index, CID):
            raise SchemaError(f"commit {cid}: index must be a link", cid=cid)
        if version == 1 and ("signatures" in value or "keys" in value or "tags" in value):
            raise SchemaError(f"commit {cid}: signatures, key changes and tags need format version 2", cid=cid)
        signatures = _signatures(value.get("signatures", []), cid)
        keys = _key_changes(value["keys"], cid) if "keys" in value else None
        tags = value.get("tags")
        if tags is not None and not isinstance(tags, CID):
            raise SchemaError(f"commit {cid}: tags must be a link", cid=cid)
        if version == 2 and not signatures and keys is None and tags is None:
            raise SchemaError(f"commit {cid}: format version 2 without signatures, key changes or tags", cid=cid)
        history, height = value.get("history"), value.get("height")
        if version < 3 and ("history" in value or "height" in value):
            raise SchemaError(f"commit {cid}: a history and a height need format version 3", cid=cid)
        if version == 3:
            if not isinstance(history, CID):
                raise SchemaError(f"commit {cid}: format version 3 needs history, a link", cid=cid)
            if type(height) is not int or not 0 <= height < 10**10:
                raise SchemaError(f"commit {cid}: height must be an integer from 0 to 9999999999, not {height!r}",
                                  cid=cid)
            if (height == 0) != (not parents):
                raise SchemaError(f"commit {cid}: height {height} with {len(parents)} parent(s)", cid=cid)
        return cls(index=index, time=time, author=str(author), message=str(message), parents=tuple(parents),
                   signatures=signatures, keys=keys, tags=tags, history=history, height=height)


#: a tag's name: starts with a letter, so ``NAME@v1.0`` is never read as a time
TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
MAX_TAGS = 10_000  #: tags one tags block may hold


def is_tag_name(text: str) -> bool:
    """Whether ``text`` may name a tag (``v1.0``, ``release-2024``)."""
    return TAG_NAME.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Tag:
    """An immutable, optionally signed name for one commit: ``{tag, target, time, tagger, message}``.

    Signatures cover ``b"halodb-tag:"`` + the block without them (:func:`halodb.index.signing.sign_tag`).

    >>> t = Tag("v1.0", CID.for_bytes(b"c"), parse_time("2024-08-12"), "me", "first release")
    >>> Tag.from_ipld(t.to_ipld(), cid=None) == t
    True
    """

    tag: str
    target: CID
    time: datetime
    tagger: str
    message: str = ""
    signatures: tuple[Signature, ...] = field(default=())

    def to_ipld(self, *, signatures: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "halodb/tag", "version": 1, "tag": self.tag, "target": self.target,
                               "time": format_time(self.time), "tagger": self.tagger, "message": self.message}
        if signatures and self.signatures:
            out["signatures"] = [{"key": s.key, "sig": s.sig} for s in self.signatures]
        return out

    @classmethod
    def from_ipld(cls, value: Any, *, cid: CID | None) -> Tag:
        if not isinstance(value, dict) or value.get("type") != "halodb/tag":
            raise SchemaError(f"block {cid} is not a HaloDB tag", cid=cid)
        if value.get("version") != 1 or type(value.get("version")) is not int:
            raise SchemaError(f"tag {cid} has format version {value.get('version')!r}; this HaloDB reads version 1",
                              cid=cid)
        try:
            name, target, time = value["tag"], value["target"], parse_time(value["time"])
            tagger, message = value["tagger"], value["message"]
        except (KeyError, ValueError, AttributeError, TypeError) as exc:
            raise SchemaError(f"tag {cid} is malformed: {exc}", cid=cid) from None
        if not isinstance(name, str) or not is_tag_name(name):
            raise SchemaError(f"tag {cid}: {str(name)[:80]!r} is not a tag name", cid=cid)
        if not isinstance(target, CID):
            raise SchemaError(f"tag {cid}: target must be a link", cid=cid)
        if not isinstance(tagger, str) or not isinstance(message, str):
            raise SchemaError(f"tag {cid}: tagger and message must be strings", cid=cid)
        return cls(tag=name, target=target, time=time, tagger=tagger, message=message,
                   signatures=_signatures(value.get("signatures", []), cid))


def tags_to_ipld(tags: dict[str, CID]) -> dict[str, Any]:
    """A tags block's value: ``{type: "halodb/tags", tags: {name: &Tag}}``."""
    return {"type": "halodb/tags", "tags": dict(sorted(tags.items()))}


def tags_from_ipld(value: Any, *, cid: CID | None) -> dict[str, CID]:
    """The ``name -> tag block`` map of a tags block; :class:`SchemaError` when malformed."""
    if not isinstance(value, dict) or value.get("type") != "halodb/tags" or not isinstance(value.get("tags"), dict):
        raise SchemaError(f"block {cid} is not a HaloDB tags block", cid=cid)
    tags = value["tags"]
    if len(tags) > MAX_TAGS:
        raise SchemaError(f"tags block {cid} holds more than {MAX_TAGS} tags", cid=cid)
    for name, link in tags.items():
        if not isinstance(name, str) or not is_tag_name(name) or not isinstance(link, CID):
            raise SchemaError(f"tags block {cid}: {str(name)[:80]!r} is not a tag name with a link", cid=cid)
    return dict(tags)


def _dids(value: Any, what: str, cid: CID | None, limit: int) -> tuple[str, ...]:
    from halodb.ipld.didkey import MAX_DID_LENGTH

    if not isinstance(value, list) or len(value) > limit:
        raise SchemaError(f"commit {cid}: {what} must be a list of at most {limit} did:key strings", cid=cid)
    for did in value:
        if not isinstance(did, str) or not did.startswith("did:key:") or len(did) > MAX_DID_LENGTH:
            raise SchemaError(f"commit {cid}: {what} holds {str(did)[:80]!r}, not a did:key", cid=cid)
    return tuple(value)


def _signatures(value: Any, cid: CID | None) -> tuple[Signature, ...]:
    if not isinstance(value, list) or len(value) > MAX_SIGNATURES:
        raise SchemaError(f"commit {cid}: signatures must be a list of at most {MAX_SIGNATURES}", cid=cid)
    out = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"key", "sig"} or not isinstance(entry["sig"], bytes) \
                or len(entry["sig"]) != 64:
            raise SchemaError(f"commit {cid}: a signature must be {{key: did:key, sig: 64 bytes}}", cid=cid)
        out.append(Signature(_dids([entry["key"]], "a signature's key", cid, 1)[0], entry["sig"]))
    return tuple(out)


def _key_changes(value: Any, cid: CID | None) -> KeyChanges:
    if not isinstance(value, dict) or not set(value) <= {"add", "retire"}:
        raise SchemaError(f"commit {cid}: keys must be {{add: [did:key], retire: [did:key]}}", cid=cid)
    return KeyChanges(add=_dids(value.get("add", []), "keys.add", cid, MAX_KEY_CHANGES),
                      retire=_dids(value.get("retire", []), "keys.retire", cid, MAX_KEY_CHANGES))


@dataclass(frozen=True)
class TrustPolicy:
    """Whom a reader trusts to sign a name's versions: ``keys`` (``did:key``) and how many must sign."""

    keys: frozenset[str]
    threshold: int = 1

    def digest(self) -> str:
        """A short hash of the policy: a checkpoint made under another policy does not count."""
        text = json.dumps({"keys": sorted(self.keys), "threshold": self.threshold})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """The last head verified under a policy, and the keys allowed after it."""

    head: str
    keys: frozenset[str]
    policy: str  #: :meth:`TrustPolicy.digest`
    signers: tuple[str, ...] = ()  #: who signed ``head``
