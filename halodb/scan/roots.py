"""What ``halodb scan ROOT`` and ``halodb check CID`` accept as a tree on IPFS.

A root is a CID (``bafy...``, ``Qm...``), ``ipfs://CID[/sub/path]`` or
``/ipfs/CID[/sub/path]``, or a name (``latest.orcestra-campaign.org``,
``dnslink:DOMAIN``, ``ipns://NAME``, ``/ipns/NAME``, a local name), optionally followed by
``/sub/path``. Names go through a resolver (the registry's name router); a name there
normally points at a HaloDB commit, but a DNSLink or IPNS name of a campaign may just as
well point at the campaign's root folder, which is what a scan wants.

>>> spec = parse_root("ipfs://bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354/products/HALO/")
>>> (str(spec.cid)[:12], spec.name, spec.subpath)
('bafybeiczssc', None, 'products/HALO')
>>> parse_root("ipns://latest.orcestra-campaign.org/products")[1:]
('ipns://latest.orcestra-campaign.org', 'products')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from halodb.blockstore.base import BlockStore
from halodb.errors import CIDError, InputError
from halodb.ipld import CID, DAG_PB
from halodb.unixfs.tree import DIR, UnixFSTree


class RootSpec(NamedTuple):
    """A parsed root: exactly one of ``cid`` and ``name``, and the path below it (no slashes at the ends)."""

    cid: CID | None
    name: str | None
    subpath: str


class Root(NamedTuple):
    """A resolved root: the folder (or dataset) CID to read, and how it was reached."""

    cid: CID  #: the CID at ``top``/``subpath``
    top: CID  #: the CID the text or name named
    subpath: str
    name: str | None


def _clean_subpath(text: str, source: str) -> str:
    parts = [p for p in text.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InputError(f"{source!r}: '.' and '..' are not allowed in a path on IPFS", source=source)
    return "/".join(parts)


def parse_root(text: str) -> RootSpec:
    """Split ``text`` into a CID or a name and a sub-path; :class:`InputError` when it is neither."""
    raw = text.strip()
    if not raw:
        raise InputError("empty root: give a CID, ipfs://CID/path or a name", source=text)
    if "@" in raw:
        raise InputError(f"{raw!r}: a scan root is a folder, not a version at a time (NAME@TIME)", source=text)
    for prefix in ("ipfs://", "/ipfs/"):
        if raw.startswith(prefix):
            first, _, rest = raw[len(prefix):].partition("/")
            try:
                return RootSpec(CID.parse(first), None, _clean_subpath(rest, raw))
            except CIDError as exc:
                raise InputError(f"{raw!r}: {exc}", source=text) from None
    for prefix, scheme in (("ipns://", "ipns://"), ("/ipns/", "ipns://"), ("dnslink:", "dnslink:")):
        if raw.lower().startswith(prefix):
            first, _, rest = raw[len(prefix):].partition("/")
            if not first:
                raise InputError(f"{raw!r}: no name after {prefix}", source=text)
            return RootSpec(None, scheme + first, _clean_subpath(rest, raw))
    first, _, rest = raw.partition("/")
    try:
        cid = CID.parse(first)
    except CIDError:
        return RootSpec(None, first, _clean_subpath(rest, raw))
    return RootSpec(cid, None, _clean_subpath(rest, raw))


def resolve_root(store: BlockStore, text: str, resolve_name: Callable[[str], CID] | None = None) -> Root:
    """Resolve ``text`` to the UnixFS node to read through ``store``.

    ``resolve_name`` turns a name into a CID (e.g. ``registry.names.resolve(n).cid``);
    without it only CIDs are accepted. A name pointing at something that is no UnixFS
    folder (a HaloDB commit, say) and a sub-path that does not exist raise
    :class:`InputError` naming both.
    """
    spec = parse_root(text)
    if spec.cid is not None:
        top = spec.cid
    elif resolve_name is None:
        raise InputError(f"{text!r}: not a CID, and names cannot be resolved here", source=text)
    else:
        assert spec.name is not None
        top = resolve_name(spec.name)
        if top.codec != DAG_PB:
            what = "a HaloDB commit or other IPLD data" if top.codec != 0x55 else "a raw block"
            raise InputError(f"{spec.name} points at {top}, {what}, not a UnixFS folder: a scan root is the "
                             "campaign's data folder (the CID `ipfs add -r` or `halodb tree build` printed)",
                             source=text)
    cid = top
    if spec.subpath:
        found = UnixFSTree(store, top).resolve(spec.subpath)
        if found is None:
            raise InputError(f"{text!r}: nothing at {spec.subpath!r} under {top}", source=text)
        cid = found
    return Root(cid, top, spec.subpath, spec.name)


def is_folder(store: BlockStore, cid: CID) -> bool:
    """Whether ``cid`` is a UnixFS folder (plain or HAMT-sharded)."""
    tree = UnixFSTree(store, cid)
    return tree.node(cid).kind == DIR


__all__ = ["Root", "RootSpec", "is_folder", "parse_root", "resolve_root"]
