"""The DuckDB cache: migrations, schema, applying sync plans, queries (real DuckDB files)."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

import halodb.cache
from halodb.cache import Cache, ChangeRecord, CommitRecord, SyncPlan, SyncState
from halodb.cache import db as db_mod
from halodb.cache import migrate as migrate_mod
from halodb.errors import CacheError, MigrationError, QueryError
from .test_cache_helpers import PYTHON, T0, Rec, cid, commit, drop, dump, plan, put, rec


def test_public_api_is_pinned() -> None:
    assert sorted(halodb.cache.__all__) == ["AddedBatch", "Cache", "ChangeRecord", "CommitRecord", "ItemRecord", "SyncPlan", "SyncState",
                                          "open_for_queries"]


# -- migrations -------------------------------------------------------------------------------
def test_migrations_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    files = sorted(p.name for p in migrate_mod.find_migrations_dir().glob("*.sql"))
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").fetchall()
    con.close()
    assert [f"{v:03d}_{n}.sql" for v, n, _ in rows] == files
    assert all(isinstance(t, datetime) and t.tzinfo is not None for _, _, t in rows)


def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))
    before = dump(path)
    for _ in range(2):
        Cache(path).close()
    assert dump(path) == before  # applied_at included: nothing re-ran


def test_migrations_folder_found_in_checkout() -> None:
    folder = migrate_mod.find_migrations_dir()
    assert (folder / "001_initial.sql").is_file()
    assert [m.version for m in migrate_mod.load_migrations()] == list(range(1, migrate_mod.latest_version() + 1))


def test_migrations_folder_prefers_the_wheel_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed from a wheel, the files live in halodb/_data/migrations (pyproject force-include)."""
    packaged = tmp_path / "site-packages" / "halodb"
    (packaged / "_data" / "migrations").mkdir(parents=True)
    monkeypatch.setattr(importlib.resources, "files", lambda package: packaged)
    assert migrate_mod.find_migrations_dir() == packaged / "_data" / "migrations"
    (packaged / "_data" / "migrations").rmdir()
    assert migrate_mod.find_migrations_dir() == Path(migrate_mod.__file__).resolve().parents[2] / "migrations"


def _migrations_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate_mod.find_migrations_dir(), folder)
    for name, sql in extra.items():
        (folder / name).write_text(sql)
    return folder


BROKEN = """
CREATE TABLE lookup_extra (x INTEGER);
INSERT INTO lookup_extra VALUES (1);
ALTER TABLE commits ADD COLUMN broken INTEGER;
SELECT * FROM this_table_does_not_exist;
"""


def test_failing_migration_leaves_db_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))
    before = dump(path)
    latest = migrate_mod.latest_version()
    folder = _migrations_with(tmp_path, {f"{latest + 1:03d}_broken.sql": BROKEN})
    monkeypatch.setattr(migrate_mod, "find_migrations_dir", lambda: folder)
    with pytest.raises(MigrationError) as info:
        Cache(path)
    assert info.value.version == latest + 1
    assert "broken" in str(info.value)
    assert dump(path) == before
    con = duckdb.connect(str(path), read_only=True)
    columns = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'commits'").fetchall()]
    con.close()
    assert "broken" not in columns
    monkeypatch.undo()
    with Cache(path) as cache:  # still usable with the real migrations
        assert cache.current_head("n") == cid("commit:c1")


def test_failing_second_migration_on_fresh_db_stops_at_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text("CREATE TABLE one (x INTEGER);")
    (folder / "002_second.sql").write_text("CREATE TABLE two (x INTEGER); SELECT nope FROM nowhere;")
    monkeypatch.setattr(migrate_mod, "find_migrations_dir", lambda: folder)
    path = tmp_path / "c.duckdb"
    with pytest.raises(MigrationError) as info:
        Cache(path)
    assert info.value.version == 2
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT version, name FROM schema_migrations").fetchall() == [(1, "first")]
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {"schema_migrations", "one"}


def test_new_migration_is_applied_on_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    latest = migrate_mod.latest_version()
    sql = "CREATE TABLE lookups_extra (k VARCHAR);\nCOMMENT ON TABLE lookups_extra IS 'test';"
    folder = _migrations_with(tmp_path, {f"{latest + 1:03d}_extra.sql": sql})
    monkeypatch.setattr(migrate_mod, "find_migrations_dir", lambda: folder)
    with Cache(path) as cache:
        _, rows = cache.sql("SELECT max(version) FROM schema_migrations")
        assert rows == [(latest + 1,)]
        assert cache.sql("SELECT count(*) FROM lookups_extra")[1] == [(0,)]


