"""The prolly tree: determinism, history independence, O(k log n) updates, diff."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halodb.blockstore import MemoryStore
from halodb.errors import SchemaError
from halodb.index.prolly import DELETE, Encoded, Node, ProllyTree, TreeParams
from halodb.ipld import CID, make_block
from halodb.ipld.codec import encode_shallow

SMALL = TreeParams(leaf_fanout=4, branch_fanout=4)


def model_diff(a: dict[str, int], b: dict[str, int]) -> list[tuple[str, int | None, int | None]]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


keys = st.text(alphabet="abcdefgh/ü水", min_size=0, max_size=6)
change_sets = st.lists(st.dictionaries(keys, st.one_of(st.integers(0, 3), st.just(None)), max_size=25), max_size=12)


@settings(max_examples=150, deadline=None)
@given(change_sets)
def test_mutate_equals_build_and_diff_matches_model(batches: list[dict[str, int | None]]) -> None:
    tree = ProllyTree(MemoryStore(), SMALL)
    root = tree.build([])
    model: dict[str, int] = {}
    for batch in batches:
        changes = {k: (DELETE if v is None else v) for k, v in batch.items()}
        new_root = tree.mutate(root, changes)
        new_model = dict(model)
        for k, v in batch.items():
            if v is None:
                new_model.pop(k, None)
            else:
                new_model[k] = v
        assert new_root == tree.build(new_model.items()), "mutation must give the canonical tree"
        assert dict(tree.items(new_root)) == new_model
        assert [(c.key, c.old, c.new) for c in tree.diff(root, new_root)] == model_diff(model, new_model)
        assert [(c.key, c.old, c.new) for c in tree.diff(new_root, root)] == model_diff(new_model, model)
        root, model = new_root, new_model


#: leaves end by size (index format 3): entries of 2 to ~40 bytes against 40-byte leaves
SIZED = TreeParams(leaf_fanout=4, branch_fanout=4, leaf_bytes=40)
sized_change_sets = st.lists(st.dictionaries(keys, st.one_of(st.text(alphabet="xyz", max_size=30), st.just(None)),
                                             max_size=25), max_size=12)


@settings(max_examples=150, deadline=None)
@given(sized_change_sets)
def test_leaves_cut_by_size_stay_canonical_when_values_move_boundaries(batches: list[dict[str, str | None]]) -> None:
    """A value that grows or shrinks may make its entry a boundary or not: mutate re-cuts the
    leaves it touches and still reaches the tree build gives, and diff still matches."""
    tree = ProllyTree(MemoryStore(), SIZED)
    root = tree.build([])
    model: dict[str, str] = {}
    for batch in batches:
        new_root = tree.mutate(root, {k: (DELETE if v is None else v) for k, v in batch.items()})
        new_model = {**model, **{k: v for k, v in batch.items() if v is not None}}
        for k in [k for k, v in batch.items() if v is None]:
            new_model.pop(k, None)
        assert new_root == tree.build(new_model.items()), "mutation must give the canonical tree"
        assert dict(tree.items(new_root)) == new_model
        assert [(c.key, c.old, c.new) for c in tree.diff(root, new_root)] == model_diff(model, new_model)  # type: ignore[arg-type]
        root, model = new_root, new_model


_LINK = CID.for_bytes(b"item")
#: values of every kind a tree holds: what encode_shallow writes itself, and what it hands to encode
tree_values = st.one_of(
    st.none(), st.integers(-(2**64), 2**64 - 1), st.text(alphabet="xyzé", max_size=30), st.just(_LINK),
    st.dictionaries(st.sampled_from(["item", "data", "path", "doi"]),
                    st.one_of(st.text(max_size=12), st.just(_LINK), st.binary(max_size=30)), max_size=4),
    st.lists(st.integers(0, 3), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, tree_values, max_size=120), st.sampled_from([SMALL, SIZED]), st.integers(1, 3000))
def test_build_sorted_writes_the_tree_build_writes(entries: dict[str, Any], params: TreeParams, batch: int) -> None:
    """The streaming builder writes each node from its entries' encodings: the same blocks as
    build, which encodes each node whole, whatever the values and however it batches writes."""
    one, other = MemoryStore(), MemoryStore()
    root = ProllyTree(one, params).build(entries.items())
    assert ProllyTree(other, params).build_sorted(iter(sorted(entries.items())), batch_bytes=batch) == root
    assert {c: one.get(c) for c in one.iter_cids()} == {c: other.get(c) for c in other.iter_cids()}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, tree_values, min_size=1, max_size=120), st.sampled_from([SMALL, SIZED]), st.data())
def test_build_sorted_with_the_leaves_of_its_tail_built_apart_writes_the_same_tree(
        entries: dict[str, Any], params: TreeParams, data: st.DataObject) -> None:
    """A tree built in two parts (the leaves from a key on by leaves_sorted, as a second process
    does; the rest by build_sorted, which takes them once its leaf holding that key ends) is
    the tree build writes, block for block, wherever the split falls."""
    ordered = sorted(entries.items())
    at = data.draw(st.integers(0, len(ordered) - 1))
    one, other = MemoryStore(), MemoryStore()
    root = ProllyTree(one, params).build(ordered)
    tree = ProllyTree(other, params)
    asked: list[str] = []

    def leaves() -> list[tuple[str, CID]]:
        asked.append(ordered[at][0])
        return tree.leaves_sorted(iter(ordered[at:]), batch_bytes=data.draw(st.integers(1, 3000)))

    assert tree.build_sorted(iter(ordered), tail=(ordered[at][0], leaves), batch_bytes=7) == root
    assert asked == [ordered[at][0]]
    assert {c: one.get(c) for c in one.iter_cids()} == {c: other.get(c) for c in other.iter_cids()}


def _in_runs(ordered: list[tuple[str, Any]], cuts: list[int]) -> list[tuple[str, Any] | Encoded]:
    """``ordered`` as runs :class:`Encoded` cut at ``cuts``, every third run left as pairs."""
    bounds = sorted({0, len(ordered), *(c % (len(ordered) + 1) for c in cuts)})
    out: list[tuple[str, Any] | Encoded] = []
    for n, (a, b) in enumerate(zip(bounds, bounds[1:])):
        part = ordered[a:b]
        if n % 3 == 2:
            out.extend(part)
        else:
            out.append(Encoded([k for k, _ in part], [encode_shallow(v) for _, v in part]))
    return out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@settings(max_examples=100, deadline=None)
@given(entries=st.dictionaries(keys, tree_values, min_size=1, max_size=120), params=st.sampled_from([SMALL, SIZED]),
       data=st.data())
def test_runs_of_encoded_entries_build_the_tree_their_pairs_build(
        compiled: bool, entries: dict[str, Any], params: TreeParams, data: st.DataObject) -> None:
    """Entries handed over as runs already encoded (some as pairs between them) build the
    tree, block for block, and the leaves of a tail, with the compiled cutter and without;
    wherever the runs are cut and the split falls (inside a run too)."""
    ordered = sorted(entries.items())
    cuts = data.draw(st.lists(st.integers(0, 200), max_size=6))
    at = data.draw(st.integers(0, len(ordered) - 1))
    one, other = MemoryStore(), MemoryStore()
    root = ProllyTree(one, params).build(ordered)
    with pytest.MonkeyPatch.context() as patch:
        if not compiled:
            patch.setenv("HALODB_NATIVE", "0")
        tree = ProllyTree(other, params)
        assert tree.build_sorted(_in_runs(ordered, cuts), batch_bytes=50) == root
        leaves = lambda: tree.leaves_sorted(_in_runs(ordered[at:], cuts[::-1]), batch_bytes=30)
        assert tree.build_sorted(_in_runs(ordered, cuts), tail=(ordered[at][0], leaves), batch_bytes=7) == root
        failed = lambda: None  # (the tail's builder failed: the runs are read on to their end)
        assert tree.build_sorted(_in_runs(ordered, cuts), tail=(ordered[at][0], failed)) == root
    assert {c: one.get(c) for c in one.iter_cids()} == {c: other.get(c) for c in other.iter_cids()}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_runs_out_of_order_are_refused(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not compiled:
        monkeypatch.setenv("HALODB_NATIVE", "0")
    tree = ProllyTree(MemoryStore(), SIZED)
    value = encode_shallow("v")
    cases: list[list[tuple[str, Any] | Encoded]] = [
        [Encoded(["a", "c", "b"], [value] * 3)], [Encoded(["a", "a"], [value] * 2)],
        [("b", "v"), Encoded(["b", "c"], [value] * 2)], [Encoded(["a", "c"], [value] * 2), ("b", "v")]]
    for entries in cases:
        with pytest.raises(ValueError, match="is not above the key before it"):
            tree.build_sorted(entries)
        with pytest.raises(ValueError, match="leaves_sorted: key .* is not above the key before it"):
            tree.leaves_sorted(entries)


def test_build_sorted_refuses_keys_out_of_order_and_a_node_over_the_limit() -> None:
    from halodb.errors import TreeShapeError

    tree = ProllyTree(MemoryStore(), TreeParams(leaf_fanout=1 << 30))
    with pytest.raises(ValueError, match="is not above"):
        tree.build_sorted(iter([("b", 1), ("a", 2)]))
    with pytest.raises(TreeShapeError, match="a tree node may take at most") as info:
        tree.build_sorted(iter([(f"k{i:03d}", "x" * 20_000) for i in range(60)]))
    assert info.value.rule == "size"


def test_a_node_larger_than_the_limit_is_refused_on_write_and_on_read() -> None:
    from halodb.errors import TreeShapeError
    from halodb.index.prolly import MAX_NODE_SIZE

    store = MemoryStore()
    tree = ProllyTree(store, TreeParams(leaf_fanout=1 << 30))  # no boundaries: one leaf
    big = [(f"k{i:03d}", "x" * 20_000) for i in range(60)]  # 1.2 MB of values
    with pytest.raises(TreeShapeError, match="a tree node may take at most") as info:
        tree.build(big)
    assert info.value.rule == "size"
    cid, data = make_block({"level": 0, "keys": [k for k, _ in big], "values": [v for _, v in big]})
    assert len(data) > MAX_NODE_SIZE
    store.put_block(cid, data)
    with pytest.raises(TreeShapeError, match=f"is {len(data)} bytes") as info:
        ProllyTree(store).load(cid)
    assert info.value.rule == "size" and info.value.cid == cid


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(keys, st.integers(-1000, 1000), max_size=80), st.randoms())
def test_same_set_same_root_whatever_the_order(entries: dict[str, int], rnd: random.Random) -> None:
    tree = ProllyTree(MemoryStore(), SMALL)
    order = list(entries.items())
    rnd.shuffle(order)
    root = tree.build([])
    for i in range(0, len(order), 7):  # inserted in random batches
        root = tree.mutate(root, dict(order[i:i + 7]))
    assert root == tree.build(entries.items())


def test_lookup_and_range_scan() -> None:
    tree = ProllyTree(MemoryStore(), SMALL)
    entries = {f"k{i:05d}": i for i in range(3000)}
    root = tree.build(entries.items())
    assert tree.height(root) >= 3
    assert tree.get(root, "k01234") == 1234
    assert tree.get(root, "k99999") is None
    assert tree.get(root, "") is None
    assert [k for k, _ in tree.items(root, "k00100", "k00105")] == [f"k{i:05d}" for i in range(100, 105)]
    assert tree.count(root) == 3000


def test_small_change_writes_few_blocks_and_diff_reads_few() -> None:
    store = MemoryStore()
    tree = ProllyTree(store, TreeParams())
    n = 20_000
    root = tree.build((f"c/item-{i:06d}", {"v": i}) for i in range(n))
    height = tree.height(root)
    rnd = random.Random(7)
    changes = {f"c/item-{rnd.randrange(n):06d}": {"v": -1} for _ in range(10)}
    store.stats.reset()
    new_root = tree.mutate(root, changes)
    written = store.stats.blocks_written
    assert written <= 10 * (height + 2), (written, height)
    fresh = ProllyTree(store, TreeParams())  # cold node cache: count real reads
    store.stats.reset()
    changed = list(fresh.diff(root, new_root))
    assert len(changed) == 10
    assert store.stats.blocks_read <= 2 * 10 * (height + 1) + 2, store.stats.blocks_read


def test_node_sizes_near_target() -> None:
    store = MemoryStore()
    tree = ProllyTree(store, TreeParams())
    item = CID.for_bytes(b"item")
    root = tree.build(
        (f"halo-flights/HALO-2024{i:06d}a", {"item": item, "data": str(item), "path": f"products/HALO/x/HALO-2024{i:06d}a.zarr"})
        for i in range(20_000)
    )
    sizes = [len(store.get(c)) for c in tree.node_cids(root)]
    mean = sum(sizes) / len(sizes)
    assert 1500 < mean < 8000, mean


def test_delete_everything_gives_the_empty_tree() -> None:
    tree = ProllyTree(MemoryStore(), SMALL)
    root = tree.build((f"{i}", i) for i in range(200))
    empty = tree.mutate(root, {f"{i}": DELETE for i in range(200)})
    assert empty == tree.build([])
    assert list(tree.items(empty)) == []


def test_malformed_nodes_are_rejected() -> None:
    store = MemoryStore()
    tree = ProllyTree(store, SMALL)
    for bad in ({"level": 0, "keys": ["b", "a"], "values": [1, 2]},
                {"level": 0, "keys": ["a"], "values": []},
                {"level": 1, "keys": ["a"], "values": [1]},
                ["not", "a", "map"]):
        cid, data = make_block(bad)
        store.put_block(cid, data)
        with pytest.raises(SchemaError) as info:
            tree.load(cid)
        assert str(cid) in str(info.value)


def test_node_round_trip() -> None:
    node = Node(0, ["a"], [1])
    cid, data = make_block(node.to_ipld())
    assert Node.from_ipld(node.to_ipld(), cid) == node
