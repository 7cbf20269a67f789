"""halodb scan / check CID / tree build|export against a real Kubo node.

The generated CF/ACDD datasets (tests/zarr_datasets.py) are added with ``ipfs add -r -H``,
assembled into a campaign tree with ``build_tree`` (nested folders, one HAMT-sharded
folder of small ``dataset_meta.yaml`` datasets, a plain file, an empty folder, the broken
datasets), scanned through a registry whose store is the node (and through its HTTP
gateway), committed, synced and queried with SQL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import halodb
from halodb.errors import InputError
from halodb.scan.scan_cache import Extracted, ScanCache
from halodb.scan.scanner import ScanReport, scan

from . import zarr_datasets as zd
from .conftest import run_cli, run_cli_in_process, run_cli_on_a_terminal

#: the ``scanned`` fixture: the registry, its first scan's report and the progress calls
Scanned = tuple[halodb.Registry, ScanReport, list[tuple[int, int]]]

#: where each good dataset goes in the campaign tree
PLACES = {
    "dropsondes_level3": "products/HALO/dropsondes/Level_3/PERCUSION_Level_3.zarr",
    "bahamas": "products/HALO/BAHAMAS/HALO-20240811a.zarr",
    "radiosonde": "products/METEOR/radiosondes/RS_20240820_1045.zarr",
    "gridded_v3": "products/satellite/GOES16_IWV.zarr",
    "atr_v3": "products/ATR/CORE_NAV_1HZ_L2.zarr",
    "meta_only": "products/BCO/CORAL_quicklooks",
}
BROKEN = [make.__name__ for make in zd.BROKEN]
N_SHARDED = 12  # datasets in the HAMT-sharded folder


def sonde_day(i: int) -> str:
    return f"2024-08-{10 + i:02d}"


@dataclass
class Campaign:
    kubo: Any
    folder: Path
    specs: dict[str, zd.Spec]
    cids: dict[str, str]  # generator name (or "sharded") -> CID
    tree: dict[str, Any]
    root: str
    paths: dict[str, str]  # campaign path -> generator name / sharded dataset name
    sondes: dict[str, str]  # name in the sharded folder -> CID

    def build(self, tree: dict[str, Any]) -> str:
        from halodb.unixfs.mfs import build_tree

        return str(build_tree(self.kubo.api, tree))


def add(kubo: Any, path: Path, *opts: str) -> str:
    # -H: Zarr v2 metadata (.zgroup, .zattrs, .zarray) are dotfiles, which ipfs add skips by default
    out: str = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", *opts, str(path)).decode().strip()
    return out


def nest(flat: dict[str, str | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, cid in flat.items():
        *folders, name = path.split("/")
        node = out
        for f in folders:
            node = node.setdefault(f, {})
        node[name] = cid
    return out


@pytest.fixture(scope="module")
def campaign(kubo: Any, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    folder = tmp_path_factory.mktemp("campaign-data")
    specs = zd.write_all(folder / "datasets")
    cids = {name: add(kubo, folder / "datasets" / spec.name) for name, spec in specs.items()}
    # a folder of small datasets, HAMT-sharded by Kubo (more links than --max-directory-links)
    sondes = folder / "sondes"
    for i in range(N_SHARDED):
        d = sondes / f"BCO_sonde_{i:02d}"
        d.mkdir(parents=True)
        meta = {"title": f"BCO radiosonde {i}", "summary": "A radiosonde ascent from the BCO.", "platform": "BCO",
                "license": "CC-BY-4.0", "time": {"start": f"{sonde_day(i)}T11:00:00Z", "end": f"{sonde_day(i)}T12:30:00Z"},
                "bbox": [-59.5, 13.1, -59.0 + i / 100, 13.5]}
        (d / "dataset_meta.yaml").write_text(yaml.safe_dump(meta))
        (d / "ascent.csv").write_text(f"z,ta\n0,{300 + i}\n")
    lines = kubo.ipfs("add", "-r", "-H", "--cid-version=1", "--max-directory-links", "4", "--max-hamt-fanout", "16",
                      str(sondes)).decode().splitlines()
    added = {line.split()[2]: line.split()[1] for line in lines}  # "added CID sondes/NAME"
    cids["sharded"] = added["sondes"]
    sonde_cids = {k.split("/")[1]: v for k, v in added.items() if k.count("/") == 1}
    (folder / "README.md").write_text("ORCESTRA campaign data\n")
    readme = kubo.ipfs("add", "-Q", "--cid-version=1", str(folder / "README.md")).decode().strip()
    flat: dict[str, str | None] = {path: cids[name] for name, path in PLACES.items()}
    paths = {path: name for name, path in PLACES.items()}
    for name in BROKEN:
        flat[f"broken/{specs[name].name}"] = cids[name]
        paths[f"broken/{specs[name].name}"] = name
    flat["products/BCO/sondes"] = cids["sharded"]
    for i in range(N_SHARDED):
        paths[f"products/BCO/sondes/BCO_sonde_{i:02d}"] = f"sonde{i}"
    flat["README.md"] = readme
    flat["products/empty"] = None
    tree = nest(flat)
    from halodb.unixfs.mfs import build_tree

    root = str(build_tree(kubo.api, tree))
    return Campaign(kubo, folder, specs, cids, tree, root, paths, sonde_cids)


@pytest.fixture(scope="module")
def scanned(campaign: Campaign, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    """A registry on the Kubo node after one scan of the whole campaign, committed, published and synced."""
    reg = halodb.open(tmp_path_factory.mktemp("scan-home"), store=campaign.kubo.api, create=True)
    calls: list[tuple[int, int]] = []
    report = reg.scan(campaign.root, workers=4, progress=lambda done, total: calls.append((done, total)))
    reg.commit("scan 1", time="2024-09-01T00:00:00Z")
    reg.publish("latest")
    reg.sync("latest")
    yield reg, report, calls
    reg.close()


def iso(value: np.datetime64) -> datetime:
    return datetime.fromisoformat(str(value.astype("datetime64[us]")) + "+00:00")


def test_the_sharded_folder_really_is_a_hamt(campaign: Campaign) -> None:
    from halodb.blockstore.kubo import KuboStore
    from halodb.unixfs import UnixFSTree

    store = KuboStore(campaign.kubo.api)
    node = UnixFSTree(store, campaign.root).node(halodb.CID.parse(campaign.cids["sharded"]))
    assert node.hamt
    store.close()


def test_scan_finds_extracts_and_stages_every_dataset(campaign: Campaign, scanned: Scanned) -> None:
    reg, report, calls = scanned
    by_path = {d.path: d for d in report.datasets}
    assert set(by_path) == set(campaign.paths)
    assert report.count("extracted") == len(campaign.paths)  # a fresh home: nothing cached
    assert {p for p, d in by_path.items() if d.failed} == {p for p, n in campaign.paths.items() if n in BROKEN}
    assert report.skipped.files == 1 and report.skipped.folders == 1
    assert set(report.skipped.examples) == {"README.md", "products/empty/"}
    assert report.walk_error is None and not report.removed and report.staged
    assert calls[-1] == (len(set(campaign.cids.values())) - 1 + N_SHARDED,) * 2
    for d in report.datasets:
        if not d.failed:
            assert d.change == "added" and d.key == d.path  # collection = first folder, id = the rest
            name = campaign.paths[d.path]
            assert d.cid == (campaign.sondes[d.path.rsplit("/", 1)[1]] if name.startswith("sonde") else campaign.cids[name])


def test_broken_datasets_name_path_attribute_and_file(campaign: Campaign, scanned: Scanned) -> None:
    _, report, _ = scanned
    failed = {d.path: d for d in report.failed}
    for name in BROKEN:
        spec = campaign.specs[name]
        d = failed[f"broken/{spec.name}"]
        assert spec.errors <= {e["attribute"] for e in d.errors}, d.errors
        assert d.message is not None and d.message.startswith(f"broken/{spec.name}: ")
        assert d.key is None and d.change is None
    utf8 = failed[f"broken/{campaign.specs['non_utf8'].name}"]
    assert any(e["file"] == "ta/.zattrs" for e in utf8.errors), utf8.errors
    assert f"error    broken/{campaign.specs['bad_units'].name}: time: " in str(report)


def test_sql_over_the_synced_items_matches_the_generators(campaign: Campaign, scanned: Scanned) -> None:
    reg, _, _ = scanned
    cols, rows = reg.sql("SELECT key, path, data_cid, platform, start_datetime, end_datetime, datetime, bbox, "
                         "collection, id FROM items ORDER BY path")
    got = {r[1]: dict(zip(cols, r)) for r in rows}
    good = {p: n for p, n in campaign.paths.items() if n not in BROKEN}
    assert set(got) == set(good)
    for name, path in PLACES.items():
        row, spec = got[path], campaign.specs[name]
        assert row["data_cid"] == campaign.cids[name]
        assert row["platform"] == spec.attrs["platform"]
        assert spec.time is not None
        start = row["start_datetime"] or row["datetime"]
        end = row["end_datetime"] or row["datetime"]
        assert start == iso(spec.time[0]) and end == iso(spec.time[1]), path
        if spec.bbox is not None:
            assert row["bbox"] == pytest.approx(spec.bbox)
        else:
            assert spec.lat is not None and spec.lon is not None
            expected = [spec.lon.min(), spec.lat.min(), spec.lon.max(), spec.lat.max()]
            assert row["bbox"] == pytest.approx(expected, abs=1e-6), path
        assert (row["collection"], row["id"]) == ("products", path.split("/", 1)[1])
    # the HAMT-sharded folder's datasets: time ranges and bboxes as written
    for i in range(N_SHARDED):
        row = got[f"products/BCO/sondes/BCO_sonde_{i:02d}"]
        assert row["start_datetime"] == datetime.fromisoformat(f"{sonde_day(i)}T11:00:00+00:00")
        assert row["bbox"] == pytest.approx([-59.5, 13.1, -59.0 + i / 100, 13.5])
    # queries by platform, time range and bbox
    _, hits = reg.sql("SELECT path FROM items WHERE platform = 'HALO' ORDER BY path")
    assert [h[0] for h in hits] == sorted([PLACES["bahamas"], PLACES["dropsondes_level3"]])
    _, hits = reg.sql("SELECT count(*) FROM items WHERE start_datetime >= TIMESTAMPTZ '2024-08-15T00:00:00Z' "
                      "AND path LIKE 'products/BCO/sondes/%'")
    assert hits[0][0] == sum(1 for i in range(N_SHARDED) if sonde_day(i) >= "2024-08-15")
    _, hits = reg.sql("SELECT path FROM items WHERE bbox[1] > -35 AND bbox[3] < -20 ORDER BY path")
    assert [h[0] for h in hits] == sorted([PLACES["radiosonde"], PLACES["bahamas"]])


def test_rescan_after_one_dataset_changed_extracts_only_that_one(campaign: Campaign,
                                                                 scanned: Scanned) -> None:
    reg, first, _ = scanned
    cache = ScanCache(Path(reg.home) / "scan-cache")
    entries = len(cache)
    assert entries == len(set(campaign.cids.values())) - 1 + N_SHARDED  # errors are cached too
    same = reg.scan(campaign.root)
    assert same.count("extracted") == 0 and same.count("cached") == len(first.datasets)
    assert same.count(change="unchanged") == len(first.datasets) - len(BROKEN) and not reg.staged()
    # a changed copy of BAHAMAS (a producer fixed its title), added again
    copy = campaign.folder / "bahamas-v2" / campaign.specs["bahamas"].name
    shutil.copytree(campaign.folder / "datasets" / campaign.specs["bahamas"].name, copy)
    zattrs = json.loads((copy / ".zattrs").read_text())
    (copy / ".zattrs").write_text(json.dumps({**zattrs, "title": "BAHAMAS data of HALO flight HALO-20240811a, v2"}))
    new_cid = add(campaign.kubo, copy)
    tree = json.loads(json.dumps(campaign.tree))
    tree["products"]["HALO"]["BAHAMAS"]["HALO-20240811a.zarr"] = new_cid
    before = reg.head
    assert before is not None  # the fixture committed the first scan
    report = reg.scan(campaign.build(tree))
    assert report.count("extracted") == 1 and len(cache) == entries + 1
    (changed,) = [d for d in report.datasets if d.change == "changed"]
    assert changed.path == PLACES["bahamas"] and changed.cid == new_cid and changed.status == "extracted"
    reg.commit("BAHAMAS v2", time="2024-09-02T00:00:00Z")
    (change,) = reg.diff(before, "HEAD")
    assert change.key == PLACES["bahamas"] and change.new is not None and change.new.data == new_cid
    _, title = reg.get(PLACES["bahamas"])[1:]
    assert title["properties"]["title"].endswith(", v2")


def test_retry_errors_and_a_corrupt_cache_file_read_again(campaign: Campaign, scanned: Scanned) -> None:
    reg, _, _ = scanned
    report = reg.scan(campaign.root, retry_errors=True, remove=False)
    assert report.count("extracted") == len(BROKEN)
    cache = ScanCache(Path(reg.home) / "scan-cache")
    victim = cache._file(campaign.cids["atr_v3"])
    victim.write_text(victim.read_text()[:40])  # as if written by a crash without the atomic rename
    report = reg.scan(campaign.root, remove=False)
    assert report.count("extracted") == 1
    assert [d.cid for d in report.datasets if d.status == "extracted"][0] == victim.stem
    reg.reset_stage()


def test_removed_datasets_are_staged_for_removal_only_under_the_prefix(campaign: Campaign,
                                                                        scanned: Scanned) -> None:
    reg, _, _ = scanned
    assert not reg.staged()
    tree = json.loads(json.dumps(campaign.tree))
    del tree["products"]["ATR"]
    root = campaign.build(tree)
    kept = reg.scan(root, remove=False)
    assert kept.not_removed == [PLACES["atr_v3"]] and not kept.removed and not reg.staged().removals
    # scanning a sub-folder only touches datasets under it
    sub = reg.scan(f"ipfs://{root}/products/HALO")
    assert sub.prefix == "products/HALO" and not sub.removed and len(sub.datasets) == 2
    report = reg.scan(root)
    assert report.removed == [PLACES["atr_v3"]] and reg.staged().removals == {PLACES["atr_v3"]}
    assert "removed  products/ATR/CORE_NAV_1HZ_L2.zarr (no longer in the tree)" in str(report)
    reg.reset_stage()


def test_walk_limits_end_the_walk_with_an_error_and_remove_nothing(campaign: Campaign,
                                                                   scanned: Scanned) -> None:
    reg, _, _ = scanned
    report = reg.scan(campaign.root, max_depth=2)
    assert report.walk_error is not None and "deeper than 2 levels" in report.walk_error
    assert not report.removed and report.not_removed and not report.ok
    assert "nothing was removed" in str(report)
    reg.reset_stage()


def test_roots_by_name_prefix_and_collection(campaign: Campaign, scanned: Scanned) -> None:
    reg, _, _ = scanned
    reg.names.publish("campaign-data", halodb.CID.parse(campaign.root))
    report = reg.scan("campaign-data/products/BCO/sondes", collection="bco")
    assert report.root == campaign.cids["sharded"] and report.prefix == "products/BCO/sondes"
    assert report.count("cached") == N_SHARDED and report.count("extracted") == 0
    keys = {d.key for d in report.datasets}
    assert keys == {f"bco/products/BCO/sondes/BCO_sonde_{i:02d}" for i in range(N_SHARDED)}
    # the new keys take the paths over: the old keys are removed in the same stage
    assert set(report.moved) == {f"products/BCO/sondes/BCO_sonde_{i:02d}" for i in range(N_SHARDED)}
    reg.reset_stage()
    # a root that is itself a dataset: its path is the prefix
    one = reg.scan(f"ipfs://{campaign.root}/{PLACES['atr_v3']}")
    assert [(d.path, d.key, d.change) for d in one.datasets] == [(PLACES["atr_v3"], PLACES["atr_v3"], "unchanged")]
    alone = scan(reg.store, campaign.cids["atr_v3"])
    assert alone.datasets[0].failed and "give --prefix" in str(alone.datasets[0].message)
    named = scan(reg.store, campaign.cids["atr_v3"], prefix="ATR/nav.zarr")
    assert named.datasets[0].key == "ATR/nav.zarr" and named.datasets[0].item is not None
    assert named.datasets[0].item["assets"]["data"]["href"] == f"ipfs://{campaign.cids['atr_v3']}"
    with pytest.raises(InputError, match="not a UnixFS folder"):
        reg.scan("latest")  # a name of a HaloDB commit
    with pytest.raises(InputError, match="nothing at 'products/nowhere'"):
        reg.scan(f"/ipfs/{campaign.root}/products/nowhere")
    with pytest.raises(InputError, match="is a file"):
        reg.scan(f"ipfs://{campaign.root}/README.md")


def test_scan_through_the_nodes_http_gateway_gives_the_same_items(campaign: Campaign, scanned: Scanned,
                                                                   tmp_path: Path) -> None:
    reg, first, _ = scanned
    with halodb.open(tmp_path / "gw-home", store=campaign.kubo.gateway, create=True) as gw:
        report = gw.scan(f"ipfs://{campaign.root}/products")
        assert report.count("extracted") == len(report.datasets) == len(PLACES) + N_SHARDED
        mine = {k: e.item for k, e in gw.staged().upserts.items()}
    theirs = {d.key: d.item for d in first.datasets if d.key is not None}
    from halodb.ipld import make_block

    assert mine == {k: make_block(v)[0] for k, v in theirs.items()}


def test_cli_scan_check_tree(campaign: Campaign, tmp_path: Path) -> None:
    home = tmp_path / "home"
    api = campaign.kubo.api
    assert run_cli_in_process(home, "--store", api, "init").code == 0
    r = run_cli_in_process(home, "--store", api, "scan", campaign.root, "--json", "--workers", "3")
    assert r.code == 1, r.err  # the broken datasets failed; the rest was staged
    doc = json.loads(r.out)
    assert doc["summary"]["failed"] == len(BROKEN) and doc["summary"]["added"] == len(PLACES) + N_SHARDED
    c1 = json.loads(run_cli_in_process(home, "--store", api, "commit", "-m", "scan", "--json").out)["commit"]
    tree = json.loads(json.dumps(campaign.tree))
    del tree["products"]["ATR"]
    r = run_cli_in_process(home, "--store", api, "scan", campaign.build(tree))
    assert r.code == 1 and "removed  products/ATR/CORE_NAV_1HZ_L2.zarr" in r.out, r.out + r.err
    assert "0 extracted" in r.out
    c2 = json.loads(run_cli_in_process(home, "--store", api, "commit", "-m", "ATR withdrawn", "--json").out)["commit"]
    r = run_cli_in_process(home, "--store", api, "diff", c1, c2, "--json")
    assert [(c["key"], c["change"]) for c in json.loads(r.out)] == [(PLACES["atr_v3"], "removed")]
    r = run_cli_in_process(home, "--store", api, "scan", f"ipfs://{campaign.root}/products", "--collection", "orcestra")
    assert r.code == 0, r.err
    assert "0 extracted" in r.out and f"{len(PLACES) + N_SHARDED} from cache" in r.out
    r = run_cli_in_process(home, "--store", api, "commit", "-m", "rekey")  # new keys take the paths over in one commit
    assert r.code == 0, r.err
    r = run_cli_in_process(home, "--store", api, "log", "-n", "1", "--json")
    (rekey,) = json.loads(r.out)
    n = len(PLACES) + N_SHARDED
    assert (rekey["added"], rekey["removed"], rekey["datasets"]) == (n, n - 1, n), rekey  # ATR was gone already
    # check through the store: a good and a broken dataset on IPFS
    r = run_cli_in_process(home, "--store", api, "check", f"ipfs://{campaign.root}/{PLACES['atr_v3']}", "--json")
    assert r.code == 0 and json.loads(r.out)["ok"] is True, r.out + r.err
    bad = f"/ipfs/{campaign.root}/broken/{campaign.specs['bad_units'].name}"
    r = run_cli_in_process(home, "--store", api, "check", bad, "--json")
    assert r.code == 1 and "time" in {p["attribute"] for p in json.loads(r.out)["problems"]}
    r = run_cli_in_process(home, "--store", api, "check", "no-such-folder")
    assert r.code == 2 and "not a CID" in r.err
    # tree build / export
    (tmp_path / "tree.yaml").write_text(yaml.safe_dump(campaign.tree))
    r = run_cli_in_process(home, "--store", api, "tree", "build", str(tmp_path / "tree.yaml"), "--json")
    assert r.code == 0 and json.loads(r.out)["root"] == campaign.root, r.err
    r = run_cli_in_process(home, "tree", "build", str(tmp_path / "tree.yaml"), env={"HALODB_KUBO": api})
    assert r.code == 0 and r.out.strip() == campaign.root, r.err
    r = run_cli_in_process(home, "tree", "build", str(tmp_path / "tree.yaml"), env={"HALODB_KUBO": ""})
    assert r.code == 2 and "needs a Kubo node" in r.err
    r = run_cli_in_process(home, "--store", api, "tree", "export", campaign.root, "-o", str(tmp_path / "out.yaml"))
    assert r.code == 0, r.err
    expected = json.loads(json.dumps(campaign.tree))
    expected["products"]["BCO"]["sondes"] = campaign.sondes  # not a dataset: exported folder by folder
    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == expected
    r = run_cli_in_process(home, "--store", api, "tree", "export", f"ipfs://{campaign.root}/products/BCO")
    assert yaml.safe_load(r.out) == expected["products"]["BCO"]


def test_missing_blocks_are_a_per_dataset_error_that_is_not_cached(campaign: Campaign, tmp_path: Path) -> None:
    """A dataset whose file blocks the node lost (``ipfs block rm``): reported, not cached, read once they are back."""
    from halodb.unixfs import UnixFSTree

    lost = tmp_path / "lost-sonde"
    lost.mkdir()
    (lost / "dataset_meta.yaml").write_text(yaml.safe_dump({"title": "a sonde whose blocks are gone",
                                                            "time": "2024-08-30T10:00:00Z"}))
    cid = add(campaign.kubo, lost, "--pin=false")
    root = campaign.build({"ok": {"coral": campaign.cids["meta_only"]}, "lost": {"sonde": cid}})
    with halodb.open(tmp_path / "home", store=campaign.kubo.api, create=True) as reg:
        meta_block = UnixFSTree(reg.store, cid).resolve("dataset_meta.yaml")
        campaign.kubo.ipfs("block", "rm", str(meta_block))
        report = reg.scan(root)
        (bad,) = report.failed
        assert bad.path == "lost/sonde" and bad.status == "unread" and str(meta_block) in str(bad.message)
        assert [d.key for d in report.datasets if not d.failed] == ["ok/coral"]
        assert len(ScanCache(Path(reg.home) / "scan-cache")) == 1  # the failure may pass: not cached
        add(campaign.kubo, lost)  # the blocks are back
        again = reg.scan(root)
        assert again.ok and again.count("extracted") == 1 and again.count("cached") == 1


def test_progress_bar_only_on_a_terminal(campaign: Campaign, tmp_path: Path) -> None:
    home = tmp_path / "home"
    api = campaign.kubo.api
    assert run_cli(home, "--store", api, "init").code == 0
    root = f"ipfs://{campaign.root}/products/HALO"
    plain = run_cli(home, "--store", api, "scan", root)
    assert plain.code == 0 and "extracting" not in plain.err, plain.err
    shown = run_cli_on_a_terminal(home, "--store", api, "scan", root)
    assert shown.code == 0, shown.out
    assert "extracting" in shown.err and "2 dataset(s)" in shown.out


@pytest.mark.parametrize("body", [
    {"found": ["not", "a", "map"]}, {"problems": "oops"}, {"problems": [1, 2]}, {"item": "not an item"},
])
def test_a_scan_cache_entry_of_the_wrong_shape_is_a_miss(tmp_path: Path, body: dict[str, object]) -> None:
    cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    cache = ScanCache(tmp_path)
    cache.put(Extracted(cid, {"type": "Feature"}, [], {}), max_coordinate_bytes=1)
    assert cache.get(cid, max_coordinate_bytes=1) is not None
    path = cache._file(cid)
    path.write_text(json.dumps({**json.loads(path.read_text()), **body}))
    assert cache.get(cid, max_coordinate_bytes=1) is None


def test_a_zarr_named_folder_without_its_metadata_is_pointed_out() -> None:
    """`ipfs add -r` without -H leaves a Zarr v2 store's dotfiles out: the scan finds no
    dataset there, and says why it probably is so."""
    from halodb.blockstore import MemoryStore
    from halodb.unixfs.build import put_directory, put_file

    store = MemoryStore()
    array = put_directory(store, {"0.0": put_file(store, b"\x00" * 64)})  # chunks, no .zarray
    bare = put_directory(store, {"ta": array})  # no .zgroup, .zattrs
    root = put_directory(store, {"products": put_directory(store, {"HALO": put_directory(store, {"ta.zarr": bare})}),
                                 "notes": put_directory(store, {"plain": array})})
    report = scan(store, str(root))
    assert not report.datasets and report.skipped.zarr_named == ["products/HALO/ta.zarr"]
    assert report.to_dict()["skipped"]["zarr_named"] == ["products/HALO/ta.zarr"]
    note = [line for line in report.lines() if line.startswith("note: ")]
    assert note == ["note: products/HALO/ta.zarr named like a Zarr store but without Zarr metadata: a Zarr v2 store "
                    "added with `ipfs add -r` needs -H (--hidden), or its .zgroup, .zattrs and .zarray are left out"]
