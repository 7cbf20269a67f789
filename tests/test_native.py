"""The compiled module (``halodb_native``, native/) against the Python path it speeds up.

Its promise: for an ndjson line it prepares, the Python path stages exactly the same (key,
item CID and block byte for byte, data CID, path, DOI); a line it declines (None) is the
Python path's to decide. Checked on generated items, the STAC spec's examples, every single
change of the quick check's edge cases, random changes (Hypothesis) and hostile text; and
through ``halodb add`` with the module on and off.
"""

from __future__ import annotations

import copy
import io
import json
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halodb.blockstore import MemoryStore
from halodb.demo.campaign import generate_items
from halodb.errors import HaloDBError
from halodb.index.prolly import ProllyTree, TreeParams, _SortedBuilder
from halodb.ipld import CID
from halodb.stac import items as stac_items
from halodb.stac import PreparedItem, data_cid, dataset_key, item_block, item_doi, item_path, parse_item, read_items
from halodb.util.native import _module, native

from .conftest import run_cli, run_cli_in_process, shared_data
from .requirements import require
from .test_stac_quick import GEOMETRIES, ODD, _paths, base_item, items, single_changes

Row = tuple[str, str, bytes, bytes, str | None, str | None, str | None]


@pytest.fixture(scope="module")
def module() -> ModuleType:
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    return found


def python_row(line: str) -> Row | str:
    """What the Python path stages of ``line`` (as the reader would hand it over, which splits
    the text into lines before): the row, or the error (text) it raises."""
    try:
        pairs = list(stac_items._read_line(1, line, "<stdin>", lambda source, why: None))
        if len(pairs) != 1:
            return f"{len(pairs)} items"
        source, value = pairs[0]
        item = parse_item(value, source)
        key = dataset_key(item, source=source)
        cid, block = item_block(item, source)
        return (key, item["collection"], cid.buffer, block, data_cid(item, source=source), item_path(item),
                item_doi(item, source=source))
    except HaloDBError as exc:
        return f"error: {exc}"


def agree(module: ModuleType, lines: list[str]) -> list[bool]:
    """Assert the promise for each of ``lines``; which of them the module prepared."""
    prepared = [module.prepare_item(line) for line in lines]
    for line, row in zip(lines, prepared):
        if row is not None:
            assert python_row(line) == row, line
    return [row is not None for row in prepared]


def test_generated_items_are_prepared_as_python_stages_them(module: ModuleType) -> None:
    generated = [item for seed in (1, 2, 3) for item in generate_items(400, seed=seed)]
    lines = [orjson.dumps(i).decode() for i in generated]
    spaced = [json.dumps(i, indent=None) for i in generated[:200]]  # ", " and ": " between values
    escaped = [json.dumps(i, ensure_ascii=True) for i in generated[:200]]
    assert all(agree(module, lines + spaced + escaped))  # (all canonical: none left to Python)


def test_the_stac_spec_examples_agree(module: ModuleType) -> None:
    folder = shared_data("stac-examples", "examples")
    lines = [json.dumps(json.loads(p.read_text())) for p in sorted(folder.glob("*item*.json"))]
    assert lines
    agree(module, lines)
    with_collection = [json.dumps({**json.loads(line), "collection": "c"}) for line in lines]
    agree(module, with_collection)


def test_every_single_change_agrees_and_both_answers_occur(module: ModuleType) -> None:
    """Each edge of the quick check (tests/test_stac_quick.py) in each kind of item, written
    compact and with escapes; a module that declined everything would fail the last line."""
    answers: set[bool] = set()
    for geometry in [None, *GEOMETRIES]:
        for times in (0, 1, 2):
            for item in single_changes(base_item(geometry, stub=None, times=times)):
                lines = [json.dumps(item, allow_nan=True), json.dumps(item, allow_nan=True, ensure_ascii=False)]
                answers.update(agree(module, lines))
    assert answers == {True, False}


def test_each_odd_value_in_each_place_agrees(module: ModuleType) -> None:
    """Every edge value of the quick check's tests (a leap second, a date that does not
    exist, NaN, a lone surrogate, integers past 64 bits…) put in every place of an item."""
    answers: set[bool] = set()
    for geometry, times in ((GEOMETRIES[2], 0), (None, 1), (GEOMETRIES[6], 2)):
        item = base_item(geometry, stub=None, times=times)
        lines = []
        for path in _paths(item)[1:]:
            for value in ODD:
                changed = copy.deepcopy(item)
                parent = changed
                for part in path[:-1]:
                    parent = parent[part]
                parent[path[-1]] = copy.deepcopy(value)
                lines.append(json.dumps(changed, allow_nan=True))
        answers.update(agree(module, lines))
    assert answers == {True, False}


