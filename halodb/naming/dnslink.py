"""DNSLink resolution (https://dnslink.dev): a domain's TXT record names a commit CID.

For a domain ``D`` the TXT records at ``_dnslink.D`` are asked first; only when they hold no
valid DNSLink (NXDOMAIN, no TXT, or only malformed entries) are those of ``D`` itself used.
A TXT record counts when it reads ``dnslink=/<namespace>/<identifier>`` (surrounding
spaces trimmed, the strings of one record joined); malformed ones are kept in
:attr:`DNSLinkResult.rejected` with a code and the reason. Links are sorted
lexicographically (the spec's rule for a deterministic choice): the first ``/ipfs/`` link
wins, else the first ``/ipns/`` one, which is followed — a domain by DNSLink again (loops
and chains deeper than :data:`MAX_DEPTH` fail), a key or peer ID by the ``ipns`` hook.
The TTL of the result is the smallest TTL of the answers along the chain.

>>> parse_entry("dnslink=/ipfs/bafkqaaa")
Entry(namespace='ipfs', identifier='bafkqaaa')
>>> parse_entry("dnslink=ipfs/bafkqaaa").code
'WRONG_START'
>>> parse_entry("v=spf1 -all") is None
True
>>> dnslink_domain("dnslink:_dnslink.Latest.Orcestra-Campaign.org.")
'latest.orcestra-campaign.org'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.resolver

from halodb.errors import CIDError, NameNotFoundError, ResolverError
from halodb.ipld import CID
from halodb.naming.base import Resolution
from halodb.naming.dnsclient import ResolverConfig, TxtAnswer, lookup_txt
from halodb.naming.domains import dnslink_domain, is_domain

__all__ = [
    "MAX_DEPTH", "DNSLinkResolver", "DNSLinkResult", "Entry", "IPNSHook", "Link", "Problem", "RejectedEntry",
    "dnslink_domain", "is_domain", "parse_entry",
]

MAX_DEPTH = 32
PREFIX = "dnslink="
SUPPORTED = ("ipfs", "ipns")

#: resolves ``/ipns/<key or peer ID>`` (not a domain); the registry plugs IPNS-over-Kubo in here
IPNSHook = Callable[[str], Resolution]

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PRINTABLE_RE = re.compile(r"^[\x20-\x7e]+$")
_KEY_RE = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Entry:
    """A well-formed DNSLink entry."""

    namespace: str
    identifier: str


@dataclass(frozen=True)
class Problem:
    """Why a ``dnslink=`` TXT entry does not count (codes as in the DNSLink test suite, plus HaloDB's)."""

    code: str
    reason: str


@dataclass(frozen=True)
class Link:
    """A valid link, where it was found (``domain``, the DNS ``record`` asked) and its TTL."""

    namespace: str
    identifier: str
    ttl: int | None
    domain: str
    record: str

    @property
    def value(self) -> str:
        return f"/{self.namespace}/{self.identifier}"


@dataclass(frozen=True)
class RejectedEntry:
    """A ``dnslink=`` TXT entry that did not count, and why."""

    entry: str
    code: str
    reason: str
    domain: str
    record: str


@dataclass(frozen=True)
class DNSLinkResult:
    """The resolved CID with everything found on the way.

    ``chain`` lists the domains followed (``/ipns/<key>`` last when an IPNS key ended it),
    ``links`` every valid link per namespace, ``rejected`` the malformed entries, ``notes``
    choices worth knowing (several different ``/ipfs/`` links, a fallback to the bare domain).
    """

    name: str
    cid: CID
    ttl: int | None
    chain: tuple[str, ...]
    links: Mapping[str, tuple[Link, ...]]
    rejected: tuple[RejectedEntry, ...]
    notes: tuple[str, ...]
    nameserver: str

    def resolution(self) -> Resolution:
        """The :class:`~halodb.naming.base.Resolution` a :class:`NameStore` returns."""
        return Resolution(name=self.name, cid=self.cid, ttl=self.ttl,
                          source=f"dnslink:{' -> '.join(self.chain)} via {self.nameserver}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cid": str(self.cid),
            "ttl": self.ttl,
            "chain": list(self.chain),
            "nameserver": self.nameserver,
            "links": {
                ns: [{"value": l.value, "identifier": l.identifier, "ttl": l.ttl, "domain": l.domain,
                      "record": l.record} for l in links]
                for ns, links in self.links.items()
            },
            "rejected": [{"entry": r.entry, "code": r.code, "reason": r.reason, "domain": r.domain,
                          "record": r.record} for r in self.rejected],
            "notes": list(self.notes),
        }


def parse_entry(text: str) -> Entry | Problem | None:
    """One TXT value: an :class:`Entry`, a :class:`Problem` if malformed, ``None`` if not DNSLink."""
    value = text.strip()
    if not value.startswith(PREFIX):
        return None
    body = value[len(PREFIX):].strip()
    if not body.startswith("/"):
        return Problem("WRONG_START", "must start with '/': dnslink=/<namespace>/<identifier>")
    if not _PRINTABLE_RE.match(body):
        return Problem("INVALID_CHARACTER", "only printable ASCII characters are allowed")
    namespace, _, identifier = body[1:].partition("/")
    namespace, identifier = namespace.strip(), identifier.strip()
    if not namespace:
        return Problem("NAMESPACE_MISSING", "no namespace: dnslink=/<namespace>/<identifier>")
    if not _NAMESPACE_RE.match(namespace):
        return Problem("INVALID_NAMESPACE", f"namespace {namespace!r} is not letters, digits, '.', '_', '+', '-'")
    if not identifier:
        return Problem("NO_IDENTIFIER", f"no identifier after /{namespace}/")
    if namespace in SUPPORTED and "/" in identifier.rstrip("/"):
        return Problem("UNSUPPORTED_PATH", f"a path inside /{namespace}/ is not supported: a name points at a commit")
    identifier = identifier.rstrip("/")
    if namespace == "ipfs":
        try:
            CID.parse(identifier)
        except CIDError as exc:
            return Problem("INVALID_CID", f"{identifier!r} is not a CID: {exc}")
    if namespace == "ipns" and not (is_domain(identifier) or _KEY_RE.match(identifier)):
        return Problem("INVALID_IPNS_NAME", f"{identifier!r} is neither a domain nor an IPNS key")
    return Entry(namespace, identifier)


@dataclass
class _Found:
    """What one domain's lookups gave."""

    links: list[Link] = field(default_factory=list)
    rejected: list[RejectedEntry] = field(default_factory=list)
    ttls: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nxdomain: bool = False


class DNSLinkResolver:
    """Resolves DNSLink names through the nameserver of ``config`` (default: from the environment)."""

    def __init__(self, config: ResolverConfig | None = None, *, ipns: IPNSHook | None = None,
                 max_depth: int = MAX_DEPTH) -> None:
        self.config = config if config is not None else ResolverConfig.from_env()
        self.ipns = ipns
        self.max_depth = max_depth
        self._resolver: dns.resolver.Resolver | None = None

    @property
    def dns(self) -> dns.resolver.Resolver:
        if self._resolver is None:
            self._resolver = self.config.resolver()
        return self._resolver

    def _txt(self, record: str) -> TxtAnswer:
        return lookup_txt(self.dns, record, where=self.config.describe())

    def lookup(self, domain: str) -> _Found:
        """The links and rejected entries of one domain (``_dnslink.`` first, then the domain)."""
        found = _Found()
        missing = 0
        for record in (f"_dnslink.{domain}", domain):
            answer = self._txt(record)
            missing += answer.nxdomain
            before = len(found.links)
            for text in answer.records:
                parsed = parse_entry(text)
                if isinstance(parsed, Entry):
                    found.links.append(Link(parsed.namespace, parsed.identifier, answer.ttl, domain, record))
                elif isinstance(parsed, Problem):
                    found.rejected.append(RejectedEntry(text, parsed.code, parsed.reason, domain, record))
            if len(found.links) > before:
                if answer.ttl is not None:
                    found.ttls.append(answer.ttl)
                if record == domain:
                    found.notes.append(f"no DNSLink at _dnslink.{domain}: used the TXT records of {domain}")
                break
        found.nxdomain = missing == 2
        return found

    def resolve(self, name: str) -> DNSLinkResult:
        """Follow ``name`` to a CID; :class:`NameNotFoundError` when there is no DNSLink,
        :class:`ResolverError` when DNS fails, the chain loops or is deeper than ``max_depth``.
        ``ipns://<key>`` (not a domain) goes straight to the ``ipns`` hook."""
        key = _ipns_key(name)
        if key is not None:
            res = self._ipns(key, name, [])
            return DNSLinkResult(name=key, cid=res.cid, ttl=res.ttl, chain=(f"/ipns/{key}",), links={},
                                 rejected=(), notes=(), nameserver=self.config.describe())
        domain = dnslink_domain(name)
        chain: list[str] = []
        links: dict[str, list[Link]] = {}
        rejected: list[RejectedEntry] = []
        notes: list[str] = []
        ttls: list[int] = []
        current = domain
        while True:
            if current in chain:
                raise ResolverError(f"DNSLink loop: {' -> '.join([*chain, current])}", name=domain,
                                    nameserver=self.config.describe(), rcode="LOOP", chain=chain)
            if len(chain) >= self.max_depth:
                raise ResolverError(
                    f"DNSLink chain from {domain} is longer than {self.max_depth} domains "
                    f"({' -> '.join(chain[:3])} -> ... -> {chain[-1]})",
                    name=domain, nameserver=self.config.describe(), rcode="TOO_DEEP", chain=chain)
            chain.append(current)
            found = self.lookup(current)
            for link in found.links:
                links.setdefault(link.namespace, []).append(link)
            rejected.extend(found.rejected)
            notes.extend(found.notes)
            ttls.extend(found.ttls)
            pick = self._choose(current, found, notes, chain)
            if pick.namespace == "ipfs":
                cid = CID.parse(pick.identifier)
                break
            if is_domain(pick.identifier):
                current = pick.identifier.rstrip(".").lower()
                continue
            res = self._ipns(pick.identifier, domain, chain)
            chain.append(f"/ipns/{pick.identifier}")
            cid = res.cid
            if res.ttl is not None:
                ttls.append(res.ttl)
            break
        return DNSLinkResult(
            name=domain, cid=cid, ttl=min(ttls) if ttls else None, chain=tuple(chain),
            links={ns: tuple(sorted(v, key=lambda l: (chain.index(l.domain), l.value))) for ns, v in sorted(links.items())}, rejected=tuple(rejected),
            notes=tuple(notes), nameserver=self.config.describe(),
        )

    def _ipns(self, key: str, name: str, chain: list[str]) -> Resolution:
        if self.ipns is None:
            where = f"{' -> '.join(chain)} points at " if chain else ""
            raise ResolverError(f"{where}/ipns/{key} is an IPNS key: no IPNS resolver is configured",
                                name=name, nameserver=self.config.describe(), rcode="NO_IPNS")
        return self.ipns(key)

    @staticmethod
    def _choose(domain: str, found: _Found, notes: list[str], chain: list[str]) -> Link:
        where = " -> ".join(chain)
        usable = sorted((l for l in found.links if l.namespace in SUPPORTED), key=lambda l: l.value)
        if not usable:
            if found.links:
                others = ", ".join(sorted({l.value for l in found.links}))
                why = f"no /ipfs/ or /ipns/ link (found {others})"
            elif found.rejected:
                why = "no valid DNSLink; rejected: " + "; ".join(
                    f"{r.entry!r} ({r.code}: {r.reason})" for r in found.rejected)
            elif found.nxdomain:
                why = f"no such domain (NXDOMAIN for _dnslink.{domain} and {domain})"
            else:
                why = f"no DNSLink TXT record at _dnslink.{domain} or {domain}"
            raise NameNotFoundError(f"{where}: {why}", name=chain[0])
        pick = usable[0]
        same_ns = [l for l in usable if l.namespace == pick.namespace]
        if len({_canonical(l) for l in same_ns}) > 1:
            ignored = ", ".join(sorted({l.value for l in same_ns if _canonical(l) != _canonical(pick)}))
            notes.append(f"{domain} has {len(same_ns)} different /{pick.namespace}/ links: "
                         f"chose {pick.value} (lexicographically first), ignored {ignored}")
        return pick


def _ipns_key(name: str) -> str | None:
    """The key in ``ipns://<key>`` or ``/ipns/<key>`` when it is not a domain."""
    text = name.strip()
    for prefix in ("ipns://", "/ipns/"):
        if text.lower().startswith(prefix):
            key = text[len(prefix):].split("/")[0]
            return key if _KEY_RE.match(key) and not is_domain(key) else None
    return None


def _canonical(link: Link) -> str:
    return str(CID.parse(link.identifier)) if link.namespace == "ipfs" else link.identifier.lower()
