"""IPNS names through a Kubo node's RPC API: ``ipns://<key name or IPNS name>``.

Publishing signs a record with one of the node's named keys (``halodb publish
ipns://orcestra`` uses the key ``orcestra``, generating an ed25519 key the first time);
resolving asks the node, which looks the record up over its routing (DHT, delegated routers)
and in its own datastore. Compare-and-swap is checked against the node's current answer just
before publishing: it stops a publisher working from a stale head, but unlike DNSLink's
RFC 2136 prerequisites it is not atomic between two publishers on different nodes.

>>> IPNSNames.is_key_name("orcestra"), IPNSNames.is_key_name("k51qzi5uqu5dh33489h32jlz1ss3r2es28v6gwcs9qlfd1u1z0cq2d0lgpuhp9")
(True, False)
"""

from __future__ import annotations

import re
from typing import Any

from halodb.blockstore.kubo import KuboStore
from halodb.errors import BlockStoreError, CIDError, NameConflictError, NameNotFoundError, ResolverError
from halodb.ipld import CID
from halodb.naming.base import NameStore, Resolution

_IPNS_NAME = re.compile(r"^(k51[0-9a-z]{50,}|12D3Koo[1-9A-HJ-NP-Za-km-z]{40,}|Qm[1-9A-HJ-NP-Za-km-z]{44}|bafz[0-9a-z]{50,})$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class IPNSNames(NameStore):
    """IPNS names of the Kubo node at ``url`` (``kubo+http://127.0.0.1:5001``)."""

    def __init__(self, url: str, *, ttl: str = "5m", lifetime: str = "720h") -> None:
        self.url = url
        self.kubo = KuboStore(url)
        self.ttl = ttl  #: how long resolvers may cache the record
        self.lifetime = lifetime  #: how long the signed record stays valid

    @staticmethod
    def is_key_name(name: str) -> bool:
        """True for a key name of the node (``orcestra``), False for an IPNS name (``k51...``)."""
        return not _IPNS_NAME.match(name) and bool(_KEY_NAME.match(name))

    def _keys(self) -> dict[str, str]:
        """The node's keys: name -> IPNS name."""
        answer = self._call("key/list", name="", l="true")
        return {k["Name"]: k["Id"] for k in (answer or {}).get("Keys") or []}

    def _call(self, command: str, *, name: str, **params: Any) -> Any:
        try:
            return self.kubo.call(command, **params)
        except BlockStoreError as exc:
            raise ResolverError(f"IPNS {command} of {name or 'keys'} at {self.url} failed: {exc}",
                                name=name, resolver=self.url) from exc

    def ipns_name(self, name: str) -> str:
        """The IPNS name (``k51...``) of a key name, or ``name`` itself when it is one."""
        if not self.is_key_name(name):
            return name
        keys = self._keys()
        if name not in keys:
            raise NameNotFoundError(
                f"IPNS key {name!r} does not exist on the Kubo node at {self.url} (keys: {', '.join(sorted(keys))})",
                name=name)
        return keys[name]

    def resolve(self, name: str) -> Resolution:
        target = self.ipns_name(name)
        try:
            answer = self.kubo.call("name/resolve", arg=f"/ipns/{target}", nocache="true")
        except BlockStoreError as exc:
            message = str(exc)
            if "could not resolve name" in message or "not found" in message:
                raise NameNotFoundError(f"IPNS name {name!r} ({target}) has no record the node at {self.url} can find",
                                        name=name) from exc
            raise ResolverError(f"IPNS resolution of {name!r} at {self.url} failed: {exc}",
                                name=name, resolver=self.url) from exc
        path = str((answer or {}).get("Path", ""))
        if not path.startswith("/ipfs/"):
            raise NameNotFoundError(f"IPNS name {name!r} points at {path!r}, not at /ipfs/<cid>", name=name)
        try:
            cid = CID.parse(path[len("/ipfs/"):].split("/")[0])
        except CIDError as exc:
            raise NameNotFoundError(f"IPNS name {name!r} points at {path!r}: {exc}", name=name) from exc
        return Resolution(name=name, cid=cid, ttl=None, source=f"ipns:{target} via {self.url}")

    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        if not self.is_key_name(name):
            raise NameConflictError(
                f"cannot publish to {name!r}: publish with the name of a key of the node at {self.url}"
                " (ipns://<key name>), not with an IPNS name", name=name)
        keys = self._keys()
        if name not in keys:
            keys[name] = self._call("key/gen", name=name, arg=name, type="ed25519")["Id"]
        if expected is not None:
            try:
                current: CID | None = self.resolve(name).cid
            except NameNotFoundError:
                current = None
            if current != expected:
                raise NameConflictError(
                    f"IPNS name {name!r} moved: expected {expected}, it now points at {current or 'nothing'}",
                    name=name, expected=expected, current=current)
        self._call("name/publish", name=name, arg=f"/ipfs/{cid}", key=name, allow_offline="true",
                   ttl=self.ttl, lifetime=self.lifetime)
        return Resolution(name=name, cid=cid, ttl=None, source=f"ipns:{keys[name]} via {self.url}")

    def names(self) -> list[str]:
        return sorted(k for k in self._keys() if k != "self")

    def close(self) -> None:
        self.kubo.close()
