"""Sync over IPFS: one CAR versus block by block, through a Kubo gateway on loopback.

Two Kubo daemons (from tools/bin/ipfs, closed to the outside like the test nodes) are
peered over loopback. The publisher writes N items to node A; clients with empty caches
sync through node B's gateway, so blocks travel A -> B by bitswap, then B -> client by
HTTP. Printed side by side, from A's own gateway (which holds every block) and through a
cold relay per mode: full sync as one CAR, as 16 subtree CARs (the default), and block by
block; and an incremental sync of 10 changes; each with HTTP requests and bytes.

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
from halodb.demo.campaign import generate_items, mutate_items  # noqa: E402
from tests.kubo_node import KuboNode  # noqa: E402


#: initial-sync strategies: key -> (label, Registry.prefetch_spread, Registry.prefetch_workers)
MODES = {"car": ("one CAR", 1, 1), "split16": ("16+ subtree CARs, 16 at once", 16, 16),
         "split256": ("256+ subtree CARs, 16 at once", 256, 16), "blocks": ("block by block, 8 at once", 0, 8)}
DEFAULT = "split256"


def client_sync(home: Path, gateway: str, head: halodb.CID, *, spread: tuple[int, int]) -> dict[str, Any]:
    reg = halodb.open(home, store=gateway, create=True)
    assert isinstance(reg.store, CachingStore) and isinstance(reg.store.remote, GatewayStore)
    remote = reg.store.remote
    reg.prefetch_spread, reg.prefetch_workers = spread
    reg.names.publish("bench", head)
    t = time.perf_counter()
    r = reg.sync("bench")
    return {"s": time.perf_counter() - t, "requests": remote.requests, "bytes": remote.bytes_received,
            "changes": r.changes, "reg": reg, "remote": remote}


def incremental(client: dict[str, Any], head: halodb.CID) -> dict[str, Any]:
    reg, remote = client["reg"], client["remote"]
    before_req, before_bytes = remote.requests, remote.bytes_received
    reg.names.publish("bench", head)
    t = time.perf_counter()
    r = reg.sync("bench")
    return {"s": time.perf_counter() - t, "requests": remote.requests - before_req,
            "bytes": remote.bytes_received - before_bytes, "changes": r.changes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ",".join(MODES))
    args = ap.parse_args()
    n = args.items
    modes = {m: MODES[m] for m in args.modes.split(",")}
    work = Path(tempfile.mkdtemp(prefix="halodb-net-"))
    a = KuboNode(work / "a").start()
    relays = {mode: KuboNode(work / f"relay{i}").start() for i, mode in enumerate(modes)}  # one cold relay each
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        addr = next(x for x in json.loads(a.ipfs("id"))["Addresses"] if x.startswith("/ip4/127.0.0.1/tcp/"))
        for node in relays.values():
            node.ipfs("swarm", "connect", addr)
        items = generate_items(n, seed=5)
        pub = halodb.open(work / "pub", store=a.api, create=True)
        pub.add(items)
        c1 = pub.commit(f"{n} items", time="2024-09-01T00:00:00Z", author="bench")
        pub.publish("bench")
        pub.add(mutate_items(items, 10, seed=1))
        c2 = pub.commit("10 changed", time="2024-09-02T00:00:00Z", author="bench")
        pub.publish("bench")
        pub.close()

        for key, (label, spread, workers) in modes.items():  # A's own gateway holds every block
            m = client_sync(work / f"client-a-{key}", a.gateway, c1, spread=(spread, workers))
            rows.append((f"full, {label}, from A (holds the blocks)", m))
            if key == DEFAULT:
                rows.append(("incremental, 10 changes, from A", incremental(m, c2)))
            m["reg"].close()
        for key, (label, spread, workers) in modes.items():  # a cold relay each: blocks travel A -> relay by bitswap
            m = client_sync(work / f"client-r-{key}", relays[key].gateway, c1, spread=(spread, workers))
            rows.append((f"full, {label}, via a cold relay", m))
            if key == DEFAULT:
                rows.append(("incremental, 10 changes, via the relay", incremental(m, c2)))
            m["reg"].close()
        print(f"# bench_network: {n:,} items, publisher on Kubo A; clients with empty caches read A's gateway,"
              " or the gateway of a cold Kubo peered to A (loopback)")
        print(f"{'':62}{'seconds':>10}{'requests':>10}{'MB':>10}{'items/s':>10}")
        for label, m in rows:
            print(f"{label:62}{m['s']:>10.2f}{m['requests']:>10,}{m['bytes'] / 1e6:>10.2f}{m['changes'] / m['s']:>10,.0f}")
    finally:
        for node in (*relays.values(), a):
            node.stop()


if __name__ == "__main__":
    main()
