"""No input makes the CLI print a traceback: every command, fed malformed arguments and
malformed files, exits 2 with exactly one line on stderr (issue 10, defect 11).

The commands are enumerated from the click group, so a new command without a case here
fails :func:`test_every_command_has_malformed_cases`. The cases run in-process through
:func:`halodb.cli.commands.main` (fast); :func:`test_the_real_entry_point_prints_one_line`
runs a few through ``python -m halodb`` to show the real entry point behaves the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from halodb.cli.commands import cli

from .conftest import Result, cid_for, copy_home, make_item, run_cli_in_process

#: a well-formed CID of a block that is in no store, and one that is no CID at all
ABSENT_CID = cid_for("absent")
BAD_CIDS = ["bafyNOTACID", "Qm123", "bafy" + "z" * 400]
#: times that are not times, and times outside what a datetime can hold once in UTC
BAD_TIMES = ["yesterday", "", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "99999-01-01", "2024-13-45T25:61"]
BAD_NAMES = ["bad name!", "..", "-leading-dash", "x" * 300, "a\x00b", "ünïcödé!"]
HUGE = str(10**40)


#: the environment of every case: nothing from the caller's, no DNS server or Kubo node that answers
ISOLATED: dict[str, str | None] = {
    "HALODB_AUTHOR": "tester", "HALODB_STORE": None, "HALODB_CACHE": None, "HALODB_HOME": None,
    "HALODB_LOCK_TIMEOUT": "5", "HALODB_NAMESERVER": "127.0.0.1:9", "HALODB_DNS_TIMEOUT": "1",
    "HALODB_DOH": None, "HALODB_KUBO": None, "IPFS_GATEWAY": None}


def run(home: Path, *args: str, stdin: str | bytes | None = None) -> Result:
    """``halodb --home HOME ARGS`` in this process, through :func:`halodb.cli.commands.main` as the
    entry point runs it (a traceback: exit 1 and the traceback on stderr)."""
    return run_cli_in_process(home, *args, stdin=stdin, env=ISOLATED)


def assert_one_line_error(result: Result, what: str) -> None:
    lines = result.err.splitlines()
    assert "Traceback" not in result.err, f"{what}: traceback\n{result.err}"
    assert result.code == 2, f"{what}: exit {result.code}, expected 2\nstdout: {result.out}\nstderr: {result.err}"
    assert len(lines) == 1, f"{what}: {len(lines)} lines on stderr, expected 1:\n{result.err}"
    assert lines[0].startswith("halodb: error: "), f"{what}: {lines[0]!r}"


# -- the home every case starts from: two items committed, published as `latest`, synced --------
@pytest.fixture(scope="module")
def base_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("base") / "home"
    items = home.parent / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": [
        make_item("f1", cid_for("a1"), path="products/HALO/f1.zarr"), make_item("f2", cid_for("b1"))]}))
    for args in (["init"], ["add", str(items)], ["commit", "-m", "first", "--time", "2024-08-12T00:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        result = run(home, *args)
        assert result.code == 0, (args, result.err)
    return home


# -- malformed files: what a case does to its copy of the home before running ----------------------
Setup = Callable[[Path], list[str]]  # gets the home's folder, may write files beside it, returns extra args


def write(relative: str, data: bytes) -> Setup:
    def setup(home: Path) -> list[str]:
        path = home / relative
        if path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return []

    setup.__name__ = f"{relative}={data[:24]!r}"
    return setup


def folder_at(relative: str) -> Setup:
    def setup(home: Path) -> list[str]:
        path = home / relative
        path.unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)
        return []

    setup.__name__ = f"{relative}=<folder>"
    return setup


def without_blocks(setup: Setup) -> Setup:
    """``setup`` on a home whose block store is gone: `at --name` answers from the home's
    blocks when it can, and reads the cache only when they lack one."""
    def run_setup(home: Path) -> list[str]:
        shutil.rmtree(home / "blocks")
        return setup(home)

    run_setup.__name__ = f"no blocks, {setup.__name__}"
    return run_setup


#: what a JSON file of the home may hold instead of what HaloDB wrote there
GARBAGE: list[bytes] = [b"", b"{", b"\xff\xfe\x00\x01garbage", b"[]", b"null", b"42", b'"text"', b"{}" * 3]


def state_files() -> list[Setup]:
    shapes = [b'{"head": 5}', b'{"head": "bafyNOTACID"}', b'{"head": null, "staged": []}',
              b'{"head": null, "staged": {"upserts": {"halo/x": {"item": 7}}, "removals": []}}',
              b'{"head": null, "staged": {"upserts": {"halo/x": {"item": "%s", "data": 5}}}}' % cid_for("x").encode(),
              b'{"head": null, "staged": {"upserts": [], "removals": {}}}',
              b'{"head": null, "staged": {"upserts": {}, "removals": [1, 2]}}']
    return [write("state.json", g) for g in GARBAGE + shapes] + [folder_at("state.json")]


def name_files() -> list[Setup]:
    shapes = [b'{"head": 5}', b'{"head": "bafyNOTACID", "history": []}', b'{"head": "%s", "history": 3}' % ABSENT_CID.encode(),
              b'{"head": "%s", "history": [{"cid": "x", "published": "2024-01-01"}]}' % ABSENT_CID.encode(),
              b'{"head": "%s", "history": [{"cid": "%s", "published": "9999-12-31T23:59:59-01:00"}]}'
              % (ABSENT_CID.encode(), ABSENT_CID.encode()),
              b'{"head": "%s", "history": ["x"]}' % ABSENT_CID.encode()]
    # (an empty or null file, "{}", means no head: an unknown name, also exit 2)
    return [write("names/latest.json", g) for g in GARBAGE + shapes] + [folder_at("names/latest.json")]


def cache_files() -> list[Setup]:
    return [write("cache.duckdb", b"\x00garbage" * 100), write("cache.duckdb", b"DUCK" * 4096), folder_at("cache.duckdb")]


def beside(name: str, data: bytes | None) -> Callable[[Path], str]:
    """A file (``data``), a folder (``None``) or nothing (``b"-"``) beside the home; returns its path."""
    def make(home: Path) -> str:
        path = home.parent / name
        if data is None:
            path.mkdir(exist_ok=True)
        elif data != b"-":
            path.write_bytes(data)
        return str(path)

    make.__name__ = f"<{name}>"
    return make


@dataclass
class Case:
    """One malformed invocation: ``args`` (callables get the home and return an argument), after
    ``setup`` changed the home, with ``stdin``."""

    command: str
    args: list[str | Callable[[Path], str]]
    setup: Setup | None = None
    stdin: str | bytes | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        shown = " ".join(a if isinstance(a, str) else a.__name__ for a in self.args)
        shown = shown if len(shown) <= 100 else shown[:60] + "..." + shown[-30:]
        self.id = f"{self.command}: {shown}" + (f" [{self.setup.__name__}]" if self.setup else "")


def files(command: str, args: list[str | Callable[[Path], str]], setups: list[Setup]) -> list[Case]:
    return [Case(command, args, setup) for setup in setups]


def input_files(name: str) -> list[Callable[[Path], str]]:
    """Every malformed input file a command may be given: missing, a folder, empty, garbage..."""
    return [beside(f"missing-{name}", b"-"), beside(f"folder-{name}", None), beside(f"empty-{name}", b""),
            beside(f"binary-{name}", b"\xff\xfe\x00\x01\x80garbage"), beside(f"list-{name}", b"[]"),
            beside(f"brace-{name}", b"{"), beside(f"null-{name}", b"null")]


def cases() -> list[Case]:
    c: list[Case] = []
    # the group's own options
    c += [Case("", ["--store", "ftp://x", "log"]), Case("", ["--store", "kubo+http://[::1", "log"]),
          Case("", ["--home", beside("home-file", b"x"), "log"]), Case("", ["--cache", beside("cache-dir", None), "sql", "SELECT 1"]),
          Case("", ["--home", beside("mistyped-home", b"-"), "sql", "SELECT 1"]),
          Case("", ["--no-such-option"]), Case("", ["no-such-command"])]
    # init
    c += files("init", ["init"], state_files()) + [Case("init", ["init", "extra"])]
    # add
    c += [Case("add", ["add", f]) for f in input_files("item.json") if "folder" not in f.__name__]
    c += [Case("add", ["add", beside("items-folder", None), beside("items-folder/bad.json", b"{")])]
    c += [Case("add", ["add", beside(n, json.dumps(v).encode())]) for n, v in [
        ("feature-no-id.json", {"type": "Feature"}), ("wrong-type.json", {"type": "Point"}),
        ("huge.json", {**make_item("h", cid_for("h")), "bbox": [int(HUGE), 0, 0, 0]}),
        ("bad-href.json", make_item("b", "bafyNOTACID"))]]
    c += [Case("add", ["add", "-"], stdin=s) for s in ["{", "\x00\x01", "[1, 2]", '{"type": "Feature"}\n']]
    c += [Case("add", ["add"]), Case("add", ["add", "-c", "", beside("ok.json", json.dumps(make_item("o", cid_for("o"))).encode())])]
    c += files("add", ["add", beside("ok2.json", json.dumps(make_item("o", cid_for("o"))).encode())], state_files())
    # rm
    c += [Case("rm", ["rm", k]) for k in ["", "halo/no-such", "\x00", HUGE]] + [Case("rm", ["rm"])]
    c += files("rm", ["rm", "halo/f1"], state_files())
    # commit
    c += [Case("commit", ["commit", "-m", "x", "--time", t], write("state.json", b'{"head": null, "staged": {"upserts": {}, "removals": ["halo/f1"]}}'))
          for t in BAD_TIMES]
    c += [Case("commit", ["commit"]), Case("commit", ["commit", "-m", "x"])]
    c += files("commit", ["commit", "-m", "x"], state_files())
    # publish
    c += [Case("publish", ["publish", n]) for n in BAD_NAMES]
    c += [Case("publish", ["publish", "latest", "--cid", x]) for x in [*BAD_CIDS, ABSENT_CID, "latest@" + BAD_TIMES[2]]]
    c += files("publish", ["publish", "other"], state_files()) + files("publish", ["publish", "latest"], name_files())
    # log
    c += [Case("log", ["log", r]) for r in ["no-such-name", *BAD_NAMES[:3], *BAD_CIDS, ABSENT_CID,
                                            *("latest@" + t for t in BAD_TIMES), "HEAD@" + BAD_TIMES[3]]]
    c += [Case("log", ["log", "-n", n]) for n in ["abc", "1.5", "", "-1"]]
    c += [Case("log", ["log", r]) for r in ["HEAD~1", "latest~5", "~1", "HEAD~99999999999", "HEAD~x", "latest@2024-08-11~1"]]
    c += [Case("sync", ["sync", "latest~1"])]
    c += [Case("get", ["get"]), Case("get", ["get", "halo/nothing"]), Case("get", ["get", "halo/f1", "--version", "HEAD~1"])]
    c += [Case("get", ["get", "halo/f1", "--at", t]) for t in [*BAD_TIMES[:3], "2024-01-01"]]
    c += [Case("get", ["get", "halo/f1", "--name", n]) for n in ["no-such-name", *BAD_NAMES[:2]]]
    c += [Case("get", ["get", "halo/f1", "--version", v]) for v in [*BAD_CIDS[:2], ABSENT_CID]]
    c += [Case("get", ["get", "halo/f1", "--version", "HEAD", "--at", "2024-09-01"])]
    c += files("log", ["log"], state_files()) + files("log", ["log", "latest"], name_files())
    # sync
    c += [Case("sync", ["sync", n]) for n in ["no-such-name", *BAD_NAMES, *BAD_CIDS, ABSENT_CID]]
    c += [Case("sync", ["sync", "latest", "--cars", x]) for x in ["-1", "abc"]]
    c += [Case("sync", ["sync", "latest", "--watch", "--min-interval", x]) for x in ["nan", "-1", "0", "inf"]]
    c += files("sync", ["sync", "latest"], name_files()) + files("sync", ["sync", "latest"], cache_files())
    # resolve
    c += [Case("resolve", ["resolve", n]) for n in ["", *BAD_NAMES]]
    c += [Case("resolve", ["resolve", "latest", "--timeout", x]) for x in ["abc", "-1", "0", "nan"]]
    c += files("resolve", ["resolve", "latest"], name_files())
    # sql
    c += [Case("sql", ["sql", q]) for q in ["", " ", ";", "-- only a comment", "SELECT", "SELECT 1; SELECT 2",
                                            "UPDATE item_versions SET data_cid = 'x'", "\x00", "SELECT '" + "x" * 10]]
    c += [Case("sql", ["sql", "SELECT 1", "--format", "xml"]), Case("sql", ["sql"])]
    c += files("sql", ["sql", "SELECT count(*) FROM items"], cache_files())
    # at
    c += [Case("at", ["at", "halo/f1", t]) for t in BAD_TIMES] + [Case("at", ["at", "halo/f1", t, "--name", "latest"]) for t in BAD_TIMES[2:4]]
    c += [Case("at", ["at", "halo/f1", "2024-08-15", "--name", n]) for n in ["no-such-name", *BAD_NAMES[:2]]]
    c += [Case("at", ["at", "halo/f1"])]
    c += [Case("at", ["at", "-", "--name", "latest"], stdin=s) for s in ["halo/f1\n", "halo/f1\tnot-a-date\n",
                                                                       "\x00\x01 2024\n", "\t2024-08-15\n"]]
    c += [Case("at", ["at", "-", "2024-08-15"], stdin="halo/f1\t2024-08-15\n")]
    c += files("at", ["at", "halo/f1", "2024-08-15"], state_files())
    c += files("at", ["at", "halo/f1", "2024-08-15", "--name", "latest"], name_files())
    # (a damaged cache does not stop the home's blocks answering: with them gone, the cache must)
    c += files("at", ["at", "halo/f1", "2024-08-15", "--name", "latest"], [without_blocks(s) for s in cache_files()])
    # at doi:, doi ls, doi datacite (the base home's items have no DOI, no creators, no publisher)
    c += [Case("at", ["at", d]) for d in ["doi:", "doi:nope", "doi:10.1/x", "doi:10.1234/a b", "doi:10.1234/\x00", "doi:" + "x" * 400]]
    c += [Case("at", ["at", "doi:10.1234/x", t]) for t in BAD_TIMES[:3]]
    c += [Case("at", ["at", "doi:10.1234/x", "--name", n]) for n in ["no-such-name", *BAD_NAMES[:2]]]
    c += files("at", ["at", "doi:10.1234/x"], state_files()[:3])
    c += [Case("doi", ["doi"]), Case("doi", ["doi", "no-such"])]
    c += [Case("doi ls", ["doi", "ls", n]) for n in ["no-such-name", "bafyNOTACID", ABSENT_CID, *BAD_NAMES[:2], "latest~5"]]
    c += files("doi ls", ["doi", "ls", "latest"], name_files()[:3])
    c += [Case("doi datacite", ["doi", "datacite", k]) for k in ["halo/f1", "halo/nothing", "products/HALO/f1.zarr"]]
    c += [Case("doi datacite", ["doi", "datacite", "halo/f1", *o]) for o in [
        ["--at", "yesterday"], ["--at", "2024-01-01"], ["--name", "no-such-name"], ["--version", "bafyNOTACID"],
        ["--version", ABSENT_CID], ["--version", "HEAD", "--at", "2024-09-01"], ["--publisher", "ORCESTRA"]]]
    c += [Case("doi datacite", ["doi", "datacite"])]
    c += files("doi datacite", ["doi", "datacite", "halo/f1"], state_files()[:3])
    # prove, verify
    c += [Case("prove", ["prove", "halo/f1", "-o", beside("p.car", b"-"), *o]) for o in [
        ["--at", "yesterday"], ["--at", "2024-01-01"], ["--name", "no-such-name"], ["--name", "bafyNOTACID"]]]
    c += [Case("prove", ["prove", "halo/f1"]), Case("prove", ["prove", "halo/f1", "-o", beside("p-dir", None)]),
          Case("prove", ["prove", "halo/f1", "-o", beside("no-such-folder/p.car", b"-")])]
    c += [Case("verify", ["verify", f]) for f in input_files("proof.car")]
    c += [Case("verify", ["verify", beside("varint-proof.car", b"\xff" * 12)])]
    c += [Case("verify", ["verify", beside("v.car", b"-"), "--trust", f]) for f in input_files("policy.json")]
    # key, trust, commit --sign
    c += [Case("key", ["key"]), Case("key", ["key", "no-such"]), Case("key ls", ["key", "ls", "--nope"])]
    c += [Case("key create", ["key", "create", n]) for n in ["", "../x", "a" * 65, "-x", "a b", "\x00"]]
    c += [Case("trust", ["trust"]), Case("trust ls", ["trust", "ls", "extra"])]
    c += [Case("trust add", ["trust", "add", "latest", d]) for d in [
        "", "did:key:", "did:key:zzz", "did:web:example.org", "did:key:z" + "1" * 200,
        "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc"]]  # an X25519 key, not Ed25519
    c += [Case("trust add", ["trust", "add", "latest", "did:key:z6MkeTG3bFFSLYVU7VqhgZxqr6YzpaGrQtFMh1uvqGy1vDnP",
                             "--threshold", t]) for t in ["0", "2", "x"]]
    c += [Case("trust rm", ["trust", "rm", "latest"]), Case("trust rm", ["trust", "rm", "no-such", "did:key:z"])]
    c += [Case("commit", ["commit", "-m", "x", "--sign", k]) for k in ["no-such-key", "../x", ""]]
    c += [Case("commit", ["commit", "-m", "x", o, d]) for o in ["--add-key", "--retire-key"]
          for d in ["did:key:zzz", "nope"]]
    # tag create, tag ls, and NAME@TAG references
    c += [Case("tag", ["tag"]), Case("tag", ["tag", "no-such"])]
    c += [Case("tag create", ["tag", "create", "latest", t]) for t in ["", "1.0", "-x", "a b", "a" * 65, "v1\x00",
                                                                      "ü1", "2024-09-01", "a/b"]]
    c += [Case("tag create", ["tag", "create", n, "v1"]) for n in ["no-such-name", *BAD_NAMES[:3], *BAD_CIDS[:2]]]
    c += [Case("tag create", ["tag", "create", "latest", "v1", *o]) for o in [
        ["--at", t] for t in [*BAD_TIMES[:3], "2024-01-01"]] + [
        ["--cid", x] for x in [*BAD_CIDS, ABSENT_CID]] + [
        ["--at", "2024-09-01", "--cid", ABSENT_CID], ["--sign", "no-such-key"], ["--sign", "../x"]]]
    c += [Case("tag create", ["tag", "create", "latest"])]
    c += [Case("tag ls", ["tag", "ls", r]) for r in ["no-such-name", *BAD_NAMES[:2], *BAD_CIDS[:2], ABSENT_CID,
                                                     "latest@v9", "HEAD@nope~1"]]
    c += [Case("tag ls", ["tag", "ls", "--nope"])]
    c += [Case("log", ["log", r]) for r in ["latest@v9", "HEAD@v9", "latest@v9~1", "@v1", "latest@1.0x"]]
    c += files("tag create", ["tag", "create", "HEAD", "v1"], state_files()[:3])
    c += [Case("show", ["show", "halo/f1", "--at", t]) for t in BAD_TIMES]
    c += [Case("show", ["show", "halo/f1", "--name", n]) for n in ["no-such-name", *BAD_NAMES[:2]]]
    c += [Case("show", ["show", k]) for k in ["halo/no-such", "", "halodb://", "halodb://latest@/halo/f1",
                                               "halodb://latest/halo/no-such", "ipfs://bafyNOTACID"]]
    c += [Case("show", ["show", "halo/f1", "--name", "latest", "--at", "2024-01-01"]),  # before the first version
          Case("show", ["show", "halo/f1"]),  # its data is not in the store: nothing to read
          Case("show", ["show", "halo/f1", "--at", "2024-09-01", "--version", "bafyNOTACID"]),
          Case("show", ["show", "halo/f1", "--version", "bafyNOTACID"]),
          Case("show", ["show", f"ipfs://{ABSENT_CID}"]),  # by CID: not in the store
          Case("show", ["show", f"ipfs://{ABSENT_CID}", "--at", "2024-09-01"]),  # by CID: no versions
          Case("show", ["show", "/ipfs/"]), Case("show", ["show", "ipfs://"])]
    c += files("show", ["show", "halo/f1"], state_files())
    c += files("show", ["show", "halo/f1", "--name", "latest"], name_files())
    # diff
    c += [Case("diff", ["diff", r]) for r in [*BAD_CIDS, ABSENT_CID, "no-such-name", "latest@" + BAD_TIMES[3]]]
    c += [Case("diff", ["diff", "latest", r]) for r in BAD_CIDS[:1]] + [Case("diff", ["diff"])]
    c += files("diff", ["diff", "latest"], state_files()) + files("diff", ["diff", "latest", "latest"], name_files())
    # export-car
    c += [Case("export-car", ["export-car", r, beside("out.car", b"-")]) for r in [*BAD_CIDS, ABSENT_CID, "no-such-name"]]
    c += [Case("export-car", ["export-car", "latest", o]) for o in [beside("no-such-folder/out.car", b"-"), beside("out-dir", None)]]
    c += files("export-car", ["export-car", "HEAD", beside("out2.car", b"-")], state_files())
    # import-car
    c += [Case("import-car", ["import-car", f]) for f in input_files("x.car")]
    c += [Case("import-car", ["import-car", beside("varint.car", b"\xff" * 12)]),
          Case("import-car", ["import-car", beside("huge-header.car", b"\xff\xff\xff\xff\x0f" + b"\x00" * 10)])]
    # import-tree
    c += [Case("import-tree", ["import-tree", f]) for f in input_files("tree.yaml")]
    c += [Case("import-tree", ["import-tree", beside(n, d)]) for n, d in [
        ("bad.yaml", b"products: [1, 2]\n"), ("dots.yaml", b"products:\n  ..: %s\n" % cid_for("a").encode()),
        ("badcid.yaml", b"products:\n  a.zarr: bafyNOTACID\n"), ("tabs.yaml", b"\t- :\n  - ]["),
        ("history.jsonl", b"{\n"), ("history2.jsonl", b'{"tree": {}, "date": "9999-12-31T23:59:59-01:00"}\n'),
        ("history3.jsonl", b"[]\n"), ("history4.jsonl", b'{"tree": [], "date": "2024-01-01"}\n')]]
    c += [Case("import-tree", ["import-tree", beside("ok.yaml", b"products:\n  a.zarr: %s\n" % cid_for("a").encode()),
                               "--time", t]) for t in BAD_TIMES[:4]]
    c += files("import-tree", ["import-tree", beside("ok2.yaml", b"products:\n  a.zarr: %s\n" % cid_for("a").encode())],
               state_files())
    # gc
    c += [Case("gc", ["gc", "--dry-run=yes"]), Case("gc", ["gc", "extra"])]
    c += files("gc", ["gc", "--dry-run"], state_files()) + files("gc", ["gc", "--dry-run"], name_files())
    c += files("gc", ["gc", "--dry-run"], cache_files())
    # status
    c += [Case("status", ["status", "extra"])]
    c += files("status", ["status"], state_files()) + files("status", ["status"], cache_files())
    # check
    folders: list[str | Callable[[Path], str]] = [beside("missing-ds", b"-"), beside("a-file.zarr", b"x"), "bafyNOTACID", "ipfs://"]
    c += [Case("check", ["check", f]) for f in folders]
    c += [Case("check", ["check", beside("ds-folder", None), "--max-coordinate-mb", x]) for x in ["abc", "nan", "inf", "-1", "1e400"]]
    # scan
    c += [Case("scan", ["scan", r]) for r in ["bad name!", "ipfs://bafyNOTACID/x", "/ipfs/", ABSENT_CID]]
    c += [Case("scan", ["scan", ABSENT_CID, "--workers", x]) for x in ["0", HUGE, "abc"]]
    c += [Case("scan", ["scan", ABSENT_CID, "--max-coordinate-mb", x]) for x in ["nan", "inf", "-1", "1e400"]]
    c += files("scan", ["scan", "latest"], name_files()[:4])
    # tree build / tree export
    c += [Case("tree build", ["tree", "build", f]) for f in input_files("build.yaml")]
    c += [Case("tree build", ["tree", "build", beside(n, d)]) for n, d in [
        ("bad.yaml", b"products: [1, 2]\n"), ("dots.yaml", b"products:\n  ..: %s\n" % cid_for("a").encode())]]
    c += [Case("tree build", ["tree", "build", beside("ok.yaml", b"a.zarr: %s\n" % cid_for("a").encode()), "--publish", n])
          for n in BAD_NAMES[:2]]
    c += [Case("tree export", ["tree", "export", r]) for r in ["bad name!", "bafyNOTACID", ABSENT_CID, "ipfs://"]]
    c += [Case("tree export", ["tree", "export", ABSENT_CID, "-o", beside("export-dir", None)])]
    c += files("tree export", ["tree", "export", "latest"], name_files()[:4])
    # export / export stac
    def full_folder(home: Path) -> str:
        (home.parent / "export-full").mkdir(exist_ok=True)
        (home.parent / "export-full" / "mine.txt").write_text("keep")
        return str(home.parent / "export-full")

    c += [Case("export", ["export", "no-such"]), Case("export stac", ["export", "stac"])]
    c += [Case("export stac", ["export", "stac", d]) for d in [beside("export-file", b"x"), full_folder,
                                                               beside("no-such-folder/stac", b"-")]]
    c += [Case("export stac", ["export", "stac", beside("stac-t", b"-"), "--at", t]) for t in [*BAD_TIMES, "2024-01-01"]]
    c += [Case("export stac", ["export", "stac", beside("stac-n", b"-"), "--name", n]) for n in ["no-such-name", *BAD_NAMES]]
    c += files("export stac", ["export", "stac", beside("stac-c", b"-")], cache_files())
    # export geoparquet: no FILE, an existing file, a folder, a missing folder, bad --at/--name, broken caches
    c += [Case("export geoparquet", ["export", "geoparquet"])]
    c += [Case("export geoparquet", ["export", "geoparquet", f]) for f in [beside("existing.parquet", b"mine"), full_folder,
                                                                           beside("no-such-folder/items.parquet", b"-")]]
    c += [Case("export geoparquet", ["export", "geoparquet", beside("gp-t.parquet", b"-"), "--at", t])
          for t in [*BAD_TIMES, "2024-01-01"]]
    c += [Case("export geoparquet", ["export", "geoparquet", beside("gp-n.parquet", b"-"), "--name", n])
          for n in ["no-such-name", *BAD_NAMES]]
    c += files("export geoparquet", ["export", "geoparquet", beside("gp-c.parquet", b"-")], cache_files())
    # serve: every case must fail before listening (a good one would serve until stopped)
    c += [Case("serve", ["serve", n, "--port", "0"]) for n in ["no-such-name", *BAD_NAMES]]
    c += [Case("serve", ["serve", "latest", "--port", p]) for p in ["-1", "70000", "http"]]
    c += [Case("serve", ["serve", "latest", "--port", "0", "--host", "203.0.113.1"])]  # TEST-NET-3: not ours to bind
    c += [Case("serve", ["serve", "latest", "--port", "0", "--deadline", d]) for d in ["0", "nan", "-5"]]
    c += [Case("serve", ["serve", "latest", "--port", "0", "--workers", w]) for w in ["0", "65", "two"]]
    c += files("serve", ["serve", "latest", "--port", "0"], cache_files())
    # demo (only its arguments: a demo with good ones builds a whole campaign)
    c += [Case("demo", ["demo", "--home", beside("demo-file", b"x")]), Case("demo", ["demo", "extra"])]
    c += [Case("demo", ["demo", "--home", lambda home: str(home)])]
    c += [Case("reset", ["reset", "extra"])] + files("reset", ["reset"], state_files()[:3])  # a registry's home: never built into
    # pins: names that do not resolve, versions that exclude each other, pin lists that are not
    # ones, nodes that are not Kubo URLs or not there, durations and timeouts that are not
    c += [Case("pins", ["pins"]), Case("pins", ["pins", "no-such"])]
    c += [Case("pins plan", ["pins", "plan", n]) for n in ["no-such-name", "bafyNOTACID", *BAD_NAMES[:2]]]
    c += [Case("pins plan", ["pins", "plan", "latest", "--current", "--all-versions"])]
    c += files("pins plan", ["pins", "plan", "latest"], name_files()[:3])
    c += [Case("pins export", ["pins", "export", "latest"]), Case("pins export", ["pins", "export", "no-such-name", "-o", "x.yaml"])]
    c += [Case("pins export", ["pins", "export", "latest", "-o", d]) for d in [beside("pins-dir", None), beside("no-dir/p.yaml", b"-")]]
    pin = b"- cid: %s\n" % cid_for("p").encode()
    c += [Case("pins import", ["pins", "import", f]) for f in [
        *input_files("pinlist.yaml"), beside("pins-dir2", None), beside("pl-map.yaml", b"cid: x\n"),
        beside("pl-dup.yaml", pin * 2), beside("pl-prev.yaml", pin + b"  meta: {prev: %s}\n" % ABSENT_CID.encode()),
        beside("pl-notcid.yaml", b"- cid: Qm123\n"), beside("pl-alias.yaml", b"- &a {cid: x}\n- *a\n")]]
    c += [Case("pins follow", ["pins", "follow", "latest"])]
    c += [Case("pins follow", ["pins", "follow", "latest", "--node", u]) for u in
          ["http://127.0.0.1:5001", "kubo+http://127.0.0.1:9", "kubo+http://[::1", "kubo+ftp://x"]]
    c += [Case("pins follow", ["pins", "follow", "no-such-name", "--node", "kubo+http://127.0.0.1:9"])]
    c += [Case("pins follow", ["pins", "follow", "latest", "--node", "kubo+http://127.0.0.1:9", *o]) for o in [
        ["--unpin-after", "soon"], ["--unpin-after", "-1d"], ["--concurrency", "0"], ["--pin-timeout", "nan"],
        ["--current", "--all-versions"]]]
    c += [Case("pins status", ["pins", "status", "latest"]), Case("pins status", ["pins", "status", "no-such-name", "--node", "kubo+http://127.0.0.1:9"])]
    c += [Case("pins status", ["pins", "status", "latest", "--node", u]) for u in ["http://x", "kubo+http://127.0.0.1:9"]]
    token = beside("token.txt", b"a-token-long-enough-to-pass\n")
    c += [Case("pins push", ["pins", "push", "latest"]), Case("pins push", ["pins", "push", "--service", "http://127.0.0.1:9"])]
    c += [Case("pins push", ["pins", "push", "latest", "--service", "http://127.0.0.1:9", "--token-file", t])
          for t in [beside("no-token", b"-"), beside("short-token", b"short"), beside("token-dir", None),
                    beside("binary-token", b"\xff\xfe-token-token-token")]]
    # (one retry, not the default four: the path through the retries is the same, the backoff 0.5 s, not 7.5 s)
    c += [Case("pins push", ["pins", "push", "latest", "--service", u, "--token-file", token, "--retries", "1"])
          for u in ["ftp://x", "http://127.0.0.1:9"]]
    c += [Case("pins push", ["pins", "push", "latest", "--pinlist", beside("pl-ok.yaml", b"- cid: %s\n" % cid_for("p").encode()),
                             "--service", "http://127.0.0.1:9", "--token-file", token])]
    c += [Case("pins push", ["pins", "push", "--pinlist", f, "--service", "http://127.0.0.1:9", "--token-file", token])
          for f in input_files("push.yaml")[:3]]
    c += [Case("pins push", ["pins", "push", "no-such-name", "--service", "http://127.0.0.1:9", "--token-file", token])]
    # `tree` itself: the group, without or with an unknown subcommand
    c += [Case("tree", ["tree", "no-such"]), Case("tree", ["tree", "build"])]
    return c


CASES = cases()


def command_paths(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        yield f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from command_paths(command, f"{prefix}{name} ")


def test_every_command_has_malformed_cases() -> None:
    covered = {case.command for case in CASES}
    missing = [path for path in command_paths(cli) if path not in covered]
    assert not missing, f"commands without a malformed-input case in {__file__}: {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_exits_2_with_one_line(case: Case, base_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_home(base_home, home)
    if case.setup is not None:
        case.setup(home)
    args = [a if isinstance(a, str) else a(home) for a in case.args]
    assert_one_line_error(run(home, *args, stdin=case.stdin), case.id)


def test_sequence_memory_refuses_a_malformed_file(tmp_path: Path) -> None:
    """``names/.ipns-sequences.json`` (read only when an IPNS record comes from a gateway): a
    malformed file or entry is a NamingError naming the file, never silently "no sequence"."""
    from halodb.errors import NamingError
    from halodb.naming.ipns_record import SequenceMemory

    path = tmp_path / ".ipns-sequences.json"
    key = b"k" * 32
    for data in [*GARBAGE[:4], b'{"names": []}', b'{"names": {"%s": 3}}' % key.hex().encode(),
                 b'{"names": {"%s": {"sequence": "2"}}}' % key.hex().encode(),
                 b'{"names": {"%s": {"sequence": true}}}' % key.hex().encode(),
                 b'{"names": {"%s": {"sequence": 2, "value": "bafyNOTACID"}}}' % key.hex().encode()]:
        path.write_bytes(data)
        with pytest.raises(NamingError, match=str(path)):
            SequenceMemory(path).last(key)


@pytest.mark.parametrize("args, setup", [
    (["commit", "-m", "x", "--time", "9999-12-31T23:59:59-01:00"], None),
    (["at", "halo/f1", "0001-01-01T00:00:00+01:00"], None),
    (["sql", ""], None),
    (["log", "-n", "abc"], None),
    (["status"], write("state.json", b"[]")),
    (["resolve", "latest"], write("names/latest.json", b"\xff\xfe")),
])
def test_the_real_entry_point_prints_one_line(args: list[str], setup: Setup | None, base_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_home(base_home, home)
    if setup is not None:
        setup(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALODB_")}
    p = subprocess.run([sys.executable, "-m", "halodb", "--home", str(home), *args], capture_output=True, text=True,
                       env={**env, "HALODB_AUTHOR": "tester"}, timeout=120)
    assert_one_line_error(Result(p.returncode, p.stdout, p.stderr), " ".join(args))
