"""Per-name trust policies in the home: ``HOME/trust/<name>.json`` (keys, threshold) and,
beside it, ``<name>.verified.json``: the last head verified under it (see
:func:`halodb.index.signing.verify_head`).

>>> import tempfile, pathlib
>>> trust = TrustStore(pathlib.Path(tempfile.mkdtemp()))
>>> did = "did:key:z6MkeTG3bFFSLYVU7VqhgZxqr6YzpaGrQtFMh1uvqGy1vDnP"
>>> trust.add("halo.example.org", did).threshold
1
>>> sorted(trust.policies())
['halo.example.org']
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halodb.errors import CIDError, InputError
from halodb.index.model import MAX_KEY_CHANGES, Checkpoint, KeyChanges, TrustPolicy
from halodb.ipld.didkey import ed25519_public_key
from halodb.util.fs import write_json_atomic

__all__ = ["TrustStore", "key_changes", "load_policy_file", "trust_file"]

_MAX_FILE = 1 << 20


def trust_file(home: Path, name: str, suffix: str = ".json") -> Path:
    """Where the policy of (canonical) ``name`` lives."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return home / "trust" / f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:12]}{suffix}"


def _read(path: Path) -> Any:
    if path.stat().st_size > _MAX_FILE:
        raise InputError(f"{path}: larger than {_MAX_FILE} bytes", source=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})", source=str(path)) from None


def load_policy_file(path: Path) -> tuple[str | None, TrustPolicy]:
    """A policy file: ``{"name": ..., "keys": [did:key...], "threshold": K}``."""
    try:
        value = _read(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such trust policy file", source=str(path)) from None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InputError(f"{path}: a trust policy is {{\"keys\": [did:key, ...], \"threshold\": K}}", source=str(path))
    keys = value["keys"]
    if not keys:  # would trust no one: every head refused, with nothing to say whom to add
        raise InputError(f"{path}: the trust policy lists no keys; give the did:key of each publisher to trust",
                         source=str(path))
    for did in keys:
        try:
            ed25519_public_key(did)
        except CIDError as exc:
            raise InputError(f"{path}: {exc}", source=str(path)) from None
    threshold = value.get("threshold", 1)
    if type(threshold) is not int or not 1 <= threshold <= max(1, len(keys)):
        raise InputError(f"{path}: threshold must be a whole number from 1 to the number of keys", source=str(path))
    name = value.get("name")
    return (name if isinstance(name, str) else None), TrustPolicy(frozenset(keys), threshold)


class TrustStore:
    """The trust policies of one home."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def policy(self, name: str) -> TrustPolicy | None:
        """The policy of canonical ``name``; None when it has none."""
        path = trust_file(self.home, name)
        if not path.exists():
            return None
        return load_policy_file(path)[1]

    def policies(self) -> dict[str, TrustPolicy]:
        folder = self.home / "trust"
        out: dict[str, TrustPolicy] = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if path.name.endswith(".verified.json"):
                continue
            name, policy = load_policy_file(path)
            if name is not None:
                out[name] = policy
        return out

    def _write(self, name: str, policy: TrustPolicy) -> None:
        write_json_atomic(trust_file(self.home, name),
                          {"name": name, "keys": sorted(policy.keys), "threshold": policy.threshold}, indent=2)

    def add(self, name: str, did: str, threshold: int | None = None) -> TrustPolicy:
        """Allow ``did`` to sign ``name``'s versions (and set the threshold, when given)."""
        try:
            ed25519_public_key(did)
        except CIDError as exc:
            raise InputError(str(exc), source=did) from None
        old = self.policy(name)
        keys = (old.keys if old else frozenset()) | {did}
        wanted = threshold if threshold is not None else (old.threshold if old else 1)
        if not 1 <= wanted <= len(keys):
            raise InputError(f"threshold {wanted} for {name}: must be from 1 to its {len(keys)} key(s)", source=name)
        policy = TrustPolicy(keys, wanted)
        (self.home / "trust").mkdir(parents=True, exist_ok=True)
        self._write(name, policy)
        return policy

    def remove(self, name: str, did: str | None = None) -> TrustPolicy | None:
        """Stop trusting ``did`` for ``name`` (None: drop the whole policy); the policy left."""
        old = self.policy(name)
        if old is None or (did is not None and did not in old.keys):
            raise InputError(f"{name} has no trust policy{'' if did is None else ' allowing ' + did}", source=name)
        keys = old.keys - {did} if did is not None else frozenset()
        if not keys:
            trust_file(self.home, name).unlink()
            trust_file(self.home, name, ".verified.json").unlink(missing_ok=True)
            return None
        policy = TrustPolicy(keys, min(old.threshold, len(keys)))
        self._write(name, policy)
        return policy

    def checkpoint(self, name: str) -> Checkpoint | None:
        path = trust_file(self.home, name, ".verified.json")
        try:
            value = _read(path)
            return Checkpoint(head=str(value["head"]), keys=frozenset(map(str, value["keys"])),
                              policy=str(value["policy"]), signers=tuple(map(str, value.get("signers", []))))
        except FileNotFoundError:
            return None
        except (InputError, KeyError, TypeError):
            return None  # a damaged checkpoint only costs a full verification

    def save_checkpoint(self, name: str, checkpoint: Checkpoint) -> None:
        write_json_atomic(trust_file(self.home, name, ".verified.json"), {
            "head": checkpoint.head, "keys": sorted(checkpoint.keys), "policy": checkpoint.policy,
            "signers": list(checkpoint.signers)})


def key_changes(add: Sequence[str], retire: Sequence[str]) -> KeyChanges | None:
    """The key changes a commit carries (None: none), each a checked ``did:key``."""
    if not add and not retire:
        return None
    for did in [*add, *retire]:
        try:
            ed25519_public_key(did)
        except CIDError as exc:
            raise InputError(str(exc), source=did) from None
    if len(add) > MAX_KEY_CHANGES or len(retire) > MAX_KEY_CHANGES:
        raise InputError(f"a version adds, and retires, at most {MAX_KEY_CHANGES} keys")
    return KeyChanges(add=tuple(dict.fromkeys(add)), retire=tuple(dict.fromkeys(retire)))
