"""HAMT-sharded UnixFS directories: name hashing and link-name layout.

A sharded directory is a tree of ``HAMTShard`` nodes. Each node has ``fanout`` slots
(a power of two); a name's slot at depth *d* is the *d*-th group of ``log2(fanout)``
bits of the murmur3-x64-64 hash of the name (most significant bit first). A link named
by the slot alone (upper-case hex, padded to the width of ``fanout - 1``) is a sub-shard;
a link named slot + entry name is the entry itself.

>>> hash_name("hello").hex()
'cbd8a7b341bd9b02'
>>> slot_label(10, 256), split_link_name("0Afoo", 256)
('0A', (10, 'foo'))
"""

from __future__ import annotations

import mmh3

from halodb.errors import UnixFSError

MIN_FANOUT, MAX_FANOUT = 2, 1 << 16
_HEX = "0123456789ABCDEF"


def hash_name(name: str) -> bytes:
    """The murmur3-x64-64 digest UnixFS uses: the first 64 bits of murmur3 x64 128, big-endian.

    A name that is not Unicode text UTF-8 can spell (a lone surrogate, as Python makes of
    undecodable bytes in a command line) names no entry: :class:`~halodb.errors.UnixFSError`.
    """
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnixFSError(f"HAMT: the name {name!r} is not valid Unicode (it has a lone surrogate)") from None
    h1, _ = mmh3.hash64(encoded, signed=False)
    return int(h1).to_bytes(8, "big")


def fanout_bits(fanout: int | None) -> int:
    """log2 of a shard's fanout; :class:`~halodb.errors.UnixFSError` unless a power of two."""
    if fanout is None or not MIN_FANOUT <= fanout <= MAX_FANOUT or fanout & (fanout - 1):
        shown = fanout if fanout is None or fanout.bit_length() <= 64 else f"of {fanout.bit_length()} bits"
        raise UnixFSError(f"HAMT shard fanout {shown} is not a power of two in [{MIN_FANOUT}, {MAX_FANOUT}]")
    return fanout.bit_length() - 1


def label_width(fanout: int) -> int:
    return len(f"{fanout - 1:X}")


def slot_label(slot: int, fanout: int) -> str:
    """The link-name prefix of ``slot`` in a shard of ``fanout`` slots."""
    return f"{slot:0{label_width(fanout)}X}"


def slot_at(digest: bytes, depth: int, bits: int) -> int:
    """The slot of a hash at shard ``depth`` (``bits`` hash bits per level)."""
    total = len(digest) * 8
    used = depth * bits
    if used + bits > total:
        raise UnixFSError(f"HAMT deeper than its {total}-bit hash allows (depth {depth})")
    return (int.from_bytes(digest, "big") >> (total - used - bits)) & ((1 << bits) - 1)


def split_link_name(name: str, fanout: int) -> tuple[int, str]:
    """``(slot, entry name)`` of a shard link; the entry name is ``""`` for a sub-shard."""
    width = label_width(fanout)
    label = name[:width]
    if len(label) != width or label.strip(_HEX):
        raise UnixFSError(f"HAMT link name {name!r} does not start with a {width}-digit slot")
    slot = int(label, 16)
    if slot >= fanout:
        raise UnixFSError(f"HAMT link name {name!r} names slot {slot} of a {fanout}-slot shard")
    return slot, name[width:]
