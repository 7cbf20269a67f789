"""``extract_metadata``: a STAC Item from a CF/ACDD Zarr dataset (or a ``dataset_meta.yaml``).

A dataset is a folder in a :class:`~halodb.filetree.Tree` (a local folder, or a UnixFS
tree on IPFS). Extraction reads only Zarr metadata documents, the ``dataset_meta.yaml``
if there is one, and the coordinate arrays it needs: time, latitude, longitude and the
one-dimensional dimension coordinates (never a data variable), at most
``max_coordinate_bytes`` of them.

* :func:`describe_dataset` -- the item (or None) and a :class:`~halodb.scan.report.Report`
  of every problem, attribute by attribute;
* :func:`extract_metadata` -- the ``pystac.Item``; :class:`~halodb.errors.DatasetError`
  (carrying the report) if the dataset has errors;
* :func:`check` -- just the report, for producers (``halodb check``).

Field mapping (ACDD/CF global attribute -> STAC): ``title`` -> title, ``summary`` ->
description, ``keywords`` -> keywords, ``license`` -> license, ``platform`` -> platform,
``instrument``/``instruments`` -> instruments, ``project`` -> mission, ``creator_*`` /
``publisher_*`` -> contacts (contacts extension), ``institution`` -> providers,
``history`` -> ``processing:lineage``, ``references`` / ``doi`` -> ``sci:publications`` /
``sci:doi``, ``date_created`` / ``date_modified`` -> created / updated. Time extent from
the time coordinate(s), else ``time_coverage_start``/``_end``, else ``dataset_meta.yaml``.
Geometry: a LineString for trajectories, a MultiPoint (one position per profile) for
profiles, else the extent's Polygon. Variables and dimensions -> ``cube:*``.

>>> import tempfile, pathlib, numpy as np, zarr
>>> from halodb.filetree import LocalTree
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> g = zarr.open_group(root / "x.zarr", mode="w", zarr_format=3,
...     attributes={"title": "Ship track", "summary": "RV Meteor position", "license": "CC-BY-4.0",
...                 "featureType": "trajectory", "platform": "METEOR"})
>>> for name, data, attrs in [("time", np.arange(0, 7200, 60), {"units": "seconds since 2024-08-16"}),
...                           ("lat", np.linspace(13.0, 14.0, 120), {"units": "degrees_north"}),
...                           ("lon", np.linspace(-58.0, -57.0, 120), {"units": "degrees_east"})]:
...     _ = g.create_array(name, data=data, dimension_names=["time"], attributes=attrs)
>>> item = extract_metadata(LocalTree(root), cid="bafybeigmb3ngfpq2yxbx5yzr34ggdb3va4jibycqra37thtlbakqxjhoza",
...                         path="x.zarr", collection="ships")
>>> item.id, item.geometry["type"], item.bbox, item.properties["end_datetime"]
('x.zarr', 'LineString', [-58.0, 13.0, -57.0, 14.0], '2024-08-16T01:59:00Z')
>>> item.assets["data"].href
'ipfs://bafybeigmb3ngfpq2yxbx5yzr34ggdb3va4jibycqra37thtlbakqxjhoza/x.zarr'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac

from halodb.errors import CIDError, DatasetError, InvalidItemError, NotADatasetError, TreePathError
from halodb.ipld import CID
from halodb.scan import cf, geo
from halodb.scan.dataset_meta import FILE_NAME as META_FILE
from halodb.scan.dataset_meta import DatasetMeta, parse_dataset_meta
from halodb.scan.report import Report
from halodb.filetree import Tree
from halodb.scan.zarr_meta import Budget, Variable, ZarrDataset, is_zarr, open_zarr
from halodb.stac import STAC_VERSION, format_datetime, parse_datetime, parse_item

__all__ = [
    "DEFAULT_MAX_COORDINATE_BYTES",
    "EXTENSIONS",
    "Extraction",
    "check",
    "describe_dataset",
    "extract_metadata",
    "zarr_media_type",
]

#: at most this many bytes of coordinate arrays are loaded per dataset (decoded size)
DEFAULT_MAX_COORDINATE_BYTES = 128 * 1024 * 1024
#: the most positions a trajectory's LineString keeps
MAX_TRACK_POINTS = 200
#: a string dimension coordinate with at most this many values lists them in cube:dimensions
MAX_LISTED_VALUES = 50
MAX_META_BYTES = 1024 * 1024

EXTENSIONS = {
    "datacube": "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "contacts": "https://stac-extensions.github.io/contacts/v0.1.1/schema.json",
    "scientific": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
}
_LICENSE = re.compile(r"[\w\-.+]+")
_DOI = re.compile(r"10\.\d{4,}/[^\s\"'<>]+")
_URL = re.compile(r"https?://[^\s\"'<>]+")
_TRAJECTORY = {"trajectory", "trajectoryprofile"}
_PROFILE = {"profile", "timeseriesprofile", "point", "timeseries"}


def zarr_media_type(zarr_format: int) -> str:
    """The STAC best-practice media type of a Zarr store (``application/vnd.zarr; version=N``).

    >>> zarr_media_type(3)
    'application/vnd.zarr; version=3'
    """
    return f"application/vnd.zarr; version={zarr_format}"


@dataclass
class Extraction:
    """What :func:`describe_dataset` found: the item dict (None if it could not be built) and the report."""

    item: dict[str, Any] | None
    report: Report


@dataclass
class _Space:
    bbox: list[float]
    geometry: dict[str, Any]


@dataclass
class _Context:
    tree: Tree
    path: str
    report: Report
    budget: Budget
    zarr: ZarrDataset | None = None
    meta: DatasetMeta | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    attr_file: str | None = None
    loaded: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    time_extents: dict[str, tuple[int, int]] = field(default_factory=dict)

    def load(self, var: Variable) -> np.ndarray[Any, Any] | None:
        """The values of a coordinate variable, or None (problem reported) if unreadable/too large."""
        if var.name not in self.loaded:
            assert self.zarr is not None
            if var.size == 0:
                self.report.error(var.name, f"empty array (shape {list(var.shape)})", file=self._file(var.name))
                return None
            try:
                self.loaded[var.name] = self.zarr.read(var, budget=self.budget)
            except DatasetError as exc:
                self.report.error(var.name, _detail(exc), file=self._file(var.name))
                return None
        return self.loaded[var.name]

    def _file(self, name: str) -> str:
        return name + ("/zarr.json" if self.zarr is not None and self.zarr.zarr_format == 3 else "/.zarray")


def _detail(exc: DatasetError) -> str:
    """The part of a DatasetError's message after the dataset path (and file)."""
    detail = exc.context.get("detail")
    return detail if isinstance(detail, str) else str(exc)


