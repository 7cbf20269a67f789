"""The IPLD layer against the ipld/codec-fixtures and the dag-cbor reference implementation."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID as MFCID

from halodb.errors import CIDError, DecodeError, EncodeError, VerificationError
from halodb.ipld import (
    CID,
    DAG_CBOR,
    DAG_PB,
    RAW,
    decode,
    decode_reference,
    encode,
    encode_reference,
    make_block,
    verify_block,
)
from halodb.ipld.codec import decode_each
from halodb.ipld.limits import MAX_NESTING

from .conftest import SHARED_DATA
from .requirements import require

FIXTURES = SHARED_DATA / "ipld-codec-fixtures"


def require_fixtures() -> Path:
    """The codec fixtures directory; fails under CI and skips elsewhere when it is missing."""
    require((FIXTURES / "fixtures").is_dir(), f"the IPLD codec fixtures are missing: expected them at {FIXTURES}")
    return FIXTURES


def _positive() -> list[Path]:
    files = sorted((FIXTURES / "fixtures").glob("*/*.dag-cbor"))
    return files or [FIXTURES / "fixtures" / "missing"]


def _negative() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for path in sorted((FIXTURES / "negative-fixtures" / "dag-cbor" / "decode").glob("*.json")):
        for entry in json.loads(path.read_text()):
            if "hex" in entry:
                cases.append((f"{path.stem}: {entry['name']}", entry["hex"]))
    return cases or [("missing", "")]


# == codec fixtures ========================================================================
@pytest.mark.parametrize("path", _positive(), ids=lambda p: p.parent.name)
def test_positive_fixture(path: Path) -> None:
    require_fixtures()
    data = path.read_bytes()
    value = decode(data)
    assert encode(value) == data
    assert CID.for_bytes(data, DAG_CBOR) == CID.parse(path.stem)
    assert decode_reference(data) == value


def test_fixture_count() -> None:
    require_fixtures()
    assert len(_positive()) >= 100


@pytest.mark.parametrize("name, hex_", _negative(), ids=lambda v: str(v)[:40])
def test_negative_decode_fixture(name: str, hex_: str) -> None:
    require_fixtures()
    data = bytes.fromhex(hex_)
    with pytest.raises(DecodeError):
        decode(data)
    with pytest.raises(DecodeError):
        decode_reference(data)


def test_fixture_links_surface_as_cids() -> None:
    fixtures = require_fixtures() / "fixtures"
    (path,) = (fixtures / "cid-arrayof").glob("*.dag-cbor")
    value = decode(path.read_bytes())
    assert isinstance(value, list) and value and all(isinstance(v, CID) for v in value)


@pytest.mark.parametrize(
    "text",
    [
        "bafy",
        "",
        "Qm",
        "zzzz",
        "hello world",
        "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJB",  # one character short
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwl",  # one character short
    ],
)
def test_invalid_cid_text(text: str) -> None:
    with pytest.raises(CIDError) as info:
        CID.parse(text)
    assert info.value.value == text


# == CIDs ==================================================================================
V0 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"
V1 = "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm"


def test_cid_v1_round_trip() -> None:
    cid = CID.parse(V1)
    assert str(cid) == V1
    assert cid.version == 1 and cid.codec == DAG_CBOR
    assert CID.parse(cid.buffer) == cid
    assert CID.parse(f"/ipfs/{V1}") == cid
    assert CID.parse(cid) is cid
    assert repr(cid) == f"CID('{V1}')"
    assert bytes(cid) == cid.buffer
    assert MFCID.decode(cid.buffer).encode("base32") == V1


def test_cid_v0_round_trip() -> None:
    cid = CID.parse(V0)
    assert str(cid) == V0
    assert cid.version == 0 and cid.codec == DAG_PB
    assert len(cid.buffer) == 34 and cid.buffer[:2] == b"\x12\x20"
    assert cid.multihash == cid.buffer
    assert CID.parse(cid.buffer) == cid
    assert str(MFCID.decode(V0)) == V0


def test_cid_other_multibase() -> None:
    cid = CID.parse(V1)
    base58 = MFCID.decode(V1).encode("base58btc")
    assert base58.startswith("z")
    assert CID.parse(base58) == cid
    assert str(CID.parse(base58)) == V1


def test_cid_for_bytes_and_verify() -> None:
    cid = CID.for_bytes(b"hello", RAW)
    assert str(cid) == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert cid.codec == RAW
    assert cid.multihash[2:] == hashlib.sha256(b"hello").digest()
    assert cid.verify(b"hello") and not cid.verify(b"hellO")
    verify_block(cid, b"hello")
    with pytest.raises(VerificationError) as info:
        verify_block(cid, b"bye", source="test")
    assert info.value.cid == cid and info.value.source == "test"
    with pytest.raises(CIDError):
        CID.for_bytes(b"x", codec=0x70)


def test_cid_equality_hash_order() -> None:
    a, b = CID.for_bytes(b"a", RAW), CID.for_bytes(b"b", RAW)
    assert a == CID.for_bytes(b"a", RAW) and a != b and a != str(a)
    assert len({a, b, CID.parse(str(a))}) == 2
    assert sorted([b, a]) == sorted([a, b])


def test_identity_hash_cid_is_parsed_but_never_verifies() -> None:
    cid = CID.parse("bafkqabiaaebagba")  # identity multihash of 4 raw bytes
    assert cid.codec == RAW
    assert not cid.verify(bytes([1, 2, 3, 4]))


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"\x02\x71\x12\x20" + bytes(32),  # version 2
        b"\x01\x71\x12\x20" + bytes(31),  # digest too short
        b"\x01\x71\x12\x20" + bytes(33),  # digest too long
        b"\x01\x71\x92",  # truncated varint
        b"\x12\x20" + bytes(31),  # CIDv0 too short
    ],
)
def test_invalid_binary_cid(buf: bytes) -> None:
    with pytest.raises(CIDError):
        CID.parse(buf)


def test_cid_parse_rejects_other_types() -> None:
    with pytest.raises(CIDError):
        CID.parse(42)  # type: ignore[arg-type]


# == the libipld wrapper ===================================================================
LINK = CID.for_bytes(b"leaf", RAW)


def test_links_surface_as_cid_objects() -> None:
    value = decode(encode({"a": [1, LINK], "b": {"c": LINK}}))
    assert type(value["a"][1]) is CID and value["a"][1] == LINK
    assert type(value["b"]["c"]) is CID


def test_bytes_that_parse_as_a_cid_stay_bytes() -> None:
    for raw in (LINK.buffer, CID.parse(V0).buffer):
        data = encode({"raw": raw})
        assert data == encode_reference({"raw": raw})
        value = decode(data)
        assert type(value["raw"]) is bytes and value["raw"] == raw
        assert encode(raw) == bytes(dag_cbor.encode(raw))
        assert decode(encode(raw)) == raw and type(decode(encode(raw))) is bytes


@pytest.mark.parametrize("first", range(256))
def test_raw_bytes_of_every_first_byte_encode_as_the_reference_does(first: int) -> None:
    """Bytes that libipld might read as a CID (first byte 0x01 or 0x12) go to the reference
    encoder; all others to libipld, which must encode them as bytes, as the reference does:
    also when what follows the first byte looks like the rest of a CID."""
    rest = [b"", LINK.buffer[1:], CID.parse(V0).buffer[1:], LINK.buffer[1:] + b"more", b"\x00" * 40,
            b"\x71\x12\x20" + bytes(range(32)), b"\x20" + bytes(32)]
    for tail in rest:
        raw = bytes([first]) + tail
        for value in (raw, {"item": raw, "data": "x"}, [LINK, raw]):
            data = encode(value)
            assert data == encode_reference(value), (first, tail)
            back = decode(data)
            assert back == value and type(back if type(value) is bytes else
                                          back["item"] if type(value) is dict else back[1]) is bytes
    assert encode(b"") == encode_reference(b"")


def test_link_and_raw_bytes_in_one_value() -> None:
    value = {"link": LINK, "raw": LINK.buffer, "both": [LINK, LINK.buffer, b"\x00"]}
    data = encode(value)
    assert data == bytes(dag_cbor.encode({"link": MFCID.decode(LINK.buffer), "raw": LINK.buffer,
                                           "both": [MFCID.decode(LINK.buffer), LINK.buffer, b"\x00"]}))
    back = decode(data)
    assert back == value
    assert type(back["link"]) is CID and type(back["raw"]) is bytes
    assert [type(v) for v in back["both"]] == [CID, bytes, bytes]


@pytest.mark.parametrize("hash_code, why", [(0x39, "No multicodec is known with unwrapped code 0x39"),
                                             (0x55, "Multicodec 0x55 is not a multihash")])
def test_a_link_with_a_code_multiformats_does_not_know(hash_code: int, why: str) -> None:
    """Fuzz find: multiformats' MulticodecKeyError / MultihashKeyError escaped decode_reference
    (and encode_reference). Such a link is a well-formed CID: the fast codec reads and writes it;
    the reference codec cannot represent it and refuses it with HaloDB's errors."""
    link = CID.parse(bytes([0x01, 0x00, hash_code, 0x13]) + bytes(19))  # hash ``hash_code``, 19-byte digest
    data = bytes.fromhex("a160d82a5818") + b"\x00" + link.buffer  # {"": link}
    assert decode(data) == {"": link} and encode({"": link}) == data
    block = CID.for_bytes(data)
    with pytest.raises(DecodeError, match=why) as info:
        decode_reference(data, cid=block)
    assert info.value.cid == block
    with pytest.raises(DecodeError):  # keys out of order: decode itself asks the reference decoder
        decode(bytes.fromhex("a2616101") + data[1:])
    with pytest.raises(EncodeError, match=why) as error:  # raw bytes that might be a CID send the value to the reference encoder
        encode({"": link, "raw": b"\x01"})
    assert error.value.path == "/"


