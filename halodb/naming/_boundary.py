"""Where dnspython's exceptions become HaloDB errors in the naming layer.

Every exception dnspython defines derives from :class:`dns.exception.DNSException`. A
direct query (``dns.query.tcp``) also lets the socket's ``OSError`` and ``EOFError`` through,
and ``ValueError`` for a server address that is not an IP address (``localhost``); the
resolver (``Resolver.resolve``, ``zone_for_name``) folds those into its own exceptions. What
a DNS failure becomes depends on what HaloDB was doing, so there is one map per kind of call:

* :data:`DNS_LOOKUP` - resolver lookups (TXT, SOA, A) and reading the system configuration:
  :class:`ResolverError`. NXDOMAIN is an *answer* to a DNSLink lookup
  (:func:`halodb.naming.dnsclient.lookup_txt` returns it before this map is asked);
* :data:`DNS_QUERY` - reading the records of a name from the zone's primary: :class:`ResolverError`;
* :data:`DNS_UPDATE` - sending a signed dynamic update: :class:`NameUpdateError` (a TSIG key
  the server rejects, ``dns.tsig.PeerError``, included);
* :data:`TSIG_KEY` - making a TSIG key from a key file or ``HALODB_TSIG_KEY``: :class:`InputError`.

The ``.rcode`` of a :class:`ResolverError` or :class:`NameUpdateError` is the server's answer
(SERVFAIL, REFUSED, BADKEY ...) when there is one, else the kind of failure (TIMEOUT,
``ConnectionRefusedError`` ...); the module that calls dnspython works it out.

>>> DNS_UPDATE.error_class(dns.exception.Timeout).__name__, DNS_QUERY.error_class(ConnectionRefusedError).__name__
('NameUpdateError', 'ResolverError')
"""

from __future__ import annotations

import dns.exception

from halodb.errors import ErrorMap, InputError, NameUpdateError, ResolverError

#: What a direct ``dns.query`` call can raise: dnspython's exceptions and the socket's.
_QUERY_EXCEPTIONS: tuple[type[BaseException], ...] = (dns.exception.DNSException, OSError, EOFError, ValueError)

DNS_LOOKUP: ErrorMap[ResolverError] = ErrorMap(
    "dnspython", "DNS lookups through a resolver (DNSLink TXT, SOA, A)", {dns.exception.DNSException: ResolverError}
)
DNS_QUERY: ErrorMap[ResolverError] = ErrorMap(
    "dnspython", "queries to a zone's primary before an update", dict.fromkeys(_QUERY_EXCEPTIONS, ResolverError)
)
DNS_UPDATE: ErrorMap[NameUpdateError] = ErrorMap(
    "dnspython", "signed dynamic updates (RFC 2136 with TSIG)", dict.fromkeys(_QUERY_EXCEPTIONS, NameUpdateError)
)
TSIG_KEY: ErrorMap[InputError] = ErrorMap(
    "dnspython", "TSIG keys from key files and the environment", {dns.exception.DNSException: InputError}
)
