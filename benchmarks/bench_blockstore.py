"""The embedded block store at scale (issue 15, part 3): one file per block against SQLite.

Writes N item-sized blocks (DAG-CBOR maps holding ~1 kB of random bytes, the size of a STAC
item block) into a fresh :class:`~halodb.blockstore.DirectoryStore` and a fresh
:class:`~halodb.blockstore.sqlite.SqliteStore`, each in its own child process, in batches
of 1,000 (``put_many``, as a sync writes), then ``flush``; then reads a random sample one
block at a time (``get``, verified). Prints for each store: bytes of the blocks, bytes on
disk (``du``: the sum of ``st_blocks * 512``) and their ratio, files, blocks written per
second (the flush included; making the blocks not), random reads per second (page cache warm: what was just
written), peak RSS of its process. Then the migration of the directory store into SQLite
(``SqliteStore`` opened on its root) and its time. Target: disk <= 1.5x the blocks' bytes,
a few hundred files at most.

    python benchmarks/bench_blockstore.py [--blocks 1000000] [--reads 50000] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from halodb.blockstore import BlockStore, DirectoryStore
from halodb.blockstore.sqlite import SqliteStore
from halodb.ipld import CID, make_block

BATCH = 1000


def blocks(n: int, seed: int = 7) -> Iterator[tuple[CID, bytes]]:
    """N deterministic item-sized DAG-CBOR blocks."""
    rng = random.Random(seed)
    for i in range(n):
        yield make_block({"id": f"item-{i}", "payload": rng.randbytes(rng.randint(900, 1100))})


def disk_usage(root: Path) -> tuple[int, int]:
    """(bytes allocated on disk, files) under ``root``."""
    used = files = 0
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            used += st.st_blocks * 512
            files += 1
    return used, files


def open_store(kind: str, root: Path) -> BlockStore:
    return DirectoryStore(root) if kind == "directory" else SqliteStore(root)


def child(kind: str, root: Path, n: int, reads: int) -> dict[str, Any]:
    """Runs in a child process: write, flush, read; the figures as a dict."""
    if kind == "migrate":
        t = time.perf_counter()
        store: BlockStore = SqliteStore(root)
        took = time.perf_counter() - t
        store.close()
        used, files = disk_usage(root)
        return {"seconds": took, "disk": used, "files": files,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    store = open_store(kind, root)
    cids: list[CID] = []
    size = 0
    write_s = 0.0  # making the blocks is not counted
    batch: list[tuple[CID, bytes]] = []
    for cid, data in blocks(n):
        batch.append((cid, data))
        cids.append(cid)
        size += len(data)
        if len(batch) == BATCH:
            t = time.perf_counter()
            store.put_many(batch, verify=False)
            write_s += time.perf_counter() - t
            batch = []
    t = time.perf_counter()
    if batch:
        store.put_many(batch, verify=False)
    store.flush()
    write_s += time.perf_counter() - t
    sample = random.Random(1).sample(cids, min(reads, len(cids)))
    t = time.perf_counter()
    for cid in sample:
        store.get(cid)
    read_s = time.perf_counter() - t
    store.close()
    used, files = disk_usage(root)
    return {"blocks": n, "bytes": size, "disk": used, "files": files, "write_per_s": n / write_s,
            "read_per_s": len(sample) / read_s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(kind: str, root: Path, n: int, reads: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--root", str(root), "--blocks", str(n),
                          "--reads", str(reads)], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=1_000_000)
    ap.add_argument("--reads", type=int, default=50_000)
    ap.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--child", choices=["directory", "sqlite", "migrate"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.blocks, args.reads)))
        return
    base = Path(tempfile.mkdtemp(prefix="bench-blockstore-", dir=args.dir))
    try:
        print(f"{args.blocks:,} blocks, {args.reads:,} random reads, in {base}")
        print(f"{'store':<10} {'blocks MB':>10} {'disk MB':>9} {'ratio':>6} {'files':>10} {'write/s':>9}"
              f" {'read/s':>8} {'RSS MB':>7}")
        for kind in ("directory", "sqlite"):
            r = run(kind, base / kind, args.blocks, args.reads)
            print(f"{kind:<10} {r['bytes'] / 1e6:>10.1f} {r['disk'] / 1e6:>9.1f} {r['disk'] / r['bytes']:>6.2f}"
                  f" {r['files']:>10,} {r['write_per_s']:>9,.0f} {r['read_per_s']:>8,.0f} {r['rss_mb']:>7.0f}")
        m = run("migrate", base / "directory", args.blocks, args.reads)
        print(f"migrating the directory store: {m['seconds']:.1f} s ({args.blocks / m['seconds']:,.0f} blocks/s),"
              f" then {m['disk'] / 1e6:.1f} MB in {m['files']} files, peak RSS {m['rss_mb']:.0f} MB")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
