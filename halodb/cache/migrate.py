"""Numbered SQL migrations of the cache schema, each applied in one transaction.

Migrations are files ``NNN_name.sql`` in the top-level ``migrations/`` folder (shipped in
the wheel as ``halodb/_data/migrations``). :func:`migrate` applies the pending ones in
number order; each runs in ONE transaction together with its row in
``schema_migrations``, so a failing migration leaves the database at the previous version
and raises :class:`~halodb.errors.MigrationError` with ``.version``.

>>> import duckdb
>>> con = duckdb.connect()
>>> migrate(con)[-1] == latest_version()
True
>>> migrate(con)  # nothing pending any more
[]
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from halodb.cache._boundary import DUCKDB_MIGRATION
from halodb.cache.connect import rollback_quietly, scalar
from halodb.errors import MigrationError

__all__ = ["Migration", "current_version", "find_migrations_dir", "latest_version", "load_migrations", "migrate", "pending"]

_FILE_RE = re.compile(r"^(\d{3})_([A-Za-z0-9_]+)\.sql$")
_TXN_RE = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|ABORT)(\s+(TRANSACTION|WORK))?\s*;", re.IGNORECASE | re.MULTILINE)

#: Created by the runner (not by a migration) so that the first migration can be recorded.
BOOTSTRAP_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE schema_migrations IS 'Applied schema migrations (files NNN_name.sql in migrations/), one row each, written in the migration''s own transaction.';
COMMENT ON COLUMN schema_migrations.version IS 'Migration number NNN.';
COMMENT ON COLUMN schema_migrations.name IS 'Migration name (the file name without number and .sql).';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When the migration was applied.';
"""


@dataclass(frozen=True)
class Migration:
    """One migration file.

    >>> Migration(1, "initial", "CREATE TABLE t (x INTEGER);").version
    1
    """

    version: int
    name: str
    sql: str


def find_migrations_dir() -> Path:
    """The folder holding the migration files: the wheel's data, else the repository's.

    >>> (find_migrations_dir() / "001_initial.sql").is_file()
    True
    """
    try:
        packaged = importlib.resources.files("halodb").joinpath("_data", "migrations")
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, NotADirectoryError, TypeError):
        pass
    # repository checkout / editable install: <repo>/halodb/cache/migrate.py -> <repo>/migrations
    return Path(__file__).resolve().parents[2] / "migrations"


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """All migrations in ``folder`` (default :func:`find_migrations_dir`), by version.

    Raises :class:`MigrationError` for a ``.sql`` file not named ``NNN_name.sql``, for two
    files with the same number and for a file with its own BEGIN/COMMIT/ROLLBACK.

    >>> [m.name for m in load_migrations()][:1]
    ['initial']
    """
    folder = find_migrations_dir() if folder is None else folder
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} does not exist", version=None, path=folder)
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(f"migration file {path} is not named NNN_name.sql", version=None, path=path)
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations have number {version:03d} in {folder}", version=version, path=path)
        sql = path.read_text(encoding="utf-8")
        if _TXN_RE.search(sql):
            raise MigrationError(
                f"migration {path} controls transactions itself (BEGIN/COMMIT/ROLLBACK); the runner does that",
                version=version,
                path=path,
            )
        found[version] = Migration(version, m.group(2), sql)
    return [found[v] for v in sorted(found)]


def latest_version(migrations: list[Migration] | None = None) -> int:
    """The highest migration number known to this HaloDB (0 if none).

    >>> latest_version() >= 1
    True
    """
    migrations = load_migrations() if migrations is None else migrations
    return max((m.version for m in migrations), default=0)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the database behind ``con`` (0 for a database never migrated).

    >>> current_version(duckdb.connect())
    0
    """
    exists = scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main'"
        " AND database_name = current_database()",
    )
    if not exists:
        return 0
    return int(scalar(con, "SELECT coalesce(max(version), 0) FROM schema_migrations"))


def pending(con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None) -> list[Migration]:
    """The migrations not applied yet to the database behind ``con``.

    Raises :class:`MigrationError` when the database is newer than every known migration.

    >>> len(pending(duckdb.connect())) == len(load_migrations())
    True
    """
    migrations = load_migrations() if migrations is None else migrations
    version = current_version(con)
    latest = latest_version(migrations)
    if version > latest:
        raise MigrationError(
            f"the cache has schema version {version}, newer than this HaloDB knows ({latest}); upgrade HaloDB",
            version=version,
        )
    return [m for m in migrations if m.version > version]


def migrate(con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every pending migration, each in one transaction; return the versions applied.

    >>> con = duckdb.connect()
    >>> migrate(con) == [m.version for m in load_migrations()]
    True
    """
    applied: list[int] = []
    for migration in pending(con, migrations):
        _apply_one(con, migration)
        applied.append(migration.version)
    return applied


def _apply_one(con: duckdb.DuckDBPyConnection, migration: Migration) -> None:
    label = f"{migration.version:03d}_{migration.name}"
    try:
        con.begin()
        con.execute(BOOTSTRAP_SQL)
        con.execute(migration.sql)
        con.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())",
            [migration.version, migration.name],
        )
        con.commit()
    except DUCKDB_MIGRATION.caught as exc:
        rollback_quietly(con)
        raise DUCKDB_MIGRATION.translate(exc, f"migration {label} failed: {exc}", version=migration.version,
                                         name=migration.name) from exc
