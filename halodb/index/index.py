"""One version of the index: the datasets tree plus its lookup trees.

* ``datasets``: dataset key (``collection/item-id``) -> :class:`~halodb.index.model.Entry`
* ``by_path``: path in the campaign tree -> dataset key
* ``by_data``: ``"<data cid>/<dataset key>"`` -> null (a CID never holds ``/``, so a
  prefix scan over ``"<data cid>/"`` lists every dataset holding that data)
* ``by_doi``: DOI (lower-case, ``10.x/y``) -> dataset key; absent from a root whose
  datasets have no DOI (and from every root written before there were DOIs)

The root declares ``count``, the datasets it holds; walks are bounded by it (a tree that
yields more entries, or a full walk or diff that finds another number, is a
:class:`~halodb.errors.TreeShapeError`), besides the checks every tree walk makes.

Format 3 (what :class:`Index` writes by default; ``inline_items=False`` writes formats 1
and 2): an item of at most :data:`~halodb.index.model.INLINE_MAX` bytes travels inside its
dataset entry instead of in a block of its own, and the trees have larger leaves
(:data:`PARAMS`), so a sync fetches a few dozen leaves where it fetched thousands of item
blocks. The first change on top of a format 1/2 root rebuilds the trees once in format 3.

>>> from halodb.blockstore import MemoryStore
>>> store = MemoryStore()
>>> item = store.put(b"\\xa0")  # the DAG-CBOR block of an (empty) item
>>> idx = Index(store)
>>> root = idx.apply(idx.empty(), {"c/a": Entry(item, "bafkqaaa", "p/a.zarr")}, [])
>>> idx.key_for_path(root, "p/a.zarr"), idx.keys_for_data(root, "bafkqaaa")
('c/a', ['c/a'])
>>> root = idx.apply(root, {"c/b": Entry(item, "bafkqaaa", doi="10.82246/b")}, [])
>>> idx.key_for_doi(root, "10.82246/b"), list(idx.dois(root))
('c/b', [('10.82246/b', 'c/b')])
>>> root.version, idx.get(root, "c/a").inline, idx.item_block(idx.get(root, "c/a"))
(3, b'\\xa0', b'\\xa0')
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from itertools import islice
from operator import eq
from typing import Any, TypeVar

from halodb.blockstore.base import BlockStore
from halodb.errors import DoiConflictError, PathConflictError, SchemaError, TreeShapeError, UnknownKeyError
from halodb.index.model import INLINE_MAX, Change, Entry, EntryBatch, EntryBatches, IndexRoot
from halodb.index.prolly import DELETE, Encoded, NodeCache, ProllyTree, TreeParams
from halodb.ipld import CID, DAG_CBOR, decode, make_block
from halodb.ipld.codec import cbor_head, encode_shallow
from halodb.util.native import native

#: how the binary form of a CIDv1 of dag-cbor and sha2-256 begins (then 32 bytes of digest)
_V1_DAG_CBOR_SHA256 = bytes((0x01, DAG_CBOR, 0x12, 0x20))
#: Formats 1 and 2: nodes near 4 KiB for entries that link their items.
DATASET_PARAMS = TreeParams(leaf_fanout=20, branch_fanout=40)
LOOKUP_PARAMS = TreeParams(leaf_fanout=36, branch_fanout=40)
#: what a build calls with the entries whose item block is absent: the first ten (key, CID)
#: and how many there are; it raises (:meth:`Index.build_sorted`)
Missing = Callable[[list[tuple[str, CID]], int], None]
#: what :meth:`Index.build_sorted` builds from: ``(key, entry)`` in key order, or batches of them
Entries = Iterable[tuple[str, Entry]] | EntryBatches
_T = TypeVar("_T")
#: (:meth:`Index._encoded`: an entry left out)
_ABSENT: Any = object()
#: Format 3: leaves end by size (:class:`TreeParams`): a leaf of ``datasets`` holds about
#: 64 KiB of entries with their items (64 entries of 1 KiB), one of the lookup trees about
#: 16 KiB (~130 paths); a leaf of 1 MiB (the node limit) is as likely as e^-16 either way.
DATASET_PARAMS_V3 = TreeParams(leaf_fanout=64, branch_fanout=40, leaf_bytes=64 << 10)
LOOKUP_PARAMS_V3 = TreeParams(leaf_fanout=128, branch_fanout=40, leaf_bytes=16 << 10)
#: (inline_items) -> (datasets params, lookup trees params)
PARAMS = {False: (DATASET_PARAMS, LOOKUP_PARAMS), True: (DATASET_PARAMS_V3, LOOKUP_PARAMS_V3)}


class Index:
    """Reads index versions (:class:`IndexRoot`) of every format from a block store, and
    writes format 3 (``inline_items=False``: formats 1 and 2, every item linked)."""

    def __init__(self, store: BlockStore, cache: NodeCache | None = None, *, inline_items: bool = True) -> None:
        self.store = store
        self.inline_items = inline_items
        cache = cache if cache is not None else NodeCache()
        datasets, lookup = PARAMS[inline_items]
        self.datasets = ProllyTree(store, datasets, cache)
        self.by_path = ProllyTree(store, lookup, cache)
        self.by_data = ProllyTree(store, lookup, cache)
        self.by_doi = ProllyTree(store, lookup, cache)
        self._roots: dict[CID, IndexRoot] = {}

    # -- roots ---------------------------------------------------------------------------------
    def empty(self) -> IndexRoot:
        e = self.datasets.empty()
        return IndexRoot(datasets=e, by_path=e, by_data=e, count=0, inline_items=self.inline_items)

    def write_root(self, root: IndexRoot) -> CID:
        cid, data = make_block(root.to_ipld())
        self.store.put_many([(cid, data)], verify=False)
        return cid

    def load_root(self, cid: CID) -> IndexRoot:
        root = self._roots.get(cid)
        if root is None:
            root = IndexRoot.from_ipld(decode(self.store.get(cid), cid=cid), cid=cid)
            if len(self._roots) > 10_000:
                self._roots.clear()
            self._roots[cid] = root
        return root

    # -- reading -------------------------------------------------------------------------------
    def get(self, root: IndexRoot, key: str) -> Entry | None:
        value = self.datasets.get(root.datasets, key)
        return None if value is None else Entry.from_ipld(value, cid=root.datasets, inline=root.inline_items)

    def item_block(self, entry: Entry) -> bytes:
        """The bytes of ``entry``'s item block: held inline (format 3), else read from the
        store (verified; :class:`~halodb.errors.BlockNotFoundError` when absent)."""
        return entry.inline if entry.inline is not None else self.store.get(entry.item)

    def item(self, entry: Entry) -> Any:
        """``entry``'s item, decoded (:meth:`item_block`)."""
        return decode(self.item_block(entry), cid=entry.item)

    def entries(self, root: IndexRoot, prefix: str | None = None, *, keep: bool = True) -> Iterator[tuple[str, Entry]]:
        """The datasets (whose key starts with ``prefix``) in key order: at most ``root.count``,
        and exactly that many without a prefix. ``keep=False``: leaves stay out of the node
        cache (:meth:`ProllyTree.items`)."""
        stop = None if prefix is None else prefix + "\U0010ffff"
        n = 0
        for key, value in self.datasets.items(root.datasets, prefix, stop, keep=keep):
            n += 1
            if n > root.count:
                raise count_error(root, f"holds more than the {root.count} datasets its index root declares")
            yield key, Entry.from_ipld(value, cid=root.datasets, inline=root.inline_items)
        if prefix is None and n != root.count:
            raise count_error(root, f"holds {n} datasets, but its index root declares {root.count}")

    def key_for_path(self, root: IndexRoot, path: str) -> str | None:
        value = self.by_path.get(root.by_path, path)
        if value is not None and not isinstance(value, str):
            raise SchemaError(f"by_path tree {root.by_path} maps {path!r} to a non-string", cid=root.by_path)
        return value

    def key_for_doi(self, root: IndexRoot, doi: str) -> str | None:
        """The dataset that has ``doi`` (normalized: lower-case, no ``doi:``) in this version."""
        if root.by_doi is None:
            return None
        value = self.by_doi.get(root.by_doi, doi)
        if value is not None and not isinstance(value, str):
            raise SchemaError(f"by_doi tree {root.by_doi} maps {doi!r} to a non-string", cid=root.by_doi)
        return value

    def dois(self, root: IndexRoot) -> Iterator[tuple[str, str]]:
        """Every ``(DOI, dataset key)`` of this version in DOI order; at most ``root.count``
        (each dataset has at most one DOI)."""
        if root.by_doi is None:
            return
        n = 0
        for doi, key in self.by_doi.items(root.by_doi):
            n += 1
            if n > root.count:
                raise count_error(root, f"lists more than the {root.count} datasets its index root declares",
                                  tree=root.by_doi, name="by_doi")
            if not isinstance(key, str):
                raise SchemaError(f"by_doi tree {root.by_doi} maps {doi!r} to a non-string", cid=root.by_doi)
            yield doi, key

    def keys_for_data(self, root: IndexRoot, data_cid: str) -> list[str]:
        prefix = data_cid + "/"
        keys: list[str] = []
        for k, _ in self.by_data.items(root.by_data, prefix, data_cid + "0"):
            if len(keys) == root.count:
                raise count_error(root, f"lists more than the {root.count} datasets its index root declares",
                                  tree=root.by_data)
            keys.append(k[len(prefix):])
        return keys

    def resolve(self, root: IndexRoot, key_or_path: str) -> tuple[str, Entry] | None:
        """The entry for a dataset key, or else for a path."""
        entry = self.get(root, key_or_path)
        if entry is not None:
            return key_or_path, entry
        key = self.key_for_path(root, key_or_path)
        if key is not None:
            entry = self.get(root, key)
            if entry is not None:
                return key, entry
        return None

    # -- writing -------------------------------------------------------------------------------
    def apply(self, root: IndexRoot, upserts: Mapping[str, Entry], removals: Iterable[str]) -> IndexRoot:
        """A new version with ``upserts`` set and ``removals`` deleted.

        Raises :class:`UnknownKeyError` when a removal names a key that is not present, and
        :class:`PathConflictError` (:class:`DoiConflictError`) when two datasets would have one
        path (one DOI). Only the paths to touched entries are rewritten (``O(k log n)`` new
        blocks), except the first change on top of a root of an older format, which builds
        every tree anew in this index's format (``O(n)``, once). In format 3 the item block of
        each upsert is read from the store (:class:`~halodb.errors.BlockNotFoundError` when
        absent) to hold it inline when it is small (:data:`~halodb.index.model.INLINE_MAX`).
        """
        if root.inline_items and not self.inline_items and root.count:
            raise SchemaError(f"index root of format {root.version} cannot be changed by a writer of formats 1 "
                              "and 2 (inline_items=False, HALODB_INDEX_FORMAT=2): a version of format 3 stays "
                              "format 3", cid=root.datasets)
        removals = [k for k in removals if k not in upserts]
        touched = sorted(set(upserts) | set(removals))
        old: dict[str, Entry | None] = {k: self.get(root, k) for k in touched}
        for k in removals:
            if old[k] is None:
                raise UnknownKeyError(f"cannot remove {k!r}: no dataset with that key", key=k)
        self._check_claims(root, upserts, old, "path")
        self._check_claims(root, upserts, old, "doi")
        changed = {k: upserts.get(k) for k in touched if old[k] != upserts.get(k)}
        if not changed:
            return root
        if root.inline_items != self.inline_items and root.count:  # an older format: every tree anew
            return self._rebuild(root, changed)
        fresh = self._held({k: e for k, e in changed.items() if e is not None})
        ds_changes: dict[str, Any] = {}
        path_changes: dict[str, Any] = {}
        data_changes: dict[str, Any] = {}
        doi_changes: dict[str, Any] = {}
        count = root.count
        for k in changed:
            before = old[k]
            after = fresh.get(k)
            ds_changes[k] = DELETE if after is None else after.to_ipld()
            if before is None:
                count += 1
            elif after is None:
                count -= 1
            if before is not None:
                if before.path is not None and (after is None or after.path != before.path):
                    path_changes.setdefault(before.path, DELETE)
                if before.data is not None and (after is None or after.data != before.data):
                    data_changes.setdefault(f"{before.data}/{k}", DELETE)
                if before.doi is not None and (after is None or after.doi != before.doi):
                    doi_changes.setdefault(before.doi, DELETE)
            if after is not None:
                if after.path is not None:
                    path_changes[after.path] = k
                if after.data is not None:
                    data_changes[f"{after.data}/{k}"] = None
                if after.doi is not None:
                    doi_changes[after.doi] = k
        by_doi = root.by_doi
        if doi_changes:
            empty = self.by_doi.empty()
            by_doi = self.by_doi.mutate(empty if by_doi is None else by_doi, doi_changes)
            by_doi = None if by_doi == empty else by_doi  # no DOI left: the root is written as before DOIs
        return IndexRoot(
            datasets=self.datasets.mutate(root.datasets, ds_changes),
            by_path=self.by_path.mutate(root.by_path, path_changes),
            by_data=self.by_data.mutate(root.by_data, data_changes),
            count=count,
            by_doi=by_doi,
            inline_items=self.inline_items,
        )

    def build_sorted(self, entries: Entries, paths: Iterable[tuple[str, str]],
                     data: Iterable[str], dois: Iterable[tuple[str, str]], *, batch: int = 2048,
                     missing: Missing | None = None, parallel: bool = False,
                     tail: tuple[str, Entries] | None = None) -> IndexRoot:
        """The version that holds ``entries`` (``(key, entry)`` in key order, or
        :class:`~halodb.index.model.EntryBatches` of them) and nothing else:
        what :meth:`apply` makes of them on the empty version (the same trees), built from
        sorted streams in bounded memory (:meth:`ProllyTree.build_sorted`) for an initial
        commit of any size. The lookup trees come sorted too, from whoever holds the entries:
        ``paths`` as ``(path, key)`` in that order, ``data`` as ``"<data cid>/<key>"``,
        ``dois`` as ``(doi, key)``. Item blocks are read (format 3) ``batch`` entries at a
        time (an :class:`~halodb.index.model.EntryBatch` at a time, each entry's value
        encoded in compiled code where it can be): an absent one is a
        :class:`~halodb.errors.BlockNotFoundError`, or, with
        ``missing``, is left out and counted, and once the datasets tree is built (before the
        lookup trees) ``missing(the first ten (key, CID), how many)`` is called, which raises
        (a commit reads every staged block here, so it checks them here, in the same pass).
        :class:`PathConflictError` (:class:`DoiConflictError`) when two datasets claim one
        path (one DOI). ``parallel`` (where ``os.fork`` is, in a process of one thread): the
        lookup trees are built by a child process meanwhile (:class:`_Forked`), on a second core; it reads
        ``paths``, ``data`` and ``dois`` itself, so they must be iterables a forked process
        can read (lists, or readers of a database that open their connection when first read),
        and it writes to the store, so that must be one that processes share (files, SQLite;
        else the trees are built here again, once their roots are found missing). With
        ``parallel``, ``tail`` — ``(split, the entries from key split on)`` — has another child
        build the leaves of those entries (:meth:`ProllyTree.leaves_sorted`) while this process
        builds the leaves before them, then the levels above all of them
        (:meth:`ProllyTree.build_sorted` ``tail``): the datasets tree on two cores. If that
        child fails, this process reads ``entries`` on past ``split`` itself.

        >>> from halodb.blockstore import MemoryStore
        >>> store = MemoryStore(); idx = Index(store)
        >>> item = store.put(b"\\xa0")
        >>> entries = {"c/a": Entry(item, "bafkqaaa", "p/a"), "c/b": Entry(item, None, "p/b", "10.1/b")}
        >>> root = idx.build_sorted(sorted(entries.items()), [("p/a", "c/a"), ("p/b", "c/b")], ["bafkqaaa/c/a"],
        ...                         [("10.1/b", "c/b")])
        >>> root == idx.apply(idx.empty(), entries, [])
        True
        """
        # (forked only from a process of one thread: a lock another thread held at the fork
        # would stay held in the child for ever)
        forks = parallel and hasattr(os, "fork") and threading.active_count() == 1
        split = tail[0] if tail is not None and forks else None
        before, after = _Tally(), _Tally()  # the entries below ``split`` (all, without one), and from it
        children: list[_Forked] = []
        tail_result: list[tuple[list[tuple[str, CID]], _Tally]] = []

        def leaves() -> list[tuple[str, CID]] | None:
            """The tail's leaves (but the first) from the child that built them; None if it failed."""
            got = children[1].result()
            if got is None:
                return None
            found, tally = _decode_tail(got)
            if found and len(self.store.has_many(c for _, c in found[-1:])) != 1:
                return None  # not in this store: the child wrote to a copy of it (a store in memory)
            tail_result.append((found, tally))
            return found

        try:
            if forks:
                children.append(_Forked(lambda: _encode_roots(self._lookup_trees(
                    _while_alive(paths, os.getppid()), _while_alive(data, os.getppid()),
                    _while_alive(dois, os.getppid())))))
            if split is not None:
                assert tail is not None
                rest = tail[1]
                children.append(_Forked(lambda: _encode_tail(*self._tail_leaves(
                    _alive_entries(rest, os.getppid()), batch, missing is not None))))
            datasets = self.datasets.build_sorted(
                self._stream(entries, batch, before, after, split, missing is not None),
                tail=None if split is None else (split, leaves))
            tally = before.plus(tail_result[0][1] if tail_result and tail_result[0][0] else after)
            if tally.absent_count:
                assert missing is not None
                missing(tally.absent, tally.absent_count)
            # (the lookup trees built here when the child failed: a conflict is raised here)
            got = children[0].result() if children else None
            roots = None if got is None else _decode_roots(got)
            if roots is not None and len(self.store.has_many(c for c in roots if c is not None)) != 3 - roots.count(None):
                roots = None  # not in this store: the child wrote to a copy of it (a store in memory)
            by_path, by_data, by_doi = roots or self._lookup_trees(paths, data, dois)
        finally:
            for child in children:
                child.close()
        count = tally.count
        return IndexRoot(datasets=datasets, by_path=by_path, by_data=by_data, count=count,
                         by_doi=by_doi, inline_items=self.inline_items)

    def _stream(self, entries: Entries, batch: int, before: _Tally, after: _Tally,
                split: str | None, check: bool) -> Iterator[tuple[str, Any] | Encoded]:
        """The tree entries of ``entries``, their item blocks read ``batch`` at a time (or an
        :class:`EntryBatch` at a time, as runs :class:`Encoded` already), the next batch
        (stage rows, item blocks: SQLite, which releases the GIL) in a thread while this one
        is built; one thread at a time reads ``entries``. Counted in ``before`` (keys below
        ``split``) and ``after``; ``check``: absent blocks noted there, not raised."""
        def note(key: str, cid: CID) -> None:
            (before if split is None or key < split else after).note(key, cid)

        absent = note if check else None
        read: Callable[[], tuple[bool, list[str], list[tuple[str, Any]] | list[Encoded]]]
        if isinstance(entries, EntryBatches) and self.inline_items:
            runs = entries.batches()

            def read() -> tuple[bool, list[str], list[tuple[str, Any]] | list[Encoded]]:
                got = next(runs, None)
                if got is None:
                    return False, [], []
                run = self._encoded(got, absent)
                return True, run.keys, [run]
        else:
            it = _entry_pairs(entries)

            def read() -> tuple[bool, list[str], list[tuple[str, Any]] | list[Encoded]]:
                chunk = dict(islice(it, batch))
                values = self._held_values(chunk, absent)
                return bool(chunk), [k for k, _ in values], values

        with ThreadPoolExecutor(1, thread_name_prefix="halodb-read-ahead") as ahead:
            reading = ahead.submit(read)
            while True:
                more, keys, chunk = reading.result()
                if not more:
                    break
                reading = ahead.submit(read)
                if not keys:
                    continue  # (every block of the batch absent)
                if split is None or keys[-1] < split:
                    before.count += len(keys)
                else:
                    below = bisect_left(keys, split)
                    before.count += below
                    after.count += len(keys) - below
                yield from chunk

    def _encoded(self, batch: EntryBatch, absent: Callable[[str, CID], None] | None) -> Encoded:
        """``batch`` as tree entries of index format 3 (:meth:`_held_values`), their values'
        DAG-CBOR made in compiled code where it can (``halodb_native.entry_values``), the
        rest here; an entry whose block is absent left out (passed to ``absent``)."""
        keys = list(batch.keys)
        encode = getattr(native(), "entry_values", None)
        values: list[bytes | None] = ([None] * len(keys) if encode is None else
                                      encode(batch.items, batch.held, batch.data, batch.paths, batch.dois, INLINE_MAX))
        slow = [row for row, value in enumerate(values) if value is None]
        if not slow:
            return Encoded(keys, values)  # type: ignore[arg-type]  # (no None left)
        held = dict(self._held_values({keys[row]: batch.entry(row) for row in slow}, absent))
        for row in slow:
            value = held.get(keys[row], _ABSENT)
            values[row] = None if value is _ABSENT else encode_shallow(value)
        if len(held) < len(slow):  # (absent blocks: their entries left out)
            kept = [row for row, value in enumerate(values) if value is not None]
            return Encoded([keys[row] for row in kept], [values[row] for row in kept])  # type: ignore[misc]
        return Encoded(keys, values)  # type: ignore[arg-type]

    def _tail_leaves(self, entries: Entries, batch: int, check: bool
                     ) -> tuple[list[tuple[str, CID]], _Tally]:
        """A child's part of :meth:`build_sorted` ``tail``: the leaves of ``entries`` but the
        first (:meth:`ProllyTree.leaves_sorted`), and their tally."""
        tally = _Tally()
        found = self.datasets.leaves_sorted(self._stream(entries, batch, tally, tally, None, check))
        return found, tally

    def _lookup_trees(self, paths: Iterable[tuple[str, str]], data: Iterable[str], dois: Iterable[tuple[str, str]]
                      ) -> tuple[CID, CID, CID | None]:
        """:meth:`build_sorted`'s lookup trees: ``by_path``, ``by_data``, ``by_doi`` (None: empty)."""
        by_path = self.by_path.build_sorted(self._claimed_runs(paths, "path"))
        by_data = self.by_data.build_sorted(Encoded(run, [_NULL] * len(run)) for run in _runs(iter(data)))
        empty = self.by_doi.empty()
        by_doi = self.by_doi.build_sorted(self._claimed_runs(dois, "doi"))
        return by_path, by_data, None if by_doi == empty else by_doi

    def merge_sorted(self, root: IndexRoot, upserts: Iterable[tuple[str, Entry]], removals: Iterable[str],
                     *, missing: Missing | None = None) -> IndexRoot:
        """The version ``root`` + ``upserts`` - ``removals`` (both in key order), built anew in
        bounded memory: the datasets of ``root`` merged with the changes as one sorted stream
        into :meth:`build_sorted`, the lookup entries of the result spilled into a temporary
        SQLite database and read back sorted. The same trees as :meth:`apply` (``O(n)``
        work instead of ``O(k log n)``: for a change of many datasets, whose change set
        ``apply`` holds in memory). :class:`UnknownKeyError` for a removal of a key
        ``root`` does not hold (an upsert of the same key wins over its removal);
        :class:`PathConflictError` / :class:`DoiConflictError` when two datasets of the result
        claim one path or DOI. ``missing``: as for :meth:`build_sorted`.

        >>> from halodb.blockstore import MemoryStore
        >>> store = MemoryStore(); idx = Index(store)
        >>> item = store.put(b"\\xa0")
        >>> root = idx.apply(idx.empty(), {"c/a": Entry(item, None, "p/a"), "c/b": Entry(item, None, "p/b")}, [])
        >>> merged = idx.merge_sorted(root, [("c/c", Entry(item, None, "p/b"))], ["c/b"])
        >>> merged == idx.apply(root, {"c/c": Entry(item, None, "p/b")}, ["c/b"])
        True
        """
        if root.inline_items and not self.inline_items and root.count:
            raise SchemaError(f"index root of format {root.version} cannot be changed by a writer of formats 1 "
                              "and 2 (inline_items=False, HALODB_INDEX_FORMAT=2): a version of format 3 stays "
                              "format 3", cid=root.datasets)
        # a private temporary database on disk (written by build_sorted's read-ahead thread,
        # then read here: never by two threads at once)
        with closing(sqlite3.connect("", check_same_thread=False)) as spill:
            spill.execute("PRAGMA cache_size=-16384")
            spill.execute("CREATE TABLE paths (v TEXT NOT NULL, k TEXT NOT NULL)")
            spill.execute("CREATE TABLE data (v TEXT NOT NULL)")
            spill.execute("CREATE TABLE dois (v TEXT NOT NULL, k TEXT NOT NULL)")

            def spilled(entries: Iterator[tuple[str, Entry]]) -> Iterator[tuple[str, Entry]]:
                for chunk in iter(lambda: list(islice(entries, 4096)), []):
                    spill.executemany("INSERT INTO paths VALUES (?, ?)", ((e.path, k) for k, e in chunk if e.path is not None))
                    spill.executemany("INSERT INTO data VALUES (?)", ((f"{e.data}/{k}",) for k, e in chunk if e.data is not None))
                    spill.executemany("INSERT INTO dois VALUES (?, ?)", ((e.doi, k) for k, e in chunk if e.doi is not None))
                    yield from chunk

            def rows(sql: str) -> Iterator[Any]:
                cur = spill.execute(sql)
                while batch := cur.fetchmany(4096):
                    yield from batch

            return self.build_sorted(
                spilled(_merge_changes(self.entries(root, keep=False), iter(upserts), iter(removals))),
                (tuple(r) for r in rows("SELECT v, k FROM paths ORDER BY v, k")),
                (r[0] for r in rows("SELECT v FROM data ORDER BY v")),
                (tuple(r) for r in rows("SELECT v, k FROM dois ORDER BY v, k")),
                missing=missing,
            )

    def _claimed_runs(self, claims: Iterable[tuple[str, str]], field: str) -> Iterator[Encoded]:
        """:meth:`_claimed` a run of entries at a time, :class:`Encoded` (the key as text)."""
        last: tuple[str, str] | None = None
        for run in _runs(iter(claims)):
            values, keys = map(list, zip(*run))
            if (last is not None and last[0] == values[0]) or any(map(eq, values, values[1:])):
                for _ in self._claimed([*([] if last is None else [last]), *run], field):
                    pass  # (raises, naming the two)
            yield Encoded(values, _texts(keys))
            last = run[-1]

    def _claimed(self, claims: Iterable[tuple[str, str]], field: str) -> Iterator[tuple[str, str]]:
        """``(value, key)`` sorted by value, as tree entries; a value claimed twice raises."""
        last: tuple[str, str] | None = None
        for value, key in claims:
            if last is not None and last[0] == value:
                raise self._conflict(field, value, key, last[1],
                                     f"datasets {last[1]!r} and {key!r} both claim the {field} {value!r}")
            last = (value, key)
            yield value, key

    def _rebuild(self, root: IndexRoot, changed: Mapping[str, Entry | None]) -> IndexRoot:
        """The version ``root`` + ``changed`` (None: removed) with every tree built anew in this
        index's format: how a root of an older format is first changed."""
        entries = dict(self.entries(root))
        for k, e in changed.items():
            if e is None:
                del entries[k]
            else:
                entries[k] = e
        entries = self._held(entries)
        dois = [(e.doi, k) for k, e in entries.items() if e.doi is not None]
        return IndexRoot(
            datasets=self.datasets.build((k, e.to_ipld()) for k, e in entries.items()),
            by_path=self.by_path.build((e.path, k) for k, e in entries.items() if e.path is not None),
            by_data=self.by_data.build((f"{e.data}/{k}", None) for k, e in entries.items() if e.data is not None),
            count=len(entries),
            by_doi=self.by_doi.build(dois) if dois else None,
            inline_items=self.inline_items,
        )

    def _held(self, entries: Mapping[str, Entry], absent: Callable[[str, CID], None] | None = None
              ) -> dict[str, Entry]:
        """``entries`` as this index's format holds them: in format 3 an item of at most
        ``INLINE_MAX`` bytes inline (its block read from the store, in one batch), a larger one
        linked; in formats 1 and 2 every item linked (an inline one written as a block). An
        item block that is not in the store raises :class:`~halodb.errors.BlockNotFoundError`,
        or, with ``absent``, is passed to it (key, CID) and its entry left out."""
        if not self.inline_items:
            blocks = [(e.item, e.inline) for e in entries.values() if e.inline is not None]
            if blocks:
                self.store.put_many(blocks)
                return {k: replace(e, inline=None) if e.inline is not None else e for k, e in entries.items()}
            return dict(entries)
        return {k: e if inline is e.inline else replace(e, inline=inline)
                for k, e, inline in self._inline(entries, absent)}

    def _held_values(self, entries: Mapping[str, Entry], absent: Callable[[str, CID], None] | None = None
                     ) -> list[tuple[str, Any]]:
        """``(key, entry value)`` of :meth:`_held`'s entries, as their tree holds them (without
        making each entry again: what a build of many entries needs)."""
        if not self.inline_items:
            return [(k, e.to_ipld()) for k, e in self._held(entries).items()]
        return [(k, e.to_ipld_holding(inline)) for k, e, inline in self._inline(entries, absent)]

    def _inline(self, entries: Mapping[str, Entry], absent: Callable[[str, CID], None] | None
                ) -> Iterator[tuple[str, Entry, bytes | None]]:
        """Format 3: each entry with the item bytes it holds inline (None: linked); see :meth:`_held`."""
        wanted = {e.item for e in entries.values() if e.inline is None}
        found = self.store.get_many(list(wanted)) if wanted else {}
        for k, e in entries.items():
            inline = e.inline
            if inline is None:
                data = found.get(e.item)
                if data is None:
                    if absent is not None and not self.store.has(e.item):
                        absent(k, e.item)
                        continue
                    data = self.store.get(e.item)  # raises BlockNotFoundError naming it
                # the store verified the bytes against the CID, so it is CID.for_bytes(data, DAG_CBOR)
                # exactly when it is a CIDv1 of dag-cbor and sha2-256 (a v0 or raw CID: linked)
                buf = e.item.buffer
                if len(data) <= INLINE_MAX and len(buf) == 36 and buf[:4] == _V1_DAG_CBOR_SHA256:
                    inline = data
            elif len(inline) > INLINE_MAX:
                self.store.put_many([(e.item, inline)])
                inline = None
            yield k, e, inline

    def _check_claims(self, root: IndexRoot, upserts: Mapping[str, Entry], old: Mapping[str, Entry | None],
                      field: str) -> None:
        """A path (``field="path"``) or a DOI (``"doi"``) belongs to one dataset: refuse an upsert
        onto one that another dataset keeps (unless that one moves away in the same change)."""
        lookup = self.key_for_path if field == "path" else self.key_for_doi
        claimed: dict[str, str] = {}
        for k, after in upserts.items():
            value: str | None = getattr(after, field)
            if value is None:
                continue
            other = claimed.get(value)
            if other is not None and other != k:
                raise self._conflict(field, value, k, other, f"datasets {other!r} and {k!r} both claim the {field} {value!r}")
            claimed[value] = k
            before = old.get(k)
            if before is not None and getattr(before, field) == value:
                continue
            holder = lookup(root, value)
            if holder is None or holder == k:
                continue
            moved = holder in old and (old[holder] is not None) and (
                holder not in upserts or getattr(upserts[holder], field) != value
            )
            if not moved:
                raise self._conflict(field, value, k, holder, f"cannot give {k!r} the {field} {value!r}: dataset {holder!r} has it")

    @staticmethod
    def _conflict(field: str, value: str, key: str, other: str, message: str) -> PathConflictError | DoiConflictError:
        if field == "path":
            return PathConflictError(message, key=key, path=value)
        return DoiConflictError(message.replace("the doi", "the DOI"), key=key, doi=value, other=other)

    # -- comparing -------------------------------------------------------------------------
    def diff(self, old: IndexRoot | None, new: IndexRoot, prefix: str | None = None) -> Iterator[Change]:
        """Dataset changes from ``old`` (None = empty) to ``new``; values are :class:`Entry`.
        With ``prefix``, only of the keys that start with it (and only the subtrees that hold
        such keys are read).

        Neither tree is read past the entries its root declares, and the changes must account
        for the difference of the two counts (else :class:`TreeShapeError`, ``rule="count"``).
        """
        before = 0 if old is None else old.count
        old_tree, old_inline = (None, False) if old is None else (old.datasets, old.inline_items)
        net = 0
        start, stop = (None, None) if prefix is None else (prefix, prefix_end(prefix))
        for change in self.datasets.diff(None if old is None else old.datasets, new.datasets,
                                         old_count=before, new_count=new.count, start=start, stop=stop):
            if change.old is None:
                net += 1
            elif change.new is None:
                net -= 1
            a = None if change.old is None else Entry.from_ipld(change.old, cid=old_tree, inline=old_inline)
            b = None if change.new is None else Entry.from_ipld(change.new, cid=new.datasets, inline=new.inline_items)
            if a is not None and a == b:
                continue  # the same dataset written another way (linked in format 2, inline in 3): no change
            yield Change(change.key, a, b)
        if prefix is None and before + net != new.count:
            raise count_error(new, f"holds {before + net} datasets (the {before} of the version before, "
                                   f"{net:+d}), but its index root declares {new.count}")