# --- attributes ---------------------------------------------------------------------------
def _text(ctx: _Context, name: str, *, required: str | None = None, recommended: str | None = None) -> str | None:
    value = ctx.attrs.get(name)
    if value is None:
        if required:
            ctx.report.error(name, f"missing ({required})", file=ctx.attr_file)
        elif recommended:
            ctx.report.warn(name, f"missing ({recommended})", file=ctx.attr_file)
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n".join(value)
    if not isinstance(value, str):
        ctx.report.warn(name, f"expected text, got {type(value).__name__} {value!r}; ignored", file=ctx.attr_file)
        return None
    if not value.strip():
        ctx.report.warn(name, "is empty", file=ctx.attr_file)
        return None
    return value.strip()


def _license(ctx: _Context, props: dict[str, Any], links: list[dict[str, Any]]) -> None:
    text = _text(ctx, "license", recommended="ACDD: the licence, e.g. CC-BY-4.0")
    if text is None:
        return
    if _LICENSE.fullmatch(text):
        props["license"] = text
        return
    compact = re.sub(r"\s+", "-", text)
    if compact.upper().startswith("CC-") and _LICENSE.fullmatch(compact):
        props["license"] = compact
        return
    props["license"] = "other"
    url = _URL.search(text)
    if url:
        links.append({"rel": "license", "href": url.group(0), "title": text})
    ctx.report.warn("license", f"{text!r} is not an SPDX identifier (like CC-BY-4.0); stored as 'other'",
                    file=ctx.attr_file)


