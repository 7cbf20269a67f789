"""DNS lookups for the naming layer: which nameserver, how long to wait, and TXT queries.

A :class:`ResolverConfig` names the nameservers (``HOST:PORT``; none = the system's
``/etc/resolv.conf``), the timeout, and optionally a DNS-over-HTTPS URL. :func:`lookup_txt`
asks for the TXT records of one name and turns dnspython's exceptions into HaloDB errors:
NXDOMAIN is an answer (``nxdomain=True``); SERVFAIL, REFUSED, timeouts and network errors
raise :class:`~halodb.errors.ResolverError` naming the nameserver and the name.

>>> parse_nameserver("127.0.0.1:5353")
('127.0.0.1', 5353)
>>> parse_nameserver("[::1]")
('::1', 53)
>>> ResolverConfig.from_env({"HALODB_NAMESERVER": "127.0.0.1:5300", "HALODB_DNS_TIMEOUT": "2"}).describe()
'127.0.0.1:5300'
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from halodb.errors import InputError
from halodb.naming._boundary import DNS_LOOKUP

DEFAULT_TIMEOUT = 5.0


def parse_nameserver(text: str, default_port: int = 53) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` → ``(host, port)``."""
    raw = text.strip()
    host, port = raw, default_port
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise InputError(f"nameserver {text!r}: missing ']'", source=text)
        host, rest = raw[1:end], raw[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"nameserver {text!r}: expected [ADDRESS]:PORT", source=text)
            port = _port(rest[1:], text)
    elif raw.count(":") == 1:
        host, _, p = raw.partition(":")
        port = _port(p, text)
    if not host:
        raise InputError(f"nameserver {text!r}: no host", source=text)
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(f"nameserver {whole!r}: {text!r} is not a port number", source=whole)
    return int(text)


def _address(host: str) -> str:
    """An IP address for ``host`` (names like ``localhost`` are looked up by the system)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
    except OSError as exc:
        raise InputError(f"nameserver {host!r}: cannot find its address ({exc})", source=host) from None


@dataclass(frozen=True)
class ResolverConfig:
    """Where DNS questions go: ``nameservers`` (empty = system), ``timeout`` seconds, or ``doh`` URL."""

    nameservers: tuple[tuple[str, int], ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    doh: str | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        nameserver: str | None = None,
        timeout: float | None = None,
        doh: str | None = None,
    ) -> ResolverConfig:
        """Settings from arguments, else ``HALODB_NAMESERVER`` (comma-separated ``HOST:PORT``),
        ``HALODB_DNS_TIMEOUT`` and ``HALODB_DOH``."""
        env = os.environ if env is None else env
        ns_text = nameserver if nameserver is not None else env.get("HALODB_NAMESERVER", "")
        servers = tuple(parse_nameserver(s) for s in ns_text.split(",") if s.strip())
        if timeout is None:
            raw = env.get("HALODB_DNS_TIMEOUT", "")
            try:
                timeout = float(raw) if raw else DEFAULT_TIMEOUT
            except ValueError:
                raise InputError(f"HALODB_DNS_TIMEOUT={raw!r} is not a number of seconds", source="HALODB_DNS_TIMEOUT") from None
        if not math.isfinite(timeout) or timeout <= 0:
            raise InputError(f"DNS timeout must be a positive number of seconds, not {timeout}", source="timeout")
        return cls(servers, float(timeout), doh if doh is not None else (env.get("HALODB_DOH") or None))

    def describe(self) -> str:
        """The nameservers as users wrote them (for messages)."""
        if self.doh:
            return self.doh
        if not self.nameservers:
            return "system resolver"
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nameservers)

    def resolver(self) -> dns.resolver.Resolver:
        """A dnspython resolver with these settings (no cache: every lookup asks)."""
        if self.doh:
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.DoHNameserver(self.doh, verify=True)]
        elif self.nameservers:
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [dns.nameserver.Do53Nameserver(_address(h), p) for h, p in self.nameservers]
        else:
            try:
                r = dns.resolver.Resolver(configure=True)
            except DNS_LOOKUP.caught as exc:
                raise DNS_LOOKUP.translate(exc, f"no system resolver configured ({exc}); give a nameserver", name="",
                                           nameserver="system resolver", rcode=None) from None
        r.timeout = self.timeout
        r.lifetime = self.timeout
        r.cache = None
        return r


@dataclass(frozen=True)
class TxtAnswer:
    """The TXT records at ``name`` (each record's strings joined), their TTL, or NXDOMAIN."""

    name: str
    records: tuple[str, ...]
    ttl: int | None
    nxdomain: bool = False


def lookup_txt(resolver: dns.resolver.Resolver, name: str | dns.name.Name, *, where: str,
               shown: str | None = None) -> TxtAnswer:
    """Ask ``resolver`` for the TXT records of ``name``; ``where`` names the nameserver in errors,
    ``shown`` the name (default: ``name`` as text). A :class:`dns.name.Name` is asked as it is
    (its labels are bytes: no IDNA, no escapes), text is parsed by dnspython."""
    qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
    shown = shown if shown is not None else qname.to_text(omit_final_dot=True)
    try:
        answer = resolver.resolve(qname, dns.rdatatype.TXT, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:  # an answer, not an error
        return TxtAnswer(shown, (), None, nxdomain=True)
    except DNS_LOOKUP.caught as exc:
        if isinstance(exc, dns.resolver.LifetimeTimeout):
            rcode = "TIMEOUT"
            message = f"DNS lookup of {shown} TXT timed out after {resolver.lifetime:g} s (nameserver {where}){_detail(exc)}"
        elif isinstance(exc, dns.resolver.YXDOMAIN):
            rcode = "YXDOMAIN"
            message = f"DNS lookup of {shown} TXT failed: nameserver {where} answered YXDOMAIN"
        elif isinstance(exc, dns.resolver.NoNameservers):
            rcode = _rcode(exc)
            message = f"DNS lookup of {shown} TXT failed: nameserver {where} answered {rcode}{_detail(exc)}"
        else:
            rcode = type(exc).__name__
            message = f"DNS lookup of {shown} TXT failed at {where}: {exc}"
        raise DNS_LOOKUP.translate(exc, message, name=shown, nameserver=where, rcode=rcode) from None
    records = tuple(
        b"".join(rd.strings).decode("utf-8", errors="replace") for rd in (answer.rrset or ())
    )
    return TxtAnswer(shown, records, int(answer.chaining_result.minimum_ttl) if answer.rrset is not None else None)


def _errors(exc: dns.exception.DNSException) -> list[tuple[object, ...]]:
    errs = exc.kwargs.get("errors") if isinstance(exc.kwargs, dict) else None
    return list(errs or [])


def _rcode(exc: dns.exception.DNSException) -> str:
    """The response code the server answered (SERVFAIL, REFUSED, ...), else the error's kind."""
    for err in _errors(exc):
        response = err[4] if len(err) > 4 else None
        if isinstance(response, dns.message.Message):
            return dns.rcode.to_text(response.rcode())
    for err in _errors(exc):
        if isinstance(err[3], Exception):
            return type(err[3]).__name__
    return "an error"


def _detail(exc: dns.exception.DNSException) -> str:
    """Transport errors (connection refused, HTTP status, ...) that the rcode does not say."""
    texts = sorted({str(err[3]) or type(err[3]).__name__ for err in _errors(exc)
                    if isinstance(err[3], Exception) and not isinstance(err[3], dns.exception.Timeout)})
    return f" ({'; '.join(texts)})" if texts else ""