class _Tally:
    """Entries read by a build, and the first ten of those whose item block is absent, of how many."""

    def __init__(self) -> None:
        self.count = 0
        self.absent: list[tuple[str, CID]] = []
        self.absent_count = 0

    def note(self, key: str, cid: CID) -> None:
        self.absent_count += 1
        if len(self.absent) < 10:
            self.absent.append((key, cid))

    def plus(self, other: _Tally) -> _Tally:
        both = _Tally()
        both.count = self.count + other.count
        both.absent = (self.absent + other.absent)[:10]
        both.absent_count = self.absent_count + other.absent_count
        return both


def _encode_roots(roots: tuple[CID, CID, CID | None]) -> bytes:
    return pickle.dumps([None if c is None else c.buffer for c in roots])


def _decode_roots(data: bytes) -> tuple[CID, CID, CID | None] | None:
    roots = pickle.loads(data)
    by_path, by_data, by_doi = roots
    return CID(by_path), CID(by_data), None if by_doi is None else CID(by_doi)


def _encode_tail(found: list[tuple[str, CID]], tally: _Tally) -> bytes:
    return pickle.dumps(([(k, c.buffer) for k, c in found], tally.count,
                         [(k, c.buffer) for k, c in tally.absent], tally.absent_count))


def _decode_tail(data: bytes) -> tuple[list[tuple[str, CID]], _Tally]:
    found, count, absent, absent_count = pickle.loads(data)
    tally = _Tally()
    tally.count, tally.absent, tally.absent_count = count, [(k, CID(c)) for k, c in absent], absent_count
    return [(k, CID(c)) for k, c in found], tally


