"""DOIs: their syntax, the index's ``by_doi`` tree, and what a registry does with ``sci:doi``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from halodb.api.registry import Registry
from halodb.blockstore import MemoryStore
from halodb.errors import DoiConflictError, InputError, InvalidItemError, RegistryError, SchemaError
from halodb.index.index import Index
from halodb.index.model import Entry, IndexRoot
from halodb.index.reachable import reachable
from halodb.index.history import load_commit
from halodb.ipld import CID, decode, make_block
from halodb.stac import item_doi
from halodb.util.doi import MAX_DOI_LENGTH, normalize_doi

from .conftest import cid_for, make_item

ITEM = CID.for_bytes(b"{}")
#: both index formats: 1 and 2 (items linked), 3 (items inline)
FORMATS = pytest.mark.parametrize("inline_items", [False, True], ids=["format-1-2", "format-3"])


def index_with_item(inline_items: bool, store: MemoryStore | None = None) -> Index:
    """An index over a store that holds ITEM's block, writing format 3 or formats 1 and 2."""
    store = store if store is not None else MemoryStore()
    store.put_block(ITEM, b"{}")
    return Index(store, inline_items=inline_items)


def with_doi(item_id: str, cid: str, doi: str | None, **kw: Any) -> dict[str, Any]:
    item = make_item(item_id, cid, **kw)
    if doi is not None:
        item["properties"]["sci:doi"] = doi
    return item


# -- syntax ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["10.82246/orcestra.halo", "doi:10.82246/ORCESTRA.HALO", "DOI:10.82246/orcestra.halo",
                                  "https://doi.org/10.82246/Orcestra.Halo", "http://dx.doi.org/10.82246/orcestra.halo",
                                  "  10.82246/orcestra.halo\n"])
def test_every_spelling_of_a_doi_is_one_doi(text: str) -> None:
    assert normalize_doi(text, "t") == "10.82246/orcestra.halo"


def test_only_ascii_letters_are_folded() -> None:
    assert normalize_doi("10.1234/ÄB", "t") == "10.1234/Äb"
    assert Entry.from_ipld({"item": ITEM, "doi": "10.1234/Äb"}, cid=None).doi == "10.1234/Äb"


@pytest.mark.parametrize("text", ["", "10.82246", "10.82246/", "11.82246/x", "10.123/x", "10.1234567890/x", "10.1234/a b",
                                  "10.1234/a\x00b", "10.1234/a\x85b", "doi:", "https://example.org/10.1234/x",
                                  "10.1234/" + "x" * MAX_DOI_LENGTH, "x" * 10_000_000])
def test_what_is_no_doi_is_refused_naming_where(text: str) -> None:
    with pytest.raises(InputError) as info:
        normalize_doi(text, "--the-option")
    assert str(info.value).startswith("--the-option: ") and info.value.source == "--the-option"
    assert len(str(info.value)) < 300  # a huge input is not echoed whole


def test_a_doi_that_is_no_text_is_refused() -> None:
    with pytest.raises(InputError):
        normalize_doi(42, "x")  # type: ignore[arg-type]


def test_an_items_doi_is_read_from_sci_doi() -> None:
    assert item_doi(with_doi("a", cid_for("a"), "https://doi.org/10.5061/DRYAD.s2v81.2/27.2")) == "10.5061/dryad.s2v81.2/27.2"
    assert item_doi(make_item("a", cid_for("a"))) is None
    for bad in [17, ["10.1234/x"], "see the paper", "10.1234/x y"]:
        with pytest.raises(InvalidItemError) as info:
            item_doi(with_doi("a", cid_for("a"), bad), source="a.json")  # type: ignore[arg-type]
        assert info.value.field == "properties.sci:doi" and str(info.value).startswith("a.json: properties.sci:doi: ")


# -- the by_doi tree -----------------------------------------------------------------------------
@FORMATS
def test_a_root_without_dois_is_written_as_before(inline_items: bool) -> None:
    idx = index_with_item(inline_items)
    plain = idx.apply(idx.empty(), {"c/a": Entry(ITEM, "bafkqaaa", "p/a")}, [])
    assert plain.by_doi is None and plain.to_ipld()["version"] == (3 if inline_items else 1)
    assert "by_doi" not in plain.to_ipld()
    with_one = idx.apply(plain, {"c/a": Entry(ITEM, "bafkqaaa", "p/a", "10.1234/a")}, [])
    assert with_one.by_doi is not None and with_one.to_ipld()["version"] == (3 if inline_items else 2)
    # the DOI gone again: the very root (and block) of the version that never had one
    back = idx.apply(with_one, {"c/a": Entry(ITEM, "bafkqaaa", "p/a")}, [])
    assert back == plain and idx.write_root(back) == idx.write_root(plain)


