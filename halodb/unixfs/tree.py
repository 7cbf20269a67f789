"""UnixFS trees on IPFS read through a block store, as a :class:`~halodb.filetree.Tree`.

:class:`UnixFSTree` resolves paths through plain and HAMT-sharded directories, lists
folders (fetching the children's root blocks in one ``get_many`` batch to tell folders
from files and to learn file sizes), and reads byte ranges of files by walking the
``blocksizes`` of the file DAG and fetching only the chunks that overlap the range, one
batch per level. It reads CIDv0 and CIDv1, dag-pb and raw leaves, and identity-hash
(inlined) CIDs, which never reach the store. Every other block comes through the given
:class:`~halodb.blockstore.BlockStore`, which verifies it against its CID.

Sizes of raw-leaf children in a listing come from the directory link's ``Tsize`` (for a
raw block, its length) so that listing a folder of chunk files does not download them;
reads always check each chunk's real length.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.unixfs.build import put_directory, put_file
>>> store = MemoryStore()
>>> root = put_directory(store, {"a.txt": put_file(store, b"hello world")})
>>> tree = UnixFSTree(store, root)
>>> [(e.name, e.is_dir, e.size) for e in tree.list("")]
[('a.txt', False, 11)]
>>> tree.read("a.txt", 6)
b'world'
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from halodb.blockstore.base import BlockBytes, BlockStore
from halodb.errors import BlockNotFoundError, HaloDBError, InputError, TreePathError, UnixFSError
from halodb.ipld import CID, DAG_PB, RAW
from halodb.filetree import Tree, TreeEntry
from halodb.unixfs.build import CHUNK, MAX_LINKS, rebuild_file
from halodb.unixfs.dagpb import PBLink, PBNode, decode_pb
from halodb.unixfs.data import DIRECTORY, FILE, HAMT_SHARD, MURMUR3_X64_64, RAW as UNIXFS_RAW, SYMLINK
from halodb.unixfs.data import TYPE_NAMES, UnixFSData, decode_data
from halodb.unixfs.hamt import fanout_bits, hash_name, slot_at, slot_label, split_link_name

if TYPE_CHECKING:
    import asyncio

DIR, FILE_KIND, SYMLINK_KIND = "dir", "file", "symlink"
MAX_FILE_DEPTH = 64  #: levels of a file DAG before it is called malformed


@dataclass(slots=True)
class Node:
    """One decoded UnixFS block: ``kind`` is ``dir``, ``file`` or ``symlink``."""

    cid: CID
    kind: str
    pb: PBNode | None = None  #: None for raw leaves
    fs: UnixFSData | None = None  #: None for raw leaves
    raw: bytes | memoryview | None = None  #: the bytes of a raw leaf (maybe a view into a file's bytes)
    _names: dict[str, PBLink] | None = field(default=None, repr=False)

    @property
    def hamt(self) -> bool:
        return self.fs is not None and self.fs.type == HAMT_SHARD

    @property
    def size(self) -> int:
        """The file size in bytes (a symlink's: the length of its target)."""
        if self.raw is not None:
            return len(self.raw)
        assert self.fs is not None
        if self.fs.filesize is not None:
            return self.fs.filesize
        return len(self.fs.data or b"") + sum(self.fs.blocksizes)

    def cost(self) -> int:
        return len(self.raw or b"") + len(self.fs.data or b"" if self.fs else b"") + 64 * len(self.pb.links if self.pb else ())


def annotate(exc: HaloDBError, path: str) -> HaloDBError:
    """``exc`` with ``.path`` (the tree path being read) added to its context unless it has one."""
    if "path" not in exc.context:
        exc.context["path"] = path
        setattr(exc, "path", path)
    return exc


def decode_node(cid: CID, block: bytes) -> Node:
    """Decode a UnixFS block of ``cid``; :class:`~halodb.errors.UnixFSError` naming it if malformed."""
    codec = cid.codec
    if codec == RAW:
        return Node(cid, FILE_KIND, raw=block)
    if codec != DAG_PB:
        raise UnixFSError(f"block {cid} has codec 0x{codec:x}, not dag-pb or raw: not UnixFS", cid=cid)
    try:
        pb = decode_pb(block)
        if pb.data is None:
            raise UnixFSError("dag-pb node without UnixFS Data")
        fs = decode_data(pb.data)
    except UnixFSError as exc:
        raise UnixFSError(f"block {cid} is not a valid UnixFS node: {exc.message}", cid=cid) from None
    if fs.type in (DIRECTORY, HAMT_SHARD):
        kind = DIR
        if fs.type == HAMT_SHARD and fs.hash_type != MURMUR3_X64_64:
            raise UnixFSError(f"HAMT shard {cid} uses hash function {fs.hash_type}, not murmur3-x64-64", cid=cid)
        for link in pb.links:
            if link.name is None:
                raise UnixFSError(f"directory {cid} has a link without a name", cid=cid)
    elif fs.type in (FILE, UNIXFS_RAW):
        kind = FILE_KIND
        if pb.links and len(pb.links) != len(fs.blocksizes):
            raise UnixFSError(
                f"file node {cid} has {len(pb.links)} links but {len(fs.blocksizes)} blocksizes", cid=cid
            )
    elif fs.type == SYMLINK:
        kind = SYMLINK_KIND
    else:
        raise UnixFSError(f"block {cid} is a UnixFS {TYPE_NAMES[fs.type]} node, which HaloDB does not read", cid=cid)
    return Node(cid, kind, pb=pb, fs=fs)


class UnixFSTree(Tree):
    """The UnixFS tree under ``root`` (a CID or its text), read through ``store``.

    Decoded directory and file-root nodes are kept in a small in-memory cache
    (``cache_bytes``), so repeated ``stat``/``list``/``read`` calls on one dataset do not
    fetch the same blocks again. Safe to share between threads.
    """

    def __init__(self, store: BlockStore, root: CID | str, *, cache_bytes: int = 32 << 20) -> None:
        self.store = store
        self.root = CID.parse(root)
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[CID, Node] = OrderedDict()
        self._cached = 0
        self._paths: OrderedDict[str, CID] = OrderedDict()
        self._lock = threading.Lock()
        #: the chunk size with which files are rebuilt from their bytes alone (:meth:`aread`);
        #: None: not tried (learnt from the files read, see :meth:`_learn_chunks`)
        self._chunk: int | None = CHUNK
        #: folders being fetched on an event loop (:meth:`_afolder`), by loop and CID
        self._folders: dict[tuple[asyncio.AbstractEventLoop, CID], asyncio.Future[bool]] = {}

    def __repr__(self) -> str:
        return f"UnixFSTree({self.root})"

    # -- blocks -------------------------------------------------------------------------
    def _fetch(self, cids: Iterable[CID]) -> dict[CID, bytes]:
        """Verified bytes of every CID (identity CIDs inline); BlockNotFoundError for a missing one."""
        out: dict[CID, bytes] = {}
        wanted = []
        for cid in dict.fromkeys(cids):
            inline = cid.inline_data
            if inline is not None:
                out[cid] = inline
            else:
                wanted.append(cid)
        if len(wanted) == 1:
            out[wanted[0]] = self.store.get(wanted[0])
        elif wanted:
            found = self.store.get_many(wanted)
            for cid in wanted:
                if cid not in found:
                    raise BlockNotFoundError(f"block {cid} of {self} is not in {self.store.describe()}", cid=cid)
            out.update(found)
        return out

    def nodes(self, cids: Iterable[CID], *, cache: bool = True) -> dict[CID, Node]:
        """Decoded nodes of ``cids``, fetching the uncached ones in one batch."""
        cids = list(dict.fromkeys(cids))
        out: dict[CID, Node] = {}
        with self._lock:
            for cid in cids:
                node = self._cache.get(cid)
                if node is not None:
                    self._cache.move_to_end(cid)
                    out[cid] = node
        missing = [c for c in cids if c not in out]
        if missing:
            for cid, block in self._fetch(missing).items():
                node = decode_node(cid, block)
                out[cid] = node
                if cache and node.raw is None:
                    self._remember(node)
        return out

    def node(self, cid: CID) -> Node:
        return self.nodes([cid])[cid]

    def _remember(self, node: Node) -> None:
        cost = node.cost()
        if cost > self.cache_bytes // 8:
            return
        with self._lock:
            if node.cid in self._cache:
                return
            self._cache[node.cid] = node
            self._cached += cost
            while self._cached > self.cache_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.cost()

    # -- directories ---------------------------------------------------------------------
    def links(self, node: Node) -> dict[str, PBLink]:
        """Every entry of a directory node, by name (all shards of a HAMT are walked)."""
        if node.kind != DIR:
            raise UnixFSError(f"{node.cid} is not a directory", cid=node.cid)
        if node._names is not None:
            return node._names
        names: dict[str, PBLink] = {}
        if not node.hamt:
            for link in node.pb.links if node.pb else ():
                self._add(names, node.cid, link.name or "", link)
        else:
            level = [node]
            seen = {node.cid}
            depth = 0
            while level:
                subshards = []
                for shard in level:
                    fs = shard.fs
                    assert fs is not None and shard.pb is not None
                    fanout = fs.fanout or 0
                    fanout_bits(fanout)
                    for link in shard.pb.links:
                        _, name = split_link_name(link.name or "", fanout)
                        if name:
                            self._add(names, node.cid, name, link)
                        elif link.cid in seen:
                            raise UnixFSError(f"HAMT {node.cid} links to shard {link.cid} twice", cid=node.cid)
                        else:
                            seen.add(link.cid)
                            subshards.append(link.cid)
                depth += 1
                if subshards and depth > 64:
                    raise UnixFSError(f"HAMT {node.cid} is more than 64 shards deep", cid=node.cid)
                loaded = self.nodes(subshards)
                level = [loaded[c] for c in subshards]
                for shard in level:
                    if not shard.hamt:
                        raise UnixFSError(f"HAMT {node.cid} links to {shard.cid}, which is not a shard", cid=node.cid)
        node._names = names
        return names

    @staticmethod
    def _add(names: dict[str, PBLink], where: CID, name: str, link: PBLink) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise UnixFSError(f"directory {where} has an entry named {name!r}", cid=where)
        if name in names:
            raise UnixFSError(f"directory {where} has two entries named {name!r}", cid=where)
        names[name] = link

    def child(self, node: Node, name: str) -> CID | None:
        """The CID of entry ``name`` of a directory node, or None (HAMTs: one path of shards)."""
        if not node.hamt:
            link = self.links(node).get(name)
            return None if link is None else link.cid
        if node._names is not None:
            link = node._names.get(name)
            return None if link is None else link.cid
        digest = hash_name(name)
        shard, depth = node, 0
        while True:
            fs = shard.fs
            assert fs is not None and shard.pb is not None
            fanout = fs.fanout or 0
            label = slot_label(slot_at(digest, depth, fanout_bits(fanout)), fanout)
            nxt: CID | None = None
            for link in shard.pb.links:
                lname = link.name or ""
                if lname == label:
                    nxt = link.cid
                elif lname == label + name:
                    return link.cid
            if nxt is None:
                return None
            shard, depth = self.node(nxt), depth + 1
            if not shard.hamt:
                raise UnixFSError(f"HAMT {node.cid} links to {shard.cid}, which is not a shard", cid=node.cid)

    # -- paths ----------------------------------------------------------------------------
    @staticmethod
    def _parts(path: str) -> list[str]:
        parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise TreePathError(f"path {path!r} leaves the tree", path=path)
        return parts

    def resolve(self, path: str) -> CID | None:
        """The CID at ``path`` under the root, or None when nothing is there."""
        parts = self._parts(path)
        key = "/".join(parts)
        with self._lock:
            hit = self._paths.get(key)
        if hit is not None:
            return hit
        cid = self.root
        for i, name in enumerate(parts):
            node = self._node_at(cid, "/".join(parts[:i]))
            if node.kind != DIR:
                return None
            found = self.child(node, name)
            if found is None:
                return None
            cid = found
        with self._lock:
            self._paths[key] = cid
            if len(self._paths) > 4096:
                self._paths.popitem(last=False)
        return cid

    def _node_at(self, cid: CID, path: str) -> Node:
        try:
            return self.node(cid)
        except HaloDBError as exc:
            annotate(exc, path)
            raise

    def _entry_node(self, path: str) -> tuple[str, Node] | None:
        cid = self.resolve(path)
        if cid is None:
            return None
        parts = self._parts(path)
        return (parts[-1] if parts else ""), self._node_at(cid, path)

    # -- the Tree interface ------------------------------------------------------------------
    def list(self, path: str) -> list[TreeEntry]:
        found = self._entry_node(path)
        if found is None or found[1].kind != DIR:
            raise TreePathError(f"{path or '/'}: not a folder in {self.root}", path=path)
        links = self.links(found[1])
        kinds = self.child_nodes(links.values())
        out = []
        for name in sorted(links):
            link = links[name]
            node = kinds.get(link.cid)
            if node is None:  # a raw leaf: its Tsize is its length
                out.append(TreeEntry(name, False, link.tsize))
            else:
                out.append(TreeEntry(name, node.kind == DIR, None if node.kind == DIR else node.size))
        return out

    def names(self, path: str) -> builtins.list[str]:
        """Entry names of the folder at ``path``, sorted, without fetching the entries
        (:meth:`list` fetches each entry's root block to tell folders from files and give sizes:
        for a folder of many small CIDv0 chunk files that is all their data)."""
        found = self._entry_node(path)
        if found is None or found[1].kind != DIR:
            raise TreePathError(f"{path or '/'}: not a folder in {self.root}", path=path)
        return sorted(self._links_at(found[1], path))

    def child_nodes(self, links: Iterable[PBLink]) -> dict[CID, Node]:
        """Decoded nodes of the entries behind ``links``, fetched in one batch; raw leaves whose
        ``Tsize`` gives their size are left out (they are files and need no fetch)."""
        wanted = [l.cid for l in links if not (l.cid.codec == RAW and l.tsize is not None and l.cid.inline_data is None)]
        return self.nodes(wanted)

    def stat(self, path: str) -> TreeEntry | None:
        found = self._entry_node(path)
        if found is None:
            return None
        name, node = found
        return TreeEntry(name, node.kind == DIR, None if node.kind == DIR else node.size)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the file at ``path``.

        Through a store that sends a file's bytes (a gateway, ``BlockStore.reads_file_bytes``),
        a CIDv1 file's raw leaves come as the bytes of the range, one request per run of
        adjacent leaves (:meth:`read_range`), after its root. Otherwise, where the store can
        send a file's blocks as one request (a gateway's CAR: ``BlockStore.prefetch_file``;
        CIDv0 files, whose leaves are dag-pb nodes), they are asked for that way first, before
        the file's root and leaves are read as usual."""
        if start < 0 or (end is not None and end < 0):
            raise InputError(f"{path}: negative byte range [{start}, {end})", source=path)
        cid = self.resolve(path)
        if cid is not None and cid.codec == DAG_PB and cid.inline_data is None and not (
                cid.version == 1 and self.store.reads_file_bytes()):  # (a raw CID is one block)
            try:
                self.store.prefetch_file(cid, start=start, end=end)
            except HaloDBError as exc:
                annotate(exc, path)
                raise
        found = self._entry_node(path)
        if found is None or found[1].kind == DIR:
            raise TreePathError(f"{path}: not a file in {self.root}", path=path)
        node = found[1]
        if node.kind == SYMLINK_KIND:
            target = (node.fs.data if node.fs else b"") or b""
            raise TreePathError(f"{path}: a symbolic link to {target.decode('utf-8', 'replace')!r} in {self.root}; "
                                "links are not followed", path=path)
        try:
            return self.read_range(node, start, end)
        except HaloDBError as exc:
            annotate(exc, path)
            raise

    # -- file contents -------------------------------------------------------------------------
    def read_range(self, node: Node, start: int = 0, end: int | None = None, *,
                   loaded: dict[CID, Node] | None = None) -> bytes:
        """Bytes ``[start, end)`` of the file ``node``, fetching only the chunks that overlap
        (and are not in ``loaded``: nodes fetched already)."""
        size = node.size
        end = size if end is None else min(end, size)
        if start >= end:
            return b""
        pieces: list[tuple[int, bytes | memoryview]] = []
        frontier: list[tuple[Node, int, int]] = [(node, 0, size)]
        depth = 0
        while frontier:
            need: list[tuple[CID, int, int]] = []
            for n, offset, expected in frontier:
                if n.kind != FILE_KIND:
                    raise UnixFSError(f"file DAG of {node.cid} contains a {n.kind} node {n.cid}", cid=node.cid)
                data = n.raw if n.raw is not None else ((n.fs.data if n.fs else None) or b"")
                total = len(data) + (sum(n.fs.blocksizes) if n.fs and n.pb and n.pb.links else 0)
                if total != expected or (n.fs and n.fs.filesize is not None and n.fs.filesize != total):
                    raise UnixFSError(f"chunk {n.cid} of {node.cid} holds {total} bytes where {expected} were declared",
                                      cid=node.cid)
                if data and offset < end and offset + len(data) > start:
                    lo, hi = max(start - offset, 0), min(end - offset, len(data))
                    pieces.append((offset + lo, data[lo:hi]))
                pos = offset + len(data)
                for link, bsize in zip(n.pb.links if n.pb else (), n.fs.blocksizes if n.fs else ()):
                    if pos < end and pos + bsize > start:
                        need.append((link.cid, pos, bsize))
                    pos += bsize
            depth += 1
            if need and depth > MAX_FILE_DEPTH:
                raise UnixFSError(f"file DAG of {node.cid} is deeper than {MAX_FILE_DEPTH} levels", cid=node.cid)
            have = {c: loaded[c] for c, _, _ in need if c in loaded} if loaded else {}
            need_fetch = [n for n in need if n[0] not in have] if have else need
            if need_fetch and all(c.codec == RAW and c.inline_data is None for c, _, _ in need_fetch):
                have.update(self._leaves(node.cid, need_fetch))  # the last level: raw leaves
            elif need_fetch:
                have.update(self.nodes((c for c, _, _ in need_fetch), cache=False))
            frontier = [(have[c], off, bsize) for c, off, bsize in need]
        pieces.sort(key=lambda p: p[0])
        out = b"".join(p for _, p in pieces)
        if len(out) != end - start:
            raise UnixFSError(f"file {node.cid}: read {len(out)} bytes of [{start}, {end})", cid=node.cid)
        return out

    async def aread(self, path: str, start: int = 0, end: int | None = None) -> bytes | None:
        """:meth:`read` on the running event loop, without a thread, for what reading a
        dataset's chunks mostly is: a file in plain folders (those not cached here fetched on
        this loop, each once), either one raw block or a CIDv1 root whose links are raw leaves,
        with its blocks from ``store.aget_file`` (a gateway: the file's bytes alone, checked by
        rebuilding its root with :func:`~halodb.unixfs.build.rebuild_file` when the folder's
        ``Tsize`` says it is a few chunks of the size guessed, else the root and the bytes
        asked at once: one round trip) or, its root cached, ``store.aget_leaves`` (a caching
        store over a gateway reads its local copies here and the rest on this loop: one
        request per run of adjacent leaves). Every block verified as by :meth:`read`; the same
        checks of sizes. None for anything else (a HAMT folder, a CIDv0 file, a deeper DAG, a
        store that would send the file as a CAR, a failure): call :meth:`read` in a thread.
        """
        store = self.store
        if (store.is_remote or store.is_remote_backed) and not store.reads_file_bytes():
            return None  # (a gateway that sends no plain bytes: the sync path asks for a CAR)
        if start < 0 or (end is not None and end < 0):
            return None
        resolved = await self._aresolve(path)
        if resolved is None:
            return None
        cid, tsize = resolved
        if cid.inline_data is not None or cid.version != 1:
            return None
        try:
            with self._lock:
                node = self._cache.get(cid)
            found: Mapping[CID, BlockBytes] | None = None
            if node is None and start == 0 and end is not None and cid.codec == DAG_PB:
                decoded: builtins.list[Node] = []  # the root and its leaves in one round trip
                chunk = self._chunk
                tried: builtins.list[bool] = []

                def leaves_of(block: bytes) -> builtins.list[tuple[CID, int, int]] | None:
                    decoded.append(decode_node(cid, block))
                    return self._raw_leaves(decoded[0], 0, end)

                def rebuild(data: bytes) -> tuple[bytes, dict[CID, BlockBytes]] | None:
                    got = rebuild_file(cid, data, chunk or CHUNK)
                    tried.append(got is not None)
                    return got

                # a file as ``ipfs add`` lays it out (one root over at most 174 raw leaves) is
                # its bytes alone, checked by rebuilding its root from them: one request
                alone = chunk is not None and tsize is not None and chunk < tsize <= chunk * MAX_LINKS + (64 << 10)
                got = await store.aget_file(cid, end if tsize is None else max(min(end, tsize), 1), leaves_of,
                                            rebuild=rebuild if alone else None)
                if got is None:
                    return None  # (the sync path says what is missing)
                node = decoded[0] if decoded else decode_node(cid, got.root)
                if decoded:  # (the root was asked for)
                    self._learn_chunks(node, failed=tried == [False])
                self._remember(node)
                found = got.leaves
            elif node is None:
                block = (await store.aget_many([cid])).get(cid)
                if block is None:
                    return None  # (the sync path says what is missing)
                node = decode_node(cid, block)
                if node.raw is None:
                    self._remember(node)
            if node.kind != FILE_KIND:
                return None
            if node.raw is not None:
                return bytes(node.raw[start:end])
            size = node.size
            stop = size if end is None else min(end, size)
            need = self._overlapping(node, start, stop)
            if not all(c.codec == RAW and c.inline_data is None for c, _, _ in need):
                return None
            if found is None:
                found = await store.aget_leaves(cid, need) if need else {}
            if any(c not in found for c, _, _ in need):
                return None  # (the sync path says what is missing)
            whole = _one_run(node, need, found)
            if whole is not None:  # the leaves are views into the bytes of one answer: no copy
                first = need[0][1]
                return whole[max(start - first, 0):stop - first] if start < stop else b""
            loaded = {c: Node(c, FILE_KIND, raw=data) for c, data in found.items()}
            return self.read_range(node, start, end, loaded=loaded)
        except HaloDBError as exc:
            annotate(exc, path)
            raise

    def _learn_chunks(self, node: Node, *, failed: bool) -> None:
        """After a file whose root was asked for (``failed``: :func:`rebuild_file` could not
        rebuild it from its bytes): its chunk size, when its leaves are fixed-size chunks in one
        level (``ipfs add --chunker=size-N``), is guessed from now on; when they are not (another
        chunker or layout), or rebuilding failed with that size (a gateway's wrong bytes), none is."""
        sizes = node.fs.blocksizes if node.fs is not None and node.pb is not None and node.pb.links else ()
        if len(sizes) < 2 or len(sizes) > MAX_LINKS:
            return  # (one chunk tells nothing; more than one level: other files may be fine)
        fixed = all(size == sizes[0] for size in sizes[:-1]) and sizes[-1] <= sizes[0]
        if not fixed or (failed and sizes[0] == self._chunk):
            self._chunk = None
        else:
            self._chunk = sizes[0]

    def _raw_leaves(self, node: Node, start: int, end: int) -> builtins.list[tuple[CID, int, int]] | None:
        """The children of the file node ``node`` that hold bytes ``[start, end)`` when they
        all are raw leaves (not inlined); else None (a folder, a raw block, a deeper DAG)."""
        if node.kind != FILE_KIND or node.raw is not None:
            return None
        need = self._overlapping(node, start, min(end, node.size))
        if not need or not all(c.codec == RAW and c.inline_data is None for c, _, _ in need):
            return None
        return need

    @staticmethod
    def _overlapping(node: Node, start: int, end: int) -> builtins.list[tuple[CID, int, int]]:
        """``(cid, offset, size)`` of the children of the file node ``node`` that hold bytes of
        ``[start, end)`` (as :meth:`read_range` finds them)."""
        if node.pb is None or node.fs is None:
            return []
        pos = len(node.fs.data or b"")
        out = []
        for link, bsize in zip(node.pb.links, node.fs.blocksizes):
            if pos < end and pos + bsize > start:
                out.append((link.cid, pos, bsize))
            pos += bsize
        return out

    def _resolve_cached(self, path: str) -> tuple[CID, int | None, bool] | None:
        """``(cid, Tsize, True)``: the CID at ``path`` when every folder on the way is cached
        here, with the ``Tsize`` of the link to it when known (the bytes of its DAG: at least
        its size); ``(folder, None, False)``: the first plain folder on the way that is not
        cached; None where this walk stops (a HAMT, a missing entry, a malformed folder: the
        sync path walks it and says why). Nothing is fetched."""
        try:
            parts = self._parts(path)
        except TreePathError:
            return None
        key = "/".join(parts)
        with self._lock:
            hit = self._paths.get(key)
            if hit is not None:
                return hit, None, True
            cid, tsize = self.root, None
            for name in parts:
                node = self._cache.get(cid)
                if node is None:
                    return cid, None, False
                if node.kind != DIR or node.hamt or node.pb is None:
                    return None  # (HAMT shards: the sync path walks them)
                names = node._names
                if names is None:
                    try:
                        names = self.links(node)  # (a plain folder: its own links, no fetch)
                    except HaloDBError:
                        return None
                link = names.get(name)
                if link is None:
                    return None
                cid, tsize = link.cid, link.tsize
            return cid, tsize, True

    async def _aresolve(self, path: str) -> tuple[CID, int | None] | None:
        """:meth:`_resolve_cached`, the plain folders on the way that are not cached fetched on
        the running loop first, each once however many reads want it at the same moment (zarr
        starts ~10 chunk reads of a folder at once); None where the sync path must walk."""
        asked: set[CID] = set()
        while True:
            walked = self._resolve_cached(path)
            if walked is None:
                return None
            cid, tsize, complete = walked
            if complete:
                return cid, tsize
            if cid in asked or len(asked) >= MAX_FILE_DEPTH or not await self._afolder(cid):
                return None
            asked.add(cid)

    async def _afolder(self, cid: CID) -> bool:
        """Fetch the folder ``cid`` on the running loop into the node cache (``store.aget_many``);
        another read fetching it now is waited for. False when it is absent, malformed or not
        a plain folder (the sync path then says why), or when the read that fetched it failed;
        a store's failure (no gateway answered, a lie) is raised, as the sync path raises it."""
        import asyncio  # (here: reading a file need not import it)

        loop = asyncio.get_running_loop()
        with self._lock:
            waiting = self._folders.get((loop, cid))
            if waiting is None:
                mine = self._folders[(loop, cid)] = loop.create_future()
        if waiting is not None:
            return bool(await asyncio.shield(waiting))
        ok = False
        try:
            block = (await self.store.aget_many([cid])).get(cid)
            if block is not None:
                node = decode_node(cid, block)
                if node.kind == DIR and not node.hamt:
                    self._remember(node)
                    ok = True
        except UnixFSError:
            pass  # (the sync path reads it again, from the cache, and says why)
        finally:
            with self._lock:
                del self._folders[(loop, cid)]
            mine.set_result(ok)
        return ok

    def _leaves(self, file: CID, leaves: builtins.list[tuple[CID, int, int]]) -> dict[CID, Node]:
        """The raw leaves ``(cid, offset in the file, size)`` of ``file``, verified, in one
        request per run of adjacent leaves where the store sends a file's bytes
        (``BlockStore.get_leaves``); BlockNotFoundError for a missing one."""
        found = self.store.get_leaves(file, leaves)
        out = {}
        for cid, _, _ in leaves:
            data = found.get(cid)
            if data is None:
                raise BlockNotFoundError(f"block {cid} of {self} is not in {self.store.describe()}", cid=cid)
            out[cid] = Node(cid, FILE_KIND, raw=data)
        return out

    # -- walking ---------------------------------------------------------------------------------
    def entries(self, node: Node) -> builtins.list[tuple[str, CID, str]]:
        """``(name, cid, kind)`` of every entry of a directory node, sorted by name; the
        children's root blocks are fetched in one batch to learn their kinds."""
        links = self.links(node)
        loaded = self.child_nodes(links.values())
        out = []
        for name in sorted(links):
            cid = links[name].cid
            child = loaded.get(cid)
            out.append((name, cid, FILE_KIND if child is None else child.kind))
        return out

    def walk(self, *, max_depth: int = 64, max_entries: int = 1_000_000,
             prune: Callable[[str, Sequence[str]], bool] | None = None) -> Iterator[WalkEntry]:
        """Every entry under the root, depth first in name order, parents before children.

        ``prune(path, names)`` is asked for each folder (the root too) with its entry names,
        before the folder is yielded; when it answers True the folder is yielded but not
        descended into (dataset folders).
        A folder deeper than ``max_depth`` levels, more than ``max_entries`` entries in all,
        or a folder that contains itself raise :class:`~halodb.errors.UnixFSError` naming the path.
        """
        root = self._node_at(self.root, "")
        stop = root.kind != DIR or (prune is not None and prune("", sorted(self._links_at(root, ""))))
        yield WalkEntry("", self.root, root.kind)
        if stop:
            return
        count = 1
        ancestors = [self.root]
        stack: builtins.list[tuple[str, Iterator[tuple[str, CID, str]]]] = [("", iter(self._entries_at(root, "")))]
        while stack:
            path, it = stack[-1]
            item = next(it, None)
            if item is None:
                stack.pop()
                ancestors.pop()
                continue
            name, cid, kind = item
            child_path = f"{path}/{name}" if path else name
            count += 1
            if len(stack) > max_depth:
                raise UnixFSError(f"{self.root}: folders nested deeper than {max_depth} levels at {child_path}",
                                  cid=self.root, path=child_path)
            if count > max_entries:
                raise UnixFSError(f"{self.root}: more than {max_entries} entries (stopped at {child_path})",
                                  cid=self.root, path=child_path)
            descend = False
            if kind == DIR:
                if cid in ancestors:
                    raise UnixFSError(f"{self.root}: folder {child_path} contains itself ({cid})", cid=cid,
                                      path=child_path)
                node = self._node_at(cid, child_path)
                descend = not (prune is not None and prune(child_path, sorted(self._links_at(node, child_path))))
            yield WalkEntry(child_path, cid, kind)
            if descend:
                stack.append((child_path, iter(self._entries_at(node, child_path))))
                ancestors.append(cid)

    def _links_at(self, node: Node, path: str) -> dict[str, PBLink]:
        try:
            return self.links(node)
        except HaloDBError as exc:
            annotate(exc, path)
            raise

    def _entries_at(self, node: Node, path: str) -> builtins.list[tuple[str, CID, str]]:
        try:
            return self.entries(node)
        except HaloDBError as exc:
            annotate(exc, path)
            raise


