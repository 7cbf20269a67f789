"""Tests for halodb.stac: item validation, keys, data CIDs, paths, reading items, stubs."""

from __future__ import annotations

import copy
import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from halodb.errors import InputError, InvalidItemError
from halodb.ipld import CID
from tests.pystac_oracle import validate_with_pystac
from halodb.stac import (
    data_cid,
    dataset_key,
    format_datetime,
    item_path,
    parse_datetime,
    parse_item,
    read_items,
    split_key,
    stub_item,
)

from .conftest import SHARED_DATA, shared_data

EXAMPLES = SHARED_DATA / "stac-examples" / "examples"

CID_V1 = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
CID_V0 = "QmVdi8e6yR2exaUc7dv3ErQta2R7YobQGQNEcgQE9HLioj"


def example_item_files() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    out = []
    for f in sorted(EXAMPLES.rglob("*.json")):
        if json.loads(f.read_text()).get("type") == "Feature":
            out.append(f)
    return out


def base_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "HALO-20240811a",
        "collection": "halo-flights",
        "geometry": {"type": "LineString", "coordinates": [[-23.0, 16.7], [-25.5, 13.0]]},
        "bbox": [-25.5, 13.0, -23.0, 16.7],
        "properties": {
            "datetime": None,
            "start_datetime": "2024-08-11T10:00:00Z",
            "end_datetime": "2024-08-11T18:30:00Z",
            "platform": "HALO",
            "halodb:path": "products/HALO/BAHAMAS/HALO-20240811a.zarr",
        },
        "links": [{"rel": "license", "href": "https://creativecommons.org/licenses/by/4.0/"}],
        "assets": {"data": {"href": f"ipfs://{CID_V1}", "type": "application/vnd.zarr", "roles": ["data"]}},
    }
    item.update(changes)
    return item


def message_of(value: Any, source: str = "items/flight1.json") -> InvalidItemError:
    with pytest.raises(InvalidItemError) as info:
        parse_item(value, source)
    return info.value


# --- the STAC spec's own examples --------------------------------------------------------------
@pytest.mark.parametrize("path", example_item_files() or [None], ids=lambda p: p.name if p else "missing")
def test_spec_example_items_parse_and_validate_with_pystac(path: Path | None) -> None:
    shared_data("stac-examples", "examples")
    assert path is not None
    raw = json.loads(path.read_text())
    item = parse_item(raw, str(path))
    assert item["id"] == raw["id"]
    assert parse_item(item, str(path)) == item  # normalization is idempotent
    out = validate_with_pystac(raw, str(path))
    assert out["id"] == raw["id"]


def test_spec_examples_hold_several_items() -> None:
    shared_data("stac-examples", "examples")
    assert len(example_item_files()) >= 5


def test_read_items_over_spec_examples_skips_catalogs_and_collections() -> None:
    folder = shared_data("stac-examples", "examples")
    skipped: list[tuple[str, str]] = []
    got = list(read_items([str(folder)], None, on_skip=lambda s, why: skipped.append((s, why))))
    assert sorted(Path(s).name for s, _ in got) == sorted(p.name for p in example_item_files())
    assert {why for _, why in skipped} <= {"a STAC Catalog, not an Item", "a STAC Collection, not an Item"}
    assert any(s.endswith("catalog.json") for s, _ in skipped)
    for source, raw in got:
        parse_item(raw, source)


def test_example_normalizes_datetime_fraction() -> None:
    shared_data("stac-examples", "examples")
    raw = json.loads((EXAMPLES / "simple-item.json").read_text())
    assert raw["properties"]["datetime"] == "2020-12-11T22:38:32.125000Z"
    assert parse_item(raw, "simple-item.json")["properties"]["datetime"] == "2020-12-11T22:38:32.125Z"


# --- bad items ------------------------------------------------------------------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(item: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = item
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if value is KeyError:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


