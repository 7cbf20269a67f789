"""Throughput of the DuckDB cache's sync apply (items/s); prints, asserts nothing.

Run: ``python benchmarks/bench_cache_apply.py [--items 100000] [--keep DIR]``.

Measures, on a fresh cache file:
  * ``apply (cold)``: ``Cache.apply`` of one commit adding N items, including opening the
    file, the transaction and the checkpoint when the connection closes;
  * ``apply (incremental)``: a second commit changing 10% and removing 1% of the items;
  * the split of the cold apply into plan flattening, item encoding/extraction and DuckDB;
  * the alternative we did not pick: extracting the STAC fields in SQL with DuckDB's JSON
    functions instead of in Python.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402

from halodb.cache import Cache, ChangeRecord, CommitRecord, ItemRecord, SyncPlan  # noqa: E402
from halodb.cache.arrow_columns import strings  # noqa: E402
from halodb.cache.materialize import ITEM_BATCH, plan_columns  # noqa: E402
from halodb.cache.stac_columns import ItemColumns, encode_item, item_columns, items_table  # noqa: E402

T0 = datetime(2024, 9, 1, tzinfo=timezone.utc)
PLATFORMS = ["HALO", "ATR", "METEOR", "BCO"]


def fake_cid(text: str) -> str:
    return "bafyrei" + hashlib.sha256(text.encode()).hexdigest()[:52]


def make_item(i: int, rev: int = 0) -> dict[str, Any]:
    """A STAC item shaped like what `halodb scan` makes of a CF/ACDD Zarr dataset (~1 KB)."""
    start = T0 + timedelta(hours=i % 1000)
    lon, lat = -60 + (i % 100) * 0.1, 10 + (i % 37) * 0.1
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": f"HALO-{i:06d}",
        "collection": PLATFORMS[i % 4],
        "bbox": [lon, lat, lon + 1.5, lat + 1.0],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[lon, lat], [lon + 1.5, lat], [lon + 1.5, lat + 1], [lon, lat + 1], [lon, lat]]],
        },
        "properties": {
            "title": f"HALO flight {i} dropsondes, revision {rev}",
            "description": "Dropsonde profiles of temperature, humidity and wind measured during ORCESTRA.",
            "datetime": None,
            "start_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_datetime": (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": PLATFORMS[i % 4],
            "instruments": ["dropsonde", "radar", "lidar"][: 1 + i % 3],
            "keywords": ["ORCESTRA", "PERCUSION", "dropsondes", "tropics"],
            "license": "CC-BY-4.0",
            "processing:level": "L2",
        },
        "links": [{"rel": "license", "href": "https://creativecommons.org/licenses/by/4.0/"}],
        "assets": {
            "data": {
                "href": f"ipfs://{fake_cid(f'data-{i}-{rev}')}",
                "type": "application/vnd+zarr",
                "roles": ["data"],
            }
        },
    }


#: the STAC items of the records made so far, by item CID (what a block store would hold)
ITEMS: dict[str, dict[str, Any]] = {}


def record(i: int, rev: int = 0) -> ItemRecord:
    r = ItemRecord(
        key=f"ds/{i:07d}",
        item_cid=fake_cid(f"item-{i}-{rev}"),
        data_cid=fake_cid(f"data-{i}-{rev}"),
        path=f"products/{PLATFORMS[i % 4]}/{i:07d}.zarr",
    )
    ITEMS[r.item_cid] = make_item(i, rev)
    return r


def load_item_columns(cids: list[str]) -> ItemColumns:
    """The plans' item source: the items made by :func:`record`, as the sync reads them from blocks."""
    return item_columns(cids, [ITEMS[c] for c in cids])


def commit(n: int, changes: list[ChangeRecord], parents: list[str]) -> CommitRecord:
    return CommitRecord(fake_cid(f"commit-{n}"), parents, fake_cid(f"index-{n}"), T0 + timedelta(days=n), "bench", f"commit {n}", changes)


def sql_extraction(records: list[ItemRecord], db: Path) -> float:
    """Seconds for the alternative: JSON text in, every field extracted by DuckDB's JSON functions."""
    with Cache(db):
        pass
    t = time.perf_counter()
    texts = [encode_item(ITEMS[r.item_cid]) for r in records]
    table = pa.table({"item_cid": strings([r.item_cid for r in records]), "j": strings(texts)})  # no pa.array: pandas
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    con.begin()
    con.register("t", table)
    con.execute(
        """INSERT INTO stac_items
        SELECT item_cid, e[1], e[2], TRY_CAST(e[3] AS TIMESTAMPTZ), TRY_CAST(e[4] AS TIMESTAMPTZ),
               TRY_CAST(e[5] AS TIMESTAMPTZ), TRY_CAST(json_extract(j, '$.bbox') AS DOUBLE[]), e[6],
               TRY_CAST(json_extract(j, '$.properties.instruments') AS VARCHAR[]), e[7],
               TRY_CAST(json_extract(j, '$.properties.keywords') AS VARCHAR[]), j
        FROM (SELECT item_cid, j, json_extract_string(j, ['$.id', '$.collection', '$.properties.datetime',
              '$.properties.start_datetime', '$.properties.end_datetime', '$.properties.platform',
              '$.properties.title']) AS e FROM t)"""
    )
    con.commit()
    con.close()
    return time.perf_counter() - t


