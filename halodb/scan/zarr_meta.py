"""Zarr v2/v3 metadata and coordinate arrays, read through a Tree with zarr-python.

Why zarr-python and not hand-written decoding: reading a chunk correctly means data
types (little/big endian, fixed and variable-length strings, datetime64), fill values,
chunk key encodings (``.`` or ``/``), filters and codecs (blosc, zstd, zlib, gzip,
sharding, crc32c), v2 and v3 layouts and consolidated metadata. zarr-python implements
all of that and is what producers write with; :class:`~halodb.scan.zarr_store.TreeStore`
hands it bytes from any Tree, so only the metadata documents and the chunks of the
arrays HaloDB asks for (time, latitude, longitude, dimension coordinates) are fetched.

>>> import tempfile, pathlib, numpy as np, zarr
>>> from halodb.filetree import LocalTree
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> g = zarr.open_group(root, mode="w", zarr_format=3, attributes={"title": "t"})
>>> g.create_array("time", data=np.arange(3), dimension_names=["time"], attributes={"units": "s since 2024-08-09"}) is not None
True
>>> zarr.consolidate_metadata(root) is not None
True
>>> ds = open_zarr(LocalTree(root), "")
>>> ds.zarr_format, ds.consolidated, ds.attrs, ds.variables["time"].dims
(3, True, {'title': 't'}, ('time',))
>>> ds.read(ds.variables["time"], budget=Budget(1000)).tolist()
[0, 1, 2]
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.errors import GroupNotFoundError

from halodb.errors import DatasetError, HaloDBError
from halodb.filetree import Tree
from halodb.scan._boundary import ZARR
from halodb.scan.zarr_store import TreeStore

# Files beside the Zarr metadata (a dataset_meta.yaml, a README) are normal in a campaign tree,
# and consolidated v3 metadata is what producers write: neither deserves a warning per dataset.
warnings.filterwarnings("ignore", message=r"Object at .* is not recognized as a component", module=r"zarr\.")
warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part", module=r"zarr\.")

__all__ = ["Budget", "Variable", "ZarrDataset", "is_zarr", "open_zarr"]

_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata")


@dataclass
class Budget:
    """How many bytes of coordinate arrays may still be loaded (decoded size)."""

    remaining: int
    spent: int = 0

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes``; False (and nothing reserved) when that is over the budget."""
        if nbytes > self.remaining:
            return False
        self.remaining -= nbytes
        self.spent += nbytes
        return True


@dataclass
class Variable:
    """One array of the dataset: its name, shape, data type, dimension names and attributes."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    dims: tuple[str, ...]
    attrs: dict[str, Any]
    #: the zarr array's own fill value: a missing-value marker for Zarr v2 (as xarray reads it)
    fill_value: Any = None
    array: Any = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes (variable-length strings counted at 64 bytes each)."""
        item = self.dtype.itemsize if self.dtype.kind not in "OT" else 64
        return self.size * max(item, 1)


@dataclass
class ZarrDataset:
    """The root group of a Zarr store: format, whether metadata is consolidated, attributes, arrays."""

    path: str
    zarr_format: int
    consolidated: bool
    attrs: dict[str, Any]
    variables: dict[str, Variable]
    groups: list[str]

    def read(self, var: Variable, *, budget: Budget) -> np.ndarray[Any, Any]:
        """All values of ``var`` as a numpy array; :class:`DatasetError` if over budget or unreadable."""
        if not budget.take(var.nbytes):
            detail = (f"{var.nbytes} bytes of coordinates (shape {list(var.shape)}, {var.dtype}) exceed the "
                      f"{budget.remaining} bytes left to read (max_coordinate_bytes)")
            raise DatasetError(f"{self.path or '/'}: {var.name}: {detail}", path=self.path, file=var.name,
                               attribute=var.name, detail=detail)
        try:
            return np.asarray(var.array[...])
        except HaloDBError:
            raise
        except ZARR.caught as exc:  # zarr and the codecs raise many kinds; all mean "unreadable"
            detail = f"cannot read the array: {type(exc).__name__}: {exc}"
            raise ZARR.translate(exc, f"{self.path or '/'}: {var.name}: {detail}", path=self.path, file=var.name,
                                 attribute=var.name, detail=detail) from None