BAD = [
    ("wrong type", _set("type", "Collection"), "type", "expected 'Feature', got string 'Collection'"),
    ("missing id", _set("id", KeyError), "id", "required field is missing"),
    ("blank id", _set("id", "  "), "id", "must not be empty"),
    ("numeric id", _set("id", 7), "id", "expected a string, got number 7"),
    ("bad datetime", _set("properties.datetime", "yesterday"), "properties.datetime",
     "not an RFC 3339 date-time 'yesterday'"),
    ("date only", _set("properties.datetime", "2024-08-11"), "properties.datetime", "not an RFC 3339"),
    ("no offset", _set("properties.datetime", "2024-08-11T10:00:00"), "properties.datetime", "not an RFC 3339"),
    ("impossible day", _set("properties.datetime", "2024-02-30T10:00:00Z"), "properties.datetime",
     "not an RFC 3339"),
    ("missing datetime", _set("properties.datetime", KeyError), "properties.datetime", "required field is missing"),
    ("null datetime without start", _set("properties.start_datetime", KeyError), "properties.datetime",
     "start_datetime and properties.end_datetime are required"),
    ("null datetime without end", _set("properties.end_datetime", None), "properties.datetime",
     "are required"),
    ("start after end", _set("properties.start_datetime", "2024-08-12T00:00:00Z"), "properties.start_datetime",
     "is after end_datetime"),
    ("bad created", _set("properties.created", "soon"), "properties.created", "not an RFC 3339"),
    ("bbox length", _set("bbox", [1.0, 2.0, 3.0]), "bbox", "must have 4 or 6 numbers, got 3"),
    ("bbox length 5", _set("bbox", [1.0, 2.0, 3.0, 4.0, 5.0]), "bbox", "got 5"),
    ("bbox string", _set("bbox", [-25.5, "13", -23.0, 16.7]), "bbox[1]", "expected a number, got string '13'"),
    ("bbox south > north", _set("bbox", [-25.5, 17.0, -23.0, 13.0]), "bbox", "is north of north"),
    ("bbox missing", _set("bbox", KeyError), "bbox", "is required when geometry is not null"),
    ("bbox with null geometry", _set("geometry", None), "bbox", "must be absent when geometry is null"),
    ("geometry missing", _set("geometry", KeyError), "geometry", "required field is missing"),
    ("geometry type", _set("geometry.type", "Line"), "geometry", "unknown GeoJSON geometry type 'Line'"),
    ("geometry coordinate", _set("geometry.coordinates.1.0", "x"), "geometry.coordinates[1][0]",
     "expected a number"),
    ("line too short", _set("geometry.coordinates", [[0.0, 0.0]]), "geometry.coordinates", "at least 2"),
    ("asset without href", _set("assets.data.href", KeyError), "assets.data.href", "required field is missing"),
    ("asset href number", _set("assets.data.href", 5), "assets.data.href", "expected a string"),
    ("asset not object", _set("assets.data", "ipfs://x"), "assets.data", "expected an object"),
    ("link without rel", _set("links.0.rel", KeyError), "links[0].rel", "required field is missing"),
    ("links null", _set("links", None), "links", "expected a list, got null"),
    ("assets missing", _set("assets", KeyError), "assets", "required field is missing"),
    ("properties list", _set("properties", []), "properties", "expected an object"),
    ("NaN", _set("properties.gsd", float("nan")), "properties.gsd", "not a finite number"),
    ("Infinity in bbox", _set("bbox", [float("inf"), 13.0, -23.0, 16.7]), "bbox[0]", "not a finite number"),
    ("old STAC", _set("stac_version", "0.9.0"), "stac_version", "STAC 1.x"),
    ("absolute tree path", _set("properties.halodb:path", "/products/x.zarr"), "properties.halodb:path",
     "not a relative path"),
    ("dotted tree path", _set("properties.halodb:path", "products/../x.zarr"), "properties.halodb:path",
     "not a relative path"),
    ("stub flag not bool", _set("properties.halodb:stub", "yes"), "properties.halodb:stub", "true or false"),
    ("non-JSON value", _set("properties.when", datetime(2024, 1, 1)), "properties.when", "not a JSON value"),
    ("spaced key", _set("assets", {"my data": {"title": "x"}}), 'assets["my data"].href', "missing"),
]


