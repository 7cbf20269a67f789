"""End to end over IPFS: a publisher writes to Kubo node A; a client with an empty cache
syncs through node B's gateway, so every block travels A -> B by bitswap over loopback."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.blockstore.caching import CachingStore
from halodb.blockstore.gateway import GatewayStore

from .conftest import cid_for, make_item
from .kubo_node import KuboNode
from .loopback import relay


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KuboNode, KuboNode]]:
    a = KuboNode(tmp_path_factory.mktemp("node-a") / "repo").start()
    b = KuboNode(tmp_path_factory.mktemp("node-b") / "repo").start()
    try:
        info = json.loads(a.ipfs("id"))
        addr = next(x for x in info["Addresses"] if x.startswith("/ip4/127.0.0.1/tcp/"))
        b.ipfs("swarm", "connect", addr)  # the only peer B ever talks to
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_publish_on_a_sync_through_b(nodes: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    a, b = nodes
    publisher = halodb.open(tmp_path / "publisher", store=a.api, create=True)
    publisher.add([make_item(f"f{i}", cid_for(f"v1-{i}"), path=f"products/HALO/f{i}.zarr") for i in range(300)])
    c1 = publisher.commit("300 flights", time="2024-08-12T00:00:00Z")
    publisher.add([make_item("f7", cid_for("v2-7"), path="products/HALO/f7.zarr")])
    c2 = publisher.commit("reprocess f7", time="2024-08-20T00:00:00Z")
    publisher.publish("latest")
    publisher.close()

    client = halodb.open(tmp_path / "client", store=b.gateway, create=True)
    assert isinstance(client.store, CachingStore) and isinstance(client.store.remote, GatewayStore)
    gateway = client.store.remote
    client.names.publish("latest", c1)
    first = client.sync("latest")
    assert first.changes == 300
    # an initial sync asks for the head's datasets tree as subtree CARs (then reads it
    # locally); in index format 3 its 300 small items ride in a few leaves: a handful of
    # requests (format 2: 16 to 60 for ~330 blocks)
    requests_after_first = gateway.requests
    assert 2 <= requests_after_first <= 12, requests_after_first
    client.names.publish("latest", c2)
    second = client.sync("latest")
    assert (second.commits, second.changes) == (1, 1)
    # only the new blocks went to the network: the changed tree path, the item, the roots
    assert 0 < gateway.requests - requests_after_first <= 40
    assert client.cid_at("products/HALO/f7.zarr", "2024-08-15", name="latest") == cid_for("v1-7")
    assert client.cid_at("products/HALO/f7.zarr", "2024-08-21", name="latest") == cid_for("v2-7")
    # time travel and log over old versions need no network at all now
    before = gateway.requests
    assert [e.commit.message for e in client.log("latest")] == ["reprocess f7", "300 flights"]
    assert client.diff(str(c1), str(c2))[0].key == "halo/f7"
    assert gateway.requests == before
    client.close()

    # asked for one CAR (`--cars 1`): the head commit, its index root, then the whole
    # datasets tree (what a sync reads) in ONE request
    one = halodb.open(tmp_path / "client-one-car", store=b.gateway, create=True)
    assert isinstance(one.store, CachingStore) and isinstance(one.store.remote, GatewayStore)
    one.prefetch_spread = 1
    one.names.publish("latest", c1)
    assert one.sync("latest").changes == 300
    assert one.store.remote.requests == 3, one.store.remote.requests
    one.close()


def large(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` made larger than INLINE_MAX (2 KiB), so that it is linked, not inline."""
    item["properties"]["description"] = "a description longer than an inline item may be. " * 50
    return item


def test_a_gateway_node_that_disappears_mid_sync(nodes: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    """Node C dies during an incremental sync: a clear error, the cache keeps the old head,
    and the next sync (through another gateway) completes."""
    a, _ = nodes
    c = KuboNode(tmp_path / "node-c").start()
    try:
        addr = next(x for x in json.loads(a.ipfs("id"))["Addresses"] if x.startswith("/ip4/127.0.0.1/tcp/"))
        c.ipfs("swarm", "connect", addr)
        publisher = halodb.open(tmp_path / "publisher", store=a.api, create=True)
        # items larger than an inline one may be: blocks of their own, so that the
        # incremental sync makes over a hundred requests for the node to die in
        publisher.add([large(make_item(f"d{i}", cid_for(f"d1-{i}"))) for i in range(200)])
        c1 = publisher.commit("v1", time="2024-08-12T00:00:00Z")
        publisher.add([large(make_item(f"d{i}", cid_for(f"d2-{i}"))) for i in range(0, 200, 2)])
        c2 = publisher.commit("v2", time="2024-08-13T00:00:00Z")
        publisher.publish("latest")
        publisher.close()

        client = halodb.open(tmp_path / "client", store=c.gateway, create=True)
        client.names.publish("latest", c1)
        client.sync("latest")
        assert isinstance(client.store, CachingStore) and isinstance(client.store.remote, GatewayStore)
        gateway = client.store.remote

        armed = threading.Event()
        calls = itertools.count(1)

        def dying(_: int) -> None:  # the node goes away in the middle of the sync
            if armed.is_set() and next(calls) == 6:
                c.stop()

        with relay(c.gateway, status=dying) as (url, _):
            gateway.gateways = [url]
            gateway.proxies = {url: None}
            gateway.retries = 0
            armed.set()
            client.names.publish("latest", c2, expected=c1)
            with pytest.raises(halodb.HaloDBError) as info:
                client.sync("latest")
            assert "127.0.0.1" in str(info.value)
            state = client.cache.sync_state("latest")
            assert state is not None and state.head == str(c1)
            assert client.sql("SELECT count(*) FROM items WHERE data_cid LIKE 'bafk%'")[1][0][0] == 200
        client.close()

        again = halodb.open(tmp_path / "client", store=a.gateway)
        result = again.sync("latest")
        assert (result.commits, result.changes) == (1, 100)
        assert again.cid_at("halo/d0", "2024-08-14", name="latest") == cid_for("d2-0")
        again.close()
    finally:
        c.stop()


def test_a_signed_head_travels_through_a_gateway_and_a_strangers_does_not_pass(
        nodes: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    """The signature lives in the commit block: a client with nothing but B's gateway and a
    trust policy verifies it offline, and refuses a head signed by another key."""
    from halodb.api.keys import create_key
    from halodb.errors import TrustError

    a, b = nodes
    publisher = halodb.open(tmp_path / "publisher", store=a.api, create=True)
    alice = create_key(publisher.home, "alice")
    create_key(publisher.home, "mallory")
    publisher.add([make_item("f1", cid_for("signed-1"))])
    c1 = publisher.commit("signed by alice", time="2024-08-12T00:00:00Z", sign=["alice"])
    publisher.add([make_item("f2", cid_for("signed-2"))])
    forged = publisher.commit("signed by a stranger", time="2024-08-13T00:00:00Z", sign=["mallory"])
    publisher.close()

    client = halodb.open(tmp_path / "client", store=b.gateway, create=True)
    try:
        client.trust.add("latest", alice)
        client.names.publish("latest", c1)
        assert client.sync("latest").head == c1
        assert (client.home / "trust").is_dir() and not (client.home / "keys").exists()
        client.names.publish("latest", forged)
        with pytest.raises(TrustError, match=f"refusing latest -> {forged}: signed by did:key"):
            client.sync("latest")
        state = client.cache.sync_state("latest")
        assert state is not None and state.head == str(c1)
    finally:
        client.close()
