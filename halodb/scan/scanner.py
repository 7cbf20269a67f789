"""``halodb scan``: find the datasets of a campaign tree on IPFS, describe them, stage them.

Walk → extract → cache → stage:

1. **walk** the UnixFS tree under the root (a CID, ``ipfs://CID/sub/path``, or a name
   resolved by the registry's name router) with :func:`~halodb.unixfs.walk_tree`, stopping
   at datasets: folders holding ``.zgroup``, ``.zmetadata``, ``zarr.json`` or
   ``dataset_meta.yaml``. Files and folders that are not datasets are counted as skipped.
2. **extract** each dataset (a distinct CID once) in a bounded thread pool, read as its
   own tree ``UnixFSTree(store, dataset_cid)``, so the item's ``data`` asset is
   ``ipfs://<dataset cid>``; items are also validated against the STAC 1.1 schema, offline.
3. **cache** each result by dataset CID (:mod:`halodb.scan.scan_cache`): a re-scan reads
   only the datasets whose CID changed. Errors are cached too (``retry_errors`` re-reads
   them); failures to fetch blocks are not (they may pass).
4. **stage**: the item is placed at its path — ``properties["halodb:path"]`` is
   ``prefix/<path in the scanned folder>`` — and keyed (:func:`place_key`); new and changed
   items are listed for staging (``report.additions``), unchanged ones are left alone, and
   datasets the registry has under the prefix that the tree no longer holds are listed for
   removal (``report.removals``, unless ``remove=False``). :meth:`Registry.scan` stages
   them; nothing is committed: ``halodb commit`` does that.

A broken dataset never stops a scan: its errors (path, attribute, file) go into the
:class:`ScanReport`, and the rest is staged. A walk that hits its limits (a folder that
contains itself, absurd depth or size) ends the walk with an error in the report; what was
found is still extracted and staged, but nothing is removed.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.unixfs.build import put_directory, put_file
>>> store = MemoryStore()
>>> meta = b"title: CORAL quicklooks\\ntime: 2024-08-10T00:00:00Z\\nbbox: [-59.43, 13.16, -59.42, 13.17]\\n"
>>> ds = put_directory(store, {"dataset_meta.yaml": put_file(store, meta)})
>>> root = put_directory(store, {"BCO": put_directory(store, {"coral": ds}),
...                              "README.md": put_file(store, b"hello")})
>>> report = scan(store, str(root), current=lambda prefix: ({}, {}))
>>> [(d.path, d.key, d.change) for d in report.datasets], report.skipped.files
([('BCO/coral', 'BCO/coral', 'added')], 1)
>>> [(path, item["assets"]["data"]["href"]) for path, item in report.additions] == [("BCO/coral", f"ipfs://{ds}")]
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from halodb import stac
from halodb.blockstore.base import BlockStore
from halodb.errors import BlockStoreError, HaloDBError, InputError, InvalidItemError, NotADatasetError
from halodb.index.model import Entry
from halodb.ipld import CID, make_block
from halodb.scan.extract import DEFAULT_MAX_COORDINATE_BYTES, describe_dataset
from halodb.scan.report import Problem
from halodb.scan.roots import Root, resolve_root
from halodb.scan.scan_cache import Extracted, ScanCache
from halodb.unixfs.mfs import looks_like_dataset
from halodb.unixfs.tree import DIR, UnixFSTree

#: the id a cached (placeless) item carries until the scanner places it
PLACEHOLDER_ID = "dataset"
#: at most this many skipped paths are listed in a report (all are counted)
MAX_EXAMPLES = 20
Progress = Callable[[int, int], None]
#: what the registry holds under a prefix (head plus stage): ``(path -> key, key -> entry)``
CurrentView = Callable[[str], tuple[dict[str, str], dict[str, Entry]]]


@dataclass
class DatasetResult:
    """One dataset found by a scan.

    ``status`` says where the result came from: ``extracted`` (read now), ``cached`` (an
    earlier scan's result for this CID) or ``unread`` (its blocks could not be fetched).
    ``errors`` (with ``message``, a one-line summary naming the path, attribute and file)
    make it :attr:`failed`. ``change`` (when staging): ``added``, ``changed`` or
    ``unchanged``; None for a failed dataset.
    """

    path: str
    cid: str
    status: str
    key: str | None = None
    change: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: int = 0
    message: str | None = None
    item: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "cid": self.cid, "status": self.status, "failed": self.failed,
                "key": self.key, "change": self.change,
                "warnings": self.warnings, "errors": self.errors, "message": self.message}


@dataclass
class Skipped:
    """What the walk passed over: files outside datasets and folders holding no dataset."""

    files: int = 0
    folders: int = 0
    examples: list[str] = field(default_factory=list)
    #: folders named ``*.zarr`` that hold no dataset (no Zarr metadata: ``ipfs add -r`` without
    #: ``-H`` leaves out a Zarr v2 store's ``.zgroup``, ``.zattrs``, ``.zarray``)
    zarr_named: list[str] = field(default_factory=list)


@dataclass
class ScanReport:
    """What a scan found, read, reused, staged and removed, and every per-dataset error."""

    root: str  #: the CID of the scanned folder
    source: str  #: the root as given
    prefix: str
    datasets: list[DatasetResult] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  #: keys staged for removal (gone from the tree)
    moved: list[str] = field(default_factory=list)  #: old keys removed because the dataset got a new key
    not_removed: list[str] = field(default_factory=list)  #: gone from the tree, kept (remove=False or walk error)
    skipped: Skipped = field(default_factory=Skipped)
    walk_error: str | None = None
    staged: bool = False  #: whether the results were staged into a registry
    #: items to stage, ``(path, item)``: the new and changed datasets (with a current view)
    additions: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)
    #: keys to stage for removal: :attr:`removed` (unless kept) and :attr:`moved`
    removals: list[str] = field(default_factory=list)

    def count(self, status: str | None = None, change: str | None = None) -> int:
        return sum(1 for d in self.datasets if (status is None or d.status == status)
                   and (change is None or d.change == change))

    @property
    def failed(self) -> list[DatasetResult]:
        return [d for d in self.datasets if d.failed]

    @property
    def ok(self) -> bool:
        """No dataset failed and the walk completed."""
        return not self.failed and self.walk_error is None

    def summary(self) -> dict[str, int]:
        return {
            "found": len(self.datasets), "extracted": self.count("extracted"), "cached": self.count("cached"),
            "failed": len(self.failed), "added": self.count(change="added"),
            "changed": self.count(change="changed"), "unchanged": self.count(change="unchanged"),
            "removed": len(self.removed), "skipped_files": self.skipped.files,
            "skipped_folders": self.skipped.folders,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``halodb scan --json``)."""
        return {
            "root": self.root, "source": self.source, "prefix": self.prefix, "ok": self.ok, "staged": self.staged,
            "summary": self.summary(), "walk_error": self.walk_error,
            "removed": self.removed, "moved": self.moved, "not_removed": self.not_removed,
            "skipped": {"files": self.skipped.files, "folders": self.skipped.folders,
                        "examples": self.skipped.examples, "zarr_named": self.skipped.zarr_named},
            "datasets": [d.to_dict() for d in self.datasets],
        }

    def lines(self) -> list[str]:
        """The report as text: a summary, then one line per failed dataset and removal."""
        s = self.summary()
        out = [
            f"scanned {self.source} ({self.root}){f' into {self.prefix}/' if self.prefix else ''}: "
            f"{s['found']} dataset(s), {s['extracted']} extracted, {s['cached']} from cache, {s['failed']} failed",
        ]
        if self.staged:
            out.append(f"staged: {s['added']} added, {s['changed']} changed, {s['removed']} removed "
                       f"({s['unchanged']} unchanged)")
        out.append(f"skipped: {self.skipped.files} file(s) and {self.skipped.folders} folder(s) holding no dataset"
                   + (f", e.g. {', '.join(self.skipped.examples[:5])}" if self.skipped.examples else ""))
        if self.skipped.zarr_named:
            out.append(f"note: {', '.join(self.skipped.zarr_named[:3])}{' …' if len(self.skipped.zarr_named) > 3 else ''}"
                       " named like a Zarr store but without Zarr metadata: a Zarr v2 store added with `ipfs add -r`"
                       " needs -H (--hidden), or its .zgroup, .zattrs and .zarray are left out")
        if self.walk_error:
            out.append(f"walk stopped: {self.walk_error} (nothing was removed)")
        for d in self.failed:
            out.append(f"error    {d.message}")
        for key in self.removed:
            out.append(f"removed  {key} (no longer in the tree)")
        for key in self.moved:
            out.append(f"removed  {key} (its dataset has a new key)")
        for key in self.not_removed:
            out.append(f"kept     {key} (no longer in the tree; not removed)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --- keys -------------------------------------------------------------------------------------
def place_key(path: str, collection: str | None = None, existing: str | None = None) -> tuple[str, str]:
    """The ``(collection, item id)`` of the dataset at ``path`` in the campaign tree.

    * with ``collection``: that collection, and the whole path as the id;
    * else the key the registry already has for this path (``existing``), so a dataset keeps
      its key across scans (e.g. ``orcestra/...`` from ``halodb import-tree``);
    * else the first path component is the collection and the rest the id, so that the key
      reads as the path itself.

    >>> place_key("products/HALO/BAHAMAS.zarr")
    ('products', 'HALO/BAHAMAS.zarr')
    >>> place_key("products/HALO/BAHAMAS.zarr", "orcestra")
    ('orcestra', 'products/HALO/BAHAMAS.zarr')
    >>> place_key("products/HALO/BAHAMAS.zarr", existing="orcestra/products/HALO/BAHAMAS.zarr")
    ('orcestra', 'products/HALO/BAHAMAS.zarr')
    """
    if not path:
        raise InputError("the scanned root is itself a dataset: give --prefix, its path in the campaign tree",
                         source="prefix")
    if collection is not None:
        if not collection or "/" in collection:
            raise InputError(f"a collection must be a non-empty name without '/': {collection!r}", source="collection")
        return collection, path
    if existing is not None:
        coll, item_id = stac.split_key(existing)
        return coll, item_id
    coll, sep, item_id = path.partition("/")
    if not sep or not item_id:
        raise InputError(f"{path}: a dataset at the top of the tree has no folder to name its collection; "
                         "give one (--collection) or a --prefix", source=path)
    return coll, item_id


def place_item(item: dict[str, Any], path: str, collection: str, item_id: str) -> dict[str, Any]:
    """A copy of a placeless cached item with its id, collection, collection link and path."""
    placed = {**item, "id": item_id, "collection": collection,
              "properties": {**item["properties"], "halodb:path": path}}
    links = [link for link in item.get("links") or [] if link.get("rel") != "collection"]
    # as extract_metadata does: STAC requires a link to the collection an item names
    links.append({"rel": "collection", "href": "../collection.json", "type": "application/json"})
    placed["links"] = links
    return placed


# --- extraction -----------------------------------------------------------------------------
def _error(attribute: str, message: str, file: str | None = None) -> dict[str, Any]:
    return Problem("error", attribute, message, file).to_dict()


def extract_cid(store: BlockStore, cid: CID, *, max_coordinate_bytes: int = DEFAULT_MAX_COORDINATE_BYTES,
                validate: bool = True) -> Extracted:
    """Describe the dataset whose root folder is ``cid``: a placeless item or its errors.

    Raises :class:`~halodb.errors.BlockStoreError` when blocks cannot be fetched (worth
    retrying, never cached); every problem of the dataset itself goes into the result.
    """
    text = str(cid)
    tree = UnixFSTree(store, cid)
    try:
        found = describe_dataset(tree, path="", cid=text, item_id=PLACEHOLDER_ID,
                                 max_coordinate_bytes=max_coordinate_bytes)
    except NotADatasetError as exc:
        return Extracted(text, None, [_error("(dataset)", str(exc.context.get("detail") or exc))], {})
    except BlockStoreError:
        raise
    except HaloDBError as exc:  # malformed UnixFS, unreadable files: the same CID fails the same way
        return Extracted(text, None, [_error(str(exc.context.get("attribute") or "(dataset)"), str(exc),
                                             exc.context.get("file"))], {})
    problems = [p.to_dict() for p in found.report.problems]
    item = found.item
    if item is not None and validate:
        from halodb.stac.validate import validate_offline  # noqa: PLC0415 - jsonschema only when needed

        try:
            validate_offline(item)
        except InvalidItemError as exc:
            problems.append(_error("item", str(exc)))
            item = None
    if item is None and not any(p["severity"] == "error" for p in problems):
        problems.append(_error("(item)", "the item could not be built"))
    return Extracted(text, item, problems, dict(found.report.found))


def _message(path: str, errors: Sequence[dict[str, Any]]) -> str:
    first = errors[0]
    where = f" ({first['file']})" if first.get("file") else ""
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return f"{path or '/'}: {first['attribute']}: {first['message']}{where}{more}"


# --- the walk -------------------------------------------------------------------------------------
@dataclass
class _Walk:
    datasets: list[tuple[str, CID]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    error: str | None = None


def _walk(store: BlockStore, root: CID, max_depth: int, max_entries: int) -> _Walk:
    out = _Walk()
    marked: set[str] = set()

    def prune(path: str, names: Sequence[str]) -> bool:
        if looks_like_dataset(names):
            marked.add(path)
            return True
        return False

    try:
        for entry in UnixFSTree(store, root).walk(max_depth=max_depth, max_entries=max_entries, prune=prune):
            if entry.path in marked:
                out.datasets.append((entry.path, entry.cid))
            elif entry.kind == DIR:
                if entry.path:
                    out.folders.append(entry.path)
            elif entry.path == "":
                raise InputError(f"{root} is a file, not a folder: there is nothing to scan", source=str(root))
            else:
                out.files.append(entry.path)
    except BlockStoreError:
        raise
    except InputError:
        raise
    except HaloDBError as exc:  # cycles, limits, malformed folders
        out.error = str(exc)
    return out


def _skipped(walk: _Walk, prefix: str) -> Skipped:
    holding: set[str] = set()
    for path, _ in walk.datasets:
        parts = path.split("/")
        holding.update("/".join(parts[:i]) for i in range(1, len(parts)))
    empty = [f for f in walk.folders if f not in holding]
    examples = sorted(walk.files + [f + "/" for f in empty])[:MAX_EXAMPLES]
    zarr_named = sorted(f for f in empty if f.rpartition("/")[2].lower().endswith(".zarr"))[:MAX_EXAMPLES]
    return Skipped(len(walk.files), len(empty), [_join(prefix, p) for p in examples],
                   [_join(prefix, p) for p in zarr_named])


def _join(prefix: str, path: str) -> str:
    return f"{prefix}/{path}" if prefix and path else prefix or path


# --- scan ---------------------------------------------------------------------------------------
def scan(
    store: BlockStore,
    root: str,
    *,
    resolve: Callable[[str], CID] | None = None,
    current: CurrentView | None = None,
    prefix: str | None = None,
    collection: str | None = None,
    workers: int = 8,
    cache: ScanCache | None = None,
    progress: Progress | None = None,
    retry_errors: bool = False,
    remove: bool = True,
    max_coordinate_bytes: int = DEFAULT_MAX_COORDINATE_BYTES,
    max_depth: int = 64,
    max_entries: int = 1_000_000,
) -> ScanReport:
    """Scan the tree at ``root`` for datasets and say what to stage (see the module doc).

    ``root`` is a CID or ``ipfs://CID/sub/path``, or a name when ``resolve`` (name -> CID)
    is given. ``current`` is what the registry holds under a prefix: with it, each dataset's
    ``change`` is computed and the report lists what to stage (:attr:`ScanReport.additions`,
    :attr:`ScanReport.removals`); without it, nothing is to be staged and the items are in
    ``report.datasets[i].item``. ``prefix`` is where the scanned folder sits in the campaign
    tree (default: the sub-path of ``ipfs://CID/sub/path``, else the top). ``cache`` keeps
    extraction results by dataset CID. ``progress(done, total)`` is called as datasets are
    finished. Raises :class:`~halodb.errors.InputError` for a root that cannot be scanned at
    all (unknown name, a file, a missing sub-path).
    """
    where: Root = resolve_root(store, root, resolve)
    base = where.subpath if prefix is None else "/".join(p for p in prefix.split("/") if p)
    if any(p in (".", "..") for p in base.split("/")):
        raise InputError(f"prefix {prefix!r}: '.' and '..' are not allowed", source="prefix")
    store_cache = cache

    walk = _walk(store, where.cid, max_depth, max_entries)
    report = ScanReport(str(where.cid), root, base, skipped=_skipped(walk, base), walk_error=walk.error)

    # extract each distinct CID once, from the cache when it may
    results: dict[str, Extracted] = {}
    cached: set[str] = set()
    todo: list[CID] = []
    queued: set[str] = set()
    for _, cid in walk.datasets:
        text = str(cid)
        if text in results or text in queued:
            continue
        queued.add(text)
        hit = store_cache.get(text, max_coordinate_bytes=max_coordinate_bytes) if store_cache else None
        if hit is not None and not (retry_errors and hit.item is None):
            results[text] = hit
            cached.add(text)
        else:
            todo.append(cid)
    failures: dict[str, str] = {}
    lock = threading.Lock()
    done = len(results)
    total = len(results) + len(todo)
    if progress is not None:
        progress(done, total)

    def work(cid: CID) -> None:
        nonlocal done
        text = str(cid)
        try:
            result = extract_cid(store, cid, max_coordinate_bytes=max_coordinate_bytes)
        except BlockStoreError as exc:
            with lock:
                failures[text] = f"blocks could not be read: {exc}"
        except Exception as exc:  # noqa: BLE001 - one dataset's surprise must not end the scan
            with lock:
                failures[text] = f"unexpected {type(exc).__name__}: {exc}"
        else:
            if store_cache is not None:
                store_cache.put(result, max_coordinate_bytes=max_coordinate_bytes)
            with lock:
                results[text] = result
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            for _ in pool.map(work, todo):
                pass

    # place every dataset at its path
    holders, entries = current(base) if current is not None else ({}, {})
    staged_items: list[tuple[str, dict[str, Any]]] = []
    moved: list[str] = []
    for rel, cid in walk.datasets:
        text = str(cid)
        path = _join(base, rel)
        res = DatasetResult(path, text, "cached" if text in cached else "extracted")
        report.datasets.append(res)
        got = results.get(text)
        if got is None:
            res.status = "unread"
            res.errors = [_error("(blocks)", failures.get(text, "not read"))]
            res.message = _message(path, res.errors)
            continue
        res.warnings = sum(1 for p in got.problems if p.get("severity") == "warning")
        if got.item is None:
            res.errors = got.errors
            res.message = _message(path, res.errors)
            continue
        try:
            coll, item_id = place_key(path, collection, holders.get(path))
            item = stac.parse_item(place_item(got.item, path, coll, item_id), path)
            doi = stac.item_doi(item, source=path)
        except (InputError, InvalidItemError) as exc:
            res.errors = [_error(str(exc.context.get("field") or "(key)"), str(exc))]
            res.message = _message(path, res.errors)
            continue
        res.key, res.item = f"{coll}/{item_id}", item
        if current is None:
            continue
        entry = Entry(make_block(item)[0], stac.data_cid(item), path, doi)
        old = entries.get(res.key)
        res.change = "unchanged" if old == entry else "changed" if old is not None else "added"
        if res.change != "unchanged":
            staged_items.append((path, item))
        holder = holders.get(path)
        if holder is not None and holder != res.key:
            moved.append(holder)

    if current is not None:
        report.additions = staged_items
        present = {_join(base, rel) for rel, _ in walk.datasets}
        gone = sorted({key for path, key in holders.items() if path not in present})
        if walk.error is not None or not remove:
            report.not_removed = gone
        else:
            report.removed = gone
        report.moved = sorted(set(moved) - set(gone))
        report.removals = (report.removed if walk.error is None and remove else []) + report.moved
    return report


__all__ = ["DatasetResult", "ScanReport", "Skipped", "extract_cid", "place_item", "place_key", "scan"]
