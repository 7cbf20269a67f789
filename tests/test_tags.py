"""Tags (issue 12, part 3): immutable, optionally signed names for versions kept in the DAG,
resolvable as NAME@TAG wherever a version is, refused by sync when a history moves one, and
exported with the name."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import halodb
from halodb.api.keys import create_key
from halodb.errors import InputError, SchemaError
from halodb.index.history import load_commit, write_commit
from halodb.index.model import Commit, Tag
from halodb.index.tags import load_tags, write_tag, write_tags
from halodb.ipld import CID, decode
from halodb.util.times import parse_time

from .conftest import cid_for, make_item, run_cli_in_process


def version(reg: halodb.Registry, n: int) -> CID:
    reg.add([make_item(f"f{n}", cid_for(f"d{n}"))])
    return reg.commit(f"v{n}", time=f"2024-08-{10 + n:02d}T00:00:00Z")


@pytest.fixture
def history(registry: halodb.Registry) -> list[CID]:
    """Two versions, published as ``latest``."""
    out = [version(registry, 1), version(registry, 2)]
    registry.publish("latest")
    return out


def test_a_tag_commit_keeps_its_parents_time(registry: halodb.Registry, history: list[CID], home: Path) -> None:
    """Tagging changes no data: its commit keeps the head's time, so a version dated after
    the head but before the tag was made (a backfilled product) may still follow it."""
    head_time = registry.version("HEAD")[1].time
    registry.tag("HEAD", "v2.0")
    assert registry.version("HEAD")[1].time == head_time
    assert registry.tags("HEAD")["v2.0"][1].time > head_time  # the tag block says when it was made
    registry.add([make_item("f9", cid_for("late"))])
    registry.commit("backfill", time=head_time + timedelta(days=1))  # after the head, before the tag was made


def test_tagging_a_name_behind_the_local_head_says_what_its_publish_moves(
        registry: halodb.Registry, history: list[CID], home: Path) -> None:
    """The tag is kept in the local head: when the name is behind it, the publish the note asks
    for also moves the name to the local head's newer commits, and the CLI says so."""
    r = run_cli_in_process(home, "tag", "create", "latest", "v1.0")
    assert r.code == 0 and "note:" not in r.err  # latest is at the local head
    registry.publish("latest", force=True)
    registry.add([make_item("f9", cid_for("unpublished"))])
    registry.commit("not published yet")
    r = run_cli_in_process(home, "tag", "create", "latest", "v1.1")
    assert r.code == 0, r.err
    assert "note: latest is at" in r.err and "also moves latest to every commit of the local head" in r.err
    assert r.err.count("\n") == 2


def test_create_ls_and_resolve(registry: halodb.Registry, history: list[CID], home: Path) -> None:
    r = run_cli_in_process(home, "tag", "create", "latest", "v1.0", "--at", "2024-08-11T12:00Z", "-m", "first")
    assert r.code == 0, r.err
    assert str(history[0]) in r.out
    assert "`halodb publish latest` makes latest@v1.0 resolve for readers" in r.err  # until then only HEAD has it
    registry.publish("latest", force=True)
    r = run_cli_in_process(home, "tag", "ls", "--json")
    [row] = json.loads(r.out)
    assert (row["tag"], row["target"], row["message"], row["signed_by"]) == ("v1.0", str(history[0]), "first", [])
    assert registry.resolve("latest@v1.0") == history[0]
    assert registry.resolve("HEAD@v1.0") == history[0]
    r = run_cli_in_process(home, "log", "latest@v1.0")
    assert r.code == 0 and "v1" in r.out and "v2" not in r.out
    r = run_cli_in_process(home, "at", "halo/f1", "v1.0", "--name", "latest")
    assert r.out.strip() == cid_for("d1")
    assert run_cli_in_process(home, "at", "halo/f2", "v1.0", "--name", "latest").code == 1  # not there yet
    r = run_cli_in_process(home, "get", "halo/f1", "--version", "latest@v1.0")
    assert json.loads(r.out)["id"] == "f1"
    r = run_cli_in_process(home, "get", "halo/f1", "--name", "latest", "--at", "v1.0")
    assert json.loads(r.out)["id"] == "f1"
    r = run_cli_in_process(home, "diff", "latest@yesterday", "latest")  # neither a tag nor a date
    assert r.code == 2 and r.err.count("\n") == 1
    assert "latest has no tag yesterday (its tags: v1.0; after @ give a tag, a date" in r.err
    # the tagging commit keeps the index; its parent is the tagged line's head
    assert registry.head is not None
    head = load_commit(registry.store, registry.head)
    assert head.message == "tag v1.0" and head.parents == (history[1],) and head.version == 3
    assert head.index == load_commit(registry.store, history[1]).index


