"""Where a dataset's bytes are: a ``halodb://`` URL, or a key or path with a name and a date,
to the data CID the index held for it then, and the path inside that CID.

``halodb://NAME[@DATE-TIME|@COMMIT]/KEY_OR_PATH[/INNER]`` names one dataset of NAME (a local
name, a DNSLink domain, ``ipns://``… as everywhere a name is taken) as of a time (the version
current then) or a commit, and optionally a file inside it. ``KEY_OR_PATH`` is a dataset key
(``collection/id``) or its path in the campaign tree; as both contain slashes, the longest
leading part of the path that names a dataset is the dataset and the rest is the inner path.

>>> parse_url("halodb://latest.orcestra-campaign.org@2024-09-15/products/x.zarr/.zattrs")
Target(name='latest.orcestra-campaign.org', at='2024-09-15', path='products/x.zarr/.zattrs')
>>> parse_url("halodb://HEAD/halo/f1")
Target(name='HEAD', at=None, path='halo/f1')

An IPNS name is written ``ipns:NAME`` there (a URL's authority holds no slashes), a DNSLink
domain may be written ``dnslink:DOMAIN``:

>>> parse_url("halodb://ipns:k51qzi5uqu5dl@2024-09-15/x.zarr").name
'ipns://k51qzi5uqu5dl'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from halodb.api import Registry
from halodb.errors import BlockNotFoundError, CIDError, InputError, UnknownKeyError
from halodb.ipld import CID
from halodb.scan.roots import parse_root
from halodb.stac.items import data_location
from halodb.util.times import format_time

__all__ = ["Located", "Target", "by_cid", "is_cid_url", "locate", "parse_url", "split_path"]

SCHEME = "halodb://"


@dataclass(frozen=True)
class Target:
    """A parsed ``halodb://`` URL: the name, the version (a time or a commit, as written) and
    the path after them."""

    name: str
    at: str | None
    path: str

    @property
    def ref(self) -> str:
        """The version reference (``NAME``, ``NAME@TIME``; a commit CID alone)."""
        if self.at is None:
            return self.name
        return self.at if _is_cid(self.at) else f"{self.name}@{self.at}"


def parse_url(url: str) -> Target:
    """Split a ``halodb://`` URL (or the same without the scheme, as fsspec hands paths)."""
    rest = url[len(SCHEME):] if url.startswith(SCHEME) else url
    authority, _, path = rest.lstrip("/").partition("/")
    name, sep, at = authority.partition("@")
    if not name or (sep and not at) or name in ("ipns:", "dnslink:"):
        hint = " (an IPNS name goes in as halodb://ipns:K51…/KEY_OR_PATH, a DNSLink name as it is)" if name in (
            "ipns:", "dnslink:") else ""
        raise InputError(f"{url!r}: expected halodb://NAME[@DATE-TIME|@COMMIT]/KEY_OR_PATH{hint}", source=url)
    if name.startswith("ipns:"):  # an IPNS name in the URL's authority: ipns:KEY (no slashes there)
        name = "ipns://" + name[len("ipns:"):]
    return Target(name, at or None, path.strip("/"))


@dataclass(frozen=True)
class Located:
    """One dataset at one version: what the index says, and where its bytes are."""

    key: str
    item: dict[str, Any]
    commit: CID
    commit_time: datetime
    data_cid: str  #: the CID the data lives under (a dataset, or a tree holding it)
    data_path: str  #: the dataset's path inside :attr:`data_cid` ("" when the CID is the dataset)
    inner: str = ""  #: the path asked for inside the dataset

    @property
    def attrs(self) -> dict[str, str]:
        """Provenance, as attributes for the opened dataset."""
        return {"halodb:key": self.key, "halodb:commit": str(self.commit), "halodb:data_cid": self.data_cid,
                "halodb:version_time": format_time(self.commit_time)}


