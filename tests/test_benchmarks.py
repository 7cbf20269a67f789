"""Every script in ``benchmarks/`` still runs, on inputs small enough for the test suite.

The scripts are where every figure in the README and the docs comes from; nothing runs them
in CI otherwise, so one broken by a change elsewhere stays broken until someone needs a
number (``bench_thin.py`` failed for a day after index format 3 began reading item blocks).
Nothing here times anything: each script runs once with tiny sizes, must exit 0 and print
the lines its report is made of. Their own checks still run (``bench_thin.py`` checks every
answer against the history it built, ``bench_open.py`` that all readers read the same data,
``bench_scale.py`` that the floor read every item).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .kubo_node import ipfs_binary
from .requirements import missing

ROOT = Path(__file__).resolve().parents[1]

#: script, arguments, what it needs beyond the package (Kubo, Go, ipfsspec), lines its output must hold
RUNS: list[tuple[str, list[str], tuple[str, ...], list[str]]] = [
    ("bench_index.py", ["--sizes", "500", "1000", "-k", "3"], (), ["full sync"]),
    ("bench_codec.py", ["--items", "300"], (), ["orjson"]),
    ("bench_cache_apply.py", ["--items", "1000", "--runs", "1"], (), ["items/s"]),
    ("bench_import_car.py", ["--mb", "1"], (), ["blocks written"]),
    ("bench_proof.py", ["--sizes", "500", "--versions", "3", "--probes", "5"], (), ["newest", "first"]),
    ("bench_blockstore.py", ["--blocks", "2000", "--reads", "200"], (), ["sqlite"]),
    ("bench_scale.py", ["--sizes", "1500"], (), ["| `halodb sync` |", "| 10-change commit / incremental sync |",
                                                 "N = 1,500 commit: "]),
    ("bench_start.py", ["--runs", "1", "--items", "50", "--questions", "5"], (), ["halodb --version", "halodb at"]),
    ("bench_thin.py", ["--versions", "30", "--datasets", "10", "--probes", "2", "--legacy-up-to", "30"], ("kubo",),
     ["| 30 | history tree |", "| 30 | chain (format 1) |"]),
    ("bench_network.py", ["--items", "300"], ("kubo",), ["format 3: full", "format 2: incremental"]),
    ("bench_serve.py", ["--items", "300", "--requests", "5", "--concurrent-requests", "12", "--clients", "2",
                        "--warmup", "1", "--no-rustac"], ("go",), ["| cql2 filter |"]),
    ("bench_open.py", ["--mb", "2", "--runs", "1"], ("kubo", "ipfsspec"), ["halodb (cached)", "verifying floor", "what verifying costs:", "targets (issue 13):"]),
]


def _needs(parts: tuple[str, ...]) -> None:
    """Fail (CI) or skip (locally) when a part a script needs is missing."""
    for part in parts:
        if part == "kubo":
            ipfs_binary()
        elif part == "go" and shutil.which("go") is None:
            missing("Go is not installed: bench_serve.py builds its load generator (benchmarks/loadgen) with it")
        elif part == "ipfsspec" and importlib.util.find_spec("ipfsspec") is None:
            missing("ipfsspec is not installed (`pip install -e '.[test]'`): bench_open.py reads with it beside HaloDB")


@pytest.mark.parametrize(("script", "args", "needs", "expected"), RUNS, ids=[run[0] for run in RUNS])
def test_the_benchmark_runs(script: str, args: list[str], needs: tuple[str, ...], expected: list[str],
                            tmp_path: Path) -> None:
    _needs(needs)
    workdir = ["--workdir", str(tmp_path)] if script in ("bench_scale.py", "bench_serve.py", "bench_index.py") else []
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, *workdir], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    for line in expected:
        assert line in done.stdout, f"{script}: {line!r} not in its output:\n{done.stdout[-3000:]}"


def test_every_script_is_run_here() -> None:
    scripts = {path.name for path in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == {run[0] for run in RUNS}
