"""A real ``halodb serve`` for tests: generated items in a real home, three versions published
to a local name and synced into a real DuckDB cache, served by the CLI in a subprocess on a
free port of 127.0.0.1.

The catalog (:func:`generate_items`) is deterministic: flight tracks (LineStrings), dropsonde
profiles (MultiPoints), radiosondes (Points) and satellite boxes (Polygons) in four
collections, with instants and time ranges, platforms, instruments, keywords, descriptions,
some items without geometry, and two that cross the antimeridian. Version 2 changes some
items and removes others; version 3 adds new ones. :class:`Catalog` keeps the items of each
version, so a test can compute what any search must return.

>>> items = generate_items(40, seed=1)
>>> len(items), sorted({i["collection"] for i in items})
(40, ['dropsondes', 'halo-tracks', 'radiosondes', 'satellite'])
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import halodb
from halodb.testing import servers

from .conftest import cid_for

__all__ = ["Catalog", "ServerProcess", "build_catalog", "generate_items", "start_server"]

NAME = "campaign"
TIMES = ("2024-09-01T00:00:00Z", "2024-09-10T00:00:00Z", "2024-09-20T00:00:00Z")
_PLATFORMS = {"halo-tracks": "HALO", "dropsondes": "HALO", "radiosondes": "BCO", "satellite": "EarthCARE"}
_INSTRUMENTS = {"halo-tracks": ["BAHAMAS", "HAMP", "specMACS"], "dropsondes": ["Vaisala RD41"],
                "radiosondes": ["Vaisala RS41"], "satellite": ["ATLID", "CPR", "MSI"]}
_WORDS = ["deep convection", "trade cumulus", "sea surface", "dust", "cold pool", "ITCZ", "shallow clouds",
          "boundary layer", "moisture", "radiation"]


def _time(base: datetime, hours: float) -> str:
    return (base + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_items(n: int, *, seed: int = 0, prefix: str = "") -> list[dict[str, Any]]:
    """``n`` varied STAC items (see the module's docstring); same ``seed``, same items."""
    rng = random.Random(seed)
    start = datetime(2024, 8, 10, tzinfo=timezone.utc)
    collections = list(_PLATFORMS)
    items = []
    for k in range(n):
        collection = collections[k % len(collections)]
        item_id = f"{prefix}{collection[:4].upper()}-{k:05d}"
        lon, lat = rng.uniform(-60.0, -10.0), rng.uniform(-5.0, 25.0)
        hours = rng.uniform(0, 24 * 40)
        if collection == "halo-tracks":
            points = [[round(lon + i * rng.uniform(-1, 1), 4), round(lat + i * rng.uniform(-1, 1), 4)] for i in range(6)]
            geometry: dict[str, Any] | None = {"type": "LineString", "coordinates": points}
        elif collection == "dropsondes":
            points = [[round(lon + rng.uniform(-2, 2), 4), round(lat + rng.uniform(-2, 2), 4)] for _ in range(4)]
            geometry = {"type": "MultiPoint", "coordinates": points}
        elif collection == "radiosondes":
            geometry = {"type": "Point", "coordinates": [round(lon, 4), round(lat, 4)]}
        else:
            w, s = round(lon, 3), round(lat, 3)
            geometry = {"type": "Polygon", "coordinates": [[[w, s], [w + 3, s], [w + 3, s + 2], [w, s + 2], [w, s]]]}
        if k % 97 == 5:
            geometry = None
        props: dict[str, Any] = {
            "title": f"{collection} {k}: {rng.choice(_WORDS)}",
            "description": f"Observations of {rng.choice(_WORDS)} near {lat:.1f}N {-lon:.1f}W.",
            "platform": _PLATFORMS[collection],
            "instruments": rng.sample(_INSTRUMENTS[collection], k=min(2, len(_INSTRUMENTS[collection]))),
            "keywords": ["ORCESTRA", rng.choice(_WORDS)],
        }
        base = start + timedelta(hours=hours)
        if k % 3 == 0:
            props.update({"datetime": None, "start_datetime": _time(base, 0), "end_datetime": _time(base, rng.uniform(1, 9))})
        else:
            props["datetime"] = _time(base, 0)
        item: dict[str, Any] = {
            "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
            "geometry": geometry, "properties": props, "links": [],
            "assets": {"data": {"href": f"ipfs://{cid_for(f'{prefix}data-{k}')}", "type": "application/vnd.zarr",
                                "roles": ["data"]}},
        }
        if geometry is not None:
            import shapely.geometry
            item["bbox"] = list(shapely.geometry.shape(geometry).bounds)
        items.append(item)
    if n > 20:  # two boxes across the antimeridian (bbox west > east)
        for item, (west, east) in zip(items[3:5], ((170.0, -170.0), (175.0, -175.0)), strict=True):
            item["geometry"] = {"type": "MultiPolygon", "coordinates": [
                [[[west, 0.0], [180.0, 0.0], [180.0, 5.0], [west, 5.0], [west, 0.0]]],
                [[[-180.0, 0.0], [east, 0.0], [east, 5.0], [-180.0, 5.0], [-180.0, 0.0]]]]}
            item["bbox"] = [west, 0.0, east, 5.0]
    return items


@dataclass
class Catalog:
    """A home with three synced versions of :data:`NAME`; ``versions[i]`` = (commit CID, time,
    the items valid in it by key)."""

    home: Path
    name: str
    versions: list[tuple[str, str, dict[str, dict[str, Any]]]] = field(default_factory=list)


def build_catalog(home: Path, n: int, *, seed: int = 0) -> Catalog:
    """Three versions: ``n`` items; then a tenth changed and a tenth removed; then ``n // 10`` added."""
    from halodb.stac.items import dataset_key as item_key

    reg = halodb.open(home, create=True)
    catalog = Catalog(home, NAME)
    try:
        items = generate_items(n, seed=seed)
        state = {item_key(i): i for i in items}
        reg.add(items)
        catalog.versions.append((str(reg.commit("first", time=TIMES[0], author="tester")), TIMES[0], dict(state)))
        changed = [dict(i, properties={**i["properties"], "title": i["properties"]["title"] + " (revised)"})
                   for i in items[1::10]]
        removed = [item_key(i) for i in items[2::10]]
        reg.add(changed)
        reg.remove(removed)
        state.update({item_key(i): i for i in changed})
        for key in removed:
            state.pop(key)
        catalog.versions.append((str(reg.commit("second", time=TIMES[1], author="tester")), TIMES[1], dict(state)))
        added = generate_items(max(n // 10, 1), seed=seed + 1, prefix="NEW-")
        reg.add(added)
        state.update({item_key(i): i for i in added})
        catalog.versions.append((str(reg.commit("third", time=TIMES[2], author="tester")), TIMES[2], dict(state)))
        reg.publish(NAME)
        reg.sync(NAME)
    finally:
        reg.close()
    return catalog


class ServerProcess(servers.ServerProcess):
    """``halodb --home HOME serve ARGS --port 0`` in a subprocess; :attr:`url` once it answers."""

    def __init__(self, home: Path, *args: str, timeout: float = 120.0) -> None:
        super().__init__("halodb serve", [sys.executable, "-m", "halodb", "--home", str(home), "serve", *args, "--port", "0"],
                         timeout=timeout, env={"HALODB_AUTHOR": "tester"})


def start_server(home: Path, *args: str) -> Iterator[ServerProcess]:
    """A pytest fixture body: the server for ``home`` while the fixture lives."""
    server = ServerProcess(home, *args)
    try:
        yield server
    finally:
        server.stop()
