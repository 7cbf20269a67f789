"""Where zarr-python's exceptions become HaloDB errors in the scan layer.

:mod:`halodb.scan.zarr_meta` opens Zarr stores and reads coordinate arrays with zarr-python,
which raises its own exceptions (:mod:`zarr.errors`: a group or array that is not there,
metadata that does not validate, an unknown codec, a bad selection; and data type and
configuration errors elsewhere in zarr) but also lets through whatever its codecs
(numcodecs, blosc, zstd, crc32c) and numpy raise for a chunk that does not decode:
``ValueError``, ``TypeError``, ``KeyError``, ``RuntimeError`` ... For a dataset all of them
mean one thing, "this Zarr store cannot be read": :class:`DatasetError`, whose ``.detail``
names the exception. HaloDB's own errors raised while zarr reads through a
:class:`~halodb.scan.zarr_store.TreeStore` (a missing block, a tree that is too big) are not
translated: ``except HaloDBError: raise`` comes first.

>>> ZARR.error_class(zarr.errors.GroupNotFoundError).__name__, ZARR.error_class(RuntimeError).__name__
('DatasetError', 'DatasetError')
"""

from __future__ import annotations

import zarr.errors
from zarr.core.dtype.common import DataTypeValidationError

from halodb.errors import DatasetError, ErrorMap

ZARR: ErrorMap[DatasetError] = ErrorMap("zarr", "Zarr metadata and coordinate arrays read by a scan", {
    # metadata missing (GroupNotFoundError, ArrayNotFoundError) or invalid, unknown codecs
    zarr.errors.BaseZarrError: DatasetError,
    # out-of-range selections (ArrayIndexError, BoundsCheckError, NegativeStepError, ...)
    IndexError: DatasetError,
    # a data type zarr cannot read (ScalarTypeValidationError too)
    DataTypeValidationError: DatasetError,
    # the codecs and numpy, and the rest of zarr (SyncError, BadConfigError, its warnings as errors)
    Exception: DatasetError,
})
