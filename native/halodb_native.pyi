"""HaloDB's compiled hot loops (Rust); see docs/internals/native.md."""

from collections.abc import Sequence
from types import NotImplementedType

MAX_ITEM_SIZE: int

def prepare_item(line: str) -> tuple[str, str, bytes, bytes, str | None, str | None, str | None] | None:
    """An ndjson line as ``halodb add`` stages it: ``(key, collection, cid, block, data, path,
    doi)``, or None to leave the line to the Python path."""

def prepare_lines(
    lines: list[str],
) -> list[tuple[str, str, bytes, bytes, str | None, str | None, str | None] | None]:
    """:func:`prepare_item` of each line, computed without holding the GIL."""


def item_columns(
    blocks: list[bytes],
) -> dict[str, tuple[str, int, bytes | None, bytes | None, bytes | None, tuple[object, ...] | None]] | None:
    """The cache's columns of the STAC item blocks (halodb.cache.stac_columns), or None."""

def leaf_columns(
    block: bytes, fields: list[str],
) -> tuple[list[str], tuple[list[bytes | str | None], ...]] | None:
    """A prolly tree leaf's keys and, per field, its entries' values (None: absent or null),
    or None when the block is not a canonical leaf of such entries (Python decides)."""

def dag_cbor_cid_texts(blocks: list[bytes]) -> list[str]:
    """The CIDv1 text of each DAG-CBOR block (``CID.texts_for_blocks``)."""

def string_buffers(values: list[str | None]) -> tuple[bytes | None, bytes, bytes] | None:
    """An Arrow string column's buffers ``(validity, offsets, data)`` of ``values``, or None
    for anything but str and None (``halodb.cache.arrow_columns.string_buffers``)."""

def staged_bytes(
    pack: int | None, items: Sequence[object], held: Sequence[object], at: Sequence[object], size: Sequence[object],
) -> tuple[list[bytes | None], int]:
    """The item bytes of staged rows (from the pack file ``pack`` at ``at``, ``size``, or
    ``held``), each checked against its CID, up to the first row declined; and how many."""

def entry_values(
    items: Sequence[object], held: Sequence[object], data: Sequence[object], paths: Sequence[object],
    dois: Sequence[object], inline_max: int,
) -> list[bytes | None]:
    """Each dataset entry's value as index format 3 holds its item inline, in DAG-CBOR, or
    None where it would not (or a field is of another type): Python decides those."""

class LeafCutter:
    """Level 0 of a prolly tree built in key order (halodb/index/prolly.py's rule and layout):
    each push gives back the leaf it finishes, ``(first key, entries, CID, bytes)``."""

    def __init__(self, leaf_bytes: int, threshold: int, cid_type: type) -> None: ...
    def push(self, keys: list[str], values: list[bytes]) -> list[tuple[str, int, bytes, bytes]]: ...
    def push_sorted(
        self, keys: list[str], values: list[bytes], to_boundary: bool,
    ) -> tuple[list[tuple[str, int, bytes, bytes]], int, bool]: ...
    def push_one(self, key: str, value: bytes) -> tuple[str, int, bytes, bytes] | None: ...
    def push_value(self, key: str, value: object) -> tuple[str, int, bytes, bytes] | None | NotImplementedType: ...
    def finish(self) -> tuple[str, int, bytes, bytes] | None: ...
    def pending(self) -> bool: ...

class TextSet:
    """Texts noted so far, as 64-bit hashes: ``add_all`` says whether one was noted before
    (or one of an equal hash)."""

    def __init__(self) -> None: ...
    def add_all(self, texts: list[str]) -> bool: ...
    def __len__(self) -> int: ...
