"""Item blocks of a sync plan, read batch by batch in the syncing process.

Every block is read through :meth:`~halodb.blockstore.base.BlockStore.get_many` (so verified
against its CID) or, for an item held inline in its dataset entry (index format 3), taken
from the entry (its CID is the hash of those bytes), then decoded (a batch at a time, :func:`~halodb.ipld.codec.decode_each`), checked, and turned into
the columns the cache inserts
(:func:`~halodb.cache.stac_columns.item_columns`). In a large first sync a forked worker
makes every other batch of inline items (:mod:`halodb.sync.worker`).

A block that verifies but is not an item the cache can hold (:func:`item_problem`: larger
than ``MAX_ITEM_SIZE``, not DAG-CBOR, nested deeper than ``MAX_NESTING``, not a map with
``type`` "Feature", a string ``id`` and ``properties``) is *skipped*: left out of the
columns and listed in :attr:`~halodb.cache.stac_columns.ItemColumns.skipped` with why, so
that one bad item cannot block a sync (issue 10, defect 4). A missing or corrupt block is
not skipped: its :class:`~halodb.errors.BlockNotFoundError` or
:class:`~halodb.errors.VerificationError` fails the whole sync.

>>> from halodb.blockstore.memory import MemoryStore
>>> from halodb.ipld import make_block
>>> store = MemoryStore()
>>> good, data = make_block({"type": "Feature", "id": "x", "properties": {}}); store.put_block(good, data)
>>> bad, data = make_block({"id": "y"}); store.put_block(bad, data)
>>> columns = read_item_columns(store, [good, bad])
>>> columns.cids == [str(good)], columns.skipped[str(bad)]
(True, "not a STAC item: 'type' is missing, not 'Feature'")
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any

from halodb.blockstore.base import BlockStore
from halodb.cache.arrow_columns import Buffers, string_buffers
from halodb.cache.stac_columns import ITEM_COLUMNS, ItemColumns, item_columns
from halodb.errors import DecodeError
from halodb.ipld import CID
from halodb.ipld.codec import decode_each
from halodb.ipld.limits import MAX_ITEM_SIZE
from halodb.util.native import native

__all__ = ["item_problem", "read_inline_item_columns", "read_item_columns", "read_items"]


def item_problem(value: Any) -> str | None:
    """Why a decoded item block is not a STAC item the cache can hold, or None.

    Only the shape the cache relies on is checked (the full checks are ``halodb.stac``'s, at
    ``add``): a map with ``type`` "Feature", a non-empty string ``id`` and a map ``properties``.

    >>> item_problem({"type": "Feature", "id": "x", "properties": {}}) is None
    True
    >>> item_problem([1])
    'not a STAC item: a list, not a map'
    """
    if type(value) is not dict:
        return f"not a STAC item: a {type(value).__name__}, not a map"
    kind = value.get("type")
    if kind != "Feature":
        return f"not a STAC item: 'type' is {'missing' if kind is None else repr(kind)[:40]}, not 'Feature'"
    item_id = value.get("id")
    if type(item_id) is not str or not item_id.strip():
        return "not a STAC item: 'id' is not a non-empty string"
    if type(value.get("properties")) is not dict:
        return "not a STAC item: 'properties' is not a map"
    return None


def read_items(store: BlockStore, cids: list[CID], inline: Mapping[CID, bytes] | None = None
               ) -> tuple[dict[CID, dict[str, Any]], dict[CID, str]]:
    """The STAC item blocks ``cids``, decoded, and those skipped with why (see the module
    docstring). ``inline``: the blocks held in their entries (CID -> bytes, whose hash the CID
    is), checked as a fetched block is. Every other block is read from ``store``, verified;
    BlockNotFoundError names a missing one."""
    out: dict[CID, dict[str, Any]] = {}
    skipped: dict[CID, str] = {}
    held = inline or {}
    batch = 4096
    for i in range(0, len(cids), batch):
        part = cids[i : i + batch]
        fetch = [c for c in part if c not in held] if held else part
        found = store.get_many(fetch) if fetch else {}
        if held:
            found.update((c, held[c]) for c in part if c in held)
        named: list[CID] = []
        blocks: list[bytes] = []
        for cid in part:
            data = found.get(cid)
            if data is None:
                data = store.get(cid)  # raises BlockNotFoundError naming the CID
            if len(data) > MAX_ITEM_SIZE:
                skipped[cid] = f"the block is {len(data)} bytes, more than the {MAX_ITEM_SIZE} an item may take"
                continue
            named.append(cid)
            blocks.append(data)
        # decode() of each, the batch checked at once (the reason of a refused block is kept
        # next to its CID: not named again in it)
        for cid, value in zip(named, decode_each(blocks)):
            if isinstance(value, DecodeError):
                skipped[cid] = str(value)
                continue
            problem = item_problem(value)
            if problem is not None:
                skipped[cid] = problem
                continue
            out[cid] = value
    return out, skipped


def _all_items(values: list[Any]) -> bool:
    """Whether :func:`item_problem` finds nothing wrong with any of ``values``: a column at a
    time, in C loops.

    >>> _all_items([{"type": "Feature", "id": "x", "properties": {}}]), _all_items([{"type": "Feature", "id": " "}])
    (True, False)
    """
    if set(map(type, values)) != {dict}:
        return False
    try:
        if set(map(dict.get, values, repeat("type"))) != {"Feature"}:
            return False
    except TypeError:  # an unhashable type
        return False
    ids: list[Any] = list(map(dict.get, values, repeat("id")))
    if set(map(type, ids)) != {str} or not all(map(str.strip, ids)):
        return False
    return set(map(type, map(dict.get, values, repeat("properties")))) == {dict}


def read_inline_item_columns(cids: list[str], blocks: list[bytes]) -> ItemColumns | None:
    """The columns of the STAC items ``blocks``, held inline in their entries (``cids`` their
    CIDs, computed from these bytes), when every one is an item the cache can hold; None
    when one is not (:func:`read_item_columns` then says which, and why). The batch is
    decoded and checked at once (:func:`~halodb.ipld.codec.decode_each`, :func:`_all_items`).

    >>> from halodb.ipld import make_block
    >>> cid, data = make_block({"type": "Feature", "id": "x", "properties": {}})
    >>> read_inline_item_columns([str(cid)], [data]).cids == [str(cid)]
    True
    >>> read_inline_item_columns([str(cid)], [make_block({"id": "y"})[1]]) is None
    True
    """
    if max(map(len, blocks), default=0) > MAX_ITEM_SIZE:
        return None
    module = native()
    made = None if module is None else module.item_columns(blocks)
    if made is not None:  # (the compiled module: the same buffers, tests/test_native.py)
        columns = {"item_cid": string_buffers(cids)} | {name: _buffers(b) for name, b in made.items()}
        return ItemColumns(list(cids), {name: columns[name] for name in ITEM_COLUMNS})
    values = decode_each(blocks)
    if not _all_items(values):
        return None
    return item_columns(cids, values)


def _buffers(made: tuple[Any, ...]) -> Buffers:
    kind, length, validity, offsets, data, child = made
    return Buffers(kind, length, validity, offsets, data, None if child is None else _buffers(child))


def read_item_columns(store: BlockStore, cids: list[CID], inline: Mapping[CID, bytes] | None = None) -> ItemColumns:
    """The columns of the STAC item blocks ``cids`` (read, verified, decoded, checked; those
    in ``inline`` taken from there), in that order; the blocks that are not items the cache
    can hold are in ``.skipped``."""
    found, skipped = read_items(store, cids, inline)
    kept = [c for c in cids if c in found] if skipped else cids
    columns = item_columns([str(c) for c in kept], [found[c] for c in kept])
    if not skipped:
        return columns
    why = {str(c): reason for c, reason in skipped.items()} | columns.skipped
    return ItemColumns(columns.cids, columns.columns, why)
