"""Writing small UnixFS trees into a block store (examples, tests, hand-made fixtures).

Produces what ``ipfs add --cid-version 1 --raw-leaves`` produces for small inputs: a raw
block per file (or a one-level dag-pb file over raw chunks) and dag-pb directories with
``Links`` before ``Data``. Big folders and real datasets go through Kubo instead.

>>> from halodb.blockstore import MemoryStore
>>> store = MemoryStore()
>>> str(put_directory(store, {}))
'bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from halodb.blockstore.base import BlockBytes, BlockStore
from halodb.ipld import CID, DAG_PB, RAW, SHA2_256
from halodb.ipld.protobuf import encode_field as _field
from halodb.unixfs.data import DIRECTORY, FILE, SYMLINK

CHUNK = 256 * 1024  #: ``ipfs add``'s chunk size (``--chunker=size-262144``)
MAX_LINKS = 174  #: links of one file node in ``ipfs add``'s balanced layout (more: a deeper DAG)
_RAW_PREFIX = bytes([0x01, RAW, SHA2_256, 0x20])  # a CIDv1 raw sha2-256 CID before its digest


def encode_pb(links: Sequence[tuple[CID, str | None, int | None]], data: bytes | None) -> bytes:
    """A dag-pb block: ``links`` as ``(cid, name, tsize)`` (None leaves a field out), then Data."""
    out = bytearray()
    for cid, name, tsize in links:
        link = _field(1, bytes(cid))
        if name is not None:
            link += _field(2, name.encode("utf-8"))
        if tsize is not None:
            link += _field(3, tsize)
        out += _field(2, link)
    if data is not None:
        out += _field(1, data)
    return bytes(out)


def encode_data(kind: int, *, data: bytes | None = None, filesize: int | None = None,
                blocksizes: tuple[int, ...] = (), hash_type: int | None = None, fanout: int | None = None) -> bytes:
    """A UnixFS Data message."""
    out = _field(1, kind)
    if data is not None:
        out += _field(2, data)
    if filesize is not None:
        out += _field(3, filesize)
    for size in blocksizes:
        out += _field(4, size)
    if hash_type is not None:
        out += _field(5, hash_type)
    if fanout is not None:
        out += _field(6, fanout)
    return out


def put_pb(store: BlockStore, block: bytes) -> CID:
    """Store a dag-pb block; its CIDv1 (sha2-256)."""
    cid = CID(bytes([0x01, DAG_PB, SHA2_256, 0x20]) + hashlib.sha256(block).digest())
    store.put_block(cid, block)
    return cid


def put_file(store: BlockStore, content: bytes, *, chunk: int = CHUNK) -> CID:
    """Store a file: one raw block, or a dag-pb root over raw chunks of ``chunk`` bytes."""
    if len(content) <= chunk:
        return store.put(content, codec=RAW)
    pieces = [content[i:i + chunk] for i in range(0, len(content), chunk)]
    links = [(store.put(p, codec=RAW), "", len(p)) for p in pieces]
    data = encode_data(FILE, filesize=len(content), blocksizes=tuple(len(p) for p in pieces))
    return put_pb(store, encode_pb(links, data))


def rebuild_file(file: CID, data: bytes, chunk: int = CHUNK) -> tuple[bytes, dict[CID, BlockBytes]] | None:
    """The root block and the raw leaves of the file ``file``, rebuilt from its bytes ``data``
    as ``ipfs add --cid-version=1`` lays them out with ``chunk``-byte chunks (raw leaves under
    ONE dag-pb root: at most :data:`MAX_LINKS` of them), when that root's CID is ``file``;
    else None (another chunker or layout, or bytes that are not the file's).

    Each leaf is hashed once to name it in the root; the root hashing to ``file`` then proves
    every byte (a gateway's plain answer checked without asking for the root). The leaves
    are views into ``data``.

    >>> from halodb.blockstore import MemoryStore
    >>> content = bytes(300_000) + b"x" * 300_000  # three chunks
    >>> root, leaves = rebuild_file(put_file(MemoryStore(), content), content)
    >>> [len(leaf) for leaf in leaves.values()], rebuild_file(put_file(MemoryStore(), content), content[:-1])
    ([262144, 262144, 75712], None)
    """
    if file.codec != DAG_PB or file.version != 1 or not chunk < len(data) <= chunk * MAX_LINKS:
        return None
    view = memoryview(data)
    leaves: dict[CID, BlockBytes] = {}
    links = []
    for at in range(0, len(data), chunk):
        piece = view[at:at + chunk]
        cid = CID(_RAW_PREFIX + hashlib.sha256(piece).digest())
        leaves.setdefault(cid, piece)
        links.append((cid, "", len(piece)))
    sizes = tuple(size for _, _, size in links)
    root = encode_pb(links, encode_data(FILE, filesize=len(data), blocksizes=sizes))
    return (root, leaves) if file.verify(root) else None


def put_symlink(store: BlockStore, target: str) -> CID:
    """Store a symbolic link to ``target``."""
    return put_pb(store, encode_pb([], encode_data(SYMLINK, data=target.encode("utf-8"))))


def put_directory(store: BlockStore, entries: dict[str, CID]) -> CID:
    """Store a plain directory of ``entries`` (name -> CID), links sorted by name.

    ``Tsize`` is the size of the linked block itself when the store has it (a
    simplification: Kubo counts the whole DAG below).
    """
    links = []
    for name in sorted(entries):
        cid = entries[name]
        inline = cid.inline_data
        size = len(inline) if inline is not None else (len(store.get(cid)) if store.has(cid) else 0)
        links.append((cid, name, size))
    return put_pb(store, encode_pb(links, encode_data(DIRECTORY)))
