"""``halodb.open_dataset``: a dataset as an xarray ``Dataset``, as the index held it at a date.

>>> # ds = halodb.open_dataset("products/HALO/dropsondes/Level_3/PERCUSION_Level_3.zarr",
>>> #                          at="2024-09-15", name="latest.orcestra-campaign.org")
>>> # ds.attrs["halodb:commit"], ds.attrs["halodb:data_cid"], ds.attrs["halodb:version_time"]
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from halodb.api import Registry
from halodb.data.locate import Located, by_cid, is_cid_url, locate, not_in_this_home, parse_url
from halodb.errors import BlockNotFoundError, InputError
from halodb.scan.zarr_meta import is_zarr_error, zarr_failure
from halodb.scan.zarr_store import TreeStore
from halodb.unixfs import UnixFSTree
from halodb.util.times import TimeLike, format_time, to_time

if TYPE_CHECKING:
    import xarray

__all__ = ["locate_dataset", "open_dataset", "reference"]

#: the largest file (chunk) read whole: datasets hold chunks far larger than metadata
MAX_CHUNK_BYTES = 1 << 30


def reference(name: str | None, at: TimeLike | None = None, version: str | None = None) -> str:
    """The version reference of ``name`` (default: this home's HEAD) at a time or commit.

    >>> reference("latest", "2024-09-15")
    'latest@2024-09-15T00:00:00Z'
    >>> reference(None), reference("latest", "v1.0")
    ('HEAD', 'latest@v1.0')

    ``at`` may also be a tag or a commit CID of the name's history (a word, not a time).
    """
    if version is not None and at is not None:
        raise InputError("give a time (at) or a version, not both", source="at")
    if version is not None:
        return version
    base = name or "HEAD"
    if isinstance(at, str) and at[:1].isalpha():  # a tag (v1.0) or a commit CID: the registry resolves it
        return f"{base}@{at}"
    return base if at is None else f"{base}@{format_time(to_time(at, what='at'))}"


def locate_dataset(reg: Registry, key_or_path: str, *, at: TimeLike | None = None, name: str | None = None,
                   version: str | None = None) -> Located:
    """The dataset a key, path or ``halodb://`` URL names, at the version asked."""
    if key_or_path.startswith("halodb://"):
        if at is not None or name is not None or version is not None:
            raise InputError(f"{key_or_path!r}: a halodb:// URL names its version itself; drop at/name/version",
                             source=key_or_path)
        target = parse_url(key_or_path)
        located = locate(reg, target.path, target.ref, inner=True)
        if located.inner:
            raise InputError(f"{key_or_path!r} names a file inside the dataset {located.key!r}, not a dataset",
                             source=key_or_path)
        return located
    return locate(reg, key_or_path, reference(name, at, version))


def open_dataset(key_or_path: str, *, at: TimeLike | None = None, name: str | None = None, version: str | None = None,
                 home: str | None = None, store: str | None = None, registry: Registry | None = None,
                 prefetch: bool = False, keep_blocks: bool = True, **kwargs: Any) -> xarray.Dataset:
    """The dataset ``key_or_path`` (a key, a path in the campaign tree, a ``halodb://`` URL,
    or ``ipfs://CID[/PATH]`` for bytes by their CID, outside any version) of ``name`` (default: this home's HEAD) as it was at ``at`` (the version current
    then) or at the commit ``version``, opened lazily with xarray (``kwargs`` go to
    ``xarray.open_zarr``). Its attributes gain ``halodb:key``, ``halodb:commit``,
    ``halodb:data_cid`` and ``halodb:version_time``: where the values came from.

    Blocks are fetched as the values are read, chunk by chunk, and kept in the home's block
    cache (read again offline). With ``prefetch``, the whole dataset comes first as one CAR
    from the store (a gateway or Kubo; verified, into the block cache): faster when most of
    it will be read. With ``keep_blocks=False`` the dataset's blocks fetched are verified but
    not kept (a dataset read once, too large to keep; blocks already cached are still read
    from there; the few index blocks that locate a dataset by key or path are kept as by any
    command).
    """
    import halodb

    try:
        import xarray
    except ImportError:
        raise InputError("open_dataset needs xarray: pip install 'halodb[data]'", source="xarray") from None
    if not isinstance(keep_blocks, bool):
        raise InputError(f"keep_blocks={keep_blocks!r}: expected True or False", source="keep_blocks")
    if prefetch and not keep_blocks:
        raise InputError("prefetch brings the whole dataset into the block cache: not with keep_blocks=False",
                         source="prefetch")
    reg = registry or halodb.open(home, store=store)
    try:
        return _open(reg, key_or_path, at=at, name=name, version=version, prefetch=prefetch, keep_blocks=keep_blocks,
                     kwargs=kwargs)
    except BaseException:
        if registry is None:  # (a registry opened here for a dataset that cannot be opened: closed again)
            with contextlib.suppress(Exception):  # (the failure to open is the answer, not one in closing)
                reg.close()
        raise


def _open(reg: Registry, key_or_path: str, *, at: TimeLike | None, name: str | None, version: str | None,
          prefetch: bool, keep_blocks: bool, kwargs: dict[str, Any]) -> xarray.Dataset:
    import xarray

    if is_cid_url(key_or_path):  # a dataset by its CID: no index, no version
        data_cid, data_path = by_cid(key_or_path, versioned=(at, name, version) != (None, None, None))
        attrs = {"halodb:data_cid": data_cid}
    else:
        located = locate_dataset(reg, key_or_path, at=at, name=name, version=version)
        data_cid, data_path, attrs = located.data_cid, located.data_path, located.attrs
    tree = UnixFSTree(reg.store if keep_blocks else reg.store.without_keeping(), data_cid)
    try:
        if prefetch:
            dataset_cid = tree.resolve(data_path)
            if dataset_cid is not None:
                reg.store.prefetch(dataset_cid, spread=1)
        kwargs.setdefault("consolidated", _consolidated(tree, data_path))
        zarr_store = TreeStore(tree, data_path, max_file_bytes=MAX_CHUNK_BYTES)
        ds: xarray.Dataset = xarray.open_zarr(zarr_store, **kwargs)
    except BlockNotFoundError as exc:
        raise not_in_this_home(exc, reg, 'store="https://GATEWAY/" or store="kubo+http://HOST:5001"') from None
    except Exception as exc:
        if not is_zarr_error(exc):
            raise
        raise zarr_failure(exc, data_path, key_or_path) from None  # no Zarr store there (an ipfs:// path)
    ds.attrs.update(attrs)
    return ds


def _consolidated(tree: UnixFSTree, path: str) -> bool:
    """Whether the store has consolidated metadata (Zarr v2 ``.zmetadata``, or a v3 root
    ``zarr.json`` holding ``consolidated_metadata``): xarray is told, instead of probing and
    warning."""
    join = (lambda name: f"{path}/{name}") if path else (lambda name: name)
    if tree.stat(join(".zmetadata")) is not None:
        return True
    root = tree.stat(join("zarr.json"))
    if root is None or root.is_dir or (root.size or 0) > 64 << 20:
        return False
    try:
        document = json.loads(tree.read(join("zarr.json")))
    except ValueError:
        return False  # zarr says what is wrong with it
    return isinstance(document, dict) and bool(document.get("consolidated_metadata"))
