"""Reading data chunk by chunk through a trustless gateway: one CAR request per chunk file
(``GatewayStore.fetch_file``, ``?format=car&dag-scope=entity``), every block verified.

A real Kubo node (tests/kubo_node.py) serves Zarr stores and a large file added with small
blocks (``--chunker=size-2048``: a chunk file spans several blocks); a counting relay
(tests/loopback.Relay) in front of its gateway counts the requests and injects faults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import halodb
from halodb.data.fs import HaloDBFileSystem
from halodb.errors import VerificationError

from .loopback import relay

CHUNKER = "--chunker=size-2048"


def zarr_store(folder: Path) -> xr.Dataset:
    """A Zarr v2 store of two variables in chunk files of 8,000 bytes (four 2 kB blocks each)."""
    ds = xr.Dataset({"ta": ("time", 280.0 + np.arange(8000) / 1000.0), "rh": ("time", np.linspace(0, 1, 8000))})
    ds.to_zarr(folder, zarr_format=2, consolidated=True,
               encoding={v: {"chunks": 1000, "compressors": None} for v in ("ta", "rh")})
    return ds


@pytest.fixture(scope="module")
def dataset(kubo: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, xr.Dataset]:
    folder = tmp_path_factory.mktemp("data") / "x.zarr"
    ds = zarr_store(folder)
    # -H: Zarr v2's metadata files are dotfiles, which ipfs add skips by default
    cid = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", CHUNKER, str(folder)).decode().strip()
    return cid, ds


def file_cid(kubo: Any, path: str) -> str:
    return str(kubo.ipfs("resolve", f"/ipfs/{path}").decode().strip().rsplit("/", 1)[-1])


def cars(calls: list[str]) -> list[str]:
    return [c for c in calls if "format=car" in c]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "reader"


def test_a_chunk_file_is_one_request(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    cid, expected = dataset
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            assert float(ds.ta[1500]) == float(expected.ta[1500])  # the chunk ta/1
            first = len(calls.calls)
            assert np.array_equal(ds.rh.values, expected.rh.values)  # all eight chunks of rh
            read = calls.calls[first:]
            # the folder rh/ (one block, asked for once although every reader thread needs it
            # first), then one CAR per chunk file, nothing else
            assert len(cars(read)) == 8 and len(read) == 9, read
            assert all("dag-scope=entity" in c for c in cars(read))
            assert reg.store.prefetch_failures == []  # type: ignore[attr-defined]
            # every block of the eight chunk files (a root and four leaves each) reached the cache
            blocks = {line for n in range(8) for line in
                      kubo.ipfs("refs", "-r", f"/ipfs/{cid}/rh/{n}").decode().split()}
            blocks |= {file_cid(kubo, f"{cid}/rh/{n}") for n in range(8)}
            assert len(blocks) == 40
            local = {str(c) for c in reg.store.local_store().iter_cids()}
            assert blocks <= local
        finally:
            reg.close()
        # read again from the block cache: no request at all
        again = halodb.open(home, store=url)
        try:
            before = len(calls.calls)
            assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=again).rh.values, expected.rh.values)
            assert len(calls.calls) == before
        finally:
            again.close()


def test_a_tampered_car_block_is_refused(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    cid, _ = dataset
    chunk = file_cid(kubo, f"{cid}/ta/3")
    with relay(kubo.gateway, bad={chunk}) as (url, calls):  # a byte in the middle of its CAR flipped
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            with pytest.raises(VerificationError) as caught:
                ds.ta[3500].values
            error = caught.value
            assert f"no gateway returned the file {chunk}" in error.message, error.message
            assert "intact" in error.message and url in error.message
            assert getattr(error, "path", None) == "ta/3"  # the file asked for
            assert str(error.cid) == chunk  # type: ignore[attr-defined]
            assert len(cars(calls.calls)) == 1  # refused, not read again block by block
        finally:
            reg.close()


def test_a_range_read_fetches_only_the_blocks_of_the_range(kubo: Any, tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    data = os.urandom(64 * 2048)  # 64 leaves of 2 kB under one root
    (folder / "big.bin").write_bytes(data)
    cid = kubo.ipfs("add", "-r", "-Q", "--cid-version=1", CHUNKER, str(folder)).decode().strip()
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        try:
            fs = HaloDBFileSystem(registry=reg)
            assert fs.cat_file(f"{cid}/big.bin", 10_000, 14_000) == data[10_000:14_000]
            asked = cars(calls.calls)
            assert len(asked) == 1 and "entity-bytes=10000%3A13999" in asked[0].replace(":", "%3A"), asked
            # the root and the leaves 4..6 (bytes 8192-14335): nothing else was sent or kept
            stored = {str(c) for c in reg.store.local_store().iter_cids()}
            assert len(stored) == 1 + 1 + 3, stored  # and the folder
            assert reg.store.remote.bytes_received < 4 * 2048 + 2048  # type: ignore[attr-defined]
        finally:
            reg.close()


@pytest.mark.parametrize("fault", ["status 501", "plain path gateway"])
def test_a_gateway_without_cars_gets_blocks(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path, fault: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    cid, expected = dataset
    holder: dict[str, Any] = {}

    def no_cars(n: int) -> int | None:  # a gateway that does not implement ?format=car
        return 501 if "format=car" in holder["calls"].calls[n - 1] else None

    options: dict[str, Any] = {"status": no_cars} if fault == "status 501" else {"plain_paths": True}
    with relay(kubo.gateway, **options) as (url, calls):
        holder["calls"] = calls
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            assert np.array_equal(ds.ta.values, expected.ta.values)
            assert 1 <= len(cars(calls.calls)) <= 8  # the readers that asked before the first answer
            assert reg.store.prefetch_failures == []  # type: ignore[attr-defined]  # not a failure: a kind of gateway
            assert [r.getMessage() for r in caplog.records if "sends no CARs" in r.getMessage()] == [
                f"{url} sends no CARs ({'HTTP 501, text/plain' if fault == 'status 501' else 'HTTP 200, application/octet-stream'})"
                ": files are read from it block by block"]
            before = len(calls.calls)
            assert np.array_equal(ds.rh.values, expected.rh.values)
            read = calls.calls[before:]
            assert cars(read) == [] and len(read) >= 8 * 5, read  # never again: a root and four leaves each
        finally:
            reg.close()


def test_a_kubo_rpc_store_keeps_reading_blocks(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    cid, expected = dataset
    reg = halodb.open(home, store=kubo.api, create=True)
    try:
        assert not reg.store.remote.supports_file_export  # type: ignore[attr-defined]
        file = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
        assert np.array_equal(file.ta.values, expected.ta.values)
        assert reg.store.prefetch_failures == []  # type: ignore[attr-defined]
    finally:
        reg.close()
