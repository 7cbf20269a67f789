"""DNSLink (https://dnslink.dev): the links a domain's TXT records hold, and the commit a name points at.

Two levels, the second built on the first.

**The specification's lookup**, :meth:`DNSLinkResolver.links` (what the DNSLink test suite,
``@dnslink/test``, checks; ``halodb resolve dnslink:DOMAIN --links --json``). For a domain
``D`` (one trailing dot and one leading ``_dnslink.`` removed; labels taken as they are,
bytes in UTF-8, no lowercasing) the TXT records of ``_dnslink.D`` are asked. Only when that
name does not exist (NXDOMAIN) are those of ``D`` itself asked, and ``FALLBACK`` is logged:
when ``_dnslink.D`` exists, with TXT records that hold no DNSLink or with malformed ones,
``D`` is not used. A TXT record (its strings joined) is an entry when it starts with
``dnslink=``; the rest must read ``/<namespace>/<identifier>`` in printable ASCII, else the
entry is logged as ``INVALID_ENTRY`` with the first reason that applies: ``WRONG_START``,
``INVALID_CHARACTER``, ``NAMESPACE_MISSING``, ``NO_IDENTIFIER``. Every namespace counts,
namespace and identifier are kept verbatim (spaces too), and a namespace's links are sorted
by identifier. Any other DNS answer is the error ``DNS_RCODE_<n>`` (NXDOMAIN of ``D`` after a
fallback is ``DNS_RCODE_3``); a domain with an empty label or too long is ``INVALID_DOMAIN``
(``EMPTY_PART``, ``TOO_LONG``).

**HaloDB's resolution**, :meth:`DNSLinkResolver.resolve` (``halodb resolve``, ``sync``),
reads those links and picks a commit. ``/ipfs/`` identifiers must be a CID (a trailing ``/``
allowed), ``/ipns/`` ones a domain or an IPNS key; links that are not are reported as
rejected with a HaloDB code (``INVALID_CID``, ``UNSUPPORTED_PATH``, ``INVALID_IPNS_NAME``),
like the spec's malformed entries (:attr:`DNSLinkResult.rejected`). Links are sorted
lexicographically (the spec's rule for a deterministic choice): the first ``/ipfs/`` link
wins, else the first ``/ipns/`` one, which is followed - a domain by DNSLink again (loops and
chains deeper than :data:`MAX_DEPTH` fail), a key or peer ID by the ``ipns`` hook. The TTL of
the result is the smallest TTL of the answers along the chain.

>>> spec_entry("dnslink=/testnamespace/ AB/c ")
Entry(namespace='testnamespace', identifier=' AB/c ')
>>> spec_entry("dnslink= /ipfs/bafkqaaa").code
'WRONG_START'
>>> parse_entry("dnslink=/ipfs/bafkqaaa/")
Entry(namespace='ipfs', identifier='bafkqaaa')
>>> parse_entry("dnslink=/ipfs/not-a-cid").code
'INVALID_CID'
>>> parse_entry("v=spf1 -all") is None
True
>>> domain_problem("Example.COM"), domain_problem("a..b"), domain_problem("x" * 64)
(None, 'EMPTY_PART', 'TOO_LONG')
>>> dnslink_domain("dnslink:_dnslink.Latest.Orcestra-Campaign.org.")
'latest.orcestra-campaign.org'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.resolver

from halodb.errors import CIDError, HaloDBError, InvalidNameError, NameNotFoundError, ResolverError
from halodb.ipld import CID
from halodb.naming.base import Resolution
from halodb.naming.dnsclient import ResolverConfig, TxtAnswer, lookup_txt
from halodb.naming.domains import dnslink_domain, is_domain

__all__ = [
    "MAX_DEPTH", "MEANING", "DNSLinkResolver", "DNSLinkResult", "DomainLinks", "Entry", "Failure", "FoundLink",
    "IPNSHook", "Link", "LogEntry", "Problem", "RejectedEntry", "check_link", "dnslink_domain", "domain_problem",
    "is_domain", "parse_entry", "spec_entry",
]

MAX_DEPTH = 32
PREFIX = "dnslink="
RECORD_PREFIX = "_dnslink."
SUPPORTED = ("ipfs", "ipns")
#: a domain's length in bytes, so that ``_dnslink.<domain>`` stays within DNS's 253
MAX_DOMAIN = 253 - len(RECORD_PREFIX)
MAX_LABEL = 63
NXDOMAIN = f"DNS_RCODE_{int(dns.rcode.NXDOMAIN)}"

#: what each log code and reason means: the spec's, then HaloDB's for /ipfs/ and /ipns/ links
MEANING: Mapping[str, str] = {
    "FALLBACK": "no _dnslink.<domain> (NXDOMAIN): the TXT records of the domain itself were used",
    "INVALID_ENTRY": "a malformed dnslink= entry, skipped",
    "WRONG_START": "the value after dnslink= must start with '/': dnslink=/<namespace>/<identifier>",
    "INVALID_CHARACTER": "only printable ASCII characters (0x20-0x7e) are allowed",
    "NAMESPACE_MISSING": "no namespace: dnslink=/<namespace>/<identifier>",
    "NO_IDENTIFIER": "no identifier: dnslink=/<namespace>/<identifier>",
    "EMPTY_PART": "a domain may not have an empty label",
    "TOO_LONG": f"a domain may have at most {MAX_DOMAIN} bytes (so that _dnslink.<domain> fits in 253), "
                f"a label at most {MAX_LABEL}",
    "INVALID_CID": "an /ipfs/ link must name a CID",
    "UNSUPPORTED_PATH": "a path inside an /ipfs/ or /ipns/ link is not supported: a name points at a commit",
    "INVALID_IPNS_NAME": "an /ipns/ link must name a domain or an IPNS key",
}

#: resolves ``/ipns/<key or peer ID>`` (not a domain); the registry plugs IPNS-over-Kubo in here
IPNSHook = Callable[[str], Resolution]

_PRINTABLE_RE = re.compile(r"[\x20-\x7e]*")
_KEY_RE = re.compile(r"^[A-Za-z0-9]+$")


# --- entries ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """A well-formed DNSLink entry."""

    namespace: str
    identifier: str


@dataclass(frozen=True)
class Problem:
    """Why a ``dnslink=`` TXT entry does not count (the spec's reasons, and HaloDB's for its links)."""

    code: str
    reason: str


def spec_entry(text: str) -> Entry | Problem | None:
    """One TXT value read as the spec says: an :class:`Entry` (namespace and identifier verbatim),
    a :class:`Problem` with the spec's reason, ``None`` when it does not start with ``dnslink=``."""
    if not text.startswith(PREFIX):
        return None
    value = text[len(PREFIX):]
    code = ("WRONG_START" if not value.startswith("/")
            else "INVALID_CHARACTER" if not _PRINTABLE_RE.fullmatch(value)
            else None)
    if code is None:
        namespace, _, identifier = value[1:].partition("/")
        if namespace and identifier:
            return Entry(namespace, identifier)
        code = "NO_IDENTIFIER" if namespace else "NAMESPACE_MISSING"
    return Problem(code, MEANING[code])