@pytest.mark.parametrize(
    ("name", "sql", "match"),
    [
        ("01_short.sql", "SELECT 1;", "NNN_name"),
        ("002_txn.sql", "BEGIN TRANSACTION;\nCREATE TABLE t (x INTEGER);\nCOMMIT;", "transactions"),
    ],
)
def test_bad_migration_files_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, sql: str, match: str) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_ok.sql").write_text("CREATE TABLE t0 (x INTEGER);")
    (folder / name).write_text(sql)
    monkeypatch.setattr(migrate_mod, "find_migrations_dir", lambda: folder)
    with pytest.raises(MigrationError, match=match):
        Cache(tmp_path / "c.duckdb")


def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    con.close()
    with pytest.raises(MigrationError) as info:
        Cache(path)
    assert info.value.version == 999


def test_read_only_needs_existing_migrated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CacheError, match="no cache"):
        Cache(tmp_path / "absent.duckdb", read_only=True)
    assert not (tmp_path / "absent.duckdb").exists()
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    latest = migrate_mod.latest_version()
    folder = _migrations_with(tmp_path, {f"{latest + 1:03d}_extra.sql": "CREATE TABLE extra (x INTEGER);"})
    monkeypatch.setattr(migrate_mod, "find_migrations_dir", lambda: folder)
    with pytest.raises(CacheError, match="old schema"):
        Cache(path, read_only=True)
    Cache(path).close()
    Cache(path, read_only=True).close()


# -- schema documentation ------------------------------------------------------------------------
def test_every_table_view_and_column_is_documented(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    con = duckdb.connect(str(path), read_only=True)
    relations = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() UNION ALL "
        "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"
    ).fetchall()
    columns = con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE NOT internal AND schema_name = 'main'"
    ).fetchall()
    macros = con.execute("SELECT function_name, comment FROM duckdb_functions() "
                         "WHERE function_name IN ('items_at', 'items_as_of', 'changes')").fetchall()
    con.close()
    assert {r[0] for r in relations} == {"schema_migrations", "commits", "name_commits", "stac_items", "item_versions",
                                      "sync_state", "items", "skipped_items"}
    assert [r for r in relations if not r[1]] == []
    assert [r for r in columns if not r[2]] == []
    # items_at(ts [, name]), items_as_of(commit [, name]), changes(from, to [, name])
    assert sorted(m[0] for m in macros) == ["changes", "changes", "items_as_of", "items_as_of", "items_at", "items_at"]
    assert all(m[1] for m in macros)


def test_items_view_and_items_at_have_the_contract_columns(tmp_path: Path) -> None:
    expected = ["name", "key", "id", "collection", "datetime", "start_datetime", "end_datetime", "bbox", "platform",
                "instruments", "title", "keywords", "data_cid", "path", "item_cid", "item"]  # fmt: skip
    with Cache(tmp_path / "c.duckdb") as cache:
        assert cache.sql("SELECT * FROM items")[0] == expected
        assert cache.sql("SELECT * FROM items_at('2024-09-01')")[0] == expected
        # (DESCRIBE: run on this empty cache, a name it does not hold is an error)
        assert [r[0] for r in cache.sql("DESCRIBE SELECT * FROM items_at('2024-09-01', 'n')")[1]] == expected
        assert cache.sql("SELECT * FROM items_as_of('bafyx')")[0] == expected
        assert cache.sql("SELECT * FROM items_as_of('bafyx', 'n')")[0] == expected
        assert [r[0] for r in cache.sql("DESCRIBE SELECT * FROM changes('bafyx', 'bafyy')")[1]] == [
            "name", "key", "op", "old_data_cid", "new_data_cid", "old_item_cid", "new_item_cid", "old_path", "new_path",
            "commit", "time", "seq"]