@FORMATS
def test_by_doi_follows_every_change(inline_items: bool) -> None:
    idx = index_with_item(inline_items)
    root = idx.apply(idx.empty(), {"c/a": Entry(ITEM, "d1", doi="10.1234/a"), "c/b": Entry(ITEM, "d2")}, [])
    assert list(idx.dois(root)) == [("10.1234/a", "c/a")]
    root = idx.apply(root, {"c/b": Entry(ITEM, "d2", doi="10.1234/b")}, [])  # a DOI added
    root = idx.apply(root, {"c/a": Entry(ITEM, "d3", doi="10.1234/a")}, [])  # new data, same DOI
    assert list(idx.dois(root)) == [("10.1234/a", "c/a"), ("10.1234/b", "c/b")]
    root = idx.apply(root, {"c/a": Entry(ITEM, "d3", doi="10.1234/a2")}, [])  # the DOI replaced
    assert idx.key_for_doi(root, "10.1234/a") is None and idx.key_for_doi(root, "10.1234/a2") == "c/a"
    root = idx.apply(root, {}, ["c/b"])  # the dataset withdrawn
    assert list(idx.dois(root)) == [("10.1234/a2", "c/a")]
    # the same entries in one go give the same root: history independence holds for by_doi too
    assert root == idx.apply(idx.empty(), {"c/a": Entry(ITEM, "d3", doi="10.1234/a2")}, [])


@FORMATS
def test_two_datasets_cannot_claim_one_doi(inline_items: bool) -> None:
    idx = index_with_item(inline_items)
    with pytest.raises(DoiConflictError) as info:
        idx.apply(idx.empty(), {"c/a": Entry(ITEM, doi="10.1234/x"), "c/b": Entry(ITEM, doi="10.1234/x")}, [])
    assert info.value.doi == "10.1234/x" and {info.value.key, info.value.other} == {"c/a", "c/b"}
    root = idx.apply(idx.empty(), {"c/a": Entry(ITEM, doi="10.1234/x")}, [])
    with pytest.raises(DoiConflictError) as info:
        idx.apply(root, {"c/b": Entry(ITEM, doi="10.1234/x")}, [])
    assert (info.value.key, info.value.other) == ("c/b", "c/a")
    assert str(info.value) == "cannot give 'c/b' the DOI '10.1234/x': dataset 'c/a' has it"
    # it may move when its holder lets go of it in the same change: removed, or given another DOI
    moved = idx.apply(root, {"c/b": Entry(ITEM, doi="10.1234/x")}, ["c/a"])
    assert idx.key_for_doi(moved, "10.1234/x") == "c/b"
    swapped = idx.apply(root, {"c/b": Entry(ITEM, doi="10.1234/x"), "c/a": Entry(ITEM, doi="10.1234/y")}, [])
    assert list(idx.dois(swapped)) == [("10.1234/x", "c/b"), ("10.1234/y", "c/a")]


@FORMATS
def test_a_root_of_before_dois_reads_and_grows_a_by_doi_tree(inline_items: bool) -> None:
    """A root of before DOIs grows a by_doi tree: in format 2, or in format 3, the first change
    building every tree anew."""
    store = MemoryStore()
    idx = index_with_item(inline_items, store)
    old = Index(store, inline_items=False).apply(idx.empty(), {"c/a": Entry(ITEM, "d1")}, [])
    raw = old.to_ipld()
    del raw["version"]  # the oldest roots were read without looking at it, too
    cid, data = make_block(raw)
    store.put_block(cid, data)
    read = idx.load_root(cid)
    assert read.by_doi is None and idx.key_for_doi(read, "10.1234/a") is None and list(idx.dois(read)) == []
    grown = idx.apply(read, {"c/b": Entry(ITEM, "d2", doi="10.1234/b")}, [])
    assert idx.key_for_doi(grown, "10.1234/b") == "c/b"
    assert grown.version == (3 if inline_items else 2) and [k for k, _ in idx.entries(grown)] == ["c/a", "c/b"]


@pytest.mark.parametrize("change", [{"version": 4}, {"version": "2"}, {"by_doi": "bafy"}, {"by_doi": 5}])
def test_a_root_of_an_unknown_version_or_shape_is_refused(change: dict[str, Any]) -> None:
    raw = {**IndexRoot(ITEM, ITEM, ITEM, 0).to_ipld(), **change}
    with pytest.raises(SchemaError):
        IndexRoot.from_ipld(raw, cid=None)


