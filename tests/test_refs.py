"""Relative version references, ``REF~N``, in the API and the CLI (issue 12, part 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halodb.api.registry import Registry
from halodb.errors import InvalidNameError, NameNotFoundError
from halodb.naming.refs import parse_ref, split_back

from .conftest import cid_for, make_item, run_cli_in_process

DATES = ["2024-08-10T00:00:00Z", "2024-08-20T00:00:00Z", "2024-09-01T00:00:00Z", "2024-09-10T00:00:00Z"]


@pytest.mark.parametrize(("text", "rest", "back"), [
    ("HEAD", "HEAD", 0), ("HEAD~", "HEAD", 1), ("HEAD~3", "HEAD", 3), ("HEAD~2~1", "HEAD", 3), ("HEAD~~", "HEAD", 2),
    ("latest@2024-09-15~1", "latest@2024-09-15", 1), ("latest~0", "latest", 0), ("a~b", "a~b", 0),
])
def test_split_back(text: str, rest: str, back: int) -> None:
    assert split_back(text) == (rest, back)


@pytest.mark.parametrize("text", ["~1", "HEAD~123456789", "HEAD~9999999~9999999", "late~st"])
def test_bad_relative_references(text: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_ref(text)


def four_versions(registry: Registry) -> list[str]:
    commits = []
    for n, when in enumerate(DATES):
        registry.add([make_item("a", cid_for(f"a{n}"), path="HALO/a.zarr")])
        commits.append(str(registry.commit(f"version {n}", time=when)))
    registry.publish("latest")
    return commits


def test_every_kind_of_reference_goes_back(registry: Registry) -> None:
    c = four_versions(registry)
    assert [str(registry.resolve(r)) for r in ("HEAD", "HEAD~1", "HEAD~~", "HEAD~3", "latest~2~1")] == \
        [c[3], c[2], c[1], c[0], c[0]]
    assert str(registry.resolve(f"{c[2]}~1")) == c[1] and str(registry.resolve(f"ipfs://{c[1]}~1")) == c[0]
    assert str(registry.resolve("latest@2024-09-05~1")) == c[1]  # the version current then, one back
    assert str(registry.resolve("HEAD@2024-08-25~")) == c[0]
    with pytest.raises(NameNotFoundError, match="has 3 version"):
        registry.resolve("latest~4")
    assert [e.commit.message for e in registry.log("latest~2")] == ["version 1", "version 0"]
    assert [c.key for c in registry.diff("HEAD~2", "HEAD~1")] == ["halo/a"]
    assert registry.get("halo/a", "HEAD~3")[1].data == cid_for("a0")
    assert registry.cid_at("halo/a", "2024-12-01", name="latest") == cid_for("a3")
    with pytest.raises(InvalidNameError, match="names a version, not a name"):
        registry.sync("latest~1")


def test_the_cli_takes_them_everywhere_a_version_goes(registry: Registry, home: Path, tmp_path: Path) -> None:
    c = four_versions(registry)
    registry.close()
    log = run_cli_in_process(home, "log", "HEAD~1", "-n", "1")
    assert log.code == 0 and c[2] in log.out and c[3] not in log.out
    diff = run_cli_in_process(home, "diff", "latest~3", "latest~2", "--json")
    assert diff.code == 0 and cid_for("a1") in diff.out and cid_for("a0") in diff.out
    car = run_cli_in_process(home, "export-car", "HEAD~2", str(tmp_path / "v1.car"), "--head-only")
    assert car.code == 0, car.err
    # a version without its history goes only where the history is, and says so elsewhere
    empty = tmp_path / "empty-home"
    run_cli_in_process(empty, "init")
    refused = run_cli_in_process(empty, "import-car", str(tmp_path / "v1.car"))
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert "holds a version without its history (written with export-car --head-only?)" in refused.err
    assert "nothing was imported" in refused.err
    assert run_cli_in_process(home, "import-car", str(tmp_path / "v1.car")).code == 0
    show = run_cli_in_process(home, "pins", "plan", "latest~1", "--current", "--json")
    assert show.code == 0 and c[2] in show.out and c[3] not in show.out
    got = run_cli_in_process(home, "get", "halo/a", "--version", "HEAD~3")
    assert got.code == 0 and json.loads(got.out)["assets"]["data"]["href"] == f"ipfs://{cid_for('a0')}"
    by_path = run_cli_in_process(home, "get", "HALO/a.zarr", "--name", "latest", "--at", "2024-08-25")
    assert by_path.code == 0 and json.loads(by_path.out)["assets"]["data"]["href"] == f"ipfs://{cid_for('a1')}"
    bad = run_cli_in_process(home, "sync", "latest~1")
    assert bad.code == 2 and "names a version, not a name" in bad.err
