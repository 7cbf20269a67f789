"""Reading the data (halodb/data): ``halodb.open_dataset``, ``halodb://`` through fsspec and
xarray, ``halodb show`` — at any date, every block verified.

A real home whose campaign holds two Zarr datasets (v2 consolidated, v3) written by xarray,
put into the home's block store as UnixFS, in two versions committed at two dates with
different values, and published to the local name ``latest``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import xarray as xr

import halodb
from halodb.blockstore import BlockStore
from halodb.blockstore.sqlite import DB_NAME
from halodb.data.fs import HaloDBFileSystem
from halodb.errors import DatasetError, NameNotFoundError, UnknownKeyError, VerificationError
from halodb.ipld import CID
from halodb.testing.blockstore import damage_row
from halodb.unixfs.build import put_directory, put_file

from .conftest import copy_home

DATES = ("2024-08-12T00:00:00Z", "2024-09-01T00:00:00Z")
PATHS = {"v2": "products/HALO/ta.zarr", "v3": "products/BCO/wind.zarr"}


def put_tree(store: BlockStore, path: Path) -> CID:
    """A local folder into ``store`` as a UnixFS tree (small chunks: files span blocks)."""
    if path.is_dir():
        return put_directory(store, {child.name: put_tree(store, child) for child in sorted(path.iterdir())})
    return put_file(store, path.read_bytes(), chunk=4096)


def dataset(version: int) -> xr.Dataset:
    time = np.array("2024-08-10T00:00", dtype="datetime64[ns]") + np.arange(2000) * np.timedelta64(10, "s")
    return xr.Dataset(
        {"ta": ("time", 280.0 + version + np.arange(2000) / 1000.0, {"units": "K", "long_name": "air temperature"}),
         "rh": ("time", np.full(2000, 0.5 + version / 10), {"units": "1"})},
        coords={"time": time, "lat": ("time", np.linspace(10, 14, 2000), {"units": "degrees_north"})},
        attrs={"title": f"test dataset, version {version}"},
    )


@dataclass
class Campaign:
    home: Path
    commits: list[str]
    cids: list[dict[str, str]]  # per version: which data CID each dataset had


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    root = tmp_path_factory.mktemp("data")
    reg = halodb.open(root / "home", create=True)
    commits, cids = [], []
    try:
        for version, date in enumerate(DATES):
            written = {}
            for kind, path in PATHS.items():
                folder = root / f"{kind}-{version}.zarr"
                dataset(version).to_zarr(folder, zarr_format=2 if kind == "v2" else 3, consolidated=kind == "v2",
                                         encoding={"ta": {"chunks": 500}, "rh": {"chunks": 500}})
                written[path] = str(put_tree(reg.store, folder))
            tree: dict[str, Any] = {"products": {"HALO": {"ta.zarr": written[PATHS["v2"]]},
                                                 "BCO": {"wind.zarr": written[PATHS["v3"]]}}}
            commits.append(str(reg.import_tree(tree, time=date)))
            cids.append(written)
        reg.publish("latest")
    finally:
        reg.close()
    return Campaign(root / "home", commits, cids)


@pytest.mark.parametrize("kind", ["v2", "v3"])
def test_the_date_picks_the_version(campaign: Campaign, kind: str) -> None:
    for at, version in (("2024-08-20", 0), ("2024-09-15T12:00:00Z", 1), (None, 1)):
        ds = halodb.open_dataset(PATHS[kind], at=at, name="latest", home=str(campaign.home))
        assert float(ds.ta[0]) == 280.0 + version
        assert ds.attrs["halodb:commit"] == campaign.commits[version]
        assert ds.attrs["halodb:data_cid"] == campaign.cids[version][PATHS[kind]]
        assert ds.attrs["halodb:version_time"] == DATES[version]
        assert ds.attrs["title"] == f"test dataset, version {version}"


def test_by_key_by_url_and_by_commit(campaign: Campaign) -> None:
    home = str(campaign.home)
    by_key = halodb.open_dataset("orcestra/products/HALO/ta.zarr", at="2024-08-20", name="latest", home=home)
    by_url = halodb.open_dataset("halodb://latest@2024-08-20/products/HALO/ta.zarr", home=home)
    by_commit = halodb.open_dataset(f"halodb://latest@{campaign.commits[0]}/orcestra/products/HALO/ta.zarr", home=home)
    by_cid = halodb.open_dataset(f"ipfs://{campaign.cids[0][PATHS['v2']]}", home=home)
    for ds in (by_key, by_url, by_commit, by_cid):
        assert float(ds.ta[0]) == 280.0
    assert by_cid.attrs["halodb:data_cid"] == campaign.cids[0][PATHS["v2"]] and "halodb:commit" not in by_cid.attrs
    nowhere = f"ipfs://{campaign.cids[0][PATHS['v2']]}/nope"  # a path with no Zarr store: HaloDB's error, not zarr's
    with pytest.raises(DatasetError, match=rf"^{nowhere}: no Zarr group metadata \(zarr.json, .zgroup\)$"):
        halodb.open_dataset(nowhere, home=home)


def test_xarray_opens_halodb_urls_without_an_import(campaign: Campaign) -> None:
    """fsspec finds the filesystem by its entry point (a fresh interpreter that never
    imports halodb itself), and zarr reads the chunks through it."""
    script = (
        "import xarray as xr, sys\n"
        "ds = xr.open_dataset(sys.argv[1], engine='zarr', storage_options={'home': sys.argv[2]})\n"
        "print(float(ds.ta[0]), float(ds.ta.sum()), 'halodb' in sys.modules)\n"
    )
    for at, version in (("2024-08-20", 0), ("2024-09-15", 1)):
        url = f"halodb://latest@{at}/{PATHS['v3']}"
        out = subprocess.run([sys.executable, "-c", script, url, str(campaign.home)], capture_output=True, text=True,
                             timeout=120, check=True).stdout.split()
        expected = dataset(version).ta
        assert float(out[0]) == float(expected[0]) and float(out[1]) == pytest.approx(float(expected.sum()))
    assert fsspec.get_filesystem_class("halodb") is HaloDBFileSystem


def test_errors_name_what_was_asked(campaign: Campaign) -> None:
    home = str(campaign.home)
    with pytest.raises(NameNotFoundError, match="no version at or before 2024-08-01"):
        halodb.open_dataset(PATHS["v2"], at="2024-08-01", name="latest", home=home)
    with pytest.raises(UnknownKeyError, match="products/HALO/nothing.zarr"):
        halodb.open_dataset("products/HALO/nothing.zarr", name="latest", home=home)
    with pytest.raises(NameNotFoundError, match="no-such-name"):
        halodb.open_dataset(PATHS["v2"], name="no-such-name", home=home)
    # through xarray, which asks for the store's metadata first: the error names the dataset
    for zarr_format in (2, 3):
        with pytest.raises(UnknownKeyError, match=r"no dataset 'products/HALO/nothing.zarr' in 'latest' \(commit "):
            xr.open_dataset("halodb://latest/products/HALO/nothing.zarr", engine="zarr", zarr_format=zarr_format,
                            consolidated=False, storage_options={"home": home})


def test_a_dnslink_name_is_resolved_through_dns(campaign: Campaign, dns_server: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``halodb://DOMAIN@DATE/...`` with the name published as DNSLink on a real BIND 9: the
    name comes from DNS (the home has no local name of that spelling), the date picks the
    version; a domain without a DNSLink record is an error naming it."""
    domain = "data.campaign.test"
    dns_server.delete(f"_dnslink.{domain}")
    monkeypatch.setenv("HALODB_NAMESERVER", dns_server.nameserver)
    monkeypatch.setenv("HALODB_TSIG_KEY", dns_server.key_env)
    home = str(campaign.home)
    with halodb.open(home) as reg:
        reg.publish(f"dnslink:{domain}", campaign.commits[1])
    assert dns_server.txt(f"_dnslink.{domain}") == [f"dnslink=/ipfs/{campaign.commits[1]}"]
    for at, version in (("@2024-08-20", 0), ("", 1)):
        url = f"halodb://{domain}{at}/{PATHS['v2']}"
        ds = xr.open_dataset(url, engine="zarr", storage_options={"home": home})
        assert float(ds.ta[0]) == 280.0 + version
        assert halodb.open_dataset(url, home=home).attrs["halodb:commit"] == campaign.commits[version]
    with pytest.raises(NameNotFoundError, match="nothing.campaign.test"):
        halodb.open_dataset(f"halodb://nothing.campaign.test/{PATHS['v2']}", home=home)