@settings(max_examples=400, deadline=None)
@given(items(), st.booleans())
def test_random_changes_agree(item: dict[str, Any], ascii_only: bool) -> None:
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    agree(found, [json.dumps(item, allow_nan=True, ensure_ascii=ascii_only)])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2000), st.text(min_size=1, max_size=3), st.booleans())
def test_damaged_text_agrees(at: int, text: str, replace: bool) -> None:
    """A valid line with a few characters replaced or inserted anywhere: broken JSON, broken
    strings and numbers, odd characters — whatever the module prepares, Python stages alike."""
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    line = json.dumps(base_item(GEOMETRIES[2], stub=None, times=1) | {"properties": {
        "datetime": "2024-08-11T10:00:00Z", "sci:doi": "10.82246/X", "n": [-0, 1.5e3, 12345678901234567]}})
    at %= len(line)
    agree(found, [line[:at] + text + line[at + (len(text) if replace else 0):]])


def line_with(**changes: Any) -> str:
    item = base_item(GEOMETRIES[1], stub=None, times=1)
    props = changes.pop("properties", {})
    item["properties"].update(props)
    item.update(changes)
    return json.dumps(item)


def test_numbers_strings_and_keys_at_the_edges(module: ModuleType) -> None:
    base = line_with()
    cases = {
        "minus zero": base.replace('"platform": "HALO"', '"platform": -0, "z": -0.0'),
        "exponents": base.replace('"platform": "HALO"', '"platform": [1E2, 1e-400, 2.5e+3, 123456789012345678]'),
        "past 64 bits": base.replace('"platform": "HALO"', '"platform": 99999999999999999999'),
        "past a double": base.replace('"platform": "HALO"', '"platform": 1e400'),
        "nan": base.replace('"platform": "HALO"', '"platform": NaN'),
        "leading zero": base.replace('"platform": "HALO"', '"platform": 01'),
        "escapes": base.replace('"platform": "HALO"', r'"platform": "\u00e9\ud83d\ude00\/\t\"\\"'),
        "lone surrogate": base.replace('"platform": "HALO"', r'"platform": "\ud800"'),
        "low surrogate": base.replace('"platform": "HALO"', r'"platform": "\udc00x"'),
        "raw control": base.replace('"platform": "HALO"', '"platform": "a\x01b"'),
        "key twice": base.replace('"platform": "HALO"', '"platform": "HALO", "platform": "P3"'),
        "id twice": base.replace('"id": "HALO-20240811a"', '"id": "a", "id": "b"'),
        "blank id": base.replace('"id": "HALO-20240811a"', '"id": "\\u3000\\u001c"'),
        "spaced id": base.replace('"id": "HALO-20240811a"', '"id": " a\\u2028"'),
        "slash in collection": base.replace('"collection": "halo"', '"collection": "a/b"'),
        "no collection": base.replace('"collection": "halo", ', ""),
        "byte order mark": "\ufeff" + base,
        "trailing text": base + " x",
        "deep": base.replace('"platform": "HALO"', '"platform": ' + "[" * 70 + "]" * 70),
        "fairly deep": base.replace('"platform": "HALO"', '"platform": ' + "[" * 40 + "]" * 40),
        "many keys": base.replace('"platform": "HALO"', ", ".join(f'"k{i}": {i}' for i in range(40))),
        "many keys twice": base.replace('"platform": "HALO"', ", ".join(f'"k{i % 30}": {i}' for i in range(40))),
        "feature collection": json.dumps({"type": "FeatureCollection", "features": [json.loads(base)]}),
        "leap day": line_with(properties={"datetime": "2024-02-29T00:00:00Z"}),
        "leap second": line_with(properties={"datetime": "2024-06-30T23:59:60Z"}),
        "no leap day": line_with(properties={"datetime": "2023-02-29T00:00:00Z"}),
        "century": line_with(properties={"datetime": "2100-02-29T00:00:00Z"}),
        "year zero": line_with(properties={"datetime": "0000-01-01T00:00:00Z"}),
        "arabic digits": line_with(properties={"datetime": "٢٠٢٤-08-11T10:00:00Z"}),
        "start after end": line_with(properties={"start_datetime": "2024-08-12T00:00:00Z",
                                                 "end_datetime": "2024-08-11T00:00:00Z"}),
        "pre-release": line_with(stac_version="1.0.0-beta.2"),
        "version 1.0": line_with(stac_version="1.0"),
        "huge bbox int": line_with(bbox=[-25, 10, 2**62, 2**62 + 1]),
    }
    prepared = dict(zip(cases, agree(module, list(cases.values()))))
    for declined in ("key twice", "id twice", "lone surrogate", "low surrogate", "raw control", "nan", "past 64 bits",
                     "past a double", "deep", "feature collection", "many keys twice", "no collection",
                     "byte order mark", "trailing text", "leading zero", "arabic digits"):
        assert not prepared[declined], declined
    for taken in ("minus zero", "exponents", "escapes", "spaced id", "leap day", "many keys", "fairly deep",
                  "pre-release"):
        assert prepared[taken], taken


