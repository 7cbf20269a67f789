"""Synthetic, ORCESTRA-like campaign data for ``halodb demo``, tests and benchmarks.

:func:`generate_campaign` replays a fictional but realistic publication history of the
ORCESTRA 2024 field campaign (HALO flights from Sal, Cape Verde, then Barbados; dropsondes;
radiosondes from RV METEOR, the Barbados Cloud Observatory and Sal; ship data of cruise
M203) as versions published from 10 August to 15 October 2024: datasets are added after
each flight or day, quicklooks are withdrawn when final data arrive, datasets are
reprocessed (new data CID) and metadata is corrected. Paths follow the real campaign tree
(``products/HALO/...``, ``products/METEOR/...``, ``products/Radiosondes/...``); CIDs are
real CIDv1 strings of made-up bytes, so nothing here points at real data.

:func:`generate_items` and :func:`mutate_items` make many plain items fast for benchmarks.

Everything is deterministic given the seed (``random.Random(seed)``, no wall clock).

>>> versions = generate_campaign()
>>> len(versions) >= 20, versions[0].time.date().isoformat(), versions[-1].time.date().isoformat()
(True, '2024-08-10', '2024-10-15')
>>> len(generate_items(3, seed=1)), len({i["id"] for i in generate_items(100, seed=1)})
(3, 100)
"""

from __future__ import annotations

import gc
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from halodb.errors import InputError
from halodb.ipld import CID, RAW
from halodb.stac import STAC_VERSION, ZARR_MEDIA_TYPE, format_datetime

__all__ = ["COLLECTIONS", "DemoVersion", "generate_campaign", "generate_items", "mutate_items"]

COLLECTIONS = ("halo-flights", "halo-remote-sensing", "dropsondes", "radiosondes", "meteor-ship")

UTC = timezone.utc
FIRST_VERSION = datetime(2024, 8, 10, tzinfo=UTC)
LAST_VERSION = datetime(2024, 10, 15, tzinfo=UTC)
VERSION_EXTENSION = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
LICENSE_LINK = {
    "rel": "license",
    "href": "https://creativecommons.org/licenses/by/4.0/",
    "type": "text/html",
    "title": "CC-BY-4.0",
}