def _contacts(ctx: _Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for role in ("creator", "publisher"):
        names = cf.split_list(ctx.attrs.get(f"{role}_name"))
        emails = cf.split_list(ctx.attrs.get(f"{role}_email"))
        urls = cf.split_list(ctx.attrs.get(f"{role}_url"))
        if emails and len(emails) != len(names) and names:
            ctx.report.warn(f"{role}_email", f"{len(emails)} emails for {len(names)} names in {role}_name; paired in order",
                            file=ctx.attr_file)
        for i, name in enumerate(names or ([""] if emails else [])):
            contact: dict[str, Any] = {"roles": [role]}
            if name:
                contact["name"] = name
            institution = ctx.attrs.get(f"{role}_institution") or ctx.attrs.get("institution")
            if isinstance(institution, str) and institution.strip():
                contact["organization"] = institution.strip()
            if "name" not in contact and "organization" not in contact:
                contact["name"] = emails[i] if i < len(emails) else role
            if i < len(emails):
                contact["emails"] = [{"value": emails[i]}]
            if i < len(urls):
                contact["links"] = [{"rel": "about", "href": urls[i]}]
            out.append(contact)
    if not any("creator" in c["roles"] for c in out):
        ctx.report.warn("creator_name", "missing (ACDD: who made the dataset; also creator_email)", file=ctx.attr_file)
    return out


def _date_attr(ctx: _Context, name: str) -> str | None:
    value = ctx.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        if len(text) == 10:
            text += "T00:00:00Z"
        elif not re.search(r"([Zz]|[+-]\d{2}:?\d{2})$", text):
            text += "Z"
        try:
            when, frac = parse_datetime(text)
            return format_datetime(when, frac)
        except ValueError:
            pass
    ctx.report.warn(name, f"{value!r} is not an ISO 8601 date-time; ignored", file=ctx.attr_file)
    return None


def _properties(ctx: _Context, props: dict[str, Any], links: list[dict[str, Any]]) -> None:
    title = _text(ctx, "title", recommended="ACDD: a short title of the dataset")
    if title:
        props["title"] = title
    summary = _text(ctx, "summary", recommended="ACDD: a paragraph describing the dataset")
    if summary:
        props["description"] = summary
    _license(ctx, props, links)
    keywords = cf.split_list(ctx.attrs.get("keywords"))
    if keywords:
        props["keywords"] = keywords
    elif "keywords" not in ctx.attrs:
        ctx.report.warn("keywords", "missing (ACDD: comma-separated search words)", file=ctx.attr_file)
    platform = _text(ctx, "platform", recommended="the platform, e.g. HALO, ATR, METEOR, BCO")
    if platform:
        props["platform"] = platform
    instruments = cf.split_list(ctx.attrs.get("instruments", ctx.attrs.get("instrument")))
    if instruments:
        props["instruments"] = instruments
    mission = _text(ctx, "project", recommended="ACDD: the project or campaign, e.g. ORCESTRA")
    if mission:
        props["mission"] = mission
    contacts = _contacts(ctx)
    if contacts:
        props["contacts"] = contacts
    institution = _text(ctx, "institution")
    if institution:
        props["providers"] = [{"name": institution, "roles": ["producer"]}]
    history = _text(ctx, "history")
    if history:
        props["processing:lineage"] = history
    references = ctx.attrs.get("references")
    refs = [r.strip() for r in references.splitlines() if r.strip()] if isinstance(references, str) else \
        cf.split_list(references)
    if refs:
        props["sci:publications"] = [
            {"citation": r, **({"doi": m.group(0).rstrip(".,;)")} if (m := _DOI.search(r)) else {})} for r in refs
        ]
    doi = ctx.attrs.get("doi")
    if isinstance(doi, str) and (m := _DOI.search(doi)):
        props["sci:doi"] = m.group(0).rstrip(".,;)")
    for attr, prop in (("date_created", "created"), ("date_modified", "updated")):
        when = _date_attr(ctx, attr)
        if when:
            props[prop] = when


# --- time ---------------------------------------------------------------------------------
def _coordinate_names(ds: ZarrDataset) -> set[str]:
    """Dimension coordinates and the variables named in ``coordinates`` attributes."""
    names = {n for n, v in ds.variables.items() if v.dims == (n,)}
    for v in list(ds.variables.values()) + [None]:
        text = (v.attrs if v is not None else ds.attrs).get("coordinates")
        if isinstance(text, str):
            names.update(t for t in text.split() if t in ds.variables)
    return names


def _preferred(ds: ZarrDataset, candidates: list[Variable]) -> list[Variable]:
    coords = _coordinate_names(ds)
    preferred = [v for v in candidates if v.name in coords]
    return preferred or candidates


def _time_from_zarr(ctx: _Context) -> tuple[int, int] | None:
    ds = ctx.zarr
    assert ds is not None
    candidates = [v for v in ds.variables.values() if cf.is_time(v.name, v.attrs, v.dtype)]
    if not candidates:
        return None
    extents = []
    for var in _preferred(ds, candidates):
        values = ctx.load(var)
        if values is None:
            continue
        try:
            extent = cf.decode_time_extent(values, var.attrs, var.fill_value if ds.zarr_format == 2 else None)
        except cf.CFError as exc:
            ctx.report.error(var.name, str(exc), file=_attrs_file(ctx, var.name))
            continue
        if extent is None:
            ctx.report.error(var.name, "every value is missing (fill value or NaN)", file=ctx._file(var.name))
            continue
        ctx.time_extents[var.name] = extent
        extents.append(extent)
    if not extents:
        return None
    return min(e[0] for e in extents), max(e[1] for e in extents)


def _attrs_file(ctx: _Context, name: str) -> str:
    if ctx.zarr is not None and ctx.zarr.zarr_format == 3:
        return f"{name}/zarr.json"
    return f"{name}/.zattrs"


def _time(ctx: _Context) -> tuple[str, str] | None:
    if ctx.zarr is not None:
        extent = _time_from_zarr(ctx)
        if extent is not None:
            start, end = cf.format_instant(extent[0]), cf.format_instant(extent[1])
            _check_plausible(ctx, start, end)
            return start, end
    start_attr, end_attr = _date_attr(ctx, "time_coverage_start"), _date_attr(ctx, "time_coverage_end")
    if start_attr and end_attr:
        return start_attr, end_attr
    if ctx.meta is not None and ctx.meta.time is not None:
        return ctx.meta.time
    if not any(p.severity == "error" and p.attribute in _time_names(ctx) for p in ctx.report.problems):
        ctx.report.error(
            "time",
            "no time: no time coordinate (units 'UNIT since DATE' or datetime64), no time_coverage_start/"
            f"time_coverage_end attributes, no time in {META_FILE}",
        )
    return None


def _time_names(ctx: _Context) -> set[str]:
    if ctx.zarr is None:
        return set()
    return {v.name for v in ctx.zarr.variables.values() if cf.is_time(v.name, v.attrs, v.dtype)}


def _check_plausible(ctx: _Context, start: str, end: str) -> None:
    if start[:4] < "1900" or end[:4] > "2100":
        ctx.report.warn("time", f"extent {start} .. {end} is implausible for a field campaign; check the units")


# --- space --------------------------------------------------------------------------------
def _pick(ds: ZarrDataset, test: Any) -> Variable | None:
    candidates = [v for v in ds.variables.values() if test(v.name, v.attrs) and v.dtype.kind in "iuf"]
    if not candidates:
        return None
    coords = _coordinate_names(ds)

    def score(v: Variable) -> tuple[int, int, int, str]:
        return (
            -(v.name in coords),
            -(v.attrs.get("standard_name") in ("latitude", "longitude")),
            -(v.name.lower() in ("lat", "latitude", "lon", "longitude")),
            v.name,
        )

    return sorted(candidates, key=score)[0]


def _vertical_dims(ds: ZarrDataset, dims: tuple[str, ...]) -> set[int]:
    out = set()
    for i, d in enumerate(dims):
        coord = ds.variables.get(d)
        attrs = coord.attrs if coord is not None else {}
        if cf.is_vertical(d, attrs):
            out.add(i)
    return out


def _first_valid(lat: np.ndarray[Any, Any], lon: np.ndarray[Any, Any], axes: tuple[int, ...]) -> tuple[Any, Any]:
    """Reduce ``axes`` by taking the first position where both are finite (the launch point of a sonde)."""
    keep = [i for i in range(lat.ndim) if i not in axes]
    order = keep + list(axes)
    la = np.transpose(lat, order).reshape(int(np.prod([lat.shape[i] for i in keep])) if keep else 1, -1)
    lo = np.transpose(lon, order).reshape(la.shape)
    ok = np.isfinite(la) & np.isfinite(lo)
    has = ok.any(axis=1)
    idx = ok.argmax(axis=1)
    rows = np.arange(la.shape[0])
    return la[rows, idx][has], lo[rows, idx][has]


def _space_from_zarr(ctx: _Context) -> _Space | None:
    ds = ctx.zarr
    assert ds is not None
    lat_var, lon_var = _pick(ds, cf.is_latitude), _pick(ds, cf.is_longitude)
    if lat_var is None or lon_var is None:
        missing = "latitude" if lat_var is None else "longitude"
        ctx.report.warn(missing, "no latitude/longitude coordinate (standard_name latitude/longitude or units "
                                 "degrees_north/degrees_east); the item has no geometry")
        return None
    raw_lat, raw_lon = ctx.load(lat_var), ctx.load(lon_var)
    if raw_lat is None or raw_lon is None:
        return None
    lat = _masked(cf.unpack(raw_lat, lat_var.attrs), lat_var, ds)
    lon = _masked(cf.unpack(raw_lon, lon_var.attrs), lon_var, ds)
    bad = False
    for var, values, limit in ((lat_var, lat, 90.0), (lon_var, lon, 360.0)):
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            ctx.report.error(var.name, "every value is missing (fill value or NaN)", file=ctx._file(var.name))
            bad = True
        elif finite.min() < -limit or finite.max() > limit or (limit == 360.0 and finite.min() < -180.0):
            lo_, hi_ = (-90, 90) if limit == 90.0 else (-180, 360)
            ctx.report.error(var.name, f"values {finite.min():g} .. {finite.max():g} are outside [{lo_}, {hi_}]",
                             file=ctx._file(var.name))
            bad = True
    if bad:
        return None
    lon = geo.normalize_longitude(lon)
    feature = str(ds.attrs.get("featureType", "")).strip().lower()
    paired = lat.shape == lon.shape and lat_var.dims == lon_var.dims
    if not paired:
        flat_lat, flat_lon = lat[np.isfinite(lat)], lon[np.isfinite(lon)]
        bbox = geo.bbox_of(flat_lon, flat_lat)
        return _Space(bbox, geo.extent_geometry(bbox))
    ok = np.isfinite(lat) & np.isfinite(lon)
    bbox = geo.bbox_of(lon[ok], lat[ok])
    time_dims = {v.dims for v in ds.variables.values() if cf.is_time(v.name, v.attrs, v.dtype) and v.name in ctx.loaded}
    if lat.ndim == 0:
        return _Space(bbox, {"type": "Point", "coordinates": [bbox[0], bbox[1]]})
    if feature in _TRAJECTORY or (not feature and lat.ndim == 1 and lat.size > 1 and lat_var.dims in time_dims):
        if lat.ndim == 1:
            return _Space(bbox, geo.track_geometry(lon[ok], lat[ok], max_points=MAX_TRACK_POINTS))
    if feature in _PROFILE:
        vertical = tuple(sorted(_vertical_dims(ds, lat_var.dims)))
        plat, plon = _first_valid(lat, lon, vertical) if vertical else (lat[ok], lon[ok])
        if vertical and len(vertical) == lat.ndim:
            plat, plon = plat[:1], plon[:1]
        if plat.size:
            return _Space(bbox, geo.points_geometry(plon.ravel(), plat.ravel()))
    return _Space(bbox, geo.extent_geometry(bbox))


def _masked(values: np.ndarray[Any, Any], var: Variable, ds: ZarrDataset) -> np.ndarray[Any, Any]:
    """Float copy with fill values, missing values and out-of-valid-range values set to NaN."""
    out = np.asarray(values, dtype=np.float64).copy()
    fills = [var.attrs.get("_FillValue"), var.attrs.get("missing_value"), var.fill_value if ds.zarr_format == 2 else None]
    for f in fills:
        if isinstance(f, (int, float)) and not isinstance(f, bool):
            out[out == f] = np.nan
    vmin, vmax = var.attrs.get("valid_min"), var.attrs.get("valid_max")
    if isinstance(vmin, (int, float)):
        out[out < vmin] = np.nan
    if isinstance(vmax, (int, float)):
        out[out > vmax] = np.nan
    return out


def _space(ctx: _Context) -> _Space | None:
    if ctx.zarr is not None:
        found = _space_from_zarr(ctx)
        if found is not None:
            return found
        if any(p.severity == "error" for p in ctx.report.problems if p.attribute in ctx.loaded):
            return None
    keys = ("geospatial_lon_min", "geospatial_lat_min", "geospatial_lon_max", "geospatial_lat_max")
    values = [ctx.attrs.get(k) for k in keys]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        w, s, e, n = (float(v) for v in values)  # type: ignore[arg-type]
        if -90 <= s <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180:
            return _Space([w, s, e, n], geo.extent_geometry([w, s, e, n]))
        ctx.report.error("geospatial_lat_min", f"geospatial bounds {values} are not a valid extent", file=ctx.attr_file)
    if ctx.meta is not None and ctx.meta.bbox is not None:
        return _Space(ctx.meta.bbox, ctx.meta.geometry or geo.extent_geometry(ctx.meta.bbox))
    if ctx.zarr is None:
        ctx.report.warn("bbox", f"no bbox in {META_FILE}; the item has no geometry", file=META_FILE)
    return None


# --- datacube -----------------------------------------------------------------------------
def _description(attrs: dict[str, Any]) -> str | None:
    for key in ("long_name", "description", "comment"):
        v = attrs.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _numeric_extent(ctx: _Context, var: Variable) -> list[float | None]:
    values = ctx.load(var) if var.nbytes <= ctx.budget.remaining else None
    if values is None or values.dtype.kind not in "iuf":
        return [None, None]
    ok = cf.valid_values(cf.unpack(values, var.attrs), var.attrs, var.fill_value if ctx.zarr and ctx.zarr.zarr_format == 2 else None)
    ok = ok[np.isfinite(ok)] if ok.dtype.kind == "f" else ok
    if ok.size == 0:
        return [None, None]
    return [float(ok.min()), float(ok.max())]


def _dimension(ctx: _Context, name: str, size: int) -> dict[str, Any]:
    ds = ctx.zarr
    assert ds is not None
    coord = ds.variables.get(name)
    if coord is None or coord.dims != (name,):
        return {"type": "other", "description": f"index dimension ({size} values, no coordinate variable)",
                "extent": [0, max(size - 1, 0)], "step": 1}
    out: dict[str, Any] = {}
    desc = _description(coord.attrs)
    units = coord.attrs.get("units")
    if cf.is_time(name, coord.attrs, coord.dtype):
        extent = ctx.time_extents.get(name)
        out = {"type": "temporal",
               "extent": [cf.format_instant(extent[0]), cf.format_instant(extent[1])] if extent else [None, None]}
    elif cf.is_latitude(name, coord.attrs) or cf.is_longitude(name, coord.attrs):
        ext = _numeric_extent(ctx, coord)
        out = {"type": "spatial", "axis": "y" if cf.is_latitude(name, coord.attrs) else "x",
               "extent": [e if e is not None else 0.0 for e in ext], "reference_system": 4326}
    elif cf.is_vertical(name, coord.attrs):
        out = {"type": "spatial", "axis": "z", "extent": _numeric_extent(ctx, coord)}
        if isinstance(units, str):
            out["unit"] = units
    else:
        out = {"type": "other"}
        values = None
        if coord.dtype.kind in "USOT" and size <= MAX_LISTED_VALUES and coord.nbytes <= ctx.budget.remaining:
            values = ctx.load(coord)
        if values is not None and size:
            out["values"] = [str(v) for v in values.tolist()]
        else:
            out["extent"] = _numeric_extent(ctx, coord) if coord.dtype.kind in "iuf" else [None, None]
        if isinstance(units, str):
            out["unit"] = units
    if desc:
        out["description"] = desc
    return out


def _datacube(ctx: _Context, props: dict[str, Any]) -> None:
    ds = ctx.zarr
    assert ds is not None
    sizes: dict[str, int] = {}
    for v in ds.variables.values():
        for d, s in zip(v.dims, v.shape):
            sizes.setdefault(d, s)
    dims = {d: _dimension(ctx, d, s) for d, s in sorted(sizes.items())}
    coords = _coordinate_names(ds)
    variables: dict[str, Any] = {}
    for name, v in ds.variables.items():
        if v.dims == (name,):
            continue
        entry: dict[str, Any] = {"dimensions": list(v.dims), "type": "auxiliary" if name in coords else "data"}
        for key, attr in (("unit", "units"), ("description", None), ("long_name", "long_name"),
                          ("standard_name", "standard_name")):
            value = _description(v.attrs) if attr is None else v.attrs.get(attr)
            if isinstance(value, str) and value.strip():
                entry[key] = value.strip()
        entry["data_type"] = str(v.dtype)
        variables[name] = entry
    if dims:
        props["cube:dimensions"] = dims
    if variables:
        props["cube:variables"] = variables


# --- the item -----------------------------------------------------------------------------
def _read_meta_yaml(ctx: _Context) -> None:
    file = f"{ctx.path}/{META_FILE}" if ctx.path else META_FILE
    try:
        data = ctx.tree.read(file, 0, MAX_META_BYTES + 1)
    except TreePathError:
        return
    if len(data) > MAX_META_BYTES:
        ctx.report.error(META_FILE, f"larger than {MAX_META_BYTES} bytes; not read", file=META_FILE)
        return
    try:
        ctx.meta = parse_dataset_meta(data, ctx.path)
    except DatasetError as exc:
        ctx.report.error(exc.attribute or META_FILE, _detail(exc), file=META_FILE)


def describe_dataset(
    tree: Tree,
    *,
    path: str = "",
    cid: CID | str | None = None,
    collection: str | None = None,
    item_id: str | None = None,
    max_coordinate_bytes: int = DEFAULT_MAX_COORDINATE_BYTES,
) -> Extraction:
    """Build the STAC item of the dataset at ``path`` and report every problem found.

    Raises :class:`NotADatasetError` when the folder has neither Zarr metadata nor a
    ``dataset_meta.yaml``; every other problem goes into the report (the item is None
    when an error makes it impossible to build).
    """
    clean = path.strip("/")
    report = Report(clean)
    ctx = _Context(tree, clean, report, Budget(max_coordinate_bytes))
    if tree.stat(clean) is None:
        raise NotADatasetError(f"{clean or '/'}: nothing at this path", path=clean, detail="nothing at this path")
    zarr_here = is_zarr(tree, clean)
    meta_here = tree.exists(f"{clean}/{META_FILE}" if clean else META_FILE)
    if not zarr_here and not meta_here:
        detail = f"not a dataset: no Zarr metadata (zarr.json, .zgroup, .zmetadata) and no {META_FILE}"
        raise NotADatasetError(f"{clean or '/'}: {detail}", path=clean, detail=detail)
    if meta_here:
        _read_meta_yaml(ctx)
    if zarr_here:
        try:
            ctx.zarr = open_zarr(tree, clean)
        except DatasetError as exc:
            report.error(exc.attribute or "(metadata)", _detail(exc), file=exc.file)
    if ctx.zarr is not None:
        ctx.attrs = dict(ctx.zarr.attrs)
        ctx.attr_file = ".zattrs" if ctx.zarr.zarr_format == 2 else "zarr.json"
        report.found.update({
            "format": f"zarr v{ctx.zarr.zarr_format}",
            "consolidated": ctx.zarr.consolidated,
            "variables": sorted(ctx.zarr.variables),
        })
        if ctx.zarr.groups:
            report.found["groups (not described)"] = ctx.zarr.groups
    elif ctx.meta is not None:
        report.found["format"] = META_FILE
        ctx.attr_file = META_FILE
    if ctx.meta is not None:
        for k, v in ctx.meta.attrs.items():
            ctx.attrs.setdefault(k, v)
    if ctx.zarr is None and ctx.meta is None:
        return Extraction(None, report)

    props: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    _properties(ctx, props, links)
    times = _time(ctx)
    space = _space(ctx)
    if ctx.zarr is not None:
        _datacube(ctx, props)
    report.found["coordinate bytes read"] = ctx.budget.spent
    if times is not None:
        start, end = times
        props["datetime"] = start
        if start != end:
            props["start_datetime"], props["end_datetime"] = start, end
        report.found["time"] = [start, end]
    if space is not None:
        report.found["bbox"] = space.bbox
        report.found["geometry"] = space.geometry["type"]
    if clean:
        props["halodb:path"] = clean
    if not report.ok or times is None:
        return Extraction(None, report)

    href = None
    if cid is not None:
        try:
            text = str(CID.parse(cid)) if isinstance(cid, str) else str(cid)
        except CIDError as exc:
            report.error("cid", str(exc))
            return Extraction(None, report)
        if isinstance(cid, str):
            text = cid.strip()
        href = f"ipfs://{text}/{clean}" if clean else f"ipfs://{text}"
    ident = item_id or clean or (str(cid) if cid is not None else None)
    if not ident:
        report.error("id", "a dataset at the tree's root needs a cid or an item_id to name it")
        return Extraction(None, report)
    asset: dict[str, Any] = {"href": href or clean or ".", "roles": ["data"]}
    if ctx.zarr is not None:
        asset["type"] = zarr_media_type(ctx.zarr.zarr_format)
        asset["title"] = f"Zarr v{ctx.zarr.zarr_format} store"
    prefixes = {"datacube": "cube:", "processing": "processing:", "contacts": "contacts", "scientific": "sci:"}
    extensions = [url for key, url in EXTENSIONS.items() if any(p.startswith(prefixes[key]) for p in props)]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": ident,
        "geometry": space.geometry if space else None,
        "properties": props,
        "links": links,
        "assets": {"data": asset},
    }
    if space is not None:
        item["bbox"] = space.bbox
    if collection is not None:
        # STAC requires a link to the collection an item names; HaloDB keeps no collection
        # documents yet, so this is the static-catalog layout's conventional place.
        item["collection"] = collection
        links.append({"rel": "collection", "href": "../collection.json", "type": "application/json"})
    try:
        item = parse_item(item, f"{clean or ident}")
    except InvalidItemError as exc:
        report.error(exc.context.get("field") or "item", exc.context.get("detail") or str(exc))
        return Extraction(None, report)
    return Extraction(item, report)