@pytest.mark.parametrize("doi", [5, "10.1234/A", "not a doi", "10.1234/" + "x" * 300])
def test_an_entry_whose_doi_is_malformed_is_refused(doi: Any) -> None:
    with pytest.raises(SchemaError):
        Entry.from_ipld({"item": ITEM, "doi": doi}, cid=None)


@FORMATS
def test_a_by_doi_tree_longer_than_the_count_is_refused(inline_items: bool) -> None:
    idx = index_with_item(inline_items)
    root = idx.apply(idx.empty(), {"c/a": Entry(ITEM, doi="10.1234/a"), "c/b": Entry(ITEM, doi="10.1234/b")}, [])
    lying = IndexRoot(root.datasets, root.by_path, root.by_data, 1, by_doi=root.by_doi)
    with pytest.raises(SchemaError) as info:
        list(idx.dois(lying))
    assert "by_doi tree" in str(info.value)


# -- through a registry --------------------------------------------------------------------------
def test_a_registry_records_the_dois_it_commits(registry: Registry) -> None:
    registry.add([with_doi("f1", cid_for("a1"), "doi:10.82246/HALO.F1"), with_doi("f2", cid_for("b1"), None)])
    assert registry.staged().upserts["halo/f1"].doi == "10.82246/halo.f1"  # kept in state.json meanwhile
    head = registry.commit("two flights", time="2024-08-12T00:00:00Z")
    root = registry.index.load_root(load_commit(registry.store, head).index)
    assert list(registry.index.dois(root)) == [("10.82246/halo.f1", "halo/f1")]
    # gc keeps the by_doi tree: it is reachable from the head
    assert root.by_doi in set(reachable(registry.store, registry.index, head))
    registry.publish("latest")
    registry.gc()
    assert list(Index(registry.store).dois(root)) == [("10.82246/halo.f1", "halo/f1")]


def test_a_bad_doi_stages_nothing(registry: Registry) -> None:
    with pytest.raises(InvalidItemError) as info:
        registry.add([make_item("ok", cid_for("ok")), with_doi("f1", cid_for("a1"), "10.82246/a b")])
    assert info.value.field == "properties.sci:doi"
    assert not registry.staged()


def test_a_doi_conflict_commits_nothing(registry: Registry) -> None:
    registry.add([with_doi("f1", cid_for("a1"), "10.82246/x")])
    first = registry.commit("one", time="2024-08-12T00:00:00Z")
    registry.add([with_doi("f2", cid_for("b1"), "10.82246/X")])
    with pytest.raises(DoiConflictError) as info:
        registry.commit("two", time="2024-08-13T00:00:00Z")
    assert (info.value.key, info.value.doi, info.value.other) == ("halo/f2", "10.82246/x", "halo/f1")
    assert registry.head == first


@pytest.mark.parametrize("doi", [5, "10.1234/A", "nonsense"])
def test_a_state_file_with_a_bad_doi_is_reported(registry: Registry, home: Path, doi: Any) -> None:
    # a home from before the stage database keeps its stage in state.json
    registry.add([with_doi("f1", cid_for("a1"), "10.82246/x")])
    entry = registry.staged().upserts["halo/f1"]
    state = {"head": None, "staged": {"upserts": {"halo/f1": {"item": str(entry.item), "data": entry.data,
                                                              "path": entry.path, "doi": doi}}, "removals": []}}
    (home / "state.json").write_text(json.dumps(state))
    with pytest.raises(RegistryError) as info:
        registry.staged()
    assert "doi" in str(info.value)


def test_the_item_keeps_its_doi_as_written(registry: Registry) -> None:
    registry.add([with_doi("f1", cid_for("a1"), "https://doi.org/10.82246/HALO.F1")])
    registry.commit("one", time="2024-08-12T00:00:00Z")
    _, entry, item = registry.get("halo/f1")
    assert entry.doi == "10.82246/halo.f1" and item["properties"]["sci:doi"] == "https://doi.org/10.82246/HALO.F1"
    assert decode(registry.index.item_block(entry))["properties"]["sci:doi"] == "https://doi.org/10.82246/HALO.F1"


