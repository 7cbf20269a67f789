"""What ``halodb show`` prints: a dataset's dimensions, coordinates (with their ranges),
variables (with units) and attributes, and which version it is — read from its Zarr
metadata and coordinate arrays only, never its data variables.

>>> # summary = summarize(reg, located); print(render(summary))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from halodb.api import Registry
from halodb.data.locate import Located
from halodb.errors import HaloDBError
from halodb.scan.cf import CFError, decode_time_extent, format_instant, is_time, valid_values
from halodb.scan.zarr_meta import Budget, ZarrDataset, open_zarr
from halodb.unixfs import UnixFSTree
from halodb.util.times import format_time

__all__ = ["render", "summarize"]

#: bytes of coordinate arrays read to give their ranges (a larger one is shown without)
COORDINATE_BYTES = 64 << 20


def summarize(reg: Registry, located: Located | None, *, data_cid: str | None = None,
              data_path: str = "") -> dict[str, Any]:
    """The summary of the dataset ``located`` names, as JSON-ready data; with ``located``
    None, of the dataset at ``data_path`` under ``data_cid`` (bytes by their CID, outside any
    version: ``key``, ``commit`` and ``version_time`` are None)."""
    if located is not None:
        data_cid, data_path = located.data_cid, located.data_path
    if data_cid is None:
        raise ValueError("summarize needs a located dataset or a data_cid")
    ds = open_zarr(UnixFSTree(reg.store, data_cid), data_path)
    dims: dict[str, int] = {}
    for var in ds.variables.values():
        for name, size in zip(var.dims, var.shape, strict=False):
            dims.setdefault(name, int(size))
    coordinate_names = set(dims) & set(ds.variables)
    for var in ds.variables.values():
        coordinate_names.update(str(c) for c in str(var.attrs.get("coordinates", "")).split() if c in ds.variables)
    budget = Budget(COORDINATE_BYTES)
    coordinates = [_coordinate(ds, ds.variables[name], budget) for name in sorted(coordinate_names)]
    variables = [{"name": v.name, "dims": list(v.dims), "shape": list(v.shape), "dtype": str(v.dtype),
                  "units": _text(v.attrs.get("units")), "long_name": _text(v.attrs.get("long_name"))}
                 for name, v in sorted(ds.variables.items()) if name not in coordinate_names]
    return {
        "key": located.key if located else None, "commit": str(located.commit) if located else None,
        "version_time": format_time(located.commit_time) if located else None,
        "data_cid": data_cid, "data_path": data_path, "zarr_format": ds.zarr_format,
        "consolidated": ds.consolidated, "dimensions": dims, "coordinates": coordinates,
        "data_variables": variables, "attributes": {k: _jsonable(v) for k, v in sorted(ds.attrs.items())},
    }


def _coordinate(ds: ZarrDataset, var: Any, budget: Budget) -> dict[str, Any]:
    found: dict[str, Any] = {"name": var.name, "dims": list(var.dims), "dtype": str(var.dtype),
                             "units": _text(var.attrs.get("units")), "min": None, "max": None}
    try:
        values = ds.read(var, budget=budget)
        if is_time(var.name, var.attrs, var.dtype):
            extent = decode_time_extent(values, var.attrs, var.fill_value)
            if extent is not None:
                found["min"], found["max"] = format_instant(extent[0]), format_instant(extent[1])
        elif values.dtype.kind in "iuf":
            ok = valid_values(values, var.attrs, var.fill_value)
            if ok.size:
                found["min"], found["max"] = _jsonable(np.min(ok).item()), _jsonable(np.max(ok).item())
    except (HaloDBError, CFError) as exc:  # too large, or unreadable: shown without a range
        found["note"] = str(exc).split(": ", 1)[-1][:200]
    return found


def render(summary: dict[str, Any]) -> str:
    """The summary as text for a terminal."""
    where = f"/{summary['data_path']}" if summary["data_path"] else ""
    lines = [
        (f"{summary['key']}  (commit {summary['commit']}, {summary['version_time']})" if summary["key"] is not None
         else "(by its CID: outside any version)"),
        f"data: ipfs://{summary['data_cid']}{where}  (Zarr v{summary['zarr_format']}"
        f"{', consolidated' if summary['consolidated'] else ''})",
        "dimensions: " + (", ".join(f"{k}={v}" for k, v in summary["dimensions"].items()) or "none"),
        "coordinates:",
    ]
    for c in summary["coordinates"]:
        span = f"  {c['min']} .. {c['max']}" if c["min"] is not None else (f"  ({c['note']})" if "note" in c else "")
        lines.append(f"  {c['name']} ({', '.join(c['dims'])}) {c['dtype']}{_units(c['units'])}{span}")
    lines.append("data variables:")
    for v in summary["data_variables"]:
        title = f"  {v['long_name']}" if v["long_name"] else ""
        lines.append(f"  {v['name']} ({', '.join(v['dims'])}) {v['dtype']}{_units(v['units'])}{title}")
    lines.append("attributes:")
    lines += [f"  {k}: {_short(v)}" for k, v in summary["attributes"].items()]
    return "\n".join(lines)


def _units(units: str | None) -> str:
    return f" [{units}]" if units else ""


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return str(value)