@pytest.mark.parametrize("href", [
    "ipfs://QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY/x.zarr",
    "/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/a/b.zarr/",
    "ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
    "ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq/a%20b.zarr",
    "ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq/a/../b?x=1#f",
    "ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq//b",
    "ipfs://bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yer/x",
    "ipfs://BAFKREIBM6JG3UX5QUMHCN2B3FLC3TYU6DMLB4XA7U5BF44YEGNRJHC4YEQ/x",
    "ipfs://zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA/x",
    "ipfs://notacid/x.zarr",
    "ipfs:// bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq/x",
    "https://example.org/x.zarr",
])
def test_data_assets_agree(module: ModuleType, href: str) -> None:
    item = json.loads(line_with())
    item["assets"] = {"meta": {"href": "ipfs://QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY/m"}, "data": {"href": href}}
    without_path = copy.deepcopy(item)
    del without_path["properties"]["halodb:path"]
    agree(module, [json.dumps(item), json.dumps(without_path)])


@pytest.mark.parametrize("doi", [
    "10.82246/ORCESTRA.X", "https://doi.org/10.82246/X", "HTTP://DX.DOI.ORG/10.82246/x", " doi:10.1234/a/b ",
    "10.1/x", "10.1234/a b", "10.1234/a\u2003b", "10.1234/", "10.1234/\x85", "doi:" + "10.1234/" + "x" * 250,
    "10.1234/Äb", "hTtPs://doi.org/10.82246/X", "ſ" + "10.1234/x", 7,
])
def test_dois_agree(module: ModuleType, doi: Any) -> None:
    agree(module, [line_with(properties={"sci:doi": doi})])


def test_add_stages_the_same_with_the_module_and_without(module: ModuleType, tmp_path: Path) -> None:
    """Through the command: lines the module takes, lines it leaves to Python, the same item
    twice, and a collection given to add: the same stage, byte for byte; and the same error."""
    lines = [orjson.dumps(i).decode() for i in generate_items(300, seed=9)]
    odd = json.loads(lines[5]) | {"id": "odd"}
    odd["properties"]["datetime"] = "2024-08-10T02:45:49.500+02:00"  # (to be rewritten: left to Python)
    text = "\n".join([*lines, lines[3], "", json.dumps(odd)]) + "\n"
    dumps = []
    for switch in ("1", "0"):
        for args in ((), ("--collection", "other")):
            home = tmp_path / f"h{switch}{len(args)}"
            assert run_cli_in_process(home, "init").code == 0
            result = run_cli_in_process(home, "add", "-", *args, stdin=text, env={"HALODB_NATIVE": switch})
            assert result.code == 0, result.err
            assert result.out.strip() == "staged 301 item(s)"
            with sqlite3.connect(home / "stage.sqlite3") as con:
                dumps.append((args, con.execute("SELECT * FROM upserts ORDER BY key").fetchall(),
                               con.execute("SELECT * FROM inline ORDER BY key").fetchall()))
    assert dumps[0] == dumps[2] and dumps[1] == dumps[3]
    assert dumps[0][1] != dumps[1][1] and all(key.startswith("other/") for key, *_ in dumps[1][1])
    clash = text + json.dumps(json.loads(lines[7]) | {"links": [{"rel": "about", "href": "x"}]}) + "\n"
    errors = [run_cli_in_process(tmp_path / "h10", "add", "-", stdin=clash, env={"HALODB_NATIVE": switch})
              for switch in ("1", "0")]
    assert errors[0] == errors[1] and errors[0].code == 2 and "<stdin>:304" in errors[0].err, errors


