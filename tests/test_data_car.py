"""Reading data chunk by chunk through a gateway, every block verified: a CIDv1 chunk file
is its root block and ONE plain request for its bytes (``GatewayStore.get_leaves``: the raw
leaves cut from them, each hashed against its CID); a CIDv0 one (dag-pb leaves, which plain
bytes cannot be checked against) one CAR request (``GatewayStore.fetch_file``,
``?format=car&dag-scope=entity``).

A real Kubo node (tests/kubo_node.py) serves Zarr stores and a large file added with small
blocks (``--chunker=size-2048``: a chunk file spans several blocks); a counting relay
(tests/loopback.Relay) in front of its gateway counts the requests and injects faults.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import halodb
from halodb.data.fs import HaloDBFileSystem
from halodb.errors import InputError, VerificationError
from halodb.unixfs import UnixFSTree
from halodb.util.background_loop import BackgroundLoop

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
    """The store added with CIDv1 (raw leaves)."""
    folder = tmp_path_factory.mktemp("data") / "x.zarr"
    ds = zarr_store(folder)
    # -H: Zarr v2's metadata files are dotfiles, which ipfs add skips by default
    cid = kubo.ipfs("add", "-r", "-Q", "-H", "--cid-version=1", CHUNKER, str(folder)).decode().strip()
    return cid, ds


@pytest.fixture(scope="module")
def dataset_v0(kubo: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, xr.Dataset]:
    """The store added with CIDv0 (``ipfs add``'s default: dag-pb leaves)."""
    folder = tmp_path_factory.mktemp("data") / "x.zarr"
    ds = zarr_store(folder)
    cid = kubo.ipfs("add", "-r", "-Q", "-H", CHUNKER, str(folder)).decode().strip()
    assert cid.startswith("Qm")
    return cid, ds


def file_cid(kubo: Any, path: str) -> str:
    return str(kubo.ipfs("resolve", f"/ipfs/{path}").decode().strip().rsplit("/", 1)[-1])


def cars(calls: list[str]) -> list[str]:
    return [c for c in calls if "format=car" in c]


def ranges(calls: list[str]) -> list[str]:
    """The plain requests for a file's bytes."""
    return [c for c in calls if " range=" in c and "format=" not in c]


def read_again_from_the_cache(home: Path, url: str, calls: Any, cid: str, expected: xr.Dataset) -> None:
    """Open the dataset again in ``home`` through ``url``: the same values, and no request at
    all (every block it needs came into the block cache the first time)."""
    again = halodb.open(home, store=url)
    try:
        before = len(calls.calls)
        assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=again).rh.values, expected.rh.values)
        assert len(calls.calls) == before
    finally:
        again.close()


def tsize_of(kubo: Any, cid: str, folder: str, name: str) -> int:
    """The ``Tsize`` of the link ``name`` in the folder ``cid/folder``."""
    links = json.loads(kubo.ipfs("dag", "get", f"{cid}/{folder}").decode())["Links"]
    return int(next(link["Tsize"] for link in links if link["Name"] == name))


def raws(calls: list[str]) -> list[str]:
    return [c for c in calls if "format=raw" in c]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "reader"


def test_a_cidv0_chunk_file_is_one_car(kubo: Any, dataset_v0: tuple[str, xr.Dataset], home: Path) -> None:
    cid, expected = dataset_v0
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
        read_again_from_the_cache(home, url, calls, cid, expected)


def test_a_tampered_car_block_is_refused(kubo: Any, dataset_v0: tuple[str, xr.Dataset], home: Path) -> None:
    cid, _ = dataset_v0
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
            assert len([c for c in cars(calls.calls) if chunk in c]) == 1  # refused, not read again block by block
        finally:
            reg.close()