def check_link(entry: Entry) -> Entry | Problem:
    """HaloDB's reading of an ``/ipfs/`` or ``/ipns/`` link (other namespaces pass as they are):
    a CID, or a domain or IPNS key, a trailing ``/`` dropped."""
    if entry.namespace not in SUPPORTED:
        return entry
    name = entry.identifier.removesuffix("/")
    if "/" in name:
        return Problem("UNSUPPORTED_PATH", f"{MEANING['UNSUPPORTED_PATH']} (/{entry.namespace}/{entry.identifier})")
    if entry.namespace == "ipfs":
        if name != name.strip():  # CID.parse would trim it; the spec keeps identifiers as they are
            return Problem("INVALID_CID", f"{name!r} is not a CID: it has spaces")
        try:
            CID.parse(name)
        except CIDError as exc:
            return Problem("INVALID_CID", f"{name!r} is not a CID: {exc}")
    elif not (is_domain(name) or _KEY_RE.match(name)):
        return Problem("INVALID_IPNS_NAME", f"{name!r} is neither a domain nor an IPNS key")
    return Entry(entry.namespace, name)


def parse_entry(text: str) -> Entry | Problem | None:
    """One TXT value as HaloDB uses it: :func:`spec_entry`, then :func:`check_link`."""
    found = spec_entry(text)
    return check_link(found) if isinstance(found, Entry) else found