class _Forked:
    """Part of :meth:`Index.build_sorted` done by a forked child process meanwhile: ``work``
    runs there, writes its nodes to the store (in its own connections: the stores re-open
    theirs after a fork), and returns what the parent needs, as bytes sent through a pipe
    (plain data, pickled by this module).

    Anything that goes wrong in the child (a path claimed twice, a failed write, a kill) makes
    :meth:`result` None, and the parent does the work itself, which raises what was wrong.
    Nodes the child wrote are then linked from nowhere (``gc`` deletes them), as are those of
    any failed build. The child ends as soon as it sees that its parent is gone (a killed
    commit: ``_while_alive``), and :meth:`close` kills it when the parent gives up first.
    """

    def __init__(self, work: Callable[[], bytes]) -> None:
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(read)
                with os.fdopen(write, "wb") as out:
                    out.write(work())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self.read: int | None = read
        self.got: bytes | None = None

    def result(self) -> bytes | None:
        """What the child's work returned, once it is done; None if it failed."""
        if self.read is not None:
            chunks = []
            while chunk := os.read(self.read, 1 << 20):
                chunks.append(chunk)
            os.close(self.read)
            self.read = None
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            self.got = b"".join(chunks) if os.waitstatus_to_exitcode(status) == 0 else None
        return self.got

    def close(self) -> None:
        """Kill the child if it still runs (the build failed before its result was read)."""
        if self.read is not None:
            os.close(self.read)
            self.read = None
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0


