"""Signing keys: Ed25519 private keys under ``HOME/keys`` (0600), or from ``$HALODB_SIGNING_KEY_FILE``.

A key is never printed and never passed on the command line: ``halodb key create NAME``
writes it and prints only its public identity (a ``did:key``).

>>> import tempfile, pathlib
>>> home = pathlib.Path(tempfile.mkdtemp())
>>> did = create_key(home, "alice")
>>> did.startswith("did:key:z6Mk") and identity(load_key(home, "alice")) == did
True
>>> create_key(home, "alice")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
halodb.errors.SigningKeyError: a signing key named 'alice' exists already (...)
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from halodb.errors import SigningKeyError
from halodb.index.signing import identity

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["KEY_FILE_ENV", "create_key", "identity", "key_names", "load_key"]

KEY_FILE_ENV = "HALODB_SIGNING_KEY_FILE"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_KEY_FILE = 4096


def _path(home: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise SigningKeyError(f"{name[:80]!r} is not a key name (letters, digits, '.', '_', '-'; at most 64)",
                              source=name)
    return home / "keys" / f"{name}.pem"


def create_key(home: Path, name: str) -> str:
    """Make a new Ed25519 key ``name`` in the home (mode 0600); returns its ``did:key``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    path = _path(home, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"a signing key named {name!r} exists already ({path})", source=name) from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    return identity(key)


def key_names(home: Path) -> list[str]:
    """The names of the keys in the home."""
    folder = home / "keys"
    return sorted(p.stem for p in folder.glob("*.pem")) if folder.is_dir() else []


def load_key(home: Path, name: str | None) -> Ed25519PrivateKey:
    """The key ``name`` of the home; with ``$HALODB_SIGNING_KEY_FILE`` set, the key in that file
    (``name`` is then only a label). Refuses a file that group or others may read."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    env = os.environ.get(KEY_FILE_ENV)
    if env:
        path, source = Path(env), f"${KEY_FILE_ENV} ({env})"
    elif name is None:
        raise SigningKeyError(f"no signing key named: give one (--sign NAME) or set ${KEY_FILE_ENV}")
    else:
        path, source = _path(home, name), f"key {name!r}"
        if not path.exists():
            known = ", ".join(key_names(home)) or "none; `halodb key create NAME` makes one"
            raise SigningKeyError(f"no signing key named {name!r} in {home} (keys: {known})", source=name)
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(f"{source}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):o}); "
                                  "chmod 600 it", source=str(path))
        if info.st_size > _MAX_KEY_FILE:
            raise SigningKeyError(f"{source}: {path} is not a key file (too large)", source=str(path))
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"{source}: cannot read {path}: {exc.strerror}", source=str(path)) from None
    except (ValueError, TypeError):
        raise SigningKeyError(f"{source}: {path} is not an unencrypted PEM private key", source=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{source}: {path} holds a {type(key).__name__}, not an Ed25519 key", source=str(path))
    return key
