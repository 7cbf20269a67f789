"""Pin lists (ORCESTRA's real ``pinlist.yaml`` and broken ones) and the pins a name's index plans."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from halodb.api.registry import Registry
from halodb.errors import InputError, PinListError
from halodb.ipld import CID, DAG_PB, RAW
from halodb.pins import Pin, chains, check_pinlist, dump_pinlist, load_pinlist
from halodb.pins.plan import plan_pins

from .conftest import cid_for, make_item, run_cli, shared_data

ORCESTRA = shared_data("orcestra", "pinlist.yaml")


def dag_pb(text: str, version: int = 0) -> str:
    """The CIDv0 (``Qm…``) or CIDv1 (``bafy…``) of a dag-pb block holding ``text``."""
    multihash = b"\x12\x20" + hashlib.sha256(text.encode()).digest()
    return str(CID(multihash if version == 0 else bytes([1, DAG_PB]) + multihash))


A, B, C = (dag_pb(f"head {i}") for i in range(3))


def write(tmp_path: Path, value: Any, name: str = "pinlist.yaml") -> Path:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else yaml.safe_dump(value, sort_keys=False))
    return path


def test_orcestra_pin_list_names_three_entries_alike() -> None:
    """The campaign's own list is refused as it is (entries 15 to 17 are all "ORCESTRA HEAD v14"),
    naming the entry; accepted with --allow-duplicate-names, chains intact."""
    with pytest.raises(PinListError) as e:
        load_pinlist(ORCESTRA)
    assert e.value.entry == 16 and "'ORCESTRA HEAD v14'" in str(e.value) and "entry 15" in str(e.value)
    pins = load_pinlist(ORCESTRA, allow_duplicate_names=True)
    assert len(pins) == 124
    found = chains(pins)
    heads = max(found, key=len)
    assert len(found) == 7 and len(heads) == 114
    assert heads[0].name == "ORCESTRA HEAD v0" and heads[-1].name == "ORCESTRA HEAD v110"
    assert all(later.prev == earlier.cid for earlier, later in zip(heads, heads[1:]))
    eurec4a = next(c for c in found if c[-1].name == "EUREC4A v4")
    assert [p.name for p in eurec4a] == [f"EUREC4A v{n}" for n in range(5)] and eurec4a[0].tags == ("eurec4a",)


def test_a_pin_list_round_trips(tmp_path: Path) -> None:
    pins = load_pinlist(ORCESTRA, allow_duplicate_names=True)
    again = load_pinlist(write(tmp_path, dump_pinlist(pins)), allow_duplicate_names=True)
    assert again == pins
    assert yaml.safe_load(dump_pinlist(pins[:2]))[1] == {
        "cid": pins[1].cid, "name": "ORCESTRA HEAD v1", "meta": {"prev": pins[0].cid, "tags": ["all"]}}


@pytest.mark.parametrize(("value", "entry", "message"), [
    ([{"cid": A, "name": "a"}, {"cid": B, "name": "b", "meta": {"prev": C}}], 2, f"meta.prev {C} is the CID of no entry"),
    ([{"cid": A, "meta": {"prev": A}}], 1, "meta.prev is its own CID"),
    ([{"cid": A, "meta": {"prev": B}}, {"cid": B, "meta": {"prev": A}}], 1, "comes back to this entry"),
    ([{"cid": A}, {"cid": B, "meta": {"prev": A}}, {"cid": C, "meta": {"prev": A}}], 3, "entry 2 follows entry 1 already"),
    ([{"cid": A, "name": "x"}, {"cid": B, "name": "x"}], 2, "has the name of entry 1"),
    ([{"cid": A}, {"cid": dag_pb("head 0", 1)}], 2, "which entry 1 pins already"),
    ([{"cid": A}, {"cid": "Qm-not-a-cid"}], 2, "'cid' is not a CID"),
    ([{"cid": A, "pinned": True}], 1, "unknown field(s) 'pinned'"),
    ([{"name": "no cid"}], 1, "'cid' is missing"),
    ([{"cid": A, "name": "x" * 256}], 1, "longer than 255"),
    ([{"cid": A, "meta": ["tags"]}], 1, "'meta' is not a mapping"),
    ([{"cid": A, "meta": {"tags": [1, 2]}}], 1, "'meta.tags' is not text"),
    ([{"cid": A, "meta": {"prev": "nope"}}], 1, "'meta.prev' is not a CID"),
    ([{"cid": A, "origins": ["not-a-multiaddr"]}], 1, "'origins'"),
    (["just text"], 1, "a pin is a mapping"),
])
def test_a_broken_pin_list_names_the_entry(tmp_path: Path, value: Any, entry: int, message: str) -> None:
    path = write(tmp_path, value)
    with pytest.raises(PinListError) as e:
        load_pinlist(path)
    assert f"entry {entry}" in str(e.value) and message in str(e.value) and str(path) in str(e.value)
    assert e.value.entry == entry


def test_the_cli_names_the_broken_entry(tmp_path: Path) -> None:
    path = write(tmp_path, [{"cid": A, "name": "a"}, {"cid": B, "name": "b", "meta": {"prev": C}}])
    result = run_cli(tmp_path / "home", "pins", "import", str(path))
    assert result.code == 2 and result.out == ""
    assert result.err == f"halodb: error: {path}: entry 2 ('b'): broken chain: meta.prev {C} is the CID of no entry\n"


@pytest.mark.parametrize(("text", "message"), [
    ("{cid: x}", "a pin list is a YAML list"),
    ("- &a {cid: QmcqgdpTAXRJFnKonSUWDDbpJfiLbq3275GHn84sizNEfm}\n- *a\n", "aliases"),
    ("- [unclosed", "not valid YAML"),
])
def test_a_pin_list_that_is_not_one(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_pinlist(write(tmp_path, text))


def test_import_summarises_and_prints_json(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "home", "pins", "import", "--allow-duplicate-names", str(ORCESTRA))
    assert result.code == 0, result.err
    assert "124 pin(s) in 7 chain(s); tags: all, aux, eurec4a, gate" in result.out
    assert "ORCESTRA HEAD v0 .. ORCESTRA HEAD v110" in result.out
    as_json = run_cli(tmp_path / "home", "pins", "import", "--allow-duplicate-names", "--json", str(ORCESTRA))
    assert len(yaml.safe_load(as_json.out)) == 124


# -- plans from an index ----------------------------------------------------------------------
def campaign(registry: Registry) -> list[str]:
    """Three versions: a and b; b reprocessed and c added; a moved from CIDv0 to CIDv1 (the same
    data) and c removed."""
    data_a = dag_pb("dataset a")
    registry.add([make_item("a", data_a, path="HALO/a.zarr"), make_item("b", cid_for("b1"), path="HALO/b.zarr")])
    registry.commit("first", time="2024-08-10T00:00:00Z")
    registry.add([make_item("b", cid_for("b2"), path="HALO/b.zarr"), make_item("c", cid_for("c1"))])
    registry.commit("second", time="2024-08-20T00:00:00Z")
    registry.add([make_item("a", dag_pb("dataset a", 1), path="HALO/a.zarr")])
    registry.remove(["halo/c"])
    registry.commit("third", time="2024-09-01T00:00:00Z")
    return [data_a]


def test_a_plan_lists_heads_and_every_versions_data(registry: Registry) -> None:
    (data_a,) = campaign(registry)
    head = registry.head
    assert head is not None
    plan = plan_pins(registry.store, registry.index, head, label="latest", tags=["all"])
    commits = [e.cid for e in registry.log()][::-1]
    assert [(p.cid, p.name, p.prev) for p in plan.index] == [
        (str(commits[0]), "latest HEAD v0", None), (str(commits[1]), "latest HEAD v1", str(commits[0])),
        (str(commits[2]), "latest HEAD v2", str(commits[1]))]
    assert plan.head_pin.cid == str(head) and plan.versions == 3
    # a's move to CIDv1 is the same data: one pin, under the spelling seen first
    assert [(p.cid, p.name, p.prev) for p in plan.data] == [
        (data_a, "halo/a v0", None), (cid_for("b1"), "halo/b v0", None),
        (cid_for("b2"), "halo/b v1", cid_for("b1")), (cid_for("c1"), "halo/c v0", None)]
    b2 = plan.data[2]
    assert dict(b2.meta) == {"halodb:key": "halo/b", "halodb:path": "HALO/b.zarr", "halodb:since": "2024-08-20T00:00:00Z",
                             "prev": cid_for("b1"), "tags": ("all",)}
    check_pinlist(plan.pins)  # a plan is a valid pin list
    current = plan_pins(registry.store, registry.index, head, label="latest", current_only=True)
    assert [p.name for p in current.index] == ["latest HEAD v2"] and current.index[0].prev is None
    assert sorted(p.cid for p in current.data) == sorted([dag_pb("dataset a", 1), cid_for("b2")])  # as spelled now


def test_export_writes_what_import_reads(registry: Registry, home: Path, tmp_path: Path) -> None:
    campaign(registry)
    registry.publish("latest")
    registry.close()
    out = tmp_path / "pinlist.yaml"
    result = run_cli(home, "pins", "export", "latest", "-o", str(out), "--tag", "all")
    assert result.code == 0, result.err
    assert "wrote 7 pin(s) (3 head(s), 4 data)" in result.out
    pins = load_pinlist(out)
    assert [p.name for p in pins][:3] == ["latest HEAD v0", "latest HEAD v1", "latest HEAD v2"]
    assert all(p.tags == ("all",) for p in pins)
    plan = run_cli(home, "pins", "plan", "latest", "--current", "--json")
    assert plan.code == 0, plan.err
    assert [Pin.from_json(p).name for p in yaml.safe_load(plan.out)] == ["latest HEAD v2", "halo/a v0", "halo/b v1"]
    both = run_cli(home, "pins", "plan", "latest", "--current", "--all-versions")
    assert both.code == 2 and "exclude each other" in both.err


def test_a_raw_leaf_cid_is_a_pin_too() -> None:
    raw = str(CID.for_bytes(b"x", RAW))
    assert Pin.from_json({"cid": raw}).parsed_cid.codec == RAW
