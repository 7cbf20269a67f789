"""Signed IPNS records, verified here: IPNS names resolved through trustless gateways.

A gateway answers ``GET /ipns/<name>`` with ``Accept: application/vnd.ipfs.ipns-record``
by the record itself, as signed by the name's key; nothing the gateway says is trusted.
:func:`verify_record` checks it the way the IPNS record specification asks:

* the name is a ``libp2p-key`` CID (``k51...``) or a peer ID (``12D3Koo...``) whose identity
  multihash holds an Ed25519 public key (RSA names, whose key is only hashed into the name,
  are refused with a clear error);
* ``signatureV2`` is a valid Ed25519 signature by that key over ``b"ipns-signature:" + data``;
* ``data`` is DAG-CBOR ``{Value, Validity, ValidityType, Sequence, TTL}``, and the protobuf
  copies of those fields, when present, agree with it;
* the record has not expired (``ValidityType`` 0: ``Validity`` is an RFC 3339 end of life),
  and ``Value`` is ``/ipfs/<cid>``.

Ed25519 comes from ``cryptography`` (the PyCA library). The TTL (nanoseconds in the record)
becomes seconds, so ``sync --watch`` paces itself by it.

A valid signature does not make a record current: a gateway can replay an older record the
key signed. :class:`GatewayIPNS` therefore remembers, per name, the highest ``Sequence`` it
accepted (:class:`SequenceMemory`, a small JSON file in the home's names folder) and treats
a gateway that offers a lower one like a failing gateway; when no gateway has a record at
least as new, resolving raises :class:`~halodb.errors.RewindError` naming both sequences.

>>> public_key_of("k51qzi5uqu5dh33489h32jlz1ss3r2es28v6gwcs9qlfd1u1z0cq2d0lgpuhp9").hex()[:16]
'2437e0d97d8a9870'
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cryptography.exceptions
import cryptography.utils
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from multiformats import CID as MFCID
from multiformats import multibase

from halodb.blockstore.gateway import GatewayStore
from halodb.errors import (
    BlockStoreError,
    CIDError,
    DecodeError,
    ErrorMap,
    NameNotFoundError,
    NamingError,
    ReadOnlyStoreError,
    ResolverError,
    RewindError,
    VerificationError,
)
from halodb.util.fs import write_json_atomic
from halodb.util.times import parse_time
from halodb.ipld import CID, decode
from halodb.naming.base import NameStore, Resolution
from halodb.ipld.protobuf import fields, read_varint

IPNS_RECORD = "application/vnd.ipfs.ipns-record"

SIGNATURE_PREFIX = b"ipns-signature:"
LIBP2P_KEY = 0x72
ED25519 = 1  # libp2p KeyType
MAX_RECORD_SIZE = 10 * 1024  # the specification's limit

# --- where httpx's and cryptography's exceptions become HaloDB errors ------------------------
#: Checking a record's Ed25519 signature: a signature that does not verify, or a key or
#: algorithm cryptography cannot use (its deprecation warning too, when warnings are errors),
#: means the record is not accepted.
_CRYPTOGRAPHY_EXCEPTIONS: tuple[type[BaseException], ...] = (
    cryptography.exceptions.InvalidSignature,
    cryptography.exceptions.InvalidKey,
    cryptography.exceptions.UnsupportedAlgorithm,
    cryptography.exceptions.InternalError,
    cryptography.exceptions.AlreadyFinalized,
    cryptography.exceptions.AlreadyUpdated,
    cryptography.exceptions.NotYetFinalized,
    cryptography.exceptions.InvalidTag,
    cryptography.utils.InterfaceNotImplemented,
    cryptography.utils.CryptographyDeprecationWarning,
)
CRYPTOGRAPHY: ErrorMap[VerificationError] = ErrorMap(
    "cryptography", "IPNS record signatures (Ed25519)", dict.fromkeys(_CRYPTOGRAPHY_EXCEPTIONS, VerificationError)
)


@dataclass(frozen=True)
class IPNSRecord:
    """A verified record: where the name points, its version, and how long it may be cached."""

    name: str
    cid: CID
    sequence: int
    ttl: int | None  #: seconds
    validity: datetime


def _fail(name: str, why: str) -> VerificationError:
    return VerificationError(f"IPNS record for {name} rejected: {why}", name=name)


def public_key_of(name: str) -> bytes:
    """The raw Ed25519 public key an IPNS name embeds (``k51...`` CID or ``12D3Koo...`` peer ID)."""
    try:
        if name.startswith(("12D3Koo", "Qm")):  # a peer ID: a base58btc multihash
            mh = bytes(multibase.decode("z" + name))
        else:
            cid = MFCID.decode(name)
            if cid.codec.code != LIBP2P_KEY:
                raise _fail(name, f"the name is a {cid.codec.name} CID, not a libp2p-key one")
            mh = bytes(cid.digest)
        code, size, start = _multihash_header(mh)
    except (ValueError, LookupError, DecodeError) as exc:  # multiformats raises IndexError for "k", "0"
        raise _fail(name, f"not an IPNS name ({exc})") from None
    if code != 0x00:
        raise _fail(name, "the key is only hashed into the name (RSA?); HaloDB verifies Ed25519 names only")
    key_pb = mh[start:start + size]
    key_type = key_data = None
    try:
        for number, _, value in fields(key_pb):
            if number == 1 and isinstance(value, int):
                key_type = value
            elif number == 2 and isinstance(value, bytes):
                key_data = value
    except DecodeError as exc:
        raise _fail(name, f"malformed public key ({exc})") from None
    if key_type != ED25519 or key_data is None or len(key_data) != 32:
        raise _fail(name, f"the name's key is not Ed25519 (type {key_type})")
    return key_data


def _multihash_header(mh: bytes) -> tuple[int, int, int]:
    code, pos = read_varint(mh, 0, len(mh))
    size, pos = read_varint(mh, pos, len(mh))
    if pos + size != len(mh):
        raise ValueError("multihash length does not match its digest")
    return code, size, pos


def verify_record(name: str, raw: bytes, *, now: datetime | None = None) -> IPNSRecord:
    """Check a serialized IPNS record for ``name`` (see the module docstring); the verified record."""
    if len(raw) > MAX_RECORD_SIZE:
        raise _fail(name, f"{len(raw)} bytes, more than the {MAX_RECORD_SIZE} the specification allows")
    key = public_key_of(name)
    proto: dict[int, int | bytes] = {}
    try:
        for number, _, field_value in fields(raw):
            proto[number] = field_value
    except DecodeError as exc:
        raise _fail(name, f"not a protobuf IpnsEntry ({exc})") from None
    data, signature = proto.get(9), proto.get(8)
    if not isinstance(data, bytes) or not isinstance(signature, bytes):
        raise _fail(name, "no signatureV2 or data (V1-only records are not accepted)")
    if 7 in proto and proto[7] != key_pb_of(key):
        raise _fail(name, "the embedded public key is not the name's")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, SIGNATURE_PREFIX + data)
    except CRYPTOGRAPHY.caught as exc:
        why = ("signatureV2 does not verify with the name's key" if isinstance(exc, InvalidSignature)
               else f"its signature cannot be checked ({type(exc).__name__}: {exc})")
        raise CRYPTOGRAPHY.translate(exc, f"IPNS record for {name} rejected: {why}", name=name) from None
    try:
        fields_ = decode(data)
    except DecodeError as exc:
        raise _fail(name, f"data is not DAG-CBOR ({exc})") from None
    if not isinstance(fields_, dict):
        raise _fail(name, "data is not a map")
    for number, field in ((1, "Value"), (4, "Validity"), (3, "ValidityType"), (5, "Sequence"), (6, "TTL")):
        if number in proto and proto[number] != fields_.get(field):
            raise _fail(name, f"the protobuf {field} differs from the signed data's")
    value, validity = fields_.get("Value"), fields_.get("Validity")
    if fields_.get("ValidityType") != 0 or not isinstance(validity, bytes):
        raise _fail(name, "unknown ValidityType (only 0, end of life, is defined)")
    try:
        eol = parse_time(validity.decode())
    except (UnicodeDecodeError, ValueError):
        raise _fail(name, f"Validity {validity!r} is not an RFC 3339 time") from None
    if eol < (now or datetime.now(timezone.utc)):
        raise _fail(name, f"the record expired at {validity.decode()}")
    if not isinstance(value, bytes) or not value.startswith(b"/ipfs/"):
        raise _fail(name, f"Value {value!r} is not an /ipfs/<cid> path")
    try:
        cid = CID.parse(value[len(b"/ipfs/"):].decode().split("/")[0])
    except (UnicodeDecodeError, CIDError) as exc:
        raise _fail(name, f"Value {value!r}: {exc}") from None
    sequence, ttl = fields_.get("Sequence", 0), fields_.get("TTL")
    if not _uint64(sequence):
        raise _fail(name, f"Sequence {sequence!r} is not an unsigned 64-bit integer")
    if ttl is not None and not _uint64(ttl):
        raise _fail(name, f"TTL {ttl!r} is not an unsigned 64-bit integer (nanoseconds)")
    return IPNSRecord(
        name=name, cid=cid, sequence=sequence,
        ttl=(ttl + 999_999_999) // 1_000_000_000 if ttl is not None else None, validity=eol,
    )


def _uint64(value: Any) -> bool:
    """Whether a signed field holds a uint64, as the record specification types Sequence and TTL."""
    return type(value) is int and 0 <= value < 1 << 64


def key_pb_of(key: bytes) -> bytes:
    """The libp2p protobuf ``PublicKey{Type: Ed25519, Data: key}``."""
    return bytes([0x08, ED25519, 0x12, len(key)]) + key


class SequenceMemory:
    """The highest IPNS ``Sequence`` accepted per name (and that record's value), kept in the
    JSON file ``path`` so a replayed older record is refused across runs.

    Entries are keyed by the name's Ed25519 public key, so the ``k51...`` and ``12D3Koo...``
    spellings of one name share theirs. Updates hold ``path.parent / ".lock"`` (the names
    folder's lock) and write atomically; the sequence recorded never goes down.

    >>> import tempfile, pathlib
    >>> memory = SequenceMemory(pathlib.Path(tempfile.mkdtemp()) / ".ipns-sequences.json")
    >>> memory.last(b"k" * 32) is None
    True
    >>> memory.accept(b"k" * 32, "k51...", 2, CID.for_bytes(b"v2"))
    >>> memory.accept(b"k" * 32, "k51...", 1, CID.for_bytes(b"v1"))  # never goes down
    >>> memory.last(b"k" * 32)[0]
    2
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise NamingError(f"cannot read the IPNS sequences accepted before from {self.path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("names", {}), dict):
            raise NamingError(f"{self.path} is not a file of IPNS sequences (a JSON object with 'names')")
        names: dict[str, Any] = data.get("names", {})
        for key, entry in names.items():  # a malformed entry would silently turn replay protection off
            sequence = entry.get("sequence") if isinstance(entry, dict) else None
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
                raise NamingError(f"{self.path} is corrupt: the entry for key {key[:16]}... has no sequence number "
                                  "(a whole number, 0 or more)")
            if value is not None:
                try:
                    CID.parse(value)
                except CIDError as exc:
                    raise NamingError(f"{self.path} is corrupt: the entry for key {key[:16]}...: {exc}") from None
        return names

    def last(self, key: bytes) -> tuple[int, CID | None] | None:
        """The highest sequence accepted for the name of public key ``key``, and its value."""
        entry = self._read().get(key.hex())
        if entry is None:
            return None
        value = entry.get("value")
        return entry["sequence"], None if value is None else CID.parse(value)

    def accept(self, key: bytes, name: str, sequence: int, value: CID) -> None:
        """Record that a record of ``sequence`` was accepted (a no-op unless it is higher)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.parent / ".lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                names = self._read()
                entry = names.get(key.hex())
                if entry is not None and entry["sequence"] >= sequence:
                    return
                names[key.hex()] = {"name": name, "sequence": sequence, "value": str(value)}
                write_json_atomic(self.path, {"version": 1, "names": names}, indent=1)
        except OSError as exc:
            raise NamingError(f"cannot record the IPNS sequence accepted for {name} in {self.path}: {exc}",
                              name=name) from None


class GatewayIPNS(NameStore):
    """IPNS names resolved through trustless gateways, each record verified here (read-only).

    With ``sequences`` (a :class:`SequenceMemory`; the registry keeps one in the home's names
    folder) a record whose ``Sequence`` is lower than the highest accepted before for that
    name is refused like a record that fails verification: the next gateway is asked.
    """

    supports_publish = False

    def __init__(self, gateways: GatewayStore, sequences: SequenceMemory | None = None) -> None:
        self.gateways = gateways
        self.sequences = sequences

    def resolve(self, name: str) -> Resolution:
        if not name.startswith(("k", "12D3Koo", "b")):
            raise NameNotFoundError(
                f"{name!r} is not an IPNS name (k51...): key names need the Kubo node that holds the key "
                "(--store kubo+http://... or HALODB_KUBO)", name=name)
        failures = []
        stale: list[tuple[str, IPNSRecord]] = []  # valid records older than one accepted before
        last: tuple[int, CID | None] | None = None
        for gateway in self.gateways.gateways:
            try:  # within the gateway store's deadline, and never more than MAX_RECORD_SIZE bytes read
                status, raw = self.gateways.ask(gateway, f"ipns/{name}", accept=IPNS_RECORD, limit=MAX_RECORD_SIZE,
                                                what="an IPNS record")
            except BlockStoreError as exc:
                failures.append(str(exc))
                continue
            if status != 200:
                failures.append(f"{gateway}: HTTP {status}")
                continue
            try:
                record = verify_record(name, raw)
            except VerificationError as exc:
                failures.append(f"{gateway}: {exc}")
                continue
            if self.sequences is not None:
                key = public_key_of(name)
                last = self.sequences.last(key)
                if last is not None and record.sequence < last[0]:  # a replayed older record
                    stale.append((gateway, record))
                    failures.append(f"{gateway}: sequence {record.sequence} is older than {last[0]}")
                    continue
                self.sequences.accept(key, name, record.sequence, record.cid)
            return Resolution(name=name, cid=record.cid, ttl=record.ttl, source=f"ipns:{name} via {gateway}")
        if stale and last is not None:
            newest = max((older for _, older in stale), key=lambda older: older.sequence)
            raise RewindError(
                f"refusing the IPNS record for {name}: it offers sequence {newest.sequence} (/ipfs/{newest.cid}), "
                f"older than sequence {last[0]}" + (f" (/ipfs/{last[1]})" if last[1] is not None else "")
                + " accepted before, and no gateway has a record at least as new: " + "; ".join(failures),
                name=name, sequence=newest.sequence, last_sequence=last[0], head=newest.cid, current=last[1])
        if failures and all("HTTP 404" in f or "HTTP 500" in f for f in failures):
            raise NameNotFoundError(f"no gateway has an IPNS record for {name}: " + "; ".join(failures), name=name)
        raise ResolverError(f"no gateway returned a valid IPNS record for {name}: " + "; ".join(failures),
                            name=name, resolver=self.gateways.describe())

    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        raise ReadOnlyStoreError(
            f"cannot publish {name!r} through gateways: IPNS publishing needs the Kubo node that holds the key "
            "(--store kubo+http://... or HALODB_KUBO)", name=name)


__all__ = ["GatewayIPNS", "IPNSRecord", "SequenceMemory", "public_key_of", "verify_record"]
