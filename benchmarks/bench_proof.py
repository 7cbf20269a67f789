"""Inclusion-proof sizes: how many blocks and bytes `halodb prove` writes at N datasets.

Builds N datasets with items (one commit, then `--versions` small commits), proves 200
random keys at the first version (so the proof carries every commit back to it) and at the
newest, verifies each, and prints median and maximum sizes beside the whole index (the
baseline: what a reader would fetch without a proof).

    python benchmarks/bench_proof.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from halodb.blockstore import MemoryStore
from halodb.index.commit import commit_changes
from halodb.index.index import Index
from halodb.index.model import Entry
from halodb.index.proof import verify_proof, write_proof
from halodb.index.reachable import reachable
from halodb.ipld import CID, RAW, encode


def build(n: int, versions: int) -> tuple[MemoryStore, Index, CID, list[str], datetime]:
    store = MemoryStore()
    index = Index(store)
    start = datetime(2024, 8, 1, tzinfo=timezone.utc)
    keys = [f"halo/flight-{i:07d}" for i in range(n)]

    def entry(key: str, v: int) -> Entry:
        item = store.put(encode({"type": "Feature", "id": key, "properties": {"v": v}}))
        return Entry(item, str(CID.for_bytes(f"{key}/{v}".encode(), RAW)), f"products/{key}.zarr")

    head = commit_changes(store, index, None, {k: entry(k, 0) for k in keys}, set(), time=start, author="bench",
                          message="all")
    rng = random.Random(1)
    for v in range(1, versions + 1):
        changed = {k: entry(k, v) for k in rng.sample(keys, 10)}
        head = commit_changes(store, index, head, changed, set(), time=start + timedelta(days=v), author="bench",
                              message=f"v{v}")
    return store, index, head, keys, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    print(f"{'datasets':>9} {'when':>7} {'blocks med':>10} {'KiB med':>8} {'KiB max':>8} {'verify ms':>9} "
          f"{'whole index KiB':>15}")
    for n in args.sizes:
        store, index, head, keys, start = build(n, args.versions)
        whole = sum(len(store.get(c)) for c in reachable(store, index, head, history=False)) / 1024
        rng = random.Random(2)
        for label, when in (("newest", start + timedelta(days=args.versions)), ("first", start)):
            sizes, blocks, verify_ms = [], [], []
            for key in rng.sample(keys, args.probes):
                out = io.BytesIO()
                blocks.append(write_proof(store, head, key, when, out))
                sizes.append(len(out.getvalue()) / 1024)
                t = time.perf_counter()
                answer = verify_proof(io.BytesIO(out.getvalue()))
                verify_ms.append((time.perf_counter() - t) * 1e3)
                assert answer.key == key
            print(f"{n:>9} {label:>7} {statistics.median(blocks):>10.0f} {statistics.median(sizes):>8.1f} "
                  f"{max(sizes):>8.1f} {statistics.median(verify_ms):>9.2f} {whole:>15.0f}")


if __name__ == "__main__":
    main()