def _one_run(node: Node, need: list[tuple[CID, int, int]], found: Mapping[CID, bytes | memoryview]) -> bytes | None:
    """The bytes the leaves ``need`` of the file ``node`` are views into, when they all are
    adjacent views that tile one buffer (a gateway's answer for their run, cut by
    ``GatewayStore.aget_leaves``) and the node's sizes add up as :meth:`UnixFSTree.read_range`
    checks them (no data of its own, ``filesize`` the sum of ``blocksizes``); else None."""
    fs = node.fs
    if not need or fs is None or fs.data or (fs.filesize is not None and fs.filesize != sum(fs.blocksizes)):
        return None
    views = [found[c] for c, _, _ in need]
    base = views[0].obj if isinstance(views[0], memoryview) else None
    if not isinstance(base, bytes):
        return None
    at = need[0][1]
    for (_, offset, size), view in zip(need, views):
        if not isinstance(view, memoryview) or view.obj is not base or offset != at or len(view) != size:
            return None
        at += size
    return base if at - need[0][1] == len(base) else None


class WalkEntry(NamedTuple):
    """One entry found by :func:`walk_tree`: ``kind`` is ``dir``, ``file`` or ``symlink``."""

    path: str
    cid: CID
    kind: str


def walk_tree(store: BlockStore, root: CID | str, *, max_depth: int = 64, max_entries: int = 1_000_000,
              prune: Callable[[str, Sequence[str]], bool] | None = None) -> Iterator[WalkEntry]:
    """Walk the UnixFS tree under ``root``: ``(path, cid, kind)`` for the root (path ``""``)
    and everything below; see :meth:`UnixFSTree.walk` for ``prune`` and the limits.

    >>> from halodb.blockstore import MemoryStore
    >>> from halodb.unixfs.build import put_directory, put_file
    >>> store = MemoryStore()
    >>> sub = put_directory(store, {"x": put_file(store, b"x")})
    >>> [(p, k) for p, _, k in walk_tree(store, put_directory(store, {"sub": sub}))]
    [('', 'dir'), ('sub', 'dir'), ('sub/x', 'file')]
    """
    return UnixFSTree(store, root).walk(max_depth=max_depth, max_entries=max_entries, prune=prune)