# HALO research flights of ORCESTRA's tropical Atlantic phase (ids from the real tree).
FLIGHTS = (
    "HALO-20240809b", "HALO-20240811a", "HALO-20240813a", "HALO-20240816a", "HALO-20240818a",
    "HALO-20240821a", "HALO-20240822a", "HALO-20240825a", "HALO-20240827a", "HALO-20240829a",
    "HALO-20240831a", "HALO-20240903a", "HALO-20240906a", "HALO-20240907a", "HALO-20240909a",
    "HALO-20240912a", "HALO-20240914a", "HALO-20240916a", "HALO-20240919a", "HALO-20240921a",
    "HALO-20240923a", "HALO-20240924a", "HALO-20240926a", "HALO-20240928a", "HALO-20240929a",
)
TRANSFER_FLIGHT = "HALO-20240907a"  # Sal -> Barbados
SAL = (-22.9448, 16.7337)  # (lon, lat): Amilcar Cabral airport, Sal
BARBADOS = (-59.4925, 13.0746)  # Grantley Adams airport
BCO = (-59.4288, 13.1627)  # Barbados Cloud Observatory, Deebles Point
MINDELO = (-24.9881, 16.8866)
BRIDGETOWN = (-59.6153, 13.0950)
CRUISE_START = datetime(2024, 8, 16, 9, 0, tzinfo=UTC)
CRUISE_END = datetime(2024, 9, 23, 12, 0, tzinfo=UTC)
# RV METEOR cruise M203: (time, lon, lat) waypoints
SHIP_WAYPOINTS = (
    (CRUISE_START, *MINDELO),
    (datetime(2024, 8, 19, tzinfo=UTC), -23.0, 12.0),
    (datetime(2024, 8, 27, tzinfo=UTC), -26.5, 9.5),
    (datetime(2024, 9, 5, tzinfo=UTC), -34.0, 10.5),
    (datetime(2024, 9, 12, tzinfo=UTC), -42.0, 11.5),
    (datetime(2024, 9, 18, tzinfo=UTC), -51.0, 13.0),
    (CRUISE_END, *BRIDGETOWN),
)
REMOTE_SENSING = (
    # (product, path template, instrument, title, description)
    ("HAMP", "products/HALO/HAMP/Level_2/{flight}.zarr", "HAMP",
     "HAMP cloud radar and microwave radiometer",
     "Radar reflectivity and brightness temperatures of the HALO Microwave Package along the flight track."),
    ("specMACS", "products/HALO/specMACS/{flight}.zarr", "specMACS",
     "specMACS cloud imagery",
     "Hyperspectral and polarimetric cloud imagery from the specMACS camera system."),
    ("WALES", "products/HALO/WALES/{flight}.zarr", "WALES",
     "WALES water vapour and aerosol lidar",
     "Water vapour mixing ratio and aerosol backscatter profiles from the WALES differential absorption lidar."),
    ("BACARDI", "products/HALO/BACARDI/{flight}.zarr", "BACARDI",
     "BACARDI broadband irradiances",
     "Up- and downward solar and terrestrial broadband irradiances measured by BACARDI."),
)
SHIP_PRODUCTS = (
    # (id, path, instrument, title)
    ("CTD", "products/METEOR/CTD.zarr", "CTD", "CTD ocean profiles"),
    ("cloudnet", "products/METEOR/cloudnet.zarr", "Cloudnet", "Cloudnet target classification"),
    ("ceilometer/CHM170158", "products/METEOR/ceilometer/CHM170158.zarr", "CHM15k", "Ceilometer backscatter"),
    ("HATPRO/hatpro_single", "products/METEOR/HATPRO/hatpro_single.zarr", "HATPRO", "HATPRO microwave radiometer"),
    ("ISAR_SST", "products/METEOR/ISAR_SST.zarr", "ISAR", "ISAR skin sea surface temperature"),
    ("GNSS_IWV", "products/METEOR/GNSS_IWV.zarr", "GNSS", "GNSS integrated water vapour"),
    ("LICHT-LIDAR_b", "products/METEOR/LICHT-LIDAR_b.zarr", "LICHT", "LICHT Raman lidar backscatter"),
    ("WindCube", "products/METEOR/WindCube/WLS200s-180-dbs-1397-25m.zarr", "WindCube", "Doppler wind lidar"),
    ("SEA-POL/rainrate", "products/METEOR/SEA-POL/PICCOLO_level4_rainrate_2D.zarr", "SEA-POL",
     "SEA-POL radar rain rate"),
    ("thermosalinograph", "products/METEOR/thermosalinograph/met_203_1_tsal.zarr", "Thermosalinograph",
     "Thermosalinograph surface salinity and temperature"),
    ("SeaSnake", "products/METEOR/SeaSnake/met_203_1_SeaSnake.zarr", "SeaSnake", "SeaSnake near-surface temperature"),
    ("disdrometer", "products/METEOR/disdrometer/DSD_METEOR_merged.zarr", "Parsivel", "Disdrometer drop size distribution"),
    ("ADCP", "products/METEOR/ADCP/met_203_vmadcp_75khz.zarr", "ADCP", "Vessel-mounted ADCP ocean currents"),
    ("mrr_rainflag", "products/METEOR/mrr_rainflag.zarr", "MRR", "Micro rain radar rain flag"),
)
AUTHORS = {
    "halo-flights": "HALO data team <halo-data@orcestra.example>",
    "halo-remote-sensing": "HALO data team <halo-data@orcestra.example>",
    "dropsondes": "Dropsonde team <dropsondes@orcestra.example>",
    "radiosondes": "RAPSODI radiosonde team <rapsodi@orcestra.example>",
    "meteor-ship": "METEOR data team <meteor-data@orcestra.example>",
}


@dataclass(frozen=True)
class DemoVersion:
    """One published version: who, when, why, and the STAC items it adds/changes/removes.

    ``upserts`` are complete STAC items (new or changed); ``removals`` are dataset keys
    ``collection/id`` of datasets that exist before this version.
    """

    time: datetime
    author: str
    message: str
    upserts: list[dict[str, Any]] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)


# --- small helpers -----------------------------------------------------------------------------
def demo_cid(text: str) -> str:
    """A real CIDv1 (raw, sha2-256) of made-up bytes.

    >>> demo_cid("x")[:6]
    'bafkre'
    """
    return str(CID.for_bytes(text.encode(), codec=RAW))


def _ts(t: datetime) -> str:
    return format_datetime(t.replace(microsecond=0))


def _flight_day(flight: str) -> datetime:
    d = flight.split("-")[1][:8]
    return datetime(int(d[:4]), int(d[4:6]), int(d[6:8]), tzinfo=UTC)


def _bbox(coords: list[list[float]]) -> list[float]:
    lons = [c[0] for c in coords]
    lats = [c[1] for c in coords]
    return [min(lons), min(lats), max(lons), max(lats)]


def _pt(lon: float, lat: float) -> list[float]:
    return [round(lon, 4), round(lat, 4)]


