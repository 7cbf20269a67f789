"""IPNS names through a real Kubo node: publish with a named key, resolve, sync, CAS.

The node runs ``ipfs daemon --offline`` (no swarm, Routing none): its IPNS records live in its
own datastore, which is where a node without routing publishes and resolves them.
"""

from __future__ import annotations

import json

from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.errors import NameConflictError, NameNotFoundError, StoreURLError
from halodb.naming.ipns import IPNSNames

from .conftest import cid_for, make_item, run_cli
from .loopback import QuietHandler, respond, serve


def _publisher(tmp_path: Path, kubo: Any, n: int, when: str) -> tuple[halodb.Registry, halodb.CID]:
    reg = halodb.open(tmp_path / "pub", store=kubo.api, create=True)
    reg.add([make_item(f"i{k}", cid_for(f"{when}-{k}")) for k in range(n)])
    return reg, reg.commit(f"{n} items", time=when)


def test_publish_and_resolve_with_a_named_key(kubo_offline: Any, tmp_path: Path) -> None:
    names = IPNSNames(kubo_offline.api)
    reg, c1 = _publisher(tmp_path, kubo_offline, 3, "2024-08-10T00:00:00Z")
    published = reg.publish("ipns://flights", c1)
    assert published.cid == c1
    assert names.resolve("flights").cid == c1  # by key name
    ipns_name = names.ipns_name("flights")
    assert ipns_name.startswith("k51") and names.resolve(ipns_name).cid == c1  # by IPNS name
    assert "flights" in names.names()
    # a second publish moves it; compare-and-swap against a stale head is refused
    reg.add([make_item("extra", cid_for("extra"))])
    c2 = reg.commit("one more", time="2024-08-11T00:00:00Z")
    reg.publish("ipns://flights", c2, expected=c1)
    assert names.resolve("flights").cid == c2
    with pytest.raises(NameConflictError, match=str(c2)):
        reg.publish("ipns://flights", c1, expected=c1)
    assert names.resolve("flights").cid == c2
    reg.close()


def test_sync_an_ipns_name_into_the_cache(kubo_offline: Any, tmp_path: Path) -> None:
    reg, c1 = _publisher(tmp_path, kubo_offline, 5, "2024-08-10T00:00:00Z")
    reg.publish("ipns://campaign", c1)
    reg.close()
    client = halodb.open(tmp_path / "client", store=kubo_offline.api, create=True)
    result = client.sync("ipns://campaign")
    assert (result.commits, result.changes) == (1, 5)
    assert client.canonical_name("ipns://campaign") == "ipns://campaign"
    _, rows = client.sql("SELECT name, head FROM sync_state")
    assert rows == [("ipns://campaign", str(c1))]
    assert client.cid_at("halo/i3", "2024-08-12", name="ipns://campaign") == cid_for("2024-08-10T00:00:00Z-3")
    client.close()
    # the CLI takes the same name forms
    r = run_cli(tmp_path / "client", "--store", kubo_offline.api, "resolve", "ipns://campaign", "--json")
    assert r.code == 0, r.err
    assert str(c1) in r.out
    # publishing with a key name prints the IPNS name readers resolve (ipns://k51…)
    k51 = IPNSNames(kubo_offline.api).ipns_name("campaign")
    r = run_cli(tmp_path / "client", "--store", kubo_offline.api, "publish", "ipns://campaign", "--cid", str(c1))
    assert r.code == 0 and r.out.strip() == f"ipns://campaign -> {c1}  (readers resolve ipns://{k51})", r.out + r.err
    r = run_cli(tmp_path / "client", "--store", kubo_offline.api, "publish", "ipns://campaign", "--cid", str(c1), "--json")
    assert r.code == 0 and json.loads(r.out) == {"name": "ipns://campaign", "cid": str(c1), "ipns": f"ipns://{k51}"}


def test_unknown_keys_and_missing_node_are_clear_errors(kubo_offline: Any, tmp_path: Path) -> None:
    names = IPNSNames(kubo_offline.api)
    with pytest.raises(NameNotFoundError, match="IPNS key 'no-such-key' does not exist"):
        names.resolve("no-such-key")
    reg = halodb.open(tmp_path / "local", create=True)
    with pytest.raises(StoreURLError, match="IPNS names need a Kubo node"):
        reg.resolve("ipns://flights")
    reg.close()
    r = run_cli(tmp_path / "local", "sync", "ipns://flights")
    assert r.code == 2 and "IPNS names need a Kubo node" in r.err


