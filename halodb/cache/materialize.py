"""Applying a :class:`~halodb.cache.records.SyncPlan` to the cache in one transaction.

The plan's changes are read once, in order, and flattened into columns chunk by chunk
(:func:`plan_chunks`, about :data:`VERSION_BATCH` changes each, so a sync of a million
datasets holds a chunk in memory, not the whole history); each chunk is written with a
handful of set-based statements over registered Arrow tables (built from buffers, see
:mod:`halodb.cache.arrow_columns`):

1. ``reset``: forget the name's history (``name_commits``, ``item_versions``, ``sync_state``);
   otherwise check that the plan continues the synced head (its first commit is a child of
   the head, no commit is synced already, time does not go back).
2. ``commits`` (shared, ``INSERT OR IGNORE``) and ``name_commits`` (appended after the old head).
3. per chunk, ``item_versions``: ONE ``UPDATE ... FROM`` closes the versions the chunk
   changes that were open before it (in the cache, or opened by an earlier chunk); then ONE
   ``INSERT`` adds every version the chunk opens, those that the chunk itself closes again
   already carrying their ``valid_to``;
4. per chunk, ``stac_items``: only item CIDs the cache does not hold yet are encoded and
   inserted, by ONE statement reading the batches as they are made, across chunks (up to
   :data:`STREAM_ITEMS`; the versions of 3. wait for it, see :class:`_BulkInserts`; in a
   cache that held no items, the look-up is skipped for a chunk none of whose items an
   earlier chunk had); an item block the loader could not materialize
   (``ItemColumns.skipped``) is recorded in ``skipped_items`` with why instead, and the
   rest of the batch goes on.
5. the versions that only respell a data CID are marked (:mod:`halodb.cache.respellings`);
   ``sync_state`` upsert; after a reset, items, skipped items and commits no name uses are
   deleted.

Everything runs in ONE DuckDB transaction: on any error (a malformed change found in the
third chunk as well as a failed insert) it is rolled back and a
:class:`~halodb.errors.CacheError` raised, leaving the cache exactly as before. The SQL
runs in order on one background thread (DuckDB releases the GIL) so that DuckDB inserts
STAC items while Python makes the next ones; the next chunk of the plan
is read on another thread meanwhile (the first one, :data:`FIRST_CHUNK`, is short: nothing
else runs while it is read).

>>> import duckdb
>>> from datetime import datetime, timedelta, timezone
>>> from halodb.cache.migrate import migrate
>>> from halodb.cache.records import ChangeRecord, CommitRecord, ItemRecord, SyncPlan
>>> con = duckdb.connect(); _ = migrate(con)
>>> from halodb.cache.stac_columns import item_columns
>>> item = ItemRecord("k", "bafyitem", "bafydata", "a/b.zarr")
>>> commit = CommitRecord("bafyc1", [], "bafyi1", datetime(2024, 9, 1, tzinfo=timezone.utc), "me", "add",
...                       [ChangeRecord("k", item)])
>>> load = lambda cids: item_columns(cids, [{"id": "b"}])   # what a sync reads from the item blocks
>>> apply_plan(con, SyncPlan("demo", "bafyc1", False, [commit], load_item_columns=load), now=datetime.now(timezone.utc))
1
>>> con.execute("SELECT key, id, data_cid FROM items").fetchall()
[('k', 'b', 'bafydata')]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice, repeat
from operator import lt

import duckdb
import pyarrow as pa

from halodb.cache.arrow_columns import false_in, int32s, string_lists, strings, timestamps
from halodb.cache.batch_stream import BatchStream
from halodb.cache.connect import execute_over, registered, rollback_quietly, scalar, sql_literal
from halodb.cache.records import AddedBatch, ChangeRecord, SyncPlan
from halodb.cache.respellings import mark_respellings
from halodb.cache.stac_columns import columns_table
from halodb.cache.writer import OrderedWriter, Skipped
from halodb.errors import CacheError, HaloDBError
from halodb.util.native import native

__all__ = ["VERSION_BATCH", "PlanColumns", "apply_plan", "commit_columns", "plan_chunks", "plan_columns"]

_T_COMMITS = "_halodb_plan_commits"
_T_VERSIONS = "_halodb_plan_versions"
_T_CLOSES = "_halodb_plan_closes"
_T_CANDIDATES = "_halodb_plan_item_cids"
_T_ITEMS = "_halodb_plan_items"
_T_SKIPPED = "_halodb_plan_skipped"
_STR: set[type] = {str}
_STR_OR_NONE: set[type] = {str, type(None)}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@dataclass
class PlanColumns:
    """A plan flattened into columns (indices into the plan's commits, 0 = oldest)."""

    commit_cid: list[str] = field(default_factory=list)
    commit_parents: list[list[str]] = field(default_factory=list)
    commit_index: list[str] = field(default_factory=list)
    commit_time: list[datetime] = field(default_factory=list)
    commit_author: list[str] = field(default_factory=list)
    commit_message: list[str] = field(default_factory=list)
    #: versions the plan opens; ``to`` is None when still open at the end of the plan
    version_key: list[str] = field(default_factory=list)
    version_item_cid: list[str] = field(default_factory=list)
    version_data_cid: list[str | None] = field(default_factory=list)
    version_path: list[str | None] = field(default_factory=list)
    version_from: list[int] = field(default_factory=list)
    version_to: list[int | None] = field(default_factory=list)
    #: the rows (first, count) of the versions added batches open: keys the version before
    #: did not hold, so no row precedes them and none respells a data CID (``respelled``
    #: false at once; the others are checked by :func:`mark_respellings`)
    version_new: list[tuple[int, int]] = field(default_factory=list)
    #: keys whose version open before the plan is closed, and by which commit
    close_key: list[str] = field(default_factory=list)
    close_at: list[int] = field(default_factory=list)
    #: distinct item blocks the plan references, in order of first occurrence
    items: dict[str, None] = field(default_factory=dict)
    #: the changes (one per key and commit) the chunk holds
    changes: int = 0


def plan_columns(plan: SyncPlan) -> PlanColumns:
    """Flatten and validate ``plan`` whole (one :class:`PlanColumns`, no SQL); raises
    :class:`CacheError` on a malformed plan. :func:`apply_plan` flattens it chunk by chunk
    instead (:func:`plan_chunks`).

    >>> from halodb.cache.records import AddedBatch, ChangeRecord, SyncPlan
    >>> plan_columns(SyncPlan("n", "h", False, [])).version_key
    []
    """
    commit_columns(plan)
    return next(plan_chunks(plan, None), PlanColumns())


def commit_columns(plan: SyncPlan) -> PlanColumns:
    """The commits of ``plan`` as columns (no changes), validated: name, head, each commit
    once, timezone-aware times that never go back. :class:`CacheError` otherwise."""
    if not isinstance(plan.name, str) or not plan.name:
        raise CacheError(f"sync plan has no valid name: {plan.name!r}", name=plan.name)
    if not isinstance(plan.head, str) or not plan.head:
        raise CacheError(f"sync plan for {plan.name} has no valid head: {plan.head!r}", name=plan.name)
    cols = PlanColumns()
    seen_commits: set[str] = set()
    previous_time: datetime | None = None
    for commit in plan.commits:
        if commit.cid in seen_commits:
            raise CacheError(f"commit {commit.cid} appears twice in the plan for {plan.name}", cid=commit.cid, name=plan.name)
        seen_commits.add(commit.cid)
        t = commit.time
        if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
            raise CacheError(f"commit {commit.cid} has no timezone-aware time: {t!r}", cid=commit.cid)
        if previous_time is not None and t < previous_time:
            raise CacheError(
                f"commit {commit.cid} is older than the commit before it in the plan ({t} < {previous_time});"
                " item versions need non-decreasing commit times",
                cid=commit.cid,
            )
        previous_time = t
        cols.commit_cid.append(commit.cid)
        cols.commit_parents.append(list(commit.parents))
        cols.commit_index.append(commit.index)
        cols.commit_time.append(t.astimezone(timezone.utc))
        cols.commit_author.append(commit.author)
        cols.commit_message.append(commit.message)
    return cols


def plan_chunks(plan: SyncPlan, limit: int | None = None, first: int | None = None) -> Iterator[PlanColumns]:
    """The changes of ``plan`` flattened into version columns, at most about ``limit`` rows
    (versions opened plus versions closed) a chunk (None: one chunk; ``first``: the bound of
    the first chunk when smaller), reading each commit's
    changes once, in order. In a chunk, ``close_*`` names the keys whose version open
    before the chunk (in the cache, or opened by an earlier chunk) a commit closes; a version
    the chunk itself opens and closes carries its ``to``. Raises :class:`CacheError` for a
    malformed change: a key changed twice in one commit, an item of another key.

    A commit may list its changes in any order while it fits in a chunk; a longer one is
    split between chunks only while its keys come in strictly increasing order (as a diff
    yields them), since a key of an earlier chunk cannot be checked again. An
    :class:`AddedBatch` that continues its commit's keys in order, none of them open in the
    chunk, is flattened whole (keys new in the commit: no close rows); any other is taken
    as its records.

    >>> from datetime import datetime, timezone
    >>> from halodb.cache.records import ChangeRecord, CommitRecord, ItemRecord
    >>> rec = lambda k: ChangeRecord(k, ItemRecord(k, "bafyi" + k, None, None))
    >>> c = CommitRecord("c1", [], "i1", datetime(2024, 9, 1, tzinfo=timezone.utc), "me", "m", [rec("a"), rec("b"), rec("c")])
    >>> [chunk.version_key for chunk in plan_chunks(SyncPlan("n", "c1", False, [c]), 4)]
    [['a', 'b'], ['c']]
    >>> [chunk.version_key for chunk in plan_chunks(SyncPlan("n", "c1", False, [c]), 4, first=2)]
    [['a'], ['b', 'c']]
    """
    bound = min(first, limit) if first is not None and limit is not None else limit
    cols = PlanColumns()
    open_row: dict[str, int] = {}  # key -> row in version_* opened by this chunk and still open
    closed_before: set[str] = set()  # keys whose pre-chunk version this chunk closes already
    # The batches of the commit being read, in this chunk, not yet noted in ``keys_here`` and
    # ``open_row`` (their keys and first row): noted only once a record or the next commit
    # needs them, so a first version read as batches alone (a full sync) notes none of its
    # 1,000,000 keys. Until then they need no check against each other: each continues the
    # commit's keys in order.
    batched: list[tuple[list[str], int]] = []

    def note_batched(here: set[str] | None) -> None:
        """The rows of ``batched`` noted in ``open_row`` (and their keys in ``here``)."""
        for keys, first_row in batched:
            if here is not None:
                here.update(keys)
            open_row.update(zip(keys, range(first_row, first_row + len(keys))))
        batched.clear()

    for seq, commit in enumerate(plan.commits):
        note_batched(None)  # (the commit before's: open in this chunk, for this one to close)
        keys_here: set[str] = set()  # the keys of this commit in this chunk (and those ``batched``)
        split = 0  # the bound at which this commit was split between chunks (then its keys must increase), or 0
        last: str | None = None
        increasing = True
        for batch in commit.changes:
            if isinstance(batch, AddedBatch):
                keys = batch.keys
                if (keys and increasing and (last is None or keys[0] > last) and _increasing(keys)
                        and (not open_row or open_row.keys().isdisjoint(keys))):
                    # keys the version before did not hold, in order after this commit's
                    # others: opened as a batch; nothing open before to close
                    n, first_row = len(keys), len(cols.version_key)
                    if not len(batch.item_cids) == len(batch.data_cids) == len(batch.paths) == n:
                        raise CacheError(f"an added batch of commit {commit.cid} has columns of other lengths than "
                                         f"its {n} keys", cid=commit.cid)
                    batched.append((keys, first_row))
                    cols.version_new.append((first_row, n))
                    last = keys[-1]
                    cols.changes += n
                    cols.version_key += keys
                    cols.version_item_cid += batch.item_cids
                    cols.version_data_cid += batch.data_cids
                    cols.version_path += batch.paths
                    cols.version_from += repeat(seq, n)
                    cols.version_to += repeat(None, n)
                    cols.items.update(zip(batch.item_cids, repeat(None)))
                    if bound is not None and len(cols.version_key) + len(cols.close_key) >= bound:
                        yield cols
                        cols, open_row, closed_before, keys_here, split = PlanColumns(), {}, set(), set(), bound
                        batched.clear()
                        bound = limit
                    continue
                records: Iterable[ChangeRecord] = batch.records()  # (checked one by one, as any change)
            else:
                records = (batch,)
            if batched:
                note_batched(keys_here)
            for change in records:
                key = change.key
                if last is not None and key <= last:
                    increasing = False
                    if split:
                        raise CacheError(
                            f"commit {commit.cid} lists more than {split} changes out of key order ({key!r} after "
                            f"{last!r}); a commit that long must list its keys in increasing order", key=key, cid=commit.cid)
                last = key
                if key in keys_here:
                    raise CacheError(f"key {key!r} changes twice in commit {commit.cid}", key=key, cid=commit.cid)
                keys_here.add(key)
                cols.changes += 1
                row = open_row.pop(key, None)
                if row is not None:
                    cols.version_to[row] = seq
                elif key not in closed_before:
                    closed_before.add(key)
                    cols.close_key.append(key)
                    cols.close_at.append(seq)
                new = change.new
                if new is not None:
                    if new.key != key:
                        raise CacheError(f"change of key {key!r} carries an item for key {new.key!r}", key=key, cid=commit.cid)
                    open_row[key] = len(cols.version_key)
                    cols.version_key.append(key)
                    cols.version_item_cid.append(new.item_cid)
                    cols.version_data_cid.append(new.data_cid)
                    cols.version_path.append(new.path)
                    cols.version_from.append(seq)
                    cols.version_to.append(None)
                    cols.items.setdefault(new.item_cid, None)
                if bound is not None and increasing and len(cols.version_key) + len(cols.close_key) >= bound:
                    yield cols
                    cols, open_row, closed_before, keys_here, split = PlanColumns(), {}, set(), set(), bound
                    bound = limit
    if cols.version_key or cols.close_key or limit is None:
        yield cols


def _increasing(keys: list[str]) -> bool:
    """Whether ``keys`` are strictly increasing (a C loop).

    >>> _increasing(["a", "b"]), _increasing(["b", "b"])
    (True, False)
    """
    return all(map(lt, keys, islice(keys, 1, None)))


def apply_plan(con: duckdb.DuckDBPyConnection, plan: SyncPlan, *, now: datetime,
               progress: Callable[[int], None] | None = None) -> int:
    """Apply ``plan`` through ``con`` in ONE transaction; on error roll back and raise
    CacheError. Returns the number of changes applied.

    ``now`` is recorded as the sync time. See the module docstring for the steps. The SQL
    runs in order on one background thread (:class:`OrderedWriter`) so that DuckDB writes
    while Python reads the next changes and encodes the next batch of items. ``progress(n)``
    is called with the items encoded so far after each batch.
    """
    commits = _commits_table(commit_columns(plan))  # before BEGIN: malformed commits never touch the database
    writer = OrderedWriter()
    reader: ThreadPoolExecutor | None = None  # reads the next chunk of the plan (see below)
    inserts = _BulkInserts(con, writer, plan.name, commits)
    began = False
    changes = encoded = 0
    try:
        # Commit by checkpointing: DuckDB then writes the changes once, straight into the
        # database file (atomically: new blocks, then the header), instead of first into
        # the WAL and again into the file when the connection closes (-40% commit + close
        # for 10,000 items). RESET below restores the default threshold.
        con.execute("SET checkpoint_threshold = '0B'")
        con.begin()
        began = True
        if plan.reset:
            start = writer.submit(_forget, con, plan.name)
        else:
            start = writer.submit(_next_seq, con, plan, commits)
        writer.submit(_insert_commits, con, plan.name, commits, start)
        # a cache that holds no items yet can only hold those of this plan's earlier chunks:
        # a chunk none of whose items were seen before needs no look-up (see _SeenItems)
        seen = _SeenItems() if writer.submit(_holds_no_items, con).result() else None
        chunks = plan_chunks(plan, VERSION_BATCH, FIRST_CHUNK)
        cols = next(chunks, None)
        first = True
        opened = False
        while cols is not None:
            changes += cols.changes
            candidates = list(cols.items)
            # the items first, so that Python can encode them soon
            if seen is not None and not seen.any_again(candidates):
                present = None
            else:
                inserts.close()  # (the look-up waits for the INSERT: it must see its items)
                present = writer.submit(_present_items, con, candidates)
            if cols.close_key and not (first and plan.reset):  # nothing is open after a reset's _forget
                inserts.flush()  # (it may close versions waiting)
                writer.submit(_close_versions, con, plan.name, commits, _closes_table(cols))
            if cols.version_key:
                inserts.versions(_versions_table(cols))
                opened = True
            cols.close_key, cols.close_at = [], []
            cols.version_key, cols.version_item_cid, cols.version_data_cid, cols.version_path = [], [], [], []
            cols.version_from, cols.version_to, cols.version_new = [], [], []
            if present is None:  # all new: announced now, made while the next chunk is read
                new = candidates
                _announce(plan, new)
            # the next chunk is read on a thread of its own (Python: it takes the GIL while
            # this one only waits) while this chunk's items are made and inserted
            if reader is None:
                reader = ThreadPoolExecutor(1, thread_name_prefix="halodb-cache-plan")
            following = reader.submit(next, chunks, None)
            if present is not None:
                found = present.result()
                new = [cid for cid in candidates if cid not in found] if found else candidates
                _announce(plan, new)
            for lo in range(0, len(new), ITEM_BATCH):
                batch = new[lo : lo + ITEM_BATCH]
                table, skipped = _batch_table(plan, batch)
                inserts.put(table)
                if skipped:
                    writer.submit(_record_skipped, con, skipped, now)
                encoded += len(batch)
                if progress is not None:
                    progress(encoded)
            cols, first = following.result(), False
        inserts.close()
        if opened:  # after the items: they are compared
            writer.submit(mark_respellings, con, plan.name)
        if plan.reset:
            writer.submit(_collect_garbage, con)
        writer.submit(_write_sync_state, con, plan, now)
        writer.finish()
        con.commit()
    except Exception as exc:
        inserts.abort()
        writer.abort()
        if began:
            rollback_quietly(con)
        cause = writer.first_error() or exc  # the step that failed, not a skipped one after it
        if isinstance(cause, HaloDBError):  # e.g. a block that failed verification in load_item_columns
            raise cause from None
        raise CacheError(f"sync of {plan.name} to {plan.head} failed, cache unchanged: {cause}", name=plan.name) from cause
    except BaseException:
        inserts.abort()
        writer.abort()
        if began:
            rollback_quietly(con)
        raise
    finally:
        inserts.abort()  # (nothing to do once closed)
        writer.abort()
        if reader is not None:  # (a chunk being read is finished: the plan's store outlives no reader)
            reader.shutdown(wait=True, cancel_futures=True)
        _reset_checkpoint_threshold(con)
    return changes


#: versions (opened plus closed) flattened per chunk: a chunk's rows are in DuckDB before
#: the next chunk is read, so a sync holds about this many changes in memory at a time
VERSION_BATCH = 100_000

#: the first chunk is smaller: nothing else runs while the main thread reads it (the next
#: chunks are read while DuckDB inserts the one before), so a short one starts DuckDB sooner
FIRST_CHUNK = 16_384

#: STAC items made into columns per batch (by the sync's column thread, or Python): a batch
#: is ~9 MB of columns
ITEM_BATCH = 8_192

#: items inserted by ONE statement at most, read batch by batch as they are made (see
#: :class:`_BulkInserts`): DuckDB inserts a statement that large on both cores, writing
#: its row groups as it goes, where one of 65,536 items ran on one core and left the
#: compression to the commit. The versions of the chunks read meanwhile wait for the
#: statement (~25 MB a chunk of 100,000) and are then inserted by one statement too.
#: A 1M-item first sync: benchmarks/README.md, "sync: one INSERT of many batches"
STREAM_ITEMS = 1_048_576

#: batches made that may wait for DuckDB to read them (the producer then waits)
STREAM_QUEUED = 4


class _BulkInserts:
    """The sync's INSERTs of new items and versions, each as large as memory allows.

    New items go to one statement over a :class:`BatchStream` that the main thread fills
    batch by batch (:meth:`put`), :data:`STREAM_ITEMS` items at most. The versions of the
    chunks read while it runs wait (:meth:`versions`), and are inserted by one statement
    when it ends, or before anything that reads them (:meth:`flush`: a close). What must
    see the items inserted so far (a look-up of present items) comes after :meth:`close`;
    :meth:`abort` makes a running INSERT fail, so that the writer never waits for a batch
    that will not come."""

    def __init__(self, con: duckdb.DuckDBPyConnection, writer: OrderedWriter, name: str, commits: pa.Table) -> None:
        self._con, self._writer, self._name, self._commits = con, writer, name, commits
        self._stream: BatchStream | None = None
        self._versions: list[pa.Table] = []

    def versions(self, table: pa.Table) -> None:
        """Insert ``table`` (a :func:`_versions_table`) after what was queued before; no
        more than :data:`STREAM_ITEMS` versions wait (the running INSERT ends first)."""
        self._versions.append(table)
        if self._stream is None or sum(map(len, self._versions)) >= STREAM_ITEMS:
            self.close()

    def flush(self) -> None:
        """Queue the INSERT of the versions waiting (one statement)."""
        if self._versions:
            versions = self._versions[0] if len(self._versions) == 1 else pa.concat_tables(self._versions)
            self._versions = []
            self._writer.submit(_insert_versions, self._con, self._name, self._commits, versions)

    def put(self, table: pa.Table) -> None:
        """Insert ``table`` (a batch of :func:`columns_table`) with the others of its INSERT."""
        stream = self._stream
        if stream is None:
            stream = self._stream = BatchStream(table.schema, depth=STREAM_QUEUED)
            insert = self._writer.submit(_insert_items, self._con, stream)
            # (also when the writer skips it, after an earlier step failed: put then raises)
            insert.add_done_callback(lambda _: stream.end())
        stream.put(table)
        if stream.rows >= STREAM_ITEMS:
            self.close()

    def close(self) -> None:
        """End the running INSERT's stream (it returns once it has inserted every batch),
        and queue the versions that waited for it."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.flush()

    def abort(self) -> None:
        """Make the running INSERT fail, inserting nothing (the sync failed elsewhere)."""
        self._versions = []
        if self._stream is not None:
            self._stream.close(CacheError("the sync failed: its items are not inserted"))
            self._stream = None


class _SeenItems:
    """The item CIDs of a plan's chunks so far, as 64-bit hashes (the compiled module's
    ``TextSet``, 8 bytes a CID; else a set of Python's hashes, ~70 bytes): whether a chunk
    may repeat one. A repeat, or a collision, costs the chunk a look-up in the cache.

    >>> seen = _SeenItems()
    >>> seen.any_again(["bafya", "bafyb"]), seen.any_again(["bafyc"]), seen.any_again(["bafyb"])
    (False, False, True)
    """

    def __init__(self) -> None:
        module = native()
        self._texts = None if module is None else module.TextSet()
        self._hashes: set[int] = set()

    def any_again(self, cids: list[str]) -> bool:
        """Note ``cids``; whether one of them (or an equal hash) was noted before."""
        if self._texts is not None:
            return bool(self._texts.add_all(cids))
        hashes = set(map(hash, cids))
        again = not hashes.isdisjoint(self._hashes)
        self._hashes |= hashes
        return again


def _announce(plan: SyncPlan, new: list[str]) -> None:
    """Tell the plan the batches of ``new`` items the cache asks for next."""
    if plan.announce_item_batches is not None and new:
        plan.announce_item_batches([new[lo : lo + ITEM_BATCH] for lo in range(0, len(new), ITEM_BATCH)])


def _batch_table(plan: SyncPlan, batch: list[str]) -> tuple[pa.Table, dict[str, str]]:
    """The Arrow table of one batch of new items, read through ``plan.load_item_columns``,
    and the items of the batch it skipped (CID -> why)."""
    if plan.load_item_columns is None:
        raise CacheError(f"sync plan for {plan.name} adds items but cannot load them (no load_item_columns)", name=plan.name)
    columns = plan.load_item_columns(batch)
    skipped = columns.skipped
    expected = [c for c in batch if c not in skipped] if skipped else batch
    if columns.cids != expected or (skipped and not skipped.keys() <= set(batch)):
        raise CacheError(f"load_item_columns returned other items than the {len(batch)} asked for", name=plan.name)
    return columns_table(columns), skipped


# -- steps (each runs on the writer thread, inside the transaction) ----------------------
def _commits_table(cols: PlanColumns) -> pa.Table:
    parents = cols.commit_parents
    for p in parents:
        _strings(p, "parent commit")
    return pa.table(
        {
            "idx": int32s(range(len(cols.commit_cid))),
            "cid": _strings(cols.commit_cid, "commit cid"),
            "parents": string_lists(parents),
            "index_cid": _strings(cols.commit_index, "index cid"),
            "time": timestamps([(t - _EPOCH) // _MICROSECOND for t in cols.commit_time]),
            "author": _strings(cols.commit_author, "author"),
            "message": _strings(cols.commit_message, "message"),
        }
    )


def _closes_table(cols: PlanColumns) -> pa.Table:
    return pa.table({"key": _strings(cols.close_key, "key"), "at": int32s(cols.close_at)})


def _versions_table(cols: PlanColumns) -> pa.Table:
    return pa.table(
        {
            "key": _strings(cols.version_key, "key"),
            "item_cid": _strings(cols.version_item_cid, "item_cid"),
            "data_cid": _strings(cols.version_data_cid, "data_cid", nullable=True),
            "path": _strings(cols.version_path, "path", nullable=True),
            "from_idx": int32s(cols.version_from),
            "to_idx": int32s([-1 if i is None else i for i in cols.version_to]),  # -1: still open
            "respelled": false_in(len(cols.version_key), cols.version_new),
        }
    )


def _forget(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """Delete everything cached for ``name`` (reset plans); the history restarts at seq 0."""
    con.execute("DELETE FROM item_versions WHERE name = ?", [name])
    con.execute("DELETE FROM name_commits WHERE name = ?", [name])
    con.execute("DELETE FROM sync_state WHERE name = ?", [name])
    return 0


def _next_seq(con: duckdb.DuckDBPyConnection, plan: SyncPlan, commits: pa.Table) -> int:
    """The seq after the synced head, once sure the plan continues the synced history.

    A plan that is not a reset must start with a child of the synced head (its changes are
    relative to that head), not re-apply synced commits, and not go back in time. This also
    catches two syncs of one name that raced: the second one's plan is stale.
    """
    name = plan.name
    rows = con.execute(
        "SELECT s.head, c.time FROM sync_state AS s LEFT JOIN commits AS c ON c.cid = s.head WHERE s.name = ?", [name]
    ).fetchall()
    if rows:
        head, head_time = rows[0]
        if not plan.commits:
            if plan.head != head:
                raise CacheError(
                    f"plan for {name} has no commits but moves the head from {head} to {plan.head}; use a reset plan",
                    name=name,
                    head=head,
                )
        elif head not in plan.commits[0].parents:
            raise CacheError(
                f"plan for {name} does not continue the synced head {head} (first commit {plan.commits[0].cid} has"
                f" parents {plan.commits[0].parents}); the name moved since the plan was made: build it again",
                name=name,
                head=head,
            )
        elif head_time is not None and plan.commits[0].time < head_time:
            raise CacheError(
                f"commit {plan.commits[0].cid} is older than the synced head {head} of {name}",
                name=name,
                cid=plan.commits[0].cid,
            )
    with registered(con, _T_COMMITS, commits):
        dup = scalar(
            con,
            f"SELECT p.cid FROM {_T_COMMITS} AS p JOIN name_commits AS n ON n.cid = p.cid AND n.name = ?"
            " ORDER BY p.idx LIMIT 1",
            [name],
        )
    if dup is not None:
        raise CacheError(
            f"commit {dup} is already synced for {name}; a plan must start after the synced head (or reset)",
            cid=dup,
            name=name,
        )
    return int(scalar(con, "SELECT coalesce(max(seq) + 1, 0) FROM name_commits WHERE name = ?", [name]))


def _insert_commits(con: duckdb.DuckDBPyConnection, name: str, commits: pa.Table, start: Future[int]) -> None:
    with registered(con, _T_COMMITS, commits):
        con.execute(
            f"""INSERT OR IGNORE INTO commits
            SELECT cid, CAST(parents AS VARCHAR[]), index_cid, CAST(time AS TIMESTAMPTZ), author, message FROM {_T_COMMITS}"""
        )
        con.execute(f"INSERT INTO name_commits SELECT ?, cid, idx + ? FROM {_T_COMMITS}", [name, start.result()])


def _holds_no_items(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the cache holds no STAC item (a new cache: a first sync's items are all new)."""
    return not scalar(con, "SELECT EXISTS (SELECT 1 FROM stac_items)")


def _present_items(con: duckdb.DuckDBPyConnection, candidates: list[str]) -> set[str]:
    """Which of the plan's item CIDs the cache holds already (those are not encoded again)."""
    if not candidates:
        return set()
    rows = execute_over(con, _T_CANDIDATES, pa.table({"item_cid": strings(candidates)}),
                        f"SELECT c.item_cid FROM {_T_CANDIDATES} AS c SEMI JOIN stac_items AS s ON s.item_cid = c.item_cid")
    return {r[0] for r in rows}


@contextmanager
def _in_any_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Statements in the block may write their rows in any order: DuckDB then writes a large
    INSERT on all its threads (a global setting, restored after the block). The order of a
    table's rows means nothing in the cache: a query orders or joins."""
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        with suppress(duckdb.Error):  # (a broken connection: the error in the block is the one to see)
            con.execute("RESET preserve_insertion_order")


def _insert_items(con: duckdb.DuckDBPyConnection, stream: BatchStream) -> None:
    """Insert the batches of new item blocks (:func:`~halodb.cache.stac_columns.columns_table`)
    that ``stream`` hands over, in one statement, until it is closed."""
    try:
        # (not a registered view: one dropped inside the transaction would hold its batch until the commit)
        with _in_any_order(con):
            execute_over(
                con, _T_ITEMS, stream.reader(),
                f"""INSERT INTO stac_items
                SELECT item_cid, id, collection,
                       TRY_CAST(datetime_text AS TIMESTAMPTZ), TRY_CAST(start_datetime_text AS TIMESTAMPTZ),
                       TRY_CAST(end_datetime_text AS TIMESTAMPTZ),
                       CAST(bbox AS DOUBLE[]), platform, CAST(instruments AS VARCHAR[]), title,
                       CAST(keywords AS VARCHAR[]), item
                FROM {_T_ITEMS}""",
            )
    except Exception:
        if stream.aborted:  # the sync failed elsewhere; its own error is the one to report
            raise Skipped("_insert_items") from None
        raise
    finally:
        stream.end()


def _record_skipped(con: duckdb.DuckDBPyConnection, skipped: dict[str, str], now: datetime) -> None:
    """Record the item blocks of a batch that could not be materialized, and why."""
    table = pa.table({"item_cid": strings(list(skipped)), "reason": strings(list(skipped.values()))})
    execute_over(
        con, _T_SKIPPED, table,
        f"""INSERT INTO skipped_items SELECT item_cid, reason, {sql_literal(now)} FROM {_T_SKIPPED}
        ON CONFLICT (item_cid) DO UPDATE SET reason = excluded.reason, seen_at = excluded.seen_at""",
    )


def _close_versions(con: duckdb.DuckDBPyConnection, name: str, commits: pa.Table, closes: pa.Table) -> None:
    """Close, in one UPDATE, the versions open before the plan whose keys the plan changes."""
    if not scalar(con, "SELECT EXISTS (SELECT 1 FROM item_versions WHERE name = ? AND valid_to IS NULL)", [name]):
        return  # a new (or emptied) name: nothing to close
    # the chunk's table only for this statement (see _insert_items); the plan's commits, one
    # table for the whole sync, registered
    with registered(con, _T_COMMITS, commits):
        execute_over(
            con, _T_CLOSES, closes,
            f"""UPDATE item_versions SET valid_to_commit = c.cid, valid_to = c.time
            FROM (SELECT x.key, p.cid, CAST(p.time AS TIMESTAMPTZ) AS time
                  FROM {_T_CLOSES} AS x JOIN {_T_COMMITS} AS p ON p.idx = x.at) AS c
            WHERE item_versions.name = {sql_literal(name)} AND item_versions.key = c.key
              AND item_versions.valid_to IS NULL""",
        )


def _insert_versions(con: duckdb.DuckDBPyConnection, name: str, commits: pa.Table, versions: pa.Table) -> None:
    """Insert, in one INSERT, versions the plan opens (closed ones with their valid_to)."""
    with registered(con, _T_COMMITS, commits), _in_any_order(con):  # (the chunk's versions only for the statement: see _close_versions)
        execute_over(
            con, _T_VERSIONS, versions,
            f"""INSERT INTO item_versions (name, key, item_cid, data_cid, path, valid_from_commit, valid_from,
                                       valid_to_commit, valid_to, respelled)
            SELECT {sql_literal(name)}, v.key, v.item_cid, v.data_cid, v.path, f.cid, CAST(f.time AS TIMESTAMPTZ),
                   t.cid, CAST(t.time AS TIMESTAMPTZ), v.respelled
            FROM {_T_VERSIONS} AS v
            JOIN {_T_COMMITS} AS f ON f.idx = v.from_idx
            LEFT JOIN {_T_COMMITS} AS t ON t.idx = v.to_idx""",
        )


def _collect_garbage(con: duckdb.DuckDBPyConnection) -> None:
    """After a reset: drop item blocks and commits no name's history uses any more."""
    con.execute("DELETE FROM stac_items WHERE item_cid NOT IN (SELECT item_cid FROM item_versions)")
    con.execute(
        "DELETE FROM skipped_items WHERE item_cid NOT IN (SELECT item_cid FROM item_versions)"
        " OR item_cid IN (SELECT item_cid FROM stac_items)"
    )
    con.execute("DELETE FROM commits WHERE cid NOT IN (SELECT cid FROM name_commits)")


def _write_sync_state(con: duckdb.DuckDBPyConnection, plan: SyncPlan, now: datetime) -> None:
    con.execute(
        """INSERT INTO sync_state (name, head, synced_at, commits, items, scope)
        SELECT $name, $head, $now,
               (SELECT count(*) FROM name_commits WHERE name = $name),
               (SELECT count(*) FROM item_versions WHERE name = $name AND valid_to IS NULL), $scope
        ON CONFLICT (name) DO UPDATE SET head = excluded.head, synced_at = excluded.synced_at,
               commits = excluded.commits, items = excluded.items, scope = excluded.scope""",
        {"name": plan.name, "head": plan.head, "now": now, "scope": plan.scope},
    )


# -- helpers ------------------------------------------------------------------------------
def _strings(values: list[str] | list[str | None], what: str, *, nullable: bool = False) -> pa.Array:
    allowed = _STR_OR_NONE if nullable else _STR
    if not set(map(type, values)) <= allowed:  # one C-level pass in the common case
        bad = next(v for v in values if type(v) not in allowed)
        raise CacheError(f"a {what} in the plan is not a string: {bad!r}")
    return strings(values)


def _reset_checkpoint_threshold(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("RESET checkpoint_threshold")
    except duckdb.Error:
        pass  # the connection is gone; the setting went with it
