"""The naming interface: a mutable name that points at an immutable commit CID.

Backends: :class:`~halodb.naming.local.LocalNames` (the embedded default); DNSLink and
IPNS implement the same interface.

>>> from halodb.naming.local import LocalNames
>>> import tempfile, pathlib
>>> names = LocalNames(pathlib.Path(tempfile.mkdtemp()))
>>> from halodb.ipld import CID
>>> cid = CID.for_bytes(b"x")
>>> names.publish("latest", cid).cid == names.resolve("latest").cid
True
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from halodb.errors import NameNotFoundError
from halodb.ipld import CID

if TYPE_CHECKING:
    from halodb.naming.dnsclient import ResolverConfig


@dataclass(frozen=True)
class Resolution:
    """What a name pointed at when resolved: the CID, how long that may be cached, and where from."""

    name: str
    cid: CID
    ttl: int | None = None
    source: str = ""


@dataclass(frozen=True)
class NameRecord:
    """One entry of a name's history."""

    cid: CID
    published: datetime


class NameStore(abc.ABC):
    """Resolves and publishes names."""

    supports_publish: bool = True

    @abc.abstractmethod
    def resolve(self, name: str) -> Resolution:
        """The current target; :class:`~halodb.errors.NameNotFoundError` when unknown."""

    @abc.abstractmethod
    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        """Point ``name`` at ``cid``; when ``expected`` is given, only if the name points there now."""

    def current(self, name: str) -> CID | None:
        """Where ``name`` points now in the store a publish of it goes to (None: never published).

        A publish compares its target with this: moving a name to a commit that does not
        descend from it discards versions (see :meth:`halodb.api.registry.Registry.publish`)."""
        try:
            return self.resolve(name).cid
        except NameNotFoundError:
            return None

    def history(self, name: str) -> list[NameRecord]:
        """Earlier targets, oldest first (empty where the backend keeps none)."""
        return []

    def names(self) -> list[str]:
        """Names this store knows (empty where it cannot list)."""
        return []

    def kind(self, name: str, *, publishing: bool = False) -> str:
        """Where ``name`` lives: ``"local"`` (a name of this home), ``"dnslink"`` or ``"ipns"``."""
        return "local"

    def canonical(self, name: str) -> str:
        """The one spelling ``name`` is recorded under (sync state, ``items_at(ts, name)``)."""
        return name

    def explain(self, name: str, *, dns: ResolverConfig | None = None) -> dict[str, Any]:
        """What resolving ``name`` found, for people: ``name``, ``cid``, ``ttl``, ``chain``, ``source``
        (``dns``: the resolver settings for DNS names, where the store asks DNS)."""
        found = self.resolve(name)
        return {"name": name, "cid": str(found.cid), "ttl": found.ttl, "chain": [name], "source": found.source}

    def close(self) -> None:
        """Release connections (a no-op where there are none)."""