def test_item_files_and_folders_are_prepared_as_python_stages_them(module: ModuleType, tmp_path: Path) -> None:
    """``add`` of .json files (one Item each, or a FeatureCollection, which the module leaves
    to Python) stages what the Python path stages."""
    folder = tmp_path / "items"
    (folder / "sub").mkdir(parents=True)
    generated = generate_items(30, seed=11)
    for i, item in enumerate(generated[:20]):
        (folder / ("sub" if i % 2 else "") / f"i{i:02d}.json").write_text(json.dumps(item, indent=2))
    (folder / "fc.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": generated[20:]}))
    odd = generated[0] | {"id": "odd"}
    odd["properties"] = odd["properties"] | {"datetime": "2024-08-10T02:45:49.500+02:00"}
    (folder / "odd.json").write_text(json.dumps(odd))
    read = list(read_items([str(folder)], None, prepared=True))
    assert sum(type(v) is PreparedItem for _, v in read) == 20  # (the collection's and the odd one: Python)
    dumps = []
    for switch in ("1", "0"):
        home = tmp_path / f"h{switch}"
        assert run_cli_in_process(home, "init").code == 0
        result = run_cli_in_process(home, "add", str(folder), env={"HALODB_NATIVE": switch})
        assert result.code == 0 and result.out.strip() == "staged 31 item(s)", result
        with sqlite3.connect(home / "stage.sqlite3") as con:
            dumps.append(con.execute("SELECT key, item, data, path, doi, source FROM upserts ORDER BY key").fetchall())
    assert dumps[0] == dumps[1]


def test_read_items_yields_prepared_items_only_when_asked(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    text = orjson.dumps(generate_items(1, seed=3)[0]).decode() + "\n"
    assert type(next(read_items(["-"], io.StringIO(text), prepared=True))[1]) is PreparedItem
    assert type(next(read_items(["-"], io.StringIO(text)))[1]) is not PreparedItem  # type: ignore[comparison-overlap]
    monkeypatch.setenv("HALODB_NATIVE", "0")
    assert native() is None
    assert type(next(read_items(["-"], io.StringIO(text), prepared=True))[1]) is not PreparedItem


def test_a_bad_switch_is_one_line_exit_2(tmp_path: Path) -> None:
    """Whatever the command — also one that never reaches the module, and the quick ``at``."""
    assert run_cli_in_process(tmp_path, "init").code == 0
    for switch in ("HALODB_NATIVE", "HALODB_SYNC_WORKER"):
        for args in (["add", "-"], ["status"], ["init"], ["log"]):
            result = run_cli_in_process(tmp_path, *args, stdin="", env={switch: "yes"})
            assert result.code == 2 and result.err.count("\n") == 1 and f"{switch}='yes'" in result.err, (args, result)
    quick = run_cli(tmp_path, "at", "halo/x", "2024-09-01", "--name", "n", env={"HALODB_NATIVE": "on"})
    assert quick.code == 2 and "HALODB_NATIVE='on'" in quick.err, quick


# --- the cache's columns of inline items (halodb_native.item_columns) ------------------------
def columns_both_ways(blocks: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    from halodb.sync.items import read_inline_item_columns

    cids = [str(CID.for_bytes(b)) for b in blocks]
    monkeypatch.setenv("HALODB_NATIVE", "1")
    fast = read_inline_item_columns(cids, blocks)
    monkeypatch.setenv("HALODB_NATIVE", "0")
    slow = read_inline_item_columns(cids, blocks)
    return fast, slow


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1e-5, 9.99e-6, 1e-6, 1e15, 9.99e15, 1e16, 0.1, 5e-324, 1.7976931348623157e308])
    | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "type": st.just("Feature"), "id": st.text(min_size=1, max_size=8).filter(str.strip),
    "properties": st.dictionaries(st.sampled_from(["datetime", "platform", "title", "instruments", "keywords",
                                                   "start_datetime", "x"]), json_values, max_size=5),
}, optional={"collection": json_values, "bbox": json_values, "extra": json_values}), min_size=1, max_size=6))
def test_item_columns_are_python_s(items: list[dict[str, Any]]) -> None:
    """Random items (every JSON value, floats of every magnitude, odd strings): the module
    takes them, and its columns are Python's, buffer for buffer."""
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    from halodb.ipld.codec import encode_json

    blocks = [encode_json(i) for i in items]
    assert found.item_columns(blocks) is not None  # (JSON values only: taken)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = columns_both_ways(blocks, monkeypatch)
    assert fast is not None and fast == slow


