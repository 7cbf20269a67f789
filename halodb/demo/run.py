"""``halodb demo``: an ORCESTRA-like campaign, built, published, synced and queried.

Runs on the embedded default only (local block store, local name, DuckDB file): no daemon,
no network.

>>> # run_demo(None, echo=print)   # see `halodb demo`
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import halodb
from halodb.demo.campaign import generate_campaign
from halodb.errors import InputError
from halodb.util.times import format_time
from halodb.util.textout import format_table

NAME = "latest.orcestra-demo.example"


def _print_rows(echo: Callable[[str], Any], columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    for line in format_table(columns, rows):
        echo("    " + line)


def _command() -> str:
    """How to run ``halodb`` from this shell: the bare name when it is on PATH, else the
    script beside this Python (``make demo`` runs it from a virtualenv not activated)."""
    beside = Path(sys.executable).parent / "halodb"
    if shutil.which("halodb") == str(beside) or not beside.exists():
        return "halodb"
    return str(beside)


def run_demo(home: Path | None, echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Build, publish, sync and query the demo campaign in a new or empty ``home`` (default: a
    new temporary folder); returns a summary (used by tests). A ``home`` that holds anything
    is an :class:`InputError`: the demo's 35 versions must not land in a real registry."""
    t0 = time.perf_counter()
    if home is not None and home.exists() and (not home.is_dir() or any(home.iterdir())):
        what = "a folder that is not empty" if home.is_dir() else "not a folder"
        raise InputError(f"halodb demo --home {home}: {what}; the demo builds a registry of its own, so give a new or "
                         "empty folder (or no --home: a temporary one)", source=str(home))
    home = home or Path(tempfile.mkdtemp(prefix="halodb-demo-"))
    echo(f"HaloDB demo in {home}")
    reg = halodb.open(home, create=True)
    try:
        versions = generate_campaign()
        half = len(versions) // 2
        first_sync = None
        for n, v in enumerate(versions, 1):
            if v.upserts:
                reg.add(v.upserts)
            if v.removals:
                reg.remove(v.removals)
            reg.commit(v.message, time=v.time, author=v.author)
            if n == half:
                reg.publish(NAME)
                first_sync = reg.sync(NAME)
        reg.publish(NAME)
        second = reg.sync(NAME)
        t_build = time.perf_counter() - t0
        echo(f"  built {len(versions)} versions from {format_time(versions[0].time)} to {format_time(versions[-1].time)}")
        if first_sync is not None:
            echo(f"  synced {NAME} at version {half}: {first_sync.changes} changes in {first_sync.commits} versions")
        echo(
            f"  name moved; incremental sync: {second.commits} versions, {second.changes} changes, "
            f"{second.blocks_read} blocks read"
        )

        echo("\nHistory (newest 5):")
        for e in reg.log(NAME, limit=5):
            echo(f"    {str(e.cid)[:20]}…  {e.commit.time:%Y-%m-%d}  +{e.added} ~{e.changed} -{e.removed}  {e.commit.message}")

        queries = [
            ("Datasets per collection now",
             "SELECT collection, count(*) AS datasets, min(datetime)::DATE AS first, max(datetime)::DATE AS last "
             "FROM items GROUP BY collection ORDER BY collection"),
            ("HALO flights with dropsondes (AVAPS) in the Barbados phase",
             "SELECT id, datetime::DATE AS day, data_cid FROM items "
             "WHERE list_contains(instruments, 'AVAPS') AND datetime >= TIMESTAMPTZ '2024-09-07' "
             "ORDER BY datetime LIMIT 5"),
            ("How the registry grew (datasets valid every 15 days, via items_at)",
             "SELECT d::DATE AS at, (SELECT count(*) FROM items_at(d)) AS datasets "
             "FROM (SELECT unnest(generate_series(TIMESTAMPTZ '2024-08-15', TIMESTAMPTZ '2024-10-15', INTERVAL 15 DAY)) AS d)"),
            ("Datasets reprocessed most often (versions of their data CID)",
             "SELECT key, count(DISTINCT data_cid) AS data_versions FROM item_versions "
             "GROUP BY key HAVING count(DISTINCT data_cid) > 1 ORDER BY data_versions DESC, key LIMIT 5"),
        ]
        answers: dict[str, Any] = {}
        for title, query in queries:
            echo(f"\n{title}:\n    {query}")
            columns, rows = reg.sql(query)
            _print_rows(echo, columns, rows)
            answers[title] = rows

        echo("\nTime travel: which CID held a reprocessed dataset when?")
        columns, rows = reg.sql(
            "SELECT key, path, valid_from, data_cid FROM item_versions WHERE key = ("
            "SELECT key FROM item_versions GROUP BY key HAVING count(DISTINCT data_cid) > 1 ORDER BY key LIMIT 1) "
            "ORDER BY valid_from"
        )
        if rows:
            key, path = rows[0][0], rows[0][1]
            for _, _, valid_from, cid in rows:
                at = cid_text = reg.cid_at(key, valid_from, name=NAME)
                echo(f"    halodb at {key} {format_time(valid_from)}  ->  {at}")
                assert cid_text == cid
            if path:
                echo(f"    (by path) halodb at {path} {format_time(rows[0][2])}  ->  {reg.cid_at(path, rows[0][2], name=NAME)}")
        total = reg.sql("SELECT count(*) FROM items")[1][0][0]
        distinct = reg.sql("SELECT count(DISTINCT key) FROM item_versions")[1][0][0]
        elapsed = time.perf_counter() - t0
        echo(f"\n{total} datasets now, {distinct} over the whole history; demo took {elapsed:.1f} s "
             f"(build+sync {t_build:.1f} s).")
        cli = _command()
        echo(f"Try:  HALODB_HOME={home} {cli} sql \"SELECT * FROM items LIMIT 5\"")
        echo(f"Serve it as a STAC API with HTML pages (127.0.0.1 only; Ctrl-C stops it):\n"
             f"      HALODB_HOME={home} {cli} serve {NAME}\n"
             f"    then open http://127.0.0.1:8000/ in a browser, or search it:\n"
             f"      python -c \"from pystac_client import Client; "
             f"print(len(list(Client.open('http://127.0.0.1:8000/').search(collections=['halo-flights']).items())))\"")
        return {"home": home, "versions": len(versions), "items": total, "distinct": distinct,
                "seconds": elapsed, "answers": answers}
    finally:
        reg.close()
