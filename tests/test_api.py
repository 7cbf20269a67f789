"""The public surface: __all__ is pinned, every error derives from HaloDBError."""

from __future__ import annotations

import inspect

import halodb
import halodb.errors


def test_all_is_pinned() -> None:
    assert sorted(halodb.__all__) == sorted([
        "BlockNotFoundError", "BlockStoreError", "CID", "CIDError", "CacheError", "CarError", "DAGError", "DataCiteError", "DatasetError", "DoiConflictError", "NotADatasetError",
        "DecodeError", "EncodeError", "GatewayError", "HaloDBError", "HomeLockedError", "IPLDError", "InputError", "InvalidItemError", "PinError", "PinListError", "ProofError", "SigningKeyError", "TrustError",
        "InvalidNameError", "LogEntry", "MigrationError", "MissingParentError", "NameConflictError",
        "NameNotFoundError", "NameUpdateError", "NamingError", "NothingToCommitError", "PathConflictError", "QueryError",
        "ReadOnlyStoreError", "Registry", "RequestError", "RegistryError", "ResolverError", "RewindError", "SchemaError", "Stage", "StoreURLError",
        "TimeOrderError", "TreePathError", "TreeShapeError", "UnixFSError", "UnknownKeyError", "VerificationError", "__version__", "default_home", "open", "open_dataset",
    ])
    for name in halodb.__all__:
        assert getattr(halodb, name) is not None


def test_one_error_tree() -> None:
    errors = [obj for _, obj in inspect.getmembers(halodb.errors, inspect.isclass)
              if issubclass(obj, Exception) and obj.__module__ == "halodb.errors"]
    assert len(errors) > 20
    for err in errors:
        assert issubclass(err, halodb.HaloDBError), err
        assert err.__doc__, f"{err.__name__} needs a docstring"
    exported = {getattr(halodb, n) for n in halodb.__all__ if isinstance(getattr(halodb, n), type)}
    for err in errors:
        assert err in exported, f"{err.__name__} is not exported from halodb"


def test_error_context() -> None:
    err = halodb.BlockNotFoundError("gone", cid="bafy")
    assert err.cid == "bafy" and str(err) == "gone"
    try:
        _ = err.path
    except AttributeError as exc:
        assert "path" in str(exc)
    else:
        raise AssertionError("a missing context attribute must raise AttributeError")
