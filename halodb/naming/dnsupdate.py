"""DNSLink names that HaloDB can move: RFC 2136 dynamic updates signed with TSIG, as compare-and-swap.

``publish(name, cid, expected=...)`` reads the TXT records at ``_dnslink.<domain>`` from
the zone's primary, checks them against ``expected`` (when given), and sends one signed
update whose prerequisite is *exactly the records it read* (or "no TXT records" for a first
publish) and which replaces the ``/ipfs/`` and ``/ipns/`` links by ``dnslink=/ipfs/<cid>``
(other TXT records stay). The server applies it only if nothing changed in between; when a
concurrent writer got there first, :class:`~halodb.errors.NameConflictError` names the
value the name now has.

The zone is found by an SOA lookup (or given); updates go to ``primary`` (``HOST:PORT``),
by default the first configured nameserver, else the zone's SOA MNAME on port 53.

>>> names = DNSLinkNames(ResolverConfig(nameservers=(("127.0.0.1", 53),)))
>>> names.record_name("dnslink:latest.orcestra-campaign.org")
'_dnslink.latest.orcestra-campaign.org.'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tsig
import dns.update

from halodb.errors import CIDError, NameConflictError, NameUpdateError, ResolverError
from halodb.ipld import CID
from halodb.naming._boundary import DNS_LOOKUP, DNS_QUERY, DNS_UPDATE
from halodb.naming.base import NameStore, Resolution
from halodb.naming.dnsclient import ResolverConfig, parse_nameserver
from halodb.naming.dnslink import (
    SUPPORTED,
    DNSLinkResolver,
    Entry,
    IPNSHook,
    dnslink_domain,
    parse_entry,
)
from halodb.naming.tsig import load_key

DEFAULT_TTL = 60  # the DNSLink spec recommends a low TTL so that names move quickly


class DNSLinkNames(NameStore):
    """Resolve DNSLink names; publish them by signed dynamic update (see the module docstring)."""

    supports_publish = True

    def __init__(
        self,
        config: ResolverConfig | None = None,
        *,
        ipns: IPNSHook | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        key_name: str | None = None,
        key: dns.tsig.Key | None = None,
        primary: str | None = None,
        zone: str | None = None,
        ttl: int = DEFAULT_TTL,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config if config is not None else ResolverConfig.from_env(env)
        self.resolver = DNSLinkResolver(self.config, ipns=ipns)
        self._keyfile, self._key_name, self._key, self._env = keyfile, key_name, key, env
        primary = primary or (os.environ if env is None else env).get("HALODB_DNS_PRIMARY") or None
        self._primary = parse_nameserver(primary) if primary else None  # where updates go
        self.zone = dns.name.from_text(zone) if zone else None
        self.ttl = ttl

    # --- reading ----------------------------------------------------------------------------
    def resolve(self, name: str) -> Resolution:
        return self.resolver.resolve(name).resolution()

    @staticmethod
    def record_name(name: str) -> str:
        """The DNS name that holds ``name``'s link: ``_dnslink.<domain>.``."""
        return f"_dnslink.{dnslink_domain(name)}."

    def key(self) -> dns.tsig.Key:
        if self._key is None:
            self._key = load_key(self._keyfile, name=self._key_name, env=self._env)
        return self._key

    def zone_of(self, name: str) -> dns.name.Name:
        """The zone holding ``_dnslink.<domain>`` (explicit, else by SOA lookup)."""
        if self.zone is not None:
            return self.zone
        record = dns.name.from_text(self.record_name(name))
        try:
            return dns.resolver.zone_for_name(record, resolver=self.resolver.dns, lifetime=self.config.timeout)
        except DNS_LOOKUP.caught as exc:
            raise DNS_LOOKUP.translate(
                exc, f"cannot find the zone of {record} (SOA lookup at {self.config.describe()}): {exc}",
                name=record.to_text(), nameserver=self.config.describe(), rcode=type(exc).__name__) from None

    def primary(self, zone: dns.name.Name) -> tuple[str, int]:
        """Where updates of ``zone`` go."""
        if self._primary is not None:
            return self._primary
        if self.config.nameservers and not self.config.doh:
            return self.config.nameservers[0]
        try:
            soa = self.resolver.dns.resolve(zone, "SOA")
            mname = soa[0].mname  # type: ignore[attr-defined]
            addr = self.resolver.dns.resolve(mname, "A")
            return str(addr[0]), 53
        except DNS_LOOKUP.caught as exc:
            raise DNS_LOOKUP.translate(
                exc, f"cannot find the primary server of zone {zone} (SOA MNAME): {exc}",
                name=zone.to_text(), nameserver=self.config.describe(), rcode=type(exc).__name__) from None

    def _read(self, record: str, server: tuple[str, int]) -> dns.rrset.RRset | None:
        """The TXT RRset at ``record`` as the primary holds it now (``None``: there is none)."""
        where = f"{server[0]}:{server[1]}"
        try:
            r = dns.query.tcp(dns.message.make_query(record, dns.rdatatype.TXT), server[0], port=server[1],
                              timeout=self.config.timeout)
        except DNS_QUERY.caught as exc:
            raise DNS_QUERY.translate(exc, f"reading {record} TXT from {where} failed: {str(exc) or type(exc).__name__}",
                                      name=record, nameserver=where, rcode=type(exc).__name__) from None
        if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            rcode = dns.rcode.to_text(r.rcode())
            raise ResolverError(f"reading {record} TXT from {where}: the server answered {rcode}",
                                name=record, nameserver=where, rcode=rcode)
        qname = dns.name.from_text(record)
        for rrset in r.answer:
            if rrset.name == qname and rrset.rdtype == dns.rdatatype.TXT:
                return rrset
        return None

    def current(self, name: str) -> CID | None:
        """The commit ``name``'s record at the zone's primary links to: what a publish replaces.

        Read from the primary, not through a resolver, which may answer from a stale
        secondary or follow a chain; ``None`` when the record holds no ``/ipfs/`` link
        (none at all, or an ``/ipns/`` link, which a publish replaces by a commit).
        """
        domain = dnslink_domain(name)
        link = self._link(self._read(self.record_name(domain), self.primary(self.zone_of(domain))))
        if link is None or not link.startswith("/ipfs/"):
            return None
        try:
            return CID.parse(link.removeprefix("/ipfs/").split("/", 1)[0])
        except CIDError:
            return None  # not a CID: nothing to keep, the publish replaces it

    @staticmethod
    def _link(rrset: dns.rrset.RRset | None) -> str | None:
        """The ``/ipfs/...`` or ``/ipns/...`` value a resolver would pick from ``rrset``."""
        links = sorted(f"/{e.namespace}/{e.identifier}" for e in map(parse_entry, _texts(rrset))
                       if isinstance(e, Entry) and e.namespace in SUPPORTED)
        return links[0] if links else None

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, name: str, cid: CID, *, expected: CID | None = None) -> Resolution:
        domain = dnslink_domain(name)
        record = self.record_name(domain)
        key = self.key()
        zone = self.zone_of(domain)
        server = self.primary(zone)
        where = f"{server[0]}:{server[1]}"
        before = self._read(record, server)
        current = self._link(before)
        if expected is not None and current != f"/ipfs/{expected}":
            raise NameConflictError(
                f"name {domain!r} moved: expected /ipfs/{expected}, it now points at {current or 'nothing'}",
                name=domain, expected=expected, current=current)
        rel = dns.name.from_text(record).relativize(zone)
        update = dns.update.UpdateMessage(zone, keyring=key, keyname=key.name, keyalgorithm=key.algorithm)
        if before is None:
            update.absent(rel, dns.rdatatype.TXT)
        else:
            update.present(rel, *before)  # value-dependent: exactly these records (TTL 0, RFC 2136 2.4.2)
        update.delete(rel, dns.rdatatype.TXT)
        for rd in before or ():
            if not _ours(rd):
                update.add(rel, self.ttl, rd)
        update.add(rel, self.ttl, dns.rdatatype.TXT, f'"dnslink=/ipfs/{cid}"')
        rcode = self._send(update, domain, key, where)
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET):
            now = self._link(self._read(record, server))
            raise NameConflictError(
                f"name {domain!r} moved while publishing: another writer changed {record} "
                f"(it was {current or 'nothing'}, it now points at {now or 'nothing'})",
                name=domain, expected=expected, current=now)
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            hint = " (is the TSIG key allowed to update this zone?)" if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) else ""
            raise NameUpdateError(f"{where} refused the update of {record}: {text}{hint}",
                                  name=domain, server=where, rcode=text)
        return Resolution(name=domain, cid=cid, ttl=self.ttl, source=f"dnslink:{domain} via {where}")

    def _send(self, update: dns.update.UpdateMessage, domain: str, key: dns.tsig.Key, where: str) -> dns.rcode.Rcode:
        keyname = key.name.to_text(omit_final_dot=True)
        host, _, port = where.rpartition(":")
        try:
            response = dns.query.tcp(update, host, port=int(port), timeout=self.config.timeout)
        except DNS_UPDATE.caught as exc:
            if isinstance(exc, dns.tsig.PeerError):
                code = type(exc).__name__.removeprefix("Peer")
                message = f"{where} rejected the TSIG key {keyname!r} ({code}: {exc}); check the key name, algorithm and secret"
            elif isinstance(exc, dns.tsig.BadSignature):
                code, message = "BADSIG", f"{where} answered with a bad TSIG signature for key {keyname!r}"
            else:
                code = type(exc).__name__
                message = f"sending the update of {domain} to {where} failed: {str(exc) or code}"
            raise DNS_UPDATE.translate(exc, message, name=domain, server=where, rcode=code) from None
        return response.rcode()


def _texts(rrset: dns.rrset.RRset | None) -> list[str]:
    return [_text(rd) for rd in rrset or ()]


def _text(rd: dns.rdata.Rdata) -> str:
    strings: tuple[bytes, ...] = getattr(rd, "strings", ())
    return b"".join(strings).decode("utf-8", errors="replace")


def _ours(rd: dns.rdata.Rdata) -> bool:
    """A TXT record a publish replaces: an /ipfs/ or /ipns/ link, or a malformed ``dnslink=`` entry."""
    parsed = parse_entry(_text(rd))
    return parsed is not None and not (isinstance(parsed, Entry) and parsed.namespace not in SUPPORTED)
