"""The same content under two CID spellings is the same content (issue 12, part 3).

ORCESTRA's real history converted 29 of METEOR's datasets from CIDv0 (``Qm…``) to the CIDv1
(``bafy…``) of the same multihash in one version (2026-04-27, PR #99), which also made one
real change. ``log``, ``diff``, the cache's ``changes()`` and the server's ``/changes`` must
count that version as 1 change, not 30, while the items keep the spelling they were given.
The expected figures come from the tree history itself, read with multiformats (not
HaloDB's CID code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pytest
from multiformats import CID as MfCID

import halodb
from halodb.blockstore import MemoryStore
from halodb.cache import Cache
from halodb.campaign import TreeVersion, flatten_tree
from halodb.index.model import Entry
from halodb.index.respelling import is_respelled
from halodb.ipld import make_block

from .conftest import import_history, orcestra_history, run_cli
from .serve_fixture import ServerProcess, start_server

NAME = "latest.orcestra-campaign.org"
V0 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"
V1 = "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"


@pytest.fixture(scope="module")
def history() -> list[TreeVersion]:
    return orcestra_history()


def digest(cid: str) -> bytes:
    return bytes(MfCID.decode(cid).digest)


def expected_counts(history: list[TreeVersion]) -> list[dict[str, int]]:
    """Per version, oldest first: datasets added, changed (other bytes), removed, respelled."""
    out = []
    before: dict[str, str] = {}
    for v in history:
        now = flatten_tree(v.tree)
        counts = {"added": 0, "changed": 0, "removed": 0, "respelled": 0}
        for path, cid in now.items():
            if path not in before:
                counts["added"] += 1
            elif before[path] != cid:
                counts["respelled" if digest(before[path]) == digest(cid) else "changed"] += 1
        counts["removed"] = sum(path not in now for path in before)
        out.append(counts)
        before = now
    return out


@pytest.fixture(scope="module")
def home(history: list[TreeVersion], tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("respelling") / "home"
    import_history(home, history, NAME)
    with halodb.open(home) as reg:
        result = reg.sync(NAME)
    counts = expected_counts(history)  # sync counts as log does: respellings apart
    assert result.respelled == 29 and result.changes == sum(c["added"] + c["changed"] + c["removed"] for c in counts)
    return home


def conversion(history: list[TreeVersion]) -> int:
    """The index of the version that respelled METEOR's CIDs."""
    counts = expected_counts(history)
    found = [n for n, c in enumerate(counts) if c["respelled"]]
    assert len(found) == 1 and counts[found[0]] == {"added": 3, "changed": 1, "removed": 14, "respelled": 29}, found
    return found[0]


def test_a_sync_marks_each_row_as_checking_every_row_does(home: Path, tmp_path: Path) -> None:
    """The versions the first one's leaves open (added batches: no row precedes them) are
    inserted as no respelling, the others checked after: the same column as checking every
    row of the synced cache afresh, with the 29 respellings."""
    import shutil

    import duckdb

    from halodb.cache.respellings import mark_respellings

    copy = tmp_path / "cache.duckdb"
    shutil.copy(home / "cache.duckdb", copy)
    con = duckdb.connect(str(copy))
    try:
        order = "ORDER BY name, key, valid_from"
        synced = con.execute(f"SELECT name, key, valid_from, respelled FROM item_versions {order}").fetchall()
        assert synced and all(r[3] is not None for r in synced) and sum(r[3] for r in synced) == 29
        con.execute("UPDATE item_versions SET respelled = NULL")
        assert mark_respellings(con) == 29
        assert con.execute(f"SELECT name, key, valid_from, respelled FROM item_versions {order}").fetchall() == synced
    finally:
        con.close()


def test_log_counts_a_respelling_apart_in_every_version(history: list[TreeVersion], home: Path) -> None:
    r = run_cli(home, "log", NAME, "--json")
    assert r.code == 0, r.err
    got = [{k: row[k] for k in ("added", "changed", "removed", "respelled")} for row in reversed(json.loads(r.out))]
    assert got == expected_counts(history)
    text = run_cli(home, "log", NAME).out.splitlines()
    line = text[len(history) - 1 - conversion(history)]
    assert "+3 ~1 -14  (245; 29 respelled)" in line, line


