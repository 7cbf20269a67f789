"""Path segments from outside may not climb out of their folder (issue 10, defect 3): tree.yaml
keys, ``halodb:path`` and asset hrefs with '.', '..', empty names, NUL or control characters are
refused with an error naming the segment, and nothing is staged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.campaign import flatten_tree
from halodb.errors import InputError, InvalidItemError
from halodb.util.paths import bad_segment

from .conftest import run_cli

CID_TEXT = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"


@pytest.mark.parametrize("segment", ["", ".", "..", "a/b", "a\x00b", "a\nb", "tab\there", "del\x7f", "c1\x85"])
def test_bad_segments(segment: str) -> None:
    assert bad_segment(segment)


@pytest.mark.parametrize("segment", ["HALO-20240811a.zarr", "...", ".hidden", "Ünïcode ✓", "a b"])
def test_good_segments(segment: str) -> None:
    assert not bad_segment(segment)


def test_bad_segment_refuses_exactly_slash_and_the_control_characters() -> None:
    """Every code point, alone and inside a name: the rule as the module states it."""
    for code in range(0x110000):
        c = chr(code)
        refused = c == "/" or code < 0x20 or 0x7F <= code < 0xA0
        assert bad_segment(f"a{c}b") is refused, hex(code)
        assert bad_segment(c) is (refused or c == "."), hex(code)


@pytest.mark.parametrize("name", ["..", ".", "", "evil\x00", "line\nbreak"])
def test_tree_yaml_keys_that_climb_or_hide_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="path segment") as info:
        flatten_tree({"products": {name: CID_TEXT}}, source="tree.yaml")
    assert repr(name) in str(info.value) and "tree.yaml" in str(info.value)


def test_cli_import_tree_with_dotdot_exits_2_and_commits_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tree = tmp_path / "tree.yaml"
    tree.write_text(f"products:\n  '..':\n    victim: {CID_TEXT}\n", encoding="utf-8")
    assert run_cli(home, "init").code == 0
    r = run_cli(home, "import-tree", str(tree))
    assert r.code == 2, r.err
    assert "'..'" in r.err and len(r.err.strip().splitlines()) == 1
    reg = halodb.open(home)
    try:
        assert reg.head is None and not reg.staged()
    finally:
        reg.close()


def _item(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "Feature", "stac_version": "1.1.0", "id": "x", "geometry": None,
        "properties": {"datetime": "2024-08-11T12:00:00Z"}, "links": [],
        "assets": {"data": {"href": f"ipfs://{CID_TEXT}/products/x.zarr"}},
    }
    item.update(over)
    return item


@pytest.mark.parametrize("href", [f"ipfs://{CID_TEXT}/../../etc", f"/ipfs/{CID_TEXT}/a/%2E%2E/b", f"ipfs://{CID_TEXT}/a/b%00"])
def test_asset_hrefs_that_climb_are_refused_naming_the_file(tmp_path: Path, href: str) -> None:
    reg = halodb.open(tmp_path / "home", create=True)
    try:
        with pytest.raises(InvalidItemError, match="path segment") as info:
            reg.add([("items/x.json", _item(assets={"data": {"href": href}}))], collection="halo")
        assert "items/x.json" in str(info.value) and "assets.data.href" in str(info.value)
        assert not reg.staged()
    finally:
        reg.close()


@pytest.mark.parametrize("path", ["../victim", "products/./x.zarr", "a//b", "a/\x1b[31m"])
def test_halodb_path_that_climbs_is_refused(tmp_path: Path, path: str) -> None:
    reg = halodb.open(tmp_path / "home", create=True)
    try:
        item = _item()
        item["properties"]["halodb:path"] = path
        with pytest.raises(InvalidItemError, match="halodb:path"):
            reg.add([("items/x.json", item)], collection="halo")
        assert not reg.staged()
    finally:
        reg.close()
