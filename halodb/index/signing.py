"""Signed commits and the trust a reader puts in them.

A signature is Ed25519 by a ``did:key`` over ``b"halodb-commit:" +`` the DAG-CBOR bytes of
the commit without its ``signatures`` field (format version 2). Any reader checks it offline.

A :class:`TrustPolicy` (keys and a threshold) is where trust starts: at the first version
of a history the allowed keys are the policy's; a version signed by at least ``threshold``
allowed keys may add or retire keys for the versions after it (key rotation). A head is
trusted when at least ``threshold`` of the keys allowed at it have validly signed it.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.history import write_commit
>>> from halodb.index.index import Index
>>> from halodb.util.times import parse_time
>>> store = MemoryStore(); root = Index(store).write_root(Index(store).empty())
>>> key = Ed25519PrivateKey.generate()
>>> signed = sign_commit(Commit(root, parse_time("2024-08-12"), "me", "first"), [key])
>>> head = write_commit(store, signed)
>>> valid_signers(signed) == [identity(key)]
True
>>> verify_head(store, "halo", head, TrustPolicy(frozenset({identity(key)})), None).head == str(head)
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from halodb.blockstore.base import BlockStore
from halodb.errors import CIDError, RewindError, TrustError
from halodb.index.history import CommitCache, divergence, versions, walk
from halodb.index.model import Checkpoint, Commit, Signature, Tag, TrustPolicy
from halodb.ipld import CID
from halodb.ipld.didkey import did_key, ed25519_public_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["Checkpoint", "TrustPolicy", "identity", "sign_commit", "sign_tag", "signed_bytes", "tag_signers",
           "valid_signers", "verify_head"]

DOMAIN = b"halodb-commit:"
TAG_DOMAIN = b"halodb-tag:"


def identity(key: Ed25519PrivateKey) -> str:
    """The ``did:key`` of a private key's public half."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return did_key(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def signed_bytes(commit: Commit) -> bytes:
    """What a signature of ``commit`` covers (its signatures excluded)."""
    from halodb.ipld import encode

    return DOMAIN + encode(commit.to_ipld(signatures=False))


def sign_commit(commit: Commit, keys: Sequence[Ed25519PrivateKey]) -> Commit:
    """``commit`` with a signature by each of ``keys`` added (format version 2)."""
    draft = commit if commit.version == 2 else replace(
        commit, signatures=(Signature("did:key:z", b"\0" * 64),))  # any v2 marker: the bytes say version 2
    payload = signed_bytes(draft)
    have = {s.key for s in commit.signatures}
    added = tuple(Signature(identity(k), k.sign(payload)) for k in keys if identity(k) not in have)
    return replace(commit, signatures=commit.signatures + added)


def valid_signers(commit: Commit) -> list[str]:
    """The keys whose signatures on ``commit`` verify, each once, in the commit's order."""
    if not commit.signatures:
        return []
    return _verified(commit.signatures, signed_bytes(commit))


def _tag_bytes(tag: Tag) -> bytes:
    from halodb.ipld import encode

    return TAG_DOMAIN + encode(tag.to_ipld(signatures=False))


def sign_tag(tag: Tag, keys: Sequence[Ed25519PrivateKey]) -> Tag:
    """``tag`` with a signature by each of ``keys`` over ``b"halodb-tag:"`` + its block without signatures."""
    payload = _tag_bytes(tag)
    have = {s.key for s in tag.signatures}
    added = tuple(Signature(identity(k), k.sign(payload)) for k in keys if identity(k) not in have)
    return replace(tag, signatures=tag.signatures + added)


def tag_signers(tag: Tag) -> list[str]:
    """The keys whose signatures on ``tag`` verify, each once, in the tag's order."""
    return _verified(tag.signatures, _tag_bytes(tag)) if tag.signatures else []


def _verified(signatures: Sequence[Signature], payload: bytes) -> list[str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    found: list[str] = []
    for sig in signatures:
        if sig.key in found:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(ed25519_public_key(sig.key)).verify(sig.sig, payload)
        except (InvalidSignature, CIDError, ValueError):
            continue
        found.append(sig.key)
    return found


def _evolve(keys: frozenset[str], commit: Commit, signers: Iterable[str], threshold: int) -> frozenset[str]:
    """The keys allowed after ``commit``: its key changes count when enough allowed keys signed it."""
    if commit.keys is None or len(set(signers) & keys) < threshold:
        return keys
    return (keys | set(commit.keys.add)) - set(commit.keys.retire)


def verify_head(
    store: BlockStore, name: str, head: CID, policy: TrustPolicy, checkpoint: Checkpoint | None, *,
    allow_rewind: bool = False, commits: CommitCache | None = None,
) -> Checkpoint:
    """Check that ``head`` is signed as ``policy`` asks; returns the new checkpoint.

    From a ``checkpoint`` made under the same policy only the versions after it are read; a
    ``head`` that does not descend from the checkpoint's is a :class:`RewindError` (a replayed
    older head, or another history) unless ``allow_rewind``. :class:`TrustError` when the
    head lacks ``policy.threshold`` valid signatures by keys allowed at it.
    """
    if checkpoint is not None and checkpoint.policy != policy.digest():
        checkpoint = None
    if checkpoint is not None and checkpoint.head == str(head):
        return checkpoint
    since = CID.parse(checkpoint.head) if checkpoint is not None else None
    chain: list[Commit] = []
    line: set[CID] = set()
    reached = since is None
    for cid, commit in walk(store, head, cache=commits):
        if cid == since:
            reached = True
            break
        chain.append(commit)
        line.add(cid)
    if not reached:
        assert since is not None
        if not allow_rewind:
            found = divergence(store, since, head, commits, new_line=line)
            where = (f"{versions(found.behind)} behind" if found is not None and found.behind is not None
                     else "not on the history of")
            raise RewindError(
                f"refusing {name} -> {head}: it is {where} the last trusted head {since}; a rollback is not "
                "followed unless allowed (--allow-rewind, allow_rewind=True)",
                name=name, head=head, synced=since, behind=None if found is None else found.behind)
        checkpoint = None
    keys = policy.keys if checkpoint is None else checkpoint.keys
    chain.reverse()
    for commit in chain[:-1]:
        keys = _evolve(keys, commit, valid_signers(commit), policy.threshold)
    top = chain[-1]
    signers = valid_signers(top)
    allowed = [s for s in signers if s in keys]
    if len(allowed) < policy.threshold:
        found_text = ", ".join(signers) if signers else "nobody (no valid signature)"
        raise TrustError(
            f"refusing {name} -> {head}: signed by {found_text}; the trust policy allows "
            f"{', '.join(sorted(keys)) or 'no key'} and needs {policy.threshold} of them",
            name=name, head=head, signers=signers, allowed=sorted(keys), threshold=policy.threshold)
    return Checkpoint(str(head), _evolve(keys, top, signers, policy.threshold), policy.digest(), tuple(signers))