def test_diff_marks_respellings_and_keeps_both_spellings(history: list[TreeVersion], home: Path) -> None:
    n = conversion(history)
    older, newer = flatten_tree(history[n - 1].tree), flatten_tree(history[n].tree)
    back = len(history) - 1 - n
    r = run_cli(home, "diff", f"HEAD~{back + 1}", f"HEAD~{back}", "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    respelled = {row["new"]["path"]: row for row in rows if row["change"] == "respelled"}
    assert len(respelled) == 29 and sum(row["change"] == "changed" for row in rows) == 1
    for path, row in respelled.items():
        assert (row["old"]["data"], row["new"]["data"]) == (older[path], newer[path])
        assert older[path].startswith("Qm") and newer[path].startswith("bafy")
    text = run_cli(home, "diff", f"HEAD~{back + 1}", f"HEAD~{back}")
    assert sum(line.startswith("= ") for line in text.out.splitlines()) == 29
    assert text.err.strip() == "18 change(s), 29 respelled"


def test_changes_in_sql_skip_respellings_and_the_items_keep_the_new_spelling(history: list[TreeVersion], home: Path) -> None:
    expected = expected_counts(history)
    with halodb.open(home) as reg:
        cols, rows = reg.sql(
            "SELECT c.seq, op, count(*) FROM name_commits AS f, name_commits AS t,"
            " changes(f.cid, t.cid, ?) AS c WHERE f.name = ? AND t.name = ? AND f.seq = 0 AND t.seq = ?"
            " GROUP BY ALL ORDER BY ALL", [NAME, NAME, NAME, len(history) - 1])
        per_version: dict[int, dict[str, int]] = {}
        for seq, op, count in rows:
            per_version.setdefault(seq, {})[op] = count
        for seq in range(1, len(history)):
            want = {k: v for k, v in expected[seq].items() if v and k != "respelled"}
            assert per_version.get(seq, {}) == want, seq
        n = conversion(history)
        _, marked = reg.sql("SELECT path, data_cid FROM item_versions AS v JOIN name_commits AS c"
                            " ON c.name = v.name AND c.cid = v.valid_from_commit WHERE v.respelled AND c.seq = ?", [n])
        newer = flatten_tree(history[n].tree)
        assert len(marked) == 29 and all(newer[p] == d and d.startswith("bafy") for p, d in marked)
        _, current = reg.sql("SELECT path, data_cid FROM items WHERE name = ?", [NAME])
        now = flatten_tree(history[-1].tree)
        assert {p: d for p, d in current} == now  # the spelling given, not a normalized one


def test_a_respelling_with_another_change_is_a_change() -> None:
    store = MemoryStore()
    blocks = [make_block({"href": f"ipfs://{V0}", "title": "a"}), make_block({"href": f"ipfs://{V1}", "title": "a"}),
              make_block({"href": f"ipfs://{V1}", "title": "b"})]
    store.put_many(blocks)
    (old, _), (same, _), (retitled, _) = blocks
    assert is_respelled(store, Entry(old, V0, "p"), Entry(same, V1, "p"))
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(retitled, V1, "p"))  # the title changed too
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(same, V1, "q"))  # moved
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(same, V1, "p", doi="10.1/x"))  # got a DOI
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(same, V0, "p"))  # same spelling: not a respelling
    other = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # another multihash
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(same, other, "p"))
    raw = "bafkreibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"  # V0's multihash, read as raw bytes
    raw_item, _ = make_block({"href": f"ipfs://{raw}", "title": "a"})
    store.put_many([make_block({"href": f"ipfs://{raw}", "title": "a"})])
    assert not is_respelled(store, Entry(old, V0, "p"), Entry(raw_item, raw, "p"))  # another codec: other content
    assert not is_respelled(store, Entry(old, "not a cid", "p"), Entry(same, "also not", "p"))


