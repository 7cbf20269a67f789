"""The one error tree of HaloDB.

Every exception HaloDB raises on purpose derives from :class:`HaloDBError`, with one
subtree per layer. Errors carry the context a user needs to act on them (``.cid``,
``.path``, ``.name``, ``.key``) and third-party exceptions are translated at the
boundary of the layer that called the third party, each boundary through one
:class:`ErrorMap`.

Context is typed: every class declares the context it carries as annotated class
attributes (``None`` when not given), so ``exc.cid`` type-checks and ``exc.cdi`` does not,
and constructing an error with a context key its class does not declare is a
:class:`TypeError`:

>>> try:
...     raise BlockNotFoundError("bafy...", cid=None)
... except HaloDBError as exc:
...     print(type(exc).__name__, exc.cid, exc.context)
BlockNotFoundError None {'cid': None}
>>> BlockNotFoundError("bafy...", cdi=None)
Traceback (most recent call last):
...
TypeError: BlockNotFoundError takes no context 'cdi' (it declares: cid, path, store)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # types of the context only: nothing is imported at run time
    from datetime import datetime
    from os import PathLike


class CIDLike(Protocol):
    """The type of a ``.cid`` (``.parent``, ``.expected``) context: a :class:`halodb.ipld.CID`.

    errors sits below every layer and imports none of them, not even for type checking
    (import-linter counts those imports too), so it names what a CID offers instead.
    """

    @property
    def version(self) -> int: ...

    @property
    def codec(self) -> int: ...

    @property
    def multihash(self) -> bytes: ...

    @property
    def buffer(self) -> bytes: ...

    def verify(self, data: bytes) -> bool: ...

    def __eq__(self, other: object) -> bool: ...

    def __hash__(self) -> int: ...


# Attributes of every error that are not context.
_NOT_CONTEXT = frozenset({"message", "context"})


def _declared_context(cls: type) -> frozenset[str]:
    """The context keys ``cls`` and its HaloDBError bases declare (their annotated attributes)."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        if isinstance(klass, type) and issubclass(klass, HaloDBError):
            # Since Python 3.10 a class's __annotations__ are its own, never a base's.
            keys.update(k for k in klass.__annotations__ if not k.startswith("_"))
    return frozenset(keys - _NOT_CONTEXT)


def _restore(cls: type[HaloDBError], message: str, context: dict[str, Any]) -> HaloDBError:
    """Unpickle an error: its class, message and context (no check: it was checked when raised)."""
    exc = cls.__new__(cls, message)
    exc._fill(message, context)
    return exc


