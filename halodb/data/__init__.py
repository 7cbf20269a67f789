"""Reading the data: the datasets the index points at, as files (fsspec ``halodb://``) and
as xarray datasets (:func:`open_dataset`), at any version.

Layer: above :mod:`halodb.api` (names, versions, the index and the block stores) and
:mod:`halodb.scan` (the zarr store over a UnixFS tree); the CLI imports it.

>>> # import xarray as xr
>>> # xr.open_dataset("halodb://latest@2024-09-15/products/HALO/x.zarr", engine="zarr")
"""

from __future__ import annotations

from halodb.data.locate import Located, Target, locate, parse_url
from halodb.data.xr import locate_dataset, open_dataset, reference

__all__ = ["Located", "Target", "locate", "locate_dataset", "open_dataset", "parse_url", "reference"]