def test_items_as_of_and_changes_order_commits_by_history_not_time(tmp_path: Path) -> None:
    """Two commits in one second (ORCESTRA has such a pair): items_at shows the state after the
    later one; items_as_of and changes tell them apart; changes lists every intermediate change."""
    one_second = T0 + timedelta(days=1)
    c1 = commit("c1", [put(rec("a")), put(rec("b"))])
    c2 = commit("c2", [put(rec("a", 1))], at=one_second, after="c1")
    c3 = commit("c3", [put(rec("a", 2)), drop("b")], at=one_second, after="c2")
    c4 = commit("c4", [put(rec("c"))], day=2, after="c3")
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1, c2, c3, c4]))
        cache.apply(plan("m", [c1]))
        at_second = cache.sql("SELECT key, item_cid FROM items_at(?, 'n') ORDER BY key", [one_second])[1]
        assert at_second == [("a", cid("item:a:2"))]  # the later of the two
        as_of = "SELECT key, item_cid FROM items_as_of(?, 'n') ORDER BY key"
        assert cache.sql(as_of, [c2.cid])[1] == [("a", cid("item:a:1")), ("b", cid("item:b:0"))]
        assert cache.sql(as_of, [c3.cid])[1] == [("a", cid("item:a:2"))]
        assert cache.sql("SELECT name, key FROM items_as_of(?) ORDER BY ALL", [c1.cid])[1] == [
            ("m", "a"), ("m", "b"), ("n", "a"), ("n", "b")]
        rows = cache.sql("SELECT key, op, old_data_cid, new_data_cid, \"commit\", seq FROM changes(?, ?, 'n')",
                         [c1.cid, c4.cid])[1]
        assert rows == [
            ("a", "changed", cid("data:a:0"), cid("data:a:1"), c2.cid, 1),
            ("a", "changed", cid("data:a:1"), cid("data:a:2"), c3.cid, 2),
            ("b", "removed", cid("data:b:0"), None, c3.cid, 2),
            ("c", "added", None, cid("data:c:0"), c4.cid, 3),
        ]
        assert cache.sql("SELECT count(*) FROM changes(?, ?)", [c4.cid, c1.cid])[1] == [(0,)]  # backwards: none
        assert cache.sql("SELECT count(*) FROM changes(?, ?)", [c2.cid, c2.cid])[1] == [(0,)]
        # a commit or name the cache does not hold is an error naming it, not "no changes"
        with pytest.raises(QueryError, match=f"to_version {c4.cid} is not a commit of m"):
            cache.sql("SELECT count(*) FROM changes(?, ?, 'm')", [c1.cid, c4.cid])
        with pytest.raises(QueryError, match="from_version 2024-09-01 is not a commit of a synced name"):
            cache.sql("SELECT count(*) FROM changes('2024-09-01', ?)", [c4.cid])
        with pytest.raises(QueryError, match="is not a commit of nope"):
            cache.sql("SELECT count(*) FROM changes(?, ?, 'nope')", [c1.cid, c4.cid])
        with pytest.raises(QueryError, match="items_at\\(\\): nope is not a name synced into this cache"):
            cache.sql("SELECT count(*) FROM items_at(TIMESTAMPTZ '2030-01-01', 'nope')")
        assert cache.sql("SELECT key, op FROM changes(?, ?)", [c2.cid, c3.cid])[1] == [("a", "changed"), ("b", "removed")]


def test_macros_work_after_reopen_and_from_plain_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a"))], day=0), commit("c2", [drop("a")], day=2)]))
    with Cache(path, read_only=True) as cache:
        assert cache.sql("SELECT key FROM items_at('2024-09-02')")[1] == [("a",)]
        assert cache.sql("SELECT key FROM items_at('2024-09-02', 'n')")[1] == [("a",)]
        assert cache.sql("SELECT key FROM items_at('2024-09-04', 'n')")[1] == []
    con = duckdb.connect(str(path), read_only=True)  # no HaloDB code involved
    con.execute("SET TimeZone = 'UTC'")
    assert con.execute("SELECT key FROM items_at(TIMESTAMPTZ '2024-09-02 00:00:00+00', 'n')").fetchall() == [("a",)]
    con.close()


# -- applying plans ---------------------------------------------------------------------------------
def _versions(cache: Cache, name: str) -> list[tuple[object, ...]]:
    return cache.sql(
        "SELECT key, item_cid, valid_from_commit, valid_from, valid_to_commit, valid_to FROM item_versions"
        " WHERE name = ? ORDER BY key, valid_from, valid_to NULLS LAST",
        [name],
    )[1]