class HaloDBError(Exception):
    """Root of every error HaloDB raises on purpose.

    ``.message`` is the text and ``.context`` the dict of context the error was raised with;
    each context key is also an attribute. A subclass declares the context it carries as
    annotated class attributes; those with a default (``None``) can always be read.

    ``.path`` (a file, a folder, a path in a tree or inside a value) is the one context any
    error may carry: reading a UnixFS tree adds it to whatever error the read met
    (:func:`halodb.unixfs.tree.annotate`). It is therefore declared here, without a default:
    it exists only when known (``getattr(exc, "path", None)`` when unsure). Subclasses whose
    path is always text narrow its type.
    """

    message: str
    context: dict[str, Any]
    path: str | PathLike[str] | None

    _context_keys: ClassVar[frozenset[str]] = frozenset({"path"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._context_keys = _declared_context(cls)

    def __init__(self, message: str, **context: Any) -> None:
        undeclared = context.keys() - self._context_keys
        if undeclared:
            raise TypeError(
                f"{type(self).__name__} takes no context {', '.join(map(repr, sorted(undeclared)))} "
                f"(it declares: {', '.join(sorted(self._context_keys))})"
            )
        super().__init__(message)
        self._fill(message, context)

    def _fill(self, message: str, context: dict[str, Any]) -> None:
        self.message = message
        self.context = context
        for k, v in context.items():
            setattr(self, k, v)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from class, message and context without the constructor's check, so that
        # an error whose context grew after it was raised (unixfs.tree.annotate) still
        # unpickles, and a copy gets a context dict of its own; the rest (notes) is state.
        state = {k: v for k, v in self.__dict__.items() if k not in _NOT_CONTEXT and k not in self.context}
        return (_restore, (type(self), self.message, dict(self.context)), state or None)


# --- ipld -----------------------------------------------------------------------------
class IPLDError(HaloDBError):
    """A CID or a DAG-CBOR block could not be parsed, encoded or verified."""


class CIDError(IPLDError):
    """Text or bytes that should be a CID are not one (``.value``)."""

    value: str | bytes | int | None = None


class EncodeError(IPLDError):
    """A value cannot be encoded as DAG-CBOR (``.path`` is where inside the value)."""

    path: str


class DecodeError(IPLDError):
    """Bytes are not valid DAG-CBOR (``.cid`` names the block when known)."""

    cid: CIDLike | None = None


class VerificationError(IPLDError):
    """A block's bytes do not hash to its CID (``.cid``, ``.source``), or a signed record
    does not verify (``.name``)."""

    cid: CIDLike | None = None
    source: str | None = None
    name: str | None = None


class UnixFSError(IPLDError):
    """A dag-pb/UnixFS block is malformed, or a UnixFS tree is too deep or too big (``.cid``, ``.path``)."""

    cid: CIDLike | None = None
    path: str  #: the path in the tree, when known


# --- blockstore -------------------------------------------------------------------------
class BlockStoreError(HaloDBError):
    """A block store failed (``.store`` names it; ``.cid``, ``.path`` when known)."""

    store: str | None = None
    cid: CIDLike | None = None


class BlockNotFoundError(BlockStoreError):
    """A block is not in the store (``.cid``)."""


class ReadOnlyStoreError(BlockStoreError):
    """A write was attempted on a store that does not support writes (``.store``; ``.name``
    for a name that cannot be published there)."""

    name: str | None = None


class CarError(BlockStoreError):
    """A CAR file is malformed or truncated (``.path``, ``.offset``; ``.cid`` when known)."""

    offset: int | None = None


class StoreURLError(BlockStoreError):
    """A ``--store`` URL names no known backend (``.url``)."""

    url: str | None = None


class GatewayError(BlockStoreError):
    """One gateway's answer was refused: past its deadline (``.deadline``, seconds), larger
    than its cap (``.limit``, bytes), or not what was asked (``.url`` is the request)."""

    url: str | None = None
    limit: int | None = None
    deadline: float | None = None


# --- index ------------------------------------------------------------------------------
class DAGError(HaloDBError):
    """The index DAG is malformed or an operation on it is invalid."""


class SchemaError(DAGError):
    """A block does not have the shape the IPLD schema requires (``.cid``, ``.path``)."""

    cid: CIDLike | None = None


class TreeShapeError(SchemaError):
    """A prolly-tree node breaks a rule of the tree's shape (``.cid`` the node, ``.parent`` the
    node that links it when known, ``.rule`` the rule: ``map``, ``shape``, ``level``, ``order``,
    ``separator``, ``range``, ``count``), or a tree holds more or fewer entries than its index
    root declares (``.cid`` the tree's root, ``.rule`` ``count``)."""

    parent: CIDLike | None = None
    rule: str | None = None


class MissingParentError(DAGError):
    """A commit names a parent that cannot be found (``.cid``, ``.parent``)."""

    cid: CIDLike | None = None
    parent: CIDLike | None = None


class TimeOrderError(DAGError):
    """A commit's time is earlier than its parent's (``.time``, ``.parent_time``)."""

    time: datetime | None = None
    parent_time: datetime | None = None


class UnknownKeyError(DAGError):
    """A dataset key or path is not in the index (``.key``)."""

    key: str | None = None


class InvalidItemError(DAGError):
    """A STAC item is invalid (``.source`` names the file/line, ``.detail`` what is wrong,
    ``.field`` where in the item; ``.problems`` lists every problem when there are several)."""

    source: str | None = None
    detail: str | None = None
    field: str | None = None
    problems: list[str] | None = None


class PathConflictError(DAGError):
    """Two datasets claim one path in the campaign tree (``.key``, ``.path``)."""

    key: str | None = None
    path: str


class DoiConflictError(DAGError):
    """Two datasets claim one DOI (``sci:doi``) in one version (``.key``, ``.doi``; ``.other``
    the dataset that has it)."""

    key: str | None = None
    doi: str | None = None
    other: str | None = None


class NothingToCommitError(DAGError):
    """A commit was requested with nothing staged."""


# --- naming -----------------------------------------------------------------------------
class NamingError(HaloDBError):
    """A name could not be resolved or published (``.name``)."""

    name: str | None = None


class NameNotFoundError(NamingError):
    """A name is not known (``.name``)."""


class InvalidNameError(NamingError):
    """Text is not a valid name, CID or version reference (``.name``)."""


class NameConflictError(NamingError):
    """A compare-and-swap publish lost: the name moved (``.name``, ``.expected``, ``.current``)."""

    expected: CIDLike | None = None
    current: CIDLike | str | None = None  #: a CID, or the DNSLink value (``/ipfs/...``) a record holds


class ResolverError(NamingError):
    """A DNS lookup failed: SERVFAIL, REFUSED, timeout, network (``.name``, ``.nameserver``, ``.rcode``;
    ``.chain`` for a DNSLink chain that loops or is too deep); or an IPNS resolver failed (``.resolver``)."""

    nameserver: str | None = None
    rcode: str | None = None
    chain: list[str] | None = None
    resolver: str | None = None


class NameUpdateError(NamingError):
    """A DNS server refused or failed a dynamic update, e.g. a bad TSIG key (``.name``, ``.server``, ``.rcode``)."""

    server: str | None = None
    rcode: str | None = None


class RewindError(NamingError):
    """A name would move back: its new ``.head`` does not descend from the head it had (``.name``).

    For a sync, ``.synced`` is the head the cache last synced for the name; for a publish,
    ``.current`` is the name's current target; for an IPNS record fetched from gateways,
    ``.sequence`` is the record's Sequence and ``.last_sequence`` the highest one accepted
    before for that name (``.current`` then the value of that record). ``.behind`` is how many
    versions the new head is behind the old one when it is an ancestor of it (None: it is not
    on that history, it diverged), ``.discarded`` how many versions of the old main line the
    new one lacks (None when that history could not be read)."""

    head: CIDLike | None = None
    synced: CIDLike | None = None
    current: CIDLike | None = None
    behind: int | None = None
    discarded: int | None = None
    sequence: int | None = None
    last_sequence: int | None = None


class TrustError(NamingError):
    """A name's head is not signed as its trust policy asks: ``.head`` the commit, ``.signers``
    the keys whose valid signatures it carries, ``.allowed`` the keys the policy allows at that
    version, ``.threshold`` how many of them must sign."""

    head: CIDLike | None = None
    signers: list[str] | None = None
    allowed: list[str] | None = None
    threshold: int | None = None


# --- cache ------------------------------------------------------------------------------
class CacheError(HaloDBError):
    """The DuckDB cache failed (``.path`` of the cache file; ``.name``, ``.head``, ``.cid``, ``.key`` of
    the sync, commit and change at fault, ``.names`` of the syncs that disagree; ``.locked`` and
    ``.timeout`` when another process holds the file)."""

    name: str | None = None
    head: str | None = None
    cid: str | CIDLike | None = None
    key: str | None = None
    names: list[str] | None = None
    locked: bool | None = None
    timeout: float | None = None


class MigrationError(CacheError):
    """A schema migration could not be applied (``.version``; ``.name``, ``.path`` of the migration)."""

    version: int | None = None


class QueryError(CacheError):
    """A SQL query failed (``.sql``, ``.params``)."""

    sql: str | None = None
    params: Any = None


# --- registry / configuration -------------------------------------------------------------
class RegistryError(HaloDBError):
    """The registry home is missing or inconsistent (``.home``)."""

    home: str | PathLike[str] | None = None


class HomeLockedError(RegistryError):
    """Another process (or thread) held the registry home's lock for longer than the timeout
    (``.home``; ``.pid``, ``.host``, ``.what`` and ``.since`` of the holder when it could be
    read; ``.timeout`` in seconds, from ``HALODB_LOCK_TIMEOUT``)."""

    pid: int | None = None
    host: str | None = None
    what: str | None = None
    since: str | None = None
    timeout: float | None = None


class InputError(HaloDBError):
    """User input (a file, a date, an option) is invalid (``.source``)."""

    source: str | None = None


class RequestError(InputError):
    """A request to ``halodb serve`` is invalid: ``.parameter`` names the query parameter, body
    field or path part that was wrong; ``.status`` is the HTTP status it gets: 404 for an
    unknown collection, item or version, 400 when not given."""

    parameter: str | None = None
    status: int | None = None


class SigningKeyError(InputError):
    """A signing key cannot be created or read: unknown name, bad file, or a file others may
    read (``.source`` the key's name or file)."""


class ProofError(InputError):
    """A proof file does not prove what it claims: a changed byte, a missing block, a wrong
    path, an untrusted signer (``.source`` the file)."""


# --- datasets / trees -----------------------------------------------------------------
class TreePathError(InputError):
    """A path that does not exist in a file tree, or is a folder where a file was expected (``.path``)."""

    path: str


class DatasetError(InputError):
    """A dataset's metadata cannot be read or describes it wrongly (``.path``; ``.file``, ``.attribute``,
    ``.detail``, ``.report`` when known)."""

    path: str
    file: str | None = None
    attribute: str | None = None
    detail: str | None = None
    # The scan's report of every problem (halodb.scan.report); typed loosely because errors
    # sits below every layer and imports none of them.
    report: Any = None


class DataCiteError(InputError):
    """DataCite metadata cannot be made from a dataset's STAC item: ``.key`` the dataset,
    ``.missing`` the mandatory DataCite properties the item does not give (``creators``,
    ``titles``...), ``.detail`` what else is wrong."""

    key: str | None = None
    missing: list[str] | None = None
    detail: str | None = None


class NotADatasetError(DatasetError):
    """A folder is neither a Zarr store nor described by a ``dataset_meta.yaml`` (``.path``, ``.detail``)."""


# --- pins -------------------------------------------------------------------------------
class PinListError(InputError):
    """A pin list (``pinlist.yaml``, Pin objects) is malformed: ``.source`` names the file,
    ``.entry`` the 1-based entry that was wrong (when one was), ``.cid`` its CID when known."""

    entry: int | None = None
    cid: str | None = None


class PinError(HaloDBError):
    """A pinning node or service refused, failed or did not answer in time: ``.node`` is
    its URL; ``.cid`` the CID asked for, ``.status`` the HTTP status, when known."""

    node: str | None = None
    cid: str | None = None
    status: int | None = None


# --- translating third-party exceptions -------------------------------------------------
E = TypeVar("E", bound=HaloDBError)

#: Every :class:`ErrorMap` made so far (each boundary module makes its maps on import).
ERROR_MAPS: list[ErrorMap[Any]] = []


class ErrorMap(Generic[E]):
    """Which HaloDB error each exception of one third-party ``library`` becomes at one ``boundary``.

    ``table`` maps exception classes to HaloDB error classes; an exception is translated by
    its nearest base in the table. ``caught`` is the tuple for the ``except`` clause and
    :meth:`translate` builds the error (the context must suit every class in the table):

    >>> m = ErrorMap("example", "an example", {LookupError: InputError, KeyError: TreePathError})
    >>> m.caught
    (<class 'LookupError'>, <class 'KeyError'>)
    >>> m.error_class(IndexError).__name__, m.error_class(KeyError("k")).__name__
    ('InputError', 'TreePathError')
    >>> exc = m.translate(KeyError("k"), "no k", path="k"); type(exc).__name__, exc.path
    ('TreePathError', 'k')
    >>> ERROR_MAPS.remove(m)
    """

    def __init__(self, library: str, boundary: str, table: Mapping[type[BaseException], type[E]]) -> None:
        self.library = library  #: the distribution whose exceptions are translated (httpx, duckdb, ...)
        self.boundary = boundary  #: which HaloDB code calls the library, in words
        self.table: dict[type[BaseException], type[E]] = dict(table)
        self.caught: tuple[type[BaseException], ...] = tuple(self.table)
        ERROR_MAPS.append(self)

    def error_class(self, exc: BaseException | type[BaseException]) -> type[E]:
        """The HaloDB error class for ``exc`` (an exception or an exception class)."""
        kind = exc if isinstance(exc, type) else type(exc)
        for base in kind.__mro__:
            found = self.table.get(base)
            if found is not None:
                return found
        raise LookupError(f"{kind.__module__}.{kind.__qualname__} is not in the {self.library} map of {self.boundary}")

    def translate(self, exc: BaseException, message: str, **context: Any) -> E:
        """The HaloDB error for ``exc``, with ``message`` and ``context``."""
        return self.error_class(exc)(message, **context)

    def __repr__(self) -> str:
        return f"ErrorMap({self.library!r}, {self.boundary!r}, {len(self.table)} entries)"