def test_item_columns_of_generated_items_and_the_declined(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    from halodb.ipld.codec import encode, encode_json

    blocks = [encode_json(parse_item(i, "x")) for i in generate_items(500, seed=4)]
    fast, slow = columns_both_ways(blocks, monkeypatch)
    assert fast is not None and fast == slow
    assert module.item_columns(blocks) is not None
    good = {"type": "Feature", "id": "x", "properties": {}}
    for odd in ({**good, "id": " "}, {**good, "type": "Collection"}, {**good, "properties": []},
                {**good, "blob": b"\x00\x01"}, {**good, "link": CID.for_bytes(b"x")}, [1, 2]):
        declined = [blocks[0], encode(odd)]
        assert module.item_columns(declined) is None, odd
        fast, slow = columns_both_ways(declined, monkeypatch)
        assert fast == slow  # (both the Python path's answer)
    unsorted = bytes.fromhex("a2626964617864747970656746656174757265")  # {"id": "x", "type": ...}: canonical
    assert module.item_columns([unsorted]) is None  # (no properties: not an item)
    swapped = bytes.fromhex("a264747970656746656174757265626964617864")  # keys out of canonical order
    assert module.item_columns([swapped]) is None


def test_item_text_floats_and_strings_are_orjson_s(module: ModuleType) -> None:
    """The item column's text, float by float and string by string, is orjson's: 60,000 floats
    from every bit pattern's neighbourhood (fixed notation from 1e-5 to below 1e16, exponents
    outside) and strings with every byte JSON escapes, at every place in an 8-byte word."""
    import random
    import struct

    from halodb.ipld.codec import decode, encode_json

    rng = random.Random(19)
    floats = [x for x in (struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000))
              if x == x and abs(x) != float("inf")]
    floats += [rng.uniform(-180, 180) for _ in range(20_000)]
    floats += [10.0 ** rng.uniform(-7, 18) * rng.choice([1, -1]) for _ in range(20_000)]
    floats += [1e-5, 9.999999999999999e-6, 1e16, 9999999999999998.0, 123456789012345.6, -0.0, 0.0]
    special = ['"', "\\", "\b", "\t", "\n", "\f", "\r", "\x00", "\x1f", "\x7f", "é", "\u2028"]
    strings = ["a" * at + c + "b" * after for c in special for at in range(10) for after in (0, 3, 9)]
    items = [{"type": "Feature", "id": f"x{n}", "properties": {"v": floats[n:n + 600], "s": strings}}
             for n in range(0, len(floats), 600)]
    blocks = [encode_json(item) for item in items]
    made = module.item_columns(blocks)
    assert made is not None
    _kind, length, _validity, _offsets, data, _child = made["item"]
    assert length == len(items)
    assert bytes(data) == b"".join(orjson.dumps(decode(block)) for block in blocks)  # (keys in the block's order)


# --- a tree leaf read into columns (halodb_native.leaf_columns) and CID texts -----------------
def python_leaf(block: bytes) -> tuple[list[str], tuple[list[Any], ...]] | str:
    """What Python reads of a leaf block: its keys and each entry field's column (None where
    absent or null), or why it is not such a leaf."""
    from halodb.index.model import ENTRY_FIELDS
    from halodb.index.prolly import Node
    from halodb.ipld.codec import decode

    try:
        node = Node.from_ipld(decode(block), CID.for_bytes(block))
    except HaloDBError as exc:
        return f"error: {exc}"
    if node.level != 0 or not all(type(value) is dict for value in node.values):
        return "not a leaf of maps"
    return node.keys, tuple([value.get(name) for value in node.values] for name in ENTRY_FIELDS)


def leaf_agrees(module: ModuleType, block: bytes) -> bool:
    """Assert the promise for ``block``; whether the module took it."""
    from halodb.index.model import ENTRY_FIELDS

    made = module.leaf_columns(block, ENTRY_FIELDS)
    if made is not None:
        assert python_leaf(block) == made, block.hex()
    return made is not None


entry_maps = st.fixed_dictionaries({"item": st.binary(max_size=40)}, optional={
    "data": st.none() | st.text(max_size=8), "path": st.none() | st.text(max_size=8), "doi": st.none() | st.text(max_size=8),
})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), entry_maps, max_size=12))
def test_leaves_are_read_into_python_s_columns(entries: dict[str, dict[str, Any]]) -> None:
    """Random leaves (any keys, entries with any of the fields, null or absent): taken, and
    their columns are what Python decodes."""
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    from halodb.index.prolly import Node
    from halodb.ipld.codec import encode

    keys = sorted(entries)  # (code point order: UTF-8's byte order)
    assert leaf_agrees(found, encode(Node(0, keys, [entries[k] for k in keys]).to_ipld()))


