"""What every fuzz test shares: the settings profiles, the outcome check, bounds, mutations.

Profiles (chosen by the environment variable ``HYPOTHESIS_PROFILE``; only these tests read it):

* ``fuzz-ci`` (the default, what ``make test`` runs): few examples, ``derandomize=True`` and
  no example database, so every run tries the same inputs and a failure always repeats;
* ``fuzz``: 25x the examples, random and with the database, for bug hunts
  (``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -q -p no:randomly tests/fuzz``).

A hang is caught structurally, not by a clock: :func:`outcome` runs the call under a generous
alarm (:data:`HANG_SECONDS`, far above any honest run) that turns a loop that never ends into
a failure instead of a stuck CI job. Memory is checked against the input's size
(:func:`bounded`: tracemalloc's peak during the call at most ``per_byte`` times the input plus
a constant; a call over the bound runs once more, so an allocation by another thread cannot
fail it). Hypothesis' ``deadline`` (10 s, for calls that take milliseconds) only catches a
pathological slowdown; no test asserts speed.

>>> outcome(int, "12")
12
>>> from halodb.errors import InputError
>>> def refuse() -> None:
...     raise InputError("no")
>>> type(outcome(refuse)).__name__
'InputError'
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from halodb.errors import HaloDBError

T = TypeVar("T")

_HEAVY = 25  #: how many times more examples the ``fuzz`` profile tries

settings.register_profile(
    "fuzz-ci",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=100 * _HEAVY,
    derandomize=False,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
HEAVY = PROFILE == "fuzz"
_BASE = settings.get_profile("fuzz" if HEAVY else "fuzz-ci")

#: an example running this long is stuck, not slow (honest ones take milliseconds)
HANG_SECONDS = 30.0


def fuzz(examples: int = 100) -> settings:
    """The settings of one fuzz test: ``examples`` under ``fuzz-ci``, 25x that under ``fuzz``."""
    return settings(_BASE, max_examples=examples * (_HEAVY if HEAVY else 1))


class Hang(BaseException):
    """Raised by the alarm inside a call that ran for :data:`HANG_SECONDS` (a BaseException, so
    the code under test cannot swallow it with ``except Exception``)."""


@contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail with :class:`Hang` when the body runs longer than ``seconds`` (main thread only)."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | HaloDBError:
    """The value of ``call(*args, **kwargs)``, or the :class:`HaloDBError` it raised.

    Any other exception propagates (the test fails, Hypothesis shrinks the input), and so
    does :class:`Hang`.
    """
    try:
        with no_hang():
            return call(*args, **kwargs)
    except HaloDBError as exc:
        return exc


def bounded(size: int, call: Callable[..., T], *args: Any, per_byte: int = 256,
            slack: int = 1 << 20, **kwargs: Any) -> T | HaloDBError:
    """:func:`outcome`, also asserting that the call's peak of traced memory stays within
    ``per_byte * size + slack`` bytes (``size``: the input's length).

    tracemalloc sees what Python allocates, objects built by Rust or C extensions included.
    """
    limit = per_byte * size + slack
    result, peak = _traced(call, *args, **kwargs)
    if peak > limit:  # once more: another thread (a server left by another test) may have allocated meanwhile
        result, peak = _traced(call, *args, **kwargs)
    assert peak <= limit, f"{size} bytes of input made the call allocate {peak} bytes (limit {limit})"
    return result


def _traced(call: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | HaloDBError, int]:
    """:func:`outcome` and the peak of memory traced while it ran (beyond what was in use before)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        result = outcome(call, *args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()


# -- mutations -------------------------------------------------------------------------------
@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes], max_edits: int = 4) -> bytes:
    """A seed with a few edits: bytes flipped, set, inserted or deleted, cut, extended, spliced.

    >>> isinstance(mutated(st.just(b"abc")), st.SearchStrategy)
    True
    """
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "extend", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x12, 0x20, 0x71, 0xD8, 0x2A]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "cut":
            del data[at:]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif kind == "duplicate":
            end = draw(st.integers(at, min(len(data), at + 64)))
            data[at:at] = data[at:end]
    return bytes(data)


#: text that JSON, YAML and TXT parsers find odd: controls, surrogates, RTL marks, NUL, BOM,
#: combining marks, astral characters, dots and slashes
ODD_TEXT = st.lists(
    st.one_of(
        st.text(max_size=4),
        st.sampled_from(["\x00", "\ufeff", "\u202e", "\u0301", "\U0001f600", "\ud800", "\r\n", "\t", "/", ".", "..",
                         " ", "\\", '"', "'", "#", ":", "&a", "*a", "- ", "{", "["]),
    ),
    max_size=6,
).map("".join)

#: integers at and beyond the edges of every width that matters (64-bit, CBOR, Python's str limit)
EDGE_INTS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**31, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1]),
    st.builds(pow, st.just(10), st.just(5000)),  # more digits than int() converts from text
    st.integers(),
)


# -- the IPLD data model ---------------------------------------------------------------------
def cids() -> st.SearchStrategy[Any]:
    """CIDs of every shape a block may link: v1 dag-cbor/raw/dag-pb, v0, identity (inlined)."""
    from halodb.ipld import CID, DAG_CBOR, DAG_PB, RAW
    from halodb.ipld.protobuf import encode_varint

    def v1(codec: int, digest: bytes) -> CID:
        return CID(b"\x01" + encode_varint(codec) + b"\x12\x20" + digest)

    digests = st.binary(min_size=32, max_size=32)
    return st.one_of(
        st.builds(lambda data, codec: CID.for_bytes(data, codec), st.binary(max_size=8), st.sampled_from([DAG_CBOR, RAW])),
        st.builds(v1, st.just(DAG_PB), digests),
        st.builds(lambda d: CID(b"\x12\x20" + d), digests),
        st.builds(lambda d: CID(b"\x01\x55\x00" + encode_varint(len(d)) + d), st.binary(max_size=12)),
    )


def data_model(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Values of the DAG-CBOR data model: null, booleans, 64-bit integers, finite floats,
    strings, bytes, links, lists and string-keyed maps."""
    from halodb.ipld.limits import MAX_INT, MIN_INT

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(MIN_INT, MAX_INT), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12), st.binary(max_size=12), cids(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any = 0, *, kind: str = "list") -> Any:
    """``leaf`` inside ``depth`` lists (or single-key maps), built without recursion.

    >>> nested(2)
    [[0]]
    """
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value
