"""HaloDB: an inside-out database of field-campaign datasets.

The whole state — STAC items, version history and lookup tables — is IPLD DAG-CBOR blocks;
a name points at the newest version; clients materialize it into a local DuckDB cache.

>>> import tempfile, halodb
>>> reg = halodb.open(tempfile.mkdtemp(), create=True)
>>> reg.head is None
True
"""

from halodb.errors import (
    BlockNotFoundError,
    BlockStoreError,
    CacheError,
    CarError,
    CIDError,
    DAGError,
    DataCiteError,
    DatasetError,
    DecodeError,
    DoiConflictError,
    EncodeError,
    GatewayError,
    HaloDBError,
    HomeLockedError,
    InputError,
    PinError,
    PinListError,
    ProofError,
    RequestError,
    SigningKeyError,
    TrustError,
    TreePathError,
    InvalidItemError,
    InvalidNameError,
    IPLDError,
    MigrationError,
    MissingParentError,
    NameConflictError,
    NameNotFoundError,
    NameUpdateError,
    NamingError,
    NotADatasetError,
    NothingToCommitError,
    PathConflictError,
    QueryError,
    ReadOnlyStoreError,
    RegistryError,
    ResolverError,
    RewindError,
    SchemaError,
    StoreURLError,
    TimeOrderError,
    TreeShapeError,
    UnixFSError,
    UnknownKeyError,
    VerificationError,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halodb.api.registry import LogEntry, Registry, Stage, default_home, open
    from halodb.data import open_dataset
    from halodb.ipld import CID

_LAZY = {"LogEntry", "Registry", "Stage", "default_home", "open"}


def __getattr__(name: str) -> Any:
    # The registry pulls in DuckDB and pyarrow; import it on first use so that the lower
    # layers (ipld, blockstore, index) stay light to import.
    if name in _LAZY:
        from halodb import api

        return getattr(api, name)
    if name == "CID":  # the codec's multiformats tables: not for `halodb --version`
        from halodb.ipld import CID

        return CID
    if name == "open_dataset":  # xarray, fsspec: only for those who read data
        from halodb.data import open_dataset

        return open_dataset
    raise AttributeError(f"module 'halodb' has no attribute {name!r}")

from halodb.util.version import VERSION as __version__  # noqa: E402

__all__ = [
    "BlockNotFoundError",
    "BlockStoreError",
    "CID",
    "CIDError",
    "CacheError",
    "CarError",
    "DAGError",
    "DataCiteError",
    "DatasetError",
    "DecodeError",
    "DoiConflictError",
    "EncodeError",
    "GatewayError",
    "HaloDBError",
    "HomeLockedError",
    "IPLDError",
    "InputError",
    "PinError",
    "PinListError",
    "ProofError",
    "RequestError",
    "SigningKeyError",
    "TrustError",
    "TreePathError",
    "InvalidItemError",
    "InvalidNameError",
    "LogEntry",
    "MigrationError",
    "MissingParentError",
    "NameConflictError",
    "NameNotFoundError",
    "NameUpdateError",
    "NamingError",
    "NotADatasetError",
    "NothingToCommitError",
    "PathConflictError",
    "QueryError",
    "ReadOnlyStoreError",
    "Registry",
    "RegistryError",
    "ResolverError",
    "RewindError",
    "SchemaError",
    "Stage",
    "StoreURLError",
    "TimeOrderError",
    "TreeShapeError",
    "UnixFSError",
    "UnknownKeyError",
    "VerificationError",
    "__version__",
    "default_home",
    "open",
    "open_dataset",
]
