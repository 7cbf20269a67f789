"""Peak memory of ``halodb import-car`` (issue 10, defect 12): build a CAR of many small
DAG-CBOR blocks (item-sized, like an exported index), run ``import-car`` into a fresh home
in a child process, and print the child's peak RSS next to the CAR's size.

    python benchmarks/bench_import_car.py --mb 45
    git show HEAD~1:halodb/blockstore/car.py > /tmp/old_car.py
    python benchmarks/bench_import_car.py --mb 45 --compare /tmp/old_car.py

``--compare FILE`` also runs the ``import_car`` of another version of ``car.py`` (loaded from
FILE as a module) on the same CAR, so the two are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from halodb.blockstore.car import write_car  # noqa: E402
from halodb.ipld import make_block  # noqa: E402

#: what the child runs: ``halodb --home HOME import-car CAR`` in this process, with the
#: ``import_car`` of another car.py swapped in when one is given; then the peak RSS
CHILD = r"""
import importlib.util, json, resource, sys, time
car_file, car, home = sys.argv[1:4]
import halodb.api.registry
from halodb.cli.commands import main
if car_file != "-":
    spec = importlib.util.spec_from_file_location("car_under_test", car_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    halodb.api.registry.import_car = module.import_car
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    main(["--home", home, "import-car", car])
except SystemExit as exc:
    if exc.code:
        raise
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_before_kib": before, "rss_peak_kib": peak}))
"""


def build_car(path: Path, megabytes: float, pad: int = 900) -> int:
    """A CAR of about ``megabytes`` MB: a root over nodes of 100 item-like leaves (each with a
    description of ``pad`` bytes); the block count."""
    blocks = []
    size = 0
    node_links: list[object] = []
    nodes = []
    i = 0
    while size < megabytes * 1e6:
        cid, data = make_block({
            "type": "Feature", "id": f"item-{i}", "stac_version": "1.1.0",
            "properties": {"datetime": "2024-08-11T12:00:00Z", "title": f"dataset {i}", "platform": "HALO",
                           "keywords": ["ORCESTRA", "HALO", f"k{i % 97}"], "description": "x" * pad},
            "geometry": {"type": "Point", "coordinates": [-23.0 + i * 1e-6, 15.0]},
            "assets": {"data": {"href": f"ipfs://bafy{i:052d}", "roles": ["data"]}},
        })
        blocks.append((cid, data))
        node_links.append(cid)
        size += len(data)
        i += 1
        if len(node_links) == 100:
            nodes.append(make_block({"leaves": node_links}))
            node_links = []
    if node_links:
        nodes.append(make_block({"leaves": node_links}))
    root = make_block({"nodes": [c for c, _ in nodes]})
    return write_car(path, [root[0]], [root, *nodes, *blocks])


def run(car_file: str, car: Path, work: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(dir=work)) / "home"
    out = subprocess.run([sys.executable, "-c", CHILD, car_file, str(car), str(home)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    with closing(sqlite3.connect(f"file:{home / 'blocks' / 'blocks.sqlite3'}?mode=ro", uri=True)) as db:
        result["written"] = db.execute("SELECT count(*) FROM blocks").fetchone()[0]  # (the embedded store's rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=45.0, help="size of the CAR to build (MB)")
    parser.add_argument("--pad", type=int, default=900, help="bytes of description per item block (0: ~250-byte blocks)")
    parser.add_argument("--compare", metavar="CAR_PY", help="another car.py to measure on the same CAR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        car = work / "bench.car"
        count = build_car(car, args.mb, args.pad)
        car_mib = car.stat().st_size / (1 << 20)
        print(f"CAR: {car_mib:.1f} MiB, {count} blocks")
        versions = [("this code", "-")] + ([("compared", args.compare)] if args.compare else [])
        for label, source in versions:
            r = run(source, car, work)
            peak = r["rss_peak_kib"] / 1024
            grown = (r["rss_peak_kib"] - r["rss_before_kib"]) / 1024
            print(f"{label:10s} peak RSS {peak:7.1f} MiB (+{grown:7.1f} MiB over the process before the import, "
                  f"{grown / car_mib:5.1f}x the CAR), {r['written']} blocks written, {r['seconds']:.1f} s")


if __name__ == "__main__":
    main()
