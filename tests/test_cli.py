"""The command line: every command works as documented, errors exit 2 with a clear message."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from halodb.cli.commands import cli

from .conftest import ROOT, cid_for, make_item, run_cli, run_cli_in_process, shared_data


def all_commands() -> list[str]:
    return sorted(cli.commands)


@pytest.mark.parametrize("command", all_commands())
def test_every_command_has_help_and_is_documented(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert len(cli.commands[command].get_short_help_str()) > 10
    usage = (ROOT / "docs" / "usage.md").read_text()
    assert f"halodb {command}" in usage, f"docs/usage.md does not document `halodb {command}`"


def write_items(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "f1.json").write_text(json.dumps(make_item("f1", cid_for("a1"), path="products/HALO/f1.zarr")))
    (folder / "f2.json").write_text(json.dumps(make_item("f2", cid_for("b1"))))


def test_full_flow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli_in_process(home, "init").code == 0
    write_items(tmp_path / "items")
    r = run_cli_in_process(home, "add", str(tmp_path / "items"))
    assert r.code == 0 and "staged 2" in r.out, r.err
    r = run_cli_in_process(home, "commit", "-m", "first", "--time", "2024-08-12T10:00:00Z")
    assert r.code == 0, r.err
    c1 = r.out.strip()
    assert c1.startswith("bafyrei")
    ndjson = json.dumps(make_item("f1", cid_for("a2"), path="products/HALO/f1.zarr")) + "\n" + json.dumps(make_item("f3", cid_for("c1"))) + "\n"
    assert run_cli_in_process(home, "add", "-", stdin=ndjson).code == 0
    assert run_cli_in_process(home, "rm", "halo/f2").code == 0
    r = run_cli_in_process(home, "commit", "-m", "second", "--time", "2024-08-20T10:00:00Z", "--json")
    c2 = json.loads(r.out)["commit"]
    assert run_cli_in_process(home, "publish", "latest").code == 0
    r = run_cli_in_process(home, "log", "latest")
    lines = r.out.strip().splitlines()
    assert len(lines) == 2 and "+1 ~1 -1" in lines[0] and "second" in lines[0] and "tester" in lines[0]
    r = run_cli_in_process(home, "sync", "latest", "--json")
    assert json.loads(r.out)["commits"] == 2
    r = run_cli_in_process(home, "sql", "SELECT key, data_cid FROM items ORDER BY key", "--format", "csv")
    rows = list(csv.reader(io.StringIO(r.out)))
    assert rows == [["key", "data_cid"], ["halo/f1", cid_for("a2")], ["halo/f3", cid_for("c1")]]
    assert "\r" not in r.out and r.out.split("\n")[1] == f"halo/f1,{cid_for('a2')}"  # (what $(...) | sed -n 2p gets)
    r = run_cli_in_process(home, "sql", "SELECT count(*) AS n FROM items_at(TIMESTAMPTZ '2024-08-15')", "--json")
    assert json.loads(r.out) == [{"n": 2}]
    r = run_cli_in_process(home, "sql", "SELECT key FROM items ORDER BY key")
    assert "halo/f1" in r.out and "(2 rows)" in r.out
    r = run_cli_in_process(home, "at", "products/HALO/f1.zarr", "2024-08-15T00:00Z", "--name", "latest")
    assert (r.code, r.out.strip()) == (0, cid_for("a1"))
    r = run_cli_in_process(home, "at", "halo/f2", "2024-08-25T00:00Z", "--name", "latest")
    assert r.code == 1 and r.out == ""
    r = run_cli_in_process(home, "diff", c1, c2)
    assert r.out.splitlines() == [f"~ halo/f1  {cid_for('a1')} -> {cid_for('a2')}", f"- halo/f2  {cid_for('b1')}", f"+ halo/f3  {cid_for('c1')}"]
    r = run_cli_in_process(home, "diff", "latest@2024-08-13T00:00Z", "latest", "--json")
    assert [c["change"] for c in json.loads(r.out)] == ["changed", "removed", "added"]
    r = run_cli_in_process(home, "status", "--json")
    st = json.loads(r.out)
    assert st["head"] == c2 and st["names"][0]["up_to_date"] is True
    car = tmp_path / "x.car"
    assert run_cli_in_process(home, "export-car", "latest", str(car)).code == 0
    other = tmp_path / "other"
    run_cli_in_process(other, "init")
    r = run_cli_in_process(other, "import-car", str(car))
    assert r.out.strip() == c2
    r = run_cli_in_process(home, "export-car", "latest", str(car), "--json")
    exported = json.loads(r.out)
    assert exported["root"] == c2 and exported["path"] == str(car) and exported["blocks"] > 2
    r = run_cli_in_process(other, "import-car", str(car), "--json")
    assert json.loads(r.out) == {"roots": [c2], "imported": exported["blocks"]}


def test_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run_cli_in_process(home, "log")
    assert r.code == 2 and "halodb init" in r.err
    run_cli_in_process(home, "init")
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "Feature", "id": ')
    r = run_cli_in_process(home, "add", str(bad))
    assert r.code == 2 and "bad.json" in r.err
    r = run_cli_in_process(home, "rm", "halo/none")
    assert r.code == 2 and "halo/none" in r.err
    r = run_cli_in_process(home, "sync", "no-such-name")
    assert r.code == 2 and "no-such-name" in r.err
    r = run_cli_in_process(home, "commit", "-m", "x")
    assert r.code == 2 and "nothing staged" in r.err
    r = run_cli_in_process(home, "at", "x", "not-a-date")
    assert r.code == 2 and "not-a-date" in r.err
    r = run_cli_in_process(home, "--store", "ftp://x", "log")
    assert r.code == 2 and "ftp://x" in r.err
    assert "Traceback" not in r.err
    r = run_cli_in_process(home, "sql", "SELECT count(*) FROM items")  # nothing synced: not an empty answer
    assert r.code == 2 and "no cache at" in r.err and "`halodb sync NAME`" in r.err, r.err
    write_items(tmp_path / "items")
    for args in (["add", str(tmp_path / "items")], ["commit", "-m", "x"], ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0, args
    r = run_cli_in_process(home, "sql", "SELECT * FROM no_such_table")
    assert r.code == 2 and "no_such_table" in r.err


def test_a_mistyped_home_is_left_as_it_was(tmp_path: Path) -> None:
    """Commands that read a home say there is none, and create nothing (they once left an
    empty block store behind, so the next try found a folder and a confusing state)."""
    home = tmp_path / "mistyped"
    for args in (["log"], ["status"], ["get", "halo/x"], ["at", "halo/x", "2024-09-01", "--name", "latest"],
                 ["diff", "a", "b"], ["export-car", "HEAD", str(tmp_path / "x.car")], ["gc"], ["rm", "halo/x"]):
        r = run_cli_in_process(home, *args)
        assert r.code == 2, (args, r.err)
        assert not home.exists(), args
    assert run_cli_in_process(home, "init").code == 0
    assert (home / "blocks").is_dir()


def test_import_tree_yaml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_cli_in_process(home, "init")
    tree = tmp_path / "tree.yaml"
    tree.write_text(f"products:\n  HALO:\n    a.zarr: {cid_for('a')}\n    empty: null\n  b.zarr: {cid_for('b')}\n")
    r = run_cli_in_process(home, "import-tree", str(tree), "--time", "2024-09-01T00:00Z", "-m", "tree v1")
    assert r.code == 0, r.err
    r = run_cli_in_process(home, "at", "products/HALO/a.zarr", "2024-09-02")
    assert r.out.strip() == cid_for("a")
    tree.write_text("products: [1, 2]\n")
    r = run_cli_in_process(home, "import-tree", str(tree))
    assert r.code == 2 and "tree" in r.err


def test_a_grown_history_imports_only_its_new_versions(tmp_path: Path) -> None:
    """ORCESTRA's real tree history, imported at 20 versions and again once it has 25: the
    second import adds the 5 new ones (it used to replay all 25 and fail on going back in
    time); a third changes nothing."""
    home = tmp_path / "home"
    lines = shared_data("orcestra", "tree-history.jsonl").read_text().splitlines()
    first, grown = tmp_path / "h20.jsonl", tmp_path / "h25.jsonl"
    first.write_text("\n".join(lines[:20]) + "\n")
    grown.write_text("\n".join(lines[:25]) + "\n")
    run_cli_in_process(home, "init")
    r = run_cli_in_process(home, "import-tree", str(first))
    assert r.code == 0 and r.out.startswith("imported 20 version(s); head "), r.err
    r = run_cli_in_process(home, "import-tree", str(grown))
    assert r.code == 0 and r.out.startswith("imported 5 version(s) (20 imported before, skipped); head "), r.err
    head = r.out.split()[-1]
    r = run_cli_in_process(home, "import-tree", str(grown))
    assert r.code == 0 and r.out == f"imported 0 version(s) (25 imported before, skipped); head {head}\n"
    r = run_cli_in_process(home, "log", "--json")
    assert r.code == 0 and len(json.loads(r.out)) == 25


def test_sync_killed_at_any_point_leaves_the_cache_whole(tmp_path: Path) -> None:
    """kill -9 a `halodb sync` at several moments; the cache is old-or-new, never half."""
    import halodb
    from halodb.demo.campaign import generate_items

    home = tmp_path / "home"
    reg = halodb.open(home, create=True)
    reg.add(generate_items(500, seed=1))
    reg.commit("small", time="2024-08-12T00:00:00Z")
    reg.publish("latest")
    reg.sync("latest")
    first = str(reg.head)
    reg.add(generate_items(30_000, seed=2))
    reg.commit("big", time="2024-08-13T00:00:00Z")
    reg.publish("latest")
    second = str(reg.head)
    reg.close()
    env = {**os.environ, "HALODB_AUTHOR": "t"}
    for delay in (0.3, 0.8, 1.5, 2.5):
        p = subprocess.Popen([sys.executable, "-m", "halodb", "--home", str(home), "sync", "latest"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        reg = halodb.open(home)
        state = reg.cache.sync_state("latest")
        assert state is not None  # the first sync finished before any kill
        head = state.head
        n = reg.sql("SELECT count(*) FROM items")[1][0][0]
        reg.close()
        assert (head, n) in ((first, 500), (second, 30_500)), (delay, head, n)
        if head == second:
            break
    r = run_cli(home, "sync", "latest")
    assert r.code == 0, r.err
    reg = halodb.open(home)
    assert reg.sql("SELECT count(*) FROM items")[1][0][0] == 30_500
    reg.close()


HEAVY = ("pyarrow", "numpy", "zarr", "xarray", "aiohttp", "httpx", "dns", "multiformats", "pydantic", "pystac", "tqdm",
         "halodb_native")


def heavy_modules(code: str) -> list[str]:
    """The heavy third-party modules a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120)
    return list(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


def test_the_cli_imports_only_what_a_command_needs(tmp_path: Path) -> None:
    """`import halodb.cli` (what `halodb --version` pays) and `halodb at` on a synced name load no
    Arrow, NumPy, Zarr, aiohttp, codec tables or compiled module (halodb_native), and `at` not even DuckDB when the home's blocks
    answer; `halodb sync` does (it writes the cache)."""
    assert heavy_modules("import halodb.cli") == []
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0
    run = (f"import sys\nfrom halodb.cli import main\nsys.argv = ['halodb', '--home', {str(home)!r}, 'at', 'halo/f1', "
           "'2024-09-01', '--name', 'latest']\ntry:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc")
    assert heavy_modules(run) == []
    loaded = subprocess.run([sys.executable, "-c", run + "\nprint(*sys.modules)"], check=True,
                            capture_output=True, text=True, timeout=120).stdout.split()
    assert "duckdb" not in loaded and "asyncio" not in loaded  # (~0.1 s and ~0.02 s of a 0.07 s answer)
    assert run_cli_in_process(home, "at", "halo/f1", "2024-09-01", "--name", "latest").out.strip() == cid_for("a1")
    # not synced at the name's head any more: the answer comes from the DAG, the same
    assert run_cli_in_process(home, "publish", "other").code == 0
    assert run_cli_in_process(home, "at", "halo/f1", "2024-09-01", "--name", "other").out.strip() == cid_for("a1")
    # ... reading only the DAG: no Arrow, no HTTP client, no item validation, no codec tables
    from_dag = run.replace("'--name', 'latest'", "'--name', 'other'")
    assert heavy_modules(from_dag) == []
    assert "pyarrow" in heavy_modules(run.replace("'at', 'halo/f1', '2024-09-01', '--name', 'latest'", "'sync', 'latest'"))
    # `rm` and `commit` write no cache: no DuckDB either (~0.07 s of each)
    for command in ("'rm', 'halo/f1'", "'commit', '-m', 'gone', '--time', '2024-08-13T10:00:00Z'"):
        loaded = subprocess.run([sys.executable, "-c", run.replace("'at', 'halo/f1', '2024-09-01', '--name', 'latest'", command)
                                 + "\nprint(*sys.modules)"], check=True, capture_output=True, text=True, timeout=120).stdout.split()
        assert "duckdb" not in loaded, command
    assert run_cli_in_process(home, "log", "-n", "1").out.count("gone") == 1


def test_at_on_a_cache_of_an_older_schema_migrates_it(tmp_path: Path) -> None:
    """A cache written before the last migration: `halodb at --name` does not fail on it; the
    registry migrates it and answers (the home's blocks removed, so that the cache answers)."""
    import duckdb

    from halodb.cache import migrate

    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0
    shutil.rmtree(home / "blocks")  # else the blocks answer, and the cache is not opened
    last = migrate.latest_version()  # 007: undone by hand below (a new migration must adapt these lines)
    con = duckdb.connect(str(home / "cache.duckdb"))  # (007 replaces a macro: applying it again undoes nothing)
    con.execute("DELETE FROM schema_migrations WHERE version = ?", [last])
    con.close()
    result = run_cli_in_process(home, "at", "halo/f1", "2024-09-01", "--name", "latest")
    assert result.code == 0 and result.out.strip() == cid_for("a1"), result.err
    con = duckdb.connect(str(home / "cache.duckdb"), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (last,)
    con.close()


def test_a_commit_dated_in_the_future_is_refused_and_reset_empties_the_stage(tmp_path: Path) -> None:
    """A typo in --time's year would date a version in the future, after which time may not
    go backwards until then: refused (exit 2, nothing committed). So is a stage that changes
    nothing; `halodb reset` empties the stage (what import-tree's refusal of a home with a
    stage points to)."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    assert run_cli_in_process(home, "init").code == 0
    assert run_cli_in_process(home, "add", str(tmp_path / "items")).code == 0
    r = run_cli_in_process(home, "commit", "-m", "typo", "--time", "2204-08-14T10:00:00Z")
    assert r.code == 2 and "--time 2204-08-14T10:00:00Z is in the future" in r.err and len(r.err.splitlines()) == 1
    assert run_cli_in_process(home, "commit", "-m", "ok", "--time", "2024-08-14T10:00:00Z").code == 0
    assert run_cli_in_process(home, "add", str(tmp_path / "items")).code == 0  # the same items again
    r = run_cli_in_process(home, "commit", "-m", "again")
    assert r.code == 2 and "the stage changes nothing" in r.err, r.err  # not an empty version
    r = run_cli_in_process(home, "reset")
    assert r.code == 0 and r.out.startswith("unstaged "), r.err
    assert "0 upsert(s), 0 removal(s)" in run_cli_in_process(home, "status").out


def test_at_says_why_it_has_no_answer_and_takes_a_path_with_slashes(tmp_path: Path) -> None:
    """No version that old, no such dataset then, no data in its item: three different
    reasons, said on stderr and in --json (exit 1 for each); a path written with a leading
    or trailing slash is the path."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    (tmp_path / "items" / "f3.json").write_text(json.dumps({**make_item("f3", cid_for("c1")), "assets": {}}))
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0, args
    for key, when, why in [("halo/f1", "2024-08-01", "latest has no version at or before it"),
                           ("halo/nope", "2024-09-01", "no dataset with that key or path in the version of latest"),
                           ("halo/f3", "2024-09-01", "names no data")]:
        r = run_cli_in_process(home, "at", key, when, "--name", "latest")
        assert r.code == 1 and r.out == "" and r.err.startswith(f"{key} had no data CID at {when}: ") and why in r.err
        assert len(r.err.splitlines()) == 1, r.err
        r = run_cli_in_process(home, "at", key, when, "--name", "latest", "--json")
        assert r.code == 1 and json.loads(r.out)["cid"] is None and why in json.loads(r.out)["why"], r.out
    for path in ("/products/HALO/f1.zarr", "products/HALO/f1.zarr/"):
        assert run_cli_in_process(home, "at", path, "2024-09-01", "--name", "latest").out.strip() == cid_for("a1")
        r = run_cli_in_process(home, "at", "-", "--name", "latest", stdin=f"{path}\t2024-09-01\n")
        assert r.out.strip() == cid_for("a1"), r.err


def test_a_damaged_cache_and_an_unnamed_export_say_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["publish", "other"], ["sync", "latest"], ["sync", "other"]):
        assert run_cli_in_process(home, *args).code == 0, args
    r = run_cli_in_process(home, "export", "stac", str(tmp_path / "out"))
    assert r.code == 2 and "2 synced names (latest, other); e.g. --name latest" in r.err, r.err
    (home / "cache.duckdb").write_bytes(b"\x00garbage" * 100)
    r = run_cli_in_process(home, "sql", "SELECT 1")
    assert r.code == 2 and f"remove {home / 'cache.duckdb'} and run `halodb sync NAME`" in r.err, r.err


def test_add_names_the_file_of_a_keyless_item_and_rm_counts_a_key_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    item = make_item("x", cid_for("x"))
    del item["collection"]
    (tmp_path / "nocoll.json").write_text(json.dumps(item))
    assert run_cli_in_process(home, "init").code == 0
    r = run_cli_in_process(home, "add", str(tmp_path / "nocoll.json"))
    assert r.code == 2 and f"{tmp_path / 'nocoll.json'}: collection: item 'x' has no collection" in r.err, r.err
    for args in (["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"]):
        assert run_cli_in_process(home, *args).code == 0, args
    r = run_cli_in_process(home, "rm", "halo/f1", "halo/f1")
    assert r.code == 0 and r.out.strip() == "staged removal of 1 dataset(s)", r.out
    # a key only added is unstaged, not "removed"; a removal staged before is said to be
    (tmp_path / "new.json").write_text(json.dumps(make_item("new", cid_for("new"))))
    assert run_cli_in_process(home, "add", str(tmp_path / "new.json")).code == 0
    r = run_cli_in_process(home, "rm", "halo/new", "halo/f1", "halo/f2")
    assert r.code == 0 and r.out.strip() == ("staged removal of 1 dataset(s); unstaged 1 added item(s) that no version "
                                             "holds; 1 already staged for removal"), r.out
    r = run_cli_in_process(home, "rm", "halo/x", "halo/f2", "halo/y", "halo/new")  # every unknown key named, once
    assert r.code == 2 and r.err.count("\n") == 1 and "'halo/x', 'halo/y', 'halo/new'" in r.err, r.err
    assert "nothing staged" in r.err and "staged: 0 upsert(s), 2 removal(s)" in run_cli_in_process(home, "status").out
    (tmp_path / "empty").mkdir()
    r = run_cli_in_process(home, "add", str(tmp_path / "empty"))
    assert r.code == 0 and f"warning: no STAC items found in {tmp_path / 'empty'}" in r.err, r.err


def published_home(tmp_path: Path) -> Path:
    """A home whose one version (the items of :func:`write_items`) is published as ``latest``;
    the datasets' data is not in it."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"]):
        assert run_cli_in_process(home, *args).code == 0, args
    return home


def test_show_without_the_data_says_where_to_read_it_and_takes_a_commit_for_at(tmp_path: Path) -> None:
    home = published_home(tmp_path)
    commit = run_cli_in_process(home, "log", "latest", "-n", "1").out.split()[0]
    for at in ("2024-09-01", commit):  # a date, or a commit CID of the name's history
        r = run_cli_in_process(home, "show", "halo/f1", "--at", at, "--name", "latest")
        assert r.code == 2 and "the dataset's data is not in this home; read it through a gateway" in r.err, r.err


def test_open_dataset_without_the_data_says_where_to_read_it(tmp_path: Path) -> None:
    import halodb
    from halodb.errors import BlockNotFoundError

    home = published_home(tmp_path)
    with pytest.raises(BlockNotFoundError, match='not in this home; read it through a gateway or a Kubo node '
                                                 r'\(store="https://GATEWAY/" or store="kubo\+http://HOST:5001"\)'):
        halodb.open_dataset("halo/f1", name="latest", home=str(home))


def test_an_open_that_fails_leaves_nothing_of_the_home_open(tmp_path: Path) -> None:
    import halodb
    from halodb.errors import BlockNotFoundError, UnknownKeyError

    home = published_home(tmp_path)

    def open_in_home() -> set[str]:  # this process's open files inside the home
        found = set()
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):  # (a descriptor closed meanwhile)
                target = os.readlink(fd)
                if target.startswith(str(home)):
                    found.add(target)
        return found

    before = open_in_home()  # (the CLI calls above ran in this process: what they left is not counted)
    for key, error in (("halo/nothing", UnknownKeyError), ("halo/f1", BlockNotFoundError)):
        with pytest.raises(error):
            halodb.open_dataset(key, name="latest", home=str(home))
        assert open_in_home() <= before, key


def test_a_file_that_is_not_there_is_named_the_same_way_by_every_command(tmp_path: Path) -> None:
    home = published_home(tmp_path)
    gone = tmp_path / "gone"
    for args in (["add", str(gone / "x.json")], ["import-tree", str(gone / "h.jsonl")], ["import-tree", str(gone / "t.yaml")],
                 ["pins", "import", str(gone / "p.yaml")], ["verify", str(gone / "p.car")],
                 ["import-car", str(gone / "x.car")]):
        r = run_cli_in_process(home, *args)
        assert r.code == 2 and r.err.count("\n") == 1, (args, r.err)
        assert f"{args[-1]}: no such file or folder" in r.err and "Errno" not in r.err, (args, r.err)
    r = run_cli_in_process(home, "export-car", "HEAD", str(gone / "x.car"))  # the folder named, not a temporary file
    assert r.code == 2 and f"cannot write CAR file {gone / 'x.car'}: the folder {gone} does not exist" in r.err, r.err
    assert ".tmp" not in r.err and not gone.exists(), r.err


def test_publish_and_gc_speak_json_for_tools(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"]):
        assert run_cli_in_process(home, *args).code == 0, args
    r = run_cli_in_process(home, "publish", "latest", "--json")
    assert r.code == 0 and json.loads(r.out)["name"] == "latest" and json.loads(r.out)["cid"].startswith("bafyrei")
    r = run_cli_in_process(home, "gc", "--dry-run", "--json")
    out = json.loads(r.out)
    assert r.code == 0 and out["dry_run"] is True and out["kept"] > 0 and isinstance(out["deleted"], int), r.out
    assert json.loads(run_cli_in_process(home, "get", "halo/f1", "--json").out)["id"] == "f1"


def test_at_answers_many_questions_from_stdin_as_it_answers_one(tmp_path: Path) -> None:
    """`halodb at -`: one process for many questions, each answer the line `at` prints for it
    alone (an empty line for none), from the cache of a synced name and from the DAG."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0
    questions = [("halo/f1", "2024-09-01"), ("products/HALO/f1.zarr", "2024-09-01T00:00:00+02:00"),
                 ("halo/f2", "2024-08-01"), ("halo/none", "2024-09-01")]
    stdin = "".join(f"{k}\t{w}\n" if n % 2 else f"{k} {w}\n" for n, (k, w) in enumerate(questions))
    for name in (["--name", "latest"], []):  # the cache, then the local head's DAG
        singles = [run_cli_in_process(home, "at", k, w, *name).out.strip() for k, w in questions]
        assert singles == [cid_for("a1"), cid_for("a1"), "", ""]
        r = run_cli_in_process(home, "at", "-", *name, stdin=stdin)
        assert r.code == 0 and r.out.split("\n")[:-1] == singles, r.err
        r = run_cli_in_process(home, "at", "-", *name, "--json", stdin=stdin)
        assert [json.loads(line)["cid"] for line in r.out.splitlines()] == [s or None for s in singles]


def test_the_quick_at_says_what_the_full_command_says(tmp_path: Path) -> None:
    """`halodb [--home H] at KEY WHEN --name N` on a synced name is answered before the command
    tree loads (no click): the same stdout, stderr and exit code as the full command, for
    answers, non-answers (from the home's blocks, synced or not), and every case it hands
    over (a bad date, a tag, doi:, other options, a name that does not resolve)."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"], ["publish", "unsynced"]):
        assert run_cli_in_process(home, *args).code == 0
    asks = [["at", "halo/f1", "2024-09-01", "--name", "latest"],
            ["at", "products/HALO/f1.zarr", "2024-09-01T02:00:00+02:00", "--name", "latest"],
            ["at", "halo/f2", "2024-08-01", "--name", "latest"],
            ["at", "halo/none", "2024-09-01", "--name", "latest"],
            ["at", "halo/f1", "2024-09-01", "--name", "unsynced"],
            ["at", "halo/f1", "2024-13-01", "--name", "latest"],
            ["at", "halo/f1", "v1", "--name", "latest"],
            ["at", "doi:10.1/x", "2024-09-01", "--name", "latest"],
            ["at", "halo/f1", "2024-09-01", "--name", "no-such-name"],
            ["at", "halo/f1", "2024-09-01", "--json", "--name", "latest"]]
    probe = ("import atexit, sys\nfrom halodb.cli import main\n"
             "atexit.register(lambda: print('click loaded' if 'click' in sys.modules else '', file=sys.stderr))\n"
             "sys.argv = ['halodb'] + sys.argv[1:]\nmain()")
    # first the home's blocks answer (any name they hold, synced or not), then, with them
    # gone (a home that synced through a gateway lacks the history tree), the cache
    for answering in (("latest", "unsynced"), ("latest",)):
        if answering == ("latest",):
            shutil.rmtree(home / "blocks")
        for ask in asks:
            full = run_cli_in_process(home, *ask)
            p = subprocess.run([sys.executable, "-c", probe, "--home", str(home), *ask], capture_output=True,
                               text=True, timeout=120, env={**os.environ, "HALODB_AUTHOR": "tester"})
            quick = p.stderr.endswith("click loaded\n") is False
            assert (p.returncode, p.stdout, p.stderr.removesuffix("click loaded\n").rstrip("\n")) == (
                full.code, full.out, full.err.rstrip("\n")), ask
            # (an answer of none goes to the full command, which says why)
            assert quick == (len(ask) == 5 and ask[-1] in answering and ask[2][:1].isdigit()
                             and ask[2] != "2024-13-01" and not ask[1].startswith("doi:")
                             and full.code == 0), (ask, answering)


def test_at_from_stdin_keeps_one_line_per_input_line_and_answers_tags(tmp_path: Path) -> None:
    """Blank input lines get empty answer lines (a tool pairs lines), trailing spaces are
    ignored, a tag or doi: line is answered as `halodb at KEY TAG` answers it, and a bad
    line prints nothing at all."""
    home = tmp_path / "home"
    write_items(tmp_path / "items")
    for args in (["init"], ["add", str(tmp_path / "items")], ["commit", "-m", "first", "--time", "2024-08-12T10:00:00Z"],
                 ["publish", "latest"], ["tag", "create", "latest", "v1"], ["publish", "latest"], ["sync", "latest"]):
        assert run_cli_in_process(home, *args).code == 0, args
    stdin = "halo/f1 2024-09-01  \n\nhalo/f1\tv1\ndoi:10.1234/none\t2024-09-01\nhalo/f2 2024-08-01\ndoi:10.1234/none\n"
    r = run_cli_in_process(home, "at", "-", "--name", "latest", stdin=stdin)
    assert r.code == 0 and r.out.split("\n") == [cid_for("a1"), "", cid_for("a1"), "", "", "", ""], (r.out, r.err)
    assert run_cli_in_process(home, "at", "halo/f1", "v1", "--name", "latest").out.strip() == cid_for("a1")
    r = run_cli_in_process(home, "at", "-", "--name", "latest", stdin="halo/f1 2024-09-01\nhalo/f1\tv9\n")
    assert r.code == 2 and r.out == "" and "stdin line 2" in r.err, (r.out, r.err)