def test_multi_commit_plan_with_adds_changes_removals(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a")), put(rec("b")), put(rec("c"))], day=0)
    c2 = commit("c2", [put(rec("a", 1)), drop("b")], day=1, parents=[c1.cid])
    c3 = commit("c3", [put(rec("a", 2)), put(rec("d")), put(rec("b", 5))], day=2, parents=[c2.cid])
    t = [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1, c2, c3]))
        assert _versions(cache, "n") == [
            ("a", cid("item:a:0"), c1.cid, t[0], c2.cid, t[1]),
            ("a", cid("item:a:1"), c2.cid, t[1], c3.cid, t[2]),
            ("a", cid("item:a:2"), c3.cid, t[2], None, None),
            ("b", cid("item:b:0"), c1.cid, t[0], c2.cid, t[1]),
            ("b", cid("item:b:5"), c3.cid, t[2], None, None),
            ("c", cid("item:c:0"), c1.cid, t[0], None, None),
            ("d", cid("item:d:0"), c3.cid, t[2], None, None),
        ]
        cols, rows = cache.sql("SELECT key, id, data_cid, path, item_cid FROM items WHERE name = 'n' ORDER BY key")
        assert rows == [
            ("a", "a-r2", cid("data:a:2"), "products/a.zarr", cid("item:a:2")),
            ("b", "b-r5", cid("data:b:5"), "products/b.zarr", cid("item:b:5")),
            ("c", "c-r0", cid("data:c:0"), "products/c.zarr", cid("item:c:0")),
            ("d", "d-r0", cid("data:d:0"), "products/d.zarr", cid("item:d:0")),
        ]
        assert cache.sql("SELECT count(*) FROM stac_items")[1] == [(7,)]
        assert cache.sql("SELECT cid, parents, index_cid, author, message FROM commits ORDER BY time")[1] == [
            (c1.cid, [], c1.index, "tester", "c1"),
            (c2.cid, [c1.cid], c2.index, "tester", "c2"),
            (c3.cid, [c2.cid], c3.index, "tester", "c3"),
        ]
        assert cache.sql("SELECT cid, seq FROM name_commits ORDER BY seq")[1] == [(c1.cid, 0), (c2.cid, 1), (c3.cid, 2)]
        state = cache.sync_state("n")
        assert state is not None and (state.head, state.commits, state.items) == (c3.cid, 3, 4)


def test_incremental_plans_close_versions_of_earlier_plans(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a")), put(rec("b")), put(rec("c"))], day=0)
    c2 = commit("c2", [put(rec("a", 1)), drop("b")], day=1, after="c1")
    c3 = commit("c3", [put(rec("a", 2)), put(rec("b", 1)), drop("c")], day=2, after="c2")
    with Cache(tmp_path / "one.duckdb") as one, Cache(tmp_path / "three.duckdb") as three:
        one.apply(plan("n", [c1, c2, c3]))
        three.apply(plan("n", [c1]))
        three.apply(plan("n", [c2]))
        three.apply(plan("n", [c3]))
        assert _versions(one, "n") == _versions(three, "n")
        assert one.sql("SELECT * FROM items ORDER BY key") == three.sql("SELECT * FROM items ORDER BY key")
        assert three.synced_commits("n") == {c1.cid, c2.cid, c3.cid}
        assert three.sql("SELECT cid FROM name_commits ORDER BY seq")[1] == [(c1.cid,), (c2.cid,), (c3.cid,)]


def test_key_changing_in_every_commit_of_one_plan(tmp_path: Path) -> None:
    commits = [commit(f"c{i}", [put(rec("a", i))], day=i) for i in range(5)]
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", commits))
        versions = _versions(cache, "n")
    assert [v[1] for v in versions] == [cid(f"item:a:{i}") for i in range(5)]
    for i, v in enumerate(versions):
        assert v[2] == commits[i].cid
        assert v[4] == (commits[i + 1].cid if i < 4 else None)


def test_remove_and_readd_within_and_across_plans(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a"))], day=0)
    c2 = commit("c2", [drop("a")], day=1, after="c1")
    c3 = commit("c3", [put(rec("a", 1))], day=2, after="c2")
    c4 = commit("c4", [drop("a")], day=3, after="c3")
    c5 = commit("c5", [put(rec("a", 2))], day=4, after="c4")
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1]))
        cache.apply(plan("n", [c2, c3, c4]))
        assert cache.sql("SELECT count(*) FROM items")[1] == [(0,)]
        cache.apply(plan("n", [c5]))
        assert [(v[1], v[2], v[4]) for v in _versions(cache, "n")] == [
            (cid("item:a:0"), c1.cid, c2.cid),
            (cid("item:a:1"), c3.cid, c4.cid),
            (cid("item:a:2"), c5.cid, None),
        ]


def test_removing_an_unknown_key_is_harmless(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))
        cache.apply(plan("n", [commit("c2", [drop("zzz")], day=1, after="c1")]))
        assert cache.sql("SELECT key FROM items")[1] == [("a",)]


def test_names_are_independent_and_items_are_shared(tmp_path: Path) -> None:
    shared = rec("a")
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("x", [commit("x1", [put(shared), put(rec("b"))])]))
        cache.apply(plan("y", [commit("y1", [put(shared)], day=1)]))
        cache.apply(plan("y", [commit("y2", [drop("a")], day=2, after="y1")]))
        assert cache.sql("SELECT name, key FROM items ORDER BY ALL")[1] == [("x", "a"), ("x", "b")]
        assert cache.sql("SELECT count(*) FROM stac_items")[1] == [(2,)]
        assert [s.name for s in cache.sync_states()] == ["x", "y"]
        assert cache.sql("SELECT name, key FROM items_at('2024-09-02 12:00') ORDER BY ALL")[1] == [
            ("x", "a"), ("x", "b"), ("y", "a"),
        ]  # fmt: skip
        assert cache.sql("SELECT key FROM items_at('2024-09-02 12:00', 'y')")[1] == [("a",)]