def test_every_damaged_leaf_agrees_and_the_odd_ones_are_declined(module: ModuleType) -> None:
    """Every byte of a leaf changed (and cut short): whatever the module takes, Python reads
    the same; leaves of another shape are left to Python."""
    from halodb.index.prolly import Node
    from halodb.ipld.codec import encode

    values: list[Any] = [{"item": bytes([i]) * (i + 1), "data": f"d{i}", "path": None if i % 2 else f"p/{i}"}
                         for i in range(6)]
    block = encode(Node(0, [f"k{i}" for i in range(6)], values).to_ipld())
    assert leaf_agrees(module, block)
    taken = [leaf_agrees(module, block[:at] + bytes([b]) + block[at + 1:])
             for at in range(len(block)) for b in {0x00, 0xF4, 0xF6, 0xFF, block[at] ^ 0x01, (block[at] + 1) % 256}]
    taken += [leaf_agrees(module, block[:at]) for at in range(len(block))] + [leaf_agrees(module, block + b"\x00")]
    assert any(taken) and not all(taken)
    link = CID.for_bytes(b"x")
    for odd in (Node(1, ["a"], [link]), Node(0, ["a"], [{"item": link}]), Node(0, ["a"], [{"item": b"x", "x": 1}]),
                Node(0, ["a"], [{"item": 5}]), Node(0, ["b", "a"], [{"item": b"x"}, {"item": b"y"}]),
                Node(0, ["a", "a"], [{"item": b"x"}, {"item": b"y"}]), Node(0, ["a"], [[1]]),
                Node(0, ["a", "b"], [{"item": b"x"}])):
        odd_block = encode(odd.to_ipld())
        assert module.leaf_columns(odd_block, ["item", "data", "path", "doi"]) is None, odd
    long_head = bytes.fromhex("a3646b657973980161616c6576656c006676616c75657381a1646974656d4101")  # 0x98 0x01
    assert str(python_leaf(long_head)).startswith("error") and module.leaf_columns(long_head, ["item"]) is None


def test_cid_texts_are_python_s(module: ModuleType) -> None:
    blocks = [b"", b"\xa0", bytes(range(256)) * 40, *(bytes([i]) * i for i in range(1, 60))]
    assert module.dag_cbor_cid_texts(blocks) == [str(CID.for_bytes(block)) for block in blocks]
    with pytest.raises(TypeError):
        module.dag_cbor_cid_texts([b"x", "x"])
    odd: list[Any] = [b"x", bytearray(b"y")]  # (not all bytes: hashed in Python)
    assert CID.texts_for_blocks(odd) == [str(CID.for_bytes(b"x")), str(CID.for_bytes(b"y"))]


def test_sync_materializes_the_same_with_the_module_and_without(module: ModuleType, tmp_path: Path) -> None:
    """A full sync of an index whose leaves hold items inline (some with DOIs, one item too
    large to be inline): the same tables with the module and without, read leaf by leaf as
    columns by the module."""
    lines = [orjson.dumps(i).decode() for i in generate_items(1500, seed=12)]
    for at in range(0, 1500, 7):  # DOIs (checked, not kept in the columns)
        item = json.loads(lines[at])
        item["properties"]["sci:doi"] = f"10.1234/x{at}"
        lines[at] = json.dumps(item)
    big = json.loads(lines[1])
    big["properties"]["description"] = "x" * 3000  # (linked: not inline)
    lines[1] = json.dumps(big)
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    assert run_cli_in_process(home, "add", "-", stdin="\n".join(lines) + "\n").code == 0
    assert run_cli_in_process(home, "commit", "-m", "x", "--time", "2024-09-01T00:00:00Z").code == 0
    assert run_cli_in_process(home, "publish", "n").code == 0
    from halodb.index.prolly import ProllyTree

    tables = []
    for switch in ("1", "0"):
        cache = tmp_path / f"cache{switch}.duckdb"
        reads: list[int] = []
        read = ProllyTree._load_leaf

        def counting(self: ProllyTree, *args: Any, **kwargs: Any) -> Any:
            reads.append(1)
            return read(self, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HALODB_NATIVE", switch)
            patch.setattr(ProllyTree, "_load_leaf", counting)
            result = run_cli_in_process(home, "--cache", str(cache), "sync", "n")
        assert result.code == 0, result.err
        assert (len(reads) > 10) == (switch == "1"), len(reads)
        with duckdb.connect(str(cache), read_only=True) as con:
            tables.append([con.execute(f"SELECT * EXCLUDE ({ignore}) FROM {table} ORDER BY ALL").fetchall()
                           for table, ignore in (("stac_items", "item"), ("item_versions", "respelled"),
                                                 ("sync_state", "synced_at"))]
                          + [con.execute("SELECT item::VARCHAR FROM stac_items ORDER BY item_cid").fetchall()])
    assert tables[0] == tables[1] and len(tables[0][0]) == 1500


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.text(max_size=12), max_size=40))
def test_string_buffers_are_python_s(values: list[str | None]) -> None:
    """Any list of texts and Nones (non-ASCII, empty, all None, none None): the module's
    buffers are Python's, byte for byte; a lone surrogate is left to Python (which raises)."""
    from halodb.cache import arrow_columns

    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    made = found.string_buffers(values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arrow_columns, "native", lambda: None)
        try:
            slow: Any = arrow_columns.string_buffers(values)
        except UnicodeEncodeError:
            slow = None
    assert made == (None if slow is None else (slow.validity, slow.offsets, slow.data))


