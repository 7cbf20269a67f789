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

from halodb.blockstore.base import BlockStore
from halodb.ipld import CID, DAG_PB, RAW, SHA2_256
from halodb.ipld.protobuf import encode_field as _field
from halodb.unixfs.data import DIRECTORY, FILE, SYMLINK

CHUNK = 256 * 1024


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