#: entries a run of a lookup tree takes (:func:`_runs`)
_RUN = 4096
#: DAG-CBOR's null: a ``by_data`` entry's value
_NULL = b"\xf6"
#: the DAG-CBOR heads of texts shorter than 256 bytes, by length
_TEXT_HEADS = [cbor_head(3, n) for n in range(256)]


def _runs(items: Iterator[_T]) -> Iterator[list[_T]]:
    """``items`` in lists of :data:`_RUN`."""
    while run := list(islice(items, _RUN)):
        yield run


def _texts(values: list[str]) -> list[bytes]:
    """The DAG-CBOR of each text of ``values`` (:func:`~halodb.ipld.codec.encode_shallow`'s).

    >>> _texts(["a", "é" * 200])[0], len(_texts(["é" * 200])[0])
    (b'aa', 403)
    """
    utf8 = list(map(str.encode, values))
    if max(map(len, utf8), default=0) < 256:
        return list(map(bytes.__add__, map(_TEXT_HEADS.__getitem__, map(len, utf8)), utf8))
    return [cbor_head(3, len(u)) + u for u in utf8]


class _AliveBatches:
    """:func:`_while_alive` of the batches of ``source``, checked before each batch."""

    def __init__(self, source: EntryBatches, parent: int) -> None:
        self.source, self.parent = source, parent

    def batches(self) -> Iterator[EntryBatch]:
        return _while_alive(self.source.batches(), self.parent, every=1)