def test_string_buffers_leave_other_values_to_python(module: ModuleType) -> None:
    from halodb.cache import arrow_columns

    assert module.string_buffers(["a", 1]) is None and module.string_buffers(["a", b"b"]) is None
    assert module.string_buffers(["a", "\ud800"]) is None  # a lone surrogate: no UTF-8 for it
    with pytest.raises(UnicodeEncodeError):
        arrow_columns.string_buffers(["a", "\ud800"])
    with pytest.raises(AttributeError):  # (what the Python path says of a value that is no text)
        arrow_columns.string_buffers(["a", 1])  # type: ignore[list-item]
    assert module.string_buffers([]) == (None, b"\0\0\0\0", b"")
    assert module.string_buffers([None] * 9) == (b"\0\0", b"\0\0\0\0" * 10, b"")


#: the binary CIDs a staged row may name: CIDv1 of DAG-CBOR or raw, a CIDv0, one of another
#: hash (sha2-512: declined), and bytes that are no CID at all
def _cid_forms(data: bytes) -> list[bytes]:
    import hashlib

    v1 = CID.for_bytes(data).buffer
    return [v1, CID.for_bytes(data, 0x55).buffer, b"\x12\x20" + v1[4:],
            b"\x01\x71\x13\x40" + hashlib.sha512(data).digest(), b"\x01\x71\x12\x20" + bytes(31), b"junk"]


staged_rows = st.lists(st.tuples(
    st.binary(min_size=1, max_size=40),                      # the item's bytes
    st.integers(0, 5),                                       # which CID form names them
    st.sampled_from(["pack", "table", "none", "damaged", "short", "half"]),  # where the stage holds them
), max_size=12)


@settings(max_examples=300, deadline=None)
@given(staged_rows)
def test_staged_bytes_are_python_s_up_to_the_row_it_declines(rows: list[tuple[bytes, int, str]]) -> None:
    """Rows in the pack, in the table, with no bytes; damaged, cut short, half a place; CIDs of
    every form: the module returns what the Python path reads for each row it takes, and
    stops at the first it does not, which the Python path then decides (it raises there, or
    reads it: a CID form the module leaves alone)."""
    import os
    import tempfile

    from halodb.api.stagedb import _item_bytes

    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    pack = bytearray()
    staged: list[tuple[Any, ...]] = []
    for n, (data, form, where) in enumerate(rows):
        cid = _cid_forms(data)[form]
        at: int | None = len(pack)
        size: int | None = len(data)
        pack += data if where != "damaged" else bytes([data[0] ^ 1]) + data[1:]
        held = data if where == "table" else None
        if where in ("table", "none"):
            at = size = None
        elif where == "short":
            size = len(data) + 10_000  # past the pack's end
        elif where == "half":
            size = None
        staged.append((f"k{n}", cid, None, None, None, held, at, size))
    with tempfile.TemporaryFile() as file:
        file.write(pack)
        file.flush()
        fd = file.fileno()
        columns = list(zip(*staged)) or [()] * 8
        held, done = found.staged_bytes(fd, columns[1], columns[5], columns[6], columns[7])
        assert len(held) == done <= len(staged)
        for row, got in zip(staged, held):
            assert got == _item_bytes(row, fd)[1]
        if done < len(staged):  # declined: never a plain row (SHA-256 CID, its bytes whole or none)
            _, form, where = rows[done]
            assert not (form in (0, 1, 2) and where in ("pack", "table", "none")), rows[done]
            try:
                _item_bytes(staged[done], fd)  # the Python path's to decide: it reads it, or refuses it
            except (HaloDBError, TypeError):
                pass
        assert found.staged_bytes(None, columns[1], columns[5], [None] * len(staged), [None] * len(staged))[1] >= 0
        assert os.fstat(fd)  # (the descriptor is the caller's: still open)