@pytest.mark.parametrize(("mutate", "field", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_items_name_source_field_and_problem(
    mutate: Callable[[dict[str, Any]], None], field: str, expected: str
) -> None:
    item = base_item()
    mutate(item)
    err = message_of(item)
    assert str(err).startswith(f"items/flight1.json: {field}: "), str(err)
    assert expected in str(err)
    assert err.context["source"] == "items/flight1.json"
    assert err.context["detail"].startswith(f"{field}: ")
    assert err.__cause__ is None and not isinstance(err.__context__, ValidationError)


@pytest.mark.parametrize("value", [[1, 2], "a string", None, 3.5])
def test_non_object_is_rejected(value: Any) -> None:
    err = message_of(value, "<stdin>:17")
    assert str(err).startswith("<stdin>:17: expected a JSON object")


def test_out_of_range_time_is_rejected() -> None:
    item = base_item()
    item["properties"]["created"] = "0001-01-01T00:00:00+01:00"  # year 0 in UTC
    assert "not an RFC 3339 date-time" in str(message_of(item))


def test_non_string_key_is_rejected() -> None:
    item = base_item()
    item["properties"][3] = "x"
    assert "object keys must be strings" in str(message_of(item))


def test_all_problems_are_listed() -> None:
    item = base_item(id=5, stac_version=1)
    err = message_of(item)
    assert "(and 1 more problem)" in str(err)
    assert len(err.context["problems"]) == 2


def test_example_message_from_the_brief() -> None:
    item = base_item()
    item["properties"]["datetime"] = "yesterday"
    err = message_of(item, "<stdin>:17")
    assert str(err) == "<stdin>:17: properties.datetime: not an RFC 3339 date-time 'yesterday'"


def test_geometry_collection_error_path_has_no_union_tags() -> None:
    geom = {"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [0.0, 0.0]},
        {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, "y"]]},
    ]}
    err = message_of(base_item(geometry=geom))
    assert "geometry.geometries[1].coordinates[1][1]: expected a number" in str(err)


# --- good items and normalization ----------------------------------------------------------------
def test_valid_item_round_trips_and_input_is_untouched() -> None:
    item = base_item()
    before = copy.deepcopy(item)
    out = parse_item(item, "x")
    assert item == before
    assert out == item and out is not item
    out["properties"]["platform"] = "changed"
    assert item["properties"]["platform"] == "HALO"


def test_normalizes_offsets_fractions_and_tuples() -> None:
    item = base_item(bbox=(-25.5, 13.0, -23.0, 16.7))
    item["properties"].update(
        datetime="2024-08-11t12:00:00.500+02:00",
        start_datetime="2024-08-11T10:00:00.000000000Z",
        end_datetime="2024-08-11T18:30:00.123456789-00:00",
        created="2024-08-12T00:30:00+01:00",
    )
    out = parse_item(item, "x")
    props = out["properties"]
    assert props["datetime"] == "2024-08-11T10:00:00.5Z"
    assert props["start_datetime"] == "2024-08-11T10:00:00Z"
    assert props["end_datetime"] == "2024-08-11T18:30:00.123456789Z"  # nanoseconds survive
    assert props["created"] == "2024-08-11T23:30:00Z"
    assert out["bbox"] == [-25.5, 13.0, -23.0, 16.7]
    assert parse_item(out, "x") == out


def test_start_equal_to_end_and_sub_second_order() -> None:
    item = base_item()
    item["properties"].update(start_datetime="2024-08-11T10:00:00.5Z", end_datetime="2024-08-11T10:00:00.5Z")
    parse_item(item, "x")
    item["properties"].update(start_datetime="2024-08-11T10:00:00.5Z", end_datetime="2024-08-11T10:00:00Z")
    assert "is after end_datetime" in str(message_of(item))
    item["properties"].update(start_datetime="2024-08-11T12:00:00+02:00", end_datetime="2024-08-11T10:00:00.1Z")
    parse_item(item, "x")  # 10:00:00Z <= 10:00:00.1Z once both are in UTC


def test_datetime_with_range_and_extensions_and_extra_fields() -> None:
    item = base_item(stac_extensions=["https://stac-extensions.github.io/version/v1.2.0/schema.json"],
                     **{"x:anything": {"nested": [1, 2.5, None, True]}})
    item["properties"]["datetime"] = "2024-08-11T10:00:00Z"
    item["properties"]["eo:cloud_cover"] = 12.5
    out = parse_item(item, "x")
    assert out["x:anything"] == {"nested": [1, 2.5, None, True]}


def test_bbox_with_six_numbers_and_antimeridian() -> None:
    parse_item(base_item(bbox=[-25.5, 13.0, 0.0, -23.0, 16.7, 12000.0]), "x")
    parse_item(base_item(bbox=[170.0, 13.0, -170.0, 16.7]), "x")  # west > east crosses 180
    assert "minimum elevation" in str(message_of(base_item(bbox=[-25.5, 13.0, 5.0, -23.0, 16.7, 1.0])))