def is_zarr(tree: Tree, path: str) -> bool:
    """Whether the folder at ``path`` has Zarr group metadata."""
    prefix = path.strip("/")
    return any(tree.exists(f"{prefix}/{m}" if prefix else m) for m in _ZARR_MARKERS)


def _decode_attr_fill(value: Any, dtype: np.dtype[Any]) -> Any:
    """xarray writes a float ``_FillValue`` in Zarr v3 attributes as base64 of its bytes."""
    if isinstance(value, str) and dtype.kind == "f":
        try:
            raw = base64.standard_b64decode(value)
            if len(raw) == dtype.itemsize:
                return np.frombuffer(raw, dtype=dtype)[0].item()
        except ValueError:
            pass
        if value in ("NaN", "nan"):
            return float("nan")
    return value


def _variable(name: str, array: Any, fmt: int) -> Variable:
    attrs = dict(array.attrs.asdict())
    dtype = np.dtype(array.dtype)
    if fmt == 2:
        dims = attrs.pop("_ARRAY_DIMENSIONS", None)
        fill = array.metadata.fill_value
    else:
        dims = array.metadata.dimension_names
        fill = None
    if not isinstance(dims, (list, tuple)) or len(dims) != len(array.shape) or not all(isinstance(d, str) for d in dims):
        dims = tuple(f"dim_{i}" for i in range(len(array.shape)))
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            attrs[key] = _decode_attr_fill(attrs[key], dtype)
    return Variable(name, tuple(int(s) for s in array.shape), dtype, tuple(dims), attrs, fill, array)


def is_zarr_error(exc: BaseException) -> bool:
    """Whether zarr itself raised ``exc`` (a group or array not there, metadata that does not
    validate), as opposed to what its callers let through."""
    return isinstance(exc, zarr.errors.BaseZarrError)


def zarr_failure(exc: BaseException, path: str, shown: str | None = None) -> DatasetError:
    """What zarr raised opening the store at ``path`` (``shown``: how the user named it), as
    the :class:`DatasetError` HaloDB raises: no group there, or metadata that cannot be read."""
    where = shown or path.strip("/") or "/"
    if isinstance(exc, GroupNotFoundError):
        detail = "no Zarr group metadata (zarr.json, .zgroup)"
    else:
        detail = f"Zarr metadata cannot be read: {type(exc).__name__}: {exc}"
    return ZARR.translate(exc, f"{where}: {detail}", path=path, file=None, attribute=None, detail=detail)


def open_zarr(tree: Tree, path: str, *, max_file_bytes: int | None = None) -> ZarrDataset:
    """Open the Zarr store at ``path``: root attributes and every array of the root group."""
    store = TreeStore(tree, path) if max_file_bytes is None else TreeStore(tree, path, max_file_bytes=max_file_bytes)
    where = path.strip("/") or "/"
    try:
        group = zarr.open_group(store, mode="r")
        fmt = int(group.metadata.zarr_format)
        consolidated = group.metadata.consolidated_metadata is not None
        attrs = dict(group.attrs.asdict())
        members: Mapping[str, Any] = dict(group.members())
    except HaloDBError:
        raise
    except ZARR.caught as exc:  # zarr's metadata parsing raises ValueError, TypeError, KeyError, ...
        raise zarr_failure(exc, path) from None
    variables: dict[str, Variable] = {}
    groups: list[str] = []
    for name, member in sorted(members.items()):
        if isinstance(member, zarr.Group):
            groups.append(name)
        else:
            variables[name] = _variable(name, member, fmt)
    return ZarrDataset(path.strip("/"), fmt, consolidated, attrs, variables, groups)
