"""How long a short CLI call takes, whole process: ``halodb --version`` and ``halodb at`` on a
synced name, beside ``python -c "import duckdb"`` (the floor of any command that reads the
cache) and ``python -c pass``, in the same run (issue 15, part 5). The package's bytecode is
compiled first, as an installed package's is.

A home with a synced name of ``--items`` datasets is built first; then every command runs
``--runs`` times in a fresh process, alternating, and the median wall time of each is
reported with the modules it imported that a short call should not (pyarrow, numpy, zarr,
aiohttp, the codec's multiformats).

``halodb at`` is timed twice: on the home that published and synced the name (its own
block store answers, through the head's history tree, without DuckDB), and on a copy
without its blocks, as a home that synced through a gateway is (its cache answers).

Targets: ``halodb --version`` <= 0.12 s and ``halodb at`` <= 0.15 s, with ``import duckdb``
about 0.1 s on this machine; on a loaded machine compare the ratios to the floor.

    python benchmarks/bench_start.py
    python benchmarks/bench_start.py --runs 21 --items 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("pyarrow", "numpy", "zarr", "aiohttp", "multiformats", "pydantic", "xarray")


def build_home(home: Path, items: int) -> None:
    import halodb

    with halodb.open(home, create=True) as reg:
        reg.add([{"type": "Feature", "stac_version": "1.1.0", "id": f"f{i}", "geometry": None,
                  "properties": {"datetime": "2024-08-11T12:00:00Z"}, "links": [],
                  "assets": {"data": {"href": "ipfs://bafkqaaa"}}} for i in range(items)], collection="halo")
        reg.commit("first", time="2024-08-12T00:00:00Z")
        reg.publish("latest")
        reg.sync("latest")


def timed(argv: list[str], stdin: bytes | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, input=stdin)
    return time.perf_counter() - started


def imported(code: str) -> list[str]:
    """The heavy modules a Python snippet leaves imported."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=1000, help="questions asked of `halodb at -`")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="halodb-bench-start-"))
    build_home(home, args.items)
    # a home that synced through a gateway holds the datasets tree but not the history
    # tree: its blocks cannot answer, its cache does (here: the blocks removed)
    cache_only = Path(tempfile.mkdtemp(prefix="halodb-bench-start-cache-")) / "home"
    shutil.copytree(home, cache_only)
    shutil.rmtree(cache_only / "blocks")
    # an installed package has its bytecode compiled (pip does it); a checkout run with
    # PYTHONDONTWRITEBYTECODE (CI, this machine) would compile ~25 modules in every process
    package = Path(__file__).resolve().parents[1] / "halodb"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, stdout=subprocess.DEVNULL)
    halodb = [sys.executable, "-m", "halodb"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import duckdb"': [sys.executable, "-c", "import duckdb"],
        "halodb --version": [*halodb, "--version"],
        "halodb at (synced name)": [*halodb, "--home", str(home), "at", "halo/f1", "2024-09-01", "--name", "latest"],
        "halodb at (blocks gone)": [*halodb, "--home", str(cache_only), "at", "halo/f1", "2024-09-01",
                                      "--name", "latest"],
    }
    times: dict[str, list[float]] = {label: [] for label in commands}
    for label, argv in commands.items():
        timed(argv)  # warm the file cache
    for _ in range(args.runs):
        for label, argv in commands.items():
            times[label].append(timed(argv))
    floor = statistics.median(times['python -c "import duckdb"'])
    # a tool with many questions: `halodb at -`, one process, one question per line
    questions = "".join(f"halo/f{i % args.items}\t2024-09-01\n" for i in range(args.questions)).encode()
    batch = [timed([*halodb, "--home", str(home), "at", "-", "--name", "latest"], questions) for _ in range(3)]
    print(f"{args.runs} runs each, alternating; home with {args.items} synced datasets")
    print(f"{'command':28} {'median s':>9} {'min s':>7} {'x duckdb':>9}")
    for label, values in times.items():
        print(f"{label:28} {statistics.median(values):9.3f} {min(values):7.3f} {statistics.median(values) / floor:9.2f}")
    one = statistics.median(times["halodb at (synced name)"])
    print(f"halodb at - ({args.questions:,} questions on stdin): {statistics.median(batch):.3f} s in all, "
          f"{statistics.median(batch) / args.questions * 1000:.2f} ms a question "
          f"(one process each: {one * args.questions:.1f} s)")
    cli = "from halodb.cli import main"
    at = (f"{cli}\nimport sys\nsys.argv = ['halodb', '--home', {str(home)!r}, 'at', 'halo/f1', '2024-09-01', "
          "'--name', 'latest']\ntry:\n    main()\nexcept SystemExit:\n    pass")
    print(f"heavy modules imported by `import halodb.cli`: {imported(cli) or 'none'}")
    print(f"heavy modules imported by `halodb at` on a synced name: {imported(at) or 'none'}")


if __name__ == "__main__":
    main()
