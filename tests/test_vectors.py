"""Known-answer vectors that pin the on-disk format (``tests/vectors/index.json``).

Every vector holds fixed inputs and the exact outputs (CIDs, tree levels and node counts,
block bytes, boundary decisions) the current format gives. The tests rebuild each from its
inputs and compare, so a change of the chunking rule, the fanouts, the DAG-CBOR encoding or
the schema of tree nodes, index roots and commits cannot pass silently.

Vectors with ``"format": 3`` pin index format 3 (items of at most 2 KiB inline in their
dataset entries, larger leaves: what HaloDB writes now); the others pin formats 1 and 2 (every
item linked), which HaloDB still reads and can still write (``Index(store, inline_items=False)``).

When a format change is intended, bump the format version (the ``"version"`` field of
commits and/or index roots, :mod:`halodb.index.model`) and record new vectors with::

    .venv/bin/python -m tests.test_vectors --write

which recomputes the outputs (the inputs are kept) and refuses to change any while the
format versions are those recorded. Review the diff of the JSON file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from halodb import stac
from halodb.blockstore import MemoryStore
from halodb.campaign import flatten_tree
from halodb.index.history import load_commit, write_commit
from halodb.index.index import Index
from halodb.index.model import INLINE_MAX, Commit, Entry, IndexRoot
from halodb.index.prolly import ProllyTree, entry_size
from halodb.index.timeline import history_for_child
from halodb.ipld import CID, RAW, decode, encode, encode_reference, make_block
from halodb.util.times import format_time, parse_time

VECTORS = Path(__file__).parent / "vectors" / "index.json"
TREE_KINDS = ("datasets", "by_path", "by_data")

Vector = dict[str, Any]


def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


# -- inputs -----------------------------------------------------------------------------------
def index_for(store: MemoryStore, vec: Vector | None = None) -> Index:
    """The index of the vector's format: 3 (``"format": 3``), else 1 and 2."""
    return Index(store, inline_items=(vec or {}).get("format") == 3)


def tree_of(index: Index, kind: str) -> ProllyTree:
    trees = {"datasets": index.datasets, "by_path": index.by_path, "by_data": index.by_data}
    return trees[kind]


def from_json(value: Any, i: int | None = None) -> Any:
    """A JSON input as an IPLD value: ``{"/": cid}`` is a link, ``{"/raw": template}`` a link to
    the raw block of the formatted template, ``{"/inline": value}`` the DAG-CBOR bytes of the
    value (an item held inline); strings are templates over ``i`` (when given)."""
    if isinstance(value, str):
        return value if i is None else value.format(i=i)
    if isinstance(value, list):
        return [from_json(v, i) for v in value]
    if isinstance(value, dict):
        if set(value) == {"/"}:
            return CID.parse(value["/"])
        if set(value) == {"/raw"}:
            return CID.for_bytes(str(from_json(value["/raw"], i)).encode(), RAW)
        if set(value) == {"/inline"}:
            return encode(from_json(value["/inline"], i))
        return {k: from_json(v, i) for k, v in value.items()}
    return value


def tree_hash32(key: str, level: int) -> int:
    """The chunking rule's hash, written out independently: uint32_be(sha256(byte(level) || utf8(key))[0:4])."""
    return int.from_bytes(hashlib.sha256(bytes((level,)) + key.encode("utf-8")).digest()[:4], "big")


# -- computing each section's outputs -----------------------------------------------------------
# Each function takes the recorded section (or one vector of it) and returns the outputs the
# current code gives; the test compares them with the recorded ones, ``--write`` records them.
def compute_format_versions(_: Vector) -> Vector:
    cid = CID.for_bytes(b"", RAW)
    commit = Commit(index=cid, time=parse_time("2024-01-01T00:00:00Z"), author="", message="")
    root = IndexRoot(datasets=cid, by_path=cid, by_data=cid, count=0)
    inline = IndexRoot(datasets=cid, by_path=cid, by_data=cid, count=0, inline_items=True)
    with_history = Commit(index=cid, time=commit.time, author="", message="", history=cid, height=0)
    return {"commit": commit.to_ipld()["version"], "commit_with_history": with_history.to_ipld()["version"],
            "index_root": root.to_ipld()["version"], "index_root_inline_items": inline.to_ipld()["version"],
            "inline_max": INLINE_MAX}


def fanouts_of(index: Index) -> Vector:
    out: Vector = {}
    for kind in TREE_KINDS:
        params = tree_of(index, kind).params
        out[kind] = {"leaf_fanout": params.leaf_fanout, "branch_fanout": params.branch_fanout}
        if params.leaf_bytes is not None:
            out[kind]["leaf_bytes"] = params.leaf_bytes
    return out


