"""Sync over IPFS: index formats and fetch modes, through a Kubo gateway on loopback.

Two or more Kubo daemons (from tools/bin/ipfs, closed to the outside like the test nodes)
are peered over loopback. A publisher writes N items to node A, once per index format:
format 2 (every item a block of its own, linked from its entry) and format 3 (items of at
most 2 KiB inline in their entries, larger leaves); clients with empty caches sync through
the gateway of a cold node peered to A (one per format and mode), so blocks travel A ->
relay by bitswap, then relay -> client by HTTP. Printed side by side, per format: the full
sync per mode (one CAR, 16 or 256+ subtree CARs, block by block), then an incremental sync
of 10 changes, each with seconds, HTTP requests, MB and items/s; and what the publisher's
10-change commit wrote (blocks, bytes) and the incremental sync read. ``--from-a`` adds
the same syncs from A's own gateway (which holds every block).

    python benchmarks/bench_network.py [--items 5000] [--formats 2,3] [--modes split256]
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
from halodb.index.index import Index  # noqa: E402
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
            "changes": r.changes, "blocks": r.blocks_read, "reg": reg, "remote": remote}


def incremental(client: dict[str, Any], head: halodb.CID) -> dict[str, Any]:
    reg, remote = client["reg"], client["remote"]
    before_req, before_bytes = remote.requests, remote.bytes_received
    reg.names.publish("bench", head)
    t = time.perf_counter()
    r = reg.sync("bench")
    return {"s": time.perf_counter() - t, "requests": remote.requests - before_req,
            "bytes": remote.bytes_received - before_bytes, "changes": r.changes, "blocks": r.blocks_read}


#: index formats: key -> (label, Index(inline_items=...))
FORMATS = {"2": ("format 2", False), "3": ("format 3", True)}


def publish(home: Path, api: str, items: list[dict[str, Any]], changed: list[dict[str, Any]], inline_items: bool
            ) -> tuple[halodb.CID, halodb.CID, dict[str, int]]:
    """The two versions (N items; 10 changed) in one index format; and what the second commit wrote."""
    pub = halodb.open(home, store=api, create=True)
    pub.index = Index(pub.store, pub.node_cache, inline_items=inline_items)
    pub.add(items)
    c1 = pub.commit(f"{len(items)} items", time="2024-09-01T00:00:00Z", author="bench")
    pub.add(changed)
    stats = pub.store.stats
    blocks, size = stats.blocks_written, stats.bytes_written
    c2 = pub.commit("10 changed", time="2024-09-02T00:00:00Z", author="bench")
    wrote = {"blocks": stats.blocks_written - blocks, "bytes": stats.bytes_written - size}
    pub.close()
    return c1, c2, wrote


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--modes", default=DEFAULT, help="comma-separated subset of: " + ",".join(MODES))
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of: " + ",".join(FORMATS))
    ap.add_argument("--from-a", action="store_true", help="also sync from A's own gateway")
    args = ap.parse_args()
    n = args.items
    modes = {m: MODES[m] for m in args.modes.split(",")}
    formats = {f: FORMATS[f] for f in args.formats.split(",")}
    work = Path(tempfile.mkdtemp(prefix="halodb-net-"))
    a = KuboNode(work / "a").start()
    relays = {(f, m): KuboNode(work / f"relay-{f}-{m}").start() for f in formats for m in modes}  # one cold relay each
    rows: list[tuple[str, dict[str, Any]]] = []
    wrote: dict[str, dict[str, int]] = {}
    try:
        addr = next(x for x in json.loads(a.ipfs("id"))["Addresses"] if x.startswith("/ip4/127.0.0.1/tcp/"))
        for node in relays.values():
            node.ipfs("swarm", "connect", addr)
        items = generate_items(n, seed=5)
        changed = mutate_items(items, 10, seed=1)
        heads = {}
        for f, (label, inline_items) in formats.items():
            c1, c2, wrote[f] = publish(work / f"pub-{f}", a.api, items, changed, inline_items)
            heads[f] = (c1, c2)
        for f, (flabel, _) in formats.items():
            c1, c2 = heads[f]
            for key, (label, spread, workers) in modes.items():
                if args.from_a:  # A's own gateway holds every block
                    m = client_sync(work / f"client-a-{f}-{key}", a.gateway, c1, spread=(spread, workers))
                    rows.append((f"{flabel}: full, {label}, from A", m))
                    m["reg"].close()
                m = client_sync(work / f"client-r-{f}-{key}", relays[f, key].gateway, c1, spread=(spread, workers))
                rows.append((f"{flabel}: full, {label}, via a cold relay", m))
                if key == DEFAULT or len(modes) == 1:
                    rows.append((f"{flabel}: incremental, 10 changes, via the relay", incremental(m, c2)))
                m["reg"].close()
        print(f"# bench_network: {n:,} items, publisher on Kubo A; clients with empty caches read the gateway"
              " of a cold Kubo peered to A (loopback), one per format and mode")
        print(f"{'':70}{'seconds':>9}{'requests':>10}{'blocks':>8}{'MB':>8}{'items/s':>9}")
        for label, m in rows:
            print(f"{label:70}{m['s']:>9.2f}{m['requests']:>10,}{m['blocks']:>8,}{m['bytes'] / 1e6:>8.2f}"
                  f"{m['changes'] / m['s']:>9,.0f}")
        for f, w in wrote.items():
            print(f"# {FORMATS[f][0]}: the 10-change commit wrote {w['blocks']:,} blocks, {w['bytes'] / 1e3:,.1f} kB")
    finally:
        for node in (*relays.values(), a):
            node.stop()


if __name__ == "__main__":
    main()
