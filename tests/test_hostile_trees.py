"""Hostile prolly trees: every walk checks each node against its parent and is bounded.

A tree comes from whoever published it. Seven blocks — six internal levels of 40 links to one
child — would pose as 40^6 leaves (issue 10, defect 6: a sync ran out of memory, ``log`` and
``export-car`` spun); a node of level -1 gave a traceback (defect 11). Here each malformed
node is built from real blocks in a real :class:`DirectoryStore` and every walker — full
iteration, lookup, diff, node walk, the index's entries, ``log``, ``reachable`` — must stop
with a :class:`TreeShapeError` that names the node, its parent and the rule it breaks.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.blockstore import DirectoryStore
from halodb.errors import SchemaError, TreeShapeError
from halodb.index.history import write_commit
from halodb.index.index import Index
from halodb.index.log import log
from halodb.index.model import Commit, Entry, IndexRoot
from halodb.index.prolly import MAX_LEVEL, ProllyTree
from halodb.index.reachable import reachable
from halodb.ipld import CID, make_block
from halodb.sync.pipeline import build_plan
from halodb.util.times import parse_time

from .conftest import Result


def put(store: DirectoryStore, value: Any) -> CID:
    """Store ``value`` as a DAG-CBOR block; its CID."""
    cid, data = make_block(value)
    store.put_block(cid, data)
    return cid


def node(store: DirectoryStore, level: Any, keys: list[Any], values: list[Any]) -> CID:
    return put(store, {"level": level, "keys": keys, "values": values})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DirectoryStore]:
    s = DirectoryStore(tmp_path / "blocks")
    yield s
    s.close()


def item(store: DirectoryStore, key: str) -> dict[str, Any]:
    """A dataset entry whose item block exists."""
    return Entry(put(store, {"id": key})).to_ipld()


# -- a DAG bomb ---------------------------------------------------------------------------------
BOMB_LEVELS = 6
BOMB_FANOUT = 40
BOMB_KEYS = [f"c/{i:02d}" for i in range(BOMB_FANOUT)]


def build_bomb(store: DirectoryStore) -> list[CID]:
    """The seven blocks of the bomb, leaf first: each internal level links its one child 40 times."""
    cids = [node(store, 0, ["c/00"], [item(store, "c/00")])]
    for level in range(1, BOMB_LEVELS + 1):
        cids.append(node(store, level, BOMB_KEYS, [cids[-1]] * BOMB_FANOUT))
    return cids


def bomb_index(store: DirectoryStore, count: int) -> tuple[IndexRoot, CID, list[CID]]:
    """An index root whose datasets tree is the bomb, declaring ``count`` datasets."""
    cids = build_bomb(store)
    empty = node(store, 0, [], [])
    root = IndexRoot(datasets=cids[-1], by_path=empty, by_data=empty, count=count)
    cid, data = make_block(root.to_ipld())
    store.put_block(cid, data)
    return root, cid, cids


def bomb_commit(store: DirectoryStore, count: int = BOMB_FANOUT ** BOMB_LEVELS) -> tuple[CID, list[CID]]:
    """A commit whose datasets tree is the bomb; its CID and the bomb's blocks."""
    _, index_cid, cids = bomb_index(store, count)
    head = write_commit(store, Commit(index_cid, parse_time("2024-08-12T00:00:00Z"), "mallory", "bomb"))
    return head, cids


def assert_names_a_bomb_node(exc: TreeShapeError, cids: list[CID]) -> None:
    assert exc.cid in cids and exc.parent in cids, exc
    assert str(exc.cid) in str(exc) and str(exc.parent) in str(exc)
    assert exc.rule in ("separator", "range"), exc


@pytest.mark.parametrize("count", [1, BOMB_FANOUT ** BOMB_LEVELS], ids=["count-1", "count-40^6"])
def test_a_dag_bomb_stops_every_walk_at_once(store: DirectoryStore, count: int) -> None:
    index = Index(store)
    root, _, cids = bomb_index(store, count)
    tree = index.datasets
    walks: list[Callable[[], object]] = [
        lambda: list(tree.items(root.datasets)),
        lambda: tree.get(root.datasets, "c/00"),
        lambda: tree.get(root.datasets, "c/39"),
        lambda: list(tree.diff(None, root.datasets)),
        lambda: list(tree.node_cids(root.datasets)),
        lambda: list(index.entries(root)),
        lambda: list(index.diff(None, root)),
    ]
    for run in walks:
        with pytest.raises(TreeShapeError) as info:
            run()
        assert_names_a_bomb_node(info.value, cids)


