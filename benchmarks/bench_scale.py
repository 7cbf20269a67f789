"""The CLI at scale (issue 15, part 4): N generated STAC items (~850 bytes of JSON each) as
ndjson, then, each in a child process on a fresh home, ``halodb add -`` (the file on stdin),
``halodb commit``, ``halodb publish`` and a full ``halodb sync`` of that local name; wall
time and peak RSS of every child, the block store's bytes and files on disk, the cache
file's size; then ten of the items changed (``halodb add`` of their new versions), a
``halodb commit`` of those ten changes (seconds, blocks written) and, once published, the
incremental ``halodb sync`` (seconds, blocks read): the row "10-change commit / incremental
sync" of issue 15, whose target is to stay O(log n); and, in the same run, DuckDB's
``read_ndjson_auto`` of the same file into a table (in a child process too) as the floor.

    python benchmarks/bench_scale.py --sizes 100000 1000000

Peak RSS is the child's own (``os.wait4``), so one step never hides another. Before each
timed step (and the floor) the disk is synced (``os.sync``, not timed), as ``bench_open.py``
does: each step writes hundreds of MB (the ndjson, the stage, the block store, the cache),
and the kernel's write-back of one step's pages would otherwise run on the two cores during
the next step and be counted as its time (until 2026-12-02 it was). Nothing is asserted; the
targets of issue 15 are printed beside the figures (MISSED when one is).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from halodb.demo.campaign import generate_items, mutate_items  # noqa: E402

#: issue 15's targets: (items/s at least, seconds at most, peak RSS MiB at most)
TARGETS: dict[str, tuple[float | None, float | None, float]] = {
    "add": (50_000, None, 1024), "commit": (None, 10.0, 1024), "sync": (75_000, None, 1024),
}
#: the floor: DuckDB reads the same ndjson into a table of a new database file
FLOOR = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE items AS SELECT * FROM read_ndjson_auto(?)", [sys.argv[1]])
print(con.execute("SELECT count(*) FROM items").fetchone()[0])
"""


