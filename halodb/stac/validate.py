"""Validate items against the STAC 1.1 JSON schemas pystac ships, never over the network.

pystac's ``Item.validate()`` fetches every schema it lacks over HTTP. Its validator keeps
a cache pre-filled with the core schemas bundled in the wheel (item, GeoJSON, common
metadata); :class:`OfflineValidator` refuses to fetch anything else. Extension schemas
(datacube, processing, contacts, scientific) are not in pystac's wheel: an extension is
validated when a local copy of its schema is given (a folder of ``*.json`` files keyed by
their ``$id``, e.g. ``HALODB_STAC_SCHEMAS=/path/to/schemas``) and otherwise listed as
unchecked. Needs ``jsonschema``.

>>> from halodb.stac import stub_item
>>> item = stub_item("a/HALO-20240811a.zarr", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "halo", None)
>>> validate_offline({**item, "links": [{"rel": "collection", "href": "../collection.json"}]})
[]
>>> validate_offline(item)   # STAC: an item naming a collection links to it
Traceback (most recent call last):
...
halodb.errors.InvalidItemError: a/HALO-20240811a.zarr: STAC 1.1 item schema: collection: an item naming a collection needs a link with rel 'collection'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pystac
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

from halodb.errors import InvalidItemError

__all__ = ["OfflineValidator", "validate_offline"]

SCHEMAS_ENV = "HALODB_STAC_SCHEMAS"


class OfflineValidator(JsonSchemaSTACValidator):  # type: ignore[misc]
    """pystac's JSON-schema validator with the bundled schemas plus local ones; no HTTP."""

    def __init__(self, schema_dir: str | Path | None = None) -> None:
        super().__init__()
        folder = schema_dir if schema_dir is not None else os.environ.get(SCHEMAS_ENV)
        if folder:
            for f in sorted(Path(folder).rglob("*.json")):
                schema = json.loads(f.read_text(encoding="utf-8"))
                uri = schema.get("$id") or schema.get("id")
                if isinstance(uri, str):
                    self.schema_cache[uri] = schema

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise GetSchemaError(schema_uri, LookupError(f"no local copy of {schema_uri} (HaloDB validates offline)"))
        schema: dict[str, Any] = self.schema_cache[schema_uri]
        return schema

    def has_schema(self, uri: str) -> bool:
        """Whether a schema is available locally."""
        return uri in self.schema_cache


def _error_text(exc: pystac.STACValidationError) -> str:
    errors = exc.source if isinstance(exc.source, list) else []
    if errors:
        import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415

        best = jsonschema.exceptions.best_match(errors)
        if best is not None and list(best.absolute_path) == ["collection"] and best.validator == "not":
            return "collection: an item naming a collection needs a link with rel 'collection'"
        if best is not None:
            where = ".".join(str(p) for p in best.absolute_path)
            return f"{where}: {best.message}" if where else best.message
    return str(exc).splitlines()[-1]


def validate_offline(item: dict[str, Any], *, validator: OfflineValidator | None = None) -> list[str]:
    """Validate ``item`` against the STAC 1.1 item schema (and extension schemas available locally).

    Returns the extensions that could not be checked (no local schema); raises
    :class:`InvalidItemError` naming the schema and the first field that fails.
    """
    v = validator or OfflineValidator()
    source = str(item.get("id", "<item>"))
    version = str(item.get("stac_version", "1.1.0"))
    try:
        v.validate_core(item, pystac.STACObjectType.ITEM, version)
    except pystac.STACValidationError as exc:
        detail = _error_text(exc)
        raise InvalidItemError(f"{source}: STAC {version[:3]} item schema: {detail}", source=source,
                               detail=detail) from None
    except GetSchemaError as exc:
        raise InvalidItemError(f"{source}: no local STAC {version} item schema: {exc}", source=source,
                               detail=str(exc)) from None
    unchecked: list[str] = []
    for ext in item.get("stac_extensions") or []:
        if not v.has_schema(ext):
            unchecked.append(ext)
            continue
        try:
            v.validate_extension(item, pystac.STACObjectType.ITEM, version, ext)
        except pystac.STACValidationError as exc:
            detail = _error_text(exc)
            raise InvalidItemError(f"{source}: extension {ext}: {detail}", source=source, detail=detail) from None
    return unchecked
