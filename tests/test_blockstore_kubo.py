"""The Kubo backend against a real Kubo daemon: the shared conformance suite, and interop."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from halodb.blockstore import open_store
from halodb.blockstore.base import BlockStore
from halodb.blockstore.kubo import KuboStore
from halodb.errors import BlockStoreError
from halodb.ipld import CID, decode, make_block
from halodb.testing.blockstore import BlockStoreTests

from .kubo_node import KuboNode


class TestKuboStore(BlockStoreTests):
    @pytest.fixture(autouse=True)
    def _node(self, kubo: KuboNode) -> None:
        self.node = kubo

    def make_store(self, tmp_path: Path) -> BlockStore:
        # one daemon for the module; `repo gc` drops every (unpinned) block so each test
        # starts from an empty store, as the suite expects
        self.node.ipfs("repo", "gc", "--silent")
        self.bad: set[str] = set()
        return KuboStore(self.node.api, client=httpx.Client(transport=CorruptingTransport(self.bad)))

    def corrupt(self, store: BlockStore, cid: CID) -> None:
        # Kubo verifies what it stores, so the fault is injected on the wire instead
        self.bad.add(str(cid))


class CorruptingTransport(httpx.HTTPTransport):
    """The real HTTP transport, flipping a byte of block/get answers for chosen CIDs."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/block/get") and request.url.params.get("arg") in self.bad:
            body = bytearray(response.read())
            body[len(body) // 2] ^= 0xFF
            return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))
        return response


def test_cids_agree_with_ipfs_dag_put(kubo: KuboNode) -> None:
    """HaloDB's CID of a value equals what `ipfs dag put --store-codec dag-cbor` makes of it."""
    value = {"type": "Feature", "id": "HALO-20240811a", "bbox": [-60.5, 10.25, -20.0, 17.5], "n": 3, "ok": True}
    cid, data = make_block(value)
    out = kubo.ipfs("dag", "put", "--store-codec", "dag-cbor", "--input-codec", "dag-json", input=json.dumps(value).encode())
    assert CID.parse(out.decode().strip()) == cid
    store = KuboStore(kubo.api)
    assert store.get(cid) == data


def test_blocks_written_in_one_batch_are_readable_with_ipfs_dag_get(kubo: KuboNode) -> None:
    child_cid, child = make_block({"leaf": 1})
    root_cid, root = make_block({"child": child_cid, "name": "root"})
    store = open_store(kubo.api, Path("/nonexistent"))
    assert isinstance(store, KuboStore)
    store.put_many([(child_cid, child), (root_cid, root)])
    got = json.loads(kubo.ipfs("dag", "get", "--output-codec", "dag-json", str(root_cid)))
    assert got == {"child": {"/": str(child_cid)}, "name": "root"}
    assert decode(store.get(root_cid)) == {"child": child_cid, "name": "root"}


def test_unreachable_node_is_a_clear_error() -> None:
    store = KuboStore("kubo+http://127.0.0.1:9", timeout=2.0)
    with pytest.raises(BlockStoreError) as info:
        store.get(CID.for_bytes(b"x"))
    assert "127.0.0.1:9" in str(info.value)


def test_registry_on_kubo_commits_and_syncs(kubo: KuboNode, tmp_path: Path) -> None:
    """The whole loop with the index stored in Kubo: add, commit, publish, sync, time travel."""
    import halodb

    from .conftest import cid_for, make_item

    reg = halodb.open(tmp_path / "home", store=kubo.api, create=True)
    reg.add([make_item("f1", cid_for("a1")), make_item("f2", cid_for("b1"))])
    c1 = reg.commit("first", time="2024-08-12T00:00:00Z")
    reg.add([make_item("f1", cid_for("a2"))])
    reg.commit("second", time="2024-08-20T00:00:00Z")
    reg.publish("latest")
    assert reg.sync("latest").commits == 2
    assert reg.cid_at("halo/f1", "2024-08-15", name="latest") == cid_for("a1")
    got = json.loads(kubo.ipfs("dag", "get", "--output-codec", "dag-json", str(c1)))
    assert got["message"] == "first" and got["type"] == "halodb/commit"
    reg.close()


def test_publish_pins_the_head_and_moves_the_pin(kubo: KuboNode, tmp_path: Path) -> None:
    import halodb

    from .conftest import cid_for, make_item

    def pins() -> set[str]:
        out = kubo.ipfs("pin", "ls", "--type", "recursive", "--quiet").decode().split()
        return set(out)

    reg = halodb.open(tmp_path / "home", store=kubo.api, create=True)
    reg.add([make_item("p1", cid_for("p1"))])
    c1 = reg.commit("first", time="2024-08-12T00:00:00Z")
    reg.publish("pinned")
    assert str(c1) in pins()
    reg.add([make_item("p2", cid_for("p2"))])
    c2 = reg.commit("second", time="2024-08-13T00:00:00Z")
    reg.publish("pinned")
    assert str(c2) in pins() and str(c1) not in pins()  # pin/update moved it (c1 is still kept: c2 links to it)
    # a recursive pin keeps the whole history: garbage collection removes nothing of it
    kubo.ipfs("repo", "gc", "--silent")
    reg2 = halodb.open(tmp_path / "home2", store=kubo.api, create=True)
    reg2.names.publish("copy", c2)
    assert reg2.sync("copy").commits == 2
    reg.close()
    reg2.close()


def test_a_name_moves_onto_a_head_another_name_has_pinned_already(kubo: KuboNode, tmp_path: Path) -> None:
    import halodb

    from .conftest import cid_for, make_item

    def pins() -> set[str]:
        return set(kubo.ipfs("pin", "ls", "--type", "recursive", "--quiet").decode().split())

    reg = halodb.open(tmp_path / "home", store=kubo.api, create=True)
    reg.add([make_item("q1", cid_for("q1"))])
    c1 = reg.commit("first", time="2024-08-12T00:00:00Z")
    reg.publish("a")
    reg.add([make_item("q2", cid_for("q2"))])
    c2 = reg.commit("second", time="2024-08-13T00:00:00Z")
    reg.publish("b")  # c2 pinned for b; c1 still pinned for a
    assert {str(c1), str(c2)} <= pins()
    reg.publish("a")  # a moves from c1 onto c2, which is pinned already (Kubo's pin/update refuses that)
    assert reg.resolve("a") == c2 and str(c2) in pins() and str(c1) not in pins()
    reg.publish("a")  # and again: nothing to move
    assert reg.resolve("a") == c2
    reg.close()


def test_dag_export_bulk_read(kubo: KuboNode, tmp_path: Path) -> None:
    from halodb.blockstore import DirectoryStore
    from halodb.errors import CarError

    child_cid, child = make_block({"bulk": 1})
    root_cid, root = make_block({"child": child_cid})
    store = KuboStore(kubo.api)
    store.put_many([(child_cid, child), (root_cid, root)])
    local = DirectoryStore(tmp_path / "local")
    assert store.fetch_dag(root_cid, local) == 2 and local.get(child_cid) == child
    store.delete(child_cid)  # an incomplete DAG on the node: an error, nothing written
    other = DirectoryStore(tmp_path / "other")
    with pytest.raises((BlockStoreError, CarError)):
        store.fetch_dag(root_cid, other)
    assert not other.has(root_cid)
