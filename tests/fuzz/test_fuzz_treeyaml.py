"""Fuzz: ``tree.yaml`` and ``tree-history.jsonl`` (``halodb.campaign.treeyaml``).

Inputs: the ORCESTRA ``tree.yaml`` and history lines from ``../shared/data`` with bytes
flipped, cut and spliced; YAML and JSON of the wrong shapes (lists, scalars, timestamps and
integers as keys, deep nesting, aliases that multiply, 5000-digit integers, odd unicode,
bytes that are not UTF-8); Python trees with shared or self-containing folders. Claims:
reading and flattening give ``{path: cid}`` or an ``InputError``, in memory linear in the
file; a tree written as YAML reads back as the same leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from halodb.campaign import flatten_tree, load_tree, load_tree_history
from halodb.errors import InputError

from ..conftest import SHARED_DATA
from ..requirements import require
from .support import EDGE_INTS, ODD_TEXT, bounded, cids, fuzz, mutated, nested, outcome

ORCESTRA = SHARED_DATA / "orcestra"


def _seed(name: str, fallback: bytes) -> bytes:
    path = ORCESTRA / name
    return path.read_bytes() if path.is_file() else fallback


CID_TEXT = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"
TREE_YAML = _seed("tree.yaml", f"products:\n  HALO:\n    a.zarr: {CID_TEXT}\n  empty:\n".encode())
HISTORY_LINES = _seed("tree-history.jsonl", json.dumps(
    {"commit": "c", "date": "2024-09-01T00:00:00+02:00", "message": "m", "tree": {"a": CID_TEXT}}).encode()).splitlines()

#: the first lines of the real tree.yaml (whole lines keep it YAML more often than not)
YAML_SEEDS = st.integers(1, 40).map(lambda n: b"\n".join(TREE_YAML.splitlines()[:n]) + b"\n")
SHAPES = st.recursive(
    st.one_of(st.none(), EDGE_INTS.filter(lambda n: abs(n) < 10**100), st.floats(), ODD_TEXT, st.just(CID_TEXT),
              cids().map(str), st.booleans(), st.dates()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(ODD_TEXT, st.integers(), st.booleans(), st.none()), inner, max_size=3)),
    max_leaves=12,
)
#: YAML that multiplies: each level's anchor is used twice by the next
ALIAS_BOMB = b"a0: &a0 {x: " + CID_TEXT.encode() + b"}\n" + b"".join(
    b"a%d: &a%d {l: *a%d, r: *a%d}\n" % (i, i, i - 1, i - 1) for i in range(1, 40))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("fuzz-tree")


def _leaves(path: Path) -> dict[str, str]:
    return flatten_tree(load_tree(path), source=str(path))


def test_the_real_tree_seeds_the_mutations() -> None:
    require((ORCESTRA / "tree.yaml").is_file(), f"reference data missing: {ORCESTRA / 'tree.yaml'}")
    assert len(flatten_tree(yaml.safe_load(TREE_YAML))) > 200


@fuzz(100)
@given(st.one_of(mutated(YAML_SEEDS), st.binary(max_size=64), SHAPES.map(lambda v: yaml.safe_dump(v).encode())))
@example(TREE_YAML)
@example(ALIAS_BOMB)  # 2**39 leaves in 40 lines: was a hang that grew without bound
@example(b"[" * 5000)  # was a RecursionError in PyYAML's composer
@example(b"a: " + b"1" * 5000 + b"\n")  # was a ValueError (too many digits for int())
@example(b"a: \xff\n")  # was a UnicodeDecodeError
@example(b"2024-13-45: x\n")  # was a ValueError (no such date)
@example(b"a: &a {b: *a}\n")  # a folder that contains itself
def test_any_tree_yaml(folder: Path, content: bytes) -> None:
    path = folder / "tree.yaml"
    path.write_bytes(content)
    result = bounded(len(content), _leaves, path, per_byte=8192)
    assert isinstance(result, (dict, InputError)), result


def _small(line: bytes) -> bytes:
    """A history line with its tree cut to its first three leaves (a seed small enough to mutate)."""
    row = json.loads(line)
    tree: dict[str, Any] = {}
    for path, cid in list(flatten_tree(row["tree"]).items())[:3]:
        *parents, name = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = cid
    return json.dumps({**row, "tree": tree}).encode()


HISTORY_SEEDS = st.sampled_from([_small(line) for line in HISTORY_LINES[:5]])
ROWS = st.fixed_dictionaries({}, optional={"tree": SHAPES, "date": st.one_of(ODD_TEXT, EDGE_INTS.filter(lambda n: abs(n) < 10**100), st.just("0001-01-01T00:00:00+01:00")),
                                          "message": SHAPES, "commit": SHAPES})


@fuzz(100)
@given(st.lists(st.one_of(mutated(HISTORY_SEEDS), HISTORY_SEEDS, st.binary(max_size=32),
                          ROWS.map(lambda r: json.dumps(r, default=repr).encode())), max_size=4))
@example([b'{"tree": {}, "date": 5}'])  # was an AttributeError (int has no strip)
@example([b"[" * 100_000])  # was a RecursionError
@example([b'{"tree": {}, "date": "9999-12-31T23:59:59-01:00"}'])  # was an OverflowError
@example([b'{"tree": {}, "date": "2024-01-01", "message": 7}'])
@example([b'{"tree": {}, "date": "2024-01-01"}\n\xff'])  # was a UnicodeDecodeError
def test_any_tree_history(folder: Path, lines: list[bytes]) -> None:
    path = folder / "tree-history.jsonl"
    content = b"\n".join(lines)
    path.write_bytes(content)

    def read() -> list[dict[str, str]]:
        return [flatten_tree(version.tree) for version in load_tree_history(path)]

    result = bounded(len(content), read, per_byte=8192)
    assert isinstance(result, (list, InputError)), result


@fuzz(60)
@given(SHAPES)
def test_flatten_any_value(value: Any) -> None:
    result = outcome(flatten_tree, value)
    assert isinstance(result, (dict, InputError)), result


def test_shared_and_self_containing_folders_are_refused() -> None:
    shared: dict[str, Any] = {"x": CID_TEXT}
    for _ in range(40):  # 2**40 leaves if each folder were walked every time it appears
        shared = {"l": shared, "r": shared}
    with pytest.raises(InputError, match="more than once"):
        outcome(flatten_tree, shared) and flatten_tree(shared)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InputError):
        flatten_tree(loop)
    with pytest.raises(InputError, match="deeper"):
        flatten_tree(nested(200, {"x": CID_TEXT}, kind="map"))


PATHS = st.lists(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True).filter(lambda s: s not in (".", "..")),
                 min_size=1, max_size=4).map("/".join)


@fuzz(30)
@given(st.dictionaries(PATHS, cids().map(str), max_size=6))
def test_a_tree_reads_back_as_its_leaves(folder: Path, leaves: dict[str, str]) -> None:
    tree: dict[str, Any] = {}
    kept: dict[str, str] = {}
    for path, cid in sorted(leaves.items()):
        *parents, name = path.split("/")
        node = tree
        try:
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise TypeError
            if name in node:
                continue
        except TypeError:
            continue  # a path under a leaf: not a tree
        node[name] = cid
        kept[path] = cid
    file = folder / "roundtrip.yaml"
    file.write_text(yaml.safe_dump(tree))
    assert _leaves(file) == kept
