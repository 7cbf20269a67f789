"""Bounds on items and blocks (issue 10, defect 4; the duplicate ids of defect 12).

An item nested too deep, holding an integer outside the 64-bit range, or too large is refused
at ``add`` with one line naming the file and the JSON path; the codec refuses such values and
blocks with its own errors (never a ``RecursionError``); and a sync meets a bad item block
that someone wrote with their own tool by skipping it with a report, instead of failing
forever. Real homes, the real CLI in a subprocess, real DuckDB caches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dag_cbor
import pytest

import halodb
from halodb import stac
from halodb.blockstore.car import write_car
from halodb.blockstore.sqlite import DB_NAME
from halodb.errors import DecodeError, EncodeError, InvalidItemError
from halodb.index.commit import commit_changes
from halodb.index.model import Entry
from halodb.ipld import (
    CID,
    DAG_CBOR,
    decode,
    decode_reference,
    encode,
    encode_reference,
    make_block,
)
from halodb.ipld.limits import (
    MAX_BLOCK_SIZE,
    MAX_INT,
    MAX_ITEM_SIZE,
    MAX_NESTING,
    MIN_INT,
)
from halodb.testing.blockstore import damage_row
from halodb.util.times import to_time

from .conftest import cid_for, make_item, run_cli_in_process


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` lists: ``nested(2) == [[1]]``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_cbor(depth: int, leaf: bytes = b"\x01") -> bytes:
    """A DAG-CBOR block of ``depth`` nested one-element lists, written byte by byte (no encoder
    would write one this deep)."""
    return b"\x81" * depth + leaf


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# == the codec ============================================================================
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 1_000, 100_000])
def test_decode_refuses_a_block_nested_too_deep_naming_it(depth: int) -> None:
    data = deep_cbor(depth)
    cid = CID.for_bytes(data, DAG_CBOR)
    for decoder in (decode, decode_reference):
        with pytest.raises(DecodeError) as info:
            decoder(data, cid=cid)
        assert f"deeper than {MAX_NESTING} levels" in str(info.value) and str(cid) in str(info.value)
        assert info.value.cid == cid
    assert decode(deep_cbor(MAX_NESTING)) == nested(MAX_NESTING)
    maps = b"\xa1\x61a" * depth + b"\x01"  # {"a": {"a": ... 1}}
    with pytest.raises(DecodeError, match=f"deeper than {MAX_NESTING} levels( \\(at /a/a/a)?"):
        decode(maps)


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 100_000])
def test_encode_refuses_a_value_nested_too_deep_with_its_path(depth: int) -> None:
    value = {"properties": {"x": nested(depth - 2)}}
    for encoder in (encode, encode_reference):
        with pytest.raises(EncodeError) as info:
            encoder(value)
        assert f"deeper than {MAX_NESTING} levels" in str(info.value)
        assert str(info.value.path).startswith("/properties/x/0/0")
    assert decode(encode(nested(MAX_NESTING))) == nested(MAX_NESTING)


def test_integers_keep_the_64_bit_range_both_ways() -> None:
    assert decode(encode([MIN_INT, MAX_INT])) == [MIN_INT, MAX_INT]
    for value in (MAX_INT + 1, MIN_INT - 1, 10**5000):
        with pytest.raises(EncodeError, match="integers must lie in"):
            encode({"n": [value]})
    bignum = bytes.fromhex("c249010000000000000000")  # tag 2: 2**64 as a CBOR bignum
    with pytest.raises(DecodeError):
        decode(bignum)
    with pytest.raises(DecodeError):
        decode_reference(bignum)


def test_blocks_larger_than_the_limit_are_refused_both_ways() -> None:
    with pytest.raises(EncodeError, match=f"more than the {MAX_BLOCK_SIZE}"):
        encode({"blob": "x" * MAX_BLOCK_SIZE})
    data = dag_cbor.encode({"blob": "x" * MAX_BLOCK_SIZE})
    cid = CID.for_bytes(data, DAG_CBOR)
    with pytest.raises(DecodeError, match=f"more than the {MAX_BLOCK_SIZE}") as info:
        decode(data, cid=cid)
    assert info.value.cid == cid


# == add ==================================================================================
def feature(**properties: Any) -> dict[str, Any]:
    item = make_item("x", cid_for("x"))
    item["properties"].update(properties)
    return item


def deep_json(depth: int) -> str:
    """An item whose ``properties.deep`` holds ``depth`` nested arrays, as JSON text."""
    text = json.dumps(feature(deep="@"))
    return text.replace('"@"', "[" * depth + "1" + "]" * depth)


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("deep300", deep_json(300), "properties.deep[0][0]"),  # used to pass add and wedge every sync
        ("deep5000", deep_json(5_000), "properties.deep[0][0]"),  # used to be a RecursionError traceback
        ("digits", json.dumps(feature(n="@")).replace('"@"', "9" * 5_000), "properties.n: an integer of 5000 digits"),
        ("int65", json.dumps(feature(n=[1, MAX_INT + 1])), "properties.n[1]: an integer of 20 digits"),
        ("big", json.dumps(feature(blob="x" * MAX_ITEM_SIZE)), "properties.blob: the item is"),
    ],
)
def test_add_refuses_an_item_out_of_bounds_in_one_line_naming_file_and_path(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    r = run_cli_in_process(home, "add", str(path))
    line = one_line(r.err)
    assert r.code == 2, r.err
    assert str(path) in line and expected in line, line
    with halodb.open(home) as reg:
        assert not reg.staged()


def test_an_ndjson_line_too_deep_is_named_by_its_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    good = json.dumps(feature())
    r = run_cli_in_process(home, "add", "-", stdin=f"{good}\n{deep_json(2_000)}\n")
    assert r.code == 2 and "<stdin>:2: properties.deep[0]" in one_line(r.err), r.err


def test_the_parse_point_refuses_what_json_parsed(tmp_path: Path) -> None:
    """Values that reach parse_item without a JSON text (the Python API) meet the same bounds."""
    with pytest.raises(InvalidItemError, match=r"x: properties\.deep\[0\].*deeper than 64"):
        stac.parse_item(feature(deep=nested(MAX_NESTING)), "x")
    assert stac.parse_item(feature(deep=nested(MAX_NESTING - 2)), "x")["properties"]["deep"] == nested(MAX_NESTING - 2)
    with pytest.raises(InvalidItemError, match=r"x: properties\.n: an integer"):
        stac.parse_item(feature(n=MIN_INT - 1), "x")
    with pytest.raises(InvalidItemError, match="more than the 1048576 an item may take"):
        stac.item_block(stac.parse_item(feature(blob="y" * MAX_ITEM_SIZE), "x"), "x")
    path = tmp_path / "deep.json"
    path.write_text(deep_json(100_000))
    with pytest.raises(InvalidItemError, match=r"deep\.json:1: properties\.deep\[0\]"):
        list(stac.read_items([str(path)], None))


def test_the_too_deep_item_of_a_feature_collection_is_the_one_named(tmp_path: Path) -> None:
    legal = feature(deep=nested(MAX_NESTING - 2))  # 64 levels inside the item: allowed
    collection = json.dumps({"type": "FeatureCollection", "features": [legal, feature(deep="@")]})
    path = tmp_path / "fc.json"
    path.write_text(collection.replace('"@"', "[" * 5_000 + "]" * 5_000))
    with pytest.raises(InvalidItemError, match=r"fc\.json:1: features\[1\]\.properties\.deep\[0\]"):
        list(stac.read_items([str(path)], None))


def test_duplicate_keys_in_one_add_are_refused_naming_both_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps(make_item("x", cid_for("one"))))
    b.write_text(json.dumps(make_item("x", cid_for("two"))))
    c.write_text(json.dumps(make_item("y", cid_for("three"))))
    r = run_cli_in_process(home, "add", str(c), str(a), str(b))
    line = one_line(r.err)
    assert r.code == 2 and str(b) in line and str(a) in line and "'halo/x'" in line, r.err
    with halodb.open(home) as reg:
        assert not reg.staged()
    r = run_cli_in_process(home, "add", str(a), str(c), str(a), "--json")  # the same item twice: staged once
    assert r.code == 0 and json.loads(r.out)["staged"] == ["halo/x", "halo/y"], r.err


# == sync =================================================================================
def bad_blocks() -> dict[str, tuple[bytes, str]]:
    """Item blocks a sync cannot materialize, as someone writes them with their own tool:
    key -> (block, words of the reason a sync gives)."""
    deep_item = dag_cbor.encode({"type": "Feature", "id": "deep", "properties": {"x": nested(300)}})
    huge = dag_cbor.encode({"type": "Feature", "id": "huge", "properties": {"blob": "z" * (MAX_ITEM_SIZE + 10)}})
    return {
        "halo/deep": (deep_item, f"deeper than {MAX_NESTING} levels"),
        "halo/abyss": (deep_cbor(100_000), f"deeper than {MAX_NESTING} levels"),
        "halo/huge": (huge, f"more than the {MAX_ITEM_SIZE}"),
        "halo/shape": (dag_cbor.encode({"id": "shape"}), "not a STAC item"),
        "halo/garbage": (b"\xff\x00garbage", "invalid DAG-CBOR"),
    }


def commit_bad_items(reg: halodb.Registry, blocks: dict[str, tuple[bytes, str]], time: str) -> CID:
    """Commit the ``blocks`` as items on top of the local head, written directly into the store
    (no check of ``add`` on the way), as a hostile writer's own tool would."""
    upserts: dict[str, Entry] = {}
    for key, (data, _) in blocks.items():
        cid = CID.for_bytes(data, DAG_CBOR)
        reg.store.put_block(cid, data)
        upserts[key] = Entry(item=cid, data=cid_for(key), path=f"products/{key}.zarr")
    with reg.state.locked("bad items"):
        head = commit_changes(reg.store, reg.index, reg.head, upserts, set(), time=to_time(time, what="time"),
                              author="mallory", message="bad items")
        reg.store.flush()
        reg.state.save(head, reg.staged())
    return head


