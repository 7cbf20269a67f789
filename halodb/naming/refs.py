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

After ``@``, a word that starts with a letter is a tag (``latest@v1.0``): the version the
tag, kept in the name's head, names.

>>> r = parse_ref("latest@v1.0~1"); (r.name, r.tag, r.when, r.back)
('latest', 'v1.0', None, 1)

A reference may end in ``~N`` (``~`` alone is ``~1``, and they add up, ``HEAD~2~1`` is
``HEAD~3``): N versions back along the first parents of the commit the rest names, as in
git. Names cannot contain ``~``, so this is never ambiguous.

>>> r = parse_ref("latest@2024-09-15~2"); (r.name, r.when.day, r.back)
('latest', 15, 2)
>>> split_back("HEAD~~3")
('HEAD', 4)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
    back: int = 0  #: versions back along first parents (``~N``)
    tag: str | None = None  #: a tag of the name's (``latest@v1.0``): the version it names

    @property
    def maybe_dnslink(self) -> bool:
        """The name may be resolved by DNSLink: written as ``dnslink:``, or ``ipns://``/plain with a domain."""
        return self.name is not None and (self.scheme == "dnslink" or is_domain(self.name))


def _looks_like_cid(text: str) -> bool:
    return (text.startswith("Qm") and len(text) == 46) or (text.startswith("b") and len(text) > 50)


#: a tag's name (as :data:`halodb.index.model.TAG_NAME`): starts with a letter, so never a time
TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")

#: ``~N`` suffixes at the end of a reference
_BACK = re.compile(r"(?:~\d*)+$")
#: the most versions back a reference may ask for (a longer walk is a typo, not a question)
MAX_BACK = 10_000_000


def split_back(text: str) -> tuple[str, int]:
    """``(the reference without its ~N suffixes, N)``."""
    found = _BACK.search(text)
    if found is None:
        return text, 0
    steps = 0
    for part in found.group(0).split("~")[1:]:
        if len(part) > 8 or (steps := steps + (int(part) if part else 1)) > MAX_BACK:
            raise InvalidNameError(f"{text!r}: more than {MAX_BACK} versions back", name=text)
    return text[:found.start()], steps


def parse_ref(text: str) -> Ref:
    """Parse a reference; :class:`InvalidNameError` says what is wrong with it."""
    raw = text.strip()
    if not raw:
        raise InvalidNameError("empty version reference", name=text)
    rest, back = split_back(raw)
    if back:
        if not rest:
            raise InvalidNameError(f"{text!r}: ~N follows a reference (HEAD~1, latest~2)", name=text)
        return replace(parse_ref(rest), text=raw, back=back)
    when: datetime | None = None
    tag: str | None = None
    base = raw
    if "@" in raw:
        base, _, at = raw.rpartition("@")
        try:
            when = parse_time(at)
        except ValueError:
            if TAG_NAME.fullmatch(at) is None:
                raise InvalidNameError(f"{text!r}: {at!r} is neither an ISO 8601 date-time nor a tag name",
                                       name=text) from None
            tag = at
        if tag is not None and not base:
            raise InvalidNameError(f"{text!r}: a tag follows a name (latest@{tag})", name=text)
    for prefix, scheme in (("dnslink:", "dnslink"), ("ipns://", "ipns"), ("/ipns/", "ipns")):
        if base.lower().startswith(prefix):
            rest = base[len(prefix):].split("/")[0]
            name = dnslink_domain(rest) if scheme == "dnslink" else check_name(rest)
            return Ref(text=raw, name=name, when=when, scheme=scheme, tag=tag)
    for prefix in ("ipfs://", "/ipfs/"):
        if base.startswith(prefix):
            cid_text, _, sub_path = base[len(prefix):].partition("/")
            if sub_path.strip("/"):
                raise InvalidNameError(
                    f"{text!r}: a version reference names a commit, not a path inside one (drop /{sub_path})",
                    name=text)
            try:
                return Ref(text=raw, cid=CID.parse(cid_text), when=when, tag=tag)
            except CIDError as exc:
                raise InvalidNameError(f"{text!r}: {exc}", name=text) from None
    if _looks_like_cid(base):
        try:
            return Ref(text=raw, cid=CID.parse(base), when=when, tag=tag)
        except CIDError:
            pass
    return Ref(text=raw, name=check_name(base), when=when, tag=tag)