def test_same_commit_in_two_names_is_stored_once(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a"))])
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("x", [c1]))
        cache.apply(plan("y", [c1]))
        assert cache.sql("SELECT count(*) FROM commits")[1] == [(1,)]
        assert cache.sql("SELECT name, seq FROM name_commits ORDER BY ALL")[1] == [("x", 0), ("y", 0)]


def test_reset_plan_replaces_the_history_of_one_name(tmp_path: Path) -> None:
    old = [commit("o1", [put(rec("a")), put(rec("b"))], day=0), commit("o2", [put(rec("a", 1))], day=1)]
    new = [commit("n1", [put(rec("a")), put(rec("c"))], day=0), commit("n2", [drop("a")], day=3)]
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", old))
        cache.apply(plan("other", [commit("x1", [put(rec("b"))], day=5)]))
        cache.apply(plan("n", new, reset=True))
        assert cache.sql("SELECT key, item_cid FROM items WHERE name = 'n'")[1] == [("c", cid("item:c:0"))]
        assert cache.synced_commits("n") == {new[0].cid, new[1].cid}
        assert cache.sql("SELECT cid, seq FROM name_commits WHERE name = 'n' ORDER BY seq")[1] == [(new[0].cid, 0), (new[1].cid, 1)]
        assert [(v[0], v[2], v[4]) for v in _versions(cache, "n")] == [
            ("a", new[0].cid, new[1].cid),
            ("c", new[0].cid, None),
        ]
        # items and commits no history uses any more are gone; shared ones stay
        items = {r[0] for r in cache.sql("SELECT item_cid FROM stac_items")[1]}
        assert items == {cid("item:a:0"), cid("item:b:0"), cid("item:c:0")}
        commits = {r[0] for r in cache.sql("SELECT cid FROM commits")[1]}
        assert commits == {new[0].cid, new[1].cid, cid("commit:x1")}
        assert cache.sql("SELECT key FROM items WHERE name = 'other'")[1] == [("b",)]
        state = cache.sync_state("n")
        assert state is not None and (state.head, state.commits, state.items) == (new[1].cid, 2, 1)


def test_reset_plan_may_reuse_commits_already_synced(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a"))], day=0)
    c2 = commit("c2", [put(rec("b"))], day=1)
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1, c2]))
        cache.apply(plan("n", [c1], reset=True))  # the name moved back to c1
        assert cache.sql("SELECT key FROM items")[1] == [("a",)]
        assert cache.current_head("n") == c1.cid


def test_empty_plan_updates_sync_time_only(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a"))])
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1]))
        first = cache.sync_state("n")
        cache.apply(SyncPlan("n", c1.cid, False, []))
        second = cache.sync_state("n")
    assert first is not None and second is not None
    assert (second.head, second.commits, second.items) == (first.head, first.commits, first.items)
    assert second.synced_at >= first.synced_at


