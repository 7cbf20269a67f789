"""``halodb export geoparquet FILE``: one stac-geoparquet file whose items are the cache's items
of a synced name (as of now or ``--at`` an earlier time), written all or nothing, recording the
exported commit in its Parquet metadata.

The home is the one of ``tests/test_export_stac.py`` (generated items in two collections, two
versions, a real DuckDB cache). The file is read back by two independent readers: rustac (the
Rust STAC library) and DuckDB's ``read_parquet``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import rustac

from halodb.api.registry import Registry

from .test_cli_malformed import assert_one_line_error, run
from .test_export_stac import BETWEEN, Synced, reg, synced

__all__ = ["reg", "synced"]  # the shared fixtures


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def essentials(item: dict[str, Any]) -> dict[str, Any]:
    """What must survive the round trip: id, collection, geometry, bbox, times and the other properties."""
    props = dict(item["properties"])
    # stac-geoparquet stores these as timestamps: compared as instants, not as spellings
    times = {k: _time(props.pop(k, None)) for k in ("datetime", "start_datetime", "end_datetime", "created", "updated")}
    return {"id": item["id"], "collection": item.get("collection"), "geometry": item["geometry"],
            "bbox": [float(x) for x in item["bbox"]], "times": times,
            "properties": {k: v for k, v in props.items() if v is not None}, "assets": item["assets"]}


def cache_items(reg: Registry, at: str | None = None) -> dict[str, dict[str, Any]]:
    if at is None:
        _, rows = reg.sql("SELECT item FROM items WHERE name = 'latest'")
    else:
        _, rows = reg.sql("SELECT item FROM items_at(CAST(? AS TIMESTAMPTZ), 'latest')", [at])
    return {(found := essentials(json.loads(item)))["id"]: found for (item,) in rows}


def rustac_items(path: Path) -> dict[str, dict[str, Any]]:
    return {(found := essentials(item))["id"]: found for item in rustac.read_sync(str(path))["features"]}


def duckdb_items(path: Path, *, geometry: bool = True) -> dict[str, dict[str, Any]]:
    """DuckDB's own reading of the columns; the WKB geometry decoded here (no spatial extension
    needed; only points and line strings, or left out with ``geometry=False``)."""
    con = duckdb.connect()
    try:
        rows = con.sql("SELECT * EXCLUDE (geometry), geometry::BLOB AS wkb FROM read_parquet(?)",
                       params=[str(path)]).to_arrow_table().to_pylist()
    finally:
        con.close()
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        wkb = row.pop("wkb")
        bbox = row.pop("bbox")
        props = {k: v for k, v in row.items() if k not in ("type", "stac_version", "stac_extensions", "id", "collection", "links", "assets")}
        item = {"id": row["id"], "collection": row.get("collection"), "geometry": _geojson(wkb) if geometry else None,
                "bbox": [bbox["xmin"], bbox["ymin"], bbox["xmax"], bbox["ymax"]], "properties": props,
                "assets": _strip_nulls(row["assets"])}
        found[item["id"]] = essentials(item)
    return found


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _geojson(wkb: bytes) -> dict[str, Any]:
    """Points and line strings from WKB (little-endian, 2D): all the test items have."""
    import struct

    order = "<" if wkb[0] == 1 else ">"
    kind = struct.unpack_from(f"{order}I", wkb, 1)[0]
    if kind == 1:
        return {"type": "Point", "coordinates": list(struct.unpack_from(f"{order}dd", wkb, 5))}
    assert kind == 2, kind
    count = struct.unpack_from(f"{order}I", wkb, 5)[0]
    return {"type": "LineString",
            "coordinates": [list(struct.unpack_from(f"{order}dd", wkb, 9 + 16 * n)) for n in range(count)]}


def test_the_file_holds_the_cache_items_for_rustac_and_duckdb(synced: Synced, reg: Registry, tmp_path: Path) -> None:
    out = tmp_path / "items.parquet"
    result = run(synced.home, "export", "geoparquet", str(out), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"file": str(out), "name": "latest", "commit": synced.head, "items": 5, "collections": 2}
    cache = cache_items(reg)
    assert len(cache) == 5 and {i["collection"] for i in cache.values()} == {"halo", "radiosondes"}
    assert rustac_items(out) == cache
    assert duckdb_items(out) == cache
    meta = pq.read_schema(out).metadata
    assert meta[b"halodb:name"] == b"latest" and meta[b"halodb:commit"] == synced.head.encode()
    assert b"halodb:commit_time" in meta and b"halodb:as_of" not in meta
    assert b"geo" in meta  # still GeoParquet: rustac's own metadata is kept


def test_at_exports_the_items_of_that_time(synced: Synced, reg: Registry, tmp_path: Path) -> None:
    out = tmp_path / "then.parquet"
    result = run(synced.home, "export", "geoparquet", str(out), "--name", "latest", "--at", BETWEEN)
    assert result.code == 0, result.err
    earlier = cache_items(reg, BETWEEN)
    items = rustac_items(out)
    assert items == earlier == duckdb_items(out)
    assert "RS-2" in items and "RS-9" not in items and items["HAMP/HALO-20240811a"]["properties"]["title"] == "HAMP/HALO-20240811a"
    meta = pq.read_schema(out).metadata
    assert meta[b"halodb:commit"] == synced.first.encode() and meta[b"halodb:as_of"] == BETWEEN.encode()


def test_an_existing_file_is_refused_and_untouched(synced: Synced, tmp_path: Path) -> None:
    out = tmp_path / "items.parquet"
    out.write_bytes(b"mine")
    result = run(synced.home, "export", "geoparquet", str(out))
    assert_one_line_error(result, "export over an existing file")
    assert "exists" in result.err
    assert out.read_bytes() == b"mine" and [p.name for p in tmp_path.iterdir()] == ["items.parquet"]


def test_the_demo_campaign_exports_every_item(tmp_path: Path) -> None:
    """The realistic campaign (five collections; tracks, profiles, time ranges, extensions):
    rustac and DuckDB read back every item the cache holds, with the same ids, times and bboxes."""
    import halodb
    from halodb.demo.run import run_demo

    home = tmp_path / "demo"
    run_demo(home, echo=lambda _: None)
    out = tmp_path / "demo.parquet"
    result = run(home, "export", "geoparquet", str(out))
    assert result.code == 0, result.err
    with halodb.open(home) as opened:
        _, rows = opened.sql("SELECT item FROM items")
    cache = {(found := essentials(json.loads(item)))["id"]: found for (item,) in rows}
    assert len(cache) > 400
    assert rustac_items(out) == cache  # geometry and every property too
    for read in (rustac_items(out), duckdb_items(out, geometry=False)):
        assert {i: (v["times"], v["bbox"], v["collection"]) for i, v in read.items()} == \
               {i: (v["times"], v["bbox"], v["collection"]) for i, v in cache.items()}
