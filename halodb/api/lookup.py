"""Answers from a synced cache without opening the whole registry: ``halodb at --name``.

A tool asking "which CID held X on date Y" a thousand times should pay for DuckDB and the
name, not for the block stores, the codec, Arrow or the scanner. :func:`synced_cid_at` is
the question as :meth:`Registry.cid_at` asks the cache; :func:`cid_at_in_home` asks it
with only the home's names and its cache file opened, and says when it could not answer
(the cache is not current for the name, or the name needs a gateway to resolve), so the
caller falls back to the registry.

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

from halodb.api.location import where
from halodb.naming import LocalNames, parse_ref
from halodb.naming.base import NameStore
from halodb.naming.router import NameRouter, kubo_of

if TYPE_CHECKING:
    from halodb.cache import Cache
    from halodb.ipld import CID

__all__ = ["cid_at_in_home", "cids_at_in_home", "synced_cid_at", "synced_cids_at"]

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
                   trusted: Callable[[CID], bool] | None = None) -> list[str | None] | None:
    """:func:`synced_cid_at` for many questions with one resolution and one connection: the
    answers in order, or None when the cache may not answer all of them."""
    ref = parse_ref(name)
    if ref.name is None or ref.when is not None or ref.back:
        return None
    with queries.session():
        state = queries.sync_state(names.canonical(name))
        head = names.resolve(name).cid
        if state is None or state.head != str(head) or not all(state.covers(k) for k, _ in questions) or (
                trusted is not None and not trusted(head)):
            return None
        return [queries.cid_at(key_or_path, when, state.name) for key_or_path, when in questions]


def cid_at_in_home(home: str | Path | None, store: str | None, cache: str | Path | None, name: str,
                   key_or_path: str, when: datetime) -> tuple[bool, str | None]:
    """:func:`synced_cid_at` in the home (paths and store URL as :func:`halodb.open` takes
    them), opening only its names and its cache file; ``(False, None)`` when there is no
    cache, the cache's schema is older than this HaloDB's (the registry migrates it), or the
    name is an IPNS name that only a gateway store could resolve."""
    answers = cids_at_in_home(home, store, cache, name, [(key_or_path, when)])
    return (False, None) if answers is None else (True, answers[0])


def cids_at_in_home(home: str | Path | None, store: str | None, cache: str | Path | None, name: str,
                    questions: list[Question]) -> list[str | None] | None:
    """:func:`cid_at_in_home` for many questions, the cache opened once; None when it may
    not answer them all (the caller asks the registry)."""
    from halodb.cache import open_for_queries
    from halodb.errors import MigrationError

    location = where(home, store, cache)
    if not location.cache.exists():
        return None
    names = NameRouter(LocalNames(location.home / "names"), kubo=kubo_of(location.store))
    if names.kind(name) == "ipns" and names.kubo_url is None:
        return None
    try:
        queries = open_for_queries(location.cache)
    except MigrationError:
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
        return synced_cids_at(queries, names, name, questions, trusted=trusted)
    finally:
        queries.close()