def test_sync_state_and_heads(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a")), put(rec("b"))])
    with Cache(tmp_path / "c.duckdb") as cache:
        assert cache.sync_state("n") is None and cache.current_head("n") is None and cache.synced_commits("n") == set()
        before = datetime.now(timezone.utc)
        cache.apply(plan("n", [c1]))
        state = cache.sync_state("n")
        assert isinstance(state, SyncState)
        assert (state.name, state.head, state.commits, state.items) == ("n", c1.cid, 1, 2)
        assert state.synced_at.tzinfo is not None and before - timedelta(seconds=1) <= state.synced_at
        assert cache.sync_states() == [state]
        assert cache.current_head("n") == c1.cid


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda: plan("n", [commit("c2", [put(rec("x"))], day=1, after="c1"), commit("c2", [], day=2)]), "twice in the plan"),
        (lambda: plan("n", [CommitRecord(cid("c"), [], cid("i"), datetime(2024, 9, 2), "a", "m", [])]), "timezone-aware"),
        (lambda: plan("n", [commit("c2", [put(rec("x")), drop("x")], day=1, after="c1")]), "changes twice"),
        (lambda: plan("n", [commit("c2", [ChangeRecord("x", rec("y"))], day=1, after="c1")]), "carries an item for key"),
        (lambda: plan("n", [commit("c1", [put(rec("z"))], parents=[cid("commit:c1")])]), "already synced"),
        (lambda: SyncPlan("", "h", False, []), "no valid name"),
        (lambda: plan("n", [commit("c2", [put(rec("x"))], day=1)]), "does not continue the synced head"),
        (lambda: plan("n", [commit("c2", [put(rec("x"))], day=-1, after="c1")]), "older than the synced head"),
        (lambda: plan("n", [commit("c2", [], day=2, after="c1"), commit("c3", [], day=1, after="c2")]), "non-decreasing"),
        (lambda: SyncPlan("n", cid("elsewhere"), False, []), "use a reset plan"),
        (lambda: plan("n", [commit("c2", [put(Rec("x", cid("i"), None, None, ["not", "a", "dict"]))], day=1, after="c1")]),
         "not a JSON object"),
        # (NaN cannot reach the cache: DAG-CBOR has no NaN, so no verified block holds one)
        (lambda: plan("n", [commit("c2", [put(Rec("x", cid("i"), None, None, {"v": {1: "x"}}))], day=1, after="c1")]),
         "cannot be stored as JSON"),
        (lambda: plan("n", [commit("c2", [put(Rec("x", cid("i"), 42, None, {}))], day=1, after="c1")]), "not a string"),  # type: ignore[arg-type]
    ],
)
def test_malformed_plans_are_refused_and_change_nothing(tmp_path: Path, bad: Callable[[], SyncPlan], match: str) -> None:
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))
    before = dump(path)
    with Cache(path) as cache, pytest.raises(CacheError, match=match):
        cache.apply(bad())
    assert dump(path) == before


def test_read_only_cache_refuses_apply(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    Cache(path).close()
    with Cache(path, read_only=True) as cache, pytest.raises(CacheError, match="read-only"):
        cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))


# -- queries -----------------------------------------------------------------------------------
def test_sql_returns_columns_and_rows_and_translates_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("c1", [put(rec("a")), put(rec("b"))])]))
        cols, rows = cache.sql("SELECT key, platform, instruments, bbox, start_datetime FROM items WHERE key = ?", ["a"])
        assert cols == ["key", "platform", "instruments", "bbox", "start_datetime"]
        assert rows == [("a", "HALO", ["dropsonde", "radar"], [-59.5, 13.0, -57.0, 14.5], datetime(2024, 8, 10, 12, tzinfo=timezone.utc))]
        with pytest.raises(QueryError) as info:
            cache.sql("SELECT nope FROM items")
        assert info.value.sql == "SELECT nope FROM items"
        assert cache.sql("SELECT count(*) FROM items")[1] == [(2,)]  # the connection survived
    with Cache(path, read_only=True) as cache, pytest.raises(QueryError):
        cache.sql("DELETE FROM stac_items")
    with Cache(path, read_only=True) as cache:
        assert cache.sql("SELECT json_extract_string(item, '$.id') FROM items ORDER BY 1")[1] == [("a-r0",), ("b-r0",)]


def test_closed_cache_refuses_work(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.duckdb")
    cache.close()
    cache.close()
    with pytest.raises(CacheError, match="closed"):
        cache.sql("SELECT 1")


def test_session_reuses_one_connection(tmp_path: Path) -> None:
    with Cache(tmp_path / "c.duckdb") as cache:
        with cache.session():
            cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))
            cache.sql("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
            assert cache.sql("SELECT x FROM scratch")[1] == [(1,)]  # same connection: temp table visible
            with cache.session():
                assert cache.current_head("n") == cid("commit:c1")
        with pytest.raises(QueryError):
            cache.sql("SELECT x FROM scratch")  # new connection after the session


def _other_process_can_write(path: Path) -> bool:
    """Whether a separate python process can open ``path`` read-write right now."""
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    return subprocess.run([PYTHON, "-c", code, str(path)], capture_output=True).returncode == 0


def test_keep_open_serves_the_first_call_then_releases_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[bool] = []
    from halodb.cache.connect import open_connection as real_open  # what db_mod.open_connection is

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs["read_only"])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(db_mod, "open_connection", counting_open)
    path = tmp_path / "c.duckdb"
    cache = Cache(path, keep_open=True)
    assert cache.fresh  # a new file: nothing cached yet
    cache.apply(plan("n", [commit("c1", [put(rec("a"))])]))  # the first call takes the opening connection
    assert opened == [False] and not cache.fresh
    assert _other_process_can_write(path)  # ... and closes it
    assert cache.current_head("n") == cid("commit:c1")  # later calls open their own
    assert opened == [False, False]
    cache.close()
    unused = Cache(path, keep_open=True)
    assert not unused.fresh
    unused.close()  # close() also releases a connection no call took
    assert _other_process_can_write(path)


