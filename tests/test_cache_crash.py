"""Atomicity and concurrency of the cache: injected faults, SIGKILL mid-apply, two processes.

Faults are injected by wrapping the steps of :mod:`halodb.cache.materialize` (in this
process with monkeypatch, in child processes by assignment); everything else is real:
DuckDB files, child ``python`` processes, signals.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from halodb.cache import Cache, materialize, stac_columns
from halodb.errors import CacheError

from .test_cache_helpers import PYTHON, T0, child_env, cid, commit, drop, dump, plan, put, rec

COMMON = ["_insert_commits", "_present_items", "_insert_versions", "_insert_items", "_write_sync_state"]
#: the steps each kind of plan runs (see halodb.cache.materialize.apply_plan)
STEPS = [("incremental", s) for s in ["_next_seq", "_close_versions", *COMMON]] + [
    ("reset", s) for s in ["_forget", *COMMON, "_collect_garbage"]
]
#: the steps of a first sync into a cache that holds no items (no look-up of present items)
FRESH_STEPS = ["_next_seq", "_insert_commits", "_holds_no_items", "_insert_versions", "_insert_items", "_write_sync_state"]

@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A cache with two names and some history."""
    path = tmp_path / "c.duckdb"
    with Cache(path) as cache:
        cache.apply(plan("n", [commit("n1", [put(rec("a")), put(rec("b")), put(rec("c"))], day=0),
                               commit("n2", [put(rec("a", 1)), drop("c")], day=1, after="n1")]))  # fmt: skip
        cache.apply(plan("m", [commit("m1", [put(rec("a")), put(rec("x"))], day=0)]))
    return path


def _plans() -> dict[str, Any]:
    """A plan that runs every step: an incremental one, and a reset one."""
    incremental = plan("n", [commit("n3", [put(rec("a", 2)), put(rec("d")), drop("b")], day=2, after="n2"),
                             commit("n4", [put(rec("d", 1)), put(rec("e"))], day=3, after="n3")])  # fmt: skip
    reset = plan("n", [commit("r1", [put(rec("a", 7)), put(rec("f"))], day=0)], reset=True)
    return {"incremental": incremental, "reset": reset}


def _failing_after(original: Callable[..., Any], exc: BaseException) -> Callable[..., Any]:
    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)  # the step did its writes; then the failure
        raise exc

    return step


@pytest.mark.parametrize(("kind", "step"), STEPS)
def test_failure_after_any_step_leaves_cache_unchanged(populated: Path, monkeypatch: pytest.MonkeyPatch, kind: str, step: str) -> None:
    before = dump(populated)
    the_plan = _plans()[kind]
    monkeypatch.setattr(materialize, step, _failing_after(getattr(materialize, step), RuntimeError(f"injected after {step}")))
    with Cache(populated) as cache, pytest.raises(CacheError, match=f"injected after {step}") as info:
        cache.apply(the_plan)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert dump(populated) == before
    monkeypatch.undo()
    with Cache(populated) as cache:  # and the same plan then applies fine
        cache.apply(the_plan)
        assert cache.current_head("n") == the_plan.head


@pytest.mark.parametrize("compiled", [True, False], ids=["TextSet", "python-set"])
@pytest.mark.parametrize("step", FRESH_STEPS)
def test_failure_after_any_step_of_a_first_sync_leaves_a_new_cache_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        step: str, compiled: bool) -> None:
    if not compiled:  # the seen items kept by Python (no compiled module)
        monkeypatch.setattr(materialize, "native", lambda: None)
    path = tmp_path / "new.duckdb"
    with Cache(path):
        pass
    before = dump(path)
    # chunks of 3 versions, the item of "a" again in the third chunk (a look-up of that chunk's items)
    first = plan("n", [commit("f1", [put(rec(k)) for k in "abcd"], day=0),
                       commit("f2", [put(rec("a", 1)), put(rec("b", 1))], day=1, after="f1"),
                       commit("f3", [put(rec("a"))], day=2, after="f2")])  # fmt: skip
    monkeypatch.setattr(materialize, "VERSION_BATCH", 3)
    monkeypatch.setattr(materialize, step, _failing_after(getattr(materialize, step), RuntimeError(f"injected after {step}")))
    with Cache(path) as cache, pytest.raises(CacheError, match=f"injected after {step}"):
        cache.apply(first)
    assert dump(path) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("halodb-cache-plan")]  # the chunk reader ended
    monkeypatch.setattr(materialize, step, getattr(materialize, step).__wrapped__)
    with Cache(path) as cache:
        assert cache.apply(first) == 7
        assert cache.sql("SELECT count(*), count(DISTINCT item_cid) FROM stac_items")[1] == [(6, 6)]
        assert cache.sql("SELECT count(*) FROM item_versions")[1] == [(7,)]