# --- domains ------------------------------------------------------------------------------------
def _bare(name: str) -> str:
    """``name`` without ``dnslink:``, one trailing dot and one leading ``_dnslink.``."""
    text = name[len("dnslink:"):] if name[:8].lower() == "dnslink:" else name
    return text.removesuffix(".").removeprefix(RECORD_PREFIX)


def domain_problem(domain: str) -> str | None:
    """The spec's reason a domain cannot be looked up (``EMPTY_PART``, ``TOO_LONG``), else ``None``."""
    labels = [label.encode("utf-8", "surrogateescape") for label in domain.split(".")]
    if not all(labels):
        return "EMPTY_PART"
    if len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN or any(len(x) > MAX_LABEL for x in labels):
        return "TOO_LONG"
    return None


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _dns_name(domain: str) -> dns.name.Name:
    """``domain``'s labels as they are (UTF-8 bytes: no IDNA, no lowercasing, no escapes)."""
    return dns.name.Name([*(label.encode("utf-8", "surrogateescape") for label in domain.split(".")), b""])


def _spec_code(rcode: str | None) -> str:
    """The spec's error code of a DNS answer (``SERVFAIL`` -> ``DNS_RCODE_2``); a failure without
    an answer (TIMEOUT, a network error) keeps HaloDB's name for it."""
    if rcode:
        try:
            return f"DNS_RCODE_{int(dns.rcode.from_text(rcode))}"
        except dns.exception.DNSException:  # not a response code
            return rcode
    return "DNS_ERROR"


# --- the spec's lookup --------------------------------------------------------------------------
@dataclass(frozen=True)
class FoundLink:
    """One link of a namespace: its identifier verbatim and the TTL of its record."""

    identifier: str
    ttl: int | None


@dataclass(frozen=True)
class LogEntry:
    """A log entry of the spec: ``FALLBACK``, or ``INVALID_ENTRY`` with the ``entry`` and its ``reason``."""

    code: str
    entry: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("code", self.code), ("entry", self.entry), ("reason", self.reason)) if v is not None}


@dataclass(frozen=True)
class Failure:
    """Why a lookup found nothing: the spec's ``code`` (``DNS_RCODE_<n>``, ``INVALID_DOMAIN``; HaloDB's
    ``TIMEOUT`` ... for failures without an answer), its ``reason``, and the HaloDB ``error``."""

    code: str
    reason: str | None
    error: HaloDBError


@dataclass(frozen=True)
class DomainLinks:
    """What the spec's lookup of one domain found (see the module docstring).

    ``record`` is the DNS name whose TXT records were used (``_dnslink.D``, or ``D`` after a
    fallback), ``ttl`` their TTL; ``failure`` says why there is no answer at all.
    """

    domain: str
    record: str | None
    links: Mapping[str, tuple[FoundLink, ...]]
    log: tuple[LogEntry, ...]
    ttl: int | None
    nameserver: str
    failure: Failure | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as the DNSLink reference implementations print it (and the test suite reads it):
        ``{"links": {ns: [{"identifier", "ttl"}]}, "txtEntries": [...], "log": [...]}``, or
        ``{"error": {"code", "reason", "message"}}``."""
        if self.failure is not None:
            error = {"code": self.failure.code, "reason": self.failure.reason, "message": str(self.failure.error)}
            return {"error": {k: v for k, v in error.items() if v is not None}}
        return {
            "links": {ns: [{"identifier": l.identifier, "ttl": l.ttl} for l in links] for ns, links in self.links.items()},
            "txtEntries": [{"value": f"/{ns}/{l.identifier}", "ttl": l.ttl}
                           for ns in sorted(self.links) for l in self.links[ns]],
            "log": [entry.to_json() for entry in self.log],
        }

    def check(self) -> DomainLinks:
        """``self``, or the failure's error raised."""
        if self.failure is not None:
            raise self.failure.error
        return self


