"""The Python API: a registry home with its block store, names, stage and cache.

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

import builtins
import getpass
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from halodb.fsutil import write_json_atomic
from halodb import stac
from halodb.blockstore import BlockStore, DirectoryStore, import_car, open_store, write_car
from halodb.blockstore.caching import CachingStore
from halodb.blockstore.gateway import GatewayStore
from halodb.cache import Cache
from halodb.errors import (
    InputError,
    NameNotFoundError,
    NothingToCommitError,
    RegistryError,
    TimeOrderError,
    UnknownKeyError,
)
from halodb.index.history import commit_at, load_commit, walk, write_commit
from halodb.index.index import Index
from halodb.index.model import Change, Commit, Entry, IndexRoot, format_time, parse_time
from halodb.index.prolly import NodeCache
from halodb.ipld import CID, decode, make_block
from halodb.naming import LocalNames, NameStore, Resolution, parse_ref
from halodb.naming.router import NameRouter, kubo_of
from halodb.perf import paused_gc
from halodb.scan.tree import flatten_tree
from halodb.sync import SyncResult, sync

TimeLike = datetime | str | None


def default_home() -> Path:
    """``$HALODB_HOME``, else ``$XDG_DATA_HOME/halodb``, else ``~/.local/share/halodb``."""
    env = os.environ.get("HALODB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "halodb"


def default_author() -> str:
    env = os.environ.get("HALODB_AUTHOR")
    if env:
        return env
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def to_time(value: TimeLike, *, what: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime or ISO 8601 text (naive = UTC)."""
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    try:
        return parse_time(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date-time (e.g. 2024-09-15T00:00Z)", source=what) from None


@dataclass
class Stage:
    """Changes staged for the next commit."""

    upserts: dict[str, Entry] = field(default_factory=dict)
    removals: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals)


@dataclass(frozen=True)
class LogEntry:
    """One line of ``halodb log``."""

    cid: CID
    commit: Commit
    added: int
    changed: int
    removed: int
    count: int