@pytest.mark.parametrize("version", ["v1", "v0"])
def test_a_range_read_fetches_only_the_blocks_of_the_range(kubo: Any, tmp_path: Path, home: Path,
                                                           version: str) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    data = os.urandom(64 * 2048)  # 64 leaves of 2 kB under one root
    (folder / "big.bin").write_bytes(data)
    cid = kubo.ipfs("add", "-r", "-Q", *(["--cid-version=1"] if version == "v1" else []), CHUNKER,
                    str(folder)).decode().strip()
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        try:
            fs = HaloDBFileSystem(registry=reg)
            assert fs.cat_file(f"{cid}/big.bin", 10_000, 14_000) == data[10_000:14_000]
            if version == "v1":  # the root, then the bytes of the leaves 4..6 (8192-14335) as they are
                assert ranges(calls.calls) == [f"/ipfs/{file_cid(kubo, cid + '/big.bin')} range=bytes=8192-14335"]
                assert cars(calls.calls) == []
            else:
                asked = cars(calls.calls)
                assert len(asked) == 1 and "entity-bytes=10000%3A13999" in asked[0].replace(":", "%3A"), asked
            # the root and the leaves 4..6: nothing else was sent or kept
            stored = {str(c) for c in reg.store.local_store().iter_cids()}
            assert len(stored) == 1 + 1 + 3, stored  # and the folder
            assert reg.store.remote.bytes_received < 4 * 2048 + 2048  # type: ignore[attr-defined]
        finally:
            reg.close()


