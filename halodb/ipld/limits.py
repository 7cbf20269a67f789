"""The bounds every block and every document from outside must keep.

One place for the numbers, so the block stores, the gateway client, the item parser and
the cache agree on them. They follow the IPFS norm for blocks (1 MiB is what tools
produce, 2 MiB is what peers accept) and the DAG-CBOR data model for integers (64 bits:
CBOR's major types 0 and 1; DAG-CBOR has no bignums).

>>> from halodb.ipld.limits import MAX_BLOCK_SIZE, MAX_NESTING
>>> MAX_BLOCK_SIZE
2097152
>>> MAX_NESTING
64
"""

from __future__ import annotations

__all__ = [
    "BLOCK_SIZE_NORM",
    "MAX_BLOCK_SIZE",
    "MAX_INT",
    "MAX_ITEM_SIZE",
    "MAX_NESTING",
    "MIN_INT",
]

#: The block size IPFS tools produce and every peer stores (1 MiB).
BLOCK_SIZE_NORM = 1 << 20

#: The hard limit: a block larger than this is refused on put, on import and on fetch
#: (2 MiB, what Bitswap accepts).
MAX_BLOCK_SIZE = 2 << 20

#: An item is one DAG-CBOR block; its encoding may not exceed the block norm.
MAX_ITEM_SIZE = BLOCK_SIZE_NORM

#: Deepest nesting of maps and lists in an item or any DAG-CBOR value we decode.
#: GeoJSON needs 5 (a MultiPolygon's coordinates); STAC items in the wild stay under 20.
MAX_NESTING = 64

#: The integer range of the DAG-CBOR data model (CBOR major types 0 and 1).
MIN_INT = -(1 << 64)
MAX_INT = (1 << 64) - 1