def test_null_geometry_item_without_bbox() -> None:
    item = base_item(geometry=None)
    del item["bbox"]
    assert parse_item(item, "x")["geometry"] is None


def test_all_geometry_types_validate() -> None:
    ring = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    for geom in (
        {"type": "Point", "coordinates": [0.0, 0.0, 10.0]},
        {"type": "MultiPoint", "coordinates": [[0.0, 0.0], [1, 1]]},
        {"type": "Polygon", "coordinates": [ring]},
        {"type": "MultiLineString", "coordinates": [[[0.0, 0.0], [1.0, 1.0]]]},
        {"type": "MultiPolygon", "coordinates": [[ring]]},
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0.0, 0.0]}]},
    ):
        parse_item(base_item(geometry=geom, bbox=[0.0, 0.0, 1.0, 1.0]), "x")
    assert "at least 4" in str(message_of(base_item(geometry={"type": "Polygon", "coordinates": [ring[:3]]})))


def test_stub_flag_allows_an_item_without_time() -> None:
    item = base_item(geometry=None)
    del item["bbox"]
    item["properties"].update(start_datetime=None, end_datetime=None)
    assert "are required" in str(message_of(item))
    item["properties"]["halodb:stub"] = True
    parse_item(item, "x")
    item["properties"]["halodb:stub"] = False
    assert "are required" in str(message_of(item))


def test_validate_with_pystac_rejects_what_parse_item_rejects() -> None:
    item = base_item()
    item["properties"]["datetime"] = "nope"
    with pytest.raises(InvalidItemError, match="properties.datetime"):
        validate_with_pystac(item, "bad.json")


def test_validate_with_pystac_accepts_our_items() -> None:
    out = validate_with_pystac(base_item(), "x")
    assert out["properties"]["start_datetime"].startswith("2024-08-11T10:00:00")


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    st.text(alphabet="0123456789", max_size=9),
)
def test_datetime_normalization_agrees_with_python(naive: datetime, offset_min: int, frac: str) -> None:
    sign = "-" if offset_min < 0 else "+"
    hh, mm = divmod(abs(offset_min), 60)
    text = naive.replace(microsecond=0).isoformat() + (f".{frac}" if frac else "") + f"{sign}{hh:02d}:{mm:02d}"
    when, digits = parse_datetime(text)
    expected = naive.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_min))).astimezone(timezone.utc)
    assert when == expected and digits == frac.rstrip("0")
    canonical = format_datetime(when, digits)
    assert parse_datetime(canonical) == (when, digits)
    assert datetime.fromisoformat(canonical.replace("Z", "+00:00")).replace(microsecond=0) == when


# --- keys ---------------------------------------------------------------------------------------
def test_dataset_key_from_item_and_argument() -> None:
    assert dataset_key({"id": "HALO-20240811a", "collection": "halo"}) == "halo/HALO-20240811a"
    assert dataset_key({"id": "x", "collection": "halo"}, "other") == "other/x"
    assert dataset_key({"id": "HAMP/HALO-20240811a"}, "rs") == "rs/HAMP/HALO-20240811a"
    assert split_key("rs/HAMP/HALO-20240811a") == ("rs", "HAMP/HALO-20240811a")


@pytest.mark.parametrize(
    ("item", "collection", "expected"),
    [
        ({"id": "x"}, None, "has no collection"),
        ({"id": "x", "collection": "a/b"}, None, "must not contain '/'"),
        ({"id": "x"}, "a/b", "must not contain '/'"),
        ({"id": "x"}, "", "non-empty string"),
        ({"id": "", "collection": "c"}, None, "non-empty string id"),
        ({"collection": "c"}, None, "non-empty string id"),
    ],
)
def test_dataset_key_errors(item: dict[str, Any], collection: str | None, expected: str) -> None:
    with pytest.raises(InvalidItemError, match=expected):
        dataset_key(item, collection)


@pytest.mark.parametrize("key", ["nocollection", "/x", "c/", ""])
def test_split_key_rejects_non_keys(key: str) -> None:
    with pytest.raises(InputError):
        split_key(key)


# --- data CIDs and paths -------------------------------------------------------------------------
def assets(**hrefs: str) -> dict[str, Any]:
    return {"properties": {}, "assets": {k: {"href": v} for k, v in hrefs.items()}}