def test_a_cache_older_than_the_respelled_column_is_marked_when_opened(history: list[TreeVersion], home: Path,
                                                                      tmp_path: Path) -> None:
    old = tmp_path / "old.duckdb"
    (tmp_path / "copy").mkdir()
    con = duckdb.connect(str(home / "cache.duckdb"), read_only=True)
    con.execute(f"EXPORT DATABASE '{tmp_path / 'copy'}'")
    con.close()
    con = duckdb.connect(str(old))
    con.execute(f"IMPORT DATABASE '{tmp_path / 'copy'}'")
    # back to schema 003: no respelled column, changes() as 003 made it
    migration_003 = (Path(__file__).parents[1] / "migrations" / "003_versions_in_sql.sql").read_text()
    con.execute("DROP MACRO TABLE changes")
    con.execute("ALTER TABLE item_versions DROP COLUMN respelled")
    con.execute("ALTER TABLE sync_state DROP COLUMN scope")  # and 005 after it
    con.execute(migration_003[migration_003.index("CREATE MACRO changes("):])
    con.execute("DELETE FROM schema_migrations WHERE version >= 4")
    assert con.execute("SELECT count(*) FROM changes((SELECT cid FROM name_commits WHERE seq = ?),"
                       " (SELECT cid FROM name_commits WHERE seq = ?))",
                       [conversion(history) - 1, conversion(history)]).fetchall() == [(47,)]
    con.close()
    Cache(old).close()  # read-write: migrates, then marks
    con = duckdb.connect(str(old), read_only=True)
    assert con.execute("SELECT count(*) FILTER (respelled), count(*) FILTER (respelled IS NULL) FROM item_versions"
                       ).fetchall() == [(29, 0)]
    assert con.execute("SELECT count(*) FROM changes((SELECT cid FROM name_commits WHERE seq = ?),"
                       " (SELECT cid FROM name_commits WHERE seq = ?))",
                       [conversion(history) - 1, conversion(history)]).fetchall() == [(18,)]
    con.close()


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[ServerProcess]:
    yield from start_server(home, NAME)


def test_the_server_lists_no_respelling_as_a_change(history: list[TreeVersion], home: Path, server: ServerProcess) -> None:
    n = conversion(history)
    with halodb.open(home) as reg:
        _, rows = reg.sql("SELECT seq, cid FROM name_commits WHERE name = ? AND seq IN (?, ?) ORDER BY seq",
                          [NAME, n - 1, n])
    (_, before), (_, after) = rows
    with httpx.Client(base_url=server.url, timeout=60) as http:
        body: dict[str, Any] = http.get("/changes", params={"from": before, "to": after, "limit": "1000"}).json()
        kinds = sorted(c["change"] for c in body["changes"])
        assert kinds == ["added"] * 3 + ["changed"] + ["removed"] * 14
        # across the whole history too: a key whose only change was its spelling is not listed
        first = http.get("/changes", params={"from": before, "limit": "1000"}).json()
        assert all(c["change"] != "changed" or not c["old"]["data_cid"].startswith("Qm")
                   or digest(c["old"]["data_cid"]) != digest(c["new"]["data_cid"]) for c in first["changes"])
        path = "products/METEOR/ADCP/met_203_vmadcp_38khz.zarr"
        page = http.get(f"/collections/orcestra/items/{quote(path, safe='')}", params={"f": "html"})
        assert page.status_code == 200, page.text[:300]
        assert 'class="change-respelled">respelled' in page.text


def test_the_python_api_tells_respellings_apart(history: list[TreeVersion], home: Path) -> None:
    back = len(history) - 1 - conversion(history)
    with halodb.open(home) as reg:
        changes = reg.diff(f"HEAD~{back + 1}", f"HEAD~{back}")
        assert sum(reg.is_respelled(c) for c in changes) == 29
        assert len(reg.diff(f"HEAD~{back + 1}", f"HEAD~{back}", respellings=False)) == len(changes) - 29
        entry = next(e for n, e in enumerate(reg.log("HEAD")) if n == back)
        assert (entry.added, entry.changed, entry.removed, entry.respelled) == (3, 1, 14, 29)