# -- the DOI log, `at doi:` ------------------------------------------------------------------------
def three_versions(registry: Registry) -> list[CID]:
    """f1 minted as 10.82246/f1 with data a1, reprocessed (a2) under that DOI, then given a new DOI
    (a3); f2 minted 10.82246/f2, then withdrawn; f3 never has one."""
    registry.add([with_doi("f1", cid_for("a1"), "10.82246/F1"), with_doi("f2", cid_for("b1"), "doi:10.82246/f2"),
                  with_doi("f3", cid_for("c1"), None)])
    c1 = registry.commit("mint", time="2024-09-01T00:00:00Z")
    registry.add([with_doi("f1", cid_for("a2"), "10.82246/f1")])
    c2 = registry.commit("reprocess f1", time="2024-09-10T00:00:00Z")
    registry.add([with_doi("f1", cid_for("a3"), "10.82246/f1.v2")])
    registry.remove(["halo/f2"])
    c3 = registry.commit("f1 version 2, withdraw f2", time="2024-09-20T00:00:00Z")
    return [c1, c2, c3]


def test_the_doi_log_names_the_version_and_data_each_doi_was_minted_for(registry: Registry) -> None:
    c1, c2, c3 = three_versions(registry)
    rows = [(r.doi, r.key, r.commit, r.version, r.data, r.last_version, r.state) for r in registry.dois()]
    assert rows == [
        ("10.82246/f1", "halo/f1", c1, 1, cid_for("a1"), 2, "withdrawn"),
        ("10.82246/f1.v2", "halo/f1", c3, 3, cid_for("a3"), 3, "current"),
        ("10.82246/f2", "halo/f2", c1, 1, cid_for("b1"), 2, "withdrawn"),
    ]
    # as of the second version: f1's DOI still on f1, whose data moved on
    assert [(r.doi, r.state) for r in registry.dois(c2)] == [("10.82246/f1", "superseded"), ("10.82246/f2", "current")]
    for spelling in ["10.82246/F1", "doi:10.82246/f1", "https://doi.org/10.82246/f1"]:
        found = registry.resolve_doi(spelling)
        assert found is not None and (found.key, found.data, found.commit) == ("halo/f1", cid_for("a1"), c1)
    assert registry.resolve_doi("10.82246/nobody") is None
    with pytest.raises(InputError):
        registry.resolve_doi("not-a-doi")


def test_a_doi_moved_to_another_dataset_resolves_to_its_holder(registry: Registry) -> None:
    registry.add([with_doi("old", cid_for("o1"), "10.82246/x")])
    first = registry.commit("one", time="2024-09-01T00:00:00Z")
    registry.remove(["halo/old"])
    registry.add([with_doi("new", cid_for("n1"), "10.82246/x")])
    second = registry.commit("re-keyed", time="2024-09-02T00:00:00Z")
    assert [(r.key, r.commit, r.state) for r in registry.dois()] == [
        ("halo/old", first, "withdrawn"), ("halo/new", second, "current")]
    found = registry.resolve_doi("10.82246/x")
    assert found is not None and (found.key, found.data) == ("halo/new", cid_for("n1"))
    found = registry.resolve_doi("10.82246/x", first)
    assert found is not None and found.key == "halo/old"


def test_a_history_without_dois_has_an_empty_log(registry: Registry) -> None:
    registry.add([make_item("f1", cid_for("a1"))])
    registry.commit("one", time="2024-09-01T00:00:00Z")
    assert registry.dois() == [] and registry.resolve_doi("10.82246/f1") is None


def test_the_cli_resolves_and_lists_dois(registry: Registry, home: Path) -> None:
    from .conftest import run_cli

    c1, _, c3 = three_versions(registry)
    registry.publish("latest", c3)
    result = run_cli(home, "at", "doi:10.82246/F1", "--name", "latest")
    assert (result.code, result.out.strip()) == (0, cid_for("a1"))
    result = run_cli(home, "at", "doi:https://doi.org/10.82246/f1.v2", "--json")
    assert result.code == 0 and json.loads(result.out)["cid"] == cid_for("a3")
    result = run_cli(home, "at", "doi:10.82246/f1.v2", "2024-09-15", "--name", "latest")  # the history before it
    assert result.code == 1 and "no dataset of latest@2024-09-15 ever had this DOI" in result.err
    result = run_cli(home, "doi", "ls", "latest")
    assert result.code == 0 and "3 DOIs" in result.out and str(c1) in result.out and "superseded" not in result.out
    listed = json.loads(run_cli(home, "doi", "ls", "latest@2024-09-12", "--json").out)
    assert [(r["doi"], r["state"], r["data"]) for r in listed] == [
        ("10.82246/f1", "superseded", cid_for("a1")), ("10.82246/f2", "current", cid_for("b1"))]