@pytest.mark.parametrize(
    ("item", "cid"),
    [
        (assets(data=f"ipfs://{CID_V1}"), CID_V1),
        (assets(data=f"ipfs://{CID_V0}/products/x.zarr"), CID_V0),  # v0 stays v0
        (assets(data=f"/ipfs/{CID_V1}/a/b"), CID_V1),
        (assets(zz=f"ipfs://{CID_V0}", data=f"ipfs://{CID_V1}"), CID_V1),  # "data" preferred
        (assets(data="https://example.org/x.zarr", b=f"ipfs://{CID_V1}", a=f"ipfs://{CID_V0}"), CID_V0),
        (assets(thumb="https://example.org/x.png"), None),
        ({"assets": {}}, None),
        ({}, None),
        (assets(data=f"ipfs://{CID_V1}?format=car#frag"), CID_V1),
    ],
)
def test_data_cid(item: dict[str, Any], cid: str | None) -> None:
    assert data_cid(item) == cid


def test_first_ipfs_asset_does_not_depend_on_dict_order() -> None:
    a = assets(b=f"ipfs://{CID_V1}", a=f"ipfs://{CID_V0}")
    b = assets(a=f"ipfs://{CID_V0}", b=f"ipfs://{CID_V1}")
    assert data_cid(a) == data_cid(b) == CID_V0


def test_data_cid_rejects_a_bad_cid_with_its_path() -> None:
    with pytest.raises(InvalidItemError, match=r"x\.json: assets\.data\.href: does not name a valid CID"):
        data_cid(assets(data="ipfs://not-a-cid/x"), source="x.json")


def test_item_path() -> None:
    assert item_path({**assets(data=f"ipfs://{CID_V1}/x/y"), "properties": {"halodb:path": "p/q.zarr"}}) == "p/q.zarr"
    assert item_path(assets(data=f"ipfs://{CID_V1}/products/HALO/x.zarr")) == "products/HALO/x.zarr"
    assert item_path(assets(data=f"/ipfs/{CID_V1}/products/a%20b.zarr/")) == "products/a b.zarr"
    assert item_path(assets(data=f"ipfs://{CID_V1}")) is None
    assert item_path(assets(data="https://example.org/x")) is None


# --- reading items -----------------------------------------------------------------------------
def write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_read_items_from_a_folder_tree(tmp_path: Path) -> None:
    one = base_item(id="one")
    two = base_item(id="two")
    three = base_item(id="three")
    write(tmp_path / "b" / "z.json", one)
    write(tmp_path / "a.json", {"type": "FeatureCollection", "features": [two, three]})
    write(tmp_path / "b" / "c.ndjson", json.dumps(base_item(id="four")) + "\n\n" + json.dumps(base_item(id="five")))
    write(tmp_path / "catalog.json", {"type": "Catalog", "id": "root", "links": []})
    write(tmp_path / ".hidden" / "x.json", "not json")
    write(tmp_path / "notes.txt", "not json")
    skipped: list[tuple[str, str]] = []
    got = list(read_items([str(tmp_path)], None, on_skip=lambda s, w: skipped.append((s, w))))
    rel = [(s.replace(str(tmp_path) + os.sep, ""), i["id"]) for s, i in got]
    assert rel == [
        ("a.json:features[0]", "two"),
        ("a.json:features[1]", "three"),
        (os.path.join("b", "c.ndjson") + ":1", "four"),
        (os.path.join("b", "c.ndjson") + ":3", "five"),
        (os.path.join("b", "z.json"), "one"),
    ]
    assert skipped == [(str(tmp_path / "catalog.json"), "a STAC Catalog, not an Item")]


def test_read_items_files_keep_their_given_names(tmp_path: Path) -> None:
    f = write(tmp_path / "item.json", base_item())
    g = write(tmp_path / "bom.json", "\ufeff" + json.dumps(base_item(id="bom")))
    assert [(s, i["id"]) for s, i in read_items([str(f), str(g)], None)] == [
        (str(f), "HALO-20240811a"), (str(g), "bom")]


