"""STAC API benchmark: ``halodb serve`` against ``rustac serve`` on the same items (issue 11).

Builds a home with N generated items in two versions (the second changes a tenth of the
items and removes a twentieth), publishes and syncs it, exports the head as
stac-geoparquet (``halodb export geoparquet``), and serves it twice on loopback: ``halodb
serve`` (an in-memory DuckDB snapshot of the whole history) and ``rustac serve FILE.parquet
--use-duckdb false`` (rustac's memory backend: its DuckDB backend installs the spatial
extension from the internet at the first search, which hangs offline). Then, for each query
kind, with parameters drawn from a seeded RNG so no answer repeats:

* ``bbox+datetime+collections``: GET /search with a 2 x 1 degree box, a 2-day interval and
  one collection; and the same by POST (rustac 0.9.18 answers such a GET with a 500);
* ``cql2 filter``: GET /search with a CQL2-text filter on platform and datetime (rustac's
  memory backend mis-evaluates filters: n/a, and the agreement check shows it);
* ``free text q``: GET /search?q=WORD (rustac ignores ``q``: n/a);
* ``as_of``: the box query as of the first version (halodb only: no other server has it).

one client (sequential requests on a keep-alive connection; p50/p95 latency) and 8 clients
(a keep-alive connection each, a fixed number of requests; searches/s and p95). The requests
are sent by ``benchmarks/loadgen``, a small Go program built at the start (``go`` is on every
machine that runs ``make test``: it builds Kubo): a Python client costs about as much CPU
per request as the server does, and it runs on the same two cores.
The same parameters are also run in-process on a snapshot (``search.run_search``, no HTTP)
to show how much of a request is the query itself. Targets of issue 11 on the 2-core
development VM: p95 <= 50 ms with one client, >= 200 searches/s with 8 clients. The client
runs on the same two cores as the server, so the 8-client figures include its cost.

    python benchmarks/bench_serve.py --items 100000
    python benchmarks/bench_serve.py --items 5000 --requests 50    # a quick look

Nothing here is asserted in unit tests; the exit code is 0 even when a target is missed
(the report says MISSED).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

import halodb
from halodb.testing.servers import ServerProcess
from halodb.demo.campaign import COLLECTIONS, generate_items, mutate_items
from halodb.serve import params as params_mod
from halodb.serve import search
from halodb.serve.snapshot import Snapshot

NAME = "bench"
V1, V2 = "2024-09-01T00:00:00Z", "2024-10-01T00:00:00Z"
START = datetime(2024, 8, 10, tzinfo=UTC)  # generate_items' first datetime
TARGET_P95_MS = 50.0
TARGET_RATE = 200.0
Query = dict[str, str]


# --- the home --------------------------------------------------------------------------------
def build_home(home: Path, n: int) -> dict[str, float]:
    """Two versions of ``n`` items published to :data:`NAME` and synced; the seconds each step took."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    items = generate_items(n, seed=11)
    out["generate_s"] = time.perf_counter() - t
    reg = halodb.open(home, create=True)
    try:
        t = time.perf_counter()
        reg.add(items)
        reg.commit(f"{n} items", time=V1, author="bench")
        reg.add(mutate_items(items, n // 10, seed=12))
        reg.remove([f"{i['collection']}/{i['id']}" for i in random.Random(13).sample(items, n // 20)])
        reg.commit("a tenth changed, a twentieth removed", time=V2, author="bench")
        reg.publish(NAME)
        out["build_s"] = time.perf_counter() - t
    finally:
        reg.close()
    reg = halodb.open(home)
    try:
        t = time.perf_counter()
        reg.sync(NAME)
        out["sync_s"] = time.perf_counter() - t
    finally:
        reg.close()
    return out


# --- the servers ------------------------------------------------------------------------------
def start_server(label: str, argv: list[str], url: str | None = None, timeout: float = 600.0) -> ServerProcess:
    """A server in a subprocess (``halodb.testing.servers``), stopped by SIGINT; ``url`` once it answers."""
    return ServerProcess(label, argv, url=url, timeout=timeout, env={"HALODB_AUTHOR": "bench"})


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Linux /proc), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        total += rss_mb(int(child))
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the queries ------------------------------------------------------------------------------
def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def bbox_query(rng: random.Random, span_days: float) -> Query:
    west, south = rng.uniform(-60.0, -24.0), rng.uniform(10.0, 15.5)
    start = START + timedelta(days=rng.uniform(0, max(span_days - 2, 0.1)))
    return {"bbox": f"{west:.3f},{south:.3f},{west + 2:.3f},{south + 1:.3f}",
            "datetime": f"{_iso(start)}/{_iso(start + timedelta(days=2))}",
            "collections": rng.choice(COLLECTIONS), "limit": "10"}


def filter_query(rng: random.Random, span_days: float) -> Query:
    start = START + timedelta(days=rng.uniform(0, span_days))
    end = start + timedelta(days=1)
    platform_ = rng.choice(["HALO", "BCO", "RV METEOR"])
    text = (f"platform = '{platform_}' AND datetime >= TIMESTAMP('{_iso(start)}') "
            f"AND datetime < TIMESTAMP('{_iso(end)}')")
    return {"filter": text, "filter-lang": "cql2-text", "limit": "10"}


def text_query(rng: random.Random, span_days: float) -> Query:
    return {"q": f"group-{rng.randrange(10, 97)}", "limit": "10"}


def as_of_query(rng: random.Random, span_days: float) -> Query:
    return {**bbox_query(rng, span_days), "as_of": "2024-09-15T00:00:00Z"}


POST_BOX = "bbox+datetime+collections, POST"
QUERIES: list[tuple[str, Callable[[random.Random, float], Query], str, str | None]] = [
    # (label, parameters, method, why rustac serve is not measured or None)
    ("bbox+datetime+collections", bbox_query, "GET",
     "n/a: GET /search with bbox or collections is a 500 'unsupported value' in rustac 0.9.18 (see the POST row)"),
    (POST_BOX, bbox_query, "POST", None),
    ("cql2 filter", filter_query, "GET", "n/a: its memory backend mis-evaluates CQL2 filters (see the agreement check)"),
    ("free text q", text_query, "GET", "n/a: q is ignored (every item matches)"),
    ("as_of", as_of_query, "GET", "n/a: no time travel"),
]


# --- measuring ---------------------------------------------------------------------------------
def body_of(query: Query) -> dict[str, Any]:
    """The POST /search body asking what the GET ``query`` asks."""
    body: dict[str, Any] = dict(query)
    if "bbox" in body:
        body["bbox"] = [float(x) for x in query["bbox"].split(",")]
    if "collections" in body:
        body["collections"] = query["collections"].split(",")
    if "limit" in body:
        body["limit"] = int(query["limit"])
    return body


def send(client: httpx.Client, url: str, query: Query, method: str) -> httpx.Response:
    if method == "POST":
        return client.post(url, json=body_of(query))
    return client.get(url, params=query)


def build_loadgen(workdir: Path) -> Path:
    """``benchmarks/loadgen`` (Go, standard library only) built into ``workdir``."""
    binary = workdir / "loadgen"
    source = Path(__file__).resolve().parent / "loadgen"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source, check=True, timeout=600,
                   env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return binary


def _requests(url: str, queries: list[Query], method: str) -> str:
    """The loadgen input: one JSON request per line."""
    lines = []
    for query in queries:
        if method == "POST":
            lines.append(json.dumps({"method": "POST", "url": url, "body": json.dumps(body_of(query))}))
        else:
            lines.append(json.dumps({"method": "GET", "url": str(httpx.URL(url, params=query))}))
    return "\n".join(lines) + "\n"


def load(loadgen: Path, url: str, queries: list[Query], clients: int, warmup: int, method: str) -> dict[str, float]:
    """``queries`` sent by ``clients`` keep-alive clients at once (loadgen); rate and latencies."""
    out = subprocess.run([str(loadgen), "-clients", str(clients), "-warmup", str(warmup)],
                         input=_requests(url, queries, method), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen: {out.stderr.strip()[:500]}")
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def in_process(snap: Snapshot, queries: list[Query]) -> dict[str, float]:
    """The same searches without HTTP: parameters parsed, ``run_search`` on a cursor, items decoded."""
    lat = []
    for query in queries:
        query = dict(query)
        as_of = query.pop("as_of", None)
        version = snap.version_at(datetime.fromisoformat(as_of)) if as_of else snap.head
        assert version is not None
        t = time.perf_counter()
        p = params_mod.from_query(query)
        cur = snap.cursor()
        try:
            search.run_search(snap, cur, version, p)
        finally:
            cur.close()
        lat.append(time.perf_counter() - t)
    return {"p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95)}


def _pct(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1e3 if len(values) > 1 else values[0] * 1e3


def ids(client: httpx.Client, url: str, query: Query, method: str) -> set[str]:
    found: set[str] = set()
    response = send(client, url, {**query, "limit": "10000"}, method)
    response.raise_for_status()
    for feature in response.json()["features"]:
        found.add(f"{feature.get('collection')}/{feature['id']}")
    return found


def agreement(ours: str, theirs: str, queries: list[Query]) -> dict[str, int]:
    """How many of ``queries`` both servers answer with the same ids; what the others differ by."""
    out = {"same": 0, "differ": 0, "only_ours": 0, "only_theirs": 0, "matched_ours": 0}
    with httpx.Client(timeout=60) as client:
        for query in queries:
            a, b = ids(client, ours, query, "GET"), ids(client, theirs, query, "POST")
            out["matched_ours"] += len(a)
            if a == b:
                out["same"] += 1
            else:
                out["differ"] += 1
                out["only_ours"] += len(a - b)
                out["only_theirs"] += len(b - a)
    return out


def probe(url: str, query: Query, method: str) -> str | None:
    """None when ``url`` answers ``query`` with 200, else why not."""
    try:
        with httpx.Client(timeout=30) as client:
            response = send(client, url, query, method)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"


# --- the run -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200, help="Timed requests per query, one client.")
    ap.add_argument("--concurrent-requests", type=int, default=800, help="Requests per query, 8 clients.")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="Also serve with `halodb serve --workers N` "
                    "(N processes) and measure it with the clients; 1: one process only.")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-rustac", action="store_true", help="Measure halodb serve alone.")
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the home here (reused if it holds one).")
    ap.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    ap.add_argument("--server-script", type=Path, help="Run this Python file with halodb's CLI arguments instead "
                    "of `python -m halodb` for the server (to measure a patched server).")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="halodb-bench-serve-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    rustac = shutil.which("rustac", path=str(bin_dir)) or shutil.which("rustac")
    print(f"# bench_serve on {platform.node()} ({platform.machine()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs), {args.items:,} items, workdir {workdir}", flush=True)
    results: dict[str, Any] = {"items": args.items}
    home = workdir / f"home-{args.items}"
    servers: list[ServerProcess] = []
    try:
        built = workdir / f"home-{args.items}.built"
        if not built.exists():
            shutil.rmtree(home, ignore_errors=True)
            results["home"] = build_home(home, args.items)
            built.touch()
            h = results["home"]
            print(f"generate {h['generate_s']:.1f} s; add + 2 commits + publish {h['build_s']:.1f} s; "
                  f"sync {h['sync_s']:.1f} s", flush=True)
        reg = halodb.open(home)
        t = time.perf_counter()
        snap = Snapshot.build(reg.queries, NAME)
        results["snapshot_build_s"] = time.perf_counter() - t
        reg.close()
        print(f"snapshot build (in-process) {results['snapshot_build_s']:.2f} s", flush=True)
        loadgen = build_loadgen(workdir)

        parquet = workdir / f"items-{args.items}.parquet"
        if not parquet.exists():
            t = time.perf_counter()
            subprocess.run([str(bin_dir / "halodb"), "--home", str(home), "export", "geoparquet", str(parquet),
                            "--name", NAME], check=True, timeout=1800, stdout=subprocess.DEVNULL)
            results["export_s"] = time.perf_counter() - t
            print(f"export geoparquet {results['export_s']:.1f} s ({parquet.stat().st_size / 1e6:.1f} MB)", flush=True)

        launcher = [str(args.server_script)] if args.server_script else ["-m", "halodb"]
        ours = start_server("halodb serve", [sys.executable, *launcher, "--home", str(home), "serve", NAME, "--port", "0"])
        servers.append(ours)
        results["halodb_startup_s"] = ours.startup_s
        results["halodb_rss_mb"] = rss_mb(ours.process.pid)
        print(f"halodb serve answering after {ours.startup_s:.2f} s (process start + snapshot build), "
              f"{results['halodb_rss_mb']:.0f} MB resident", flush=True)
        many: ServerProcess | None = None
        if args.workers > 1:
            many = start_server(f"halodb serve --workers {args.workers}",
                                [sys.executable, *launcher, "--home", str(home), "serve", NAME, "--port", "0",
                                 "--workers", str(args.workers)])
            servers.append(many)
            results["workers"] = args.workers
            results["halodb_workers_startup_s"] = many.startup_s
            results["halodb_workers_rss_mb"] = rss_mb(many.process.pid)
            print(f"halodb serve --workers {args.workers} answering after {many.startup_s:.2f} s, "
                  f"{results['halodb_workers_rss_mb']:.0f} MB resident (all processes)", flush=True)
        theirs: ServerProcess | None = None
        if not args.no_rustac and rustac:
            port = free_port()
            # --use-duckdb false: its DuckDB backend INSTALLs the spatial extension from the
            # internet at the first search and hangs offline; the memory backend loads the file
            theirs = start_server("rustac serve", [rustac, "serve", "--use-duckdb", "false", str(parquet),
                                             "--addr", f"127.0.0.1:{port}"],
                            url=f"http://127.0.0.1:{port}/")
            servers.append(theirs)
            results["rustac_startup_s"] = theirs.startup_s
            print(f"rustac serve answering after {theirs.startup_s:.2f} s", flush=True)
        elif not args.no_rustac:
            print("rustac not found: halodb serve alone", flush=True)

        span = args.items * 47 / 86400  # generate_items spaces items 47 s apart
        rows: dict[str, dict[str, Any]] = {}
        for label, make, method, rustac_not in QUERIES:
            rng = random.Random(label.split(",")[0])
            single = [make(rng, span) for _ in range(args.warmup + args.requests)]
            multi = [make(rng, span) for _ in range(args.concurrent_requests)]
            row: dict[str, Any] = {}
            row["sql"] = in_process(snap, single[args.warmup:])
            row["halodb_1"] = load(loadgen, ours.url + "search", single, 1, args.warmup, method)
            row["halodb_n"] = load(loadgen, ours.url + "search", multi, args.clients, 1, method)
            if many is not None:
                row["halodb_workers_n"] = load(loadgen, many.url + "search", multi, args.clients, 1, method)
            if theirs is not None:
                why = rustac_not or probe(theirs.url + "search", single[0], method)
                if why is not None:
                    row["rustac"] = why
                else:
                    row["rustac_1"] = load(loadgen, theirs.url + "search", single, 1, args.warmup, method)
                    row["rustac_n"] = load(loadgen, theirs.url + "search", multi, args.clients, 1, method)
            rows[label] = row
            print(f"{label}: {json.dumps(row)}", flush=True)
        results["queries"] = rows

        if theirs is not None:
            rng = random.Random("agreement")
            checks = [bbox_query(rng, span) for _ in range(30)]
            results["agreement_bbox"] = agreement(ours.url + "search", theirs.url + "search", checks)
            rng = random.Random("agreement filter")
            checks = [filter_query(rng, span) for _ in range(10)]
            try:
                results["agreement_filter"] = agreement(ours.url + "search", theirs.url + "search", checks)
            except httpx.HTTPError as exc:
                results["agreement_filter"] = {"error": str(exc)[:200]}
        snap.close()
    finally:
        for server in servers:
            server.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    report(results, args.clients)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any], clients: int) -> None:
    def cell(row: dict[str, Any], key: str, kind: str) -> str:
        if key not in row:
            return "n/a"
        value = row[key]
        if kind == "1":
            return f"{value['p50_ms']:.1f} / {value['p95_ms']:.1f}"
        return f"{value['rate']:.0f} / {value['p95_ms']:.1f}"

    workers = results.get("workers")
    print(f"\n{results['items']:,} items; latency p50 / p95 in ms, {clients} clients: searches/s / p95 ms")
    head = ["query", "in-process p50 / p95", "halodb 1 client", f"halodb {clients} clients",
            *([f"halodb --workers {workers}, {clients} clients"] if workers else []),
            "rustac 1 client", f"rustac {clients} clients"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, row in results["queries"].items():
        cells = [label, cell(row, "sql", "1"), cell(row, "halodb_1", "1"), cell(row, "halodb_n", "n"),
                 *([cell(row, "halodb_workers_n", "n")] if workers else []),
                 cell(row, "rustac_1", "1"), cell(row, "rustac_n", "n")]
        print("| " + " | ".join(cells) + " |")
    for label, row in results["queries"].items():
        if "rustac" in row:
            print(f"rustac, {label}: {row['rustac']}")
    for key, what in (("agreement_bbox", "bbox+datetime+collections"), ("agreement_filter", "cql2 filter")):
        if key in results:
            a = results[key]
            print(f"same ids from both servers ({what}, limit 10000, rustac by POST): {json.dumps(a)}")
    print(f"\ntargets (issue 11): one client p95 <= {TARGET_P95_MS:g} ms, {clients} clients >= {TARGET_RATE:g} searches/s")
    for label, row in results["queries"].items():
        p95 = row["halodb_1"]["p95_ms"]
        rates = [("", row["halodb_n"]["rate"])]
        if "halodb_workers_n" in row:
            rates.append((f" (--workers {workers})", row["halodb_workers_n"]["rate"]))
        said = "; ".join(f"{rate:.0f} searches/s{how} {'MET' if rate >= TARGET_RATE else 'MISSED'}" for how, rate in rates)
        print(f"  {label}: p95 {p95:.1f} ms {'MET' if p95 <= TARGET_P95_MS else 'MISSED'}; {said}")

if __name__ == "__main__":
    main()
