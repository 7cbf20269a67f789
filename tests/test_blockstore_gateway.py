"""The trustless-gateway backend against a real Kubo gateway; faults injected on the wire by a
real HTTP relay in front of it (:class:`tests.loopback.Relay`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from halodb.blockstore import open_store
from halodb.blockstore.base import Block, BlockStore
from halodb.blockstore.gateway import GatewayStore
from halodb.blockstore.kubo import KuboStore
from halodb.errors import BlockNotFoundError, BlockStoreError, VerificationError
from halodb.ipld import CID, make_block
from halodb.testing.blockstore import BlockStoreTests

from .kubo_node import KuboNode
from .loopback import relay


class TestGatewayStore(BlockStoreTests):
    @pytest.fixture(autouse=True)
    def _node(self, kubo_local_only: KuboNode) -> Iterator[None]:
        self.node = kubo_local_only
        self.bad: set[str] = set()
        with relay(kubo_local_only.gateway, bad=self.bad) as (url, _):
            self.url = url
            yield

    def make_store(self, tmp_path: Path) -> BlockStore:
        return self.populate(tmp_path, [])

    def populate(self, tmp_path: Path, blocks: list[Block]) -> BlockStore:
        self.node.ipfs("repo", "gc", "--silent")
        if blocks:
            KuboStore(self.node.api).put_many(blocks)
        self.bad.clear()
        return GatewayStore([self.url])

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        self.bad.add(str(cid))


def stored(kubo_local_only: KuboNode, value: object) -> tuple[CID, bytes]:
    cid, data = make_block(value)
    KuboStore(kubo_local_only.api).put_many([(cid, data)])
    return cid, data


def test_wrong_bytes_fall_back_to_the_next_gateway(kubo_local_only: KuboNode) -> None:
    cid, data = stored(kubo_local_only, {"fallback": 1})
    with relay(kubo_local_only.gateway, bad={str(cid)}) as (liar, _), relay(kubo_local_only.gateway, bad={str(cid)}) as (liar2, _):
        store = GatewayStore([liar, liar2])  # every answer is corrupt -> a clear error
        with pytest.raises(VerificationError) as info:
            store.get(cid)
        assert "do not match" in str(info.value) and str(cid) in str(info.value)
        assert GatewayStore([liar, kubo_local_only.gateway]).get(cid) == data  # the next gateway answers
    honest = GatewayStore([kubo_local_only.gateway])
    mixed = GatewayStore(["http://127.0.0.1:9/", kubo_local_only.gateway], timeout=2)
    assert honest.get(cid) == data and mixed.get(cid) == data


def test_http_500_is_retried_then_succeeds(kubo_local_only: KuboNode) -> None:
    cid, data = stored(kubo_local_only, {"retry": 1})
    with relay(kubo_local_only.gateway, status=lambda n: 500 if n <= 2 else None) as (flaky, handler):
        store = GatewayStore([flaky], retries=2, backoff=0.01)
        assert store.get(cid) == data and len(handler.calls) == 3


def test_persistent_errors_and_timeouts_end_in_a_clear_error(kubo_local_only: KuboNode) -> None:
    cid, _ = stored(kubo_local_only, {"down": 1})
    with relay(kubo_local_only.gateway, status=lambda n: 503) as (down, handler):
        store = GatewayStore([down], retries=1, backoff=0.01)
        with pytest.raises(BlockStoreError) as info:
            store.get(cid)
        assert "HTTP 503" in str(info.value) and len(handler.calls) == 2
    unreachable = GatewayStore(["http://127.0.0.1:9/"], retries=0, timeout=1)
    with pytest.raises(BlockStoreError) as info:
        unreachable.get(cid)
    assert "127.0.0.1:9" in str(info.value)


def test_absent_everywhere_is_not_found(kubo_local_only: KuboNode) -> None:
    store = GatewayStore([kubo_local_only.gateway])
    with pytest.raises(BlockNotFoundError):
        store.get(CID.for_bytes(b"nobody has this"))


def test_sync_from_a_gateway(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    """Publish into Kubo, then read the whole index through its gateway into a fresh cache."""
    import halodb

    from .conftest import cid_for, make_item

    writer = halodb.open(tmp_path / "w", store=kubo_local_only.api, create=True)
    writer.add([make_item(f"g{i}", cid_for(f"g{i}")) for i in range(50)])
    head = writer.commit("via gateway", time="2024-08-12T00:00:00Z")
    writer.publish("gw")
    writer.close()
    store = open_store(kubo_local_only.gateway, tmp_path)
    assert isinstance(store, GatewayStore)
    reader = halodb.open(tmp_path / "r", store=kubo_local_only.gateway, create=True)
    reader.names.publish("gw", head)
    assert reader.sync("gw").changes == 50
    assert reader.cid_at("halo/g7", "2024-08-13", name="gw") == cid_for("g7")
    reader.close()


def test_a_gateway_that_times_out_falls_back(kubo_local_only: KuboNode) -> None:
    """A loopback server that accepts connections and never answers, then a working gateway."""
    import socket
    import threading

    cid, data = stored(kubo_local_only, {"timeout": 1})
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        silent = f"http://127.0.0.1:{server.getsockname()[1]}/"
        store = GatewayStore([silent, kubo_local_only.gateway], retries=0, timeout=0.5)
        assert store.get(cid) == data
        alone = GatewayStore([silent], retries=1, backoff=0.01, timeout=0.3)
        with pytest.raises(BlockStoreError) as info:
            alone.get(cid)
        assert "Timeout" in str(info.value)
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_whole_dag_as_one_car_and_a_truncated_car(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    from halodb.blockstore import DirectoryStore

    leaf_cid, leaf = make_block({"leaf": list(range(50))})
    mid_cid, mid = make_block({"child": leaf_cid, "pad": "x" * 500})
    root_cid, root = make_block({"child": mid_cid, "name": "root"})
    KuboStore(kubo_local_only.api).put_many([(leaf_cid, leaf), (mid_cid, mid), (root_cid, root)])

    with relay(kubo_local_only.gateway, cut_cars=True) as (cut_url, _):
        cut = GatewayStore([cut_url])
        local = DirectoryStore(tmp_path / "cut")
        with pytest.raises(BlockStoreError) as info:
            cut.fetch_dag(root_cid, local)
        assert str(root_cid) in str(info.value)
    assert not any(local.has(c) for c in (leaf_cid, mid_cid, root_cid))  # nothing half-written

    store = GatewayStore([kubo_local_only.gateway])
    local = DirectoryStore(tmp_path / "whole")
    assert store.fetch_dag(root_cid, local) == 3 and store.requests == 1
    assert local.get(leaf_cid) == leaf


def test_gateway_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from halodb.blockstore.gateway import discover_gateways
    from halodb.errors import StoreURLError

    home = tmp_path / "home"
    assert discover_gateways({}, home) == []
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "gateway").write_text("http://127.0.0.1:8080\n")
    (home / ".ipfs").mkdir(parents=True)
    (home / ".ipfs" / "gateway").write_text("http://127.0.0.1:9090\n")
    assert discover_gateways({"IPFS_PATH": str(tmp_path / "repo")}, home) == ["http://127.0.0.1:8080"]
    assert discover_gateways({}, home) == ["http://127.0.0.1:9090"]
    assert discover_gateways({"IPFS_GATEWAY": "http://a/ http://b/", "IPFS_PATH": str(tmp_path / "repo")}, home) == ["http://a/", "http://b/"]
    monkeypatch.setenv("IPFS_GATEWAY", "http://127.0.0.1:7070/")
    store = open_store("gateway:", tmp_path)
    assert isinstance(store, GatewayStore) and store.gateways == ["http://127.0.0.1:7070/"]
    monkeypatch.delenv("IPFS_GATEWAY")
    monkeypatch.setenv("IPFS_PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nohome"))
    if not Path("/etc/ipfs/gateway").exists():
        with pytest.raises(StoreURLError):
            open_store("gateway:", tmp_path)


def test_leaves_cut_from_a_files_bytes_on_any_loop(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    """get_leaves / aget_leaves: one plain range request per run of adjacent leaves, each leaf
    verified; from the synchronous API and from two event loops in turn (a session each)."""
    import asyncio
    import os

    from halodb.unixfs import UnixFSTree

    data = os.urandom(6 * 2048)
    (tmp_path / "f.bin").write_bytes(data)
    file = CID.parse(kubo_local_only.ipfs("add", "-Q", "--cid-version=1", "--chunker=size-2048",
                                          str(tmp_path / "f.bin")).decode().strip())
    with relay(kubo_local_only.gateway) as (url, handler):
        store = GatewayStore([url])
        root = UnixFSTree(store, file).node(file)
        assert root.pb is not None
        leaves = [(link.cid, 2048 * i, 2048) for i, link in enumerate(root.pb.links)]
        wanted = leaves[1:3] + leaves[4:5]  # two runs: bytes 2048-6143 and 8192-10239
        asked = len(handler.calls)
        got = store.get_leaves(file, wanted)
        assert {c: bytes(d) for c, d in got.items()} == {c: data[o:o + s] for c, o, s in wanted}
        assert handler.calls[asked:] == [f"/ipfs/{file} range=bytes=2048-6143", f"/ipfs/{file} range=bytes=8192-10239"]
        for _ in range(2):  # asyncio.run: a new loop each time
            views = asyncio.run(store.aget_leaves(file, wanted))
            assert {c: bytes(d) for c, d in views.items()} == {c: data[o:o + s] for c, o, s in wanted}
        assert len(handler.calls) == asked + 6 and store.file_bytes_failures == []
        store.close()


def added_file(kubo: KuboNode, tmp_path: Path, data: bytes) -> CID:
    (tmp_path / "f.bin").write_bytes(data)
    return CID.parse(kubo.ipfs("add", "-Q", "--cid-version=1", "--chunker=size-2048",
                               str(tmp_path / "f.bin")).decode().strip())


def leaves_of_root(block: bytes, file: CID) -> list[tuple[CID, int, int]]:
    from halodb.unixfs.tree import decode_node

    node = decode_node(file, block)
    assert node.pb is not None
    return [(link.cid, 2048 * i, 2048) for i, link in enumerate(node.pb.links)]


def test_a_files_root_and_bytes_in_one_round_trip(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    """aget_file: the root block and the file's plain bytes asked at once (the root's answer
    waits here until the bytes were asked for: asked one after the other, it would never come
    in time), the bytes cut into the leaves the root names, each verified: two requests."""
    import asyncio
    import threading

    data = os.urandom(5 * 2048)
    file = added_file(kubo_local_only, tmp_path, data)
    bytes_asked = threading.Event()
    waited: list[bool] = []
    holder: dict[str, type] = {}

    def hold_the_root(n: int) -> int | None:
        call = holder["relay"].calls[n - 1]  # type: ignore[attr-defined]
        if " range=" in call:
            bytes_asked.set()
        elif "format=raw" in call:
            waited.append(bytes_asked.wait(20))
        return None

    with relay(kubo_local_only.gateway, status=hold_the_root) as (url, calls):
        holder["relay"] = calls
        store = GatewayStore([url])
        got = asyncio.run(store.aget_file(file, 1 << 20, lambda block: leaves_of_root(block, file)))
        assert got is not None and waited == [True]
        assert file.verify(got.root)
        assert {c: bytes(d) for c, d in got.leaves.items()} == {c: data[o:o + s] for c, o, s in
                                                                 leaves_of_root(got.root, file)}
        assert sorted(calls.calls) == sorted([f"/ipfs/{file}?format=raw", f"/ipfs/{file} range=bytes=0-1048575"])
        assert store.file_bytes_failures == []
        store.close()


def test_lying_bytes_asked_with_the_root_are_refused(kubo_local_only: KuboNode, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A gateway whose plain bytes of a file do not match its leaves: caught when cut; the
    leaves come from the next gateway's range, or (a single gateway) block by block, never
    again as its bytes; the same answer either way."""
    import asyncio

    data = os.urandom(4 * 2048)
    file = added_file(kubo_local_only, tmp_path, data)
    leaves = kubo_local_only.ipfs("refs", str(file)).decode().split()
    expected = {CID.parse(c): data[2048 * i:2048 * (i + 1)] for i, c in enumerate(leaves)}
    with relay(kubo_local_only.gateway, bad_plain={str(file)}) as (liar, lies), relay(kubo_local_only.gateway) as (
            honest, answers):
        for gateways in ([liar, honest], [liar]):
            lies.calls.clear()
            answers.calls.clear()
            store = GatewayStore(gateways)
            got = asyncio.run(store.aget_file(file, 8192, lambda block: leaves_of_root(block, file)))
            assert got is not None and {c: bytes(d) for c, d in got.leaves.items()} == expected
            assert sorted(lies.calls[:2]) == sorted([f"/ipfs/{file}?format=raw", f"/ipfs/{file} range=bytes=0-8191"])
            if len(gateways) == 2:  # the next gateway's range
                assert lies.calls[2:] == [] and answers.calls == [f"/ipfs/{file} range=bytes=0-8191"]
            else:  # block by block (the liar sends blocks intact)
                assert sorted(lies.calls[2:]) == sorted(f"/ipfs/{leaf}?format=raw" for leaf in leaves)
            assert len(store.file_bytes_failures) == 1 and "do not match the CID" in store.file_bytes_failures[0]
            assert liar in store._demoted
            assert any(store.file_bytes_failures[0] in r.getMessage() for r in caplog.records)
            store.close()