def test_read_items_from_stdin_ndjson_with_a_bad_line() -> None:
    text = json.dumps(base_item(id="a")) + "\n" + json.dumps(base_item(id="b")) + "\n{oops\n"
    it = read_items(["-"], io.StringIO(text))
    assert next(it)[0] == "<stdin>:1"
    assert next(it)[0] == "<stdin>:2"
    with pytest.raises(InvalidItemError) as info:
        next(it)
    assert str(info.value).startswith("<stdin>:3: invalid JSON at column 2")
    assert info.value.context["source"] == "<stdin>:3"


def test_a_line_cut_short_names_its_last_column() -> None:
    """The line is decoded without its line break: an error at its end is in its last column,
    not in column 1 of a line after it."""
    with pytest.raises(InvalidItemError) as info:
        list(read_items(["-"], io.StringIO('{"type": "Feature"}\n{"type":"Feature","id":"a"\n')))
    assert str(info.value) == "<stdin>:2: invalid JSON at column 27: Expecting ',' delimiter"


def test_a_line_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    """Standard input read with surrogateescape (as Python reads it in a C locale) turns bytes
    that are not UTF-8 into lone surrogates: named as such, with the line, never an encoder's
    message about surrogates."""
    good = json.dumps({"type": "Feature"})
    text = (good + "\n" + good.replace("Feature", "Feat\udcffure") + "\n")
    with pytest.raises(InvalidItemError) as info:
        list(read_items(["-"], io.StringIO(text)))
    assert str(info.value) == "<stdin>:2: not UTF-8 text (character 15 of the line)"


def test_bad_json_file_names_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json", '{\n  "type": "Feature",\n  "id": oops\n}')
    with pytest.raises(InvalidItemError, match=r"bad\.json:3: invalid JSON at line 3, column 9"):
        list(read_items([str(f)], None))


def test_stdin_items_then_parse_item_names_the_line() -> None:
    bad = base_item()
    bad["properties"]["datetime"] = "yesterday"
    text = json.dumps(base_item()) + "\n" + json.dumps(bad) + "\n"
    with pytest.raises(InvalidItemError, match=r"^<stdin>:2: properties\.datetime: not an RFC 3339"):
        for source, raw in read_items(["-"], io.StringIO(text)):
            parse_item(raw, source)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"type": "Foo"}, "expected 'Feature' or 'FeatureCollection', got string 'Foo'"),
        ({"id": "no type"}, "got null"),
        ([1, 2], "expected a STAC Item or FeatureCollection object"),
        ({"type": "FeatureCollection", "features": {}}, "features: expected a list"),
        ({"type": "FeatureCollection", "features": [1]}, "features[0]: expected a STAC Item object"),
    ],
)
def test_non_items_in_a_folder_are_errors(tmp_path: Path, content: Any, expected: str) -> None:
    write(tmp_path / "x.json", content)
    with pytest.raises(InvalidItemError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        list(read_items([str(tmp_path)], None))


def test_catalog_named_explicitly_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "collection.json", {"type": "Collection", "id": "c"})
    with pytest.raises(InvalidItemError, match="only Items are indexed"):
        list(read_items([str(f)], None))