def _alive_entries(entries: Entries, parent: int) -> Entries:
    """``entries`` (pairs or batches), ended as :func:`_while_alive` ends them."""
    if isinstance(entries, EntryBatches):
        return _AliveBatches(entries, parent)
    return _while_alive(entries, parent)


def _entry_pairs(entries: Entries) -> Iterator[tuple[str, Entry]]:
    """``(key, entry)`` of each of ``entries`` (pairs, or batches of them)."""
    if isinstance(entries, EntryBatches):
        return (pair for got in entries.batches() for pair in got.entries())
    return iter(entries)


def _while_alive(items: Iterable[Any], parent: int, every: int = 4096) -> Iterator[Any]:
    """``items``, ended by ``os._exit`` once the process ``parent`` is gone (checked every
    ``every`` items): a child of a killed commit does not go on writing for nothing."""
    for n, item in enumerate(items):
        if n % every == 0 and os.getppid() != parent:
            os._exit(1)
        yield item


def _merge_changes(old: Iterator[tuple[str, Entry]], upserts: Iterator[tuple[str, Entry]], removals: Iterator[str]
                   ) -> Iterator[tuple[str, Entry]]:
    """The entries of ``old`` with ``upserts`` set and ``removals`` deleted; all three in
    strictly increasing key order (else ``ValueError``), and so is what it yields."""
    o, u, r = next(old, None), next(upserts, None), next(removals, None)
    last_u: str | None = None
    last_r: str | None = None
    while o is not None or u is not None:
        key = min(x[0] for x in (o, u) if x is not None)
        while r is not None and r < key:  # a removal before every key left: not held
            raise UnknownKeyError(f"cannot remove {r!r}: no dataset with that key", key=r)
        if u is not None and u[0] == key:
            if last_u is not None and key <= last_u:
                raise ValueError(f"upserts out of order: {key!r} after {last_u!r}")
            last_u = key
            yield u
            u = next(upserts, None)
            if o is not None and o[0] == key:
                o = next(old, None)
            if r == key:  # removed and upserted: the upsert wins
                last_r, r = r, next(removals, None)
            continue
        assert o is not None
        if r == key:
            last_r, r = r, next(removals, None)
            if r is not None and r <= last_r:
                raise ValueError(f"removals out of order: {r!r} after {last_r!r}")
        else:
            yield o
        o = next(old, None)
    if r is not None:
        raise UnknownKeyError(f"cannot remove {r!r}: no dataset with that key", key=r)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no bound).

    >>> prefix_end("halo/"), prefix_end("")
    ('halo0', None)
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def count_error(root: IndexRoot, problem: str, tree: CID | None = None, name: str = "by_data") -> TreeShapeError:
    """``datasets tree <cid> <problem>``: a tree that does not hold what its index root declares."""
    cid = root.datasets if tree is None else tree
    name = "datasets" if tree is None else name
    return TreeShapeError(f"{name} tree {cid} {problem}", cid=cid, rule="count")