def test_a_folder_asked_as_a_file_is_its_root_alone(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    """aget_file of a CID that is no file of raw leaves (``leaves_of`` says None): its root,
    no leaves; the plain request asked at once is dropped, unused."""
    import asyncio

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"a")
    folder = CID.parse(kubo_local_only.ipfs("add", "-r", "-Q", "--cid-version=1", str(tmp_path / "d")).decode().strip())
    with relay(kubo_local_only.gateway) as (url, calls):
        store = GatewayStore([url])
        got = asyncio.run(store.aget_file(folder, 4096, lambda block: None))
        assert got is not None and folder.verify(got.root) and got.leaves == {}
        assert f"/ipfs/{folder}?format=raw" in calls.calls and store.file_bytes_failures == []
        absent = CID.for_bytes(b"nobody has this file")
        assert asyncio.run(store.aget_file(absent, 4096, lambda block: None)) is None
        store.close()


def test_a_files_bytes_alone_checked_by_rebuilding_its_root(kubo_local_only: KuboNode, tmp_path: Path) -> None:
    """aget_file with ``rebuild``: ONE plain request when the root rebuilt from the bytes hashes
    to the file's CID; bytes that do not rebuild it (a liar) are refused: the root is asked
    for, the bytes cut against it fail too, and the leaves come block by block."""
    import asyncio
    from functools import partial

    from halodb.unixfs.build import rebuild_file

    data = os.urandom(5 * 2048)
    file = added_file(kubo_local_only, tmp_path, data)
    expected = {c: data[o:o + s] for c, o, s in leaves_of_root(GatewayStore([kubo_local_only.gateway]).get(file), file)}
    rebuild = partial(rebuild_file, file, chunk=2048)
    with relay(kubo_local_only.gateway) as (url, calls), relay(kubo_local_only.gateway, bad_plain={str(file)}) as (
            liar, lies):
        store = GatewayStore([url])
        got = asyncio.run(store.aget_file(file, 1 << 20, lambda block: leaves_of_root(block, file), rebuild=rebuild))
        assert got is not None and file.verify(got.root)
        assert {c: bytes(d) for c, d in got.leaves.items()} == expected
        assert calls.calls == [f"/ipfs/{file} range=bytes=0-1048575"]  # no root asked
        lying = GatewayStore([liar])
        got = asyncio.run(lying.aget_file(file, 1 << 20, lambda block: leaves_of_root(block, file), rebuild=rebuild))
        assert got is not None and {c: bytes(d) for c, d in got.leaves.items()} == expected
        assert lies.calls[:2] == [f"/ipfs/{file} range=bytes=0-1048575", f"/ipfs/{file}?format=raw"]
        assert sorted(lies.calls[2:]) == sorted(f"/ipfs/{leaf}?format=raw" for leaf in expected)
        assert len(lying.file_bytes_failures) == 1 and "do not match the CID" in lying.file_bytes_failures[0]
        for s in (store, lying):
            s.close()
