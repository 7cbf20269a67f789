"""The properties a search may filter and sort on, and the SQL each one reads.

Every search of the server reads one snapshot's ``search_rows`` (``snapshot.py``: each
version of a dataset with its item's columns) aliased ``i``. A CQL2 ``filter``, a ``sortby`` and the
``/queryables`` documents all come from :data:`QUERYABLES`: a property not listed here is
refused with a 400 naming it, never passed to SQL.

>>> QUERYABLES["platform"].sql, QUERYABLES["instruments"].kind
('i.platform', 'array')
>>> lookup("properties.platform").name
'platform'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["QUERYABLES", "Queryable", "lookup", "queryables_document"]


@dataclass(frozen=True)
class Queryable:
    """One filterable property: its STAC ``name``, the SQL expression that reads it, its
    ``kind`` (string, number, timestamp, interval, array, geometry) and a JSON Schema."""

    name: str
    sql: str
    kind: str
    title: str
    schema: dict[str, Any]
    sortable: bool = True


_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": {"type": "string"}}

QUERYABLES: dict[str, Queryable] = {q.name: q for q in (
    Queryable("id", "i.id", "string", "Item ID", {**_STRING, "minLength": 1}),
    Queryable("collection", "i.collection", "string", "Collection ID", _STRING),
    # datetime compares the start of the item's span (its datetime, or start_datetime);
    # the temporal operators (t_intersects, ...) use the whole span [i.t_start, i.t_end]
    Queryable("datetime", "i.t_start", "interval", "Acquisition time (or start of the time range)", _TIME),
    Queryable("start_datetime", "i.start_datetime", "timestamp", "Start of the time range", _TIME),
    Queryable("end_datetime", "i.end_datetime", "timestamp", "End of the time range", _TIME),
    Queryable("geometry", "i.wkb", "geometry", "Footprint",
              {"$ref": "https://geojson.org/schema/Geometry.json"}, sortable=False),
    Queryable("platform", "i.platform", "string", "Platform (e.g. HALO)", _STRING),
    Queryable("instruments", "i.instruments", "array", "Instruments", _STRINGS, sortable=False),
    Queryable("title", "i.title", "string", "Title", _STRING),
    Queryable("description", "i.description", "string", "Description", _STRING),
    Queryable("keywords", "i.keywords", "array", "Keywords", _STRINGS, sortable=False),
    # STAC common metadata and the eo extension, which stac-api-validator's filter checks
    # name whatever /queryables says
    Queryable("mission", "i.mission", "string", "Mission", _STRING),
    Queryable("eo:cloud_cover", "i.cloud_cover", "number", "Cloud cover (%)", {"type": "number", "minimum": 0, "maximum": 100}),
    Queryable("halodb:key", "i.key", "string", "Dataset key in the HaloDB index", _STRING),
    Queryable("halodb:data_cid", "i.data_cid", "string", "CID of the dataset's data (e.g. its Zarr store)", _STRING),
    Queryable("halodb:path", "i.path", "string", "Path of the dataset in the campaign tree", _STRING),
)}


def lookup(name: str) -> Queryable | None:
    """The queryable called ``name`` (``properties.NAME`` is the same property), or None."""
    return QUERYABLES.get(name.removeprefix("properties."))


def queryables_document(url: str, title: str) -> dict[str, Any]:
    """The ``/queryables`` JSON Schema document (OGC API Features part 3) served at ``url``.

    >>> doc = queryables_document("http://127.0.0.1:8000/queryables", "HaloDB")
    >>> doc["properties"]["platform"]["type"], doc["additionalProperties"]
    ('string', False)
    """
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": url,
        "type": "object",
        "title": title,
        "properties": {q.name: {"title": q.title, **q.schema} for q in QUERYABLES.values()},
        "additionalProperties": False,
    }
