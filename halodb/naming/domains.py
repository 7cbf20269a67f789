"""Domain names as HaloDB accepts them for DNSLink (no DNS library needed to check them).

>>> is_domain("latest.orcestra-campaign.org"), is_domain("latest")
(True, False)
>>> dnslink_domain("ipns://Latest.Orcestra-Campaign.org./path")
'latest.orcestra-campaign.org'
"""

from __future__ import annotations

import re

from halodb.errors import InvalidNameError

_LABEL_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def is_domain(text: str) -> bool:
    """A DNS name of two or more labels (an IPNS key or peer ID has no dot)."""
    name = text.rstrip(".")
    labels = name.split(".")
    return len(labels) >= 2 and len(name) <= 253 - len("_dnslink.") and all(_LABEL_RE.match(x) for x in labels)


def dnslink_domain(name: str) -> str:
    """The domain in ``D``, ``dnslink:D``, ``ipns://D``, ``/ipns/D`` or ``_dnslink.D`` (lowercased)."""
    text = name.strip()
    for prefix in ("dnslink:", "ipns://", "/ipns/"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].split("/")[0]
            break
    text = text.rstrip(".").lower()
    text = text.removeprefix("_dnslink.")
    if not is_domain(text):
        raise InvalidNameError(f"{name!r} is not a DNS domain (e.g. latest.orcestra-campaign.org)", name=name)
    return text
