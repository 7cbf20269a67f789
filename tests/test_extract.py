"""extract_metadata / check on generated CF/ACDD datasets, through LocalTree and a real Kubo.

The expected values come from what tests/zarr_datasets.py wrote (its arrays and
attributes), never from copies of extractor output.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pystac
import pytest

from halodb.errors import DatasetError, HaloDBError, NotADatasetError
from halodb.scan import cf, geo
from halodb.scan.dataset_meta import parse_dataset_meta
from halodb.scan.extract import check, describe_dataset, extract_metadata
from halodb.filetree import LocalTree, Tree, TreeEntry
from halodb.stac.validate import validate_offline
from halodb.scan.zarr_store import METADATA_NAMES
from tests.pystac_oracle import validate_with_pystac
from halodb.stac import data_cid, item_path, parse_datetime, parse_item
from tests import zarr_datasets as zd

ROOT_CID = "bafybeigmb3ngfpq2yxbx5yzr34ggdb3va4jibycqra37thtlbakqxjhoza"


class CountingTree(Tree):
    """Wraps a Tree and records every read (path, start, end) and listing."""

    def __init__(self, inner: Tree) -> None:
        self.inner = inner
        self.reads: list[tuple[str, int, int | None]] = []
        self.listed: list[str] = []

    def list(self, path: str) -> list[TreeEntry]:
        self.listed.append(path)
        return self.inner.list(path)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        self.reads.append((path, start, end))
        return self.inner.read(path, start, end)

    def stat(self, path: str) -> TreeEntry | None:
        return self.inner.stat(path)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, zd.Spec]]:
    root = tmp_path_factory.mktemp("datasets")
    return root, zd.write_all(root)


GOOD = [f.__name__ for f in zd.GOOD]
BROKEN = [f.__name__ for f in zd.BROKEN]


def _spec(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> tuple[Path, zd.Spec]:
    root, specs = datasets
    return root, specs[maker]


def _when(text: str) -> np.datetime64:
    when, frac = parse_datetime(text)
    base = np.datetime64(when.replace(tzinfo=None), "ns")
    return base + np.timedelta64(int((frac + "000000000")[:9]), "ns")


def _list_attr(value: Any) -> list[str]:
    if isinstance(value, list):
        return value
    return [v.strip() for v in value.split(",")]


# --- the good datasets -----------------------------------------------------------------------
def test_generated_datasets_are_small(datasets: tuple[Path, dict[str, zd.Spec]]) -> None:
    root, specs = datasets
    assert len(specs) == len(zd.GOOD) + len(zd.BROKEN)
    for spec in specs.values():
        size = sum(p.stat().st_size for p in (root / spec.name).rglob("*") if p.is_file())
        assert 0 < size < 400_000, (spec.name, size)


@pytest.mark.parametrize("maker", GOOD)
def test_item_fields_match_what_was_written(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    item = extract_metadata(LocalTree(root), cid=ROOT_CID, path=spec.name, collection="orcestra")
    assert isinstance(item, pystac.Item)
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    props = d["properties"]
    a = spec.attrs
    assert d["id"] == spec.name and d["collection"] == "orcestra"
    assert props["title"] == a["title"]
    assert props["description"] == a["summary"]
    assert props["keywords"] == _list_attr(a["keywords"])
    assert props["platform"] == a["platform"]
    assert props["instruments"] == _list_attr(a.get("instruments", a.get("instrument")))
    assert props["mission"] == a["project"]
    if a["license"].replace(" ", "-") == a["license"]:
        assert props["license"] == a["license"]
    else:  # "CC BY 4.0" is normalized to the SPDX form
        assert props["license"] == a["license"].replace(" ", "-")
    names = _list_attr(a["creator_name"])
    emails = _list_attr(a["creator_email"])
    assert [c["name"] for c in props["contacts"]] == names
    assert [c["emails"][0]["value"] for c in props["contacts"]] == emails
    if "history" in a:
        assert props["processing:lineage"] == a["history"]
    if "references" in a:
        assert props["sci:publications"][0]["citation"] == a["references"]
    # time: the generator's own min and max (float-encoded times may differ by float rounding)
    assert spec.time is not None
    start, end = _when(props["start_datetime"]), _when(props["end_datetime"])
    assert abs(start - spec.time[0]) <= np.timedelta64(1, "us")
    assert abs(end - spec.time[1]) <= np.timedelta64(1, "us")
    assert props["datetime"] == props["start_datetime"]
    # space
    if spec.bbox is not None:
        assert d["bbox"] == spec.bbox
    else:
        assert spec.lat is not None and spec.lon is not None
        assert d["bbox"] == pytest.approx([spec.lon.min(), spec.lat.min(), spec.lon.max(), spec.lat.max()])
    geom = d["geometry"]
    assert geom["type"] == spec.geometry
    w, s, e, n = d["bbox"]
    coords = _positions(geom)
    assert all(w <= x <= e and s <= y <= n for x, y in coords)
    if spec.points is not None:
        assert sorted(map(tuple, coords)) == sorted(spec.points)
    if spec.geometry == "LineString":
        assert spec.lat is not None and spec.lon is not None
        originals = set(zip(spec.lon.tolist(), spec.lat.tolist()))
        assert 2 <= len(coords) <= 200
        assert all(tuple(c) in originals for c in coords)  # vertices are measured positions
        assert tuple(coords[0]) == (spec.lon[0], spec.lat[0]) and tuple(coords[-1]) == (spec.lon[-1], spec.lat[-1])
    # the data asset
    asset = d["assets"]["data"]
    assert asset["href"] == f"ipfs://{ROOT_CID}/{spec.name}"
    if spec.zarr_format is not None:
        assert asset["type"] == f"application/vnd.zarr; version={spec.zarr_format}"
    assert data_cid(d) == ROOT_CID and item_path(d) == spec.name


@pytest.mark.parametrize("maker", [m for m in GOOD if m != "meta_only"])
def test_datacube_lists_variables_with_their_attributes(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    d = extract_metadata(LocalTree(root), cid=ROOT_CID, path=spec.name).to_dict()
    cube_vars = d["properties"]["cube:variables"]
    dims = d["properties"]["cube:dimensions"]
    written = json.loads((root / spec.name / (".zmetadata" if spec.zarr_format == 2 and spec.consolidated else
                                              "zarr.json")).read_text()) if spec.consolidated else None
    for var in spec.data_vars:
        entry = cube_vars[var]
        assert entry["type"] == "data"
        attrs = _written_attrs(root / spec.name, var, spec, written)
        assert entry["unit"] == attrs["units"]
        assert entry["description"] == attrs["long_name"]
        assert entry.get("standard_name") == attrs.get("standard_name")
        assert set(entry["dimensions"]) <= set(dims)
    for name, dim in dims.items():
        assert dim["type"] in ("temporal", "spatial", "other")
        if dim["type"] == "temporal":
            assert dim["extent"][0] <= dim["extent"][1]


def _written_attrs(folder: Path, var: str, spec: zd.Spec, consolidated: Any) -> dict[str, Any]:
    if spec.zarr_format == 2:
        return dict(json.loads((folder / var / ".zattrs").read_text()))
    return dict(json.loads((folder / var / "zarr.json").read_text())["attributes"])


def _positions(geom: dict[str, Any]) -> list[list[float]]:
    if geom["type"] == "Point":
        return [geom["coordinates"]]
    if geom["type"] == "Polygon":
        return list(geom["coordinates"][0])
    return list(geom["coordinates"])


@pytest.mark.parametrize("maker", GOOD)
def test_items_validate_offline_against_stac_and_halodb(datasets: tuple[Path, dict[str, zd.Spec]], maker: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, spec = _spec(datasets, maker)
    d = extract_metadata(LocalTree(root), cid=ROOT_CID, path=spec.name, collection="orcestra").to_dict(
        include_self_link=False, transform_hrefs=False)

    def no_network(*args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"validation tried to fetch {args}")

    monkeypatch.setattr(pystac.StacIO, "read_text", no_network)
    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text", no_network)
    unchecked = validate_offline(d)  # STAC 1.1 item + GeoJSON schemas bundled with pystac
    assert set(unchecked) <= set(d["stac_extensions"])
    assert parse_item(d, spec.name)["id"] == spec.name  # HaloDB's own model
    validate_with_pystac(d, spec.name)
    assert check(LocalTree(root), spec.name).ok


@pytest.mark.parametrize("maker", [m for m in GOOD if m != "meta_only"])
def test_only_metadata_and_coordinate_chunks_are_read(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    tree = CountingTree(LocalTree(root))
    extract_metadata(tree, cid=ROOT_CID, path=spec.name)
    assert tree.reads
    chunk_arrays = set()
    for path, _, _ in tree.reads:
        rel = path[len(spec.name) + 1:]
        folder, _, base = rel.rpartition("/")
        if base in METADATA_NAMES:
            continue
        chunk_arrays.add(rel.split("/", 1)[0])
    assert chunk_arrays, "no coordinate chunk was read"
    assert chunk_arrays <= spec.coordinates, chunk_arrays - spec.coordinates
    assert not chunk_arrays & spec.data_vars
    # every data variable's chunk files exist (so "not read" means something)
    for var in spec.data_vars:
        assert any(p.name not in METADATA_NAMES for p in (root / spec.name / var).rglob("*") if p.is_file())
    # metadata documents are read once each, however often zarr asks for them
    meta_reads = [p for p, _, _ in tree.reads if p.rpartition("/")[2] in METADATA_NAMES]
    assert len(meta_reads) == len(set(meta_reads))


# --- broken datasets --------------------------------------------------------------------------
@pytest.mark.parametrize("maker", BROKEN)
def test_check_names_each_problem(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    report = check(LocalTree(root), spec.name)
    assert not report.ok
    errors = {p.attribute for p in report.errors}
    assert spec.errors <= errors, (spec.errors, str(report))
    assert spec.warnings <= {p.attribute for p in report.warnings}, str(report)
    text = str(report)
    assert text.startswith(f"{spec.name}: ")
    for attribute in spec.errors:
        assert f"error    {attribute}: " in text
    json.dumps(report.to_dict())  # printable as JSON too


@pytest.mark.parametrize("maker", BROKEN)
def test_extract_raises_a_dataset_error_with_the_report(datasets: tuple[Path, dict[str, zd.Spec]], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    with pytest.raises(DatasetError) as info:
        extract_metadata(LocalTree(root), cid=ROOT_CID, path=spec.name)
    exc = info.value
    assert str(exc).startswith(f"{spec.name}: ")
    assert exc.attribute in spec.errors | {p.attribute for p in exc.report.errors}
    assert exc.report.errors and exc.path == spec.name


def test_huge_coordinates_are_refused_before_any_chunk_is_read(datasets: tuple[Path, dict[str, zd.Spec]]) -> None:
    root, _ = datasets
    tree = CountingTree(LocalTree(root))
    report = check(tree, "broken_huge.zarr")
    assert "80000000000 bytes" in report.about("time")[0].message
    assert all(p.rpartition("/")[2] in METADATA_NAMES for p, _, _ in tree.reads)


def test_coordinate_budget_applies_to_good_data_too(datasets: tuple[Path, dict[str, zd.Spec]]) -> None:
    root, _ = datasets
    name = "HALO-20240811a_BAHAMAS.zarr"
    report = check(LocalTree(root), name, max_coordinate_bytes=70_000)  # time fits (57,600 B), lat does not
    assert report.ok is False
    assert "exceed" in report.about("IRS_LAT")[0].message
    assert report.found["coordinate bytes read"] <= 70_000


def test_undecodable_chunk_is_an_error_naming_the_array(datasets: tuple[Path, dict[str, zd.Spec]],
                                                         tmp_path: Path) -> None:
    root, _ = datasets
    copy = tmp_path / "corrupt.zarr"
    shutil.copytree(root / "HALO-20240811a_BAHAMAS.zarr", copy)
    (copy / "time" / "0").write_bytes(b"\x02\x01garbage, not a blosc frame" * 3)
    report = check(LocalTree(tmp_path), "corrupt.zarr")
    [problem] = report.about("time")
    assert problem.severity == "error" and "cannot read the array" in problem.message


def test_oversized_chunk_file_is_not_read_whole(datasets: tuple[Path, dict[str, zd.Spec]], tmp_path: Path) -> None:
    from halodb.scan.zarr_meta import open_zarr

    root, _ = datasets
    copy = tmp_path / "big.zarr"
    shutil.copytree(root / "HALO-20240811a_BAHAMAS.zarr", copy)
    (copy / "time" / "0").write_bytes(bytes(5000))
    tree = CountingTree(LocalTree(tmp_path))
    ds = open_zarr(tree, "big.zarr", max_file_bytes=4096)
    from halodb.scan.zarr_meta import Budget

    with pytest.raises(DatasetError, match="larger than the 4096 bytes"):
        ds.read(ds.variables["time"], budget=Budget(10**6))
    assert all(end is not None and end - start <= 4097 for _, start, end in tree.reads)


def test_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "readme.txt").write_text("hello")
    with pytest.raises(NotADatasetError, match="folder: not a dataset"):
        extract_metadata(LocalTree(tmp_path), cid=ROOT_CID, path="folder")
    with pytest.raises(NotADatasetError, match="nothing at this path"):
        extract_metadata(LocalTree(tmp_path), cid=ROOT_CID, path="missing")
    report = check(LocalTree(tmp_path), "folder")
    assert [p.attribute for p in report.errors] == ["(dataset)"]


def test_dataset_at_the_root_of_its_own_cid(datasets: tuple[Path, dict[str, zd.Spec]]) -> None:
    root, _ = datasets
    item = extract_metadata(LocalTree(root / "goes16_iwv.zarr"), cid=ROOT_CID).to_dict()
    assert item["id"] == ROOT_CID
    assert item["assets"]["data"]["href"] == f"ipfs://{ROOT_CID}"
    assert "halodb:path" not in item["properties"]
    assert "collection" not in item and item["links"] == []


def test_zarr_attributes_win_and_dataset_meta_fills_gaps(datasets: tuple[Path, dict[str, zd.Spec]],
                                                          tmp_path: Path) -> None:
    root, _ = datasets
    copy = tmp_path / "ds.zarr"
    shutil.copytree(root / "broken_missing_attrs.zarr", copy)
    (copy / "dataset_meta.yaml").write_text(
        "title: Filled in\nlicense: CC0-1.0\nextent:\n  temporal: [2024-08-13T12:00:00Z, 2024-08-13T13:00:00Z]\n")
    item = extract_metadata(LocalTree(tmp_path), cid=ROOT_CID, path="ds.zarr").to_dict()
    assert item["properties"]["title"] == "Filled in" and item["properties"]["license"] == "CC0-1.0"
    assert item["properties"]["start_datetime"] == "2024-08-13T12:00:00Z"
    # space still comes from the Zarr coordinates (no time coordinate, no featureType: the extent)
    assert item["bbox"] == [-50.0, 14.0, -49.0, 15.0] and item["geometry"]["type"] == "Polygon"


def test_acdd_extent_attributes_are_a_fallback(tmp_path: Path) -> None:
    import zarr

    g = zarr.open_group(tmp_path / "station.zarr", mode="w", zarr_format=2, attributes={
        "title": "BCO weather station", "time_coverage_start": "2024-08-10T00:00:00Z",
        "time_coverage_end": "2024-09-30", "geospatial_lat_min": 13.16, "geospatial_lat_max": 13.16,
        "geospatial_lon_min": -59.43, "geospatial_lon_max": -59.43})
    g.create_array("ta", data=np.zeros(3, dtype="f4"), attributes={"_ARRAY_DIMENSIONS": ["x"]})
    d = describe_dataset(LocalTree(tmp_path), path="station.zarr", item_id="station")
    assert d.item is not None
    assert d.item["properties"]["end_datetime"] == "2024-09-30T00:00:00Z"
    assert d.item["geometry"] == {"type": "Point", "coordinates": [-59.43, 13.16]}


# --- units -------------------------------------------------------------------------------------
@pytest.mark.parametrize("units, expected", [
    ("seconds since 2024-08-09", "2024-08-09T00:00:00Z"),
    ("s since 2024-8-9 0:0:0", "2024-08-09T00:00:00Z"),
    ("hours since 2024-08-09T06:00:00Z", "2024-08-09T06:00:00Z"),
    ("days since 2024-08-09 00:00:00 UTC", "2024-08-09T00:00:00Z"),
    ("minutes since 2024-08-09 12:00:00 +02:00", "2024-08-09T10:00:00Z"),
    ("milliseconds since 1970-01-01T00:00:00.5", "1970-01-01T00:00:00.5Z"),
])
def test_time_units_reference_dates(units: str, expected: str) -> None:
    assert cf.format_instant(cf.parse_time_units(units).epoch_ns) == expected


@pytest.mark.parametrize("units, calendar, message", [
    ("seconds after 2024-08-09", None, "not 'UNIT since DATE'"),
    ("fortnights since 2024-08-09", None, "unknown time unit"),
    ("months since 2024-08-09", None, "no fixed length"),
    ("days since yesterday", None, "reference date"),
    ("days since 2024-02-30", None, "invalid reference date"),
    ("days since 2024-08-09", "noleap", "calendar 'noleap' is not supported"),
    ("days since 1500-01-01", "standard", "Julian"),
])
def test_bad_time_units(units: str, calendar: str | None, message: str) -> None:
    with pytest.raises(cf.CFError, match=message):
        cf.parse_time_units(units, calendar)


def test_time_extent_ignores_fill_values_and_keeps_nanoseconds() -> None:
    attrs = {"units": "nanoseconds since 2024-08-09", "_FillValue": -1}
    extent = cf.decode_time_extent(np.array([-1, 5, 123456789012, -1]), attrs)
    assert extent is not None
    start, end = extent
    assert cf.format_instant(start) == "2024-08-09T00:00:00.000000005Z"
    assert cf.format_instant(end) == "2024-08-09T00:02:03.456789012Z"
    assert cf.decode_time_extent(np.array([np.nan, np.nan]), {"units": "days since 2024-08-09"}) is None
    dt = np.array(["2024-08-09T01:00", "NaT", "2024-08-09T00:30"], dtype="datetime64[ns]")
    extent = cf.decode_time_extent(dt, {})
    assert extent is not None
    start, end = extent
    assert (cf.format_instant(start), cf.format_instant(end)) == ("2024-08-09T00:30:00Z", "2024-08-09T01:00:00Z")
    with pytest.raises(cf.CFError, match="outside the years"):
        cf.decode_time_extent(np.array([1e15]), {"units": "days since 2024-08-09"})


def test_split_list() -> None:
    assert cf.split_list("a, b ,c") == ["a", "b", "c"]
    assert cf.split_list(["x", " y "]) == ["x", "y"]
    assert cf.split_list('"Smith, J.", Doe') == ["Smith, J.", "Doe"]
    assert cf.split_list(None) == [] and cf.split_list("") == []


def test_douglas_peucker_keeps_corners_and_limits_points() -> None:
    x = np.concatenate([np.linspace(0, 10, 5000), np.full(5000, 10.0)])
    y = np.concatenate([np.zeros(5000), np.linspace(0, 10, 5000)])
    keep = geo.simplify(x, y, 200)
    assert keep[0] == 0 and keep[-1] == len(x) - 1 and len(keep) <= 200
    assert 4999 in keep or 5000 in keep  # the corner survives
    rng = np.random.default_rng(0)
    noisy = geo.simplify(np.cumsum(rng.normal(size=20000)), np.cumsum(rng.normal(size=20000)), 200)
    assert 2 <= len(noisy) <= 200 and np.all(np.diff(noisy) > 0)


# --- dataset_meta.yaml ------------------------------------------------------------------------
def test_dataset_meta_orcestra_layout() -> None:
    meta = parse_dataset_meta(b"""
