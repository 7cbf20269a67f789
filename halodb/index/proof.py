"""Inclusion proofs: "dataset X had data CID Y in version Z", checkable by anyone, offline.

A proof is a CAR whose one root is a claim block ``{type: "halodb/proof", head, key, at}``
and whose other blocks are exactly those a reader touches to answer the claim from
``head``: the commits from the head back to the version current at ``at``, that version's
index root, the prolly-tree path to the entry (and, for a path, the ``by_path`` path), and
the item block (none for an item held inline in its leaf, index format 3). Verifying replays that walk in a store holding only those blocks, each checked
against its CID: a changed byte, a missing block or a path to another entry fails.

>>> from halodb.blockstore import MemoryStore
>>> from halodb.index.commit import commit_changes
>>> from halodb.index.model import Entry
>>> from halodb.ipld import CID
>>> from halodb.util.times import parse_time
>>> import io
>>> store = MemoryStore(); item = store.put(b"\\xa0")
>>> head = commit_changes(store, Index(store), None, {"c/a": Entry(item, "bafkqaaa", "p/a.zarr")}, set(),
...                       time=parse_time("2024-08-12"), author="me", message="first")
>>> car = io.BytesIO(); _ = write_proof(store, head, "p/a.zarr", parse_time("2024-09-01"), car)
>>> answer = verify_proof(io.BytesIO(car.getvalue()))
>>> answer.key, answer.data, answer.version == head
('c/a', 'bafkqaaa', True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from os import PathLike

from halodb.blockstore.base import BlockStore
from halodb.blockstore.car import CarSource, read_car, write_car
from halodb.blockstore.memory import MemoryStore
from halodb.errors import CarError, HaloDBError, ProofError
from halodb.index.history import load_commit
from halodb.index.timeline import version_at
from halodb.index.index import Index
from halodb.index.model import Commit, TrustPolicy
from halodb.index.prolly import NodeCache
from halodb.ipld import CID, decode, make_block
from halodb.util.oserrors import describe_os_error
from halodb.util.times import format_time, parse_time

__all__ = ["ProofAnswer", "write_proof", "verify_proof", "MAX_PROOF_BLOCKS"]

MAX_PROOF_BLOCKS = 100_000  #: a proof is a few hundred blocks at most; more is not one


class _Recording(BlockStore):
    """Reads through to ``inner``, keeping every block read, in order."""

    def __init__(self, inner: BlockStore) -> None:
        super().__init__()
        self.inner = inner
        self.read: dict[CID, bytes] = {}

    def _get(self, cid: CID) -> bytes | None:
        data = self.inner.get(cid)
        self.read[cid] = data
        return data

    def _has(self, cid: CID) -> bool:
        return self.inner.has(cid)

    def describe(self) -> str:
        return self.inner.describe()


@dataclass(frozen=True)
class ProofAnswer:
    """What a proof proves: ``key`` (None: no such dataset) had ``data`` in ``version`` (its
    ``time``), on the history whose head is ``head``, which ``signers`` signed."""

    key_or_path: str
    at: datetime
    head: CID
    version: CID
    time: datetime
    key: str | None
    data: str | None
    item: CID | None
    signers: list[str]
    blocks: int


def _answer(store: BlockStore, head: CID, key_or_path: str, when: datetime) -> tuple[CID, Commit, tuple[str, CID, str | None] | None]:
    found = version_at(store, head, when)
    if found is None:
        raise ProofError(f"no version of {head} at or before {format_time(when)}")
    index = Index(store, NodeCache())
    hit = index.resolve(index.load_root(found[1].index), key_or_path)
    if hit is None:
        return found[0], found[1], None
    key, entry = hit
    index.item(entry)  # the item is part of the answer (in format 3 a small one is in the leaf)
    return found[0], found[1], (key, entry.item, entry.data)


def write_proof(store: BlockStore, head: CID, key_or_path: str, when: datetime, target: CarSource) -> int:
    """Write the proof of what ``key_or_path`` held at ``when`` on ``head``'s history; returns its blocks."""
    recording = _Recording(store)
    load_commit(recording, head)
    _answer(recording, head, key_or_path, when)
    claim, claim_bytes = make_block({"type": "halodb/proof", "version": 1, "head": head, "key": key_or_path,
                                     "at": format_time(when)})

    def blocks() -> Iterator[tuple[CID, bytes]]:
        yield claim, claim_bytes
        yield from recording.read.items()

    return write_car(target, [claim], blocks())


def verify_proof(source: CarSource, policy: TrustPolicy | None = None) -> ProofAnswer:
    """Check a proof offline; :class:`ProofError` naming what is wrong, unless it proves its claim
    (and, with a ``policy``, its head is signed by ``policy.threshold`` of the policy's keys)."""
    where = str(source) if isinstance(source, (str, PathLike)) else "the proof"
    try:
        roots, blocks = read_car(source)
        store = MemoryStore()
        for n, block in enumerate(blocks):
            if n >= MAX_PROOF_BLOCKS:
                raise ProofError(f"{where}: more than {MAX_PROOF_BLOCKS} blocks; not a proof", source=str(where))
            store.put_many([block])
        if len(roots) != 1:
            raise ProofError(f"{where}: a proof has one root (its claim), not {len(roots)}", source=str(where))
        claim = decode(store.get(roots[0]), cid=roots[0])
        if not isinstance(claim, dict) or claim.get("type") != "halodb/proof" or claim.get("version") != 1:
            raise ProofError(f"{where}: its root is not a HaloDB proof claim", source=str(where))
        head, key_or_path, at = claim.get("head"), claim.get("key"), claim.get("at")
        if not isinstance(head, CID) or not isinstance(key_or_path, str) or not isinstance(at, str):
            raise ProofError(f"{where}: its claim lacks head, key or at", source=str(where))
        when = parse_time(at)
        version, commit, hit = _answer(store, head, key_or_path, when)
        from halodb.index.signing import valid_signers

        signers = valid_signers(load_commit(store, head))
    except ProofError:
        raise
    except CarError as exc:
        if isinstance(exc.__cause__, OSError) and exc.offset == 0:  # the file not read at all
            raise ProofError(f"{where}: {describe_os_error(exc.__cause__)}", source=str(where)) from None
        raise ProofError(f"{where} does not prove its claim: {exc}", source=str(where)) from None
    except (HaloDBError, ValueError) as exc:
        raise ProofError(f"{where} does not prove its claim: {exc}", source=str(where)) from None
    if policy is not None and len(set(signers) & policy.keys) < policy.threshold:
        found = ", ".join(signers) or "nobody (no valid signature)"
        raise ProofError(f"{where}: its head {head} is signed by {found}; the trust policy needs "
                         f"{policy.threshold} of {', '.join(sorted(policy.keys))}", source=str(where))
    return ProofAnswer(key_or_path=key_or_path, at=when, head=head, version=version, time=commit.time,
                       key=hit[0] if hit else None, item=hit[1] if hit else None, data=hit[2] if hit else None,
                       signers=signers, blocks=len(store))
