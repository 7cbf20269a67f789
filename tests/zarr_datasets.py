"""Small but realistic CF/ACDD datasets for extraction tests, written with xarray and zarr.

Modelled on ORCESTRA products (HALO dropsondes Level 3, HALO BAHAMAS, radiosondes from
RV METEOR and the BCO, ATR-42 navigation, gridded products): the attribute names and
conventions are the real ones, the numbers are synthetic. Each generator writes one
dataset and returns a :class:`Spec` with what it wrote, so tests compare the extracted
item against the generator's own arrays and attributes, never against copies of the
output. Broken datasets carry the attributes a check must name.

``write_all(folder)`` writes every dataset (well under a second, a few hundred KB).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

ORCESTRA = "ORCESTRA"
CREATORS = "Helene Gloeckner, Theresa Mieslinger"
EMAILS = "helene.gloeckner@mpimet.mpg.de, theresa.mieslinger@mpimet.mpg.de"


@dataclass
class Spec:
    """What a generator wrote: the facts an extracted item must reflect."""

    name: str
    attrs: dict[str, Any]
    zarr_format: int | None
    consolidated: bool = False
    time: tuple[np.datetime64, np.datetime64] | None = None
    lat: np.ndarray[Any, Any] | None = None  # the valid latitudes (all of them)
    lon: np.ndarray[Any, Any] | None = None
    geometry: str | None = None
    #: positions the geometry must hold exactly (profiles: one per sonde)
    points: list[tuple[float, float]] | None = None
    coordinates: set[str] = field(default_factory=set)  # arrays extraction may read
    data_vars: set[str] = field(default_factory=set)  # arrays it must never read
    #: attributes the check must report as errors / warnings
    errors: set[str] = field(default_factory=set)
    warnings: set[str] = field(default_factory=set)
    bbox: list[float] | None = None


def _acdd(title: str, summary: str, platform: str, instrument: str, **extra: Any) -> dict[str, Any]:
    return {
        "Conventions": "CF-1.8, ACDD-1.3",
        "title": title,
        "summary": summary,
        "keywords": f"{ORCESTRA}, {platform}, {instrument}",
        "license": "CC-BY-4.0",
        "platform": platform,
        "instrument": instrument,
        "project": ORCESTRA,
        "creator_name": CREATORS,
        "creator_email": EMAILS,
        "institution": "Max Planck Institute for Meteorology",
        **extra,
    }


def _to_zarr(ds: xr.Dataset, path: Path, *, zarr_format: int, consolidated: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not yet in the v3 spec: zarr warns
        ds.to_zarr(path, mode="w", zarr_format=zarr_format, consolidated=consolidated)


def _valid(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(a[np.isfinite(a)])


# --- good datasets --------------------------------------------------------------------------
def dropsondes_level3(root: Path) -> Spec:
    """HALO dropsondes, Level 3: sonde_id x altitude, one launch position and time per sonde (v2, consolidated)."""
    rng = np.random.default_rng(3)
    n, alt = 24, np.arange(0.0, 14100.0, 100.0, dtype=np.float32)
    sonde_id = np.array([f"2408111{i:02d}" for i in range(n)])
    launch = np.datetime64("2024-08-11T12:05:00", "ns") + np.arange(n) * np.timedelta64(7 * 60 + 13, "s")
    launch[5] = np.datetime64("NaT")  # a sonde without a launch detection
    lat = 10.0 + 3.5 * np.sin(np.linspace(0, np.pi, n))
    lon = -30.0 + 6.0 * np.cos(np.linspace(0, np.pi, n))
    lat[7] = lon[7] = np.nan  # failed GPS
    shape = (n, alt.size)
    ta = (300.0 - 0.0065 * alt[None, :] + rng.normal(0, 0.3, shape)).astype(np.float32)
    rh = np.clip(0.9 - alt[None, :] / 16000 + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32)
    attrs = _acdd(
        "PERCUSION dropsonde Level 3 (gridded) data from HALO",
        "Quality-controlled dropsonde profiles of HALO flight HALO-20240811a interpolated to a common "
        "10 m altitude grid.",
        "HALO", "Vaisala RD41 dropsonde",
        featureType="profile",
        history="2024-09-02: Level 2 to Level 3 with pydropsonde 0.3.1",
        references="George et al. (2021), JOANNE, doi:10.5194/essd-13-5253-2021",
        doi="10.25326/246",
        date_created="2024-09-02T10:00:00Z",
    )
    ds = xr.Dataset(
        {
            "ta": (("sonde_id", "altitude"), ta, {"units": "K", "long_name": "air temperature",
                                                  "standard_name": "air_temperature"}),
            "rh": (("sonde_id", "altitude"), rh, {"units": "1", "long_name": "relative humidity",
                                                  "standard_name": "relative_humidity"}),
        },
        coords={
            "sonde_id": ("sonde_id", sonde_id, {"long_name": "sonde identifier", "cf_role": "profile_id"}),
            "altitude": ("altitude", alt, {"units": "m", "standard_name": "altitude", "positive": "up", "axis": "Z"}),
            "launch_time": ("sonde_id", launch, {"long_name": "time of dropsonde launch", "standard_name": "time"}),
            "lat": ("sonde_id", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("sonde_id", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs=attrs,
    )
    ds["launch_time"].encoding.update({"units": "seconds since 2024-08-11", "dtype": "int64"})
    _to_zarr(ds, root / "dropsondes_level3.zarr", zarr_format=2, consolidated=True)
    ok = ~np.isnat(launch)
    good = np.isfinite(lat)
    return Spec(
        "dropsondes_level3.zarr", attrs, 2, True, (launch[ok].min(), launch[ok].max()), lat[good], lon[good],
        "MultiPoint", [(float(a), float(b)) for a, b in zip(lon[good], lat[good])],
        coordinates={"launch_time", "lat", "lon", "altitude", "sonde_id"}, data_vars={"ta", "rh"},
    )


def bahamas(root: Path) -> Spec:
    """HALO BAHAMAS-like 1 Hz flight track: time series of lat/lon/alt (v2, not consolidated, 2 chunks)."""
    n = 7200
    t = np.datetime64("2024-08-11T10:50:00", "ns") + np.arange(n) * np.timedelta64(1, "s")
    phase = np.linspace(0, 2 * np.pi, n)
    lat = 13.0 + 3.0 * np.sin(phase) + 0.2 * np.sin(7 * phase)
    lon = -23.5 - 4.0 * (1 - np.cos(phase))
    alt = np.minimum(np.arange(n) * 8.0, 14000.0)
    lat[100:160] = np.nan  # GPS dropout
    attrs = _acdd(
        "BAHAMAS quicklook data of HALO flight HALO-20240811a",
        "Position, attitude and basic meteorological state measured by the HALO BAHAMAS system.",
        "HALO", "BAHAMAS",
        history="2024-08-12: converted from BAHAMAS raw data (QL) with halo-ql 1.2",
        source="BAHAMAS",
        flight_id="HALO-20240811a",
    )
    enc = {"chunks": (3600,)}
    ds = xr.Dataset(
        {
            "TS": ("time", 290.0 - alt / 150.0, {"units": "K", "long_name": "static air temperature"}),
            "PS": ("time", 1013.0 * np.exp(-alt / 8000.0), {"units": "hPa", "long_name": "static pressure"}),
        },
        coords={
            "time": ("time", t, {"standard_name": "time"}),
            "IRS_LAT": ("time", lat, {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}),
            "IRS_LON": ("time", lon, {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}),
            "IRS_ALT": ("time", alt, {"units": "m", "standard_name": "altitude", "long_name": "altitude"}),
        },
        attrs=attrs,
    )
    for v in ("TS", "PS", "IRS_LAT", "IRS_LON", "IRS_ALT"):
        ds[v].encoding.update(enc)
    ds["time"].encoding.update({"units": "seconds since 2024-08-11", "dtype": "int64", "chunks": (3600,)})
    _to_zarr(ds, root / "HALO-20240811a_BAHAMAS.zarr", zarr_format=2, consolidated=False)
    return Spec(
        "HALO-20240811a_BAHAMAS.zarr", attrs, 2, False, (t.min(), t.max()), _valid(lat),
        lon[np.isfinite(lat)], "LineString",
        coordinates={"time", "IRS_LAT", "IRS_LON", "IRS_ALT"}, data_vars={"TS", "PS"},
    )


def radiosonde(root: Path) -> Spec:
    """A Vaisala RS41 ascent from RV METEOR: one profile, position drifting with height (v2, float days)."""
    n = 1500
    alt = np.linspace(20.0, 25000.0, n)
    seconds = alt / 5.0
    t0 = np.datetime64("2024-08-20T10:45:00", "ns")
    days = (t0 - np.datetime64("2024-08-20T00:00:00", "ns")) / np.timedelta64(1, "D") + seconds / 86400.0
    days[-3:] = np.nan  # telemetry lost near burst
    lat = 11.93 + alt * 2e-6
    lon = -27.84 - alt * 6e-6
    attrs = _acdd(
        "Radiosonde ascent from RV METEOR, 2024-08-20 10:45 UTC",
        "Vaisala RS41 radiosonde profile launched from RV METEOR during ORCESTRA/BOW-TIE.",
        "METEOR", "Vaisala RS41-SGP",
        featureType="profile",
        keywords=["ORCESTRA", "BOW-TIE", "radiosonde", "METEOR"],
    )
    ds = xr.Dataset(
        {"ta": ("alt", 300.0 - 0.0065 * alt, {"units": "K", "long_name": "air temperature"})},
        coords={
            "alt": ("alt", alt, {"units": "m", "standard_name": "altitude", "positive": "up"}),
            "flight_time": ("alt", days, {"units": "days since 2024-08-20 00:00:00", "calendar": "standard",
                                          "_FillValue": np.nan, "standard_name": "time"}),
            "lat": ("alt", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("alt", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs=attrs,
    )
    # keep the float encoding: xarray would otherwise re-encode the variable as datetimes
    for v in ("flight_time",):
        ds[v].attrs.pop("_FillValue")
        ds[v].encoding["_FillValue"] = np.nan
    _to_zarr(ds.set_coords([]), root / "RS_METEOR_20240820_1045.zarr", zarr_format=2, consolidated=True)
    ok = np.isfinite(days)
    first = t0 + (seconds[ok].min() * 1e9).astype("timedelta64[ns]")
    last = t0 + np.round(seconds[ok].max() * 1e9).astype("timedelta64[ns]")
    return Spec(
        "RS_METEOR_20240820_1045.zarr", attrs, 2, True, (first, last), lat, lon, "Point",
        [(float(lon[0]), float(lat[0]))],
        coordinates={"alt", "flight_time", "lat", "lon"}, data_vars={"ta"},
    )


def gridded_v3(root: Path) -> Spec:
    """A gridded product (IWV on a lat/lon grid, 3 times) as a consolidated Zarr v3 store."""
    lat = np.arange(5.0, 20.01, 0.5)
    lon = np.arange(-40.0, -14.99, 0.5)
    t = np.array(["2024-08-11T12:00", "2024-08-11T15:00", "2024-08-11T18:00"], dtype="datetime64[ns]")
    iwv = (45 + 10 * np.sin(np.radians(lat))[None, :, None] + np.zeros((3, lat.size, lon.size))).astype(np.float32)
    attrs = _acdd(
        "Integrated water vapour from GOES-16 ABI over the ORCESTRA domain",
        "Hourly clear-sky integrated water vapour retrieved from GOES-16, regridded to 0.5 degrees.",
        "GOES-16", "ABI",
        license="CC BY 4.0",
    )
    ds = xr.Dataset(
        {"iwv": (("time", "lat", "lon"), iwv, {"units": "kg m-2", "long_name": "integrated water vapour",
                                               "standard_name": "atmosphere_mass_content_of_water_vapor"})},
        coords={
            "time": ("time", t, {"standard_name": "time", "axis": "T"}),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
        },
        attrs=attrs,
    )
    ds["time"].encoding.update({"units": "hours since 2024-08-11T00:00:00Z", "dtype": "int64"})
    _to_zarr(ds, root / "goes16_iwv.zarr", zarr_format=3, consolidated=True)
    return Spec(
        "goes16_iwv.zarr", attrs, 3, True, (t.min(), t.max()), lat, lon, "Polygon",
        coordinates={"time", "lat", "lon"}, data_vars={"iwv"},
    )


def atr_v3(root: Path) -> Spec:
    """ATR-42 navigation at 1 Hz, featureType trajectory, Zarr v3 without consolidated metadata."""
    n = 1800
    t = np.datetime64("2024-08-14T09:00:00", "ns") + np.arange(n) * np.timedelta64(1, "s")
    lat = 13.16 + np.linspace(0, 1.2, n)
    lon = -59.43 + 0.8 * np.sin(np.linspace(0, 3, n))
    attrs = _acdd(
        "ATR-42 core navigation data, 1 Hz, Level 2",
        "Position and attitude of the SAFIRE ATR-42 during ORCESTRA/MAESTRO.",
        "ATR", "ATR-42 core navigation",
        featureType="trajectory",
        project="ORCESTRA, MAESTRO",
    )
    ds = xr.Dataset(
        {"heading": ("time", np.linspace(0, 360, n), {"units": "degree", "long_name": "true heading"})},
        coords={
            "time": ("time", t, {"standard_name": "time"}),
            "latitude": ("time", lat, {"units": "degree_north"}),
            "longitude": ("time", lon, {"units": "degree_east"}),
        },
        attrs=attrs,
    )
    ds["time"].encoding.update({"units": "milliseconds since 2024-08-14 00:00:00 +00:00", "dtype": "int64"})
    _to_zarr(ds, root / "CORE_NAV_1HZ_L2.zarr", zarr_format=3, consolidated=False)
    return Spec(
        "CORE_NAV_1HZ_L2.zarr", attrs, 3, False, (t.min(), t.max()), lat, lon, "LineString",
        coordinates={"time", "latitude", "longitude"}, data_vars={"heading"},
    )


def meta_only(root: Path) -> Spec:
    """BCO lidar quicklooks: PNG files described only by a dataset_meta.yaml."""
    folder = root / "BCO_lidar_quicklooks"
    folder.mkdir()
    for day in ("20240810", "20240811"):
        (folder / f"lidar_{day}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    attrs = {
        "title": "CORAL lidar quicklooks from the Barbados Cloud Observatory",
        "summary": "Daily quicklook images of the CORAL Raman lidar at the BCO.",
        "keywords": ["BCO", "lidar", "quicklook"],
        "license": "CC-BY-4.0",
        "platform": "BCO",
        "instruments": ["CORAL"],
        "project": ORCESTRA,
        "creator_name": "Ilya Serikov",
        "creator_email": "ilya.serikov@mpimet.mpg.de",
    }
    meta: dict[str, Any] = {**attrs, "time": {"start": "2024-08-10T00:00:00Z", "end": "2024-08-11T23:59:59Z"},
            "bbox": [-59.43, 13.16, -59.42, 13.17]}
    (folder / "dataset_meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return Spec(
        "BCO_lidar_quicklooks", attrs, None, False,
        (np.datetime64("2024-08-10T00:00:00", "ns"), np.datetime64("2024-08-11T23:59:59", "ns")),
        geometry="Polygon", bbox=meta["bbox"],
    )


# --- broken datasets ------------------------------------------------------------------------
def _small(root: Path, name: str, attrs: dict[str, Any], *, time_attrs: dict[str, Any] | None = None,
           lat: np.ndarray[Any, Any] | None = None, n: int = 50, zarr_format: int = 2,
           consolidated: bool = False, with_time: bool = True) -> xr.Dataset:
    coords: dict[str, Any] = {}
    if with_time:
        coords["time"] = ("time", np.arange(n, dtype=np.int64) * 10, time_attrs or
                          {"units": "seconds since 2024-08-13 12:00:00", "standard_name": "time"})
    la = lat if lat is not None else np.linspace(14.0, 15.0, n)
    coords["lat"] = ("time", la, {"units": "degrees_north"})
    coords["lon"] = ("time", np.linspace(-50.0, -49.0, n), {"units": "degrees_east"})
    ds = xr.Dataset({"ta": ("time", np.full(n, 290.0), {"units": "K", "long_name": "air temperature"})},
                    coords=coords, attrs=attrs)
    if with_time:
        ds["time"].encoding["dtype"] = "int64"
    ds = xr.decode_cf(ds, decode_times=False)
    _to_zarr(ds, root / name, zarr_format=zarr_format, consolidated=consolidated)
    return ds


def missing_attrs(root: Path) -> Spec:
    """No ACDD attributes and no time coordinate at all: warnings per attribute and a time error."""
    _small(root, "broken_missing_attrs.zarr", {"Conventions": "CF-1.8"}, with_time=False)
    return Spec("broken_missing_attrs.zarr", {}, 2, errors={"time"},
                warnings={"title", "summary", "license", "keywords", "platform", "project", "creator_name"},
                data_vars={"ta"})


def bad_units(root: Path) -> Spec:
    """Time units that are not 'UNIT since DATE'."""
    attrs = _acdd("HAMP radiometer brightness temperatures", "HAMP", "HALO", "HAMP")
    _small(root, "broken_units.zarr", attrs, time_attrs={"units": "seconds after 2024-08-13", "standard_name": "time"})
    return Spec("broken_units.zarr", attrs, 2, errors={"time"}, data_vars={"ta"})


def bad_calendar(root: Path) -> Spec:
    """A 360-day calendar (model output), which HaloDB does not decode."""
    attrs = _acdd("ICON storm-resolving simulation", "ICON", "ICON", "model")
    _small(root, "broken_calendar.zarr", attrs,
           time_attrs={"units": "days since 2024-08-01", "calendar": "360_day"})
    return Spec("broken_calendar.zarr", attrs, 2, errors={"time"}, data_vars={"ta"})


def non_utf8(root: Path) -> Spec:
    """A variable attribute whose bytes are Latin-1, not UTF-8 (v2, not consolidated)."""
    attrs = _acdd("WALES lidar backscatter", "WALES", "HALO", "WALES")
    _small(root, "broken_utf8.zarr", attrs)
    zattrs = root / "broken_utf8.zarr" / "ta" / ".zattrs"
    doc = json.loads(zattrs.read_text())
    text = json.dumps({**doc, "long_name": "TEMP_PLACEHOLDER"}).encode()
    zattrs.write_bytes(text.replace(b"TEMP_PLACEHOLDER", "température de l'air".encode("latin-1")))
    return Spec("broken_utf8.zarr", attrs, 2, errors={"ta.long_name"}, data_vars={"ta"})


def broken_json(root: Path) -> Spec:
    """Global attributes cut off in the middle of the JSON document."""
    attrs = _acdd("specMACS cloud mask", "specMACS", "HALO", "specMACS")
    _small(root, "broken_json.zarr", attrs)
    p = root / "broken_json.zarr" / ".zattrs"
    p.write_bytes(p.read_bytes()[:60])
    return Spec("broken_json.zarr", attrs, 2, errors={"(metadata)"}, data_vars={"ta"})


def huge_coordinate(root: Path) -> Spec:
    """A time coordinate declaring 10^10 values (80 GB): refused before any chunk is read."""
    attrs = _acdd("HAMP radar reflectivity", "HAMP radar", "HALO", "HAMP MIRA-35")
    _small(root, "broken_huge.zarr", attrs)
    for var in ("time", "lat", "lon", "ta"):
        p = root / "broken_huge.zarr" / var / ".zarray"
        doc = json.loads(p.read_text())
        doc["shape"] = [10_000_000_000]
        doc["chunks"] = [1_000_000]
        p.write_text(json.dumps(doc))
    return Spec("broken_huge.zarr", attrs, 2, errors={"time", "lat"}, data_vars={"ta"})


def bad_latitude(root: Path) -> Spec:
    """Latitudes beyond the pole (radians mislabelled as degrees would not be caught; this is)."""
    attrs = _acdd("Sea surface temperature from RV METEOR thermosalinograph", "TSG", "METEOR", "TSG")
    _small(root, "broken_latitude.zarr", attrs, lat=np.linspace(80.0, 95.0, 50))
    return Spec("broken_latitude.zarr", attrs, 2, errors={"lat"}, data_vars={"ta"})


def empty_time(root: Path) -> Spec:
    """A time coordinate of length zero (an aborted flight)."""
    attrs = _acdd("HALO KT-19 surface temperature", "KT-19", "HALO", "KT-19")
    _small(root, "broken_empty.zarr", attrs, n=0)
    return Spec("broken_empty.zarr", attrs, 2, errors={"time"}, data_vars={"ta"})


GOOD: list[Callable[[Path], Spec]] = [dropsondes_level3, bahamas, radiosonde, gridded_v3, atr_v3, meta_only]
BROKEN: list[Callable[[Path], Spec]] = [
    missing_attrs, bad_units, bad_calendar, non_utf8, broken_json, huge_coordinate, bad_latitude, empty_time,
]


def write_all(root: Path) -> dict[str, Spec]:
    """Write every dataset under ``root``; ``{generator name: Spec}`` (``Spec.name`` is the folder)."""
    root.mkdir(parents=True, exist_ok=True)
    return {make.__name__: make(root) for make in GOOD + BROKEN}
