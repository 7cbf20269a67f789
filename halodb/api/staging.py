"""What goes into a stage: validated STAC items, removals of known keys, a whole campaign tree.

Each function returns or mutates a :class:`~halodb.api.home.Stage` and stores the item blocks
(flushed before they are staged); the registry saves the stage, holding the home's lock.
Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from halodb import stac
from halodb.api.home import Stage
from halodb.blockstore.base import BlockStore
from halodb.campaign import flatten_tree
from halodb.errors import InvalidItemError, UnknownKeyError
from halodb.index.index import Index
from halodb.index.model import Entry, IndexRoot
from halodb.ipld import CID, make_block

__all__ = ["ItemInput", "PreparedItems", "Removal", "plan_removals", "prepare_batches", "prepare_items", "stage_items", "stage_prepared",
           "stage_tree"]

#: an item, or ``(source, item)`` where ``source`` names it in errors (a file and line); the
#: item may come prepared (:func:`halodb.stac.read_items` with ``prepared=True``)
ItemInput = dict[str, Any] | tuple[str, dict[str, Any] | stac.PreparedItem]


@dataclass
class PreparedItems:
    """Validated items, ready to stage (:func:`prepare_items`): their keys in input order,
    their entries by key, and their blocks."""

    keys: list[str] = field(default_factory=list)
    upserts: dict[str, Entry] = field(default_factory=dict)
    blocks: list[tuple[CID, bytes]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  #: key -> what names its item in errors


def prepare_items(items: Iterable[ItemInput], collection: str | None) -> PreparedItems:
    """Validate every item and encode its block; nothing is stored. The first invalid item
    raises (the error names its source), and so does a key given twice with different
    items (:class:`InvalidItemError` naming both sources: which one to stage would be
    arbitrary); the same item given twice is staged once.

    >>> item = stac.stub_item("a/x.zarr", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "c", None)
    >>> prepare_items([("a.json", item), ("b.json", item)], None).keys
    ['c/a/x.zarr']
    >>> prepare_items([("a.json", item), ("b.json", {**item, "links": [{"rel": "x", "href": "y"}]})], None)
    Traceback (most recent call last):
    ...
    halodb.errors.InvalidItemError: b.json: dataset key 'c/a/x.zarr' is also given by a.json, with another item; which one to stage would be arbitrary, so nothing is staged
    """
    out = PreparedItems()
    for batch in prepare_batches(items, collection, None):
        out = batch
    return out


def prepare_batches(items: Iterable[ItemInput], collection: str | None, size: int | None, *,
                    across: bool = True, inline_max: int = 0) -> Iterator[PreparedItems]:
    """:func:`prepare_items` ``size`` items at a time (None: all at once), as they are read:
    each batch holds the blocks of its own items only, so that a caller can store them and
    let them go. The checks span all batches (a key given twice with different items in
    batches 1 and 9 raises when batch 9 is read); what a batch yields before an error is
    for its caller to discard. ``across=False``: each batch is checked on its own (the
    keys of earlier batches are not kept in memory), and the caller checks across batches
    (:meth:`~halodb.api.stagedb.StageWriter.add`, from the batches' ``sources``).
    ``inline_max``: an item block of at most that many bytes is not among the batch's blocks
    but held by its entry (``Entry.inline``: staged with it, for an index that holds it inline).

    >>> item = stac.stub_item("a/x.zarr", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "c", None)
    >>> other = {**item, "id": "y"}
    >>> [b.keys for b in prepare_batches([item, other, item], None, 1)]
    [['c/a/x.zarr'], ['c/y']]
    """
    return _batches(_rows(items, collection), size, across, inline_max)


#: what one item becomes: (source, key, item CID (binary), block, data CID, path, DOI, error) --
#: the error of the checks after the key and block, raised only if the item is staged (a
#: duplicate of an earlier item is skipped, a clash with one named first)
_Row = tuple[str, str, bytes, bytes, Optional[str], Optional[str], Optional[str], Optional[InvalidItemError]]


def _rows(items: Iterable[ItemInput], collection: str | None) -> Iterator[_Row]:
    for n, value in enumerate(items):
        source, raw = value if isinstance(value, tuple) else (f"item #{n + 1}", value)
        if type(raw) is stac.PreparedItem:
            if collection is None or collection == raw.collection:  # (the compiled module made it: as below)
                yield source, raw.key, raw.cid, raw.block, raw.data, raw.path, raw.doi, None
                continue
            raw = raw.item()  # (another collection: the item's block changes)
        item = stac.parse_item(raw, source)
        if collection is not None:
            item["collection"] = collection
        key = stac.dataset_key(item, collection, source=source)
        cid, data = stac.item_block(item, source)
        try:
            yield (source, key, cid.buffer, data, stac.data_cid(item, source=source), stac.item_path(item),
                   stac.item_doi(item, source=source), None)
        except InvalidItemError as exc:
            yield source, key, cid.buffer, data, None, None, None, exc


def _batches(rows: Iterator[_Row], size: int | None, across: bool, inline_max: int = 0) -> Iterator[PreparedItems]:
    out = PreparedItems()
    sources: dict[str, str] = {}
    seen: dict[str, bytes] = {}  # key -> item CID, over every batch
    for source, key, buffer, data, data_cid, path, doi, error in rows:
        first = sources.get(key)
        if first is not None:
            if seen[key] == buffer:
                continue  # the same item twice (a file and the folder holding it): staged once
            detail = (f"dataset key {key!r} is also given by {first}, with another item; which one to stage "
                      "would be arbitrary, so nothing is staged")
            raise InvalidItemError(f"{source}: {detail}", source=source, detail=detail, field="id")
        if error is not None:
            raise error
        sources[key] = source
        seen[key] = buffer
        cid = CID(buffer)  # (made here from the block: no need to check it)
        if len(data) <= inline_max:
            out.upserts[key] = Entry(item=cid, data=data_cid, path=path, doi=doi, inline=data)
        else:
            out.blocks.append((cid, data))
            out.upserts[key] = Entry(item=cid, data=data_cid, path=path, doi=doi)
        out.keys.append(key)
        out.sources[key] = source
        if size is not None and len(out.keys) >= size:
            yield out
            out = PreparedItems()
            if not across:
                sources.clear()
                seen.clear()
    if out.keys or size is None:
        yield out


def stage_prepared(store: BlockStore, stage: Stage, prepared: PreparedItems) -> list[str]:
    """Store the blocks of ``prepared`` durably (written, then the store flushed), then stage
    them in ``stage``; returns their keys. The caller records the stage only afterwards, so a
    stage never names an item block a crash could lose."""
    store.put_many(prepared.blocks, verify=False)
    store.flush()
    stage.upserts.update(prepared.upserts)
    stage.removals.difference_update(prepared.upserts)
    return prepared.keys


def stage_items(store: BlockStore, stage: Stage, items: Iterable[ItemInput], collection: str | None) -> list[str]:
    """Validate every item, then store their blocks and stage them; returns their keys.

    Nothing is stored or staged when any item is invalid (the error names its source).
    """
    return stage_prepared(store, stage, prepare_items(items, collection))


@dataclass(frozen=True)
class Removal:
    """What :meth:`~halodb.api.Registry.remove` did with each key: ``unstaged`` (only staged,
    in no version: the add forgotten), ``removed`` (in the version: its removal staged) and
    ``already`` (its removal was staged before: nothing changed)."""

    unstaged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """Every key, in the order given."""
        return [*self.unstaged, *self.removed, *self.already]


def plan_removals(index: Index, root: IndexRoot | None, staged: set[str], removing: set[str], keys: list[str],
                  where: str) -> Removal:
    """How to remove ``keys`` (distinct), of which ``staged`` are staged upserts and
    ``removing`` staged removals: a key only staged (not in ``root``) is unstaged, one in
    ``root`` removed (or left, its removal staged already). :class:`UnknownKeyError` naming
    every key that is neither in ``root`` nor staged (``where`` names the version).

    >>> plan_removals(Index.__new__(Index), None, {"c/a"}, set(), ["c/a"], "-").unstaged
    ['c/a']
    """
    unstaged: list[str] = []
    removed: list[str] = []
    already: list[str] = []
    unknown: list[str] = []
    for key in keys:
        if root is not None and index.get(root, key) is not None:
            (already if key in removing and key not in staged else removed).append(key)
        elif key in staged:
            unstaged.append(key)
        else:
            unknown.append(key)
    if unknown:
        named = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise UnknownKeyError(f"cannot remove {named}: no dataset with {'that key' if len(unknown) == 1 else 'those keys'}"
                              f" at {where}; nothing staged", key=unknown[0])
    return Removal(unstaged, removed, already)


def stage_tree(store: BlockStore, index: Index, root: IndexRoot, tree: dict[str, Any], collection: str) -> tuple[Stage, int]:
    """The stage that makes the datasets of a campaign tree (path -> CID) the whole of
    ``collection``: changed and new ones upserted, vanished ones removed. Returns the stage
    and how many datasets the tree holds."""
    leaves = flatten_tree(tree)
    current = dict(index.entries(root, f"{collection}/"))
    stage = Stage()
    blocks: list[tuple[CID, bytes]] = []
    wanted: set[str] = set()
    for path, data in leaves.items():
        item = stac.stub_item(path, data, collection, None)
        cid, raw = make_block(item)
        key = stac.dataset_key(item, collection)
        entry = Entry(item=cid, data=data, path=path)
        wanted.add(key)
        if current.get(key) != entry:
            blocks.append((cid, raw))
            stage.upserts[key] = entry
    stage.removals = {k for k in current if k not in wanted}
    store.put_many(blocks, verify=False)
    store.flush()
    return stage, len(wanted)