def extract_metadata(
    tree: Tree,
    *,
    cid: CID | str,
    path: str = "",
    collection: str | None = None,
    item_id: str | None = None,
    max_coordinate_bytes: int = DEFAULT_MAX_COORDINATE_BYTES,
) -> pystac.Item:
    """The STAC item of the dataset at ``path`` in ``tree`` (whose root is ``cid``).

    The ``data`` asset's href is ``ipfs://<cid>/<path>`` (``ipfs://<cid>`` for
    ``path=""``); the id is ``item_id``, else the path, else the CID. Raises
    :class:`NotADatasetError` for a folder that is no dataset and :class:`DatasetError`
    (``.report`` lists every problem) when the metadata has errors.
    """
    found = describe_dataset(tree, path=path, cid=cid, collection=collection, item_id=item_id,
                             max_coordinate_bytes=max_coordinate_bytes)
    if found.item is None:
        report = found.report
        first = report.errors[0] if report.errors else None
        detail = f"{first.attribute}: {first.message}" if first else "the item could not be built"
        more = len(report.errors) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''}; run halodb check)" if more > 0 else ""
        raise DatasetError(
            f"{report.path or '/'}: {detail}{suffix}",
            path=report.path, file=first.file if first else None, attribute=first.attribute if first else None,
            report=report,
        )
    return pystac.Item.from_dict(found.item, preserve_dict=False)


def check(tree: Tree, path: str = "", *, max_coordinate_bytes: int = DEFAULT_MAX_COORDINATE_BYTES,
          validate: bool = True) -> Report:
    """What is missing or wrong in the dataset at ``path``, attribute by attribute.

    With ``validate`` the item is also checked against the STAC 1.1 JSON schema (offline).
    A folder that is no dataset gives a report with one error.
    """
    try:
        found = describe_dataset(tree, path=path, item_id=path.strip("/") or "dataset",
                                 max_coordinate_bytes=max_coordinate_bytes)
    except NotADatasetError as exc:
        report = Report(path.strip("/"))
        report.error("(dataset)", _detail(exc))
        return report
    if validate and found.item is not None:
        from halodb.stac.validate import validate_offline  # noqa: PLC0415 - jsonschema only when validating

        try:
            unchecked = validate_offline(found.item)
        except InvalidItemError as exc:
            found.report.error("item", str(exc))
        else:
            if unchecked:
                found.report.found["extensions not schema-checked (no local schema)"] = unchecked
    return found.report