def test_a_malformed_change_read_on_the_chunk_reader_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "new.duckdb"
    with Cache(path):
        pass
    before = dump(path)
    monkeypatch.setattr(materialize, "VERSION_BATCH", 2)
    twice = plan("n", [commit("t1", [put(rec(k)) for k in "abcd"] + [put(rec("c", 1))], day=0)])
    with Cache(path) as cache, pytest.raises(CacheError, match="out of key order"):
        cache.apply(twice)  # (found in the third chunk, read while the second is inserted)
    assert dump(path) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("halodb-cache-plan")]


@pytest.mark.parametrize("per_insert", [3, 1_000], ids=["an-insert-a-batch", "one-insert-reading"])
def test_failure_while_encoding_a_later_item_batch(populated: Path, monkeypatch: pytest.MonkeyPatch, per_insert: int) -> None:
    """Two batches are in DuckDB already, as two INSERTs, or read by the one INSERT still
    running (which must then fail rather than wait for the third): the error is the
    encoder's, and nothing lands."""
    before = dump(populated)
    monkeypatch.setattr(materialize, "ITEM_BATCH", 3)
    monkeypatch.setattr(materialize, "STREAM_ITEMS", per_insert)
    calls = {"n": 0}
    original = stac_columns.columns_table

    def columns_table(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("injected while encoding batch 3")
        return original(*args)

    monkeypatch.setattr(materialize, "columns_table", columns_table)
    big = plan("n", [commit("n3", [put(rec(f"k{i}")) for i in range(20)], day=2, after="n2")])
    with Cache(populated) as cache, pytest.raises(CacheError, match="batch 3") as info:
        cache.apply(big)
    assert isinstance(info.value.__cause__, ValueError)
    assert calls["n"] == 3
    assert dump(populated) == before


def test_an_insert_that_fails_while_reading_its_batches_fails_the_sync(populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB fails in the middle of the INSERT that reads the items (injected: it reads one
    batch, then raises) while the main thread has more to hand over: the sync fails with
    DuckDB's error instead of waiting, and nothing lands."""
    before = dump(populated)
    monkeypatch.setattr(materialize, "ITEM_BATCH", 2)
    monkeypatch.setattr(materialize, "STREAM_QUEUED", 1)

    def failing_insert(con: Any, stream: Any) -> None:
        try:
            next(iter(stream.reader()))
            raise RuntimeError("injected: the INSERT failed after one batch")
        finally:
            stream.end()

    monkeypatch.setattr(materialize, "_insert_items", failing_insert)
    big = plan("n", [commit("n3", [put(rec(f"k{i}")) for i in range(40)], day=2, after="n2")])
    with Cache(populated) as cache, pytest.raises(CacheError, match="failed after one batch"):
        cache.apply(big)
    assert dump(populated) == before


def test_keyboard_interrupt_mid_apply_rolls_back_and_propagates(populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = dump(populated)
    monkeypatch.setattr(materialize, "_insert_versions", _failing_after(materialize._insert_versions, KeyboardInterrupt()))
    with Cache(populated) as cache, pytest.raises(KeyboardInterrupt):
        cache.apply(_plans()["incremental"])
    assert dump(populated) == before


def test_failure_at_commit_leaves_cache_unchanged(populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constraint that only fails when the transaction commits (duplicate sync_state row)."""
    before = dump(populated)

    def write_twice(con: Any, the_plan: Any, now: Any) -> None:
        con.execute("INSERT INTO name_commits VALUES ('m', 'dup', 0)")  # (name, seq) is the primary key

    monkeypatch.setattr(materialize, "_write_sync_state", write_twice)
    with Cache(populated) as cache, pytest.raises(CacheError):
        cache.apply(_plans()["incremental"])
    assert dump(populated) == before


# -- child processes --------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import sys, time
    from halodb.cache import Cache, materialize, writer
    from tests.test_cache_helpers import commit, plan, put, rec

    path, mode, n, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    signalled = []

    def signal_parent(text):
        if not signalled:
            signalled.append(text)
            print(text, flush=True)

    if mode == "inserting":  # after the first batch of items is in DuckDB
        insert_items = materialize._insert_items
        def hooked(con, items):
            insert_items(con, items)
            signal_parent("STARTED")
        materialize._insert_items = hooked
    elif mode == "before-commit":  # every write done, transaction not committed: hold it
        write_sync_state = materialize._write_sync_state
        def hooked(*args):
            write_sync_state(*args)
            signal_parent("STARTED")
            time.sleep(hold)
        materialize._write_sync_state = hooked
    elif mode == "committing":  # DuckDB is about to commit (and checkpoint)
        finish = writer.OrderedWriter.finish
        def hooked(self):
            finish(self)
            signal_parent("STARTED")
        writer.OrderedWriter.finish = hooked

    records = [rec(f"big/{i:07d}") for i in range(n)]
    try:
        cache = Cache(path, lock_timeout=float(sys.argv[5]) if len(sys.argv) > 5 else 30.0)
        cache.apply(plan("big", [commit("big1", [put(r) for r in records], day=5)]))
    except Exception as exc:
        print("ERROR", type(exc).__name__, "locked" if getattr(exc, "locked", False) else "", exc, flush=True)
        sys.exit(3)
    print("DONE", flush=True)
    if mode == "idle":
        print("READY", flush=True)
        time.sleep(hold)  # keeps the Cache object (not a connection) alive
    """
)


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    started: list[subprocess.Popen[bytes]] = []

    def start(path: Path, mode: str, n: int, hold: float = 60.0, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [PYTHON, str(script), str(path), mode, str(n), str(hold), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=str(tmp_path),
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:  # only the processes this test started, by their id
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _read_line(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """One line of the child's stdout, read byte by byte from the pipe (no buffering: a
    buffered reader could swallow a second line that ``select`` then never reports)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"child said nothing within {timeout} s (so far: {line!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            proc.wait()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"child exited with {proc.returncode}: {err}")
        line += chunk
    return line.decode().strip()


def _check_big_complete(path: Path, n: int) -> None:
    with Cache(path, read_only=True) as cache:
        state = cache.sync_state("big")
        assert state is not None and (state.commits, state.items) == (1, n)
        assert cache.sql("SELECT count(*) FROM items WHERE name = 'big'")[1] == [(n,)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inserting", "before-commit", "committing"])
def test_sigkill_mid_apply_leaves_previous_state(populated: Path, child: Callable[..., subprocess.Popen[bytes]], mode: str) -> None:
    n = 200_000
    before = dump(populated)
    proc = child(populated, mode, n)
    assert _read_line(proc) == "STARTED"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    after = dump(populated)  # DuckDB recovers from its WAL on open
    if mode == "committing" and after != before:
        _check_big_complete(populated, n)  # killed while committing: all or nothing
        committed = True
    else:
        assert after == before
        committed = False
    print(f"killed while {mode}: cache {'has the whole new sync' if committed else 'is exactly as before'}")
    # a new apply completes, to a name that existed and to the one that was being written
    with Cache(populated) as cache:
        cache.apply(plan("n", [commit("n3", [put(rec("a", 9)), put(rec("z"))], day=9, after="n2")]))
        cache.apply(plan("big", [commit("big-small", [put(rec("big/0")), put(rec("big/1"))], day=9)], reset=committed))
        assert cache.cid_at("a", T0.replace(day=11), name="n") == cid("data:a:9")
        assert cache.sql("SELECT count(*) FROM items WHERE name = 'big'")[1] == [(2,)]
        assert cache.sql("SELECT key FROM items WHERE name = 'm' ORDER BY key")[1] == [("a",), ("x",)]


def test_reader_waits_for_a_writer_in_another_process(populated: Path, child: Callable[..., subprocess.Popen[bytes]]) -> None:
    proc = child(populated, "before-commit", 50, 1.5)  # holds the write lock for ~1.5 s mid-transaction
    assert _read_line(proc) == "STARTED"
    t = time.monotonic()
    with pytest.raises(CacheError, match="locked by another process") as info:
        Cache(populated, read_only=True, lock_timeout=0.2)
    assert info.value.locked is True and info.value.timeout == 0.2 and info.value.path == populated
    assert time.monotonic() - t < 1.5
    with Cache(populated, read_only=True, lock_timeout=30) as cache:  # retries until the writer is done
        _, rows = cache.sql("SELECT count(*) FROM items WHERE name = 'big'")
    assert rows == [(50,)]
    assert _read_line(proc) == "DONE"


def test_idle_writer_does_not_block_readers_or_writers(populated: Path, child: Callable[..., subprocess.Popen[bytes]]) -> None:
    proc = child(populated, "idle", 10, 60.0)
    assert _read_line(proc) == "DONE"
    assert _read_line(proc) == "READY"  # the child keeps its Cache object alive from here on
    with Cache(populated, read_only=True, lock_timeout=2) as cache:
        assert cache.sql("SELECT count(*) FROM items WHERE name = 'big'")[1] == [(10,)]
    with Cache(populated, lock_timeout=2) as cache:
        cache.apply(plan("n", [commit("n3", [drop("a")], day=4, after="n2")]))
    assert proc.poll() is None  # still alive and idle


def test_writer_gives_up_while_a_reader_holds_the_file(populated: Path, child: Callable[..., subprocess.Popen[bytes]]) -> None:
    with Cache(populated, read_only=True) as cache, cache.session():
        proc = child(populated, "plain", 10, 0.0, "0.3")
        line = _read_line(proc)
        proc.wait()
    assert line.startswith("ERROR CacheError locked"), line
    assert proc.returncode == 3
    with Cache(populated, read_only=True) as cache:
        assert cache.sync_state("big") is None


def test_cache_error_for_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    path.write_bytes(b"not a duckdb file" * 100)
    with pytest.raises(CacheError, match="cannot open cache") as info:
        Cache(path)
    assert info.value.locked is False


def test_versions_waiting_for_an_insert_of_items_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the INSERT of items reads its batches, the chunks' versions wait; once
    STREAM_ITEMS of them wait, the INSERT ends and they go in (a first version read as
    batches has no close that would insert them sooner). Real DuckDB, the real writer."""
    import duckdb

    from halodb.cache.migrate import migrate
    from halodb.cache.stac_columns import items_table
    from halodb.cache.writer import OrderedWriter

    monkeypatch.setattr(materialize, "STREAM_ITEMS", 10)
    con = duckdb.connect()
    migrate(con)
    the_plan = plan("n", [commit("c1", [put(rec("a"))], day=0)])
    commits = materialize._commits_table(materialize.commit_columns(the_plan))
    con.begin()
    with OrderedWriter() as writer:
        inserts = materialize._BulkInserts(con, writer, "n", commits)
        try:
            inserts.put(items_table([cid("item:a")], [{"id": "a"}]))  # an INSERT of items now reads
            waiting = []
            for lo in range(0, 12, 4):
                cols = materialize.PlanColumns(
                    version_key=[f"k{i}" for i in range(lo, lo + 4)], version_item_cid=[cid("item:a")] * 4,
                    version_data_cid=[None] * 4, version_path=[None] * 4, version_from=[0] * 4, version_to=[None] * 4)
                inserts.versions(materialize._versions_table(cols))
                waiting.append(sum(map(len, inserts._versions)))
            assert waiting == [4, 8, 0]  # the third chunk reached 10: the INSERT ended, all 12 went in
            writer.finish()
        finally:
            inserts.abort()  # (a failed assertion: the INSERT must not wait for more)
    assert con.execute("SELECT count(*) FROM item_versions").fetchall() == [(12,)]
    assert con.execute("SELECT count(*) FROM stac_items").fetchall() == [(1,)]
    con.rollback()
