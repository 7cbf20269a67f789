"""Fuzz: IPNS records and names (``halodb.naming.ipns_record``).

A gateway's record is bytes from outside, so the inputs are: raw bytes; a valid record
(signed here with a fixed Ed25519 key) with bytes flipped, cut and spliced; and records
whose signed DAG-CBOR ``data`` is validly signed but holds wrong types and values (what a
careless or hostile key holder can publish), with protobuf copies that agree or not. Claims:
:func:`verify_record` gives a record or a ``VerificationError``, a record it accepts has a
sequence and TTL in the 64-bit range, and a valid record comes back as it was signed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st
from multiformats import multibase

from halodb.errors import EncodeError, VerificationError
from halodb.ipld import CID, encode
from halodb.ipld.protobuf import encode_field, encode_varint
from halodb.naming.ipns_record import SIGNATURE_PREFIX, IPNSRecord, key_pb_of, public_key_of, verify_record

from .support import EDGE_INTS, ODD_TEXT, bounded, cids, data_model, fuzz, mutated, outcome

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes_raw()
_KEY_PB = key_pb_of(PUBLIC)
#: the name of KEY: a CIDv1 (libp2p-key) of the identity multihash of its protobuf public key
NAME = multibase.encode(b"\x01\x72\x00" + encode_varint(len(_KEY_PB)) + _KEY_PB, "base36")
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TARGET = CID.for_bytes(b"head")


def _fields(value: bytes, sequence: Any = 3, ttl: Any = 60 * 10**9, validity: bytes = b"2030-01-01T00:00:00Z") -> dict[str, Any]:
    return {"Value": value, "Validity": validity, "ValidityType": 0, "Sequence": sequence, "TTL": ttl}


def sign(fields: dict[str, Any], proto: dict[int, int | bytes] | None = None, *, copies: bool = True) -> bytes:
    """A serialized IpnsEntry for ``fields`` signed by KEY; ``proto`` overrides protobuf fields."""
    data = encode(fields)
    out: dict[int, int | bytes] = {}
    if copies:  # the V1 protobuf copies of the signed fields, as Kubo writes them
        for number, name in ((1, "Value"), (3, "ValidityType"), (4, "Validity"), (5, "Sequence"), (6, "TTL")):
            v = fields.get(name)
            if isinstance(v, bytes) or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64):
                out[number] = v
    out.update({7: _KEY_PB, 8: KEY.sign(SIGNATURE_PREFIX + data), 9: data})
    out.update(proto or {})
    return b"".join(encode_field(n, v) for n, v in sorted(out.items()))


VALID = sign(_fields(b"/ipfs/" + str(TARGET).encode()))

WRONG = st.one_of(data_model(max_leaves=4), EDGE_INTS, st.floats(), ODD_TEXT)


@st.composite
def signed_records(draw: st.DrawFn) -> bytes:
    """Records signed by the name's key whose contents are wrong in one or more ways."""
    fields = _fields(b"/ipfs/" + str(draw(cids())).encode())
    for key in draw(st.lists(st.sampled_from(sorted(fields) + ["Extra"]), max_size=3)):
        action = draw(st.sampled_from(["replace", "delete"]))
        if action == "delete":
            fields.pop(key, None)
        else:
            fields[key] = draw(st.one_of(WRONG, st.sampled_from([
                b"/ipfs/", b"/ipfs/" + b"Qm" * 20, b"/ipns/x", b"/ipfs/\xff", b"not a time", b"9999-12-31T23:59:59-01:00",
                b"0001-01-01T00:00:00+01:00", b"2030-01-01T00:00:00.123456789Z", -1, 2**63, True,
            ])))
    for key in list(fields):  # what no DAG-CBOR can hold (a lone surrogate, a 5000-digit integer) nobody can sign
        if isinstance(outcome(encode, fields[key]), EncodeError):
            del fields[key]
    proto = draw(st.dictionaries(st.integers(1, 12), st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=8)), max_size=2))
    return sign(fields, proto, copies=draw(st.booleans()))


def _check(raw: bytes) -> None:
    result = bounded(len(raw), verify_record, NAME, raw, now=NOW)
    assert isinstance(result, (IPNSRecord, VerificationError)), result
    if isinstance(result, IPNSRecord):
        assert isinstance(result.cid, CID)
        assert type(result.sequence) is int and 0 <= result.sequence < 2**64
        assert result.ttl is None or (type(result.ttl) is int and 0 <= result.ttl)


@fuzz(80)
@given(signed_records())
@example(sign(_fields(b"/ipfs/" + str(TARGET).encode(), ttl=-(10**9))))  # a negative TTL: was accepted as -1 s
@example(sign(_fields(b"/ipfs/" + str(TARGET).encode(), sequence=-5)))  # a negative Sequence: was accepted
@example(sign(_fields(b"/ipfs/" + str(TARGET).encode(), sequence=True)))  # a boolean Sequence: was accepted as 1
@example(sign(_fields(b"/ipfs/" + str(TARGET).encode(), validity=b"0001-01-01T00:00:00+01:00")))
def test_signed_records_with_wrong_contents(raw: bytes) -> None:
    _check(raw)


@fuzz(100)
@given(st.one_of(st.binary(max_size=200), mutated(st.just(VALID), max_edits=3)))
@example(VALID[:-1])
@example(VALID + b"\x00")
def test_any_bytes_as_a_record(raw: bytes) -> None:
    _check(raw)


@fuzz(30)
@given(cids(), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_a_valid_record_reads_as_signed(target: CID, sequence: int, ttl: int) -> None:
    raw = sign(_fields(b"/ipfs/" + str(target).encode(), sequence=sequence, ttl=ttl))
    record = verify_record(NAME, raw, now=NOW)
    assert (record.cid, record.sequence, record.ttl) == (target, sequence, (ttl + 999_999_999) // 10**9)


@fuzz(100)
@given(st.one_of(ODD_TEXT, mutated(st.just(NAME.encode()), max_edits=2).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["12D3KooW", "Qm", "k51", "bafkqaaa", "12D3Koo\ud800", "k" + "1" * 60])))
@example("k")  # one character of a multibase: was an IndexError from multiformats (so was "0", "b", "z")
def test_any_text_as_a_name(name: str) -> None:
    key = outcome(public_key_of, name)
    assert isinstance(key, (bytes, VerificationError)), key
    if isinstance(key, bytes):
        assert len(key) == 32