def locate(reg: Registry, key_or_path: str, ref: str | CID = "HEAD", *, inner: bool = False,
           asked: str | None = None) -> Located:
    """The dataset ``key_or_path`` names at version ``ref``. With ``inner``, ``key_or_path``
    may go on inside the dataset: the longest leading part naming a dataset is taken, and the
    rest is :attr:`Located.inner`. ``asked``: how the user named the version, when ``ref`` is
    what it resolved to (``latest@2024-09-15``; errors name it).

    Errors name what was asked: :class:`~halodb.errors.UnknownKeyError` for no such dataset
    then (with the version), :class:`~halodb.errors.NameNotFoundError` for a time before
    the name's first version, and :class:`~halodb.errors.InputError` for a dataset with no
    data on IPFS.
    """
    commit, record = reg.version(ref)
    wanted = key_or_path.strip("/")
    parts = wanted.split("/")
    for n in range(len(parts), 0, -1) if inner else (len(parts),):
        try:
            key, entry, item = reg.get("/".join(parts[:n]), commit)
        except UnknownKeyError:
            continue
        break
    else:
        # zarr asks for the store's metadata files first: name the dataset asked, not them
        named = "/".join(parts[:-1]) if inner and len(parts) > 1 and parts[-1] in ZARR_METADATA else wanted
        raise UnknownKeyError(f"no dataset {named!r} in {_describe(ref if asked is None else asked)} (commit {commit}, "
                              f"{format_time(record.time)})", key=named)
    where = data_location(item)
    data_cid = entry.data or (where[0] if where else None)
    if data_cid is None:
        raise InputError(f"{key}: the dataset has no data on IPFS (no ipfs:// asset) in commit {commit}", source=key)
    data_path = where[1] if where is not None and where[0] == data_cid else ""
    return Located(key, item, commit, record.time, data_cid, data_path, "/".join(parts[n:]))


#: the files zarr (v2, v3, consolidated) reads first at a store's root
ZARR_METADATA = frozenset({".zgroup", ".zattrs", ".zarray", ".zmetadata", "zarr.json"})


def split_path(located: Located) -> str:
    """The path inside :attr:`Located.data_cid` of what was asked (the dataset, or a file in it)."""
    return "/".join(p for p in (located.data_path, located.inner) if p)


def _describe(ref: str | CID) -> str:
    return f"version {ref}" if isinstance(ref, CID) else repr(ref)


def _is_cid(text: str) -> bool:
    try:
        CID.parse(text)
    except (CIDError, ValueError):
        return False
    return True


def is_cid_url(text: str) -> bool:
    """Whether ``text`` names bytes by their CID (``ipfs://CID[/PATH]`` or ``/ipfs/CID[/PATH]``).

    >>> is_cid_url("ipfs://bafy.../x.zarr"), is_cid_url("halodb://latest/x.zarr")
    (True, False)
    """
    return text.startswith(("ipfs://", "/ipfs/"))


def by_cid(text: str, *, versioned: bool = False) -> tuple[str, str]:
    """``(CID, PATH)`` of ``ipfs://CID[/PATH]``; ``versioned`` says a time, a name or a version
    was given as well, which bytes by their CID cannot have (an :class:`InputError`).

    >>> by_cid("ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq/a/b")
    ('bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq', 'a/b')
    """
    if versioned:
        raise InputError(f"{text!r} names bytes by their CID: it has no versions; drop the time, name or version",
                         source=text)
    root = parse_root(text)
    if root.cid is None:
        raise InputError(f"{text!r}: expected ipfs://CID[/PATH]", source=text)
    return str(root.cid), root.subpath


def not_in_this_home(exc: BlockNotFoundError, reg: Registry, how: str) -> BlockNotFoundError:
    """``exc`` (a block of a dataset's data missing) as the reader should see it: when the home
    reads from its own blocks only, the data is not in it, and ``how`` says how to read it from
    IPFS (``--store URL`` on the command line, ``store="URL"`` in Python); else ``exc``."""
    if reg.store.is_remote or reg.store.is_remote_backed:
        return exc
    return BlockNotFoundError(f"{exc}: the dataset's data is not in this home; read it through a gateway or a "
                              f"Kubo node ({how})", cid=exc.cid)