entry_rows = st.lists(st.tuples(
    st.binary(min_size=1, max_size=60),                         # the item's bytes
    st.integers(0, 5),                                          # its CID's form
    st.sampled_from(["held", "none", "large"]),                 # its bytes held, none, over the limit
    st.none() | st.text(max_size=8), st.none() | st.text(max_size=30), st.none() | st.text(max_size=8),
), max_size=12)


@settings(max_examples=300, deadline=None)
@given(entry_rows)
def test_entry_values_are_python_s_or_declined(rows: list[tuple[bytes, int, str, str | None, str | None, str | None]]) -> None:
    """Each value the module encodes is ``encode_shallow`` of the entry's value as index format 3
    holds it (its bytes inline); it declines just the entries format 3 links (no bytes, too
    many, an item not a CIDv1 of DAG-CBOR) and fields of another type."""
    from halodb.index.model import Entry
    from halodb.ipld.codec import encode_shallow

    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    limit = 40
    items, held, data, paths, dois = [], [], [], [], []
    for item, form, how, datum, path, doi in rows:
        items.append(_cid_forms(item)[form])
        held.append(None if how == "none" else item if how == "held" else item * 50)
        data.append(datum)
        paths.append(path)
        dois.append(doi)
    values = found.entry_values(items, held, data, paths, dois, limit)
    assert len(values) == len(rows)
    for n, value in enumerate(values):
        inline = held[n]
        taken = inline is not None and len(inline) <= limit and items[n][:4] == b"\x01\x71\x12\x20" and len(items[n]) == 36
        assert (value is not None) == taken, n
        if value is not None:
            entry = Entry(CID(items[n]), data[n], paths[n], dois[n])
            assert value == encode_shallow(entry.to_ipld_holding(inline))
    v1 = CID.for_bytes(b"\xa0").buffer
    assert found.entry_values([v1, v1], [b"\xa0", b"\xa0"], [1, None], [None, "\ud800"], [None, None], limit) == [None, None]
    with pytest.raises(ValueError, match="lengths"):
        found.entry_values([v1], [], [], [], [], limit)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="abcé水", max_size=5), st.binary(max_size=30)), max_size=60),
       st.integers(0, 60), st.booleans())
def test_a_cutter_takes_runs_as_it_takes_entries_and_stops_where_told(
        entries: list[tuple[str, bytes]], at: int, to_boundary: bool) -> None:
    """``push_sorted`` cuts the leaves ``push_one`` cuts, entry by entry; it stops before a key
    not above the one before (saying so), and with ``to_boundary`` after a leaf's last entry."""
    found = _module()
    require(found is not None, "the compiled module halodb_native is not installed (make native; it needs cargo)")
    assert found is not None
    pairs = sorted(dict(entries).items())
    keys, values = [k for k, _ in pairs], [v for _, v in pairs]
    one, run = found.LeafCutter(40, 0, CID), found.LeafCutter(40, 0, CID)
    singly = [(n, leaf) for n, (k, v) in enumerate(pairs) if (leaf := one.push_one(k, v)) is not None]
    leaves, pushed, ordered = run.push_sorted(keys, values, to_boundary)
    assert ordered
    if to_boundary and singly:
        assert leaves == [singly[0][1]] and pushed == singly[0][0] + 1
    else:
        assert leaves == [leaf for _, leaf in singly] and pushed == len(keys)
        assert run.finish() == one.finish()
    if len(keys) >= 2:
        at = at % (len(keys) - 1) + 1
        swapped = [*keys[:at], keys[at - 1], *keys[at + 1:]]  # a key twice: not above the one before
        leaves, pushed, ordered = found.LeafCutter(40, 0, CID).push_sorted(swapped, values, False)
        assert not ordered and pushed == at
    with pytest.raises(ValueError, match="keys but"):
        found.LeafCutter(40, 0, CID).push_sorted(["a"], [], False)
