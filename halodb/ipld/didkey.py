"""``did:key`` identities for Ed25519 public keys (multicodec ``ed25519-pub``, base58btc).

>>> did = did_key(bytes(32))
>>> did
'did:key:z6MkeTG3bFFSLYVU7VqhgZxqr6YzpaGrQtFMh1uvqGy1vDnP'
>>> ed25519_public_key(did) == bytes(32)
True
"""

from __future__ import annotations

from halodb.errors import CIDError

__all__ = ["did_key", "ed25519_public_key", "MAX_DID_LENGTH"]

_ED25519_PUB = b"\xed\x01"  # multicodec 0xed as a varint
MAX_DID_LENGTH = 128


def did_key(public: bytes) -> str:
    """The ``did:key`` of a raw 32-byte Ed25519 public key."""
    if len(public) != 32:
        raise CIDError(f"an Ed25519 public key has 32 bytes, not {len(public)}")
    from multiformats import multibase  # its tables load on first use (~40 ms)

    return "did:key:" + multibase.encode(_ED25519_PUB + public, "base58btc")


def ed25519_public_key(did: object) -> bytes:
    """The raw public key a ``did:key`` names; :class:`CIDError` unless it is an Ed25519 one."""
    if not isinstance(did, str) or not did.startswith("did:key:z") or len(did) > MAX_DID_LENGTH:
        raise CIDError(f"{str(did)[:MAX_DID_LENGTH]!r} is not an Ed25519 did:key (did:key:z6Mk...)")
    from multiformats import multibase

    try:
        raw = bytes(multibase.decode(did[len("did:key:"):]))
    except (ValueError, KeyError, LookupError) as exc:
        raise CIDError(f"{did!r} is not a did:key: {exc}") from None
    if not raw.startswith(_ED25519_PUB) or len(raw) != 34:
        raise CIDError(f"{did!r} is not an Ed25519 did:key (only Ed25519 keys sign HaloDB versions)")
    return raw[2:]
