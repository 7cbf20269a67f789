"""One name store for every kind of name a user may type.

``latest`` is a local name; ``dnslink:latest.orcestra-campaign.org`` a DNSLink name;
``ipns://orcestra`` an IPNS name (a key of the Kubo node, or a ``k51...`` name). A plain
name that is a domain (``latest.orcestra-campaign.org``) is local when a local name of
that spelling exists, else DNSLink; ``ipns://<domain>`` is DNSLink too, as in IPFS itself.
Publishing goes where the name says: local names need nothing, DNSLink needs a TSIG key
(see :mod:`halodb.naming.dnsupdate`), IPNS needs a Kubo node (``--store kubo+http://...`` or
``$HALODB_KUBO``).

>>> import tempfile, pathlib
>>> router = NameRouter(LocalNames(pathlib.Path(tempfile.mkdtemp())))
>>> [router.canonical(n) for n in ("latest", "dnslink:Latest.Example.org", "ipns://orcestra")]
['latest', 'latest.example.org', 'ipns://orcestra']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from halodb.errors import InputError, InvalidNameError, NameNotFoundError, StoreURLError
from halodb.ipld import CID
from halodb.naming.base import NameRecord, NameStore, Resolution
from halodb.naming.domains import is_domain
from halodb.naming.local import LocalNames
from halodb.naming.refs import Ref, parse_ref

if TYPE_CHECKING:  # imported when first used: dnspython and httpx cost ~0.3 s at start-up
    from halodb.blockstore.gateway import GatewayStore
    from halodb.naming.dnsclient import ResolverConfig
    from halodb.naming.dnsupdate import DNSLinkNames


#: the file in the home's names folder where IPNS names resolved through gateways keep the
#: highest record sequence accepted (not a local name: local names start with a letter or digit)
IPNS_SEQUENCES = ".ipns-sequences.json"


class NameRouter(NameStore):
    """Sends each name to the local, DNSLink or IPNS store, by how it is written."""

    def __init__(self, local: LocalNames, *, kubo: str | None = None, dns: ResolverConfig | None = None,
                 gateway: GatewayStore | None = None, env: Mapping[str, str] | None = None) -> None:
        self.local = local
        self.env = os.environ if env is None else env
        self.kubo_url = kubo or self.env.get("HALODB_KUBO") or None
        self.gateway = gateway  #: without Kubo, IPNS names are resolved (and verified) through it
        self._dns_config = dns
        self._dnslink: DNSLinkNames | None = None
        self._ipns: NameStore | None = None

    # -- the stores, made when first needed ------------------------------------------------------
    @property
    def dnslink(self) -> DNSLinkNames:
        if self._dnslink is None:
            from halodb.naming.dnsupdate import DNSLinkNames

            hook = (lambda key: self.ipns.resolve(key)) if self.kubo_url else None
            self._dnslink = DNSLinkNames(self._dns_config, ipns=hook, env=self.env)
        return self._dnslink

    @property
    def ipns(self) -> NameStore:
        """IPNS over the Kubo node; else, read-only, over the store's gateways (records verified here,
        and refused when older than one accepted before)."""
        if self._ipns is None:
            if self.kubo_url:
                from halodb.naming.ipns import IPNSNames

                self._ipns = IPNSNames(self.kubo_url)
            elif self.gateway is not None:
                from halodb.naming.ipns_record import GatewayIPNS, SequenceMemory

                # the highest record sequence accepted per name, so a replayed older record is refused
                self._ipns = GatewayIPNS(self.gateway, SequenceMemory(self.local.root / IPNS_SEQUENCES))
            else:
                raise StoreURLError(
                    "IPNS names need a Kubo node (--store kubo+http://HOST:PORT or HALODB_KUBO) or, to resolve"
                    " only, a gateway store (--store https://GATEWAY/)", url="")
        return self._ipns

    # -- routing -----------------------------------------------------------------------------------
    def kind(self, name: str | Ref, *, publishing: bool = False) -> str:
        """Which store a name goes to: ``"local"``, ``"dnslink"`` or ``"ipns"``."""
        ref = parse_ref(name) if isinstance(name, str) else name
        if ref.name is None:
            raise NameNotFoundError(f"{ref.text!r} is a CID, not a name", name=ref.text)
        if ref.back:
            raise InvalidNameError(f"{ref.text!r} names a version, not a name: ~N goes where a version is asked "
                                   "(log, diff, show --version, export-car, pins plan)", name=ref.text)
        if ref.scheme == "dnslink" or (ref.scheme == "ipns" and is_domain(ref.name)):
            return "dnslink"
        if ref.scheme == "ipns":
            return "ipns"
        if publishing or not ref.maybe_dnslink or self.local.exists(ref.name):
            return "local"
        return "dnslink"

    def route(self, ref: Ref, *, publishing: bool = False) -> tuple[NameStore, str]:
        """The store for a parsed name reference and the name as that store knows it."""
        kind = self.kind(ref, publishing=publishing)
        assert ref.name is not None
        store: NameStore = self.local if kind == "local" else self.dnslink if kind == "dnslink" else self.ipns
        return store, ref.name

    def canonical(self, name: str) -> str:
        """The one spelling a name is recorded under (sync state, ``items_at(ts, name)``)."""
        ref = parse_ref(name)
        assert ref.name is not None or ref.cid is not None
        if ref.name is None:
            return str(ref.cid)
        return f"ipns://{ref.name}" if self.kind(ref) == "ipns" else ref.name

    # -- NameStore ---------------------------------------------------------------------------------
    def resolve(self, name: str) -> Resolution:
        ref = parse_ref(name)
        store, bare = self.route(ref)
        try:
            return store.resolve(bare)
        except NameNotFoundError as exc:
            if ref.scheme is not None or store is self.local:
                raise
            # a plain dotted name that is no local name went to DNS: a typo of a local name
            # should not read as a DNS problem only
            local = self.local.names()
            raise NameNotFoundError(f"{exc}; nor is {bare!r} a local name (local names: "
                                    f"{', '.join(local[:8]) + (' …' if len(local) > 8 else '') if local else 'none'})",
                                    name=name) from None

    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        store, bare = self.route(parse_ref(name), publishing=True)
        return store.publish(bare, cid, expected=expected)

    def current(self, name: str) -> CID | None:
        store, bare = self.route(parse_ref(name), publishing=True)  # where a publish would move it
        return store.current(bare)

    def history(self, name: str) -> list[NameRecord]:
        store, bare = self.route(parse_ref(name))
        return store.history(bare)

    def names(self) -> list[str]:
        return self.local.names()

    def explain(self, name: str, *, dns: ResolverConfig | None = None) -> dict[str, Any]:
        """What resolving ``name`` found: for a DNSLink name every link with its TTL, the chain of
        domains, notes and rejected entries (see :meth:`DNSLinkResult.to_json`); ``dns``
        overrides the resolver configuration for this one question."""
        ref = parse_ref(name)
        if ref.when is not None:
            raise InputError(f"{name!r}: resolve takes a name, not NAME@TIME (see `halodb at`)", source=name)
        if ref.name is None:
            return {"name": name, "cid": str(ref.cid), "ttl": None, "chain": [], "source": "cid"}
        kind = self.kind(ref)
        if kind != "dnslink":
            found = (self.local if kind == "local" else self.ipns).resolve(ref.name)
            return {"name": ref.name, "cid": str(found.cid), "ttl": found.ttl, "chain": [ref.name],
                    "source": found.source}
        from halodb.naming.dnslink import DNSLinkResolver

        resolver = DNSLinkResolver(dns, ipns=self.dnslink.resolver.ipns) if dns is not None else self.dnslink.resolver
        result = resolver.resolve(f"ipns://{ref.name}" if ref.scheme == "ipns" else ref.name)
        return {**result.to_json(), "source": f"dnslink via {result.nameserver}"}

    def close(self) -> None:
        if self._ipns is not None:
            self._ipns.close()


def kubo_of(store_url: str | None) -> str | None:
    """The Kubo RPC URL inside a store URL, if it is one (``kubo+http://...``)."""
    if store_url is None:
        return None
    first = store_url.split(",")[0].strip()
    return first if first.startswith(("kubo+http://", "kubo+https://")) else None


__all__ = ["NameRouter", "kubo_of"]
