"""A client with no cache asking "which CID held KEY at date T" through a Kubo gateway:
gateway requests and seconds, by history length, history trees (format 3) against the
chain walk the format-1 history needs, in the same run (issue 15, part 1).

For each length N a synthetic history is built (``--datasets`` datasets, one changed per
version, a version a minute), once with history trees and once (up to ``--legacy-up-to``
versions) in the old format, each written into one Kubo node (closed to the outside, as
the test nodes; loopback only). Then, for ``--probes`` random (key, date) pairs, a fresh
process with an empty home runs ``halodb --store RELAY at KEY DATE --name HEAD``, where
RELAY is a counting HTTP relay in front of the node's gateway; each answer is checked
against the history. Printed: requests (median and max) and whole-process seconds
(median) per length and format.

Targets of issue 15: ORCESTRA's real history (156 versions) in <= 16 requests (tested in
tests/test_timeline.py) and a synthetic history of 10,000 versions in <= 24.

    python benchmarks/bench_thin.py                        # 156, 1,000 and 10,000 versions
    python benchmarks/bench_thin.py --versions 1000 --probes 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from halodb.blockstore import MemoryStore  # noqa: E402
from halodb.blockstore.kubo import KuboStore  # noqa: E402
from halodb.index.commit import commit_changes  # noqa: E402
from halodb.index.history import load_commit, write_commit  # noqa: E402
from halodb.index.index import Index  # noqa: E402
from halodb.index.model import Commit, Entry  # noqa: E402
from halodb.ipld import CID, RAW  # noqa: E402
from tests.kubo_node import KuboNode  # noqa: E402
from tests.loopback import relay  # noqa: E402

BASE = datetime(2024, 8, 1, tzinfo=timezone.utc)


def build(versions: int, datasets: int, *, trees: bool) -> tuple[MemoryStore, CID, list[dict[str, str]]]:
    """A history of ``versions`` versions; returns the store, the head and, per version, the
    data CID of every dataset (for checking answers)."""
    store = MemoryStore()
    index = Index(store)
    head: CID | None = None
    state: dict[str, str] = {}
    states: list[dict[str, str]] = []
    commits: dict[CID, Commit] = {}
    for n in range(versions):
        key = f"c/d{n % datasets:06d}"
        data = str(CID.for_bytes(f"{versions}-{n}".encode(), RAW))
        entry = Entry(store.put(f"item-{n}".encode(), codec=RAW), data, key)  # (format 3 reads it to hold it inline)
        when = BASE + timedelta(minutes=n)
        if trees:
            head = commit_changes(store, index, head, {key: entry}, set(), time=when, author="bench", message=str(n),
                                  commits=commits)
        else:  # the format before history trees: a plain chain
            root = index.load_root(load_commit(store, head, commits).index) if head else index.empty()
            root_cid = index.write_root(index.apply(root, {key: entry}, set()))
            head = write_commit(store, Commit(index=root_cid, time=when, author="bench", message=str(n),
                                              parents=(head,) if head else ()))
        state = {**state, key: data}
        states.append(state)
    assert head is not None
    return store, head, states


def ask(gateway: str, home: Path, key: str, when: datetime, head: CID) -> tuple[str, int, float]:
    with relay(gateway) as (url, handler):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "halodb", "--home", str(home), "--store", url, "at", key,
                            when.isoformat(), "--name", str(head)], capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"halodb at failed: {p.stderr.strip()}")
    return p.stdout.strip(), len(handler.calls), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, nargs="+", default=[156, 1000, 10000])
    parser.add_argument("--datasets", type=int, default=500)
    parser.add_argument("--probes", type=int, default=7)
    parser.add_argument("--legacy-up-to", type=int, default=1000, help="longest history also run in the old format")
    args = parser.parse_args()
    rnd = random.Random(15)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-thin-") as tmp:
        work = Path(tmp)
        node = KuboNode(work / "kubo").start()
        try:
            kubo = KuboStore(node.api)
            for versions in args.versions:
                for trees in (True, False):
                    if not trees and versions > args.legacy_up_to:
                        continue
                    t = time.perf_counter()
                    store, head, states = build(versions, args.datasets, trees=trees)
                    kubo.put_many((cid, store.get(cid)) for cid in store.iter_cids())
                    built = time.perf_counter() - t
                    requests, seconds = [], []
                    for probe in range(args.probes):
                        n = rnd.randrange(versions)
                        key = rnd.choice(sorted(states[n]))
                        answer, calls, took = ask(node.gateway, work / f"home-{versions}-{trees}-{probe}", key,
                                                  BASE + timedelta(minutes=n, seconds=30), head)
                        assert answer == states[n][key], (answer, states[n][key])
                        requests.append(calls)
                        seconds.append(took)
                    rows.append((versions, "history tree" if trees else "chain (format 1)", statistics.median(requests),
                                 max(requests), statistics.median(seconds), built))
                    print(f"{versions:>6} versions, {rows[-1][1]:<17} requests median {rows[-1][2]:>6} "
                          f"max {rows[-1][3]:>6}, {rows[-1][4]:.2f} s a question (built in {built:.1f} s)",
                          flush=True)
        finally:
            node.stop()
    print("\n| versions | format | gateway requests (median / max) | seconds per question (median) |")
    print("|---|---|---|---|")
    for versions, kind, median, most, secs, _ in rows:
        print(f"| {versions:,} | {kind} | {median:g} / {most} | {secs:.2f} |")


if __name__ == "__main__":
    main()