@pytest.mark.parametrize("fault", ["status 501", "plain path gateway"])
def test_a_gateway_without_cars_gets_blocks(kubo: Any, dataset_v0: tuple[str, xr.Dataset], home: Path, fault: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    cid, expected = dataset_v0
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
            said = [r.getMessage() for r in caplog.records if "sends no CARs" in r.getMessage()]
            assert len(said) == 1 and said[0].endswith("): files are read from it block by block")
            # (a plain answer has the file's type: the first file asked for may be JSON metadata)
            assert said[0].startswith(f"{url} sends no CARs (HTTP {'501, text/plain' if fault == 'status 501' else '200, '}")
            before = len(calls.calls)
            assert np.array_equal(ds.rh.values, expected.rh.values)
            read = calls.calls[before:]
            assert cars(read) == [] and len(read) >= 8 * 5, read  # never again: a root and four leaves each
        finally:
            reg.close()


@pytest.mark.parametrize("version", ["v1", "v0"])
def test_a_kubo_rpc_store_keeps_reading_blocks(kubo: Any, dataset: tuple[str, xr.Dataset],
                                              dataset_v0: tuple[str, xr.Dataset], home: Path, version: str) -> None:
    cid, expected = dataset if version == "v1" else dataset_v0
    reg = halodb.open(home, store=kubo.api, create=True)
    try:
        assert not reg.store.remote.supports_file_export  # type: ignore[attr-defined]
        file = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
        assert np.array_equal(file.ta.values, expected.ta.values)
        assert reg.store.prefetch_failures == []  # type: ignore[attr-defined]
    finally:
        reg.close()


# -- CIDv1: a chunk file's raw leaves cut from its plain bytes -------------------------------------
def leaves_of(kubo: Any, path: str) -> list[str]:
    return kubo.ipfs("refs", f"/ipfs/{path}").decode().split()  # type: ignore[no-any-return]


def test_a_cidv1_chunk_file_is_its_bytes_alone(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    """Once a chunk file's root told the tree the chunk size (``ipfs add --chunker=size-2048``),
    each further chunk file is ONE plain request for its bytes, checked by rebuilding its root
    from them (``rebuild_file``: the leaves hashed, the root hashing to the file's CID)."""
    cid, expected = dataset
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            assert float(ds.ta[1500]) == float(expected.ta[1500])  # the chunk ta/1: its root asked for
            first = len(calls.calls)
            assert np.array_equal(ds.rh.values, expected.rh.values)  # all eight chunks of rh
            read = calls.calls[first:]
            # the folder rh/ as a block, then each file's 8,000 bytes as they are (four raw
            # leaves of 2 kB), bounded by the folder link's Tsize: no root asked, no CAR
            roots = {file_cid(kubo, f"{cid}/rh/{n}") for n in range(8)}
            assert sorted(ranges(read)) == sorted(f"/ipfs/{file_cid(kubo, f'{cid}/rh/{n}')} range=bytes=0-"
                                                  f"{tsize_of(kubo, cid, 'rh', str(n)) - 1}" for n in range(8)), read
            assert raws(read) == [f"/ipfs/{file_cid(kubo, f'{cid}/rh')}?format=raw"] and len(read) == 1 + 8, read
            assert reg.store.remote.file_bytes_failures == []  # type: ignore[attr-defined]
            # every block of the eight chunk files (a root and four leaves each) reached the cache
            blocks = roots | {leaf for n in range(8) for leaf in leaves_of(kubo, f"{cid}/rh/{n}")}
            assert len(blocks) == 40
            assert blocks <= {str(c) for c in reg.store.local_store().iter_cids()}
        finally:
            reg.close()
        read_again_from_the_cache(home, url, calls, cid, expected)


def test_on_the_loop_a_chunk_file_is_one_round_trip(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk is read on zarr's loop, none in a thread: the folder ta/ fetched there once
    for the eight reads that want it at once, then per chunk its root and its bytes asked
    together (``GatewayStore.aget_file``): one ``?format=raw`` and ONE plain request, bounded by
    the folder link's ``Tsize``; every block verified and kept in the cache."""
    cid, expected = dataset
    spy = ReadsOnTheLoop(monkeypatch)
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        assert not (home / "blocks" / "blocks.sqlite3").exists()  # the block cache: made by its first write
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            first = len(calls.calls)
            assert np.array_equal(ds.ta.values, expected.ta.values)  # the chunks ta/0 ... ta/7
            assert spy.results == [True] * 8
            read = calls.calls[first:]
            roots = {n: file_cid(kubo, f"{cid}/ta/{n}") for n in range(8)}
            assert sorted(ranges(read)) == sorted(f"/ipfs/{roots[n]} range=bytes=0-{tsize_of(kubo, cid, 'ta', str(n)) - 1}"
                                                  for n in roots), read
            folder = file_cid(kubo, f"{cid}/ta")
            assert sorted(raws(read)) == sorted(f"/ipfs/{r}?format=raw" for r in [folder, *roots.values()])
            assert len(read) == 1 + 8 + 8
            assert reg.store.remote.file_bytes_failures == []  # type: ignore[attr-defined]
            blocks = set(roots.values()) | {leaf for n in roots for leaf in leaves_of(kubo, f"{cid}/ta/{n}")}
            assert blocks <= {str(c) for c in reg.store.local_store().iter_cids()}
        finally:
            reg.close()


class ReadsOnTheLoop:
    """Records what ``UnixFSTree.aread`` (a chunk read on zarr's event loop, no thread) returned:
    None where it left the read to ``UnixFSTree.read`` in a thread (with ``off``, always)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, off: bool = False) -> None:
        self.results: list[bool] = []
        real = UnixFSTree.aread

        async def aread(tree: UnixFSTree, path: str, start: int = 0, end: int | None = None) -> bytes | None:
            try:
                data = None if off else await real(tree, path, start, end)
            except BaseException:
                self.results.append(True)
                raise
            self.results.append(data is not None)
            return data

        monkeypatch.setattr(UnixFSTree, "aread", aread)


@pytest.mark.parametrize("where", ["in a thread", "on the loop"])
def test_tampered_file_bytes_are_refused_and_the_leaves_come_as_blocks(kubo: Any, dataset: tuple[str, xr.Dataset],
                                                                      home: Path, caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    cid, expected = dataset
    chunk = file_cid(kubo, f"{cid}/ta/3")
    spy = ReadsOnTheLoop(monkeypatch, off=where == "in a thread")
    with relay(kubo.gateway, bad_plain={chunk}) as (url, calls):  # a byte in the middle of its bytes flipped
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            if where == "on the loop":
                assert float(ds.ta[500]) == float(expected.ta[500])  # the folder ta/ read: known from now on
            first, asked = len(calls.calls), len(spy.results)
            assert float(ds.ta[3500]) == float(expected.ta[3500])  # right all the same
            assert spy.results[asked:] == [where == "on the loop"]
            read = calls.calls[first:]
            leaves = leaves_of(kubo, f"{cid}/ta/3")
            # in a thread the file's root, then its bytes; on the loop both at once (the range
            # bounded by the folder link's Tsize: the file's DAG, a little more than its bytes)
            asked_range = "bytes=0-7999" if where == "in a thread" else f"bytes=0-{tsize_of(kubo, cid, 'ta', '3') - 1}"
            assert ranges(read) == [f"/ipfs/{chunk} range={asked_range}"]  # the liar not asked for a range again
            # the folder ta/ (unless read before), the file's root, and its leaves block by block
            folder = [file_cid(kubo, f"{cid}/ta")] if where == "in a thread" else []
            assert sorted(raws(read)) == sorted(f"/ipfs/{c}?format=raw" for c in [*folder, chunk, *leaves]), read
            failures = reg.store.remote.file_bytes_failures  # type: ignore[attr-defined]
            said = (f"no gateway sent bytes 0-7999 of the file {chunk} intact" if where == "in a thread" else
                    f"the bytes 0-7999 of the file {chunk} asked as they are were not intact")
            assert len(failures) == 1 and said in failures[0], failures
            assert "do not match the CID" in failures[0] and url in failures[0]
            assert any(failures[0] in r.getMessage() for r in caplog.records)
            assert url in reg.store.remote._demoted  # type: ignore[attr-defined]  # asked last from now on
            # what reached the cache is what was verified: the good leaves
            assert set(leaves) <= {str(c) for c in reg.store.local_store().iter_cids()}
        finally:
            reg.close()


@pytest.mark.parametrize("where", ["in a thread", "on the loop"])
def test_a_leaf_tampered_everywhere_is_refused(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path,
                                               monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    cid, expected = dataset
    chunk = file_cid(kubo, f"{cid}/ta/3")
    leaf = leaves_of(kubo, f"{cid}/ta/3")[2]
    spy = ReadsOnTheLoop(monkeypatch, off=where == "in a thread")
    with relay(kubo.gateway, bad_plain={chunk}, bad={leaf}) as (url, _calls):  # the file's bytes and the leaf's block
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            if where == "on the loop":
                assert float(ds.ta[500]) == float(expected.ta[500])
            asked = len(spy.results)
            with pytest.raises(VerificationError) as caught:
                ds.ta[3500].values
            assert spy.results[asked:] == [where == "on the loop"]  # (True: raised there)
            error = caught.value
            assert f"no gateway returned block {leaf} intact" in error.message, error.message
            assert getattr(error, "path", None) == "ta/3"  # the file asked for
            assert leaf not in {str(c) for c in reg.store.local_store().iter_cids()}
        finally:
            reg.close()


def test_a_gateway_without_plain_bytes_sends_cars(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    cid, expected = dataset
    holder: dict[str, Any] = {}

    def trustless_only(n: int) -> int | None:  # a gateway that sends no deserialized answers
        return 406 if " range=" in holder["calls"].calls[n - 1] else None

    with relay(kubo.gateway, status=trustless_only) as (url, calls):
        holder["calls"] = calls
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg)
            assert np.array_equal(ds.ta.values, expected.ta.values)
            assert 1 <= len(ranges(calls.calls)) <= 8  # the readers that asked before the first answer
            assert [r.getMessage() for r in caplog.records if "sends no plain file bytes" in r.getMessage()] == [
                f"{url} sends no plain file bytes (HTTP 406): files are read from it as CARs"]
            assert reg.store.remote.file_bytes_failures == []  # type: ignore[attr-defined]  # a kind of gateway
            before = len(calls.calls)
            assert np.array_equal(ds.rh.values, expected.rh.values)
            read = calls.calls[before:]
            assert ranges(read) == [] and len(cars(read)) == 8, read  # never again: one CAR per file
        finally:
            reg.close()


def test_a_prefetch_cut_short_keeps_the_good_blocks(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    cid, expected = dataset
    blocks = set(kubo.ipfs("refs", "-r", "-u", cid).decode().split()) | {cid}
    with relay(kubo.gateway, cut_cars=True) as (url, calls):  # the CAR of the whole DAG loses its last third
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg, prefetch=True)
            failures = reg.store.prefetch_failures  # type: ignore[attr-defined]
            assert len(failures) == 1 and f"no gateway returned the DAG of {cid} whole" in failures[0], failures
            # the blocks that came before the cut were each verified and kept; the rest comes on reading
            kept = {str(c) for c in reg.store.local_store().iter_cids()}
            assert kept < blocks and len(kept) > len(blocks) // 3, (len(kept), len(blocks))
            asked = len(calls.calls)
            assert np.array_equal(ds.ta.values, expected.ta.values) and np.array_equal(ds.rh.values, expected.rh.values)
            assert len(calls.calls) > asked
            assert {str(c) for c in reg.store.local_store().iter_cids()} == blocks
        finally:
            reg.close()


# --- a read that keeps nothing (keep_blocks=False) ----------------------------------------------
def cached(reg: Any) -> set[str]:
    """The CIDs in the home's block cache, once its write-behind has written them."""
    return {str(c) for c in reg.store.local_store().iter_cids()}


@pytest.mark.parametrize("version", [1, 0])
def test_a_read_that_keeps_nothing_leaves_the_cache_as_it_was(kubo: Any, dataset: tuple[str, xr.Dataset],
                                                              dataset_v0: tuple[str, xr.Dataset], home: Path,
                                                              version: int) -> None:
    """CIDv1 (plain bytes) and CIDv0 (each chunk file one CAR): the values right, nothing
    written to the block cache; read again (keeping) it fills; then a read that keeps nothing
    reads the cache and asks the gateway nothing."""
    cid, expected = dataset if version == 1 else dataset_v0
    with relay(kubo.gateway) as (url, calls):
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg, keep_blocks=False)
            assert np.array_equal(ds.ta.values, expected.ta.values) and np.array_equal(ds.rh.values, expected.rh.values)
            assert len(calls.calls) > 0
            if version == 0:
                assert cars(calls.calls), calls.calls  # (the CIDv0 files came as CARs: held, not kept)
            assert cached(reg) == set()
            fs = HaloDBFileSystem(registry=reg, keep_blocks=False)
            assert fs.cat(f"{cid}/ta/3") == kubo.ipfs("cat", f"{cid}/ta/3")  # through fsspec too
            assert cached(reg) == set()
            assert np.array_equal(halodb.open_dataset(f"ipfs://{cid}", registry=reg).rh.values, expected.rh.values)
            kept = cached(reg)
            assert kept, "a keeping read fills the cache"
            before = len(calls.calls)
            again = halodb.open_dataset(f"ipfs://{cid}", registry=reg, keep_blocks=False)
            assert np.array_equal(again.rh.values, expected.rh.values)
            assert calls.calls[before:] == [] and cached(reg) == kept
        finally:
            reg.close()


def test_a_read_that_keeps_nothing_verifies_every_block(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path) -> None:
    cid, expected = dataset
    chunk = file_cid(kubo, f"{cid}/ta/3")
    leaf = leaves_of(kubo, f"{cid}/ta/3")[2]
    with relay(kubo.gateway, bad_plain={chunk}, bad={leaf}) as (url, _calls):  # the file's bytes and the leaf's block
        reg = halodb.open(home, store=url, create=True)
        try:
            ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg, keep_blocks=False)
            assert float(ds.ta[500]) == float(expected.ta[500])
            with pytest.raises(VerificationError, match=f"no gateway returned block {leaf} intact"):
                ds.ta[3500].values
            assert cached(reg) == set()
        finally:
            reg.close()


def test_prefetch_and_keep_nothing_are_refused_together(home: Path) -> None:
    with pytest.raises(InputError, match="not with keep_blocks=False") as caught:
        halodb.open_dataset("ipfs://bafkqaaa", home=str(home), prefetch=True, keep_blocks=False)
    assert caught.value.source == "prefetch" and not home.exists()
    for wrong in ("no", "false", 0):  # a string from some config file is not a False
        with pytest.raises(InputError, match=f"keep_blocks={wrong!r}: expected True or False"):
            halodb.open_dataset("ipfs://bafkqaaa", home=str(home), keep_blocks=wrong)  # type: ignore[arg-type]
        with pytest.raises(InputError, match=f"keep_blocks={wrong!r}: expected True or False"):
            HaloDBFileSystem(home=str(home), keep_blocks=wrong)  # type: ignore[arg-type]
    assert not home.exists()


# --- closing: the gateway's sessions on every loop ---------------------------------------------
def sessions_of(reg: Any) -> list[Any]:
    """The aiohttp sessions the home's gateway store holds, one per event loop it read on."""
    return [session for session, _ in reg.store.remote._sessions._by_loop.values()]


def test_closing_the_home_closes_the_session_on_zarrs_loop(kubo: Any, dataset: tuple[str, xr.Dataset],
                                                           home: Path) -> None:
    """A dataset read on zarr's loop (its own thread) leaves a session there; closing the home
    closes it before returning (until 2026-12-02 the close was only scheduled there, and a
    process that exited right after printed "Task was destroyed but it is pending!")."""
    cid, expected = dataset
    reg = halodb.open(home, store=kubo.gateway, create=True)
    try:
        ds = halodb.open_dataset(f"ipfs://{cid}", registry=reg, keep_blocks=False).load()
        assert np.array_equal(ds.rh.values, expected.rh.values)
        sessions = sessions_of(reg)
        assert len(sessions) == 2 and not any(s.closed for s in sessions)  # the shared loop's and zarr's
        shared = BackgroundLoop.shared().loop
        (zarrs,) = [loop for loop in reg.store.remote._sessions._by_loop if loop is not shared]  # type: ignore[attr-defined]
        zarrs.call_soon_threadsafe(time.sleep, 0.5)  # zarr's loop busy: its close must be waited for
    finally:
        reg.close()
    assert all(s.closed for s in sessions)


def test_a_session_whose_loop_ended_is_closed(kubo: Any, dataset: tuple[str, xr.Dataset], home: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """``aread`` under ``asyncio.run`` twice: the first loop's session is closed when the second
    loop makes its own (its loop cannot run an async close any more), the second's when the
    home is closed; aiohttp reports neither as unclosed (it did, through asyncio's logger, on
    standard error). (The sockets of a loop that ended are closed when collected, as those of
    fsspec's sessions: a ResourceWarning, silent unless asked for.)"""
    import asyncio
    import gc
    import logging
    import warnings

    cid, expected = dataset
    reg = halodb.open(home, store=kubo.gateway, create=True)
    tree = UnixFSTree(reg.store.without_keeping(), cid)
    want = kubo.ipfs("cat", f"{cid}/rh/3")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, logger="asyncio"):
        warnings.simplefilter("always")
        try:
            assert asyncio.run(tree.aread("rh/3", 0, 1 << 20)) == want
            first = sessions_of(reg)
            assert len(first) == 1 and not first[0].closed
            assert asyncio.run(UnixFSTree(reg.store.without_keeping(), cid).aread("rh/3", 0, 1 << 20)) == want
            assert first[0].closed
            second = [s for s in sessions_of(reg) if s is not first[0]]
            assert len(second) == 1 and not second[0].closed
        finally:
            reg.close()
        assert second[0].closed
        del first, second
        gc.collect()
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "Unclosed client session" in m or "Unclosed connector" in m], said