def _record_server(body: bytes) -> type[QuietHandler]:
    """A gateway answering every GET with ``body`` as the IPNS record: one that tampers with
    records, a fault a real gateway does not produce on demand."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            respond(self, body, "application/vnd.ipfs.ipns-record")

    return Handler


def test_ipns_through_a_gateway_verifies_every_record(kubo_offline: Any, tmp_path: Path) -> None:
    import httpx

    from halodb.blockstore.gateway import GatewayStore
    from halodb.errors import VerificationError
    from halodb.naming.ipns_record import GatewayIPNS, verify_record

    reg, c1 = _publisher(tmp_path, kubo_offline, 4, "2024-08-10T00:00:00Z")
    reg.publish("ipns://via-gateway", c1)
    reg.close()
    ipns_name = IPNSNames(kubo_offline.api).ipns_name("via-gateway")

    # a client with only the gateway: resolves, verifies, syncs; the record's TTL (5m) comes along
    client = halodb.open(tmp_path / "client", store=kubo_offline.gateway, create=True)
    found = client.names.resolve(f"ipns://{ipns_name}")
    assert found.cid == c1 and found.ttl == 300
    explained = client.names.explain(f"ipns://{ipns_name}")  # what `halodb resolve` prints
    assert explained["cid"] == str(c1) and explained["ttl"] == 300, explained
    assert client.sync(f"ipns://{ipns_name}").changes == 4
    with pytest.raises(NameNotFoundError, match="key names need the Kubo node"):
        client.resolve("ipns://via-gateway")
    client.close()

    record = httpx.get(f"{kubo_offline.gateway}ipns/{ipns_name}",
                       headers={"Accept": "application/vnd.ipfs.ipns-record"}).content
    assert verify_record(ipns_name, record).cid == c1
    from multiformats import CID as MFCID, multibase

    peer_id = multibase.encode(bytes(MFCID.decode(ipns_name).digest), "base58btc")[1:]  # the 12D3Koo… spelling
    assert peer_id.startswith("12D3Koo") and verify_record(peer_id, record).cid == c1
    other = IPNSNames(kubo_offline.api).ipns_name("self")
    with pytest.raises(VerificationError, match="signatureV2 does not verify"):
        verify_record(other, record)  # a valid record, but for another name
    tampered = bytearray(record)
    tampered[record.index(b"/ipfs/") + 10] ^= 1
    with serve(_record_server(bytes(tampered))) as bad:
        with pytest.raises(halodb.HaloDBError, match="rejected"):
            GatewayIPNS(GatewayStore([bad])).resolve(ipns_name)
        # a tampering gateway first, then a good one: the good record wins
        assert GatewayIPNS(GatewayStore([bad, kubo_offline.gateway])).resolve(ipns_name).cid == c1


def test_an_expired_ipns_record_is_refused(kubo_offline: Any, tmp_path: Path) -> None:
    import time

    import httpx

    from halodb.errors import VerificationError
    from halodb.naming.ipns_record import verify_record

    names = IPNSNames(kubo_offline.api, lifetime="1s")
    reg, c1 = _publisher(tmp_path, kubo_offline, 1, "2024-08-10T00:00:00Z")
    reg.close()
    names.publish("short-lived", c1)
    ipns_name = names.ipns_name("short-lived")
    record = httpx.get(f"{kubo_offline.gateway}ipns/{ipns_name}",
                       headers={"Accept": "application/vnd.ipfs.ipns-record"}).content
    time.sleep(1.5)
    with pytest.raises(VerificationError, match="expired"):
        verify_record(ipns_name, record)


def test_a_replayed_older_ipns_record_is_refused(kubo_offline: Any, tmp_path: Path) -> None:
    """A gateway replays a validly signed Sequence-1 record after Sequence 2 was accepted: it is
    treated like a failing gateway, and with no gateway offering one as new it is refused,
    naming both sequences; the cache is not touched."""
    import httpx

    from halodb.blockstore.gateway import GatewayStore
    from halodb.errors import RewindError
    from halodb.naming.ipns_record import GatewayIPNS, verify_record

    from .test_cache_helpers import dump

    reg, c1 = _publisher(tmp_path, kubo_offline, 2, "2024-08-10T00:00:00Z")

    def record_of(ipns_name: str) -> bytes:  # the signed record as the node's gateway serves it now
        return httpx.get(f"{kubo_offline.gateway}ipns/{ipns_name}",
                         headers={"Accept": "application/vnd.ipfs.ipns-record"}).content

    reg.publish("ipns://replayed", c1)
    ipns_name = IPNSNames(kubo_offline.api).ipns_name("replayed")
    old = record_of(ipns_name)
    reg.add([make_item("late", cid_for("late"))])
    c2 = reg.commit("one more", time="2024-08-11T00:00:00Z")
    reg.publish("ipns://replayed", c2)
    reg.close()
    new = record_of(ipns_name)
    s1, s2 = verify_record(ipns_name, old).sequence, verify_record(ipns_name, new).sequence
    assert s1 < s2 and verify_record(ipns_name, old).cid == c1 and verify_record(ipns_name, new).cid == c2

    class Replaying(QuietHandler):
        """A gateway serving whichever signed record it is told to (blocks: 404, ask the next)."""

        body = new

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/ipns/"):
                respond(self, Replaying.body, "application/vnd.ipfs.ipns-record")
            else:
                respond(self, b"not here", "text/plain", status=404)

    name = f"ipns://{ipns_name}"
    home = tmp_path / "client"
    with serve(Replaying) as replayer:
        # Sequence 2 first: accepted, synced, remembered in the home
        client = halodb.open(home, store=f"{replayer},{kubo_offline.gateway}", create=True)
        assert client.sync(name).head == c2
        assert client.names.resolve(name).source.endswith(f"via {replayer}")
        assert (home / "names" / ".ipns-sequences.json").exists()
        assert client.names.names() == []  # the memory is not a local name
        # now it replays Sequence 1: that gateway is skipped, the next one has Sequence 2
        Replaying.body = old
        found = client.names.resolve(name)
        assert found.cid == c2 and found.source.endswith(f"via {kubo_offline.gateway}")
        client.close()
        before = dump(home / "cache.duckdb")

        # only the replaying gateway, in a new process: refused, naming both sequences
        only = halodb.open(home, store=replayer)
        with pytest.raises(RewindError) as info:
            only.names.resolve(name)
        err = info.value
        assert (err.sequence, err.last_sequence, err.head, err.current) == (s1, s2, c1, c2)
        assert f"sequence {s1}" in str(err) and f"sequence {s2}" in str(err)
        only.close()
        r = run_cli(home, "--store", replayer, "sync", name)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
        assert f"offers sequence {s1}" in r.err and f"older than sequence {s2}" in r.err
        assert dump(home / "cache.duckdb") == before
        # a resolver with no memory of Sequence 2 would have followed the replay
        assert GatewayIPNS(GatewayStore([replayer])).resolve(ipns_name).cid == c1