def compute_fanouts(_: Vector) -> Vector:
    return fanouts_of(Index(MemoryStore(), inline_items=False))


def compute_fanouts_v3(_: Vector) -> Vector:
    return fanouts_of(Index(MemoryStore()))


def empty_of(store: MemoryStore, index: Index) -> Vector:
    trees = {kind: str(tree_of(index, kind).empty()) for kind in TREE_KINDS}
    root_cid = index.write_root(index.empty())
    node_hex = store.get(CID.parse(trees["datasets"])).hex()
    return {"trees": trees, "tree_node_hex": node_hex, "index_root": str(root_cid), "index_root_hex": store.get(root_cid).hex()}


def compute_empty(_: Vector) -> Vector:
    store = MemoryStore()
    return empty_of(store, Index(store, inline_items=False))


def compute_empty_v3(_: Vector) -> Vector:
    store = MemoryStore()
    return empty_of(store, Index(store))


def compute_one_entry(vec: Vector) -> Vector:
    store = MemoryStore()
    tree = tree_of(index_for(store, vec), vec["tree"])
    root = tree.build([(vec["key"], from_json(vec["value"]))])
    assert tree.mutate(tree.empty(), {vec["key"]: from_json(vec["value"])}) == root
    return {"root": str(root), "hex": store.get(root).hex()}


def compute_multi_level(vec: Vector) -> Vector:
    tree = tree_of(index_for(MemoryStore(), vec), vec["tree"])
    entries = [(vec["key"].format(i=i), from_json(vec["value"], i)) for i in range(vec["count"])]
    root = tree.build(entries)
    # history independence: the same entries inserted in two batches, the second in reverse
    half = len(entries) // 2
    grown = tree.mutate(tree.mutate(tree.empty(), dict(entries[:half])), dict(reversed(entries[half:])))
    assert grown == root, "mutate must reach the tree build gives"
    nodes = list(tree.node_cids(root))
    leaves = sum(1 for c in nodes if tree.load(c).level == 0)
    return {"level": tree.height(root), "nodes": len(nodes), "leaves": leaves, "root": str(root)}


def build_index(section: Vector, store: MemoryStore) -> tuple[Index, CID, Vector]:
    """The index of a section's campaign tree: a stub item per dataset (``large``: these paths'
    items get a description of that many characters, so that format 3 links them)."""
    index = index_for(store, section)
    collection = section["collection"]
    upserts: dict[str, Entry] = {}
    items: dict[str, str] = {}
    for path, data in flatten_tree(section["tree"]).items():
        item = stac.stub_item(path, data, collection, None)
        if path in section.get("large", {}):
            item["properties"]["description"] = "x" * section["large"][path]
        cid, block = make_block(item)
        store.put_block(cid, block)
        key = stac.dataset_key(item, collection)
        upserts[key] = Entry(item=cid, data=data, path=path)
        items[key] = str(cid)
    root = index.apply(index.empty(), upserts, [])
    root_cid = index.write_root(root)
    out = {
        "items": dict(sorted(items.items())),
        "datasets": str(root.datasets), "by_path": str(root.by_path), "by_data": str(root.by_data),
        "count": root.count, "root": str(root_cid), "hex": store.get(root_cid).hex(),
    }
    if root.inline_items:  # the datasets leaf, with its items inline but the large one
        out["datasets_hex"] = store.get(root.datasets).hex()
        out["inline"] = sorted(k for k, e in index.entries(root) if e.inline is not None)
    return index, root_cid, out


def compute_index(section: Vector) -> Vector:
    store = MemoryStore()
    index, root_cid, out = build_index(section, store)
    root = index.load_root(root_cid)
    # the lookup trees answer as the inputs say, and every item reads back
    for key, entry in index.entries(root):
        assert entry.path is not None and entry.data is not None
        assert index.key_for_path(root, entry.path) == key
        assert key in index.keys_for_data(root, entry.data)
        assert CID.for_bytes(index.item_block(entry)) == entry.item
    return out


def build_commits(vectors: dict[str, Any], store: MemoryStore) -> dict[str, CID]:
    """Write the indexes of the ``index`` and ``index_v3`` sections, the empty index of each
    format and every commit; name -> CID."""
    index, root_cid, _ = build_index(vectors["index"], store)
    index3, root3, _ = build_index(vectors["index_v3"], store)
    indexes = {"index": root_cid, "empty": index.write_root(index.empty()),
               "index_v3": root3, "empty_v3": index3.write_root(index3.empty())}
    cids: dict[str, CID] = {}
    for vec in vectors["commits"]:
        parents = tuple(cids[p] for p in vec["parents"])
        history, height = history_for_child(store, parents[0] if parents else None) if vec.get("history") else (None, None)
        commit = Commit(
            index=indexes[vec["index"]], time=parse_time(vec["time"]), author=vec["author"],
            message=vec["message"], parents=parents, history=history, height=height,
        )
        cids[vec["name"]] = write_commit(store, commit)
    return cids