def test_a_tag_survives_later_commits_and_back_steps(registry: halodb.Registry, history: list[CID]) -> None:
    registry.tag("HEAD", "v2", time="2024-08-13T00:00:00Z")
    c3 = version(registry, 3)
    assert load_commit(registry.store, c3).tags is not None
    assert registry.resolve("HEAD@v2") == history[1]
    assert registry.resolve("HEAD@v2~1") == history[0]
    assert list(registry.tags(c3)) == ["v2"]
    assert registry.tags(history[1]) == {}


def test_a_tag_is_taken_once_and_only_on_the_local_line(registry: halodb.Registry, history: list[CID]) -> None:
    registry.tag("HEAD", "v1", cid=history[0])
    with pytest.raises(InputError, match="exists already"):
        registry.tag("HEAD", "v1")
    with pytest.raises(InputError, match="not a tag name"):
        registry.tag("HEAD", "1.0")
    other = halodb.open(registry.home.parent / "other", create=True)
    other.add([make_item("x", cid_for("x"))])
    stranger = other.commit("x", time="2024-08-20T00:00:00Z")
    other.export_car(stranger, registry.home.parent / "x.car")
    registry.import_car(registry.home.parent / "x.car")
    with pytest.raises(InputError, match="not on the local head"):
        registry.tag("HEAD", "v9", cid=stranger)
    other.close()


def test_a_signed_tag_shows_its_signer(registry: halodb.Registry, history: list[CID], home: Path) -> None:
    did = create_key(registry.home, "alice")
    r = run_cli_in_process(home, "tag", "create", "HEAD", "v1.0", "--sign", "alice")
    assert r.code == 0, r.err
    _, tag = registry.tags()["v1.0"]
    assert [s.key for s in tag.signatures] == [did]
    r = run_cli_in_process(home, "tag", "ls")
    assert f"signed by {did}" in r.out
    assert json.loads(run_cli_in_process(home, "tag", "ls", "--json").out)[0]["signed_by"] == [did]


def test_sync_refuses_a_history_that_moves_or_drops_a_tag(registry: halodb.Registry, history: list[CID]) -> None:
    registry.tag("HEAD", "v1.0", cid=history[0], time="2024-08-13T00:00:00Z")
    tagged = registry.head
    assert tagged is not None
    registry.publish("camp", tagged)
    assert registry.sync("camp").head == tagged
    base = load_commit(registry.store, tagged)
    moved = write_tag(registry.store, Tag("v1.0", history[1], parse_time("2024-08-14"), "mallory"))
    for tags, what in ((write_tags(registry.store, {"v1.0": moved}), "moves"), (None, "drops")):
        bad = write_commit(registry.store, Commit(base.index, parse_time("2024-08-14"), "mallory", "x",
                                                  (tagged,), tags=tags))
        registry.publish("camp", bad, force=True)
        with pytest.raises(SchemaError, match=f"{what} tag v1.0"):
            registry.sync("camp")
        state = registry.cache.sync_state("camp")
        assert state is not None and state.head == str(tagged)  # the cache is untouched


def test_export_and_import_keep_the_tags(registry: halodb.Registry, history: list[CID], tmp_path: Path) -> None:
    registry.tag("HEAD", "v1.0", cid=history[0])
    head = registry.head
    assert head is not None
    car = tmp_path / "t.car"
    registry.export_car("HEAD", car)
    blocks = set(registry.reachable(head))
    tags_cid = load_commit(registry.store, head).tags
    assert tags_cid in blocks and set(load_tags(registry.store, load_commit(registry.store, head)).values()) <= blocks
    other = halodb.open(tmp_path / "other", create=True)
    [root] = other.import_car(car)
    other.publish("copy", root)
    assert other.resolve("copy@v1.0") == history[0]
    assert other.tags("copy")["v1.0"][1].target == history[0]
    other.close()


def test_only_tagged_commits_link_tags(registry: halodb.Registry, history: list[CID]) -> None:
    for cid in history:
        value = decode(registry.store.get(cid), cid=cid)
        assert value["version"] == 3 and "tags" not in value
    registry.tag("HEAD", "v1")
    head = registry.head
    assert head is not None
    value = decode(registry.store.get(head), cid=head)
    assert value["version"] == 3 and isinstance(value["tags"], CID)
    without_history = {k: v for k, v in value.items() if k not in ("history", "height")}
    with pytest.raises(SchemaError, match="need format version 2"):
        Commit.from_ipld({**without_history, "version": 1}, cid=None)
    assert Commit.from_ipld({**without_history, "version": 2}, cid=None).tags == value["tags"]
