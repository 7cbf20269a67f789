"""`halodb sql` cannot change the cache or reach outside it (issue 10, defect 7).

The cache is opened read-only for queries (:func:`halodb.cache.open_for_queries`), with
DuckDB's external access, extension installs and autoloading off and its configuration
locked; ``Cache.sql`` runs one SELECT, EXPLAIN or PRAGMA. Every attack below exits 2 with
one line, leaves the cache file byte for byte as it was and creates no file; plain queries
still work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import halodb
from halodb.api.registry import Registry
from halodb.cache import open_for_queries
from halodb.errors import QueryError

from .conftest import cid_for, make_item
from .test_cli_malformed import assert_one_line_error, run

#: the content of the file outside the cache that no query may read
SECRET = "never-read-by-halodb-sql"


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A home with two datasets in two versions, published as `latest` and synced."""
    home = tmp_path_factory.mktemp("sql") / "home"
    with halodb.open(home, create=True) as reg:
        reg.add([make_item("f1", cid_for("a1"), path="products/HALO/f1.zarr"), make_item("f2", cid_for("b1"))])
        reg.commit("first", time="2024-08-12T00:00:00Z")
        reg.add([make_item("f1", cid_for("a2"), path="products/HALO/f1.zarr")])
        reg.commit("second", time="2024-08-20T00:00:00Z")
        reg.publish("latest")
        reg.sync("latest")
        yield reg


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attacks(outside: Path) -> list[str]:
    """Statements that would change the cache, read or write files, or reach the network."""
    return [
        "UPDATE item_versions SET data_cid = 'bafkforged'",
        "DELETE FROM item_versions",
        "INSERT INTO sync_state VALUES ('x', 'y', now(), 0, 0)",
        "DROP TABLE item_versions",
        "DROP VIEW items",
        "CREATE TABLE x AS SELECT 1 AS a",
        "CREATE TEMP TABLE x AS SELECT 1 AS a",
        "CREATE OR REPLACE TEMP VIEW items AS SELECT 'forged' AS data_cid",
        "ALTER TABLE commits ADD COLUMN x INTEGER",
        f"COPY item_versions TO '{outside / 'copy.csv'}'",
        f"COPY (SELECT 1) TO '{outside / 'copy.parquet'}' (FORMAT parquet)",
        f"EXPORT DATABASE '{outside / 'export'}'",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        f"SELECT * FROM '{outside / 'secret.csv'}'",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')",
        f"ATTACH '{outside / 'other.duckdb'}' AS other",
        "ATTACH ':memory:' AS scratch",
        "DETACH main",
        "INSTALL spatial",
        "INSTALL httpfs FROM 'http://127.0.0.1:9'",
        "LOAD spatial",
        f"LOAD '{outside / 'x.duckdb_extension'}'",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET allowed_directories = ['/']",
        "PRAGMA enable_profiling",
        f"PRAGMA profiling_output = '{outside / 'profile'}'",
        "PRAGMA force_checkpoint",
        f"CALL enable_logging(storage = 'file', storage_path = '{outside / 'log'}')",
        "CHECKPOINT",
        "VACUUM",
        "SELECT 1; DROP TABLE item_versions",
        "BEGIN",
    ]