def compute_commits(vectors: dict[str, Any]) -> list[Vector]:
    store = MemoryStore()
    cids = build_commits(vectors, store)
    out: list[Vector] = []
    for vec in vectors["commits"]:
        cid = cids[vec["name"]]
        data = store.get(cid)
        commit = load_commit(store, cid)
        assert format_time(commit.time) == vec["time"], "the time is stored as given"
        assert encode_reference(decode(data, cid=cid)) == data, "the reference encoder agrees"
        out.append({"cid": str(cid), "hex": data.hex()})
    return out


def compute_boundary(vec: Vector) -> Vector:
    """A boundary decision; in format 3 a leaf entry's (``value`` given) by its size."""
    tree = tree_of(index_for(MemoryStore(), vec), vec["tree"])
    out: Vector = {}
    if "value" in vec:
        value = from_json(vec["value"])
        out["size"] = entry_size(vec["key"], value)
        out["threshold"] = tree.params.leaf_threshold(out["size"])
    else:
        value = None
        out["threshold"] = tree.params.threshold(vec["level"])
    out["hash32"] = f"{tree_hash32(vec['key'], vec['level']):08x}"
    out["boundary"] = tree._is_boundary(vec["key"], vec["level"], value)
    return out


OUTPUTS: dict[str, tuple[str, ...]] = {
    "one_entry": ("root", "hex"),
    "multi_level": ("level", "nodes", "leaves", "root"),
    "commits": ("cid", "hex"),
    "boundaries": ("threshold", "hash32", "boundary"),  # and "size" for a format-3 leaf entry
}
WHOLE: dict[str, Callable[[Vector], Vector]] = {
    "format_versions": compute_format_versions,
    "fanouts": compute_fanouts,
    "fanouts_v3": compute_fanouts_v3,
    "empty": compute_empty,
    "empty_v3": compute_empty_v3,
}
EACH: dict[str, Callable[[Vector], Vector]] = {
    "one_entry": compute_one_entry,
    "multi_level": compute_multi_level,
    "boundaries": compute_boundary,
}


def recorded(vec: Vector, section: str) -> Vector:
    extra = ("size",) if "size" in vec else ()
    return {k: vec.get(k) for k in (*OUTPUTS[section], *extra)}


def vector_id(vec: Vector) -> str:
    return "-".join(str(vec[k]) for k in ("format", "tree", "level", "key") if k in vec)[:60]


VECTORS_DATA = load_vectors()


# -- the tests --------------------------------------------------------------------------------
def test_vectors_file_is_complete() -> None:
    """Every section is there, non-empty and fully recorded (a half-written file fails)."""
    for section in (*WHOLE, *EACH, "index", "index_v3", "commits"):
        assert VECTORS_DATA.get(section), f"section {section!r} missing or empty"
    for section in (*EACH, "commits"):
        for vec in VECTORS_DATA[section]:
            assert all(vec.get(k) is not None for k in OUTPUTS[section]), f"{section}: {vec} is not recorded"
    assert VECTORS_DATA["description"], "the file says what to do when it fails"


@pytest.mark.parametrize("section", list(WHOLE))
def test_whole_sections(section: str) -> None:
    assert WHOLE[section](VECTORS_DATA[section]) == VECTORS_DATA[section]


@pytest.mark.parametrize("vec", VECTORS_DATA["one_entry"], ids=vector_id)
def test_one_entry_tree(vec: Vector) -> None:
    assert compute_one_entry(vec) == recorded(vec, "one_entry")


@pytest.mark.parametrize("vec", VECTORS_DATA["multi_level"], ids=vector_id)
def test_multi_level_tree(vec: Vector) -> None:
    assert vec["level"] >= 2, "the vector must exercise branch nodes above branch nodes"
    assert compute_multi_level(vec) == recorded(vec, "multi_level")


@pytest.mark.parametrize("name", ["index", "index_v3"])
def test_index_root_of_stub_items(name: str) -> None:
    section = VECTORS_DATA[name]
    out = compute_index(section)
    assert out == {k: section.get(k) for k in out}


def test_format_3_vectors_hold_items_inline_and_linked() -> None:
    """The format-3 index pins both kinds of entry: small items inline, a large one linked."""
    section = VECTORS_DATA["index_v3"]
    assert section.get("format") == 3 and section["large"]
    assert section["inline"] and set(section["large"]).isdisjoint(section["inline"])
    assert len(section["inline"]) < section["count"]
    for each in ("one_entry", "multi_level", "boundaries"):
        assert any(v.get("format") == 3 for v in VECTORS_DATA[each]), f"{each}: no format-3 vector"


