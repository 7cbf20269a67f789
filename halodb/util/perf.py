"""Performance helpers.

Bulk work (a sync of 100,000 items, adding them) creates millions of small, long-lived
containers. CPython's cyclic garbage collector then runs full collections over all of
them again and again: decoding 20,000 item blocks took 0.60 s with it and 0.10 s without
(``benchmarks/bench_codec.py``).
None of this work creates reference cycles, so the collector is paused for its duration.

>>> import gc
>>> with paused_gc():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic garbage collector inside the block (reference counting still frees)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