def _ship_position(t: datetime) -> tuple[float, float]:
    """RV METEOR's (lon, lat) at time ``t`` (interpolated between cruise waypoints)."""
    if t <= SHIP_WAYPOINTS[0][0]:
        return SHIP_WAYPOINTS[0][1], SHIP_WAYPOINTS[0][2]
    for (t0, x0, y0), (t1, x1, y1) in zip(SHIP_WAYPOINTS, SHIP_WAYPOINTS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            wiggle = 0.08 * math.sin((t - CRUISE_START).total_seconds() / 21600.0)
            return x0 + f * (x1 - x0) + wiggle, y0 + f * (y1 - y0) + wiggle / 2
    return SHIP_WAYPOINTS[-1][1], SHIP_WAYPOINTS[-1][2]


# --- the campaign as datasets and events ------------------------------------------------------
@dataclass
class _Dataset:
    collection: str
    item_id: str
    path: str
    base: dict[str, Any]  # properties, geometry, bbox (everything but assets/created/updated)

    @property
    def key(self) -> str:
        return f"{self.collection}/{self.item_id}"


@dataclass(order=True)
class _Event:
    ready: datetime
    seq: int
    kind: str = field(compare=False)  # add | reprocess | meta | remove
    key: str = field(compare=False)
    reason: str = field(compare=False, default="")
    change: Callable[[dict[str, Any], random.Random], None] | None = field(compare=False, default=None)


class _Campaign:
    """Builds the datasets and the timeline of events that publish and change them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.datasets: dict[str, _Dataset] = {}
        self.events: list[_Event] = []

    # -- bookkeeping ------------------------------------------------------------------------
    def dataset(
        self,
        collection: str,
        item_id: str,
        path: str,
        geometry: dict[str, Any],
        bbox: list[float],
        props: dict[str, Any],
    ) -> _Dataset:
        ds = _Dataset(collection, item_id, path, {"geometry": geometry, "bbox": bbox, "properties": props})
        self.datasets[ds.key] = ds
        return ds

    def event(
        self,
        ready: datetime,
        kind: str,
        key: str,
        reason: str = "",
        change: Callable[[dict[str, Any], random.Random], None] | None = None,
    ) -> None:
        self.events.append(_Event(ready, len(self.events), kind, key, reason, change))

    def hours(self, lo: float, hi: float) -> timedelta:
        return timedelta(hours=self.rng.uniform(lo, hi))

    @staticmethod
    def props(
        title: str,
        description: str,
        platform: str,
        instruments: list[str],
        keywords: list[str],
        path: str,
        start: datetime,
        end: datetime | None = None,
        *,
        version: str = "v1.0",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        p: dict[str, Any] = {"title": title, "description": description, "datetime": _ts(start)}
        if end is not None:
            p["start_datetime"] = _ts(start)
            p["end_datetime"] = _ts(end)
        p.update(
            {
                "platform": platform,
                "instruments": instruments,
                "mission": "ORCESTRA",
                "keywords": ["ORCESTRA", *keywords],
                "license": "CC-BY-4.0",
                "halodb:path": path,
                "version": version,
            }
        )
        p.update(extra or {})
        return p

    # -- HALO ---------------------------------------------------------------------------------
    def flight_track(self, flight: str) -> tuple[datetime, datetime, list[list[float]], list[tuple[float, float]]]:
        """(takeoff, landing, track coordinates, circle points for dropsondes)."""
        rng = self.rng
        day = _flight_day(flight)
        barbados = day > _flight_day(TRANSFER_FLIGHT)
        base = BARBADOS if barbados else SAL
        if flight == "HALO-20240929a":  # the night flight
            takeoff = day + timedelta(hours=21, minutes=rng.randint(0, 50))
        else:
            takeoff = day + timedelta(hours=rng.uniform(10.0, 13.5) if barbados else rng.uniform(9.0, 11.5))
        landing = takeoff + timedelta(hours=rng.uniform(7.5, 9.5))
        if flight == TRANSFER_FLIGHT:
            centre = (-40.0 + rng.uniform(-2, 2), 13.0 + rng.uniform(-1, 1))
            end = BARBADOS
        elif barbados:
            centre = (rng.uniform(-57.0, -49.0), rng.uniform(11.0, 15.0))
            end = base
        else:
            centre = (rng.uniform(-30.0, -21.5), rng.uniform(10.0, 15.0))
            end = base
        coords = [_pt(*base)]
        for f in (0.25, 0.5, 0.75):
            coords.append(_pt(base[0] + f * (centre[0] - base[0]), base[1] + f * (centre[1] - base[1])))
        radius = 1.0
        circle: list[tuple[float, float]] = []
        for loop in range(2):
            for k in range(16):
                a = 2 * math.pi * k / 16 + loop * 0.1
                circle.append((centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)))
        coords.extend(_pt(*p) for p in circle)
        for f in (0.25, 0.5, 0.75):
            coords.append(_pt(centre[0] + f * (end[0] - centre[0]), centre[1] + f * (end[1] - centre[1])))
        coords.append(_pt(*end))
        return takeoff, landing, coords, circle[:16]

    def halo(self) -> None:
        rng = self.rng
        for flight in FLIGHTS:
            takeoff, landing, coords, circle = self.flight_track(flight)
            region = "Barbados" if _flight_day(flight) > _flight_day(TRANSFER_FLIGHT) else "Sal"
            if flight == TRANSFER_FLIGHT:
                region = "Sal to Barbados (transfer)"
            track = {"type": "LineString", "coordinates": coords}
            bbox = _bbox(coords)
            common = {"orcestra:flight_id": flight, "orcestra:base": region}

            # BAHAMAS quicklook: next morning; withdrawn once the final data are out
            ql = self.dataset(
                "halo-flights", f"{flight}_QL", f"products/HALO/BAHAMAS_QL/{flight}.zarr", track, bbox,
                self.props(f"HALO {flight} position and state (quicklook)",
                           f"Preliminary BAHAMAS aircraft state of research flight {flight} from {region}; "
                           "superseded by the final product.",
                           "HALO", ["BAHAMAS"], ["HALO", "aircraft", "quicklook"],
                           f"products/HALO/BAHAMAS_QL/{flight}.zarr", takeoff, landing,
                           version="v0.1", extra=common),
            )
            self.event(landing + self.hours(3, 14), "add", ql.key, "BAHAMAS quicklook")
            final_ready = landing + timedelta(days=rng.uniform(3, 9))
            fin = self.dataset(
                "halo-flights", flight, f"products/HALO/BAHAMAS/{flight}.zarr", track, bbox,
                self.props(f"HALO {flight} position and state",
                           f"BAHAMAS aircraft position, attitude and meteorological state of research flight "
                           f"{flight} from {region}.",
                           "HALO", ["BAHAMAS"], ["HALO", "aircraft", "flight track"],
                           f"products/HALO/BAHAMAS/{flight}.zarr", takeoff, landing,
                           extra=common),
            )
            self.event(final_ready, "add", fin.key, "BAHAMAS")
            self.event(final_ready + self.hours(6, 72), "remove", ql.key, "quicklook superseded by final BAHAMAS")

            # remote sensing, a few days after the flight
            for product, path_t, instrument, title, desc in REMOTE_SENSING:
                if flight == TRANSFER_FLIGHT and product == "specMACS":
                    continue
                path = path_t.format(flight=flight)
                rs = self.dataset(
                    "halo-remote-sensing", f"{product}/{flight}", path,
                    {"type": "LineString", "coordinates": coords[::2] + [coords[-1]]}, bbox,
                    self.props(f"{title}, {flight}", desc, "HALO", [instrument],
                               ["HALO", "remote sensing", instrument], path, takeoff, landing,
                               extra=common),
                )
                self.event(landing + timedelta(days=rng.uniform(2, 8)), "add", rs.key, instrument)

            # dropsondes: Level_2 per sonde, Level_3 per flight
            sondes = sorted(rng.sample(range(len(circle)), rng.randint(4, 7)))
            positions = []
            for n, k in enumerate(sondes, 1):
                lon, lat = circle[k]
                launch = takeoff + timedelta(hours=2.5 + k * 0.08, seconds=rng.randint(0, 59))
                positions.append(_pt(lon, lat))
                sid = f"{flight}_s{n:02d}"
                path = f"products/HALO/dropsondes/Level_2/{flight}/{sid}.zarr"
                sonde = self.dataset(
                    "dropsondes", sid, path, {"type": "Point", "coordinates": _pt(lon, lat)},
                    [round(lon, 4), round(lat, 4), round(lon, 4), round(lat, 4)],
                    self.props(f"Dropsonde {sid}", f"AVAPS dropsonde profile {n} of flight {flight}, "
                               "pressure, temperature, humidity and wind from 10 km to the surface.",
                               "HALO", ["AVAPS"], ["dropsondes", "profiles", "Level 2"], path, launch,
                               extra=common),
                )
                ready = landing + timedelta(days=rng.uniform(1, 3))
                self.event(ready, "add", sonde.key, "AVAPS Level 2")
                if rng.random() < 0.06:
                    self.event(ready + timedelta(days=rng.uniform(3, 10)), "remove", sonde.key,
                               "failed sonde (no fall-speed data)")
            path = f"products/HALO/dropsondes/Level_3/{flight}.zarr"
            l3 = self.dataset(
                "dropsondes", f"{flight}_L3", path, {"type": "MultiPoint", "coordinates": positions},
                _bbox(positions),
                self.props(f"Dropsondes of {flight}, gridded", f"AVAPS dropsonde profiles of flight {flight} "
                           "on a common 10 m altitude grid (Level 3).", "HALO", ["AVAPS"],
                           ["dropsondes", "profiles", "Level 3"], path, takeoff, landing,
                           extra=common),
            )
            self.event(landing + timedelta(days=rng.uniform(4, 8)), "add", l3.key, "AVAPS Level 3")

    # -- radiosondes ------------------------------------------------------------------------------
    def radiosondes(self) -> None:
        rng = self.rng
        stations = (
            ("METEOR", "RV METEOR", CRUISE_START, CRUISE_END, (2, 14)),
            ("BCO", "BCO", datetime(2024, 8, 10, tzinfo=UTC), datetime(2024, 9, 30, tzinfo=UTC), (11,)),
            ("SAL", "INMG Sal", datetime(2024, 8, 10, tzinfo=UTC), datetime(2024, 9, 10, tzinfo=UTC), (11,)),
        )
        for code, platform, first, last, hours in stations:
            day = first.replace(hour=0, minute=0)
            while day <= last:
                for hour in hours:
                    launch = day + timedelta(hours=hour, minutes=rng.randint(-40, 50), seconds=rng.randint(0, 59))
                    if not first <= launch <= last:
                        continue
                    if code == "METEOR":
                        lon, lat = _ship_position(launch)
                    else:
                        lon, lat = BCO if code == "BCO" else SAL
                    sid = f"{code}-{launch:%Y%m%dT%H%M}"
                    path = f"products/Radiosondes/Level_2/{code}/{sid}.zarr"
                    rs = self.dataset(
                        "radiosondes", sid, path, {"type": "Point", "coordinates": _pt(lon, lat)},
                        [round(lon, 4), round(lat, 4), round(lon, 4), round(lat, 4)],
                        self.props(f"Radiosonde {sid}", f"Vaisala RS41 ascent launched from {platform}, "
                                   "profiles of pressure, temperature, humidity and wind.", platform,
                                   ["Vaisala RS41"], ["radiosondes", "profiles", "Level 2"], path, launch,
                                   extra={"orcestra:station": code}),
                    )
                    delay = (6, 40) if code == "METEOR" else (2, 20)
                    self.event(launch + self.hours(*delay), "add", rs.key, "radiosondes")
                    if code == "METEOR" and launch < datetime(2024, 9, 20, tzinfo=UTC):
                        self.event(datetime(2024, 9, 27, 8, tzinfo=UTC), "reprocess", rs.key,
                                   "RS41 Level 2 v2 with corrected solar radiation bias",
                                   _set_version("v2.0"))
                    if code == "BCO" and launch < datetime(2024, 9, 10, tzinfo=UTC):
                        self.event(datetime(2024, 9, 12, 15, tzinfo=UTC), "meta", rs.key,
                                   "add RAPSODI keyword", _add_keyword("RAPSODI"))
                    if rng.random() < 0.01:
                        self.event(launch + timedelta(days=rng.uniform(4, 9)), "remove", rs.key,
                                   "duplicate launch record")
                day += timedelta(days=1)

    # -- RV METEOR ------------------------------------------------------------------------------
    def ship(self) -> None:
        rng = self.rng
        day = CRUISE_START.replace(hour=0)
        while day < CRUISE_END:
            start, end = max(day, CRUISE_START), min(day + timedelta(days=1) - timedelta(seconds=1), CRUISE_END)
            coords = [_pt(*_ship_position(start + (end - start) * k / 12)) for k in range(13)]
            iid = f"DShip/met_203_1_dship_{day:%Y%m%d}"
            path = f"products/METEOR/DShip/met_203_1_dship_{day:%Y%m%d}.zarr"
            ds = self.dataset(
                "meteor-ship", iid, path, {"type": "LineString", "coordinates": coords}, _bbox(coords),
                self.props(f"RV METEOR DShip {day:%Y-%m-%d}", "Ship position, navigation and surface "
                           "meteorology from the DShip system of RV METEOR, cruise M203.", "RV METEOR",
                           ["DShip"], ["ship", "surface meteorology", "M203"], path, start, end,
                           extra={"orcestra:cruise": "M203"}),
            )
            self.event(end + self.hours(4, 30), "add", ds.key, "DShip")
            day += timedelta(days=1)
        track = [_pt(*_ship_position(CRUISE_START + (CRUISE_END - CRUISE_START) * k / 38)) for k in range(39)]
        for iid, path, instrument, title in SHIP_PRODUCTS:
            ds = self.dataset(
                "meteor-ship", iid, path, {"type": "LineString", "coordinates": track}, _bbox(track),
                self.props(f"RV METEOR {title}, M203", f"{title} measured on RV METEOR during cruise M203 "
                           "from Mindelo to Bridgetown.", "RV METEOR", [instrument],
                           ["ship", "M203", instrument], path, CRUISE_START, CRUISE_END,
                           extra={"orcestra:cruise": "M203"}),
            )
            self.event(CRUISE_END + timedelta(days=rng.uniform(1.5, 20)), "add", ds.key, instrument)

    # -- campaign-wide changes ------------------------------------------------------------------
    def revisions(self) -> None:
        """Reprocessing (new data CID) and metadata fixes after publication."""
        rng = self.rng
        adds = {e.key: e.ready for e in self.events if e.kind == "add"}
        l3_batch = datetime(2024, 9, 18, 10, tzinfo=UTC)
        hamp_batch = datetime(2024, 10, 2, 9, tzinfo=UTC)
        for key, ready in sorted(adds.items()):
            coll = key.split("/", 1)[0]
            if key.endswith("_L3") and ready < l3_batch - timedelta(days=1):
                self.event(l3_batch, "reprocess", key, "dropsonde Level 3 v2 with new quality control",
                           _set_version("v2.0"))
            if key.startswith("halo-remote-sensing/HAMP/") and ready < hamp_batch - timedelta(days=1):
                self.event(hamp_batch, "reprocess", key, "HAMP radiometer recalibration", _set_version("v2.0"))
            if coll in ("halo-flights", "halo-remote-sensing", "meteor-ship") and not key.endswith("_QL"):
                if rng.random() < 0.15:
                    t = ready + timedelta(days=rng.uniform(4, 15))
                    self.event(t, "reprocess", key, "reprocessed with corrected time offsets", _set_version("v1.1"))
                    if rng.random() < 0.3:
                        self.event(t + timedelta(days=rng.uniform(4, 12)), "reprocess", key,
                                   "reprocessed with final calibration", _set_version("v1.2"))
            if rng.random() < 0.05:
                self.event(ready + timedelta(days=rng.uniform(2, 20)), "meta", key, "corrected description",
                           _fix_description)

    # -- versions ---------------------------------------------------------------------------
    def schedule(self) -> list[datetime]:
        """Publication times: every 1-3 days, in the working day or evening, oldest first."""
        rng = self.rng
        times = []
        day = FIRST_VERSION
        while day < LAST_VERSION:
            times.append(day + timedelta(hours=rng.uniform(16.0, 22.5)))
            day += timedelta(days=rng.choice((1, 2, 2, 3, 3)))
        times.append(LAST_VERSION + timedelta(hours=rng.uniform(14.0, 17.0)))
        return [t.replace(microsecond=0) for t in times]

    def versions(self) -> list[DemoVersion]:
        rng = self.rng
        events = sorted(self.events)
        live: dict[str, dict[str, Any]] = {}  # key -> current item
        revision: dict[str, int] = {}  # key -> data version counter
        out: list[DemoVersion] = []
        pos = 0
        for time in self.schedule():
            stamp = _ts(time)
            before = set(live)
            touched: dict[str, str] = {}  # key -> event kind (last wins; 'add' sticks)
            reasons: dict[str, Counter[str]] = {"add": Counter(), "reprocess": Counter(), "meta": Counter(),
                                                "remove": Counter()}
            collections: Counter[str] = Counter()
            while pos < len(events) and events[pos].ready <= time:
                ev = events[pos]
                pos += 1
                item = live.get(ev.key)
                if ev.kind == "add":
                    if ev.key in live or ev.key in revision:
                        continue  # published once only
                    revision[ev.key] = 1
                    live[ev.key] = self.item(ev.key, 1, stamp, stamp)
                elif item is None:
                    continue  # not (or no longer) published
                elif ev.kind == "remove":
                    del live[ev.key]
                elif ev.kind == "reprocess":
                    revision[ev.key] += 1
                    item["assets"]["data"]["href"] = f"ipfs://{self.cid(ev.key, revision[ev.key])}"
                    if ev.change is not None:
                        ev.change(item, rng)
                    item["properties"]["updated"] = stamp
                elif ev.kind == "meta":
                    if ev.change is not None:
                        ev.change(item, rng)
                    item["properties"]["updated"] = stamp
                touched[ev.key] = "add" if touched.get(ev.key) == "add" and ev.kind != "remove" else ev.kind
                reasons[ev.kind][ev.reason] += 1
                collections[ev.key.split("/", 1)[0]] += 1
            if not touched:
                if not live:
                    continue
                key = rng.choice(sorted(live))
                _fix_title(live[key], rng)
                live[key]["properties"]["updated"] = stamp
                touched[key] = "meta"
                reasons["meta"]["corrected title"] += 1
                collections[key.split("/", 1)[0]] += 1
            upserts = [_copy(live[k]) for k in sorted(touched) if k in live]
            removals = sorted(k for k in touched if k in before and k not in live)
            if not upserts and not removals:
                continue  # e.g. added and withdrawn between two versions
            author = AUTHORS[min(collections, key=lambda c: (-collections[c], c))]
            out.append(DemoVersion(time, author, _message(reasons, collections), upserts, removals))
        return out

    def cid(self, key: str, revision: int) -> str:
        return demo_cid(f"orcestra-demo|{self.seed}|{key}|data v{revision}")

    def item(self, key: str, revision: int, created: str, updated: str) -> dict[str, Any]:
        ds = self.datasets[key]
        props = _copy(ds.base["properties"])
        props["created"] = created
        props["updated"] = updated
        return {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": [VERSION_EXTENSION],
            "id": ds.item_id,
            "collection": ds.collection,
            "geometry": _copy(ds.base["geometry"]),
            "bbox": list(ds.base["bbox"]),
            "properties": props,
            "links": [dict(LICENSE_LINK)],
            "assets": {
                "data": {
                    "href": f"ipfs://{self.cid(key, revision)}",
                    "type": ZARR_MEDIA_TYPE,
                    "title": props["title"],
                    "roles": ["data"],
                }
            },
        }


def _set_version(version: str) -> Callable[[dict[str, Any], random.Random], None]:
    def change(item: dict[str, Any], rng: random.Random) -> None:
        item["properties"]["version"] = version

    return change


def _add_keyword(word: str) -> Callable[[dict[str, Any], random.Random], None]:
    def change(item: dict[str, Any], rng: random.Random) -> None:
        kw = item["properties"]["keywords"]
        if word not in kw:
            kw.append(word)

    return change


def _fix_description(item: dict[str, Any], rng: random.Random) -> None:
    props = item["properties"]
    props["description"] = props["description"].rstrip(".") + f". Contact: {rng.choice(('HALO', 'ORCESTRA'))} data desk."


def _fix_title(item: dict[str, Any], rng: random.Random) -> None:
    props = item["properties"]
    props["title"] = props["title"] + " (ORCESTRA)" if not props["title"].endswith(")") else props["title"] + "."


def _copy(value: Any) -> Any:
    """A fast deep copy of a JSON value."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _message(reasons: dict[str, Counter[str]], collections: Counter[str]) -> str:
    parts = []
    verbs = {"add": "add", "reprocess": "reprocess", "meta": "update metadata of", "remove": "withdraw"}
    for kind, verb in verbs.items():
        n = sum(reasons[kind].values())
        if n:
            why = ", ".join(r for r, _ in reasons[kind].most_common(3) if r)
            parts.append(f"{verb} {n} dataset{'s' if n > 1 else ''}" + (f" ({why})" if why else ""))
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def generate_campaign(seed: int = 2024) -> list[DemoVersion]:
    """The demo campaign's publication history, oldest version first.

    About 500 datasets in five collections (``halo-flights``, ``halo-remote-sensing``,
    ``dropsondes``, ``radiosondes``, ``meteor-ship``) published in ~30 versions between
    2024-08-10 and 2024-10-15, with additions, reprocessing (new data CID), metadata-only
    updates and withdrawals. Deterministic: the same seed gives equal output.

    >>> v = generate_campaign()
    >>> sum(len(x.upserts) for x in v) > 300, any(x.removals for x in v)
    (True, True)
    """
    campaign = _Campaign(seed)
    campaign.halo()
    campaign.radiosondes()
    campaign.ship()
    campaign.revisions()
    return campaign.versions()


# --- bulk items for benchmarks ----------------------------------------------------------------
_BULK = (
    # (collection, platform, instrument, keyword, geometry kind)
    ("halo-flights", "HALO", "BAHAMAS", "flight track", "line"),
    ("halo-remote-sensing", "HALO", "HAMP", "remote sensing", "line"),
    ("dropsondes", "HALO", "AVAPS", "dropsondes", "point"),
    ("radiosondes", "BCO", "Vaisala RS41", "radiosondes", "point"),
    ("meteor-ship", "RV METEOR", "DShip", "ship", "line"),
)
_BULK_START = datetime(2024, 8, 10, tzinfo=UTC)


def generate_items(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` valid, varied STAC items (~1 KiB each, unique ids), fast enough for 100,000.

    >>> items = generate_items(5, seed=7)
    >>> [i["collection"] for i in items][:3], items == generate_items(5, seed=7)
    (['halo-flights', 'halo-remote-sensing', 'dropsondes'], True)
    """
    if n < 0:
        raise InputError(f"cannot generate a negative number of items: {n}", source="generate_items")
    was_enabled = gc.isenabled()
    gc.disable()  # 100,000 live dicts make the cyclic GC the bottleneck; nothing here is cyclic
    try:
        return _bulk_items(n, seed)
    finally:
        if was_enabled:
            gc.enable()


def _bulk_items(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rand = rng.random
    out: list[dict[str, Any]] = []
    prefix = f"b{seed}"
    for i in range(n):
        coll, platform, instrument, keyword, kind = _BULK[i % len(_BULK)]
        lon = -60.0 + 38.0 * rand()
        lat = 10.0 + 6.5 * rand()
        start = _BULK_START + timedelta(seconds=int(i * 47 + 3600 * rand()))
        item_id = f"{prefix}-{i:07d}"
        path = f"products/bench/{coll}/{item_id}.zarr"
        props: dict[str, Any] = {
            "title": f"{instrument} {item_id}",
            "description": f"Synthetic {keyword} dataset {i} for HaloDB benchmarks (seed {seed}).",
            "datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if kind == "line":
            dx, dy = 0.5 + rand(), 0.3 * (rand() - 0.5)
            coords = [[round(lon + dx * k / 7, 4), round(lat + dy * k / 7 + 0.05 * (k % 2), 4)] for k in range(8)]
            geometry: dict[str, Any] = {"type": "LineString", "coordinates": coords}
            lons = [c[0] for c in coords]
            lats = [c[1] for c in coords]
            bbox = [min(lons), min(lats), max(lons), max(lats)]
            end = start + timedelta(hours=1 + int(9 * rand()))
            props["start_datetime"] = props["datetime"]
            props["end_datetime"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            p = [round(lon, 4), round(lat, 4)]
            geometry = {"type": "Point", "coordinates": p}
            bbox = [p[0], p[1], p[0], p[1]]
        props.update(
            {
                "platform": platform,
                "instruments": [instrument],
                "mission": "ORCESTRA",
                "keywords": ["ORCESTRA", keyword, f"group-{i % 97}"],
                "license": "CC-BY-4.0",
                "version": "v1.0",
                "halodb:path": path,
            }
        )
        out.append(
            {
                "type": "Feature",
                "stac_version": STAC_VERSION,
                "id": item_id,
                "collection": coll,
                "geometry": geometry,
                "bbox": bbox,
                "properties": props,
                "links": [],
                "assets": {
                    "data": {
                        "href": "ipfs://" + str(CID.for_bytes(f"{prefix}:{i}".encode(), codec=RAW)),
                        "type": ZARR_MEDIA_TYPE,
                        "roles": ["data"],
                    }
                },
            }
        )
    return out


def mutate_items(items: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """``k`` changed copies of distinct items (a new data CID each, same key); input untouched.

    Picks are deterministic given ``seed`` and returned in input order.

    >>> items = generate_items(10, seed=1)
    >>> changed = mutate_items(items, 3, seed=2)
    >>> len(changed), all(c["assets"]["data"]["href"] != i["assets"]["data"]["href"]
    ...     for c in changed for i in items if i["id"] == c["id"])
    (3, True)
    """
    if not 0 <= k <= len(items):
        raise InputError(f"cannot change {k} of {len(items)} items", source="mutate_items")
    rng = random.Random(seed)
    out = []
    for index in sorted(rng.sample(range(len(items)), k)):
        item: dict[str, Any] = _copy(items[index])
        assets = item.setdefault("assets", {})
        old = assets.get("data", {}).get("href", "") if isinstance(assets.get("data"), dict) else ""
        new = str(CID.for_bytes(f"mutated|{seed}|{index}|{old}".encode(), codec=RAW))
        data = assets.get("data") if isinstance(assets.get("data"), dict) else None
        if data is None:
            assets["data"] = {"href": f"ipfs://{new}", "roles": ["data"]}
        else:
            data["href"] = f"ipfs://{new}"
        props = item.get("properties")
        if isinstance(props, dict) and isinstance(props.get("version"), str):
            props["version"] = props["version"] + "+r"
        out.append(item)
    return out