def test_an_ipns_name_is_resolved_through_the_node(kubo_offline: Any, tmp_path: Path) -> None:
    """``name="ipns://KEY"`` and ``halodb://ipns:KEY/...``: the name is resolved by Kubo (a key of
    the node, published as an IPNS record), and the version it names is read."""
    reg = halodb.open(tmp_path / "home", store=kubo_offline.api, create=True)
    try:
        folder = tmp_path / "ta.zarr"
        dataset(0).to_zarr(folder, zarr_format=2, consolidated=True)
        data = put_tree(reg.store, folder)
        commit = reg.import_tree({"products": {"HALO": {"ta.zarr": str(data)}}}, time=DATES[0])
        reg.publish("ipns://data-test", commit)
        by_name = halodb.open_dataset(PATHS["v2"], name="ipns://data-test", registry=reg)
        by_url = halodb.open_dataset(f"halodb://ipns:data-test@2024-08-20/{PATHS['v2']}", registry=reg)
        for ds in (by_name, by_url):
            assert float(ds.ta[0]) == 280.0 and ds.attrs["halodb:commit"] == str(commit)
        with pytest.raises(halodb.HaloDBError, match="no-such-key"):
            halodb.open_dataset(f"halodb://ipns:no-such-key/{PATHS['v2']}", registry=reg)
    finally:
        reg.close()


