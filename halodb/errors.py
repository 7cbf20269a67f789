"""The one error tree of HaloDB.

Every exception HaloDB raises on purpose derives from :class:`HaloDBError`, with one
subtree per layer. Errors carry the context a user needs to act on them (``.cid``,
``.path``, ``.name``, ``.key``) and third-party exceptions are translated at the
boundary of the layer that called the third party.

>>> try:
...     raise BlockNotFoundError("bafy...", cid=None)
... except HaloDBError as exc:
...     print(type(exc).__name__)
BlockNotFoundError
"""

from __future__ import annotations

from typing import Any


class HaloDBError(Exception):
    """Root of every error HaloDB raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for k, v in context.items():
            setattr(self, k, v)

    def __str__(self) -> str:
        return self.message

    def __getattr__(self, name: str) -> Any:
        # Context attributes (.cid, .path, ...) are set per instance; this tells type
        # checkers they exist while a missing one still raises AttributeError.
        raise AttributeError(f"{type(self).__name__} has no context {name!r}")


# --- ipld -----------------------------------------------------------------------------
class IPLDError(HaloDBError):
    """A CID or a DAG-CBOR block could not be parsed, encoded or verified."""


class CIDError(IPLDError):
    """Text or bytes that should be a CID are not one (``.value``)."""


class EncodeError(IPLDError):
    """A value cannot be encoded as DAG-CBOR (``.path`` is where inside the value)."""


class DecodeError(IPLDError):
    """Bytes are not valid DAG-CBOR (``.cid`` names the block when known)."""


class VerificationError(IPLDError):
    """A block's bytes do not hash to its CID (``.cid``, ``.source``)."""


class UnixFSError(IPLDError):
    """A dag-pb/UnixFS block is malformed, or a UnixFS tree is too deep or too big (``.cid``, ``.path``)."""


# --- blockstore -------------------------------------------------------------------------
class BlockStoreError(HaloDBError):
    """A block store failed."""


class BlockNotFoundError(BlockStoreError):
    """A block is not in the store (``.cid``)."""


class ReadOnlyStoreError(BlockStoreError):
    """A write was attempted on a store that does not support writes (``.store``)."""


class CarError(BlockStoreError):
    """A CAR file is malformed or truncated (``.path``, ``.offset``)."""


class StoreURLError(BlockStoreError):
    """A ``--store`` URL names no known backend (``.url``)."""


# --- index ------------------------------------------------------------------------------
class DAGError(HaloDBError):
    """The index DAG is malformed or an operation on it is invalid."""


class SchemaError(DAGError):
    """A block does not have the shape the IPLD schema requires (``.cid``, ``.path``)."""


class MissingParentError(DAGError):
    """A commit names a parent that cannot be found (``.cid``, ``.parent``)."""


class TimeOrderError(DAGError):
    """A commit's time is earlier than its parent's (``.time``, ``.parent_time``)."""


class UnknownKeyError(DAGError):
    """A dataset key or path is not in the index (``.key``)."""


class InvalidItemError(DAGError):
    """A STAC item is invalid (``.source`` names the file/line, ``.detail`` what is wrong)."""


class PathConflictError(DAGError):
    """Two datasets claim one path in the campaign tree (``.key``, ``.path``)."""


class NothingToCommitError(DAGError):
    """A commit was requested with nothing staged."""


# --- naming -----------------------------------------------------------------------------
class NamingError(HaloDBError):
    """A name could not be resolved or published."""


class NameNotFoundError(NamingError):
    """A name is not known (``.name``)."""


class InvalidNameError(NamingError):
    """Text is not a valid name, CID or version reference (``.name``)."""


class NameConflictError(NamingError):
    """A compare-and-swap publish lost: the name moved (``.name``, ``.expected``, ``.current``)."""


class ResolverError(NamingError):
    """A DNS lookup failed: SERVFAIL, REFUSED, timeout, network (``.name``, ``.nameserver``, ``.rcode``)."""


class NameUpdateError(NamingError):
    """A DNS server refused or failed a dynamic update, e.g. a bad TSIG key (``.name``, ``.server``, ``.rcode``)."""


# --- cache ------------------------------------------------------------------------------
class CacheError(HaloDBError):
    """The DuckDB cache failed."""


class MigrationError(CacheError):
    """A schema migration could not be applied (``.version``)."""


class QueryError(CacheError):
    """A SQL query failed (``.sql``)."""


# --- registry / configuration -------------------------------------------------------------
class RegistryError(HaloDBError):
    """The registry home is missing or inconsistent (``.home``)."""


class InputError(HaloDBError):
    """User input (a file, a date, an option) is invalid (``.source``)."""


# --- datasets / trees -----------------------------------------------------------------
class TreePathError(InputError):
    """A path that does not exist in a file tree, or is a folder where a file was expected (``.path``)."""


class DatasetError(InputError):
    """A dataset's metadata cannot be read or describes it wrongly (``.path``; ``.file``, ``.attribute``, ``.report`` when known)."""


class NotADatasetError(DatasetError):
    """A folder is neither a Zarr store nor described by a ``dataset_meta.yaml`` (``.path``)."""