def test_log_and_reachable_stop_at_a_bomb(store: DirectoryStore) -> None:
    index = Index(store)
    head, cids = bomb_commit(store)
    with pytest.raises(TreeShapeError) as info:
        list(log(store, index, head))
    assert_names_a_bomb_node(info.value, cids)
    with pytest.raises(TreeShapeError) as info:
        list(reachable(store, index, head))
    assert_names_a_bomb_node(info.value, cids)


def run_capped(home: Path, *args: str) -> Result:
    """``python -m halodb --home HOME ARGS`` with 2 GiB of address space: a regression fails, it
    does not take the machine's memory (or its time: the timeout is a safety net, not a measure)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    p = subprocess.run([sys.executable, "-m", "halodb", "--home", str(home), *args], capture_output=True,
                       text=True, preexec_fn=cap, timeout=90)
    return Result(p.returncode, p.stdout, p.stderr)


def level_minus_one_commit(store: DirectoryStore) -> tuple[CID, list[CID]]:
    """A commit whose datasets tree is one node of level -1 (under an honest-looking root)."""
    bad = node(store, -1, ["c/01"], [item(store, "c/01")])
    root = node(store, 1, ["c/00", "c/01"], [node(store, 0, ["c/00"], [item(store, "c/00")]), bad])
    empty = node(store, 0, [], [])
    index_cid = Index(store).write_root(IndexRoot(datasets=root, by_path=empty, by_data=empty, count=2))
    return write_commit(store, Commit(index_cid, parse_time("2024-08-12T00:00:00Z"), "mallory", "-1")), [bad]


@pytest.mark.parametrize("build", [bomb_commit, level_minus_one_commit], ids=["dag bomb", "level -1"])
def test_sync_log_and_export_car_exit_2_naming_the_node(
    tmp_path: Path, build: Callable[[DirectoryStore], tuple[CID, list[CID]]]
) -> None:
    home = tmp_path / "home"
    halodb.open(home, create=True).close()
    store = DirectoryStore(home / "blocks")
    head, cids = build(store)
    store.close()
    assert run_capped(home, "publish", "bad", "--cid", str(head)).code == 0
    for args in (("sync", "bad"), ("log", "bad"), ("export-car", "bad", str(tmp_path / "out.car"))):
        r = run_capped(home, *args)
        assert r.code == 2, (args, r)
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.err, (args, r.err)
        assert "tree node" in lines[0] and any(str(c) in lines[0] for c in cids), (args, lines)
    assert not (tmp_path / "out.car").exists()


# -- each rule, one malformed node ---------------------------------------------------------------
@dataclass
class Malformed:
    """A two-level tree (root -> leaves ``A``, ``M``, ``P`` at "a", "m", "p") whose ``M`` is bad."""

    root: CID  #: the tree's root
    bad: CID  #: the malformed node
    rule: str  #: the rule it breaks
    parent_named: bool = True  #: whether the error can name the parent (False: the node itself is the root)


def two_levels(store: DirectoryStore, m: CID) -> CID:
    a = node(store, 0, ["a", "b"], [1, 2])
    p = node(store, 0, ["p", "q"], [5, 6])
    return node(store, 1, ["a", "m", "p"], [a, m, p])


def malformed(store: DirectoryStore, case: str) -> Malformed:
    if case == "wrong level":  # a leaf under a level-2 node
        m = node(store, 0, ["m", "n"], [3, 4])
        mid_a = node(store, 1, ["a"], [node(store, 0, ["a", "b"], [1, 2])])
        mid_p = node(store, 1, ["p"], [node(store, 0, ["p", "q"], [5, 6])])
        return Malformed(node(store, 2, ["a", "m", "p"], [mid_a, m, mid_p]), m, "level")
    if case == "key outside the range":  # "z" belongs after "p"
        m = node(store, 0, ["m", "z"], [3, 4])
        return Malformed(two_levels(store, m), m, "range")
    if case == "unsorted keys":
        m = node(store, 0, ["n", "m"], [3, 4])
        return Malformed(two_levels(store, m), m, "order")
    if case == "first key is not the separator":
        m = node(store, 0, ["n", "o"], [3, 4])
        return Malformed(two_levels(store, m), m, "separator")
    if case == "empty child":
        m = node(store, 0, [], [])
        return Malformed(two_levels(store, m), m, "shape")
    if case == "level -1":
        m = node(store, -1, ["m", "n"], [3, 4])
        return Malformed(two_levels(store, m), m, "level")
    if case == "huge level":
        m = node(store, 2 ** 40, ["m", "n"], [3, 4])
        return Malformed(two_levels(store, m), m, "level")
    if case == "root above the level bound":
        m = node(store, MAX_LEVEL + 1, ["a", "m"], [node(store, 0, ["a"], [1]), node(store, 0, ["m"], [3])])
        return Malformed(m, m, "level", parent_named=False)
    if case == "level is not an integer":
        m = node(store, True, ["m", "n"], [3, 4])
        return Malformed(two_levels(store, m), m, "shape")
    if case == "internal node without links":
        m = node(store, 0, ["m", "n"], [3, 4])
        bad = node(store, 1, ["m"], ["not a link"])
        return Malformed(node(store, 2, ["a", "m"], [node(store, 1, ["a"], [node(store, 0, ["a"], [1])]), bad]),
                         bad, "shape")
    if case == "root of level -1":
        m = node(store, -1, ["m", "n"], [3, 4])
        return Malformed(m, m, "level", parent_named=False)
    raise AssertionError(case)


CASES = ["wrong level", "key outside the range", "unsorted keys", "first key is not the separator", "empty child",
         "level -1", "huge level", "root above the level bound", "level is not an integer", "internal node without links",
         "root of level -1"]


def honest(store: DirectoryStore) -> CID:
    """The tree the malformed ones are diffed with: it shares ``A`` and ``P`` (a diff skips a
    subtree both trees share unread: that is no walk of a malformed node)."""
    return two_levels(store, node(store, 0, ["m", "n"], [30, 40]))


WALKS: dict[str, Callable[[ProllyTree, CID, CID], object]] = {
    "items": lambda tree, root, _: list(tree.items(root)),
    "range scan": lambda tree, root, _: list(tree.items(root, "m", "o")),
    "get": lambda tree, root, _: tree.get(root, "n"),
    "diff from nothing": lambda tree, root, _: list(tree.diff(None, root)),
    "diff from an honest tree": lambda tree, root, good: list(tree.diff(good, root)),
    "diff to an honest tree": lambda tree, root, good: list(tree.diff(root, good)),
    "node walk": lambda tree, root, _: list(tree.node_cids(root)),
    "count": lambda tree, root, _: tree.count(root),
    "mutate": lambda tree, root, _: tree.mutate(root, {"n": 9}),
}


@pytest.mark.parametrize("walk", list(WALKS))
@pytest.mark.parametrize("case", CASES)
def test_every_walk_names_the_malformed_node_its_parent_and_the_rule(
    store: DirectoryStore, case: str, walk: str
) -> None:
    bad = malformed(store, case)
    tree = ProllyTree(store)
    with pytest.raises(TreeShapeError) as info:
        WALKS[walk](tree, bad.root, honest(store))
    exc = info.value
    assert isinstance(exc, SchemaError)  # what callers caught before
    assert exc.cid == bad.bad and exc.rule == bad.rule, exc
    assert str(bad.bad) in str(exc)
    if bad.parent_named:
        assert exc.parent is not None and str(exc.parent) in str(exc), exc


def test_a_node_seen_in_an_earlier_version_is_still_checked_where_it_is_linked_again(store: DirectoryStore) -> None:
    """``reachable`` walks a subtree two versions share once; a later link to it is checked all the same."""
    index = Index(store)
    a = node(store, 0, ["a"], [item(store, "a")])
    m = node(store, 0, ["m"], [item(store, "m")])
    empty = node(store, 0, [], [])
    good = node(store, 1, ["a", "m"], [a, m])
    bad = node(store, 1, ["a", "n"], [a, m])  # m linked by "n": its first key is "m"
    t = parse_time("2024-08-12T00:00:00Z")
    first = write_commit(store, Commit(index.write_root(IndexRoot(good, empty, empty, 2)), t, "me", "one"))
    head = write_commit(store, Commit(index.write_root(IndexRoot(bad, empty, empty, 2)), t, "me", "two", (first,)))
    assert set(reachable(store, index, first)) >= {first, good, a, m}
    with pytest.raises(TreeShapeError) as info:
        list(reachable(store, index, head))
    assert info.value.cid == m and info.value.parent == bad and info.value.rule == "separator"


# -- the count the index root declares ----------------------------------------------------------
def honest_index(store: DirectoryStore, n: int, count: int) -> IndexRoot:
    """An honest datasets tree of ``n`` entries under a root that declares ``count``."""
    index = Index(store)
    blocks = [make_block({"id": f"c/{i:04d}", "pad": "x" * 1500}) for i in range(n)]  # ~40 a 64 KiB leaf
    store.put_many(blocks)
    real = index.apply(index.empty(), {f"c/{i:04d}": Entry(cid) for i, (cid, _) in enumerate(blocks)}, [])
    return IndexRoot(real.datasets, real.by_path, real.by_data, count, inline_items=real.inline_items)


@pytest.mark.parametrize("declared", [0, 999, 1001, 5000])
def test_a_tree_that_holds_other_than_its_declared_count_is_refused(store: DirectoryStore, declared: int) -> None:
    index = Index(store)
    root = honest_index(store, 1000, declared)
    for run in (lambda: list(index.entries(root)), lambda: list(index.diff(None, root))):
        with pytest.raises(TreeShapeError) as info:
            run()
        assert info.value.rule == "count" and info.value.cid == root.datasets, info.value
        assert str(root.datasets) in str(info.value) and str(declared) in str(info.value)
    head = write_commit(store, Commit(index.write_root(root), parse_time("2024-08-12T00:00:00Z"), "me", "m"))
    plan = build_plan(store, index, "n", head, None)  # a first sync reads the leaves, not a diff
    with pytest.raises(TreeShapeError) as info:
        list(plan.commits[0].changes)
    assert info.value.rule == "count" and info.value.cid == root.datasets, info.value
    if declared < 1000:
        with pytest.raises(TreeShapeError):
            list(reachable(store, index, head))


def test_a_negative_count_is_refused(store: DirectoryStore) -> None:
    root = honest_index(store, 3, -1)
    cid, data = make_block(root.to_ipld())
    store.put_block(cid, data)
    with pytest.raises(SchemaError, match="declares -1 datasets"):
        Index(store).load_root(cid)


def test_honest_trees_pass_every_check(store: DirectoryStore) -> None:
    index = Index(store)
    root = honest_index(store, 3000, 3000)
    assert index.datasets.height(root.datasets) >= 2
    assert len(list(index.entries(root))) == 3000
    assert len(list(index.diff(None, root))) == 3000
    changed = index.apply(root, {"c/0001": Entry(put(store, {"id": "x"}))}, ["c/0002"])
    assert [(c.key, c.kind) for c in index.diff(root, changed)] == [("c/0001", "changed"), ("c/0002", "removed")]
    head = write_commit(store, Commit(index.write_root(root), parse_time("2024-08-12T00:00:00Z"), "me", "m"))
    assert [e.added for e in log(store, index, head)] == [3000]
    assert len(set(reachable(store, index, head))) == len(list(reachable(store, index, head)))


def test_the_prefetch_of_an_incremental_sync_fetches_each_bomb_node_once(store: DirectoryStore, tmp_path: Path) -> None:
    """Through a remote store, the level-by-level prefetch that runs before the checked diff
    fetches each distinct node once: the bomb costs its seven blocks, not 40^6 links."""
    from halodb.blockstore.caching import CachingStore
    from halodb.sync import prefetch_changed

    old = node(store, 0, ["c/00"], [item(store, "c/00")])
    bomb = build_bomb(store)
    local = DirectoryStore(tmp_path / "local")
    local.put_block(old, store.get(old))
    try:
        fetched = prefetch_changed(CachingStore(local, store), Index(CachingStore(local, store)), old, bomb[-1])
    finally:
        local.close()
    assert fetched == len(bomb)
