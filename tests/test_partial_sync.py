"""Partial sync (issue 15, part 2): `sync NAME --collection C` / `--prefix P` materializes only
those datasets, with their whole history, reading only the subtrees that hold them; the
cache records the scope, answers `at` only inside it, and rebuilds for another scope."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from halodb.blockstore import MemoryStore
from halodb.campaign import TreeVersion, flatten_tree
from halodb.index.prolly import Node, ProllyTree
from halodb.ipld import CID

from .conftest import import_history, orcestra_history, run_cli, run_cli_in_process

NAME = "latest.orcestra-campaign.org"
METEOR = "orcestra/products/METEOR/"


@pytest.fixture(scope="module")
def history() -> list[TreeVersion]:
    return orcestra_history()


@pytest.fixture(scope="module")
def home(history: list[TreeVersion], tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("partial") / "home"
    import_history(home, history, NAME)
    return home


def sql(home: Path, query: str) -> list[dict[str, object]]:
    r = run_cli_in_process(home, "sql", query, "--format", "json")
    assert r.code == 0, r.err
    rows: list[dict[str, object]] = json.loads(r.out)
    return rows


class CountingTree(ProllyTree):
    loads = 0

    def load(self, cid: CID, parent: CID | None = None, *, keep: bool = True) -> Node:
        self.loads += 1
        return super().load(cid, parent, keep=keep)


def test_a_ranged_diff_is_the_full_diff_filtered_and_reads_less() -> None:
    rnd = random.Random(7)
    store = MemoryStore()
    tree = ProllyTree(store)
    old = tree.build((f"k{n:05d}", n) for n in range(5000))
    new = tree.mutate(old, {f"k{rnd.randrange(6000):05d}": rnd.choice([None, -1]) for _ in range(300)})
    full = CountingTree(store)
    changes = list(full.diff(old, new))
    for start, stop in [("k01000", "k01500"), (None, "k00100"), ("k04900", None), ("k02", "k03"), ("z", None)]:
        ranged = CountingTree(store)
        assert list(ranged.diff(old, new, start=start, stop=stop)) == [
            c for c in changes if (start is None or c.key >= start) and (stop is None or c.key < stop)]
        assert ranged.loads < full.loads / 3, (start, stop, ranged.loads, full.loads)


def test_a_prefix_sync_holds_that_part_with_its_history(history: list[TreeVersion], home: Path) -> None:
    r = run_cli(home, "sync", NAME, "--prefix", METEOR, "--json")
    assert r.code == 0, r.err
    partial = json.loads(r.out)
    assert partial["scope"] == METEOR and partial["commits"] == len(history)
    flats = [flatten_tree(v.tree) for v in history]
    want_now = {p: c for p, c in flats[-1].items() if ("orcestra/" + p).startswith(METEOR)}
    rows = sql(home, "SELECT path, data_cid FROM items")
    assert {str(row["path"]): row["data_cid"] for row in rows} == want_now and want_now
    for n in (60, 120, 150):  # the past of that part, too
        when = history[n].time.isoformat()
        rows = sql(home, f"SELECT path, data_cid FROM items_at(TIMESTAMPTZ '{when}')")
        assert {str(row["path"]): row["data_cid"] for row in rows} == {
            p: c for p, c in flats[n].items() if ("orcestra/" + p).startswith(METEOR)}
    status = json.loads(run_cli_in_process(home, "status", "--json").out)
    assert [n["scope"] for n in status["names"]] == [METEOR]
    assert f"(only keys {METEOR}*)" in run_cli_in_process(home, "status").out
    # `at` answers inside the scope from the cache, and outside it from the DAG
    inside = next(p for p in flats[-1] if p.startswith("products/METEOR/"))
    outside = next(p for p in flats[-1] if p.startswith("products/HALO/"))
    for path in (inside, outside, "orcestra/" + inside, "orcestra/" + outside):
        r = run_cli_in_process(home, "at", path, history[-1].time.isoformat(), "--name", NAME)
        assert r.code == 0 and r.out.strip() == flats[-1][path.removeprefix("orcestra/")], (path, r.err)
    # the whole index, then another part: each a rebuild; the whole one reads more blocks
    r = run_cli(home, "sync", NAME, "--json")
    whole = json.loads(r.out)
    assert whole["reset"] and whole["scope"] is None and whole["blocks_read"] > partial["blocks_read"]
    assert len(sql(home, "SELECT key FROM items")) == len(flats[-1])
    r = run_cli(home, "sync", NAME, "--collection", "orcestra")
    assert r.code == 0 and "rebuilt: the cache held another part" in r.out, r.out + r.err
    assert len(sql(home, "SELECT key FROM items")) == len(flats[-1])
    r = run_cli(home, "sync", NAME, "--collection", "orcestra")
    assert r.code == 0 and "up to date" in r.out


@pytest.mark.parametrize("args, problem", [
    (["--collection", "a/b"], "use --prefix"),
    (["--collection", "a", "--prefix", "a/"], "give one"),
    (["--prefix", ""], "empty"),
    (["--prefix", "products/METEOR/"], "no dataset of latest.orcestra-campaign.org has a key starting with"),
    (["--collection", "nope"], "e.g. 'orcestra/"),
])
def test_bad_scopes_are_refused(home: Path, args: list[str], problem: str) -> None:
    before = sql(home, "SELECT count(*) AS n FROM items") if (home / "cache.duckdb").exists() else None
    r = run_cli_in_process(home, "sync", NAME, *args)
    assert r.code == 2 and problem in r.err and r.err.count("\n") == 1, r.err
    if before is not None:
        assert sql(home, "SELECT count(*) AS n FROM items") == before  # nothing emptied