attributes:
  title: HALO flight animations
  creator_name: Lukas Kluft
extent:
  temporal: ["2024-08-09T00:00:00Z", "2024-09-30T00:00:00Z"]
  spatial: [-60, 0, -10, 25]
""", "flight_animations")
    assert meta.attrs == {"title": "HALO flight animations", "creator_name": "Lukas Kluft"}
    assert meta.time == ("2024-08-09T00:00:00Z", "2024-09-30T00:00:00Z") and meta.bbox == [-60, 0, -10, 25]


@pytest.mark.parametrize("text, attribute, message", [
    (b"title: [unclosed", None, "not valid YAML"),
    (b"title: caf\xe9", None, "not UTF-8"),
    (b"- a\n- b", None, "expected a mapping"),
    (b"bbox: [0, 95, 1, 96]", "bbox", "latitude 95.0 is outside"),
    (b"bbox: [1, 2, 3]", "bbox", "expected [west, south, east, north]"),
    (b"time: {start: 2024-08-10T00:00:00Z, end: 2024-08-09T00:00:00Z}", "time", "is after end"),
    (b"time: {start: soon, end: 2024-08-09T00:00:00Z}", "time.start", "not an RFC 3339"),
])
def test_dataset_meta_errors_name_the_key(text: bytes, attribute: str | None, message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace("[", r"\[")) as info:
        parse_dataset_meta(text, "x")
    assert info.value.attribute == attribute and info.value.file == "dataset_meta.yaml"
    assert str(info.value).startswith("x: dataset_meta.yaml: ")


def test_dataset_meta_problem_in_check(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset_meta.yaml").write_bytes(b"title: x\nbbox: [0, 0, 1]\n")
    report = check(LocalTree(tmp_path), "d")
    # a broken dataset_meta.yaml is all there is: one error naming its key, nothing guessed
    assert [(p.attribute, p.file) for p in report.errors] == [("bbox", "dataset_meta.yaml")]


def test_errors_are_halodb_errors() -> None:
    assert issubclass(DatasetError, HaloDBError) and issubclass(NotADatasetError, DatasetError)


# --- through a real Kubo ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def kubo_tree(kubo: Any, datasets: tuple[Path, dict[str, zd.Spec]]) -> Iterator[tuple[Any, str]]:
    from halodb.blockstore.kubo import KuboStore
    from halodb.unixfs import UnixFSTree

    root, _ = datasets
    # -H: Zarr v2 metadata (.zgroup, .zattrs, .zarray) are dotfiles, which ipfs add skips by default
    cid = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", str(root)).decode().strip()
    store = KuboStore(kubo.api)
    yield UnixFSTree(store, cid), cid
    store.close()


@pytest.mark.parametrize("maker", GOOD)
def test_extraction_through_unixfs_on_kubo_matches_local(datasets: tuple[Path, dict[str, zd.Spec]],
                                                          kubo_tree: tuple[Any, str], maker: str) -> None:
    root, spec = _spec(datasets, maker)
    tree, cid = kubo_tree
    counting = CountingTree(tree)
    remote = extract_metadata(counting, cid=cid, path=spec.name, collection="orcestra").to_dict()
    local = extract_metadata(LocalTree(root), cid=cid, path=spec.name, collection="orcestra").to_dict()
    assert remote == local
    assert remote["assets"]["data"]["href"] == f"ipfs://{cid}/{spec.name}"
    for path, _, _ in counting.reads:
        assert path.rpartition("/")[2] in METADATA_NAMES | {"dataset_meta.yaml"} or \
            path[len(spec.name) + 1:].split("/", 1)[0] in spec.coordinates


@pytest.mark.parametrize("maker", ["non_utf8", "huge_coordinate", "bad_units"])
def test_broken_datasets_through_unixfs(datasets: tuple[Path, dict[str, zd.Spec]], kubo_tree: tuple[Any, str],
                                        maker: str) -> None:
    _, spec = _spec(datasets, maker)
    tree, _ = kubo_tree
    report = check(tree, spec.name)
    assert spec.errors <= {p.attribute for p in report.errors}, str(report)


# --- halodb check ---------------------------------------------------------------------------
def test_cli_check(datasets: tuple[Path, dict[str, zd.Spec]]) -> None:
    from click.testing import CliRunner

    from halodb.cli.commands import cli

    root, specs = datasets
    good = CliRunner().invoke(cli, ["check", str(root / specs["bahamas"].name)])
    assert good.exit_code == 0, good.output
    assert good.output.startswith(f"{specs['bahamas'].name}: ok")
    bad = CliRunner().invoke(cli, ["check", str(root / specs["non_utf8"].name)])
    assert bad.exit_code == 1
    assert "error    ta.long_name: attribute ta.long_name is not UTF-8 text" in bad.output
    as_json = CliRunner().invoke(cli, ["check", "--json", str(root / specs["missing_attrs"].name)])
    doc = json.loads(as_json.output)
    assert as_json.exit_code == 1 and doc["ok"] is False
    assert {p["attribute"] for p in doc["problems"] if p["severity"] == "warning"} >= specs["missing_attrs"].warnings
    small = CliRunner().invoke(cli, ["check", "--max-coordinate-mb", "0.01", str(root / specs["bahamas"].name)])
    assert small.exit_code == 1 and "exceed" in small.output


# --- details -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [2, 3])
def test_native_datetime64_time_coordinates(tmp_path: Path, fmt: Literal[2, 3]) -> None:
    import zarr

    g = zarr.open_group(tmp_path / "dt.zarr", mode="w", zarr_format=fmt, attributes={"title": "x"})
    t = np.array(["2024-08-09T10:00:00.25", "NaT", "2024-08-09T12:00"], dtype="datetime64[ns]")
    kw: dict[str, Any] = {"dimension_names": ["time"]} if fmt == 3 else {"attributes": {"_ARRAY_DIMENSIONS": ["time"]}}
    g.create_array("time", data=t, **kw)
    d = describe_dataset(LocalTree(tmp_path), path="dt.zarr")
    assert d.item is not None, str(d.report)
    props = d.item["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2024-08-09T10:00:00.25Z", "2024-08-09T12:00:00Z")
    assert props["cube:dimensions"]["time"] == {"type": "temporal", "extent": [props["start_datetime"],
                                                                                props["end_datetime"]]}


@pytest.mark.parametrize("key, doc, attribute", [
    (".zmetadata", b'{"metadata": {"ta/.zattrs": {"units": "K", "comment": "\\udce9t\\u00e9"}}}', "ta.comment"),
    ("zarr.json", b'{"attributes": {"title": "ok", "keywords": ["a", "\\ud800"]}}', "keywords[1]"),
    ("zarr.json", b'{"consolidated_metadata": {"metadata": {"lat": {"attributes": {"units": "\\udcff"}}}}}',
     "lat.units"),
    ("sub/.zattrs", b'{"history": "caf\xe9"}', "sub.history"),
])
def test_non_utf8_text_is_named_by_attribute(key: str, doc: bytes, attribute: str) -> None:
    from halodb.scan.zarr_store import check_metadata_document

    with pytest.raises(DatasetError) as info:
        check_metadata_document(doc, key, "x.zarr")
    assert info.value.attribute == attribute and info.value.file == key
    assert str(info.value).startswith(f"x.zarr: {key}: attribute {attribute} is not UTF-8 text")