def test_the_filesystem_lists_stats_and_reads_ranges(campaign: Campaign) -> None:
    fs = HaloDBFileSystem(home=str(campaign.home))
    base = f"latest@2024-08-20/{PATHS['v2']}"
    names = {Path(n).name for n in fs.ls(base, detail=False)}
    assert {".zgroup", ".zmetadata", "ta", "time"} <= names
    meta = fs.cat_file(f"halodb://{base}/.zmetadata")
    assert json.loads(meta)["zarr_consolidated_format"] == 1
    assert fs.info(f"{base}/.zmetadata")["size"] == len(meta)
    assert fs.cat_file(f"{base}/.zmetadata", 5, 25) == meta[5:25]
    assert fs.cat_file(f"{base}/.zmetadata", -10) == meta[-10:]
    with fs.open(f"{base}/.zmetadata") as f:
        f.seek(7)
        assert f.read(11) == meta[7:18]
    assert fs.info(f"{base}/ta")["type"] == "directory"
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{base}/no-such-file")
    assert fs.ukey(f"{base}/.zmetadata") != fs.ukey(f"latest@2024-09-15/{PATHS['v2']}/.zmetadata")


def test_an_open_filesystem_keeps_its_version_while_the_name_moves(campaign: Campaign, tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_home(campaign.home, home)
    fs = HaloDBFileSystem(home=str(home))
    before = fs.cat_file(f"latest/{PATHS['v2']}/.zattrs")
    with halodb.open(home) as reg:
        reg.import_tree({"products": {"HALO": {"ta.zarr": campaign.cids[0][PATHS["v2"]]}}}, time="2024-10-01T00:00:00Z")
        reg.publish("latest")
    assert fs.cat_file(f"latest/{PATHS['v2']}/.zattrs") == before  # pinned: version 1
    assert "version 0" in HaloDBFileSystem(home=str(home)).cat_file(f"latest/{PATHS['v2']}/.zattrs").decode()


def test_a_tampered_block_is_refused(campaign: Campaign, tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_home(campaign.home, home)
    fs = HaloDBFileSystem(home=str(home))
    with halodb.open(home) as reg:
        chunk = fs._where(f"latest/{PATHS['v2']}/ta/0")  # noqa: SLF001 - the tree and path of one chunk
        cid = chunk[0].resolve(chunk[1])
        assert cid is not None
    damage_row(home / "blocks" / DB_NAME, cid)
    ds = halodb.open_dataset(PATHS["v2"], name="latest", home=str(home))
    with pytest.raises(VerificationError):
        ds.ta.values


def test_show(campaign: Campaign) -> None:
    run = [sys.executable, "-m", "halodb", "--home", str(campaign.home), "show", PATHS["v3"], "--name", "latest"]
    text = subprocess.run([*run, "--at", "2024-08-20"], capture_output=True, text=True, check=True).stdout
    assert campaign.commits[0] in text and "ta (time) float64 [K]  air temperature" in text
    assert "time (time)" in text and "2024-08-10T00:00:00Z .. 2024-08-10T05:33:10Z" in text
    summary = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout)
    assert summary["commit"] == campaign.commits[1] and summary["zarr_format"] == 3
    assert summary["dimensions"] == {"time": 2000}
    lat = next(c for c in summary["coordinates"] if c["name"] == "lat")
    assert (lat["min"], lat["max"], lat["units"]) == (10.0, 14.0, "degrees_north")
    assert {v["name"] for v in summary["data_variables"]} == {"ta", "rh"}
    by_cid = [sys.executable, "-m", "halodb", "--home", str(campaign.home), "show", f"ipfs://{campaign.cids[0][PATHS['v2']]}"]
    text = subprocess.run(by_cid, capture_output=True, text=True, check=True).stdout
    assert text.startswith("(by its CID: outside any version)") and "ta (time) float64 [K]" in text
    summary = json.loads(subprocess.run([*by_cid, "--json"], capture_output=True, text=True, check=True).stdout)
    assert summary["commit"] is None and summary["data_cid"] == campaign.cids[0][PATHS["v2"]]
    assert summary["zarr_format"] == 2 and summary["consolidated"]


# --- through a real Kubo node: only the blocks asked for, by RPC and by gateway ---------------
@pytest.mark.parametrize("via", ["rpc", "gateway"])
def test_only_the_chunks_read_are_fetched(kubo: Any, tmp_path: Path, via: str) -> None:
    folder = tmp_path / "ta.zarr"
    dataset(0).to_zarr(folder, zarr_format=2, consolidated=True, encoding={"ta": {"chunks": 100}, "rh": {"chunks": 100}})
    # -H: Zarr v2's metadata files are dotfiles, which ipfs add skips by default
    cid = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", "--chunker=size-2048", str(folder)).decode().strip()
    total = len(kubo.ipfs("refs", "-r", "-u", cid).decode().split())
    home = tmp_path / "reader"
    store = kubo.api if via == "rpc" else kubo.gateway
    reg = halodb.open(home, store=store, create=True)
    try:
        ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg, consolidated=True)

        def fetched() -> int:  # blocks on disk, once the cache's write-behind has written them
            return sum(1 for _ in reg.store.local_store().iter_cids())

        opened = fetched()
        assert float(ds.ta[150]) == float(dataset(0).ta[150])  # one chunk of 20
        one_chunk = fetched()
        assert 0 < one_chunk - opened <= 4, (opened, one_chunk, total)
        assert np.array_equal(ds.rh.values, dataset(0).rh.values)  # all of rh's chunks
        assert one_chunk < fetched() < total  # ta's other chunks were never fetched
    finally:
        reg.close()