def test_commits_and_their_bytes() -> None:
    expected = [recorded(vec, "commits") for vec in VECTORS_DATA["commits"]]
    assert compute_commits(VECTORS_DATA) == expected
    assert VECTORS_DATA["commits"][-1]["parents"], "a commit with a parent is pinned"


@pytest.mark.parametrize("vec", VECTORS_DATA["boundaries"], ids=vector_id)
def test_chunking_rule(vec: Vector) -> None:
    out = compute_boundary(vec)
    assert out == recorded(vec, "boundaries")
    # the recorded vector states the rule: boundary iff hash32 < 2**32 // fanout(level)
    fanouts = VECTORS_DATA["fanouts_v3" if vec.get("format") == 3 else "fanouts"][vec["tree"]]
    if vec["level"] == 0 and "leaf_bytes" in fanouts:  # format 3: by the entry's size
        assert vec["threshold"] == min((1 << 32) * vec["size"] // fanouts["leaf_bytes"], 1 << 32)
    else:
        fanout = fanouts["leaf_fanout"] if vec["level"] == 0 else fanouts["branch_fanout"]
        assert vec["threshold"] == (1 << 32) // fanout
    assert vec["boundary"] == (int(vec["hash32"], 16) < vec["threshold"])


def test_chunking_vectors_cover_both_answers() -> None:
    answers = {(vec.get("format", 1), vec["tree"], vec["level"], vec["boundary"]) for vec in VECTORS_DATA["boundaries"]}
    for fmt, tree, level, _ in answers:
        assert {(fmt, tree, level, True), (fmt, tree, level, False)} <= answers, f"{tree} level {level}: both answers"


def test_registry_writes_the_recorded_commits(tmp_path: Path) -> None:
    """End to end: a registry importing the tree and then removing everything writes exactly
    the recorded commits (the same blocks the index layer gives): commits of format 3 (with
    history trees) over index roots of format 3 (items inline); the older vectors stay
    readable (:func:`compute_commits` reads them back)."""
    import halodb

    first, second = (vec for vec in VECTORS_DATA["commits"] if vec["index"].endswith("_v3"))
    section = VECTORS_DATA["index_v3"]
    items = []
    for path, data in flatten_tree(section["tree"]).items():  # the items build_index makes
        item = stac.stub_item(path, data, section["collection"], None)
        if path in section["large"]:
            item["properties"]["description"] = "x" * section["large"][path]
        items.append(item)
    with halodb.open(tmp_path / "home", create=True) as reg:
        reg.add(items, collection=section["collection"])
        cid = reg.commit(first["message"], time=first["time"], author=first["author"])
        reg.remove(list(section["items"]))
        cid = reg.commit(second["message"], time=second["time"], author=second["author"])
        assert str(cid) == second["cid"]
        assert reg.store.get(cid).hex() == second["hex"]


# -- recording ----------------------------------------------------------------------------------
def compute_all(vectors: dict[str, Any]) -> dict[str, Any]:
    """``vectors`` with every output recomputed by the current code (inputs unchanged)."""
    out: dict[str, Any] = json.loads(json.dumps(vectors))
    for section, whole in WHOLE.items():
        out[section] = whole(vectors[section])
    for section, each in EACH.items():
        for vec in out[section]:
            vec.update(each(vec))
    out["index"].update(compute_index(vectors["index"]))
    out["index_v3"].update(compute_index(vectors["index_v3"]))
    for vec, computed in zip(out["commits"], compute_commits(vectors)):
        vec.update(computed)
    return out


def outputs_changed(old: Any, new: Any) -> list[str]:
    """Paths of recorded (non-missing) values that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [f"{k}.{p}" if p else str(k) for k in old if k in new for p in outputs_changed(old[k], new[k])]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [f"{i}.{p}" if p else str(i) for i, (a, b) in enumerate(zip(old, new)) for p in outputs_changed(a, b)]
    return [] if old == new or old is None or old == {} or old == [] else [""]


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print(__doc__)
        return 2
    old = load_vectors()
    new = compute_all(old)
    changed = [p for p in outputs_changed(old, new) if not p.startswith("format_versions")]
    if changed and new["format_versions"] == old.get("format_versions"):
        print("refusing to record new outputs while the format versions are unchanged "
              f"({new['format_versions']}); changed: {', '.join(changed)}", file=sys.stderr)
        return 1
    VECTORS.write_text(json.dumps(new, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"recorded {VECTORS} ({len(changed)} outputs changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