@pytest.mark.parametrize("link_hex", [
    "01003900" + "00" * 19,  # the fuzz find: an empty digest of hash 0x39, then 19 bytes more
    "01711220" + "ab" * 32 + "010203",  # a whole sha2-256 CID, then 3 bytes more
])
def test_a_link_with_bytes_after_its_multihash_is_refused_by_both_decoders(link_hex: str) -> None:
    """libipld's CID parser ignores bytes after the multihash; a link is exactly one CID."""
    buf = bytes.fromhex(link_hex)
    data = bytes.fromhex("a160d82a58") + bytes([len(buf) + 1, 0]) + buf
    with pytest.raises(CIDError):
        CID.parse(buf)
    for decoder in (decode, decode_reference):
        with pytest.raises(DecodeError):
            decoder(data)


def test_make_block() -> None:
    cid, data = make_block({"x": LINK})
    assert cid == CID.for_bytes(data, DAG_CBOR) and decode(data) == {"x": LINK}


@pytest.mark.parametrize(
    "value, path",
    [
        (math.nan, "/"),
        ({"a": math.inf}, "/a"),
        ({"a": [1, 2, -math.inf]}, "/a/2"),
        ({"raw": b"x", "f": [math.nan]}, "/f/0"),  # also when raw bytes force the reference codec
        ({"a": {1: "x"}}, "/a"),
        ({2: "x"}, "/"),
        ({"raw": b"x", "m": {b"k": 1}}, "/m"),
        ({"big": 2**64}, "/big"),
        ({"raw": b"x", "small": [-(2**64) - 1]}, "/small/0"),
        ({"s": {1, 2}}, "/s"),
    ],
)
def test_encode_error_carries_path(value: Any, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert info.value.path == path


@pytest.mark.parametrize("hex_", ["", "ff", "a1", "a10102", "fb7ff8000000000000", "d82a4100", "c0617a"])
def test_invalid_dag_cbor_is_a_decode_error(hex_: str) -> None:
    cid = CID.for_bytes(bytes.fromhex(hex_))
    with pytest.raises(DecodeError) as info:
        decode(bytes.fromhex(hex_), cid=cid)
    assert info.value.cid == cid


def test_negative_zero_is_encoded_as_zero() -> None:
    """DAG-CBOR forbids -0.0 (ipld/ipld#380): encode it as 0.0 on every path, reject it on decode."""
    zero = bytes.fromhex("fb0000000000000000")
    assert encode(-0.0) == zero
    assert encode_reference(-0.0) == zero
    assert encode({"raw": b"x", "z": -0.0}) == encode({"raw": b"x", "z": 0.0})
    value = decode(encode({"raw": b"x", "z": [-0.0]}))
    assert math.copysign(1.0, value["z"][0]) == 1.0
    with pytest.raises(DecodeError):
        decode(bytes.fromhex("fb8000000000000000"))


def test_integer_bounds() -> None:
    for n in (2**64 - 1, -(2**64), 2**63, -(2**63) - 1, 0, -1):
        assert encode(n) == bytes(dag_cbor.encode(n))
        assert decode(encode(n)) == n


# == Hypothesis: differential against dag-cbor ==============================================
_cids = st.one_of(
    st.builds(lambda d: CID(b"\x01\x71\x12\x20" + d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(b"\x01\x55\x12\x20" + d), st.binary(min_size=32, max_size=32)),
    st.builds(lambda d: CID(b"\x12\x20" + d), st.binary(min_size=32, max_size=32)),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.binary(max_size=40),
    _cids,
)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=25,
)
values_without_bytes = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        _cids,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=25,
)


