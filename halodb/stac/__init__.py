"""STAC items: the one parse point, keys, data CIDs, item files, offline schema checks.

Owns what a STAC item must be before it enters the index. Imports only :mod:`halodb.ipld`
and :mod:`halodb.util`; scan, the API and the CLI import it.
"""

from halodb.stac.items import (
    ITEM_SUFFIXES,
    NDJSON_SUFFIXES,
    STAC_VERSION,
    ZARR_MEDIA_TYPE,
    data_cid,
    dataset_key,
    format_datetime,
    item_path,
    parse_datetime,
    parse_item,
    read_items,
    split_key,
    stub_item,
    validate_with_pystac,
)

__all__ = [
    "ITEM_SUFFIXES",
    "NDJSON_SUFFIXES",
    "STAC_VERSION",
    "ZARR_MEDIA_TYPE",
    "data_cid",
    "dataset_key",
    "format_datetime",
    "item_path",
    "parse_datetime",
    "parse_item",
    "read_items",
    "split_key",
    "stub_item",
    "validate_with_pystac",
]
