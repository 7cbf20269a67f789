"""What goes into a stage: validated STAC items, removals of known keys, a whole campaign tree.

Each function returns or mutates a :class:`~halodb.api.home.Stage` and stores the item blocks
(flushed before they are staged); the registry saves the stage, holding the home's lock.
Nothing here commits.
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import signal
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Optional

from halodb import stac
from halodb.api.home import Stage
from halodb.blockstore.base import BlockStore
from halodb.campaign import flatten_tree
from halodb.errors import InputError, InvalidItemError, RegistryError, UnknownKeyError
from halodb.index.index import Index
from halodb.index.model import Entry, IndexRoot
from halodb.ipld import CID, make_block

__all__ = ["ItemInput", "PreparedItems", "prepare_batches", "prepare_items", "stage_items", "stage_prepared", "stage_removals", "stage_tree"]

#: an item, or ``(source, item)`` where ``source`` names it in errors (a file and line)
ItemInput = dict[str, Any] | tuple[str, dict[str, Any]]


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
                    across: bool = True) -> Iterator[PreparedItems]:
    """:func:`prepare_items` ``size`` items at a time (None: all at once), as they are read:
    each batch holds the blocks of its own items only, so that a caller can store them and
    let them go. The checks span all batches (a key given twice with different items in
    batches 1 and 9 raises when batch 9 is read); what a batch yields before an error is
    for its caller to discard. ``across=False``: each batch is checked on its own (the
    keys of earlier batches are not kept in memory), and the caller checks across batches
    (:meth:`~halodb.api.stagedb.StageWriter.add`, from the batches' ``sources``).

    Given a :class:`~halodb.stac.ItemReader` (with :data:`WORKER` on, more than one CPU, and ``fork``), the items
    are read, checked and encoded in a forked process while this one stores the batches
    before; what is staged and the error raised (the first in input order) are the same.

    >>> item = stac.stub_item("a/x.zarr", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "c", None)
    >>> other = {**item, "id": "y"}
    >>> [b.keys for b in prepare_batches([item, other, item], None, 1)]
    [['c/a/x.zarr'], ['c/y']]
    """
    if (isinstance(items, stac.ItemReader) and items.on_skip is None and WORKER and (os.cpu_count() or 1) > 1
            and hasattr(os, "fork")):
        rows = _rows_in_worker(items, collection)
    else:
        rows = _rows(items, collection)
    return _batches(rows, size, across)


#: what one item becomes: (source, key, item CID (binary), block, data CID, path, DOI, error) --
#: the error of the checks after the key and block, raised only if the item is staged (a
#: duplicate of an earlier item is skipped, a clash with one named first)
_Row = tuple[str, str, bytes, bytes, Optional[str], Optional[str], Optional[str], Optional[InvalidItemError]]
#: rows the worker process sends at a time
ROWS_PER_MESSAGE = 500
#: messages the worker may be ahead of the batches taken (bounds memory: ~1 KiB a row)
AHEAD = 40
#: whether an ItemReader's items are read and prepared in a second process: off, because at
#: 1,000,000 items on 2 quiet cores it made add slower (107.8 s, 78 CPU s, against 69.3 s and
#: 62.6 CPU s in one process; at 100,000 it was faster, 5.3 against 6.9 s): the thread that
#: unpickles the rows contends with the stores for the GIL (benchmarks/README.md). Tests run both.
WORKER = False


def _rows(items: Iterable[ItemInput], collection: str | None) -> Iterator[_Row]:
    for n, value in enumerate(items):
        source, raw = value if isinstance(value, tuple) else (f"item #{n + 1}", value)
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


def _send(out: BinaryIO, message: Any) -> None:
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def _work(items: Iterable[ItemInput], collection: str | None, out: BinaryIO) -> None:
    """The worker process: :func:`_rows` of ``items`` sent down ``out`` in order, then ``None``;
    or the rows before an error with the error (any: raised in the parent)."""
    rows: list[_Row] = []
    try:
        for row in _rows(items, collection):
            rows.append(row)
            if len(rows) >= ROWS_PER_MESSAGE:
                _send(out, (rows, None))
                rows = []
        _send(out, (rows, None))
        _send(out, None)
    except Exception as exc:
        try:
            _send(out, (rows, exc))
        except Exception:  # an error that does not pickle: its text
            _send(out, (rows, InputError(f"cannot read the items: {exc}")))
    finally:
        out.close()


def _rows_in_worker(items: stac.ItemReader, collection: str | None) -> Iterator[_Row]:
    """:func:`_rows` of ``items``, read, checked and encoded in a forked process (it reads
    ``items`` itself, stdin included) while this one stores what it sent before; the same
    rows and the same error, in the same place. (``os.fork``, not ``multiprocessing``'s
    process, which replaces the child's stdin.)"""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        gc.disable()  # no collection here may finalize what the parent left to collect (this generator's kin)
        code = 1
        try:
            os.close(read_end)  # so that a send fails (and this process ends) once the parent is gone
            _work(items, collection, os.fdopen(write_end, "wb"))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    receive = os.fdopen(read_end, "rb")  # (a file: closing it twice is harmless, whatever the GC's order)
    # a thread takes the messages off the pipe as they come, so that the worker runs ahead
    # (up to AHEAD messages) while this thread stores a batch: the pipe alone holds ~64 KiB
    inbox: queue.Queue[Any] = queue.Queue(AHEAD)
    reader = threading.Thread(target=_drain, args=(receive, inbox), name="halodb-add-rows", daemon=True)
    reader.start()
    done = False
    try:
        while True:
            message = inbox.get()
            if isinstance(message, EOFError):
                raise RegistryError("the process reading the items ended without an answer") from None
            if message is None:
                done = True
                return
            rows, error = message
            yield from rows
            if error is not None:
                done = True
                raise error
    finally:
        if os.getpid() != parent:  # (a copy in some later fork: the parent's to clean up)
            return
        if not done:  # stopped early (an error here, or the caller's): the worker is not needed
            os.kill(pid, signal.SIGKILL)
        while reader.is_alive():  # it ends at the worker's end; make room for its last put
            try:
                inbox.get_nowait()
            except queue.Empty:
                reader.join(0.01)
        receive.close()
        os.waitpid(pid, 0)


def _drain(receive: BinaryIO, inbox: queue.Queue[Any]) -> None:
    """The messages of the worker into ``inbox``, up to the last (None, an error, or the
    EOFError of a worker gone)."""
    while True:
        try:
            message = pickle.load(receive)
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            inbox.put(EOFError(str(exc)))
            return
        inbox.put(message)
        if message is None or message[1] is not None:
            return


def _batches(rows: Iterator[_Row], size: int | None, across: bool) -> Iterator[PreparedItems]:
    try:
        yield from _batches_of(rows, size, across)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # at once, not when the GC gets to it: the worker ends with it
            close()


def _batches_of(rows: Iterator[_Row], size: int | None, across: bool) -> Iterator[PreparedItems]:
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


def stage_removals(index: Index, root: IndexRoot | None, stage: Stage, keys: list[str], where: str) -> None:
    """Stage the removal of ``keys``; :class:`UnknownKeyError` (nothing staged) for a key that
    is neither in ``root`` nor staged (``where`` names the version in the message)."""
    for key in keys:
        if key in stage.upserts:
            continue
        if root is None or index.get(root, key) is None:
            raise UnknownKeyError(f"cannot remove {key!r}: no dataset with that key at {where}", key=key)
    for key in keys:
        if key in stage.upserts and (root is None or index.get(root, key) is None):
            del stage.upserts[key]
        else:
            stage.upserts.pop(key, None)
            stage.removals.add(key)


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