def test_missing_paths_and_stdin(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        list(read_items([str(tmp_path / "nope.json")], None))
    with pytest.raises(InputError, match="standard input"):
        list(read_items(["-"], None))


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(b'{"id": "\xff"}')
    with pytest.raises(InvalidItemError, match="not UTF-8"):
        list(read_items([str(f)], None))


def test_nan_in_json_text_is_rejected_by_parse_item(tmp_path: Path) -> None:
    f = write(tmp_path / "x.json", json.dumps(base_item()).replace('"platform": "HALO"', '"gsd": NaN'))
    ((source, raw),) = read_items([str(f)], None)
    with pytest.raises(InvalidItemError, match=r"properties\.gsd: not a finite number"):
        parse_item(raw, source)


# --- stub items -----------------------------------------------------------------------------------
def test_stub_item_with_a_date_in_the_path() -> None:
    item = stub_item("products/HALO/HAMP/Level_2/HALO-20240809b", CID_V0, "orcestra", None)
    assert item == {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "products/HALO/HAMP/Level_2/HALO-20240809b",
        "collection": "orcestra",
        "geometry": None,
        "properties": {
            "title": "HALO-20240809b",
            "halodb:path": "products/HALO/HAMP/Level_2/HALO-20240809b",
            "halodb:stub": True,
            "datetime": "2024-08-09T00:00:00Z",
        },
        "links": [],
        "assets": {"data": {"href": f"ipfs://{CID_V0}", "roles": ["data"]}},
    }
    assert parse_item(item, "tree.yaml") == item
    validate_with_pystac(item, "tree.yaml")
    assert data_cid(item) == CID_V0
    assert item_path(item) == "products/HALO/HAMP/Level_2/HALO-20240809b"
    assert dataset_key(item) == "orcestra/products/HALO/HAMP/Level_2/HALO-20240809b"


def test_stub_item_zarr_and_last_component_date_wins() -> None:
    item = stub_item("raw/HALO/radar/HALO-20240929a/mom/20240930_0042.nc", CID_V1, "raw", None)
    assert item["properties"]["datetime"] == "2024-09-30T00:00:00Z"
    assert "type" not in item["assets"]["data"]
    z = stub_item("products/METEOR/CTD.zarr", CID_V1, "orcestra", None)
    assert z["assets"]["data"]["type"] == "application/vnd.zarr"


def test_stub_item_without_a_date() -> None:
    item = stub_item("products/METEOR/CTD.zarr", CID_V1, "orcestra", None)
    props = item["properties"]
    assert props["datetime"] is None and props["start_datetime"] is None and props["end_datetime"] is None
    assert parse_item(item, "tree.yaml") == item
    # M203_..._240923-2227 has a 6-digit date only; 20241399 is not a date
    for path in ("products/METEOR/rain_gauge/M203_Niederschlag_Stand_240923-2227.zarr", "x/20241399.zarr"):
        assert stub_item(path, CID_V1, "o", None)["properties"]["datetime"] is None


def test_stub_item_when_is_the_fallback_date() -> None:
    when = datetime(2024, 9, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    item = stub_item("products/METEOR/CTD.zarr", CID_V1, "o", when)
    assert item["properties"]["datetime"] == "2024-09-01T10:30:00Z"
    assert "start_datetime" not in item["properties"]
    dated = stub_item("products/HALO/HALO-20240811a.zarr", CID_V1, "o", when)
    assert dated["properties"]["datetime"] == "2024-08-11T00:00:00Z"
    parse_item(item, "x")


def test_stub_item_is_deterministic_and_independent() -> None:
    a = stub_item("products/x.zarr", CID_V1, "o", None)
    b = stub_item("products/x.zarr", CID_V1, "o", None)
    assert a == b and a is not b
    a["properties"]["title"] = "changed"
    assert stub_item("products/x.zarr", CID_V1, "o", None)["properties"]["title"] == "x.zarr"


@pytest.mark.parametrize(
    ("path", "cid", "collection"),
    [("", CID_V1, "o"), ("a//b", CID_V1, "o"), ("a/../b", CID_V1, "o"), ("a", "nope", "o"), ("a", CID_V1, "x/y")],
)
def test_stub_item_bad_input(path: str, cid: str, collection: str) -> None:
    with pytest.raises(InputError):
        stub_item(path, cid, collection, None)


def test_stub_items_for_every_leaf_of_the_real_tree() -> None:
    import yaml

    tree = yaml.safe_load(shared_data("orcestra", "tree.yaml").read_text())
    leaves: list[tuple[str, str]] = []

    def visit(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            path = f"{prefix}/{name}" if prefix else str(name)
            if isinstance(value, dict):
                visit(value, path)
            elif isinstance(value, str):
                leaves.append((path, value))

    visit(tree, "")
    assert len(leaves) == 245
    dated = 0
    for path, cid in leaves:
        item = parse_item(stub_item(path, cid, "orcestra", None), f"tree.yaml:{path}")
        assert data_cid(item) == cid and item_path(item) == path
        assert CID.parse(cid)
        dated += item["properties"]["datetime"] is not None
    assert dated > 100  # most ORCESTRA leaves carry a flight or file date


def test_committed_json_schema_is_current() -> None:
    """schemas/stac-item.schema.json is what the pydantic model generates (regenerate on change)."""
    import json as _json

    from halodb.stac.items import item_json_schema

    path = Path(__file__).resolve().parents[1] / "schemas" / "stac-item.schema.json"
    assert _json.loads(path.read_text()) == _json.loads(_json.dumps(item_json_schema())), (
        "regenerate: python -c 'import json; from halodb.stac.items import item_json_schema; "
        "print(json.dumps(item_json_schema(), indent=2, sort_keys=True))' > schemas/stac-item.schema.json"
    )
