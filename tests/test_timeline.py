"""History trees (commit format 3, issue 15 part 1): the version current at a date in
O(log n) blocks, equal to walking the chain, checked at sync; and a client with no cache
answering ORCESTRA's real question through a Kubo gateway in a handful of requests."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import halodb
from halodb.blockstore import MemoryStore
from halodb.campaign import TreeVersion, flatten_tree, load_tree_history
from halodb.errors import SchemaError
from halodb.index.commit import commit_changes
from halodb.index.history import load_commit, walk, write_commit
from halodb.index.index import Index
from halodb.index.model import Commit, Entry
from halodb.index.timeline import check_history, history_for_child, version_at
from halodb.ipld import CID
from halodb.util.times import parse_time

from .conftest import run_cli, shared_data
from .kubo_node import KuboNode
from .loopback import relay


@pytest.fixture(scope="module")
def history() -> list[TreeVersion]:
    return list(load_tree_history(shared_data("orcestra", "tree-history.jsonl")))


def walked_at(store: MemoryStore, head: CID, when: datetime) -> CID | None:
    """The answer by walking the whole chain: the definition the tree must agree with."""
    return next((cid for cid, c in walk(store, head) if c.time <= when), None)


def probes(times: list[datetime]) -> list[datetime]:
    out = [times[0] - timedelta(days=1)]
    for a, b in zip(times, times[1:] + [times[-1]]):
        out += [a - timedelta(microseconds=1), a, a + (b - a) / 2]
    return out


def test_a_history_of_old_and_new_commits_answers_as_the_walk_does() -> None:
    """Format-1 commits first (as published before format 3), then format-3 ones on top: the
    first of those builds its tree from the chain; every probe time agrees with the walk,
    including versions that share a second."""
    store = MemoryStore()
    index = Index(store)
    base = parse_time("2024-08-01T00:00:00Z")
    times = [base + timedelta(hours=h // 2) for h in range(60)]  # pairs of versions share a time
    head: CID | None = None
    for n, when in enumerate(times):
        key = f"c/d{n % 7}"
        if n < 20:  # the old format: no history
            old = Index(store, inline_items=False)  # and index roots of formats 1 and 2
            root = old.load_root(load_commit(store, head).index) if head else old.empty()
            root_cid = old.write_root(old.apply(root, {key: Entry(store.put(str(n).encode()), None, None)}, set()))
            head = write_commit(store, Commit(index=root_cid, time=when, author="a", message=str(n),
                                              parents=(head,) if head else ()))
            assert load_commit(store, head).version == 1
        else:
            head = commit_changes(store, index, head, {key: Entry(store.put(str(n).encode()), None, None)}, set(),
                                  time=when, author="a", message=str(n))
            commit = load_commit(store, head)
            assert commit.version == 3 and commit.height == n
            check_history(store, head, commit)
    assert head is not None
    for when in probes(times):
        found = version_at(store, head, when)
        assert (found[0] if found else None) == walked_at(store, head, when), when


def test_a_made_up_history_is_refused() -> None:
    store = MemoryStore()
    index = Index(store)
    root = index.write_root(index.empty())
    first = commit_changes(store, index, None, {}, set(), time=parse_time("2024-08-01"), author="a", message="1")
    second = commit_changes(store, index, first, {}, set(), time=parse_time("2024-08-02"), author="a", message="2")
    honest = load_commit(store, second)
    forged_tree, _ = history_for_child(store, None)  # claims no earlier version
    for forged in (Commit(index=root, time=honest.time, author="a", message="x", parents=(second,),
                          history=honest.history, height=2),  # its parent's tree, not its own
                   Commit(index=root, time=honest.time, author="a", message="x", parents=(second,),
                          history=forged_tree, height=2),
                   Commit(index=root, time=honest.time, author="a", message="x", parents=(second,),
                          history=history_for_child(store, second)[0], height=7)):
        cid = write_commit(store, forged)
        with pytest.raises(SchemaError, match="history that is not its main line"):
            check_history(store, cid, forged)


def test_sync_refuses_a_head_with_a_forged_history(tmp_path: Path) -> None:
    with halodb.open(tmp_path / "home", create=True) as reg:
        reg.import_tree({"a.zarr": "bafkqaaa"}, time="2024-08-01", message="1")
        good = reg.import_tree({"a.zarr": "bafkqaaa", "b.zarr": "bafkqaaa"}, time="2024-08-02", message="2")
        honest = load_commit(reg.store, good)
        forged = write_commit(reg.store, Commit(index=honest.index, time=parse_time("2024-08-03"), author="a",
                                                 message="forged", parents=(good,), history=honest.history, height=2))
        reg.publish("good", good)
        reg.sync("good")
        reg.publish("forged", forged)
    r = run_cli(tmp_path / "home", "sync", "forged")
    assert r.code == 2 and "history that is not its main line" in r.err and r.err.count("\n") == 1, r.err
    r = run_cli(tmp_path / "home", "sql", "SELECT count(*) FROM name_commits", "--format", "json")
    assert json.loads(r.out) == [{"count_star()": 2}]  # only the good name's


@pytest.fixture(scope="module")
def published(history: list[TreeVersion], kubo_local_only: KuboNode,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KuboNode, CID]]:
    """ORCESTRA's 156 versions, written straight into a Kubo node."""
    home = tmp_path_factory.mktemp("timeline") / "writer"
    with halodb.open(home, store=kubo_local_only.api, create=True) as reg:
        head = None
        for v in history:
            head = reg.import_tree(v.tree, time=v.time, message=v.message)
    assert head is not None
    yield kubo_local_only, head


def test_a_client_with_no_cache_answers_in_a_few_gateway_requests(
        history: list[TreeVersion], published: tuple[KuboNode, CID], tmp_path: Path) -> None:
    """The issue's question: `halodb --store GATEWAY at PATH DATE --name HEAD` over the real
    history took 138 gateway requests walking the chain; the target is 16."""
    node, head = published
    flats = [flatten_tree(v.tree) for v in history]
    times = [v.time for v in history]
    asked = []
    for n, (version, path) in enumerate([(40, None), (3, None), (150, None), (0, None)]):
        path = sorted(flats[version])[n]
        when = times[version] + (times[version + 1] - times[version]) / 2
        assert flats[bisect.bisect_right(times, when) - 1] is flats[version]
        with relay(node.gateway) as (url, handler):
            r = run_cli(tmp_path / f"home{n}", "--store", url, "at", path, when.isoformat(), "--name", str(head))
        assert r.code == 0, r.err
        assert r.out.strip() == flats[version][path]
        asked.append(len(handler.calls))
    print("gateway requests per question:", asked)
    assert max(asked) <= 16, asked
    before_all = times[0] - timedelta(days=1)
    with relay(node.gateway) as (url, handler):
        r = run_cli(tmp_path / "early", "--store", url, "at", sorted(flats[0])[0], before_all.isoformat(),
                    "--name", str(head))
    assert r.code == 1 and len(handler.calls) <= 4, (r.err, handler.calls)
    with relay(node.gateway) as (url, handler):
        r = run_cli(tmp_path / "get", "--store", url, "get", sorted(flats[40])[0], "--at",
                    (times[40] + timedelta(seconds=1)).isoformat(), "--name", str(head))
    assert r.code == 0, r.err
    assert json.loads(r.out)["assets"]["data"]["href"] == f"ipfs://{flats[40][sorted(flats[40])[0]]}"
    assert len(handler.calls) <= 17, handler.calls
