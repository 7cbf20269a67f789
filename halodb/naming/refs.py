"""Version references as users type them.

A reference names one commit: a bare CID, ``ipfs://<cid>`` or ``/ipfs/<cid>``, a name
(``latest``, ``latest.orcestra-campaign.org``, ``dnslink:<domain>``, ``ipns://<name>``),
or a name at a time (``latest@2024-09-15T00:00Z``: the newest commit on that name's main
line whose time is at or before it). ``Ref.scheme`` says which kind of name was written:
``None`` (a plain name: local, or DNSLink when it is a domain that is not a local name —
the registry decides), ``"dnslink"`` or ``"ipns"``.

>>> r = parse_ref("ipfs://bafkqaaa")
>>> (r.cid is not None, r.name)
(True, None)
>>> r = parse_ref("dnslink:Latest.Orcestra-Campaign.org@2024-09-15")
>>> (r.scheme, r.name, r.maybe_dnslink)
('dnslink', 'latest.orcestra-campaign.org', True)
>>> (parse_ref("latest").maybe_dnslink, parse_ref("latest.orcestra-campaign.org").maybe_dnslink)
(False, True)
>>> parse_ref("orcestra@2024-09-15").when.isoformat()
'2024-09-15T00:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from halodb.errors import CIDError, InvalidNameError
from halodb.util.times import parse_time
from halodb.ipld import CID
from halodb.naming.domains import dnslink_domain, is_domain
from halodb.naming.local import check_name


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``cid`` and ``name``, an optional time, and the
    name's ``scheme`` (``None``, ``"dnslink"`` or ``"ipns"``)."""

    text: str
    cid: CID | None = None
    name: str | None = None
    when: datetime | None = None
    scheme: str | None = None

    @property
    def maybe_dnslink(self) -> bool:
        """The name may be resolved by DNSLink: written as ``dnslink:``, or ``ipns://``/plain with a domain."""
        return self.name is not None and (self.scheme == "dnslink" or is_domain(self.name))


def _looks_like_cid(text: str) -> bool:
    return (text.startswith("Qm") and len(text) == 46) or (text.startswith("b") and len(text) > 50)


def parse_ref(text: str) -> Ref:
    """Parse a reference; :class:`InvalidNameError` says what is wrong with it."""
    raw = text.strip()
    if not raw:
        raise InvalidNameError("empty version reference", name=text)
    when: datetime | None = None
    base = raw
    if "@" in raw:
        base, _, at = raw.rpartition("@")
        try:
            when = parse_time(at)
        except ValueError:
            raise InvalidNameError(f"{text!r}: {at!r} is not an ISO 8601 date-time", name=text) from None
    for prefix, scheme in (("dnslink:", "dnslink"), ("ipns://", "ipns"), ("/ipns/", "ipns")):
        if base.lower().startswith(prefix):
            rest = base[len(prefix):].split("/")[0]
            name = dnslink_domain(rest) if scheme == "dnslink" else check_name(rest)
            return Ref(text=raw, name=name, when=when, scheme=scheme)
    for prefix in ("ipfs://", "/ipfs/"):
        if base.startswith(prefix):
            cid_text, _, sub_path = base[len(prefix):].partition("/")
            if sub_path.strip("/"):
                raise InvalidNameError(
                    f"{text!r}: a version reference names a commit, not a path inside one (drop /{sub_path})",
                    name=text)
            try:
                return Ref(text=raw, cid=CID.parse(cid_text), when=when)
            except CIDError as exc:
                raise InvalidNameError(f"{text!r}: {exc}", name=text) from None
    if _looks_like_cid(base):
        try:
            return Ref(text=raw, cid=CID.parse(base), when=when)
        except CIDError:
            pass
    return Ref(text=raw, name=check_name(base), when=when)
