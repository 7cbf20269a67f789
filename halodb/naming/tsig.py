"""TSIG keys for signed DNS updates: from a BIND key file or the environment, never the command line.

Where a key comes from, in order: an explicit key-file path; ``HALODB_TSIG_KEYFILE`` (a
BIND key file, as ``tsig-keygen`` writes it); ``HALODB_TSIG_KEY`` as
``[algorithm:]name:base64secret`` (algorithm default ``hmac-sha256``). Errors say what is
wrong and where, and never print the secret.

>>> key = key_from_text("hmac-sha256:publisher:c2VjcmV0LWtleS1ieXRlcw==", source="example")
>>> (key.name.to_text(), key.algorithm.to_text())
('publisher.', 'hmac-sha256.')
>>> parse_keyfile('key "k1" { algorithm hmac-sha512; secret "c2VjcmV0"; };', source="f")[0].name.to_text()
'k1.'
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path

import dns.name
import dns.tsig

from halodb.errors import InputError
from halodb.naming._boundary import TSIG_KEY

DEFAULT_ALGORITHM = "hmac-sha256"
ALGORITHMS = ("hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")

_COMMENTS_RE = re.compile(r"/\*.*?\*/|//[^\n]*|#[^\n]*", re.DOTALL)
_KEY_RE = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_ALG_RE = re.compile(r"algorithm\s+\"?([A-Za-z0-9-]+)\"?\s*;")
_SECRET_RE = re.compile(r'secret\s+"([^"]*)"\s*;')


def _key(name: str, algorithm: str, secret: str, source: str) -> dns.tsig.Key:
    alg = algorithm.lower()
    if alg not in ALGORITHMS:
        raise InputError(f"TSIG key {name!r} from {source}: unsupported algorithm {algorithm!r} "
                         f"(use one of {', '.join(ALGORITHMS)})", source=source)
    try:
        raw = binascii.a2b_base64(secret.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InputError(f"TSIG key {name!r} from {source}: the secret is not base64", source=source) from None
    if not raw:
        raise InputError(f"TSIG key {name!r} from {source}: the secret is empty", source=source)
    try:
        return dns.tsig.Key(dns.name.from_text(name), raw, alg)
    except TSIG_KEY.caught as exc:
        raise TSIG_KEY.translate(exc, f"TSIG key {name!r} from {source}: {exc}", source=source) from None


def parse_keyfile(text: str, *, source: str) -> list[dns.tsig.Key]:
    """Every ``key "name" { algorithm ...; secret "..."; };`` statement in ``text``."""
    keys = []
    for m in _KEY_RE.finditer(_COMMENTS_RE.sub("", text)):
        name, body = m.group(1), m.group(2)
        alg, secret = _ALG_RE.search(body), _SECRET_RE.search(body)
        if alg is None or secret is None:
            missing = "algorithm" if alg is None else "secret"
            raise InputError(f"TSIG key file {source}: key {name!r} has no {missing}", source=source)
        keys.append(_key(name, alg.group(1), secret.group(1), source))
    if not keys:
        raise InputError(f'TSIG key file {source}: no key statement (key "NAME" {{ algorithm ...; secret "..."; }};)',
                         source=source)
    return keys


def key_from_file(path: str | os.PathLike[str], name: str | None = None) -> dns.tsig.Key:
    """The key named ``name`` (or the only key) in a BIND key file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"TSIG key file {p}: cannot read it ({exc.strerror or exc})", source=str(p)) from None
    keys = parse_keyfile(text, source=str(p))
    if name is not None:
        try:
            wanted = dns.name.from_text(name)
        except TSIG_KEY.caught as exc:
            raise TSIG_KEY.translate(exc, f"TSIG key file {p}: {name!r} is not a key name ({exc})", source=str(p)) from None
        for k in keys:
            if k.name == wanted:
                return k
        raise InputError(f"TSIG key file {p}: no key named {name!r}", source=str(p))
    if len(keys) > 1:
        names = ", ".join(k.name.to_text(omit_final_dot=True) for k in keys)
        raise InputError(f"TSIG key file {p} holds several keys ({names}): say which", source=str(p))
    return keys[0]


def key_from_text(text: str, *, source: str = "HALODB_TSIG_KEY") -> dns.tsig.Key:
    """``[algorithm:]name:base64secret`` → a key."""
    parts = text.strip().split(":")
    if len(parts) == 2:
        parts.insert(0, DEFAULT_ALGORITHM)
    if len(parts) != 3 or not parts[1]:
        raise InputError(f"{source}: expected [algorithm:]name:base64secret", source=source)
    return _key(parts[1], parts[0], parts[2], source)


def load_key(keyfile: str | os.PathLike[str] | None = None, *, name: str | None = None,
             env: Mapping[str, str] | None = None) -> dns.tsig.Key:
    """The TSIG key to sign updates with (see the module docstring for where it comes from)."""
    env = os.environ if env is None else env
    if keyfile is not None:
        return key_from_file(keyfile, name)
    if env.get("HALODB_TSIG_KEYFILE"):
        return key_from_file(env["HALODB_TSIG_KEYFILE"], name)
    if env.get("HALODB_TSIG_KEY"):
        return key_from_text(env["HALODB_TSIG_KEY"])
    raise InputError("no TSIG key to sign the DNS update: set HALODB_TSIG_KEYFILE to a BIND key file "
                     "(tsig-keygen NAME > FILE) or HALODB_TSIG_KEY to [algorithm:]name:base64secret",
                     source="HALODB_TSIG_KEYFILE")
