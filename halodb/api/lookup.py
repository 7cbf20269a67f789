"""Answers without opening the whole registry: ``halodb at --name``.

A tool asking "which CID held X on date Y" a thousand times should pay for the name and a
few blocks, not for the network stores, Arrow or the scanner. :func:`synced_cid_at` is the
question as :meth:`Registry.cid_at` asks the cache; :func:`cid_at_in_home` asks it with
only the home's names opened: first of the blocks in the home's own block store (the
version current then through the head's history tree, the dataset through its index —
a few blocks, each verified, and no DuckDB: importing it alone costs more than the whole
answer), then of its cache file. It says when it could not answer (a block is not in the
home's store and the cache is not current for the name, or the name needs a gateway to
resolve), so the caller falls back to the registry.

>>> import tempfile
>>> from datetime import datetime, timezone
>>> cid_at_in_home(tempfile.mkdtemp(), None, None, "latest", "halo/f1", datetime.now(timezone.utc))
(False, None)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from halodb.api.location import Location, where
from halodb.errors import HaloDBError
from halodb.naming import LocalNames, parse_ref
from halodb.naming.base import NameStore
from halodb.naming.router import NameRouter, kubo_of

if TYPE_CHECKING:
    from halodb.blockstore.base import BlockStore
    from halodb.cache import Cache
    from halodb.index.model import Commit
    from halodb.ipld import CID

__all__ = ["cid_at_in_home", "cids_at_in_home", "dag_cids_at", "synced_cid_at", "synced_cids_at"]

#: a question: (key or path, when)
Question = tuple[str, datetime]


def synced_cid_at(queries: Cache, names: NameStore, name: str, key_or_path: str,
                  when: datetime, *, trusted: Callable[[CID], bool] | None = None) -> tuple[bool, str | None]:
    """``(True, cid or None)`` when the cache holds ``name`` at the head the name resolves to
    now (one indexed query); ``(False, None)`` when it does not (ask the DAG): not at that
    head, not ``key_or_path`` (a partial sync), or ``trusted`` (given the head) says the
    cache may not answer for it."""
    answers = synced_cids_at(queries, names, name, [(key_or_path, when)], trusted=trusted)
    return (False, None) if answers is None else (True, answers[0])


def synced_cids_at(queries: Cache, names: NameStore, name: str, questions: list[Question], *,
                   trusted: Callable[[CID], bool] | None = None, head: CID | None = None) -> list[str | None] | None:
    """:func:`synced_cid_at` for many questions with one resolution and one connection: the
    answers in order, or None when the cache may not answer all of them. ``head``: what
    ``name`` resolves to, when the caller resolved it already."""
    if not _plain_name(name):
        return None
    with queries.session():
        state = queries.sync_state(names.canonical(name))
        head = names.resolve(name).cid if head is None else head
        if state is None or state.head != str(head) or not all(state.covers(k) for k, _ in questions) or (
                trusted is not None and not trusted(head)):
            return None
        return [queries.cid_at(key_or_path, when, state.name) for key_or_path, when in questions]


def dag_cids_at(store: BlockStore, head: CID, questions: list[Question]) -> list[str | None]:
    """The answers to ``questions`` on the history of ``head`` from the DAG in ``store``:
    per question the version current at its date (through the head's history tree) and the
    dataset's entry in that version's index (by key, else by path). Errors of the store
    (a block it lacks) and of the DAG propagate. Its answers are the cache's
    (``tests/test_cli.py::test_the_quick_at_says_what_the_full_command_says``).
    """
    from halodb.index.index import Index
    from halodb.index.timeline import version_at

    index = Index(store)
    commits: dict[CID, Commit] = {}
    answers: list[str | None] = []
    for key_or_path, when in questions:
        found = version_at(store, head, when, commits)
        hit = None if found is None else index.resolve(index.load_root(found[1].index), key_or_path)
        answers.append(hit[1].data if hit else None)
    return answers


def _plain_name(name: str) -> bool:
    """Whether ``name`` is a name at its head (not ``NAME@DATE`` or ``NAME~N``)."""
    ref = parse_ref(name)
    return ref.name is not None and ref.when is None and not ref.back


def _home_blocks_answer(location: Location, head: CID, questions: list[Question]) -> list[str | None] | None:
    """:func:`dag_cids_at` of the home's own SQLite block store, opened for reading only;
    None when there is none, or it lacks a block the answers need (a partial sync, a sync
    through a gateway that fetched only the datasets tree)."""
    from halodb.blockstore.sqlite import DB_NAME, SqliteStore

    if not (location.home / "blocks" / DB_NAME).is_file():
        return None
    try:
        store = SqliteStore(location.home / "blocks", migrate=False, create=False)
    except HaloDBError:
        return None
    try:
        return dag_cids_at(store, head, questions)
    except HaloDBError:
        return None
    finally:
        store.close()


def cid_at_in_home(home: str | Path | None, store: str | None, cache: str | Path | None, name: str,
                   key_or_path: str, when: datetime) -> tuple[bool, str | None]:
    """The answer in the home (paths and store URL as :func:`halodb.open` takes them) from
    its own block store, else (:func:`synced_cid_at`) its cache file; ``(False, None)`` when
    the name does not resolve here or needs a gateway store to (an IPNS name), its head is
    not trusted yet, or neither answers: a block is missing and there is no cache, the
    cache is not at the name's head, or its schema is older than this HaloDB's (the
    registry migrates it)."""
    answers = cids_at_in_home(home, store, cache, name, [(key_or_path, when)])
    return (False, None) if answers is None else (True, answers[0])


def cids_at_in_home(home: str | Path | None, store: str | None, cache: str | Path | None, name: str,
                    questions: list[Question]) -> list[str | None] | None:
    """:func:`cid_at_in_home` for many questions, the name resolved once and the cache
    opened once (when the home's blocks do not answer); None when neither may answer them
    all (the caller asks the registry)."""
    location = where(home, store, cache)
    names = NameRouter(LocalNames(location.home / "names"), kubo=kubo_of(location.store))
    if not _plain_name(name) or names.kind(name) == "ipns" and names.kubo_url is None:
        return None

    def trusted(head: CID) -> bool:  # verified already: else the registry verifies it
        if not (location.home / "trust").is_dir():  # no policy at all (and no import of the trust code)
            return True
        from halodb.api.trust import TrustStore

        trust = TrustStore(location.home)
        canonical = names.canonical(name)
        policy = trust.policy(canonical)
        if policy is None:
            return True
        checkpoint = trust.checkpoint(canonical)
        return checkpoint is not None and checkpoint.head == str(head) and checkpoint.policy == policy.digest()

    try:
        head = names.resolve(name).cid
    except HaloDBError:
        return None  # the registry says why
    if not trusted(head):
        return None
    answers = _home_blocks_answer(location, head, questions)
    if answers is not None or not location.cache.exists():
        return answers
    from halodb.cache import open_for_queries
    from halodb.errors import MigrationError

    try:
        queries = open_for_queries(location.cache)
    except MigrationError:
        return None
    try:
        return synced_cids_at(queries, names, name, questions, head=head)
    finally:
        queries.close()