def test_every_attack_exits_2_with_one_line_and_changes_nothing(synced: Registry, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # a value no path, message or number in the output can contain by chance (a bare "42"
    # matched pytest's base directory, /tmp/pytest-of-root/pytest-424/, in the error text)
    (outside / "secret.csv").write_text(f"secret\n{SECRET}\n")
    before = digest(synced.cache_path)
    for query in attacks(outside):
        result = run(synced.home, "sql", query)
        assert_one_line_error(result, query)
        assert SECRET not in result.out + result.err and "root:" not in result.out + result.err, query
        assert digest(synced.cache_path) == before, f"{query} changed the cache"
        assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"], f"{query} wrote outside"


def test_a_forged_version_cannot_reach_at(synced: Registry) -> None:
    """The reproduction of defect 7: UPDATE, then `sync` ("up to date") and `at`."""
    result = run(synced.home, "sql", f"UPDATE item_versions SET data_cid = '{cid_for('forged')}'")
    assert_one_line_error(result, "UPDATE")
    assert "read-only" in result.err
    assert run(synced.home, "sync", "latest").out.startswith("latest is up to date")
    result = run(synced.home, "at", "halo/f1", "2024-08-15T00:00:00Z", "--name", "latest")
    assert (result.code, result.out.strip()) == (0, cid_for("a1"))


def test_plain_queries_still_work(synced: Registry) -> None:
    queries: dict[str, list[tuple[object, ...]]] = {
        "SELECT key, data_cid FROM items ORDER BY key": [("halo/f1", cid_for("a2")), ("halo/f2", cid_for("b1"))],
        "SELECT count(*) FROM items_at(TIMESTAMPTZ '2024-08-15')": [(2,)],
        "FROM item_versions SELECT count(*)": [(3,)],
        "SELECT item->>'$.properties.platform' FROM items WHERE key = 'halo/f1'": [("HALO",)],  # the item JSON
        "SELECT current_setting('TimeZone')": [("UTC",)],
        "WITH v AS (SELECT * FROM commits) SELECT count(*) FROM v": [(2,)],
    }
    for query, rows in queries.items():
        assert synced.sql(query)[1] == rows, query
    assert synced.sql("SELECT count(*) FROM items WHERE key = ?", ["halo/f2"])[1] == [(1,)]
    for query in ["DESCRIBE items", "SHOW TABLES", "SUMMARIZE items", "EXPLAIN SELECT * FROM items",
                  "PRAGMA table_info('items')", "SELECT * FROM duckdb_settings()"]:
        columns, rows = synced.sql(query)
        assert columns and rows, query
    result = run(synced.home, "sql", "SELECT key FROM items ORDER BY key", "--format", "csv")
    assert (result.code, result.out.split()) == (0, ["key", "halo/f1", "halo/f2"])


def test_a_server_connection_stays_locked(synced: Registry) -> None:
    """What a server gets from open_for_queries: every connection, also a second one opened
    while the first is open (DuckDB shares the database between them), is locked down; a
    session's connection keeps no temporary object that could shadow a table."""
    with open_for_queries(synced.cache_path) as first, first.session():
        with open_for_queries(synced.cache_path) as second, second.session():
            for cache in (first, second):
                with pytest.raises(QueryError, match="not run"):
                    cache.sql("CREATE TEMP VIEW items AS SELECT 'forged' AS data_cid")
                with pytest.raises(QueryError, match="locked"):
                    cache.sql("PRAGMA enable_profiling")
                with pytest.raises(QueryError, match="disabled by configuration"):
                    cache.sql("SELECT * FROM read_text('/etc/passwd')")
                assert cache.sql("SELECT current_setting('enable_external_access'), "
                                 "current_setting('lock_configuration'), current_setting('TimeZone')")[1] == [
                    (False, True, "UTC")]
        assert [r[0] for r in first.sql("SELECT data_cid FROM items ORDER BY key")[1]] == [cid_for("a2"), cid_for("b1")]


def test_the_api_refuses_writes_too(synced: Registry) -> None:
    before = digest(synced.cache_path)
    with pytest.raises(QueryError, match="read-only"):
        synced.sql("DELETE FROM items")
    with synced.session():
        with pytest.raises(QueryError, match="read-only"):
            synced.sql("UPDATE item_versions SET data_cid = 'x'")
        assert synced.cid_at("halo/f1", "2024-08-15", name="latest") == cid_for("a1")
    assert digest(synced.cache_path) == before
    assert json.loads(run(synced.home, "sql", "SELECT count(*) AS n FROM items", "--json").out) == [{"n": 2}]
