"""Sync apply throughput for 100,000 items: printed (run with ``-s``), not asserted.

The numbers depend on the machine; ``benchmarks/bench_cache_apply.py`` prints the details.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from halodb.cache import Cache

from .test_cache_helpers import commit, plan, put, rec


@pytest.mark.slow
def test_apply_100k_items_prints_throughput(tmp_path: Path) -> None:
    n = 100_000
    records = [rec(f"ds/{i:07d}") for i in range(n)]
    first = plan("bench", [commit("bench1", [put(r) for r in records])])
    changed = plan("bench", [commit("bench2", [put(rec(f"ds/{i:07d}", 1)) for i in range(0, n, 10)], day=1, after="bench1")])
    with Cache(tmp_path / "c.duckdb") as cache:
        t = time.perf_counter()
        cache.apply(first)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        cache.apply(changed)
        incremental = time.perf_counter() - t
        state = cache.sync_state("bench")
    assert state is not None and state.items == n
    print(f"\ncache apply: {n:,} new items in {cold:.2f} s = {n / cold:,.0f} items/s; "
          f"{n // 10:,} changes in {incremental:.2f} s = {n / 10 / incremental:,.0f} changes/s")  # fmt: skip
