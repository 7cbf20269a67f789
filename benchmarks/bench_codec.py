"""DAG-CBOR codec figures behind the design notes in docs/architecture.md.

Prints, for N demo STAC items (default 20,000):
  * encode and decode with HaloDB's libipld wrapper vs the pure-Python reference (dag-cbor),
  * decode of all N with Python's cyclic GC running vs paused (``halodb.util.perf.paused_gc``),
    while the N decoded items stay alive, as they do during a sync,
  * JSON text of the items with the json module vs orjson (what the cache stores).

    python benchmarks/bench_codec.py [--items 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

import orjson

from halodb.demo.campaign import generate_items
from halodb.ipld import decode, decode_reference, encode, encode_reference
from halodb.util.perf import paused_gc


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    n = ap.parse_args().items
    items = generate_items(n, seed=7)
    blocks = [encode(it) for it in items]
    sample = max(1, n // 20)  # the reference codec is slow: time a twentieth and scale
    print(f"# bench_codec: {n:,} STAC items, mean block {sum(map(len, blocks)) / n:.0f} bytes")

    enc_fast = timed(lambda: [encode(it) for it in items])
    enc_ref = timed(lambda: [encode_reference(it) for it in items[:sample]]) * n / sample
    dec_ref = timed(lambda: [decode_reference(b) for b in blocks[:sample]]) * n / sample
    gc.collect()
    kept: list[Any] = []
    dec_gc = timed(lambda: kept.extend(decode(b) for b in blocks))
    kept.clear()
    gc.collect()
    with paused_gc():
        dec_nogc = timed(lambda: kept.extend(decode(b) for b in blocks))
    kept.clear()
    js = timed(lambda: [json.dumps(it, separators=(",", ":"), ensure_ascii=False) for it in items])
    oj = timed(lambda: [orjson.dumps(it) for it in items])

    print(f"{'':44}{'seconds':>10}{'items/s':>12}")
    for label, secs in [
        ("encode, libipld wrapper", enc_fast),
        ("encode, dag-cbor reference (scaled)", enc_ref),
        ("decode, libipld wrapper, GC running", dec_gc),
        ("decode, libipld wrapper, GC paused", dec_nogc),
        ("decode, dag-cbor reference (scaled)", dec_ref),
        ("item JSON, json module", js),
        ("item JSON, orjson", oj),
    ]:
        print(f"{label:44}{secs:>10.3f}{n / secs:>12,.0f}")
    print(f"\nlibipld vs reference: encode {enc_ref / enc_fast:.0f}x, decode {dec_ref / dec_nogc:.0f}x faster; "
          f"pausing the GC makes decode {dec_gc / dec_nogc:.1f}x faster; orjson {js / oj:.1f}x faster than json")


if __name__ == "__main__":
    main()
