"""The Python API: a registry home with its block store, names, stage and cache.

:class:`Registry` orchestrates; the work is done by the layers below and by the modules
beside it (:mod:`~halodb.api.home`, :mod:`~halodb.api.staging`, :mod:`~halodb.api.syncing`,
:mod:`~halodb.api.scanning`, :mod:`~halodb.api.gc`).

>>> import tempfile, halodb
>>> reg = halodb.open(tempfile.mkdtemp(), create=True)
>>> item = {"type": "Feature", "stac_version": "1.1.0", "id": "f1", "geometry": None,
...         "properties": {"datetime": "2024-08-11T12:00:00Z"}, "links": [],
...         "assets": {"data": {"href": "ipfs://bafkqaaa"}}}
>>> reg.add([item], collection="halo")
['halo/f1']
>>> cid = reg.commit("first", time="2024-08-12T00:00:00Z")
>>> _ = reg.publish("latest")
>>> reg.sync("latest").commits
1
>>> reg.cid_at("halo/f1", "2024-08-13", name="latest")
'bafkqaaa'
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halodb.api.gc import collect_garbage
from halodb.api.home import Home, Stage, default_author, default_home
from halodb.api.keys import load_key
from halodb.api.location import where
from halodb.api.lookup import synced_cid_at
from halodb.api.scanning import current_view
from halodb.api.trust import TrustStore, key_changes
from halodb.blockstore import BlockStore, SqliteStore, import_car, open_store
from halodb.errors import BlockNotFoundError, InputError, NameNotFoundError, NothingToCommitError, UnknownKeyError
from halodb.errors import CIDError, RewindError
from halodb.index.commit import commit_changes
from halodb.index.dois import DoiRecord, doi_log, find_doi
from halodb.index.history import load_commit, walk
from halodb.index.respelling import is_respelled
from halodb.index.timeline import version_at
from halodb.index.history import divergence, versions
from halodb.index.index import Index, prefix_end
from halodb.index.model import INLINE_MAX, TAG_NAME, Change, Commit, Entry, IndexRoot, Tag
from halodb.index.tags import load_tag, load_tags, write_tag, write_tags
from halodb.index.prolly import NodeCache
from halodb.index.signing import Checkpoint, verify_head
from halodb.index.log import LogEntry, log
from halodb.index.reachable import export_dag, reachable
from halodb.ipld import CID
from halodb.naming import LocalNames, NameStore, Resolution, parse_ref
from halodb.naming.refs import split_back
from halodb.naming.router import NameRouter, kubo_of
from halodb.util.doi import normalize_doi
from halodb.util.perf import paused_gc
from halodb.util.times import TimeLike, format_time, to_time

#: items an add reads, validates and stores at a time
ADD_BATCH = 10_000
#: staged changes (upserts plus removals) from which a commit onto a version that is not empty
#: rebuilds it from sorted streams (``Index.merge_sorted``) instead of applying the changes in
#: memory (``Index.apply``, about 3 KiB per change)
STREAM_COMMIT = 50_000
#: how an imported version's commit message names its git commit (``import_tree_history``)
_GIT_COMMIT = re.compile(r"\(git commit ([0-9a-f]{12})\)$")

# imported where used, not here: validating items (pydantic, ~0.3 s), syncing (Arrow) and
# gateways (aiohttp, ~0.5 s) are not needed by a lookup (issue 15, part 5)
if TYPE_CHECKING:  # scanning imports zarr and numpy (~0.3 s), the cache DuckDB (~0.07 s): only when used
    from halodb.cache import Cache
    from halodb.api.staging import ItemInput, Removal
    from halodb.campaign.treeyaml import TreeVersion
    from halodb.sync import SyncResult
    from halodb.scan.scanner import Progress, ScanReport


#: how far past this machine's clock a commit's ``--time`` may lie (another machine's clock)
MAX_CLOCK_AHEAD = timedelta(hours=1)


def index_format(env: Mapping[str, str] | None = None) -> int:
    """The index format new versions are written in: ``HALODB_INDEX_FORMAT``, 3 (small items
    inline; the default) or 2 (every item linked: what HaloDB wrote before format 3, for
    readers not yet updated, which refuse a format-3 root). :class:`InputError` otherwise.

    >>> index_format({}), index_format({"HALODB_INDEX_FORMAT": "2"})
    (3, 2)
    """
    value = (os.environ if env is None else env).get("HALODB_INDEX_FORMAT", "").strip() or "3"
    if value not in ("2", "3"):
        raise InputError(f"HALODB_INDEX_FORMAT={value!r}: give 3 (small items inline, the default) or 2 "
                         "(every item linked, readable by HaloDB before index format 3)", source="HALODB_INDEX_FORMAT")
    return int(value)


class Registry:
    """A HaloDB registry: see :func:`halodb.open`."""

    def __init__(self, home: Path, store: BlockStore, names: NameStore, cache_path: Path) -> None:
        self.home = home
        self.store = store
        self.names = names
        self.cache_path = cache_path
        self.state = Home(home)
        self.trust = TrustStore(home)  #: per-name trust policies: who may sign a name's versions
        self.node_cache = NodeCache()
        self.index = Index(store, self.node_cache, inline_items=index_format() == 3)
        self._commits: dict[CID, Commit] = {}
        self._cache: Cache | None = None
        self._queries: Cache | None = None
        #: initial syncs over the network ask for up to this many subtree CARs, about one per
        #: 40 datasets (1: one CAR in all; 0: no CARs, every block is asked for on its own)
        self.prefetch_spread = 256
        self.prefetch_workers = 16  #: CARs in flight at once during that prefetch

    def init(self) -> None:
        """Create the registry home (idempotent)."""
        self.state.init()

    @property
    def head(self) -> CID | None:
        """The local head commit (what ``commit`` builds on and ``publish`` points names at)."""
        return self.state.head()

    def staged(self) -> Stage:
        """The whole stage, in memory."""
        return self.state.stage()

    def stage_counts(self) -> tuple[int, int]:
        """How many upserts and removals are staged (without reading the stage into memory)."""
        return self.state.counts()

    def _root_of(self, commit: CID | None) -> IndexRoot | None:
        if commit is None:
            return None
        return self.index.load_root(load_commit(self.store, commit, self._commits).index)

    # -- staging --------------------------------------------------------------------------------
    def add(self, items: Iterable[ItemInput], collection: str | None = None, *,
            progress: Callable[[int], None] | None = None) -> list[str]:
        """Validate STAC items, store their blocks (flushed), and stage them; returns their keys.

        Nothing is staged when any item is invalid (the error names its source). Items are
        read, validated, stored and staged :data:`ADD_BATCH` at a time, so an add of a million
        items holds one batch in memory, not all of them (the stage is a database:
        :mod:`~halodb.api.stagedb`). The first batch is read and
        validated before the home's lock is taken; the lock is then held while the blocks
        are stored (and later batches read), until the stage is recorded. An invalid item in
        a later batch leaves the blocks of the earlier ones stored but staged nowhere
        (``gc`` deletes them). ``progress(n)`` is called with the items done so far after
        each batch.
        """
        from halodb.api.staging import PreparedItems, prepare_batches

        with paused_gc():
            # an item the index will hold inline (format 3) is staged with its bytes: its block is
            # never written to the block store (the commit reads it from the stage, in key order)
            inline_max = INLINE_MAX if self.index.inline_items else 0
            batches = prepare_batches(items, collection, ADD_BATCH, across=False, inline_max=inline_max)
            first = next(batches, PreparedItems())
            # the stage is written a batch at a time into one transaction of the stage database
            # (committed last: a failed or killed add leaves the stage as it was), which also
            # checks the keys across batches, so no batch stays in memory after it is written
            with self.state.locked("add"), self.state.stage_writer() as stage:
                keys: list[str] = []

                def write(prepared: PreparedItems) -> None:
                    keys.extend(stage.add(prepared.upserts, prepared.sources))
                    self.store.put_many(prepared.blocks, verify=False)
                    if progress is not None:
                        progress(len(keys))

                # one batch is written (SQLite, on a thread of its own: it lets go of the GIL
                # while it works) while the next one is read and checked
                with ThreadPoolExecutor(1, thread_name_prefix="halodb-add") as writer:
                    pending = writer.submit(write, first)
                    while True:
                        try:
                            prepared = next(batches, None)
                        except BaseException:
                            pending.result()  # (an error of an earlier batch comes first)
                            raise
                        pending.result()
                        if prepared is None:
                            break
                        pending = writer.submit(write, prepared)
                # durable before the stage names them: a stage never names a block a crash could lose
                self.store.flush()
            return keys

    def remove(self, keys: Iterable[str]) -> Removal:
        """Remove datasets: a key in the local head's version has its removal staged, a key
        only staged (added, never committed) is unstaged. :class:`UnknownKeyError` naming
        every key that is neither, and nothing changed. Returns which key went which way."""
        from halodb.api.staging import plan_removals

        keys = list(dict.fromkeys(keys))
        with self.state.locked("rm"):  # (the stage is in its database from here on)
            head, db = self.head, self.state.db
            removal = plan_removals(self.index, self._root_of(head), db.staged_keys(keys),
                                    db.staged_keys(keys, removals=True), keys, str(head or "the empty registry"))
            db.unstage(removal.unstaged, removal.removed)  # the rest of the stage is not read
        return removal

    def reset_stage(self) -> None:
        """Empty the stage."""
        with self.state.locked("reset stage"):
            self.state.save(self.head, Stage())

    def locked(self, what: str = "batch", *, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the home's lock across several changes, so that no other writer's change
        comes between them (each change holds it anyway; the lock is re-entrant here):

        >>> import tempfile, halodb
        >>> reg = halodb.open(tempfile.mkdtemp(), create=True)
        >>> with reg.locked("add and commit"):
        ...     reg.reset_stage()

        Another process, or another ``Registry`` on the same home, waits meanwhile. Taking
        it waits at most ``timeout`` seconds (default ``$HALODB_LOCK_TIMEOUT``, else 60), then
        raises :class:`~halodb.errors.HomeLockedError`.
        """
        return self.state.locked(what, timeout=timeout)

    def scan(
        self, root: str, *, prefix: str | None = None, collection: str | None = None, cache: bool = True,
        workers: int = 8, progress: Progress | None = None, retry_errors: bool = False, remove: bool = True,
        max_coordinate_bytes: int | None = None, max_depth: int = 64, max_entries: int = 1_000_000,
    ) -> ScanReport:
        """Scan the campaign tree at ``root`` (a CID, ``ipfs://CID/path`` or a name) and stage
        what changed under its prefix; results are cached in ``HOME/scan-cache`` (unless
        ``cache=False``). The options are those of :func:`halodb.scan.scanner.scan`
        (``max_coordinate_bytes`` None: its default)."""
        from halodb.scan.extract import DEFAULT_MAX_COORDINATE_BYTES
        from halodb.scan.scan_cache import ScanCache
        from halodb.scan.scanner import scan as scan_tree

        with ExitStack() as held:
            # The extraction runs unlocked; the home's lock is taken when the scanner asks what
            # the registry holds, so that view (head and stage read then) is still true when
            # what the scan found is staged, before the lock is released.
            def view(where: str) -> tuple[dict[str, str], dict[str, Entry]]:
                held.enter_context(self.state.locked("scan"))
                return current_view(self.index, self._root_of(self.head), self.staged(), where)

            report = scan_tree(
                self.store, root,
                resolve=lambda name: self.names.resolve(name).cid,
                current=view,
                cache=ScanCache(self.home / "scan-cache") if cache else None,
                prefix=prefix, collection=collection, workers=workers, progress=progress, retry_errors=retry_errors,
                remove=remove, max_depth=max_depth, max_entries=max_entries,
                max_coordinate_bytes=DEFAULT_MAX_COORDINATE_BYTES if max_coordinate_bytes is None else max_coordinate_bytes,
            )
            if report.additions:
                self.add(report.additions)
            if report.removals:
                self.remove(report.removals)
            report.staged = True
            return report

    def import_tree(
        self, tree: dict[str, Any], *, time: TimeLike = None, message: str | None = None,
        collection: str = "orcestra", author: str | None = None,
    ) -> CID:
        """Make the datasets of a campaign tree (path -> CID) the new dataset set and commit it."""
        from halodb.api.staging import stage_tree

        with self.state.locked("import-tree"):
            head = self.head
            if self.stage_counts() != (0, 0):
                raise InputError("the stage is not empty: commit it, or empty it with `halodb reset`, before importing a tree", source="stage")
            stage, count = stage_tree(self.store, self.index, self._root_of(head) or self.index.empty(), tree, collection)
            self.state.save(head, stage)
            try:
                return self.commit(message or f"import tree ({count} datasets)", time=time, author=author, allow_empty=True)
            except BaseException:
                self.state.save(head, Stage())
                raise

    def import_tree_history(
        self, history: Iterable[TreeVersion], *, collection: str = "orcestra", author: str | None = None,
    ) -> tuple[int, int, CID | None]:
        """Commit each version of a campaign tree's git history (``load_tree_history``) in
        order, skipping those already imported: a version whose git commit a commit message
        on the local main line names (``… (git commit 0123456789ab)``), so a grown history is
        imported again by adding only its new versions. Returns (imported, skipped, head).

        >>> # see tests/test_cli.py::test_a_grown_history_imports_only_its_new_versions
        """
        done = {m.group(1) for _, commit in (walk(self.store, self.head, cache=self._commits) if self.head else ())
                for m in [_GIT_COMMIT.search(commit.message)] if m}
        imported = skipped = 0
        cid = self.head
        for version in history:
            if version.commit and version.commit[:12] in done:
                skipped += 1
                continue
            message = f"{version.message} (git commit {version.commit[:12]})" if version.commit else version.message
            cid = self.import_tree(version.tree, time=version.time, message=message, collection=collection,
                                   author=author)
            imported += 1
        return imported, skipped, cid

    # -- committing and publishing ------------------------------------------------------------------
    def commit(
        self, message: str, *, time: TimeLike = None, author: str | None = None, allow_empty: bool = False,
        sign: Sequence[str] = (), add_keys: Sequence[str] = (), retire_keys: Sequence[str] = (),
        progress: Callable[[int, str], None] | None = None,
    ) -> CID:
        """Commit the stage as a new version on top of the local head; returns the commit CID.

        ``sign``: names of the home's signing keys (:mod:`halodb.api.keys`) that sign it;
        ``add_keys`` / ``retire_keys``: ``did:key`` identities it allows, or stops allowing, to
        sign later versions (they count for readers only when the commit is signed by keys
        they trust).

        The home's lock is held from reading the head and stage to recording the new head, so
        two commits never build on the same head. A stage whose item blocks are not all in the
        store is refused (:class:`BlockNotFoundError`, naming them), and nothing is committed.
        ``progress(step, what)`` is called as each of its three steps starts.
        """
        given = None if time is None else to_time(time, what="--time")  # a bad --time fails before the lock
        if given is not None and given > datetime.now(timezone.utc) + MAX_CLOCK_AHEAD:
            # time may not go backwards: a version in the future (a typo in the year) would
            # refuse every later commit until that date
            raise InputError(f"--time {format_time(given)} is in the future (now {format_time(datetime.now(timezone.utc).replace(microsecond=0))}); "
                             "a version is dated when it is made or earlier", source="--time")
        signers = [load_key(self.home, name) for name in sign]  # so does a missing key
        changes = key_changes(add_keys, retire_keys)
        with paused_gc(), self.state.locked("commit"):
            # "now" is read holding the lock: read before it, a commit that waited for another
            # one would carry an earlier time than the head that commit made
            when = given if given is not None else to_time(None, what="--time")
            head = self.head
            upserts, removals = self.state.counts()
            if not (upserts or removals) and not allow_empty:
                raise NothingToCommitError("nothing staged: use `halodb add` or `halodb rm` first")
            root = self._root_of(head)
            db = self.state.db
            build: Callable[[IndexRoot], IndexRoot] | None
            initial = bool(upserts) and not removals and (root is None or root.count == 0)
            streamed = initial or upserts + removals >= STREAM_COMMIT
            if progress is not None:
                progress(0, "checking the staged blocks")
            # a streamed build of index format 3 reads every staged item block (to hold it
            # inline): it checks that they are all there in the same pass, and refuses the
            # stage (missing=...) before it writes the lookup trees; any other commit asks first
            missing = self._refuse_missing if streamed and self.index.inline_items else None
            if missing is None:
                self._check_staged_blocks()
            if progress is not None:
                progress(1, "writing the index")
            if initial:
                # onto the empty version: the trees are built from the stage read in sorted order,
                # their nodes written as they are finished; no change set is held in memory
                stage = Stage()
                # (a large one on a SQLite store is built by three processes: the second half of
                # the datasets' leaves and the lookup trees by two children, on a second core)
                parallel = upserts >= STREAM_COMMIT and isinstance(self.store, SqliteStore)
                split = db.key_at(upserts // 2) if parallel else None
                build = lambda _: self.index.build_sorted(
                    db.upsert_batches(), db.paths(), db.data_keys(), db.dois(), missing=missing, parallel=parallel,
                    tail=None if split is None else (split, db.upsert_batches(split)))
            elif streamed:
                # many changes onto a version: rebuilt from the version merged with the stage, both
                # read in key order (O(n) work, memory bounded), rather than applied from memory
                stage = Stage()
                build = lambda base: self.index.merge_sorted(base, db.upserts(), db.removal_keys(), missing=missing)
            else:
                stage, build = self.staged(), None
            cid = commit_changes(self.store, self.index, head, stage.upserts, stage.removals, time=when,
                                 author=author or default_author(), message=message, commits=self._commits,
                                 sign=signers, keys=changes, build=build)
            if (not allow_empty and changes is None and head is not None
                    and load_commit(self.store, cid, self._commits).index == load_commit(self.store, head, self._commits).index):
                # (its commit block stays unreferenced: gc drops it)
                raise NothingToCommitError("the stage changes nothing: every staged item is what the head holds "
                                           "already; `halodb reset` empties the stage")
            if progress is not None:
                progress(2, "flushing the store")
            self.store.flush()
            self.state.save(cid, Stage())
            return cid

    def _check_staged_blocks(self, batch: int = 10_000) -> None:
        """Raise :class:`BlockNotFoundError` unless every staged item block is in the store
        (asked ``batch`` at a time)."""
        missing: list[tuple[str, CID]] = []
        count = 0
        rows = self.state.db.upserts()
        while chunk := list(itertools.islice(rows, batch)):
            present = self.store.has_many({entry.item for _, entry in chunk if entry.inline is None})
            for key, entry in chunk:
                if entry.inline is None and entry.item not in present:  # (one staged with its bytes needs none)
                    count += 1
                    if len(missing) < 10:
                        missing.append((key, entry.item))
        if missing:
            self._refuse_missing(missing, count)

    def _refuse_missing(self, missing: list[tuple[str, CID]], count: int) -> None:
        """Raise the :class:`BlockNotFoundError` of a commit whose stage names ``count`` item
        blocks the store lacks (``missing``: the first few, with their keys)."""
        shown = ", ".join(f"{key} ({cid})" for key, cid in missing)
        more = f" and {count - 10} more" if count > 10 else ""
        raise BlockNotFoundError(
            f"cannot commit: the item blocks of {count} staged dataset(s) are missing from "
            f"{self.store.describe()}: {shown}{more}; add those items again (or `halodb rm` them), "
            "nothing was committed",
            cid=missing[0][1], store=self.store.describe(),
        )

    def publish(
        self, name: str, cid: CID | str | None = None, *, expected: CID | None = None, force: bool = False,
        on_rewind: Callable[[RewindError], None] | None = None,
    ) -> Resolution:
        """Point ``name`` at ``cid`` (default: the local head, read holding the home's lock).

        A commit that does not descend from the name's current target would discard versions
        (a rollback, or another history): it is refused with :class:`RewindError`, which names
        the current target and how many versions would go, unless ``force``; then
        ``on_rewind`` is called with that error before the name moves. A first publish, or a
        descendant of the current target, just moves the name.
        """
        with self.state.locked("publish"):
            target = self.resolve(cid) if isinstance(cid, str) else (cid or self.head)
            if target is None:
                raise NothingToCommitError("nothing to publish: the registry has no commits yet")
            load_commit(self.store, target, self._commits)  # must be a commit we have
            current = self.names.current(name)  # where the name points in the store the publish goes to
            # what the move replaces: with ``expected`` (a compare-and-swap) exactly that, or nothing
            replaced, what = ((current, "the name's current target") if expected is None
                              else (expected, "the expected target"))
            found = None if replaced is None else divergence(self.store, replaced, target, self._commits)
            if found is not None:
                if found.behind is not None:
                    where = f"{versions(found.behind)} behind {what} {replaced}"
                elif found.discarded is not None:
                    where = f"not on the history of {what} {replaced} (diverged)"
                else:
                    where = f"not a descendant of {what} {replaced}, whose history cannot be read"
                refusal = RewindError(
                    f"refusing to publish {name} -> {target}: it is {where}; publishing it would discard "
                    f"{found.discarding()} (--force, force=True, publishes it anyway)",
                    name=name, current=replaced, head=target, behind=found.behind, discarded=found.discarded)
                if not force:
                    raise refusal
                if on_rewind is not None:
                    on_rewind(refusal)
            self.store.flush()
            if self.store.supports_pinning:  # pin before the name moves: a name never points at content nobody keeps
                self.store.pin(target, replaces=current)
            # compare-and-swap against what was checked: a writer in between makes it fail
            return self.names.publish(name, target, expected=expected if expected is not None else current)

    def check_folder_name(self, name: str) -> None:
        """Raise :class:`InputError` unless ``name`` may point at a folder (see :meth:`publish_folder`)."""
        if self.names.kind(name, publishing=True) == "local":
            raise InputError(
                f"{name!r} is a local name, and local names point at commits; publish a folder under a "
                "DNSLink or IPNS name (dnslink:DOMAIN, ipns://KEY)", source=name)

    def publish_folder(self, name: str, root: CID, *, expected: CID | None = None) -> Resolution:
        """Point a DNSLink or IPNS ``name`` at a campaign's root *folder* (what ``halodb scan``
        reads), not at a commit. Local names are refused: they name versions of the index, and
        ``log``, ``sync`` and ``gc`` read them as commits. Without ``expected`` the name's
        current target is the compare-and-swap value."""
        self.check_folder_name(name)
        return self.names.publish(name, root, expected=expected if expected is not None else self.names.current(name))

    # -- reading ----------------------------------------------------------------------------------
    def resolve(self, ref: str | CID) -> CID:
        """The commit a reference names: CID, ``ipfs://CID``, NAME, NAME@TIME, or HEAD; any of
        them followed by ``~N``, N versions back along first parents (``HEAD~1``)."""
        if isinstance(ref, CID):
            return ref
        text, back = split_back(ref.strip())
        found = self._resolve_exact(text, ref)
        if not back:
            return found
        for steps, (cid, _) in enumerate(walk(self.store, found, cache=self._commits)):
            if steps == back:
                return cid
        raise NameNotFoundError(f"{ref!r}: {text} has {steps} version(s) before it, not {back}", name=ref)

    def _resolve_exact(self, text: str, ref: str) -> CID:
        tag: str | None = None
        if text.upper() == "HEAD" or text.upper().startswith("HEAD@"):
            head = self.head
            if head is None:
                known = sorted(self.names.names())
                hint = (f"; ask a name instead (--name NAME): this home knows {', '.join(known[:5])}"
                        f"{' …' if len(known) > 5 else ''}" if known else "")
                raise NameNotFoundError(f"HEAD: the registry has no commits of its own yet{hint}", name="HEAD")
            at = text.split("@", 1)[1] if "@" in text else None
            tag = at if at is not None and TAG_NAME.fullmatch(at) and not _is_time(at) else None
            base, when = head, (to_time(at) if at is not None and tag is None else None)
        else:
            parsed = parse_ref(text)
            tag = parsed.tag
            named = text.rpartition("@")[0] if parsed.when or tag else text
            try:
                base = parsed.cid if parsed.cid is not None else self.name_head(named)
            except NameNotFoundError as exc:
                raise _not_a_cid_either(exc, named) from None
            when = parsed.when
        if tag is not None:
            found_tag = self.tags(base).get(tag)
            if found_tag is None and (version := self._version_named(base, tag, ref)) is not None:
                return version
            if found_tag is None:
                known = sorted(self.tags(base))
                raise NameNotFoundError(
                    f"{ref!r}: {text.rpartition('@')[0]} has no tag {tag} ("
                    + (f"its tags: {', '.join(known[:10])}{' …' if len(known) > 10 else ''}; " if known else "it has no tags; ")
                    + "after @ give a tag, a date or time such as 2024-09-15, or a commit CID)", name=ref)
            return found_tag[1].target
        if when is None:
            return base
        found = version_at(self.store, base, when, self._commits)
        if found is None:
            raise NameNotFoundError(f"{ref!r}: no version at or before {format_time(when)}", name=ref)
        return found[0]

    def _version_named(self, head: CID, text: str, ref: str) -> CID | None:
        """The commit CID ``text`` (``NAME@<commit CID>``) when it is a version on ``head``'s
        main line; None when ``text`` is no CID; :class:`NameNotFoundError` when it is one
        that is not on that line."""
        try:
            cid = CID.parse(text)
        except CIDError:
            return None
        for version, _ in walk(self.store, head, cache=self._commits):
            if version == cid:
                return version
        raise NameNotFoundError(f"{ref!r}: commit {cid} is not a version of {ref.rpartition('@')[0]} "
                                f"(not on the main line of its head {head})", name=ref)

    def name_head(self, name: str, *, allow_rewind: bool = False) -> CID:
        """The commit ``name`` points at now; with a trust policy for the name, checked
        against it first (see :meth:`verify_trust`)."""
        head = self.names.resolve(name).cid
        self.verify_trust(name, head, allow_rewind=allow_rewind)
        return head

    def verify_trust(self, name: str, head: CID, *, allow_rewind: bool = False) -> Checkpoint | None:
        """Check ``head`` against ``name``'s trust policy (None: the name has none).

        :class:`~halodb.errors.TrustError` when it is not signed by enough allowed keys;
        :class:`~halodb.errors.RewindError` when it does not descend from the last head
        trusted for the name, unless ``allow_rewind``."""
        canonical = self.canonical_name(name)
        policy = self.trust.policy(canonical)
        if policy is None:
            return None
        before = self.trust.checkpoint(canonical)
        checkpoint = verify_head(self.store, canonical, head, policy, before,
                                 allow_rewind=allow_rewind, commits=self._commits)
        if checkpoint != before:
            self.trust.save_checkpoint(canonical, checkpoint)
        return checkpoint

    def tags(self, ref: str | CID = "HEAD") -> dict[str, tuple[CID, Tag]]:
        """The tags the version ``ref`` carries: ``tag -> (tag block CID, Tag)``, by name."""
        commit = load_commit(self.store, self.resolve(ref), self._commits)
        return {name: (cid, load_tag(self.store, cid)) for name, cid in sorted(load_tags(self.store, commit).items())}

    def tag(
        self, name_ref: str, tag: str, *, at: TimeLike = None, cid: str | CID | None = None, message: str = "",
        sign: Sequence[str] = (), time: TimeLike = None, author: str | None = None,
    ) -> CID:
        """Tag a version of ``name_ref`` (a name, or HEAD) as ``tag``; returns the tag block's CID.

        The version is ``name_ref``'s head, the one current at ``at``, or the commit ``cid``;
        it must be on the local head's first-parent line. The tag is kept by a new commit on the
        local head (same index and time, message ``tag TAG``) whose tags block adds it; ``sign``: names
        of the home's keys that sign the tag, and that commit. A tag name is taken once:
        :class:`InputError` for one that exists already.
        """
        if TAG_NAME.fullmatch(tag) is None or _is_time(tag):
            raise InputError(f"{tag!r} is not a tag name: a letter, then up to 63 letters, digits, '.', '_' or '-'")
        if at is not None and cid is not None:
            raise InputError("tag one version: give --at or --cid, not both")
        when = None if time is None else to_time(time, what="--time")
        signers = [load_key(self.home, key) for key in sign]
        if cid is not None:
            target = self.resolve(cid)
        elif at is not None:
            target = self.resolve(f"{name_ref}@{format_time(to_time(at, what='--at'))}")
        else:
            target = self.resolve(name_ref)
        with paused_gc(), self.state.locked("tag"):
            head = self.head
            if head is None:
                raise InputError("nothing to tag: the registry has no commits yet")
            if not any(c == target for c, _ in walk(self.store, head, cache=self._commits)):
                raise InputError(f"cannot tag {target}: it is not on the local head's history ({head}); "
                                 "sync or import it first")
            base = load_commit(self.store, head, self._commits)
            tags = load_tags(self.store, base)
            if tag in tags:
                raise InputError(f"tag {tag} exists already (tag block {tags[tag]}); tags are immutable")
            now = when if when is not None else to_time(None, what="--time")
            who = author or default_author()
            tag_block = Tag(tag=tag, target=target, time=now, tagger=who, message=message)
            if signers:
                from halodb.index.signing import sign_tag

                tag_block = sign_tag(tag_block, signers)
            tag_cid = write_tag(self.store, tag_block)
            tags_cid = write_tags(self.store, {**tags, tag: tag_cid})
            # the commit keeps its parent's time: it changes no data, so every date answers as
            # before, and a later commit may still carry a time before the tag was made (the
            # tag block records when it was)
            commit_cid = commit_changes(self.store, self.index, head, {}, set(), time=base.time,
                                        author=who, message=f"tag {tag}", commits=self._commits, sign=signers,
                                        tags=tags_cid)
            self.store.flush()
            self.state.set_head(commit_cid)
            return tag_cid

    def version(self, ref: str | CID) -> tuple[CID, Commit]:
        """The commit a reference names (as :meth:`resolve`), with its time, author and message."""
        cid = self.resolve(ref)
        return cid, load_commit(self.store, cid, self._commits)

    def log(self, ref: str | CID = "HEAD", limit: int | None = None) -> Iterator[LogEntry]:
        """The history of ``ref``, newest first, with per-version change counts."""
        return log(self.store, self.index, self.resolve(ref), limit, self._commits)

    def diff(self, old: str | CID, new: str | CID, *, respellings: bool = True) -> list[Change]:
        """Dataset changes between two versions; with ``respellings=False`` without the data
        CIDs only respelled (``Qm…`` to the ``bafy…`` of the same multihash, nothing else
        changed: :meth:`is_respelled`), which are the same content."""
        a = self._root_of(self.resolve(old))
        b = self._root_of(self.resolve(new))
        assert b is not None
        changes = list(self.index.diff(a, b))
        return changes if respellings else [c for c in changes if not self.is_respelled(c)]

    def is_respelled(self, change: Change) -> bool:
        """Whether ``change`` (from :meth:`diff`) only respells the dataset's data CID."""
        return change.kind == "changed" and is_respelled(self.store, change.old, change.new)

    def get(self, key_or_path: str, ref: str | CID = "HEAD") -> tuple[str, Entry, dict[str, Any]]:
        """The key, entry and STAC item of a dataset at a version."""
        root = self._root_of(self.resolve(ref))
        found = self.index.resolve(root, key_or_path) if root else None
        if found is None:
            raise UnknownKeyError(f"no dataset {key_or_path!r} at {ref}", key=key_or_path)
        key, entry = found
        item: dict[str, Any] = self.index.item(entry)
        return key, entry, item

    # -- DOIs ---------------------------------------------------------------------------------------
    def dois(self, ref: str | CID = "HEAD") -> list[DoiRecord]:
        """Every DOI the history of ``ref`` held, per dataset: the version it was minted for (the
        first that had it), the data CID there, and its state at ``ref`` (``current``,
        ``superseded``, ``withdrawn``); read from the blocks, no sync needed."""
        return doi_log(self.store, self.index, self.resolve(ref), self._commits)

    def resolve_doi(self, doi: str, ref: str | CID = "HEAD") -> DoiRecord | None:
        """The dataset and data CID ``doi`` (``10.x/y``, ``doi:10.x/y`` or a doi.org URL) was
        minted for in the history of ``ref``; None for a DOI it never held. :class:`InputError`
        for text that is no DOI."""
        return find_doi(self.dois(ref), normalize_doi(doi, "DOI"))

    def datacite(self, key_or_path: str, ref: str | CID = "HEAD", *, history: str | CID | None = None,
                 publisher: str | None = None) -> dict[str, Any]:
        """DataCite 4.5 JSON for a dataset's STAC item at version ``ref``, checked against the
        DataCite schema (:func:`halodb.stac.datacite.datacite_metadata`; a
        :class:`~halodb.errors.DataCiteError` names what the item lacks). ``history`` (default
        ``ref``) is the head whose log gives the DOIs of the dataset's later versions."""
        from halodb.stac import item_doi
        from halodb.stac.datacite import datacite_metadata

        key, _, item = self.get(key_or_path, ref)
        version, commit = self.version(ref)
        head = self.resolve(history) if history is not None else version
        chain = [cid for cid, _ in walk(self.store, head, cache=self._commits)]
        if version not in chain:
            raise InputError(f"version {version} is not on the history of {history}", source=str(history))
        number = len(chain) - chain.index(version)
        mine = [r for r in self.dois(head) if r.key == key]
        doi = item_doi(item, source=key)
        minted = next((r for r in mine if r.doi == doi and r.version <= number), None)
        return datacite_metadata(
            item, key=key, year=(minted.time if minted else commit.time).year, version=str(version),
            version_time=commit.time, publisher=publisher,
            previous_dois=[r.doi for r in mine if r.version <= number], later_dois=[r.doi for r in mine if r.version > number])

    # -- the cache ---------------------------------------------------------------------------------
    @property
    def cache(self) -> Cache:
        """The cache file as a sync writes it. Inside :meth:`session` the file is held read-only
        (DuckDB allows one mode per file and process), so this is then :attr:`queries`: its
        reads work, and a sync there is refused."""
        if self._queries is not None and self._queries.in_session:
            return self._queries
        if self._cache is None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            # created on first use, so a call follows at once: it reuses the opening connection
            from halodb.cache import Cache  # (DuckDB: ~0.07 s of an `add` or a `commit`, which need none)

            self._cache = Cache(self.cache_path, keep_open=True)
        return self._cache

    @property
    def queries(self) -> Cache:
        """The cache as ``sql`` and ``cid_at`` read it: read-only, without file or network access,
        its configuration locked (:func:`halodb.cache.open_for_queries`); made, or migrated, first
        when needed."""
        if self._queries is None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            from halodb.cache import open_for_queries

            self._queries = open_for_queries(self.cache_path, create=True)
        return self._queries

    @contextmanager
    def session(self) -> Iterator[Registry]:
        """Keep the cache file open, read-only, across many calls (a loop of ``cid_at`` or ``sql``;
        not ``sync``, which writes it).

        Outside a session each call opens and closes the DuckDB file (~15 ms), so that other
        processes can sync or query between calls; inside one, calls are fast but syncs wait.
        """
        with self.queries.session():
            yield self

    def canonical_name(self, name: str) -> str:
        """The spelling ``name`` is recorded under in the cache (``dnslink:x.org`` -> ``x.org``)."""
        return self.names.canonical(name)

    def sync(self, name: str, *, head: CID | None = None, allow_rewind: bool = False,
             prefix: str | None = None, progress: Callable[[int], None] | None = None) -> SyncResult:
        """Resolve ``name`` (unless its ``head`` is given) and materialize its history into the
        DuckDB cache, all or nothing. The cache records it under :meth:`canonical_name`.

        A head that does not descend from the one the cache last synced for the name (the
        name moved back, or to another history) is refused with :class:`RewindError` and the
        cache left as it was, unless ``allow_rewind``: then the name is rebuilt at that head.
        With a trust policy for the name, a head not signed as it asks is refused first
        (:class:`~halodb.errors.TrustError`, see :meth:`verify_trust`).

        ``prefix``: materialize only the datasets whose keys start with it, with their whole
        history (``"halo/"``: one collection), reading only the subtrees that hold them; the
        cache records the scope, rebuilds the name when asked for another one, and answers
        ``cid_at`` only for keys in it (the rest is asked of the DAG). A prefix no dataset of
        the head has is refused (:class:`InputError`), so that a typo does not empty the cache.
        ``progress(n)``: the items materialized so far, after each batch."""
        if prefix is not None and (not isinstance(prefix, str) or not prefix):
            raise InputError(f"a sync prefix must be a non-empty key prefix, not {prefix!r}", source="--prefix")
        if head is None:
            head = self.name_head(name, allow_rewind=allow_rewind)
        else:
            self.verify_trust(name, head, allow_rewind=allow_rewind)
        if prefix is not None:
            self._check_prefix(name, head, prefix)
        from halodb.api.syncing import start_worker, sync_name

        worker = start_worker(self.store, self.index, head) if prefix is None else None
        try:
            return sync_name(self.store, self.index, self.cache, self.canonical_name(name), head,
                             prefetch_spread=self.prefetch_spread, prefetch_workers=self.prefetch_workers,
                             allow_rewind=allow_rewind, prefix=prefix, progress=progress, worker=worker)
        finally:
            if worker is not None:
                worker.close()

    def _check_prefix(self, name: str, head: CID, prefix: str) -> None:
        """:class:`InputError` unless some dataset of version ``head`` has a key starting with ``prefix``."""
        datasets = self.index.load_root(load_commit(self.store, head, self._commits).index).datasets
        if next(iter(self.index.datasets.items(datasets, prefix, prefix_end(prefix))), None) is not None:
            return
        first = next(iter(self.index.datasets.items(datasets)), None)
        example = f" (keys are collection/id, e.g. {first[0]!r})" if first is not None else " (it has no datasets)"
        raise InputError(f"no dataset of {name} has a key starting with {prefix!r}{example}; nothing synced",
                         source="--prefix")

    def sql(self, query: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one query on the cache: ``items``, ``item_versions``, ``commits``, ``items_at(ts)``...
        Read-only (:attr:`queries`): anything but a SELECT, EXPLAIN or PRAGMA that reads, and any
        file or network access, is a :class:`~halodb.errors.QueryError`."""
        return self.queries.sql(query, params)

    def cid_at(self, key_or_path: str, when: TimeLike, name: str | None = None) -> str | None:
        """The data CID a dataset (by key or path) had at ``when``; None if it had none.

        With a synced ``name`` whose cache is current this is one indexed query; otherwise the
        commit chain is walked in the block store.
        """
        t = to_time(when, what="date")
        if name is not None and self.cache_path.exists():
            def trusted(head: CID) -> bool:
                self.verify_trust(name, head)  # raises when the head is not trusted
                return True

            answered, cid = synced_cid_at(self.queries, self.names, name, key_or_path, t, trusted=trusted)
            if answered:
                return cid
        return self.cid_at_dag(key_or_path, t, name or "HEAD")

    def cid_at_dag(self, key_or_path: str, when: TimeLike, ref: str | CID = "HEAD") -> str | None:
        """:meth:`cid_at` answered from the DAG alone (no cache)."""
        found = version_at(self.store, self.resolve(ref), to_time(when, what="date"), self._commits)
        if found is None:
            return None
        hit = self.index.resolve(self.index.load_root(found[1].index), key_or_path)
        return hit[1].data if hit else None

    # -- blocks ------------------------------------------------------------------------------------
    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete local blocks that no head reaches; returns (kept, deleted).

        Kept: everything reachable (whole history) from the local head, every local name,
        every name synced into the cache, and the staged items — the index DAG and, as far as
        the local store holds them, the data DAGs its datasets name. It holds the home's lock, so
        no commit, add or import of this home runs meanwhile (their blocks would not be
        reachable yet).
        """
        with self.state.locked("gc"):
            heads = {self.names.resolve(name).cid for name in self.names.names()}
            head = self.head
            if head is not None:
                heads.add(head)
            if self.cache_path.exists():
                heads.update(CID.parse(st.head) for st in self.cache.sync_states() if st.head)
            keep: set[CID] = set()
            data: set[CID] = set()
            for _, entry in self.state.db.upserts():  # (read a few thousand rows at a time)
                keep.add(entry.item)
                if entry.data:
                    try:
                        data.add(CID.parse(entry.data))
                    except CIDError:
                        pass  # not a CID: no data of it can be here
            return collect_garbage(self.store, self.index, heads, keep, dry_run=dry_run, commits=self._commits,
                                   home=self.home, data_roots=data)

    def reachable(self, head: CID, *, history: bool = True) -> Iterator[CID]:
        """Every block of the index DAG from ``head``: commits, roots, tree nodes, items."""
        return reachable(self.store, self.index, head, history=history, commits=self._commits)

    def export_car(self, ref: str | CID, path: str | Path, *, history: bool = True) -> tuple[CID, int]:
        """Write every block of ``ref`` (and its history) to a CARv1 file; returns (root, blocks)."""
        head = self.resolve(ref)
        return head, export_dag(self.store, self.index, head, path, history=history, commits=self._commits)

    def prove(self, key_or_path: str, when: TimeLike, path: str | Path, ref: str | CID = "HEAD") -> int:
        """Write an inclusion proof (a CAR, see :mod:`halodb.index.proof`) of the data CID
        ``key_or_path`` had at ``when`` on the history of ``ref``; returns its blocks. The proof
        file is written whole or not at all."""
        from halodb.index.proof import write_proof

        head = self.resolve(ref)
        return write_proof(self.store, head, key_or_path, to_time(when, what="--at"), str(path))

    def import_car(self, path: str | Path, progress: Callable[[int], None] | None = None) -> list[CID]:
        """Verify a CAR completely, then store its blocks; returns its roots. ``progress(n)``:
        the blocks written so far, after each batch."""
        return import_car(self.store, Path(path), progress=progress)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for cache in (self._cache, self._queries):
            if cache is not None:
                cache.close()
        self._cache = self._queries = None
        self.store.close()
        self.names.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_time(text: str) -> bool:
    try:
        to_time(text)
    except (ValueError, InputError):
        return False
    return True


def open(  # noqa: A001 - the API mirrors builtins.open / zarr.open
    home: str | Path | None = None,
    *,
    store: str | None = None,
    cache: str | Path | None = None,
    create: bool = False,
) -> Registry:
    """Open the registry in ``home`` (default :func:`default_home`).

    ``store`` is a block-store URL (default: the local block store in the home; also
    ``$HALODB_STORE``); ``cache`` the DuckDB file (default ``home/cache.duckdb``).
    With ``create=True`` the home is initialized when missing.
    """
    location = where(home, store, cache)
    home_path, store_url, cache_path = location.home, location.store, location.cache
    from halodb.blockstore.caching import CachingStore

    # the home's own store is created by its first write unless the home is being created: a
    # command run on a mistyped --home leaves nothing behind
    remote = open_store(store_url, home_path, lazy=not create)
    # a remote store is read through a local block cache: the network is asked only for new blocks
    # (its database made by the first block kept, not before the first read: ``SqliteStore(lazy=True)``)
    store_ = CachingStore(SqliteStore(home_path / "blocks", lazy=True), remote) if remote.is_remote else remote
    # IPNS names are resolved (and their records verified) through a gateway store when there is
    # no Kubo; a store is a gateway only if open_store imported that module (aiohttp: ~0.5 s)
    gateways = sys.modules.get("halodb.blockstore.gateway")
    gateway = remote if gateways is not None and isinstance(remote, gateways.GatewayStore) else None
    names = NameRouter(LocalNames(home_path / "names"), kubo=kubo_of(store_url), gateway=gateway)
    reg = Registry(home_path, store_, names, cache_path)
    if create:
        reg.init()
    return reg


__all__ = ["LogEntry", "Registry", "Stage", "default_home", "open"]


def _not_a_cid_either(exc: NameNotFoundError, named: str) -> NameNotFoundError:
    """``exc`` (no name ``named``), saying why ``named`` is no CID either when it looks like
    one (``bafy…``, ``Qm…``: a CID mistyped, cut short or copied with a character too many)."""
    if not named.startswith(("baf", "Qm")):
        return exc
    try:
        CID.parse(named)
    except CIDError as why:
        return NameNotFoundError(f"{exc.message}; and {why.message}", name=named)
    return exc
