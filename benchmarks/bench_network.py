"""Sync over IPFS: one CAR versus block by block, through a Kubo gateway on loopback.

Two Kubo daemons (from tools/bin/ipfs, closed to the outside like the test nodes) are
peered over loopback. The publisher writes N items to node A; clients with empty caches
sync through node B's gateway, so blocks travel A -> B by bitswap, then B -> client by
HTTP. Printed side by side: full sync with the initial-sync CAR request, full sync block
by block, and an incremental sync of 10 changes, each with HTTP requests and bytes.

    python benchmarks/bench_network.py [--items 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import halodb  # noqa: E402
from halodb.blockstore.caching import CachingStore  # noqa: E402
from halodb.blockstore.gateway import GatewayStore  # noqa: E402
from halodb.demo_data import generate_items, mutate_items  # noqa: E402
from tests.kubo_node import KuboNode  # noqa: E402


def client_sync(home: Path, gateway: str, head: halodb.CID, *, car: bool) -> dict[str, Any]:
    reg = halodb.open(home, store=gateway, create=True)
    assert isinstance(reg.store, CachingStore) and isinstance(reg.store.remote, GatewayStore)
    remote = reg.store.remote
    if not car:
        reg.store.prefetch = lambda root: 0  # type: ignore[method-assign]
    reg.names.publish("bench", head)
    t = time.perf_counter()
    r = reg.sync("bench")
    out = {"s": time.perf_counter() - t, "requests": remote.requests, "bytes": remote.bytes_received,
           "changes": r.changes, "reg": reg, "remote": remote}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000)
    n = ap.parse_args().items
    work = Path(tempfile.mkdtemp(prefix="halodb-net-"))
    a = KuboNode(work / "a").start()
    b = KuboNode(work / "b").start()  # relays for the one-CAR client
    c = KuboNode(work / "c").start()  # relays for the block-by-block client (equally cold)
    try:
        addr = next(x for x in json.loads(a.ipfs("id"))["Addresses"] if x.startswith("/ip4/127.0.0.1/tcp/"))
        b.ipfs("swarm", "connect", addr)
        c.ipfs("swarm", "connect", addr)
        items = generate_items(n, seed=5)
        pub = halodb.open(work / "pub", store=a.api, create=True)
        pub.add(items)
        c1 = pub.commit(f"{n} items", time="2024-09-01T00:00:00Z", author="bench")
        pub.publish("bench")
        pub.add(mutate_items(items, 10, seed=1))
        c2 = pub.commit("10 changed", time="2024-09-02T00:00:00Z", author="bench")
        pub.publish("bench")
        pub.close()

        car = client_sync(work / "client-car", b.gateway, c1, car=True)
        bbb = client_sync(work / "client-blocks", c.gateway, c1, car=False)
        reg, remote = car["reg"], car["remote"]
        before_req, before_bytes = remote.requests, remote.bytes_received
        reg.names.publish("bench", c2)
        t = time.perf_counter()
        r = reg.sync("bench")
        incr = {"s": time.perf_counter() - t, "requests": remote.requests - before_req,
                "bytes": remote.bytes_received - before_bytes, "changes": r.changes}
        car["reg"].close()
        bbb["reg"].close()
        print(f"# bench_network: {n:,} items, publisher on Kubo A, clients via the gateways of Kubo B and C (loopback, cold)")
        print(f"{'':40}{'seconds':>10}{'requests':>10}{'MB':>10}{'items/s':>10}")
        for label, m in (("full sync, one CAR (B fetches by bitswap)", car), ("full sync, block by block (8 at a time)", bbb),
                         ("incremental sync, 10 changes", incr)):
            print(f"{label:40}{m['s']:>10.2f}{m['requests']:>10,}{m['bytes'] / 1e6:>10.2f}{m['changes'] / m['s']:>10,.0f}")
    finally:
        c.stop()
        b.stop()
        a.stop()


if __name__ == "__main__":
    main()
