"""Fuzz: DAG-CBOR decoding through the wrapper (``halodb.ipld.codec``), CIDs, block links.

Inputs: raw bytes; valid encodings (of generated values and of the ipld/codec-fixtures
blocks) with bytes flipped, cut and spliced; hostile headers (lengths far beyond the
input, nesting thousands deep). Claims: ``decode`` gives a value or a ``DecodeError`` within
memory linear in the input; a block it accepts is canonical (re-encodes to the same bytes)
and reads the same through the reference decoder (which refuses, with a ``DecodeError``, only
links whose codes the multiformats tables lack); ``decode(encode(x)) == x``; ``encode``
of anything gives bytes or an ``EncodeError``; a CID parses or is a ``CIDError``, and one
that parses has one text form.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from halodb.errors import CIDError, DecodeError, EncodeError, HaloDBError
from halodb.ipld import CID, block_links, decode, decode_reference, encode, make_block
from halodb.ipld.limits import MAX_NESTING

from ..conftest import SHARED_DATA
from ..requirements import require
from .support import EDGE_INTS, ODD_TEXT, bounded, cids, data_model, fuzz, mutated, nested, outcome

FIXTURES = SHARED_DATA / "ipld-codec-fixtures" / "fixtures"


def _fixture_blocks() -> list[bytes]:
    return [p.read_bytes() for p in sorted(FIXTURES.glob("*/*.dag-cbor")) if p.stat().st_size <= 4096]


FIXTURE_BLOCKS = _fixture_blocks()
#: valid blocks to mutate: the codec fixtures (when present) and encodings of generated values
VALID_BLOCKS = st.one_of(
    *([st.sampled_from(FIXTURE_BLOCKS)] if FIXTURE_BLOCKS else []),
    data_model().map(encode),
)
BLOCKS = st.one_of(st.binary(max_size=64), mutated(VALID_BLOCKS))


def _same(a: Any, b: Any) -> bool:
    """Data-model equality that also tells 0.0 from -0.0 and int from float."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_the_fixtures_seed_the_mutations() -> None:
    require(FIXTURES.is_dir(), f"the IPLD codec fixtures are missing: expected them at {FIXTURES}")
    assert len(FIXTURE_BLOCKS) >= 100


@fuzz(150)
@given(BLOCKS)
@example(b"\x81" * 2_000 + b"\x00")  # a list nested 2,000 deep: a RecursionError from libipld
@example(b"\xa1\x61a" * 2_000 + b"\x00")  # maps nested 2,000 deep
@example(b"\x9b\x00\x00\x00\x10\x00\x00\x00\x00")  # a list of 2**36 items in 9 bytes
@example(b"\xbb\x00\x00\x00\x10\x00\x00\x00\x00")  # a map of 2**36 pairs
@example(b"\x5b\x00\x00\x00\x10\x00\x00\x00\x00")  # a byte string of 2**36 bytes
@example(b"\xd8\x2a\x45\x00\x01\x55\x00\x00")  # a link to an empty identity CID
@example(b"\xd8\x2a\x41\x00")  # a link of no CID at all
@example(b"\xfb\x80\x00\x00\x00\x00\x00\x00\x00")  # -0.0
@example(b"\x1a\x00\x00\x00\x00")  # 0 in five bytes: decode accepts it, though DAG-CBOR integers must be minimal
def test_decode_gives_a_value_or_a_decode_error(data: bytes) -> None:
    result = bounded(len(data), decode, data)
    assert not isinstance(result, HaloDBError) or isinstance(result, DecodeError), result
    if not isinstance(result, HaloDBError):
        assert encode(result) == data, "decode accepted a block that is not canonical DAG-CBOR"


@fuzz(100)
@given(BLOCKS)
@example(b"[\x80\x00\x00\x00\x00\x00\x00\x00")  # a byte string of 2**63 bytes: an OverflowError from decode_reference
# links whose hash code multiformats does not know: its MulticodecKeyError / MultihashKeyError escaped decode_reference
@example(b"\xa1\x60\xd8\x2a\x58\x18\x00\x01\x00\x39\x13" + bytes(19))  # hash 0x39, 19-byte digest: fast decode reads it
@example(b"\xa1\x60\xd8\x2a\x58\x18\x00\x01\x00\x55\x13" + bytes(19))  # 0x55 (raw) is a multicodec, no hash
@example(b"\xa1\x60\xd8\x2a\x58\x18\x00\x01\x00\x39\x00" + bytes(19))  # the find itself: an empty digest, 19 bytes more
def test_the_fast_decoder_and_the_reference_agree(data: bytes) -> None:
    fast = outcome(decode, data)
    reference = outcome(decode_reference, data)
    assert not isinstance(reference, HaloDBError) or isinstance(reference, DecodeError), reference
    if not isinstance(fast, HaloDBError) and not isinstance(reference, HaloDBError):
        assert _same(fast, reference)