# --- HaloDB's resolution ------------------------------------------------------------------------
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


@dataclass
class _Found:
    """What one domain's lookup gave, read by HaloDB."""

    record: str | None = None
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

    def _txt(self, domain: str) -> TxtAnswer:
        return lookup_txt(self.dns, _dns_name(domain), where=self.config.describe(), shown=_printable(domain))

    # -- the spec ----------------------------------------------------------------------------------
    def links(self, name: str) -> DomainLinks:
        """The spec's lookup of the domain in ``name`` (``dnslink:D`` or ``D``): never raises for
        what the spec calls an error, :attr:`DomainLinks.failure` says it (:meth:`DomainLinks.check`)."""
        where = self.config.describe()
        domain = _bare(name)
        shown = _printable(domain)

        def failed(code: str, reason: str | None, error: HaloDBError) -> DomainLinks:
            return DomainLinks(shown, None, {}, (), None, where, Failure(code, reason, error))

        problem = domain_problem(domain)
        if problem is not None:
            return failed("INVALID_DOMAIN", problem,
                          InvalidNameError(f"{shown!r} is not a DNSLink domain: {MEANING[problem]}", name=name))
        log: list[LogEntry] = []
        record = RECORD_PREFIX + domain
        try:
            answer = self._txt(record)
            if answer.nxdomain:
                log.append(LogEntry("FALLBACK"))
                record = domain
                answer = self._txt(record)
        except ResolverError as exc:
            return failed(_spec_code(exc.rcode), None, exc)
        if answer.nxdomain:
            return failed(NXDOMAIN, None, NameNotFoundError(
                f"no such domain: NXDOMAIN for _dnslink.{shown} and {shown} (nameserver {where})", name=shown))
        links: dict[str, list[FoundLink]] = {}
        for text in answer.records:
            entry = spec_entry(text)
            if isinstance(entry, Entry):
                links.setdefault(entry.namespace, []).append(FoundLink(entry.identifier, answer.ttl))
            elif isinstance(entry, Problem):
                log.append(LogEntry("INVALID_ENTRY", text, entry.code))
        return DomainLinks(shown, _printable(record),
                           {ns: tuple(sorted(found, key=lambda l: l.identifier)) for ns, found in links.items()},
                           tuple(log), answer.ttl, where)

    # -- HaloDB ------------------------------------------------------------------------------------
    def lookup(self, domain: str) -> _Found:
        """The links and rejected entries of one domain, as HaloDB reads the spec's lookup."""
        spec = self.links(domain)
        found = _Found(record=spec.record)
        if spec.failure is not None:
            if spec.failure.code != NXDOMAIN:
                raise spec.failure.error
            found.nxdomain = True
            return found
        record = spec.record or domain
        for entry in spec.log:
            if entry.code == "FALLBACK":
                found.notes.append(f"no _dnslink.{domain} (NXDOMAIN): used the TXT records of {domain}")
            elif entry.entry is not None and entry.reason is not None:
                found.rejected.append(RejectedEntry(entry.entry, entry.reason, MEANING[entry.reason], domain, record))
        for namespace, links in spec.links.items():
            for link in links:
                checked = check_link(Entry(namespace, link.identifier))
                if isinstance(checked, Problem):
                    text = f"{PREFIX}/{namespace}/{link.identifier}"
                    found.rejected.append(RejectedEntry(text, checked.code, checked.reason, domain, record))
                else:
                    found.links.append(Link(checked.namespace, checked.identifier, link.ttl, domain, record))
        if found.links and spec.ttl is not None:
            found.ttls.append(spec.ttl)
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
            links={ns: tuple(sorted(v, key=lambda l: (chain.index(l.domain), l.value))) for ns, v in sorted(links.items())},
            rejected=tuple(rejected), notes=tuple(notes), nameserver=self.config.describe(),
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
            elif found.record == f"{RECORD_PREFIX}{domain}":
                why = (f"no DNSLink TXT record at _dnslink.{domain} ({domain} itself is not asked when "
                       f"_dnslink.{domain} exists, as the DNSLink spec says)")
            else:
                why = f"no DNSLink TXT record at {domain} (and no _dnslink.{domain})"
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