def to_multiformats(value: Any) -> Any:
    """The same value in the data model of the reference ``dag_cbor`` package."""
    if type(value) is float and value == 0.0:
        return 0.0  # the spec encodes -0.0 as 0.0; dag-cbor 0.3 predates that rule
    if isinstance(value, CID):
        return MFCID.decode(value.buffer)
    if isinstance(value, dict):
        return {k: to_multiformats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_multiformats(v) for v in value]
    return value


def normalized(value: Any) -> Any:
    """``value`` as it comes back from a round trip: -0.0 becomes 0.0."""
    if type(value) is float and value == 0.0:
        return 0.0
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (1 is not 1.0 or True, bytes are not a CID)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(values)
def test_encode_matches_reference_and_round_trips(value: Any) -> None:
    data = encode(value)
    assert data == bytes(dag_cbor.encode(to_multiformats(value)))
    assert same(decode(data), normalized(value))
    assert same(decode_reference(data), normalized(value))


@settings(max_examples=300, deadline=None)
@given(values_without_bytes)
def test_fast_path_matches_reference(value: Any) -> None:
    """Values without raw bytes take libipld's encoder; it must agree with the reference."""
    data = encode(value)
    assert data == encode_reference(value)
    assert same(decode(data), normalized(value))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_encode_json_agrees_with_encode_on_json_values(value: Any) -> None:
    """The fast path for checked JSON values (STAC items) writes the bytes encode writes."""
    from halodb.ipld.codec import encode_json

    assert encode_json(value) == encode(value)