class Registry:
    """A HaloDB registry: see :func:`halodb.open`."""

    def __init__(self, home: Path, store: BlockStore, names: NameStore, cache_path: Path) -> None:
        self.home = home
        self.store = store
        self.names = names
        self.cache_path = cache_path
        self.node_cache = NodeCache()
        self.index = Index(store, self.node_cache)
        self._commits: dict[CID, Commit] = {}
        self._cache: Cache | None = None
        #: initial syncs over the network ask for up to this many subtree CARs, about one per
        #: 40 datasets (1: one CAR in all; 0: no CARs, every block is asked for on its own)
        self.prefetch_spread = 256
        self.prefetch_workers = 16  #: CARs in flight at once during that prefetch

    # -- state ---------------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.home / "state.json"

    def _read_state(self) -> dict[str, Any]:
        try:
            with builtins.open(self._state_file, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            raise RegistryError(
                f"no HaloDB registry in {self.home}: run `halodb init` (or set HALODB_HOME / --home)", home=self.home
            ) from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self._state_file} is corrupt: {exc}", home=self.home) from None

    def _write_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self._state_file, state)

    def init(self) -> None:
        """Create the registry home (idempotent)."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self._state_file.exists():
            self._write_state({"version": 1, "head": None, "staged": {"upserts": {}, "removals": []}})

    @property
    def head(self) -> CID | None:
        """The local head commit (what ``commit`` builds on and ``publish`` points names at)."""
        head = self._read_state().get("head")
        return CID.parse(head) if head else None

    def staged(self) -> Stage:
        raw = self._read_state().get("staged") or {}
        return Stage(
            upserts={k: Entry(CID.parse(v["item"]), v.get("data"), v.get("path")) for k, v in raw.get("upserts", {}).items()},
            removals=set(raw.get("removals", [])),
        )

    def _save(self, head: CID | None, stage: Stage) -> None:
        state = self._read_state()
        state["head"] = str(head) if head else None
        state["staged"] = {
            "upserts": {
                k: {"item": str(e.item), "data": e.data, "path": e.path} for k, e in sorted(stage.upserts.items())
            },
            "removals": sorted(stage.removals),
        }
        self._write_state(state)

    # -- staging --------------------------------------------------------------------------------
    def add(self, items: Iterable[dict[str, Any] | tuple[str, dict[str, Any]]], collection: str | None = None) -> list[str]:
        """Validate STAC items, store their blocks, and stage them; returns their keys.

        Nothing is staged when any item is invalid (the error names its source).
        """
        with paused_gc():
            return self._add(items, collection)

    def _add(self, items: Iterable[dict[str, Any] | tuple[str, dict[str, Any]]], collection: str | None) -> list[str]:
        head, stage = self.head, self.staged()
        blocks: list[tuple[CID, bytes]] = []
        keys: list[str] = []
        upserts: dict[str, Entry] = {}
        for n, value in enumerate(items):
            source, raw = value if isinstance(value, tuple) else (f"item #{n + 1}", value)
            item = stac.parse_item(raw, source)
            if collection is not None:
                item["collection"] = collection
            key = stac.dataset_key(item, collection)
            cid, data = make_block(item)
            blocks.append((cid, data))
            upserts[key] = Entry(item=cid, data=stac.data_cid(item), path=stac.item_path(item))
            keys.append(key)
        self.store.put_many(blocks, verify=False)
        stage.upserts.update(upserts)
        stage.removals.difference_update(upserts)
        self._save(head, stage)
        return keys

    def remove(self, keys: Iterable[str]) -> list[str]:
        """Stage removals; :class:`UnknownKeyError` for a key neither committed nor staged."""
        head, stage = self.head, self.staged()
        root = self._root_of(head)
        keys = list(keys)
        for key in keys:
            if key in stage.upserts:
                continue
            if root is None or self.index.get(root, key) is None:
                raise UnknownKeyError(f"cannot remove {key!r}: no dataset with that key at {head or 'the empty registry'}", key=key)
        for key in keys:
            if key in stage.upserts and (root is None or self.index.get(root, key) is None):
                del stage.upserts[key]
            else:
                stage.upserts.pop(key, None)
                stage.removals.add(key)
        self._save(head, stage)
        return keys

    def reset_stage(self) -> None:
        self._save(self.head, Stage())

    # -- committing ------------------------------------------------------------------------------
    def _root_of(self, commit: CID | None) -> IndexRoot | None:
        if commit is None:
            return None
        return self.index.load_root(load_commit(self.store, commit, self._commits).index)

    def commit(
        self, message: str, *, time: TimeLike = None, author: str | None = None, allow_empty: bool = False
    ) -> CID:
        """Commit the stage as a new version on top of the local head; returns the commit CID."""
        with paused_gc():
            return self._commit(message, time=time, author=author, allow_empty=allow_empty)

    def _commit(self, message: str, *, time: TimeLike, author: str | None, allow_empty: bool) -> CID:
        head, stage = self.head, self.staged()
        when = to_time(time, what="--time")
        if not stage and not allow_empty:
            raise NothingToCommitError("nothing staged: use `halodb add` or `halodb rm` first")
        parent = load_commit(self.store, head, self._commits) if head else None
        if parent is not None and when < parent.time:
            raise TimeOrderError(
                f"commit time {format_time(when)} is before the head's ({format_time(parent.time)}, commit {head}); "
                "time may not go backwards",
                time=when,
                parent_time=parent.time,
            )
        base = self.index.load_root(parent.index) if parent else self.index.empty()
        root = self.index.apply(base, stage.upserts, stage.removals)
        index_cid = self.index.write_root(root)
        commit = Commit(
            index=index_cid, time=when, author=author or default_author(), message=message,
            parents=(head,) if head else (),
        )
        cid = write_commit(self.store, commit)
        self.store.flush()
        self._save(cid, Stage())
        return cid

    def publish(self, name: str, cid: CID | str | None = None, *, expected: CID | None = None) -> Resolution:
        """Point ``name`` at ``cid`` (default: the local head)."""
        target = self.resolve(cid) if isinstance(cid, str) else (cid or self.head)
        if target is None:
            raise NothingToCommitError("nothing to publish: the registry has no commits yet")
        load_commit(self.store, target, self._commits)  # must be a commit we have
        self.store.flush()
        try:
            previous: CID | None = self.names.resolve(name).cid
        except NameNotFoundError:
            previous = None
        # pin before the name moves, so that a name never points at content nobody keeps
        self.store.pin(target, replaces=previous)
        return self.names.publish(name, target, expected=expected)

    def check_folder_name(self, name: str) -> None:
        """Raise :class:`InputError` unless ``name`` may point at a folder (see :meth:`publish_folder`)."""
        if not isinstance(self.names, NameRouter) or self.names.kind(parse_ref(name), publishing=True) == "local":
            raise InputError(
                f"{name!r} is a local name, and local names point at commits; publish a folder under a "
                "DNSLink or IPNS name (dnslink:DOMAIN, ipns://KEY)", source=name)

    def publish_folder(self, name: str, root: CID, *, expected: CID | None = None) -> Resolution:
        """Point a DNSLink or IPNS ``name`` at a campaign's root *folder* (what ``halodb scan``
        reads), not at a commit. Local names are refused: they name versions of the index, and
        ``log``, ``sync`` and ``gc`` read them as commits. Without ``expected`` the name's
        current target is the compare-and-swap value."""
        self.check_folder_name(name)
        if expected is None:
            try:
                expected = self.names.resolve(name).cid
            except NameNotFoundError:
                expected = None
        return self.names.publish(name, root, expected=expected)

    # -- reading ----------------------------------------------------------------------------------
    def resolve(self, ref: str | CID) -> CID:
        """The commit a reference names: CID, ``ipfs://CID``, NAME, NAME@TIME, or HEAD."""
        if isinstance(ref, CID):
            return ref
        if ref.strip().upper() == "HEAD" or ref.strip().upper().startswith("HEAD@"):
            head = self.head
            if head is None:
                raise NameNotFoundError("HEAD: the registry has no commits yet", name="HEAD")
            base, when = head, (to_time(ref.split("@", 1)[1]) if "@" in ref else None)
        else:
            parsed = parse_ref(ref)
            if parsed.cid is not None:
                base = parsed.cid
            else:
                base = self.names.resolve(ref.strip().rpartition("@")[0] if parsed.when else ref.strip()).cid
            when = parsed.when
        if when is None:
            return base
        found = commit_at(self.store, base, when, self._commits)
        if found is None:
            raise NameNotFoundError(f"{ref!r}: no version at or before {format_time(when)}", name=ref)
        return found[0]

    def log(self, ref: str | CID = "HEAD", limit: int | None = None) -> Iterator[LogEntry]:
        """The history of ``ref``, newest first, with per-version change counts."""
        head = self.resolve(ref)
        for n, (cid, commit) in enumerate(walk(self.store, head, cache=self._commits)):
            if limit is not None and n >= limit:
                return
            root = self.index.load_root(commit.index)
            parent_root = self._root_of(commit.parents[0]) if commit.parents else None
            counts = {"added": 0, "changed": 0, "removed": 0}
            for change in self.index.diff(parent_root, root):
                counts[change.kind] += 1
            yield LogEntry(cid, commit, counts["added"], counts["changed"], counts["removed"], root.count)

    def diff(self, old: str | CID, new: str | CID) -> list[Change]:
        """Dataset changes between two versions."""
        a = self._root_of(self.resolve(old))
        b = self._root_of(self.resolve(new))
        assert b is not None
        return list(self.index.diff(a, b))

    def get(self, key_or_path: str, ref: str | CID = "HEAD") -> tuple[str, Entry, dict[str, Any]]:
        """The key, entry and STAC item of a dataset at a version."""
        root = self._root_of(self.resolve(ref))
        found = self.index.resolve(root, key_or_path) if root else None
        if found is None:
            raise UnknownKeyError(f"no dataset {key_or_path!r} at {ref}", key=key_or_path)
        key, entry = found
        item: dict[str, Any] = decode(self.store.get(entry.item), cid=entry.item)
        return key, entry, item

    # -- cache -----------------------------------------------------------------------------------
    @property
    def cache(self) -> Cache:
        if self._cache is None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            # created on first use, so a call follows at once: it reuses the opening connection
            self._cache = Cache(self.cache_path, keep_open=True)
        return self._cache

    @contextmanager
    def session(self) -> Iterator[Registry]:
        """Keep the cache file open across many calls (a loop of ``cid_at`` or ``sql``).

        Outside a session each call opens and closes the DuckDB file (~15 ms), so that other
        processes can sync or query between calls; inside one, calls are fast but other
        processes wait.
        """
        with self.cache.session():
            yield self

    def canonical_name(self, name: str) -> str:
        """The spelling ``name`` is recorded under in the cache (``dnslink:x.org`` -> ``x.org``)."""
        return self.names.canonical(name) if isinstance(self.names, NameRouter) else name

    def sync(self, name: str, *, head: CID | None = None) -> SyncResult:
        """Resolve ``name`` (unless its ``head`` is given) and materialize its history into the
        DuckDB cache, all or nothing. The cache records it under :meth:`canonical_name`."""
        head = head if head is not None else self.resolve(name)
        name = self.canonical_name(name)
        if isinstance(self.store, CachingStore) and self.prefetch_spread and self.cache.sync_state(name) is None:
            # an initial sync: the head version's index as CARs, where the remote sends them;
            # older versions then come a changed tree level at a time, like incremental syncs
            index = load_commit(self.store, head).index
            spread = self.prefetch_spread
            if spread > 1:
                spread = min(spread, max(16, self.index.load_root(index).count // 40))
            self.store.prefetch(index, spread=spread, workers=self.prefetch_workers)
        with paused_gc():
            return sync(self.store, self.index, self.cache, name, head)

    def sql(self, query: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run SQL on the cache: ``items``, ``item_versions``, ``commits``, ``items_at(ts)``..."""
        return self.cache.sql(query, params)

    def cid_at(self, key_or_path: str, when: TimeLike, name: str | None = None) -> str | None:
        """The data CID a dataset (by key or path) had at ``when``; None if it had none.

        With a synced ``name`` whose cache is current this is one indexed query; otherwise the
        commit chain is walked in the block store.
        """
        t = to_time(when, what="date")
        if name is not None and self.cache_path.exists():
            with self.cache.session():
                state = self.cache.sync_state(self.canonical_name(name))
                if state is not None and state.head == str(self.resolve(name)):
                    return self.cache.cid_at(key_or_path, t, state.name)
        return self.cid_at_dag(key_or_path, t, name or "HEAD")

    def cid_at_dag(self, key_or_path: str, when: TimeLike, ref: str | CID = "HEAD") -> str | None:
        """:meth:`cid_at` answered from the DAG alone (no cache)."""
        found = commit_at(self.store, self.resolve(ref), to_time(when, what="date"), self._commits)
        if found is None:
            return None
        root = self.index.load_root(found[1].index)
        hit = self.index.resolve(root, key_or_path)
        return hit[1].data if hit else None

    # -- garbage collection -------------------------------------------------------------------
    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete local blocks that no head reaches; returns (kept, deleted).

        Kept: everything reachable (whole history) from the local head, every local name,
        every name synced into the cache, and the staged items. Do not run it while another
        process commits into the same home: blocks of an unfinished commit are not reachable yet.
        """
        local = self.store.local if isinstance(self.store, CachingStore) else self.store
        if not (local.supports_listing and local.supports_deletes):
            raise InputError(f"{local.describe()} cannot be garbage-collected (no listing or deletes)", source="gc")
        heads: set[CID] = set()
        if self.head is not None:
            heads.add(self.head)
        for name in self.names.names():
            heads.add(self.names.resolve(name).cid)
        if self.cache_path.exists():
            heads.update(CID.parse(st.head) for st in self.cache.sync_states() if st.head)
        keep: set[CID] = {e.item for e in self.staged().upserts.values()}
        for head in heads:
            keep.update(self.reachable(head))
        doomed = [cid for cid in local.iter_cids() if cid not in keep]
        if not dry_run:
            for cid in doomed:
                local.delete(cid)
            local.flush()
        return len(keep), len(doomed)

    # -- CAR ----------------------------------------------------------------------------------------
    def reachable(self, head: CID, *, history: bool = True) -> Iterator[CID]:
        """Every block of the index DAG from ``head``: commits, roots, tree nodes, items."""
        seen: set[CID] = set()
        commits = walk(self.store, head, cache=self._commits) if history else iter([(head, load_commit(self.store, head, self._commits))])
        for cid, commit in commits:
            yield cid
            if commit.index in seen:
                continue
            seen.add(commit.index)
            yield commit.index
            root = self.index.load_root(commit.index)
            for tree, tree_root in (
                (self.index.datasets, root.datasets), (self.index.by_path, root.by_path), (self.index.by_data, root.by_data)
            ):
                for node_cid in tree.node_cids(tree_root):
                    if node_cid in seen:
                        continue
                    seen.add(node_cid)
                    yield node_cid
                    node = tree.load(node_cid)
                    if node.level == 0 and tree is self.index.datasets:
                        for value in node.values:
                            item = Entry.from_ipld(value, cid=node_cid).item
                            if item not in seen:
                                seen.add(item)
                                yield item

    def export_car(self, ref: str | CID, path: str | Path, *, history: bool = True) -> tuple[CID, int]:
        """Write every block of ``ref`` (and its history) to a CARv1 file; returns (root, blocks)."""
        head = self.resolve(ref)
        count = 0

        def blocks() -> Iterator[tuple[CID, bytes]]:
            nonlocal count
            for cid in self.reachable(head, history=history):
                count += 1
                yield cid, self.store.get(cid)

        write_car(path, [head], blocks())
        return head, count

    def import_car(self, path: str | Path) -> list[CID]:
        """Verify a CAR completely, then store its blocks; returns its roots."""
        return import_car(self.store, Path(path))

    # -- tree.yaml ------------------------------------------------------------------------------------
    def import_tree(
        self,
        tree: dict[str, Any],
        *,
        time: TimeLike = None,
        message: str | None = None,
        collection: str = "orcestra",
        author: str | None = None,
    ) -> CID:
        """Make the datasets of a campaign tree (path -> CID) the new dataset set and commit it."""
        leaves = flatten_tree(tree)
        head = self.head
        root = self._root_of(head) or self.index.empty()
        prefix = f"{collection}/"
        current = dict(self.index.entries(root, prefix))
        stage = self.staged()
        if stage:
            raise InputError("the stage is not empty: commit or reset it before importing a tree", source="stage")
        blocks: list[tuple[CID, bytes]] = []
        wanted: dict[str, Entry] = {}
        for path, data in leaves.items():
            item = stac.stub_item(path, data, collection, None)
            cid, raw = make_block(item)
            key = stac.dataset_key(item, collection)
            entry = Entry(item=cid, data=data, path=path)
            wanted[key] = entry
            if current.get(key) != entry:
                blocks.append((cid, raw))
                stage.upserts[key] = entry
        stage.removals = {k for k in current if k not in wanted}
        self.store.put_many(blocks, verify=False)
        self._save(head, stage)
        try:
            return self.commit(message or f"import tree ({len(wanted)} datasets)", time=time, author=author, allow_empty=True)
        except BaseException:
            self._save(head, Stage())
            raise

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self.store.close()
        if isinstance(self.names, NameRouter):
            self.names.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    home_path = Path(home).expanduser() if home is not None else default_home()
    store_url = store if store is not None else os.environ.get("HALODB_STORE")
    cache_path = Path(cache) if cache is not None else Path(os.environ.get("HALODB_CACHE") or home_path / "cache.duckdb")
    store_ = open_store(store_url, home_path)
    if store_.is_remote:  # keep what was fetched: the network is asked only for new blocks
        store_ = CachingStore(DirectoryStore(home_path / "blocks"), store_)
    gateway = store_.remote if isinstance(store_, CachingStore) and isinstance(store_.remote, GatewayStore) else None
    names = NameRouter(LocalNames(home_path / "names"), kubo=kubo_of(store_url), gateway=gateway)
    reg = Registry(home_path, store_, names, cache_path)
    if create:
        reg.init()
    return reg


__all__ = ["LogEntry", "Registry", "Stage", "default_home", "open", "to_time"]
