"""Campaign roots: build a UnixFS root from a ``tree.yaml`` mapping in Kubo's MFS, and back.

:func:`build_tree` assembles the folders of a nested ``{name: cid | dict | None}`` mapping
(the shape :func:`halodb.campaign.load_tree` reads) under a fresh temporary MFS path of a
Kubo node, copies every leaf in with ``files/cp /ipfs/<cid>`` (only links are written: no
dataset is copied or even fetched beyond its root block), reads the root CID with
``files/stat``, optionally pins it, and removes the temporary path.

:func:`export_tree` is the inverse: it walks a root's folders through any block store down
to the dataset level (a folder holding ``.zgroup``, ``.zmetadata``, ``zarr.json`` or
``dataset_meta.yaml``, or a file) and returns the mapping, ready for ``yaml.safe_dump``.

>>> looks_like_dataset(["time", ".zgroup", ".zattrs"]), looks_like_dataset(["HALO", "README.md"])
(True, False)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from halodb.blockstore.base import BlockStore
from halodb.blockstore.kubo import KuboStore
from halodb.errors import InputError
from halodb.ipld import CID
from halodb.campaign import MAX_DEPTH, flatten_tree
from halodb.unixfs.tree import DIR, UnixFSTree

#: names whose presence makes a folder a dataset (a leaf of the campaign tree)
DATASET_MARKERS = frozenset({".zgroup", ".zmetadata", "zarr.json", "dataset_meta.yaml"})


def looks_like_dataset(names: Iterable[str]) -> bool:
    """Whether a folder with these entry names is a dataset (Zarr v2/v3 or ``dataset_meta.yaml``)."""
    return not DATASET_MARKERS.isdisjoint(names)


def _kubo(url: str | KuboStore, timeout: float) -> tuple[KuboStore, bool]:
    if isinstance(url, KuboStore):
        return url, False
    if url.startswith(("http://", "https://")):
        url = "kubo+" + url
    return KuboStore(url, timeout=timeout), True


def build_tree(kubo_api_url: str | KuboStore, tree: Mapping[str, Any], *, pin: bool = False,
               offline: bool = False, cid_version: int = 1, timeout: float = 120.0) -> CID:
    """Assemble ``tree`` as one UnixFS directory in the Kubo node at ``kubo_api_url`` and return its CID.

    ``kubo_api_url`` is the node's RPC address (``kubo+http://127.0.0.1:5001`` as for
    ``--store``, or plain ``http://...``) or a :class:`~halodb.blockstore.kubo.KuboStore`.
    Values are CIDs (leaves: datasets, files or any folder), mappings (folders) or None
    (empty folders); the mapping is checked first (:class:`~halodb.errors.InputError` names
    a bad name or CID). Folders are dag-pb CIDv``cid_version`` (Kubo shards big ones).
    With ``offline`` the node must already hold every leaf's root block (a missing one
    fails at once instead of being searched for); with ``pin`` the root is pinned
    recursively, which needs every block of every dataset in the node. Kubo's refusals raise
    :class:`~halodb.errors.BlockStoreError` with its message.
    """
    leaves = flatten_tree(dict(tree), source="tree")
    folders: list[str] = []

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            path = f"{prefix}/{name}" if prefix else name
            if value is None or isinstance(value, Mapping):
                folders.append(path)
                visit(value or {}, path)

    visit(tree, "")
    kubo, own = _kubo(kubo_api_url, timeout)
    base = f"/halodb-build-{uuid.uuid4().hex}"
    flags = {"offline": "true"} if offline else {}
    mkdir = {"parents": "true", "cid-version": str(cid_version), **flags}
    try:
        kubo.call("files/mkdir", **{"arg": base, **mkdir})
        try:
            for path in folders:
                kubo.call("files/mkdir", **{"arg": f"{base}/{path}", **mkdir})
            for path, cid in leaves.items():
                kubo.call("files/cp", **{"arg": [f"/ipfs/{CID.parse(cid)}", f"{base}/{path}"], **flags})
            root = CID.parse(kubo.call("files/stat", **{"arg": base, **flags})["Hash"])
            if pin:
                kubo.pin(root)
            return root
        finally:
            kubo.call("files/rm", **{"arg": base, "recursive": "true", "force": "true"})
    finally:
        if own:
            kubo.close()


def export_tree(store: BlockStore, root: CID | str, *, max_depth: int = MAX_DEPTH,
                max_entries: int = 1_000_000) -> dict[str, Any]:
    """The ``tree.yaml`` mapping of the campaign root ``root``, read through ``store``.

    Folders are walked down to the dataset level: a dataset folder (see
    :data:`DATASET_MARKERS`) or a file is a leaf (its CID as text, ``Qm...`` for CIDv0), an
    empty folder is None, any other folder a mapping. The root itself must be a folder
    (:class:`~halodb.errors.InputError` otherwise); limits as in :func:`~halodb.unixfs.walk_tree`.

    >>> from halodb.blockstore import MemoryStore
    >>> from halodb.unixfs.build import put_directory, put_file
    >>> store = MemoryStore()
    >>> zarr = put_directory(store, {".zgroup": put_file(store, b"{}")})
    >>> out = export_tree(store, put_directory(store, {"HALO": put_directory(store, {"a.zarr": zarr})}))
    >>> out == {"HALO": {"a.zarr": str(zarr)}}
    True
    """
    ufs = UnixFSTree(store, root)
    out: dict[str, Any] = {}
    folders: dict[str, dict[str, Any]] = {"": out}
    datasets: set[str] = set()

    def prune(path: str, names: Any) -> bool:
        if path and looks_like_dataset(names):
            datasets.add(path)
            return True
        return False

    for entry in ufs.walk(max_depth=max_depth, max_entries=max_entries, prune=prune):
        if entry.path == "":
            if entry.kind != DIR:
                raise InputError(f"{ufs.root} is a {entry.kind}, not a folder: it has no tree", source=str(ufs.root))
            continue
        parent, _, name = entry.path.rpartition("/")
        if entry.kind == DIR and entry.path not in datasets:
            folders[entry.path] = folders[parent][name] = {}
        else:
            folders[parent][name] = str(entry.cid)
    return _empty_to_none(out)


def _empty_to_none(node: dict[str, Any]) -> dict[str, Any]:
    return {k: (_empty_to_none(v) or None) if isinstance(v, dict) else v for k, v in node.items()}