#: what a tree entry's value is (index.model.Entry.to_ipld, a lookup tree's key or null, a
#: link), and bytes that begin like a CID or a map, which encode_shallow must hand to encode
_shallow = st.one_of(
    st.none(), st.text(max_size=10), _cids,
    st.dictionaries(st.text(max_size=6), st.one_of(
        st.none(), st.text(max_size=10), _cids, st.binary(max_size=40),
        st.builds(lambda d: b"\x01\x71\x12\x20" + d, st.binary(min_size=32, max_size=32)),
        st.builds(lambda d: b"\xa1" + d, st.binary(max_size=40))), max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_shallow, values))
def test_encode_shallow_writes_what_encode_writes(value: Any) -> None:
    """The tree builder's encoder: shallow values take its own pass, any other value encode."""
    from halodb.ipld.codec import encode_shallow

    assert encode_shallow(value) == encode(value)


@given(st.integers(0, 7), st.integers(0, 2**64 - 1))
def test_cbor_head_is_the_shortest_head(major: int, n: int) -> None:
    from halodb.ipld.codec import cbor_head

    head = cbor_head(major, n)  # an unsigned integer's encoding (major type 0), in another major type
    assert head[0] >> 5 == major and bytes((head[0] & 0x1F,)) + head[1:] == encode(n)


def test_encode_json_of_a_value_that_is_not_json_says_what_encode_says() -> None:
    from halodb.ipld.codec import encode_json

    with pytest.raises(EncodeError, match="/a"):
        encode_json({"a": {1, 2}})  # a set: libipld refuses it, encode names where


def _decoded_or_error(data: bytes) -> Any:
    try:
        return decode(data)
    except DecodeError as exc:
        return exc


#: blocks decode refuses or sends to the reference decoder: not minimal, keys out of order,
#: nested too deep, a link, a bytes value libipld would read as a link, not CBOR at all
_ODD_BLOCKS = [
    b"\x19\x00\x01", b"\xa2\x61b\x01\x61a\x02", encode([[[1]]])[:-1], b"\xa0\x00",
    b"\x81" * (MAX_NESTING + 1) + b"\x01", b"\x81" * MAX_NESTING + b"\x01",
    encode({"l": CID.for_bytes(b"x")}), bytes.fromhex("41") + b"\x01", b"\xff", b"",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(values.map(encode), st.sampled_from(_ODD_BLOCKS), st.binary(max_size=12)), max_size=12))
def test_decode_each_answers_as_decode_does(blocks: list[bytes]) -> None:
    """The batch decoder (one re-encoding of the whole batch) gives each block's decode()
    value or DecodeError."""
    got = decode_each(blocks)
    assert len(got) == len(blocks)
    for block, mine in zip(blocks, got):
        theirs = _decoded_or_error(block)
        if isinstance(theirs, DecodeError):
            assert type(mine) is type(theirs) and str(mine) == str(theirs), block
        else:
            assert same(mine, theirs), block