def test_cached_blocks_are_read_offline(kubo: Any, tmp_path: Path) -> None:
    """Blocks read once through a remote store stay in the home's block cache: the same
    dataset opens and reads with the remote gone."""
    folder = tmp_path / "wind.zarr"
    dataset(1).to_zarr(folder, zarr_format=3, consolidated=True)
    cid = kubo.ipfs("add", "-r", "-Q", "--cid-version=1", str(folder)).decode().strip()
    home = tmp_path / "reader"
    online = halodb.open(home, store=kubo.api, create=True)
    try:
        assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=online).ta.values, dataset(1).ta.values)
    finally:
        online.close()
    offline = halodb.open(home, store="kubo+http://127.0.0.1:9")  # the discard port: nothing answers
    try:
        assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=offline).ta.values, dataset(1).ta.values)
    finally:
        offline.close()


def test_prefetch_brings_the_whole_dataset_in_one_car(kubo: Any, tmp_path: Path) -> None:
    folder = tmp_path / "ta.zarr"
    dataset(0).to_zarr(folder, zarr_format=2, consolidated=True, encoding={"ta": {"chunks": 100}})
    cid = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", "--chunker=size-2048", str(folder)).decode().strip()
    total = len(kubo.ipfs("refs", "-r", "-u", cid).decode().split()) + 1  # and the root
    home = tmp_path / "reader"
    reg = halodb.open(home, store=kubo.gateway, create=True)
    try:
        halodb.open_dataset(f"ipfs://{cid}", registry=reg, prefetch=True)
        assert reg.store.prefetch_failures == []  # type: ignore[attr-defined]  # the CAR came whole
        # the fetched blocks are written to disk behind the reader: local_store() waits for them
        assert sum(1 for _ in reg.store.local_store().iter_cids()) == total
        requests = reg.store.remote.requests  # type: ignore[attr-defined]
        assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=reg).ta.values, dataset(0).ta.values)
        assert reg.store.remote.requests == requests  # type: ignore[attr-defined]  # all from the cache
    finally:
        reg.close()


@pytest.mark.parametrize(("url", "hint"), [
    ("halodb://ipns://k51qzi5uqu5dl/products/x.zarr", "an IPNS name goes in as halodb://ipns:K51…/KEY_OR_PATH"),
    ("halodb://dnslink://campaign.org/x.zarr", "an IPNS name goes in as halodb://ipns:K51…/KEY_OR_PATH"),
    ("halodb://latest@/x.zarr", None),
])
def test_a_malformed_halodb_url_says_how_it_is_written(url: str, hint: str | None) -> None:
    from halodb.data.locate import parse_url
    from halodb.errors import InputError

    with pytest.raises(InputError, match=r"expected halodb://NAME\[@DATE-TIME\|@COMMIT\]/KEY_OR_PATH") as info:
        parse_url(url)
    assert (hint in info.value.message) if hint is not None else ("IPNS" not in info.value.message)
    assert parse_url("halodb://ipns:k51qzi5uqu5dl@2024-09-01/products/x.zarr").ref == "ipns://k51qzi5uqu5dl@2024-09-01"