def write_items(path: Path, n: int, chunk: int = 10_000) -> int:
    """``n`` items as ndjson in ``path``, generated ``chunk`` at a time (unique ids: one seed
    per chunk); returns the file's size in bytes."""
    with path.open("wb") as f:
        for start in range(0, n, chunk):
            for item in generate_items(min(chunk, n - start), seed=start // chunk + 1):
                f.write(orjson.dumps(item))
                f.write(b"\n")
    return path.stat().st_size


def run(args: list[str], *, stdin: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``args``, wait for it; its wall seconds, peak RSS (MiB) and stdout."""
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as inp:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        # read the pipes before waiting (a full pipe would block the child), then reap it with
        # wait4, which returns that child's own resource usage
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}… failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return {"seconds": seconds, "rss_mib": usage.ru_maxrss / 1024, "stdout": out.decode()}


def tree_size(path: Path) -> tuple[int, int]:
    """Bytes and files under ``path``."""
    total = files = 0
    for base, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(base, name))
            files += 1
    return total, files


def bench(n: int, work: Path, halodb: list[str]) -> dict[str, Any]:
    ndjson = work / f"items-{n}.ndjson"
    t = time.perf_counter()
    size = write_items(ndjson, n)
    print(f"N = {n:,}: {size / 1e6:.1f} MB of ndjson ({size / n:.0f} bytes/item) written in "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    home = work / f"home-{n}"
    env = {**os.environ, "HALODB_HOME": str(home), "HALODB_AUTHOR": "bench", "PYTHONPATH": str(ROOT)}
    env.pop("HALODB_STORE", None)
    env.pop("HALODB_CACHE", None)
    out: dict[str, Any] = {"n": n, "ndjson_bytes": size}
    run([*halodb, "init"], env=env)
    steps = [
        ("add", [*halodb, "add", "-"], ndjson),
        ("commit", [*halodb, "commit", "-m", f"{n} items", "--time", "2024-09-01T00:00:00Z"], None),
        ("publish", [*halodb, "publish", "bench"], None),
        ("sync", [*halodb, "sync", "bench"], None),
    ]
    for step, args, stdin in steps:
        os.sync()  # (the step before's pages on disk first: see the module)
        r = run(args, stdin=stdin, env=env)
        out[step] = {"seconds": r["seconds"], "rss_mib": r["rss_mib"], "items_per_s": n / r["seconds"]}
        print(f"  {step:8s} {r['seconds']:8.2f} s  {n / r['seconds']:9,.0f} items/s  peak RSS {r['rss_mib']:7.0f} MiB",
              flush=True)
        if step == "commit":
            out["store_bytes"], out["store_files"] = tree_size(home / "blocks")
    cache = home / "cache.duckdb"
    out["cache_bytes"] = cache.stat().st_size if cache.exists() else 0
    out.update(ten_changes(work, home, env, halodb, n))
    floor_db = work / f"floor-{n}.duckdb"
    os.sync()
    r = run([sys.executable, "-c", FLOOR, str(ndjson), str(floor_db)])
    assert int(r["stdout"].split()[-1]) == n, r["stdout"]
    out["floor"] = {"seconds": r["seconds"], "rss_mib": r["rss_mib"], "items_per_s": n / r["seconds"],
                    "db_bytes": floor_db.stat().st_size}
    print(f"  floor    {r['seconds']:8.2f} s  {n / r['seconds']:9,.0f} items/s  peak RSS {r['rss_mib']:7.0f} MiB "
          "(DuckDB read_ndjson_auto into a table)", flush=True)
    shutil.rmtree(home)
    ndjson.unlink()
    floor_db.unlink()
    return out


def stored_blocks(home: Path) -> int:
    """How many blocks the home's block store holds."""
    with closing(sqlite3.connect(f"file:{home / 'blocks' / 'blocks.sqlite3'}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM blocks").fetchone()[0])


def ten_changes(work: Path, home: Path, env: dict[str, str], halodb: list[str], n: int) -> dict[str, Any]:
    """Ten items of the first chunk changed: their commit (seconds, blocks written) and, once
    published, the incremental sync (seconds, blocks read)."""
    changed = work / f"changed-{n}.ndjson"
    changed.write_bytes(b"".join(orjson.dumps(item) + b"\n"
                                 for item in mutate_items(generate_items(min(10_000, n), seed=1), 10, seed=7)))
    run([*halodb, "add", str(changed)], env=env)
    before = stored_blocks(home)
    os.sync()
    commit = run([*halodb, "commit", "-m", "10 changes", "--time", "2024-09-02T00:00:00Z"], env=env)
    written = stored_blocks(home) - before
    run([*halodb, "publish", "bench"], env=env)
    os.sync()
    sync = run([*halodb, "sync", "bench"], env=env)
    found = re.search(r"(\d+) block\(s\) read", sync["stdout"])
    read = int(found.group(1)) if found else -1
    print(f"  10 changes: commit {commit['seconds']:.2f} s, {written} blocks written; incremental sync "
          f"{sync['seconds']:.2f} s, {read} blocks read", flush=True)
    changed.unlink()
    return {"ten": {"commit_seconds": commit["seconds"], "blocks_written": written, "sync_seconds": sync["seconds"],
                    "blocks_read": read}}


def verdict(step: str, r: dict[str, Any]) -> str:
    rate, seconds, rss = TARGETS[step]
    missed = []
    if rate is not None and r["items_per_s"] < rate:
        missed.append(f">= {rate:,.0f} items/s")
    if seconds is not None and r["seconds"] > seconds:
        missed.append(f"<= {seconds:g} s")
    if r["rss_mib"] > rss:
        missed.append(f"RSS <= {rss:,.0f} MiB")
    return "ok" if not missed else "MISSED " + ", ".join(missed)


def report(results: list[dict[str, Any]]) -> None:
    sizes = [r["n"] for r in results]
    print()
    print("| step | " + " | ".join(f"N = {n:,}" for n in sizes) + " | target (issue 15, at 1M) |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    for step in ("add", "commit", "publish", "sync", "floor"):
        cells = []
        for r in results:
            s = r[step]
            cells.append(f"{s['seconds']:.2f} s, {s['items_per_s']:,.0f}/s, {s['rss_mib']:,.0f} MiB")
        rate, seconds, rss = TARGETS.get(step, (None, None, 0))
        target = ", ".join(x for x in (f">= {rate:,.0f}/s" if rate else "", f"<= {seconds:g} s" if seconds else "",
                                       f"RSS <= {rss:,.0f} MiB" if rss else "") if x)
        label = "floor: DuckDB `read_ndjson_auto`" if step == "floor" else f"`halodb {step}`"
        print(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    print("| block store on disk | " + " | ".join(f"{r['store_bytes'] / 1e6:,.0f} MB, {r['store_files']:,} files"
                                                 for r in results) + " | |")
    print("| cache file | " + " | ".join(f"{r['cache_bytes'] / 1e6:,.0f} MB" for r in results) + " | |")
    print("| 10-change commit / incremental sync | " + " | ".join(
        f"{r['ten']['commit_seconds']:.2f} s, {r['ten']['blocks_written']} blocks / {r['ten']['sync_seconds']:.2f} s, "
        f"{r['ten']['blocks_read']} blocks" for r in results) + " | O(log n) |")
    print("| floor's database file | " + " | ".join(f"{r['floor']['db_bytes'] / 1e6:,.0f} MB" for r in results) + " | |")
    print()
    for r in results:  # (the targets are issue 15's at 1,000,000; smaller runs are for scale)
        for step in TARGETS:
            print(f"N = {r['n']:,} {step}: {verdict(step, r[step])}"
                  + ("" if r["n"] >= 1_000_000 else " (the target is at N = 1,000,000)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workdir", type=Path, help="where homes and files go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    halodb = [sys.executable, "-m", "halodb"]
    print(f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = [bench(n, Path(tmp), halodb) for n in args.sizes]
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
