"""Hostile trustless gateways on 127.0.0.1 (issue 10, defects 5 and 9): slow, endless and
junk-laden answers end within a deadline and a size cap, and the honest gateway after them
answers. Each hostile server is a small real HTTP server; the honest one serves the same
protocol from a block store, the way a Kubo gateway does."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from halodb.blockstore import MemoryStore
from halodb.blockstore.base import Block, BlockStore
from halodb.blockstore.car import dag_links, write_car
from halodb.blockstore.gateway import GatewayStore
from halodb.errors import BlockStoreError, HaloDBError
from halodb.ipld import CID, RAW, make_block
from halodb.ipld.limits import MAX_BLOCK_SIZE
from halodb.ipld.protobuf import encode_varint

from .loopback import QuietHandler, respond, serve

#: the longest any hostile server keeps sending (the tests end long before: the client hangs up)
_SERVER_GIVES_UP = 60.0
_STOP = threading.Event()


@pytest.fixture(autouse=True)
def _stop_hostile_servers() -> Iterator[None]:
    _STOP.clear()
    yield
    _STOP.set()


def dag_order(store: BlockStore, root: CID) -> list[Block]:
    """The blocks under ``root`` depth-first, each once: what ``?format=car&dag-scope=all`` sends."""
    out: list[Block] = []
    seen: set[CID] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        data = store.get(cid)
        out.append((cid, data))
        stack.extend(reversed(dag_links(cid, data)))
    return out


class Honest(QuietHandler):
    """A trustless gateway over ``store``: raw blocks and CARs of whole DAGs."""

    store: ClassVar[BlockStore] = MemoryStore()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts[0] == "ipns":
            respond(self, b"no such name", "text/plain", 404)
            return
        cid = CID.parse(parts[1])
        if parse_qs(url.query).get("format") == ["car"]:
            self.send_car(cid)
        else:
            self.send_raw(cid)

    def send_raw(self, cid: CID) -> None:
        if not self.store.has(cid):
            respond(self, b"not found", "text/plain", 404)
            return
        respond(self, self.store.get(cid), "application/vnd.ipld.raw")

    def send_car(self, cid: CID) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.car; version=1; order=dfs; dups=n")
        self.end_headers()
        self.wfile.write(car_bytes([cid], dag_order(self.store, cid)))

    def send_forever(self, piece: bytes, pause: float = 0.0) -> None:
        """Write ``piece`` again and again until the client hangs up (or the test ends)."""
        end = time.monotonic() + _SERVER_GIVES_UP
        try:
            while time.monotonic() < end and not _STOP.is_set():
                self.wfile.write(piece)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass


def a_dag(store: BlockStore, leaves: int = 5) -> tuple[CID, set[CID]]:
    """A three-level DAG in ``store``: its root and every CID in it."""
    blocks = [make_block({"leaf": i, "pad": "x" * 100}) for i in range(leaves)]
    mid = make_block({"children": [c for c, _ in blocks]})
    root = make_block({"mid": mid[0], "name": "root"})
    store.put_many([*blocks, mid, root])
    return root[0], {c for c, _ in [*blocks, mid, root]}


@pytest.fixture
def honest_store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    Honest.store = store
    yield store


# -- defect 5: raw blocks ------------------------------------------------------------------
class Trickling(Honest):
    """Answers 200 with a plausible length, then one byte a second."""

    def send_raw(self, cid: CID) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.raw")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.send_forever(b"x", pause=1.0)

    def send_car(self, cid: CID) -> None:
        self.send_raw(cid)


class Endless(Honest):
    """Answers 200 and never stops sending (no Content-Length: the body ends at close)."""

    def send_raw(self, cid: CID) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.raw")
        self.end_headers()
        self.send_forever(b"\0" * 65536)


class Boasting(Honest):
    """Announces a body larger than any block may be."""

    def send_raw(self, cid: CID) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ipld.raw")
        self.send_header("Content-Length", str(10 << 30))
        self.end_headers()
        self.send_forever(b"\0" * 65536)


def test_a_gateway_trickling_one_byte_a_second_meets_the_deadline(honest_store: MemoryStore) -> None:
    cid = honest_store.put(b"the block", codec=RAW)
    with serve(Trickling) as slow, serve(Honest) as honest:
        store = GatewayStore([slow, honest], deadline=1.0)
        assert store.get(cid) == b"the block"
        assert store.ordered() == [honest, slow]  # it broke its deadline: asked last from now on
        alone = GatewayStore([slow], deadline=0.5)
        with pytest.raises(BlockStoreError) as info:
            alone.get(cid)
        assert slow in str(info.value) and "0.5 s deadline" in str(info.value)


@pytest.mark.parametrize("hostile", [Endless, Boasting])
def test_an_endless_body_is_cut_at_the_block_limit(honest_store: MemoryStore, hostile: type[Honest]) -> None:
    cid = honest_store.put(b"the block", codec=RAW)
    with serve(hostile) as flood, serve(Honest) as honest:
        store = GatewayStore([flood, honest], deadline=30.0)
        assert store.get(cid) == b"the block"
        assert store.bytes_received <= MAX_BLOCK_SIZE + (1 << 20)  # the cap, one read past it, the block
        alone = GatewayStore([flood], deadline=30.0)
        with pytest.raises(BlockStoreError) as info:
            alone.get(cid)
        assert flood in str(info.value) and f"{MAX_BLOCK_SIZE} bytes" in str(info.value)
        assert alone.bytes_received <= MAX_BLOCK_SIZE + (1 << 20)


def test_an_endless_ipns_record_is_cut_at_10_kib(honest_store: MemoryStore) -> None:
    from halodb.naming.ipns_record import GatewayIPNS

    name = "k51qzi5uqu5dh33489h32jlz1ss3r2es28v6gwcs9qlfd1u1z0cq2d0lgpuhp9"

    class EndlessRecord(Honest):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.ipfs.ipns-record")
            self.end_headers()
            self.send_forever(b"\x0a" * 4096)

    with serve(EndlessRecord) as flood, serve(Honest) as honest:
        gateways = GatewayStore([flood, honest], deadline=30.0)
        with pytest.raises(HaloDBError) as info:
            GatewayIPNS(gateways).resolve(name)
        message = str(info.value)
        assert f"{flood}: sent more than the 10240 bytes an IPNS record may have" in message
        assert f"{honest}: HTTP 404" in message  # the next gateway was asked, and named
        assert gateways.bytes_received <= 10240 + (1 << 20)


# -- defects 5 and 9: CARs -----------------------------------------------------------------
def _car_head(self: Honest, cid: CID) -> None:
    self.send_response(200)
    self.send_header("Content-Type", "application/vnd.ipld.car; version=1")
    self.end_headers()
    self.wfile.write(car_bytes([cid], []))


def car_bytes(roots: list[CID], blocks: list[Block]) -> bytes:
    buf = io.BytesIO()
    write_car(buf, roots, blocks)
    return buf.getvalue()


def sections(blocks: list[Block]) -> bytes:
    """CAR sections without a header: what follows the header in a CAR."""
    return b"".join(encode_varint(len(c.buffer) + len(d)) + c.buffer + d for c, d in blocks)


class JunkAfterTheDag(Honest):
    """The whole DAG, then 2,000 blocks nothing links to (a gateway filling the client's disk)."""

    def send_car(self, cid: CID) -> None:
        _car_head(self, cid)
        junk = [make_block({"junk": i}) for i in range(2000)]
        self.wfile.write(sections(dag_order(self.store, cid) + junk))


class EndlessJunk(Honest):
    """The root block, then new junk blocks for ever."""

    def send_car(self, cid: CID) -> None:
        _car_head(self, cid)
        self.wfile.write(sections([(cid, self.store.get(cid))]))
        end = time.monotonic() + _SERVER_GIVES_UP
        i = 0
        try:
            while time.monotonic() < end and not _STOP.is_set():
                self.wfile.write(sections([make_block({"junk": j, "pad": "y" * 1000}) for j in range(i, i + 100)]))
                i += 100
        except OSError:
            pass


class EndlessRepeat(Honest):
    """The root block again and again."""

    def send_car(self, cid: CID) -> None:
        _car_head(self, cid)
        block = (cid, self.store.get(cid))
        end = time.monotonic() + _SERVER_GIVES_UP
        try:
            while time.monotonic() < end and not _STOP.is_set():
                self.wfile.write(sections([block] * 100))
        except OSError:
            pass


class OtherRoot(Honest):
    """A valid CAR of another DAG (its own root in the header)."""

    def send_car(self, cid: CID) -> None:
        other, data = make_block({"other": True})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(car_bytes([other], [(other, data)]))


class Failing(Honest):
    """HTTP 500 for every CAR; raw blocks are served."""

    def send_car(self, cid: CID) -> None:
        respond(self, b"internal error", "text/plain", 500)


@pytest.mark.parametrize(
    "hostile, why",
    [
        (JunkAfterTheDag, "is not linked from the blocks before it"),
        (EndlessJunk, "is not linked from the blocks before it"),
        (EndlessRepeat, "sent twice"),
        (OtherRoot, "not the requested"),
        (Trickling, "deadline"),
        (Failing, "HTTP 500"),
    ],
)
def test_a_hostile_car_stores_nothing_and_the_next_gateway_answers(
    honest_store: MemoryStore, tmp_path: Path, hostile: type[Honest], why: str
) -> None:
    root, dag = a_dag(honest_store)
    with serve(hostile) as bad, serve(Honest) as honest:
        local = MemoryStore()
        alone = GatewayStore([bad], deadline=1.0)
        with pytest.raises(BlockStoreError) as info:
            alone.fetch_dag(root, local)
        assert bad in str(info.value) and why in str(info.value)
        assert len(local) == 0  # nothing from a bad CAR
        assert alone.bytes_received < 1 << 20  # reading stopped at the first bad section

        store = GatewayStore([bad, honest], deadline=1.0)
        assert store.fetch_dag(root, local) == len(dag)
        assert set(local.iter_cids()) == dag  # exactly the DAG asked for: no junk


def test_a_car_over_the_callers_byte_budget_is_refused(honest_store: MemoryStore) -> None:
    root, dag = a_dag(honest_store, leaves=50)
    with serve(Honest) as honest:
        local = MemoryStore()
        with pytest.raises(BlockStoreError) as info:
            GatewayStore([honest], deadline=30.0).fetch_dag(root, local, max_bytes=1000)
        assert "1000 bytes this CAR may have" in str(info.value) and len(local) == 0
        assert GatewayStore([honest], deadline=30.0).fetch_dag(root, local, max_bytes=1 << 20) == len(dag)


def test_a_failed_car_prefetch_falls_back_to_single_blocks(
    honest_store: MemoryStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 9: a gateway whose CARs fail (HTTP 500) but whose blocks are fine still syncs."""
    import halodb
    from halodb.blockstore.caching import CachingStore

    from .conftest import cid_for, make_item

    writer = halodb.open(tmp_path / "w", store="memory:", create=True)
    writer.add([make_item(f"f{i}", cid_for(f"f{i}")) for i in range(30)])
    head = writer.commit("served by a gateway whose CARs fail", time="2024-08-12T00:00:00Z")
    Honest.store = writer.store
    with serve(Failing) as gateway:
        reader = halodb.open(tmp_path / "r", store=gateway, create=True)
        reader.prefetch_spread = 1  # one CAR of the whole index first
        reader.names.publish("gw", head)
        with caplog.at_level(logging.WARNING, logger="halodb.blockstore.caching"):
            assert reader.sync("gw").changes == 30
        assert reader.cid_at("halo/f7", "2024-08-13", name="gw") == cid_for("f7")
        store = reader.store
        assert isinstance(store, CachingStore) and len(store.prefetch_failures) == 1
        assert "HTTP 500" in store.prefetch_failures[0]
        assert any("fetched one by one" in r.getMessage() and "HTTP 500" in r.getMessage() for r in caplog.records)
        reader.close()
    writer.close()


class Ranger(Honest):
    """Serves raw blocks honestly, but a file's bytes (a ``Range`` request) as ``how`` says."""

    how: ClassVar[str] = ""
    content: ClassVar[bytes] = b""

    def do_GET(self) -> None:
        asked = self.headers.get("Range")
        if not asked or "format=" in self.path:
            super().do_GET()
            return
        first, last = (int(x) for x in asked.removeprefix("bytes=").split("-"))
        body = self.content[first:last + 1]
        self.send_response(206 if self.how != "the whole file" else 200)
        if self.how == "another range":
            self.send_header("Content-Range", f"bytes {first + 1}-{last + 1}/{len(self.content)}")
        elif self.how != "the whole file":
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(self.content)}")
        self.end_headers()
        if self.how == "endless":
            self.send_forever(body)
        elif self.how == "the whole file":
            self.wfile.write(self.content)
        else:
            self.wfile.write(body[:-1] if self.how == "short" else body)


@pytest.mark.parametrize("how", ["another range", "endless", "the whole file", "short"])
def test_a_files_bytes_not_as_asked_are_refused_and_its_leaves_come_as_blocks(how: str) -> None:
    from halodb.unixfs.build import put_file
    from halodb.unixfs.tree import UnixFSTree

    store = MemoryStore()
    content = bytes(range(256)) * 64  # 16 KiB in four leaves of 4 KiB
    file = put_file(store, content, chunk=4096)
    handler = type("ARanger", (Ranger,), {"store": store, "how": how, "content": content})
    with serve(handler) as url:
        gateway = GatewayStore([url], deadline=10.0)
        root = UnixFSTree(gateway, file).node(file)
        assert root.pb is not None
        leaves = [(link.cid, 4096 * i, 4096) for i, link in enumerate(root.pb.links)][1:3]
        got = gateway.get_leaves(file, leaves)  # right, from the blocks
        assert got == {c: content[o:o + s] for c, o, s in leaves}
        failures = gateway.file_bytes_failures
        if how == "endless" and not failures:  # (read to exactly the range's end: what was asked, and no more)
            gateway.close()
            return
        assert len(failures) == 1 and f"no gateway sent bytes 4096-12287 of the file {file} intact" in failures[0]
        assert {"another range": "another Content-Range than bytes 4096-12287", "endless": "sent more than the 8192",
                "the whole file": "whole file (HTTP 200)", "short": "do not match"}[how] in failures[0], failures
        gateway.close()