@fuzz(60)
@given(data_model(max_leaves=40))
def test_decode_of_encode_is_the_value(value: Any) -> None:
    block = encode(value)
    assert decode(block) == value
    assert encode(decode(block)) == block


@fuzz(40)
@given(st.integers(1, 3 * MAX_NESTING), st.sampled_from(["list", "map"]))
def test_deep_values_encode_or_refuse(depth: int, kind: str) -> None:
    value = nested(depth, kind=kind)
    block = outcome(encode, value)
    if isinstance(block, bytes):
        assert outcome(decode, block) == value or isinstance(outcome(decode, block), DecodeError)


def _anything() -> st.SearchStrategy[Any]:
    """Python values a caller might hand to ``encode``: most are not in the data model."""
    leaves = st.one_of(
        EDGE_INTS, st.floats(), ODD_TEXT, st.binary(max_size=8), cids(), st.none(), st.booleans(),
        st.just(b"x").map(bytearray), st.sets(st.integers(), max_size=2), st.just(object()), st.complex_numbers(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(st.one_of(ODD_TEXT, st.integers(), st.binary(max_size=2)), inner, max_size=3),
        ),
        max_leaves=12,
    )


@fuzz(100)
@given(_anything())
@example(nested(200))  # far deeper than MAX_NESTING
@example(10**5000)
@example({"a": "\ud800"})  # a lone surrogate cannot be UTF-8
def test_encode_gives_bytes_or_an_encode_error(value: Any) -> None:
    result = outcome(encode, value)
    assert isinstance(result, (bytes, EncodeError)), result


@fuzz(80)
@given(BLOCKS, st.sampled_from(["dag-cbor", "raw"]))
def test_block_links_of_any_block(data: bytes, codec: str) -> None:
    from halodb.ipld import DAG_CBOR, RAW

    cid = CID.for_bytes(data, DAG_CBOR if codec == "dag-cbor" else RAW)
    links = outcome(block_links, cid, data)
    assert isinstance(links, (list, DecodeError)), links
    if isinstance(links, list):
        assert all(isinstance(link, CID) for link in links)


# -- CIDs ------------------------------------------------------------------------------------
def _cid_texts() -> st.SearchStrategy[str]:
    valid = cids().map(str)
    return st.one_of(
        ODD_TEXT, valid, mutated(valid.map(str.encode), max_edits=2).map(lambda b: b.decode("latin-1")),
        valid.map(lambda s: "/ipfs/" + s), valid.map(lambda s: f" {s.upper()} "),
    )


def _check_parsed(cid: CID) -> None:
    """Every property of a parsed CID works, and its text form parses back to it."""
    assert CID.parse(str(cid)) == cid
    assert CID.parse(cid.buffer) == cid
    assert cid.version in (0, 1)
    assert isinstance(cid.codec, int) and isinstance(cid.multihash, bytes)
    assert cid.verify(b"") in (True, False)
    assert cid.inline_data is None or isinstance(cid.inline_data, bytes)


@fuzz(150)
@given(_cid_texts())
@example("bafkqaaa")  # the empty identity CID
@example("\ud800")
def test_cid_text(text: str) -> None:
    cid = outcome(CID.parse, text)
    assert isinstance(cid, (CID, CIDError)), cid
    if isinstance(cid, CID):
        _check_parsed(cid)


@fuzz(150)
@given(st.one_of(st.binary(max_size=48), mutated(cids().map(bytes), max_edits=2)))
@example(b"\x01\xf1\x00\x12\x20" + bytes(32))  # codec 0x71 as a two-byte varint: was accepted, and its multihash misread
@example(b"\x01\x71\x12\xa0\x00" + bytes(32))  # digest length 32 as a two-byte varint
@example(b"\x01\x71")
def test_binary_cid(buf: bytes) -> None:
    cid = outcome(CID.parse, buf)
    assert isinstance(cid, (CID, CIDError)), cid
    if isinstance(cid, CID):
        _check_parsed(cid)


@fuzz(30)
@given(data_model())
def test_make_block_names_the_block(value: Any) -> None:
    cid, block = make_block(value)
    assert cid.verify(block) and decode(block, cid=cid) == value