def python_extraction(records: list[ItemRecord], db: Path) -> float:
    """Seconds for what the cache does: fields extracted in Python, timestamps cast in SQL."""
    with Cache(db):
        pass
    t = time.perf_counter()
    table = items_table([r.item_cid for r in records], [ITEMS[r.item_cid] for r in records])
    con = duckdb.connect(str(db))
    con.execute("SET TimeZone = 'UTC'")
    con.begin()
    con.register("t", table)
    con.execute(
        """INSERT INTO stac_items SELECT item_cid, id, collection, TRY_CAST(datetime_text AS TIMESTAMPTZ),
        TRY_CAST(start_datetime_text AS TIMESTAMPTZ), TRY_CAST(end_datetime_text AS TIMESTAMPTZ),
        bbox, platform, instruments, title, keywords, item FROM t"""
    )
    con.commit()
    con.close()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="cold applies to run (each on a fresh file)")
    parser.add_argument("--keep", type=Path, help="keep the cache files in this folder")
    args = parser.parse_args()
    n = args.items
    work = args.keep or Path(tempfile.mkdtemp(prefix="halodb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {n:,} items")  # fmt: skip

    records = [record(i) for i in range(n)]
    item_bytes = sum(len(encode_item(ITEMS[r.item_cid])) for r in records[:1000]) / 1000
    print(f"item JSON ~{item_bytes:.0f} bytes")
    first = commit(0, [ChangeRecord(r.key, r) for r in records], [])
    plan = SyncPlan("bench", first.cid, False, [first], load_item_columns=load_item_columns)

    # the Python-only parts, measured alone (same code as inside apply)
    t = time.perf_counter()
    cols = plan_columns(plan)
    t_plan = time.perf_counter() - t
    cids = list(cols.items)
    items = [ITEMS[c] for c in cids]
    t = time.perf_counter()
    for item in items:
        encode_item(item)
    t_json = time.perf_counter() - t
    t = time.perf_counter()
    for lo in range(0, len(cids), ITEM_BATCH):  # in batches, as apply does
        items_table(cids[lo : lo + ITEM_BATCH], items[lo : lo + ITEM_BATCH])
    t_items = time.perf_counter() - t

    colds: list[float] = []
    for run in range(args.runs):
        db = work / f"bench{run}.duckdb"
        cache = Cache(db)
        t = time.perf_counter()
        cache.apply(plan)
        colds.append(time.perf_counter() - t)
        cache.close()
    best, median = min(colds), statistics.median(colds)
    print(f"apply, cold (1 commit adding {n:,} items; includes opening the file, commit, checkpoint):")
    print(f"  best {best:.2f} s = {n / best:,.0f} items/s; median {median:.2f} s = {n / median:,.0f} items/s"
          f" ({', '.join(f'{c:.2f}' for c in colds)} s)")  # fmt: skip
    print(f"  Python alone: plan flattening {t_plan:.2f} s + JSON encoding {t_json:.2f} s"
          f" + field extraction {max(0.0, t_items - t_json):.2f} s = {t_plan + t_items:.2f} s")  # fmt: skip
    print(f"  => DuckDB work not hidden behind Python (runs on its own thread): ~{max(0.0, median - t_plan - t_items):.2f} s")

    db = work / "bench0.duckdb"
    cache = Cache(db)
    changed = [ChangeRecord(f"ds/{i:07d}", record(i, rev=1)) for i in range(0, n, 10)]
    removed = [ChangeRecord(f"ds/{i:07d}", None) for i in range(5, n, 100)]
    second = commit(1, changed + removed, [first.cid])
    t = time.perf_counter()
    cache.apply(SyncPlan("bench", second.cid, False, [second], load_item_columns=load_item_columns))
    t_inc = time.perf_counter() - t
    k = len(second.changes)
    print(f"apply, incremental ({len(changed):,} changed + {len(removed):,} removed of {n:,}): "
          f"{t_inc:.2f} s = {k / t_inc:,.0f} changes/s")  # fmt: skip
    print(f"  {cache.sync_state('bench')}")
    print(f"  file size: {db.stat().st_size / 1e6:.1f} MB")
    cache.close()

    t_py = python_extraction(records, work / "py.duckdb")
    t_sql = sql_extraction(records, work / "sql.duckdb")
    print("stac_items alone, serial, one statement (encode + extract + insert + commit):")
    print(f"  fields extracted in Python (used): {t_py:.2f} s = {n / t_py:,.0f} items/s")
    print(f"  fields extracted in SQL (json_extract): {t_sql:.2f} s = {n / t_sql:,.0f} items/s")
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