def test_keep_open_errors_come_with_the_first_call(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    path.write_bytes(b"not a duckdb file" * 100)
    cache = Cache(path, keep_open=True)  # the opening fails on its thread
    with pytest.raises(CacheError, match="cannot open cache"):
        cache.sync_states()
    cache.close()


def test_cid_at_by_key_and_by_path(tmp_path: Path) -> None:
    a0 = rec("a", 0, path="products/HALO/a.zarr")
    a1 = rec("a", 1, path="products/HALO/a-v2.zarr")
    c1 = commit("c1", [put(a0)], day=0)
    c2 = commit("c2", [put(a1)], day=10)
    c3 = commit("c3", [drop("a")], day=20)

    def day(d: float) -> datetime:
        return T0 + timedelta(days=d)

    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1, c2, c3]))
        assert cache.cid_at("a", day(-1)) is None
        assert cache.cid_at("a", day(0)) == a0.data_cid
        assert cache.cid_at("a", day(9.9)) == a0.data_cid
        assert cache.cid_at("a", day(10)) == a1.data_cid
        assert cache.cid_at("a", day(20)) is None
        assert cache.cid_at("products/HALO/a.zarr", day(5)) == a0.data_cid
        assert cache.cid_at("products/HALO/a.zarr", day(15)) is None  # moved away
        assert cache.cid_at("products/HALO/a-v2.zarr", day(15)) == a1.data_cid
        assert cache.cid_at("products/HALO/a-v2.zarr", day(25)) is None
        assert cache.cid_at("a", day(5), name="n") == a0.data_cid
        assert cache.cid_at("a", day(5), name="other") is None
        naive = datetime(2024, 9, 6)  # naive = UTC
        assert cache.cid_at("a", naive) == a0.data_cid
        assert cache.cid_at("a", datetime(2024, 9, 11, 1, tzinfo=timezone(timedelta(hours=2)))) == a0.data_cid
        assert cache.cid_at("a", datetime(2024, 9, 10, 23, tzinfo=timezone(timedelta(hours=-2)))) == a1.data_cid


def test_cid_at_prefers_keys_over_paths_and_reports_ambiguity(tmp_path: Path) -> None:
    # key "x" and a dataset whose *path* is "x": the key wins
    c1 = commit("c1", [put(rec("x", path="p/x")), put(rec("y", path="x"))])
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1]))
        assert cache.cid_at("x", T0) == cid("data:x:0")
        assert cache.cid_at("p/x", T0) == cid("data:x:0")
        cache.apply(plan("m", [commit("m1", [put(rec("x", 7))])]))
        with pytest.raises(CacheError, match="pass a name") as info:
            cache.cid_at("x", T0)
        assert info.value.names == ["m", "n"]
        assert cache.cid_at("x", T0, name="m") == cid("data:x:7")
        cache.apply(plan("k", [commit("k1", [put(rec("x"))])]))  # same CID in n and k: no ambiguity
        assert cache.cid_at("x", T0, name="k") == cid("data:x:0")


def test_cid_at_compares_names_by_multihash(tmp_path: Path) -> None:
    """Two names holding one content under two spellings agree; the first name's spelling is
    the answer. Another multihash is still a disagreement."""
    v0, v1 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY", "bafybeibcvvrry2potayjlnnyvtict74uv7y5y3ciqn4hqwe2sk4q37vdc4"
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("a", [commit("a1", [put(rec("x", data=v0))])]))
        cache.apply(plan("b", [commit("b1", [put(rec("x", data=v1))])]))
        assert cache.cid_at("x", T0) == v0
        assert cache.cid_at("x", T0, name="b") == v1
        cache.apply(plan("c", [commit("c1", [put(rec("x", data="bafkqaaa"))])]))
        with pytest.raises(CacheError, match="pass a name"):
            cache.cid_at("x", T0)


def test_equal_commit_times_later_commit_wins(tmp_path: Path) -> None:
    c1 = commit("c1", [put(rec("a"))], at=T0)
    c2 = commit("c2", [put(rec("a", 1))], at=T0)  # same second, as in tree-history.jsonl
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [c1, c2]))
        assert cache.cid_at("a", T0) == cid("data:a:1")
        assert cache.sql("SELECT item_cid FROM items_at(?, 'n')", [T0])[1] == [(cid("item:a:1"),)]


