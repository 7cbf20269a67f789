"""IPNS names through a real Kubo node: publish with a named key, resolve, sync, CAS.

The node runs ``ipfs daemon --offline`` (no swarm, Routing none): its IPNS records live in its
own datastore, which is where a node without routing publishes and resolves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.errors import NameConflictError, NameNotFoundError, StoreURLError
from halodb.naming.ipns import IPNSNames

from .conftest import cid_for, make_item, run_cli


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
