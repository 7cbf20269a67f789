"""Content identifiers.

HaloDB writes CIDv1 with sha2-256 and the dag-cbor (0x71) or raw (0x55) codec, and reads
any CID (v0 ``Qm...`` too) as a value. :class:`CID` is a small immutable wrapper around the
binary form; parsing and multibase text go through libipld (Rust), so creating and
comparing CIDs stays cheap on the hot path.

>>> c = CID.for_bytes(b"hello", codec=RAW)
>>> str(c)
'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
>>> CID.parse(str(c)) == c
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from itertools import repeat
from operator import methodcaller
from typing import Any

import libipld

from halodb.errors import CIDError
from halodb.ipld.protobuf import encode_varint, read_varint
from halodb.util.native import native

DAG_CBOR = 0x71
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
IDENTITY = 0x00

_PREFIX = {
    DAG_CBOR: bytes([0x01, DAG_CBOR, SHA2_256, 0x20]),
    RAW: bytes([0x01, RAW, SHA2_256, 0x20]),
}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    return read_varint(data, pos, error=CIDError, where="CID: ", minimal=True)


class CID:
    """An immutable content identifier, compared and hashed by its binary form."""

    __slots__ = ("_buf", "_str")

    def __init__(self, buf: bytes) -> None:
        self._buf = buf
        self._str: str | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def for_bytes(cls, data: bytes, codec: int = DAG_CBOR) -> CID:
        """The CIDv1 (sha2-256) of ``data`` under ``codec``."""
        prefix = _PREFIX.get(codec)
        if prefix is None:
            raise CIDError(f"HaloDB writes only dag-cbor and raw CIDs, not codec 0x{codec:x}", value=codec)
        return cls(prefix + hashlib.sha256(data).digest())

    @staticmethod
    def texts_for_blocks(blocks: Iterable[bytes], codec: int = DAG_CBOR) -> list[str]:
        """``str(CID.for_bytes(b, codec))`` of each of ``blocks``, in C loops (no CID objects).

        >>> CID.texts_for_blocks([b"hello"], RAW) == [str(CID.for_bytes(b"hello", RAW))]
        True
        """
        if codec == DAG_CBOR:
            module = native()
            if module is not None and hasattr(module, "dag_cbor_cid_texts"):  # (the same texts: tests/test_native.py)
                blocks = blocks if type(blocks) is list else list(blocks)
                try:
                    return list(module.dag_cbor_cid_texts(blocks))
                except TypeError:  # not all bytes (a bytearray, a memoryview): hashed below
                    pass
        prefix = _PREFIX.get(codec)
        if prefix is None:
            raise CIDError(f"HaloDB writes only dag-cbor and raw CIDs, not codec 0x{codec:x}", value=codec)
        digests = map(methodcaller("digest"), map(hashlib.sha256, blocks))
        return list(map(libipld.encode_multibase, repeat("b"), map(prefix.__add__, digests)))

    @classmethod
    def parse(cls, value: str | bytes | CID) -> CID:
        """Parse a CID from text (any multibase; ``Qm...`` v0), binary form, or a CID.

        Raises :class:`~halodb.errors.CIDError` naming the offending value.
        """
        if isinstance(value, CID):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            buf = bytes(value)
            cls._check_binary(buf)
            return cls(buf)
        if not isinstance(value, str):
            raise CIDError(f"expected a CID, got {type(value).__name__}", value=value)
        text = value.strip()
        if text.startswith("/ipfs/"):
            text = text[len("/ipfs/"):]
        try:
            info = libipld.decode_cid(text)
        except (ValueError, TypeError) as exc:
            raise CIDError(f"not a CID: {value!r} ({exc})", value=value) from None
        digest: bytes = info["hash"]["digest"]
        mh = encode_varint(info["hash"]["code"]) + encode_varint(info["hash"]["size"]) + digest
        if info["version"] == 0:
            return cls(mh)
        return cls(b"\x01" + encode_varint(info["codec"]) + mh)

    @staticmethod
    def _check_binary(buf: bytes) -> None:
        if len(buf) == 36 and buf[0] == 0x01 and buf[1] < 0x80 and buf[2] == SHA2_256 and buf[3] == 0x20:
            return  # the common case, whole: CIDv1, a one-byte codec, sha2-256 (what HaloDB writes)
        if len(buf) == 34 and buf[0] == 0x12 and buf[1] == 0x20:
            return  # CIDv0
        if not buf or buf[0] != 0x01:
            raise CIDError(f"not a binary CIDv1: {buf[:8].hex()}...", value=buf)
        pos = 1
        _, pos = _read_varint(buf, pos)  # codec
        _, pos = _read_varint(buf, pos)  # hash code
        size, pos = _read_varint(buf, pos)
        if len(buf) - pos != size:
            raise CIDError("CID digest length does not match its multihash header", value=buf)

    # -- properties ----------------------------------------------------------------------
    @property
    def buffer(self) -> bytes:
        """The binary form (what DAG-CBOR tag 42 carries, minus the 0x00 prefix)."""
        return self._buf

    @property
    def version(self) -> int:
        return 0 if self._buf[0] == 0x12 else 1

    @property
    def codec(self) -> int:
        if self.version == 0:
            return DAG_PB
        return _read_varint(self._buf, 1)[0]

    @property
    def multihash(self) -> bytes:
        if self.version == 0:
            return self._buf
        return self._buf[1 + len(encode_varint(self.codec)):]

    def verify(self, data: bytes | memoryview) -> bool:
        """True when ``data`` hashes to this CID (sha2-256 only; other hashes are not trusted)."""
        buf = self._buf
        if buf[0] == 0x01 and buf[1] < 0x80 and buf[2] == SHA2_256 and buf[3] == 0x20:  # v1, 1-byte codec
            return len(buf) == 36 and hashlib.sha256(data).digest() == buf[4:]
        mh = self.multihash
        if mh[0] == IDENTITY:  # the block is inlined in the CID
            return self.inline_data == data
        if mh[0] != SHA2_256 or mh[1] != 0x20:
            return False
        return hashlib.sha256(data).digest() == mh[2:]

    @property
    def inline_data(self) -> bytes | None:
        """The block inlined in an identity-hash CID (``ipfs add --inline``), else None."""
        if self.version == 0:
            return None
        mh = self.multihash
        if mh[0] != IDENTITY:
            return None
        size, pos = _read_varint(mh, 1)
        return mh[pos:] if len(mh) - pos == size else None

    # -- dunder ------------------------------------------------------------------------------
    def __str__(self) -> str:
        s = self._str
        if s is None:
            if self.version == 0:
                s = libipld.encode_multibase("z", self._buf)[1:]
            else:
                s = libipld.encode_multibase("b", self._buf)
            self._str = s
        return s

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, CID) and other._buf == self._buf

    def __lt__(self, other: CID) -> bool:
        return self._buf < other._buf

    def __hash__(self) -> int:
        return hash(self._buf)

    def __bytes__(self) -> bytes:
        return self._buf