def test_stac_fields_are_extracted_leniently(tmp_path: Path) -> None:
    odd = {
        "id": 7,  # not a string
        "bbox": ["w", "s"],  # not numbers
        "properties": {
            "datetime": "2024-08-11T10:00:00Z",
            "start_datetime": "yesterday",  # not a time
            "platform": ["HALO"],  # not a string
            "instruments": "radar",  # not a list
            "keywords": ["a", 1],  # not all strings
            "title": "Odd one",
        },
    }
    records = [
        Rec("full", cid("full"), "d1", "p/full", {
            "id": "full", "collection": "HALO", "bbox": [1, 2.5, 3, 4],
            "properties": {"datetime": "2024-08-11T10:00:00+02:00", "platform": "HALO", "instruments": ["radar"],
                           "keywords": ["k"], "title": "Full"}}),  # fmt: skip
        Rec("range", cid("range"), "d2", "p/range", {
            "id": "range", "properties": {"datetime": None, "start_datetime": "2024-08-10", "end_datetime": "2024-08-12T00:00:00"}}),  # fmt: skip
        Rec("bare", cid("bare"), None, None, {}),
        Rec("odd", cid("odd"), "d4", "p/odd", odd),
        Rec("noprops", cid("noprops"), "d5", "p/np", {"id": "np", "properties": "nope"}),
    ]
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [commit("c1", [put(r) for r in records])]))
        cols, rows = cache.sql(
            "SELECT key, id, collection, datetime, start_datetime, end_datetime, bbox, platform, instruments, title,"
            " keywords, data_cid, path FROM items ORDER BY key"
        )
    got = {r[0]: dict(zip(cols, r)) for r in rows}
    utc = timezone.utc
    assert got["full"]["datetime"] == datetime(2024, 8, 11, 8, tzinfo=utc)
    assert got["full"]["bbox"] == [1.0, 2.5, 3.0, 4.0]
    assert (got["full"]["platform"], got["full"]["instruments"], got["full"]["keywords"]) == ("HALO", ["radar"], ["k"])
    assert got["range"]["datetime"] is None
    assert got["range"]["start_datetime"] == datetime(2024, 8, 10, tzinfo=utc)
    assert got["range"]["end_datetime"] == datetime(2024, 8, 12, tzinfo=utc)
    assert all(v is None for k, v in got["bare"].items() if k != "key")
    odd_row = got["odd"]
    assert odd_row["datetime"] == datetime(2024, 8, 11, 10, tzinfo=utc) and odd_row["title"] == "Odd one"
    for col in ("id", "bbox", "start_datetime", "platform", "instruments", "keywords"):
        assert odd_row[col] is None, col
    assert got["noprops"]["id"] == "np" and got["noprops"]["title"] is None


def test_item_json_round_trips(tmp_path: Path) -> None:
    base = rec("a").item
    assert base is not None
    item = base | {"properties": {"title": "Ünïcode ✓", "gsd": 0.5, "nested": {"list": [1, None, True]}}}
    with Cache(tmp_path / "c.duckdb") as cache:
        cache.apply(plan("n", [commit("c1", [put(Rec("a", cid("i"), None, None, item))])]))
        (text,), = cache.sql("SELECT item FROM items")[1]
    import json

    assert json.loads(text) == item


def test_a_sync_writes_within_the_memory_limit_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HALODB_CACHE_MEMORY bounds DuckDB while a sync writes (it spills past it): a sync of
    5,000 items under 32 MB gives the cache a sync under the default gives."""
    import halodb
    from halodb.cache.connect import WRITE_MEMORY_LIMIT, open_connection
    from halodb.demo.campaign import generate_items

    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add(generate_items(5000, seed=3))
        reg.commit("5,000 items", time="2024-09-01T00:00:00Z")
        reg.publish("latest")
    answers = []
    for limit in ("32MB", None):
        if limit is None:
            monkeypatch.delenv("HALODB_CACHE_MEMORY", raising=False)
        else:
            monkeypatch.setenv("HALODB_CACHE_MEMORY", limit)
        cache = tmp_path / f"cache-{limit}.duckdb"
        with halodb.open(home, cache=cache) as reg:
            assert reg.sync("latest").changes == 5000
            answers.append(reg.sql("SELECT key, item_cid, data_cid FROM items ORDER BY key")[1])
        con = open_connection(cache, read_only=False, timeout=5)
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == (
            "30.5 MiB" if limit else "366.2 MiB")  # DuckDB shows 32 MB / 384 MB in MiB
        con.close()
    assert answers[0] == answers[1] and len(answers[0]) == 5000
    assert WRITE_MEMORY_LIMIT == "384MB"
    from .conftest import run_cli_in_process

    bad = run_cli_in_process(home, "--cache", str(tmp_path / "c3.duckdb"), "sync", "latest",
                             env={"HALODB_CACHE_MEMORY": "lots"})
    assert bad.code == 2 and bad.err.count("\n") == 1 and "HALODB_CACHE_MEMORY='lots'" in bad.err
