"""Fuzz: protobuf wire data, dag-pb nodes, UnixFS Data messages, HAMT names, UnixFS trees.

Inputs: raw bytes; valid dag-pb/UnixFS encodings with bytes flipped, cut and spliced;
well-formed protobuf with the wrong fields and values (a ``Data`` of any type and any sizes,
links of any name to any CID); whole trees whose root block is such a node, read through a
real :class:`~halodb.blockstore.MemoryStore`. Claims: decoding gives a value or a
``UnixFSError`` (``DecodeError``/``EncodeError`` for the bare protobuf helpers) in memory
linear in the input; ``decode(encode(x)) == x``; listing, walking and reading a tree give
entries and bytes or a :class:`~halodb.errors.HaloDBError`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from halodb.blockstore import MemoryStore
from halodb.errors import DecodeError, EncodeError, HaloDBError, UnixFSError
from halodb.ipld import CID, protobuf
from halodb.ipld.protobuf import encode_field, encode_varint, read_varint
from halodb.unixfs import UnixFSTree, decode_data, decode_pb
from halodb.unixfs.build import encode_data, encode_pb, put_directory, put_file, put_pb, put_symlink
from halodb.unixfs.dagpb import PBLink, PBNode
from halodb.unixfs.data import DIRECTORY, FILE, HAMT_SHARD, MURMUR3_X64_64, UnixFSData
from halodb.unixfs.hamt import fanout_bits, hash_name, slot_at, split_link_name
from halodb.unixfs.tree import decode_node

from .support import EDGE_INTS, ODD_TEXT, bounded, cids, fuzz, mutated, outcome

U64 = st.integers(0, 2**64 - 1)


# -- varints and protobuf fields --------------------------------------------------------------
@fuzz(100)
@given(EDGE_INTS)
@example(-1)  # was an endless loop that grew a bytearray until memory ran out
@example(2**64)
def test_encode_varint_of_any_int(n: int) -> None:
    result = bounded(n.bit_length() // 8 + 1, encode_varint, n, slack=64 << 10)
    assert isinstance(result, (bytes, EncodeError)), result
    if isinstance(result, bytes):
        assert read_varint(result, 0) == (n, len(result))


@fuzz(100)
@given(st.binary(max_size=12), st.booleans())
@example(b"\x80\x00", True)  # zero in two bytes: allowed in protobuf, not in a multiformats varint
def test_read_varint_of_any_bytes(buf: bytes, minimal: bool) -> None:
    result = outcome(read_varint, buf, 0, minimal=minimal)
    assert isinstance(result, (tuple, DecodeError)), result
    if isinstance(result, tuple):
        value, end = result
        assert 0 <= value < 2**64 and 0 < end <= len(buf)
        if minimal:
            assert encode_varint(value) == buf[:end]


PB_SEEDS = st.lists(st.tuples(st.integers(1, 20), st.one_of(U64, st.binary(max_size=12))), max_size=6).map(
    lambda fs: b"".join(encode_field(n, v) for n, v in fs)
)


@fuzz(100)
@given(st.one_of(st.binary(max_size=64), mutated(PB_SEEDS)))
def test_protobuf_fields_of_any_bytes(buf: bytes) -> None:
    result = bounded(len(buf), lambda: list(protobuf.fields(buf)))
    assert isinstance(result, (list, DecodeError)), result


# -- dag-pb --------------------------------------------------------------------------------------
NAMES = st.one_of(st.none(), ODD_TEXT.filter(lambda s: "\ud800" not in s))
LINKS = st.lists(st.tuples(cids(), NAMES, st.one_of(st.none(), U64)), max_size=4)
DATA_FIELDS = st.builds(
    lambda kind, data, filesize, sizes, hash_type, fanout: encode_data(
        kind, data=data, filesize=filesize, blocksizes=tuple(sizes), hash_type=hash_type, fanout=fanout),
    st.integers(0, 7), st.one_of(st.none(), st.binary(max_size=8)), st.one_of(st.none(), U64),
    st.lists(U64, max_size=4), st.one_of(st.none(), st.sampled_from([MURMUR3_X64_64, 0, 2**63])),
    st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, 16, 256, 2**16, 2**17, 2**64 - 1])),
)
PB_NODES = st.builds(encode_pb, LINKS, st.one_of(st.none(), DATA_FIELDS, st.binary(max_size=16)))


@fuzz(100)
@given(st.one_of(st.binary(max_size=64), mutated(PB_NODES), mutated(PB_SEEDS)))
@example(bytes.fromhex("12030a0100"))  # a link whose Hash is one byte
@example(bytes.fromhex("0a00" + "1222" + "0a20" + "00" * 32))  # Links after Data
def test_decode_pb_of_any_bytes(block: bytes) -> None:
    result = bounded(len(block), decode_pb, block)
    assert isinstance(result, (PBNode, UnixFSError)), result


@fuzz(100)
@given(LINKS, st.one_of(st.none(), st.binary(max_size=16)))
def test_decode_pb_of_encode_pb(links: list[tuple[CID, str | None, int | None]], data: bytes | None) -> None:
    node = decode_pb(encode_pb(links, data))
    assert node == PBNode(tuple(PBLink(c, n, t) for c, n, t in links), data)


# -- UnixFS Data ------------------------------------------------------------------------------------
@fuzz(100)
@given(st.one_of(st.binary(max_size=48), mutated(DATA_FIELDS), mutated(PB_SEEDS)))
@example(b"\x08\x02\x22\x05\xff\xff\xff\xff\xff")  # packed blocksizes with a cut varint
@example(b"\x08\x02\x42\x02\x08\x01")  # an mtime
def test_decode_data_of_any_bytes(buf: bytes) -> None:
    result = bounded(len(buf), decode_data, buf)
    assert isinstance(result, (UnixFSData, UnixFSError)), result


@fuzz(100)
@given(st.integers(0, 5), st.one_of(st.none(), st.binary(max_size=8)), st.one_of(st.none(), U64),
       st.lists(U64, max_size=4), st.one_of(st.none(), U64), st.one_of(st.none(), U64))
def test_decode_data_of_encode_data(kind: int, data: bytes | None, filesize: int | None, sizes: list[int],
                                   hash_type: int | None, fanout: int | None) -> None:
    buf = encode_data(kind, data=data, filesize=filesize, blocksizes=tuple(sizes), hash_type=hash_type, fanout=fanout)
    assert decode_data(buf) == UnixFSData(kind, data, filesize, tuple(sizes), hash_type, fanout)


# -- HAMT names ----------------------------------------------------------------------------------------
@fuzz(100)
@given(ODD_TEXT, st.one_of(EDGE_INTS, st.sampled_from([2, 4, 16, 256, 1024])))
@example("\ud800", 256)  # a name no UTF-8 can spell: was a UnicodeEncodeError
def test_hamt_names(name: str, fanout: int) -> None:
    bits = outcome(fanout_bits, fanout)
    assert isinstance(bits, (int, UnixFSError)), bits
    digest = outcome(hash_name, name)
    assert isinstance(digest, (bytes, UnixFSError)), digest
    if isinstance(bits, int):
        split = outcome(split_link_name, name, fanout)
        assert isinstance(split, (tuple, UnixFSError)), split
        if isinstance(digest, bytes):
            for depth in range(0, 70, 7):
                slot = outcome(slot_at, digest, depth, bits)
                assert isinstance(slot, UnixFSError) or (isinstance(slot, int) and 0 <= slot < fanout)


# -- whole trees -----------------------------------------------------------------------------------------
def _store() -> tuple[MemoryStore, dict[str, CID]]:
    """A store with a few honest UnixFS nodes the fuzzed root may link to."""
    store = MemoryStore()
    known = {
        "small": put_file(store, b"hello"),
        "chunked": put_file(store, bytes(range(256)) * 4, chunk=300),
        "link": put_symlink(store, "../elsewhere"),
        "inline": CID(b"\x01\x55\x00\x02hi"),
    }
    known["dir"] = put_directory(store, {"a": known["small"], "b": known["chunked"]})
    known["shard-leaf"] = put_pb(store, encode_pb([(known["small"], "A3a", 5)], encode_data(
        HAMT_SHARD, data=b"\x01", hash_type=MURMUR3_X64_64, fanout=256)))
    return store, known


KNOWN_NAMES = ["small", "chunked", "link", "inline", "dir", "shard-leaf"]


@st.composite
def _tree_roots(draw: st.DrawFn) -> tuple[str, list[tuple[str, str | None, int | None]], bytes]:
    """A root node: links to known nodes under fuzzed names and sizes, and a fuzzed Data."""
    links = draw(st.lists(st.tuples(st.sampled_from(KNOWN_NAMES), st.one_of(NAMES, st.sampled_from(["A3a", "A3", "00", "a"])),
                                    st.one_of(st.none(), U64, st.integers(0, 2000))), max_size=4))
    data = draw(st.one_of(DATA_FIELDS, mutated(DATA_FIELDS, max_edits=2)))
    kind = draw(st.sampled_from(["node", "mutated"]))
    return kind, links, data


def _read_all(tree: UnixFSTree) -> list[Any]:
    out: list[Any] = [outcome(tree.resolve, "\ud800/x"), outcome(tree.resolve, "A3a"), list(tree.walk(max_entries=1000))]
    stat = tree.stat("")
    out.append(stat)
    if stat is not None and stat.is_dir:
        for entry in tree.list(""):
            out.append(entry)
            if not entry.is_dir:
                out.append(outcome(tree.read, entry.name, 1, 600))
            out.append(outcome(tree.resolve, entry.name + "/x"))
    else:
        out.append(tree.read("", 0, 2000))
    return out


@fuzz(80)
@given(_tree_roots(), st.binary(max_size=4))
@example(("node", [("small", "A3a", 5)], encode_data(HAMT_SHARD, hash_type=MURMUR3_X64_64, fanout=256)), b"")
@example(("node", [("small", "x", 5)], encode_data(FILE, filesize=2**64 - 1, blocksizes=(2**64 - 1,))), b"")
def test_reading_a_fuzzed_tree(root: tuple[str, list[tuple[str, str | None, int | None]], bytes], noise: bytes) -> None:
    store, known = _store()
    kind, links, data = root
    block = encode_pb([(known[target], name, size) for target, name, size in links], data)
    if kind == "mutated":
        block = block + noise if noise else block[:-1]
    root_cid = put_pb(store, block)
    tree = UnixFSTree(store, root_cid)
    result = bounded(len(block), _read_all, tree, per_byte=4096)
    assert isinstance(result, (list, HaloDBError)), result


@fuzz(60)
@given(st.sampled_from(["dag-pb", "raw", "dag-cbor"]), st.one_of(st.binary(max_size=48), mutated(PB_NODES)))
def test_decode_node_of_any_block(codec: str, block: bytes) -> None:
    from halodb.ipld import DAG_CBOR, DAG_PB, RAW

    code = {"dag-pb": DAG_PB, "raw": RAW, "dag-cbor": DAG_CBOR}[codec]
    cid = CID(bytes([0x01, code, 0x12, 0x20]) + bytes(32))
    result = bounded(len(block), decode_node, cid, block)
    assert not isinstance(result, HaloDBError) or isinstance(result, UnixFSError), result