@pytest.fixture
def poisoned(tmp_path: Path) -> Path:
    """A home whose name "n" holds two good items, then five bad ones (committed behind add's
    back), then a third good one and an item with the extreme 64-bit integers."""
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add([make_item("good1", cid_for("g1")), make_item("good2", cid_for("g2"))])
        reg.commit("good", time="2024-09-01T00:00:00Z")
        commit_bad_items(reg, bad_blocks(), "2024-09-02T00:00:00Z")
        extreme = make_item("extreme", cid_for("e"))
        extreme["properties"]["range"] = [MIN_INT, MAX_INT]  # orjson cannot write MIN_INT
        reg.add([make_item("good3", cid_for("g3")), extreme])
        reg.commit("more good", time="2024-09-03T00:00:00Z")
        reg.publish("n")
    return home


def test_sync_skips_the_items_it_cannot_materialize_and_reports_them(poisoned: Path) -> None:
    r = run_cli_in_process(poisoned, "sync", "n", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    bad = bad_blocks()
    skipped = {s["key"]: s for s in out["skipped"]}
    assert set(skipped) == set(bad)
    err = [line for line in r.err.splitlines() if line.startswith("skipped ")]
    assert len(err) == len(bad) and "Traceback" not in r.err
    for key, (data, reason) in bad.items():
        cid = str(CID.for_bytes(data, DAG_CBOR))
        assert skipped[key]["item_cid"] == cid and reason in skipped[key]["reason"] and skipped[key]["current"]
        assert any(line.startswith(f"skipped {key} ({cid}): ") and reason in line for line in err), err
    with halodb.open(poisoned) as reg:
        keys = [row[0] for row in reg.sql("SELECT key FROM items ORDER BY key")[1]]
        assert keys == ["halo/extreme", "halo/good1", "halo/good2", "halo/good3"]
        rng = reg.sql("SELECT item->'properties'->'range' FROM items WHERE key = 'halo/extreme'")[1][0][0]
        assert json.loads(rng) == [MIN_INT, MAX_INT]
        # the versions are there, from the index: `at` answers for a skipped item too
        assert reg.cid_at("halo/deep", "2024-09-05T00:00:00Z", "n") == cid_for("halo/deep")
        assert reg.sql("SELECT count(*) FROM skipped_items")[1] == [(len(bad),)]


def test_a_later_sync_still_reports_the_skipped_items(poisoned: Path) -> None:
    assert run_cli_in_process(poisoned, "sync", "n").code == 0
    r = run_cli_in_process(poisoned, "sync", "n", "--json")  # up to date: the report stays
    assert r.code == 0 and len(json.loads(r.out)["skipped"]) == len(bad_blocks()), r.err
    with halodb.open(poisoned) as reg:
        reg.remove(["halo/deep"])
        reg.add([make_item("deep", cid_for("fixed"))])
        reg.commit("fixed", time="2024-09-04T00:00:00Z")
        reg.publish("n")
        result = reg.sync("n")
        by_key = {(s.key, s.current) for s in result.skipped}
        assert ("halo/deep", False) in by_key and ("halo/deep", True) not in by_key
        assert ("halo/huge", True) in by_key
        assert ("halo/deep",) in reg.sql("SELECT key FROM items")[1]
    r = run_cli_in_process(poisoned, "sync", "n")
    assert "skipped halo/deep (" in r.err and "an older version" in r.err


def test_a_full_resync_into_a_fresh_cache_skips_the_same_items(poisoned: Path, tmp_path: Path) -> None:
    """The old wedge: a fresh sync replays the commit with the bad items."""
    with halodb.open(poisoned) as reg:
        reg.remove(list(bad_blocks()))
        reg.commit("bad items removed", time="2024-09-04T00:00:00Z")
        reg.publish("n")
    with halodb.open(poisoned, cache=tmp_path / "fresh.duckdb") as reg:
        result = reg.sync("n")
        assert result.commits == 4
        assert {s.key for s in result.skipped} == set(bad_blocks())
        assert not any(s.current for s in result.skipped)
        assert reg.sql("SELECT count(*) FROM items")[1] == [(4,)]


def test_a_missing_or_corrupt_block_still_fails_the_sync(poisoned: Path, tmp_path: Path) -> None:
    data, _ = bad_blocks()["halo/huge"]  # a block of its own (the small bad ones ride inline in their leaf)
    cid = CID.for_bytes(data, DAG_CBOR)
    damage_row(poisoned / "blocks" / DB_NAME, cid)
    r = run_cli_in_process(poisoned, "--cache", str(tmp_path / "c.duckdb"), "sync", "n")
    assert r.code == 2 and str(cid) in one_line(r.err), r.err
    with halodb.open(poisoned, cache=tmp_path / "c.duckdb") as reg:
        assert reg.sql("SELECT count(*) FROM commits")[1] == [(0,)]


def test_import_car_refuses_a_block_too_deep_to_follow(tmp_path: Path) -> None:
    leaf, leaf_data = make_block("leaf")
    deep = deep_cbor(100_000, b"\xd8\x2a" + _link(leaf))  # a link 100,000 lists down
    root = CID.for_bytes(deep, DAG_CBOR)
    car = tmp_path / "deep.car"
    write_car(car, [root], [(root, deep), (leaf, leaf_data)])
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    r = run_cli_in_process(home, "import-car", str(car))
    assert r.code == 2 and str(root) in one_line(r.err) and "deeper than" in r.err, r.err


def _link(cid: CID) -> bytes:
    """The CBOR bytes of a link (tag 42 and the CID's bytes with the 0x00 prefix), without the tag."""
    body = b"\x00" + cid.buffer
    return bytes([0x58, len(body)]) + body
