"""``halodb gc``: delete the local blocks that no head reaches, and the temporary files that
killed writes left behind.

What keeps gc away from the temporary file of a writer that is still running, per kind:

* **block writes** (``BLOCKS/<shard>/.<name>.<pid>.<n>.tmp``): the block store's own rule,
  :meth:`~halodb.blockstore.base.BlockStore.remove_stale_temp_files`. A
  :class:`~halodb.blockstore.DirectoryStore` writer holds an ``flock`` on its temporary file
  until it has renamed it, so exactly the files no live writer holds are removed, at once.
  The home's lock would not do: ``sync`` and ``import-car`` write blocks without it.
* **the home's state** (``HOME/.state.json.XXXXXXXX.tmp``, from
  :func:`~halodb.util.fs.atomic_file`): every writer of ``state.json`` holds the home's lock,
  and so does gc, so every such file is stale.
* **the other atomic writes in the home** (local names and IPNS sequences in ``names/``,
  written under ``names/.lock``; the scan cache, written with no lock): removed only once
  older than :data:`STALE_TEMP_AGE`. Their writers hold no lock gc takes, but such a write
  of a small file takes milliseconds, and every write moves the file's time.

>>> import tempfile, os
>>> home = Path(tempfile.mkdtemp())
>>> for name in (".state.json.abcd_123.tmp", "state.json", ".keep.txt"):
...     _ = (home / name).write_text("{}")
>>> remove_stale_temp_files(home), sorted(os.listdir(home))
(1, ['.keep.txt', 'state.json'])
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from halodb.blockstore.base import BlockStore
from halodb.blockstore.car import dag_links
from halodb.errors import InputError, RegistryError
from halodb.index.index import Index
from halodb.index.model import Commit
from halodb.index.reachable import reachable
from halodb.ipld import CID, DAG_CBOR, DAG_PB

__all__ = ["STALE_TEMP_AGE", "collect_garbage", "local_dag", "remove_stale_temp_files"]

#: CIDs asked of the store at once while following data DAGs
_HAS_BATCH = 500

#: seconds after its last write that an atomic write's temporary file, outside the home's
#: lock, counts as abandoned
STALE_TEMP_AGE = 3600.0
#: ``.NAME.XXXXXXXX.tmp``: the temporary file of ``atomic_file(NAME)`` (``tempfile.mkstemp``)
_ATOMIC_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
#: the files of the home whose writers all hold the home's lock
_LOCKED_BY_HOME = frozenset({"state.json"})
#: the folders of the home that atomic writes outside the home's lock use (recursively)
_UNLOCKED_FOLDERS = ("names", "scan-cache")


def collect_garbage(
    store: BlockStore, index: Index, heads: Iterable[CID], keep: set[CID], *, dry_run: bool = False,
    commits: dict[CID, Commit] | None = None, home: Path | None = None, data_roots: Iterable[CID] = (),
) -> tuple[int, int]:
    """Delete the blocks of ``store``'s local part that neither ``keep`` nor the whole history
    of any of ``heads`` holds — neither the index DAG nor the datasets' data: of every data
    CID a version of those histories names (and of ``data_roots``: staged datasets'), the
    DAG as far as its blocks are local (:func:`local_dag`). Returns (kept, deleted). Unless
    ``dry_run``, also removes the
    temporary files killed writes left in the local store and, given the ``home`` (whose lock
    the caller holds), in the home (:func:`remove_stale_temp_files`)."""
    local = store.local_store()
    if not (local.supports_listing and local.supports_deletes):
        raise InputError(f"{local.describe()} cannot be garbage-collected (no listing or deletes)", source="gc")
    keep = set(keep)
    data = set(data_roots)
    for head in set(heads):
        keep.update(reachable(store, index, head, commits=commits, data=data))
    keep.update(local_dag(local, data))
    doomed = [cid for cid in local.iter_cids() if cid not in keep]
    if not dry_run:
        local.delete_many(doomed)
        local.remove_stale_temp_files()
        if home is not None:
            remove_stale_temp_files(home)
        local.flush()
    return len(keep), len(doomed)


def local_dag(store: BlockStore, roots: Iterable[CID]) -> set[CID]:
    """The blocks of the DAGs under ``roots`` that ``store`` holds, each followed only as
    far as its blocks are there (the rest lives elsewhere: on a gateway, a Kubo node). A
    data CID may be spelled CIDv0 or CIDv1 and the block stored under the other: both are
    looked for.

    >>> from halodb.blockstore import MemoryStore
    >>> from halodb.ipld import RAW
    >>> store = MemoryStore()
    >>> leaf = store.put(b"chunk", codec=RAW)
    >>> local_dag(store, [leaf, CID.for_bytes(b"elsewhere", RAW)]) == {leaf}
    True
    """
    found: set[CID] = set()
    todo = deque(dict.fromkeys(s for root in roots for s in _spellings(root)))
    while todo:
        batch = [todo.popleft() for _ in range(min(len(todo), _HAS_BATCH))]
        for cid in store.has_many(c for c in batch if c not in found):
            found.add(cid)
            if cid.codec in (DAG_PB, DAG_CBOR):  # raw leaves link nothing: never read
                todo.extend(link for link in dag_links(cid, store.get(cid)) if link not in found)
    return found


def _spellings(cid: CID) -> list[CID]:
    """``cid``, and for a dag-pb sha2-256 CID its other version's spelling."""
    if cid.version == 0:
        return [cid, CID(b"\x01\x70" + cid.buffer)]
    if cid.codec == DAG_PB and cid.multihash[:2] == b"\x12\x20":
        return [cid, CID(cid.multihash)]
    return [cid]


def remove_stale_temp_files(home: Path, *, max_age: float = STALE_TEMP_AGE) -> int:
    """Remove the temporary files of atomic writes that were killed, in the registry home
    ``home``; returns how many. Call it holding the home's lock: the temporary files of
    ``state.json`` go at once, those of ``names/`` and ``scan-cache/`` once ``max_age``
    seconds old (see the module docstring). Nothing else is touched."""
    removed = 0
    for path in _temp_files(home, recursive=False):
        written = _ATOMIC_TEMP.fullmatch(path.name)
        if written and written["name"] in _LOCKED_BY_HOME:
            removed += _remove(path)
    cutoff = time.time() - max_age
    for folder in _UNLOCKED_FOLDERS:
        for path in _temp_files(home / folder, recursive=True):
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if old:
                removed += _remove(path)
    return removed


def _temp_files(folder: Path, *, recursive: bool) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise RegistryError(f"cannot list {folder} to remove temporary files: {exc}", path=folder) from exc
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and _ATOMIC_TEMP.fullmatch(entry.name):
            yield Path(entry.path)
        elif recursive and entry.is_dir(follow_symlinks=False):
            yield from _temp_files(Path(entry.path), recursive=True)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise RegistryError(f"cannot remove the temporary file {path}: {exc}", path=path) from exc
    return True
