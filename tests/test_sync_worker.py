"""Full syncs with the item-reading worker process (halodb.sync.worker): same cache, same
errors, no process left behind. Real directory stores, real forked workers, real DuckDB."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.blockstore import DirectoryStore
from halodb.cache import materialize
from halodb.demo.campaign import generate_items
from halodb.errors import BlockNotFoundError, VerificationError
from halodb.sync.worker import WORKER_ENV, ItemReader

from .test_cache_helpers import dump

BATCH = 64  #: items per batch in these tests (5 batches of 300 items, the last one partial)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry home whose name "n" has 300 items in two commits (the second changes 40),
    and whose name "first" points at the first commit."""
    monkeypatch.setattr(materialize, "ITEM_BATCH", BATCH)
    items = generate_items(300, seed=3)
    reg = halodb.open(tmp_path / "home", create=True)
    reg.add(items)
    reg.publish("first", reg.commit("300 items", time="2024-09-01T00:00:00Z"))
    for item in items[:40]:
        item["properties"]["title"] += " (revised)"
    reg.add(items[:40])
    reg.commit("40 revised", time="2024-09-02T00:00:00Z")
    reg.publish("n")
    reg.close()
    return tmp_path / "home"


def _sync(home: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, worker: bool, name: str = "n") -> Any:
    monkeypatch.setenv(WORKER_ENV, "1" if worker else "0")
    reg = halodb.open(home, cache=cache)
    try:
        return reg.sync(name)
    finally:
        reg.close()


def _comparable(path: Path) -> dict[str, Any]:
    """A dump of the cache without the columns that hold wall-clock times."""
    out = dump(path)
    out["schema_migrations"] = [row[:2] for row in out["schema_migrations"]]
    out["sync_state"] = [row[:2] + row[3:] for row in out["sync_state"]]
    return out


def _item_cids(home: Path) -> list[str]:
    reg = halodb.open(home, cache=home / "probe.duckdb")
    try:
        reg.sync("n")
        return [row[0] for row in reg.sql("SELECT item_cid FROM items ORDER BY key")[1]]
    finally:
        reg.close()


@pytest.fixture
def no_worker_left() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_worker_sync_equals_in_process_sync(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_worker_left: None) -> None:
    started, answers = [], []
    start, columns = ItemReader._start, ItemReader.columns

    def counting_start(self: ItemReader) -> bool:
        started.append(True)
        return start(self)

    def after_the_worker_claimed_all(self: ItemReader, batch: list[str]) -> Any:
        if self._proc is not None:  # the batch asked for is claimed (by the worker, or stolen) first
            _wait_for(lambda: not self._claims[0] <= self._next < self._claims[1], "the worker")
        got = columns(self, batch)
        answers.append(got is not None)
        return got

    monkeypatch.setattr(ItemReader, "_start", counting_start)
    monkeypatch.setattr(ItemReader, "columns", after_the_worker_claimed_all)
    with_worker = _sync(home, tmp_path / "w.duckdb", monkeypatch, worker=True)
    assert started == [True] and answers == [True] * 6  # 340 items: every batch read ahead
    answers.clear()
    without = _sync(home, tmp_path / "p.duckdb", monkeypatch, worker=False)
    assert started == [True] and answers == [False] * 6
    assert (with_worker.changes, with_worker.blocks_read) == (without.changes, without.blocks_read)
    assert with_worker.changes == 340
    assert _comparable(tmp_path / "w.duckdb") == _comparable(tmp_path / "p.duckdb")


def test_small_plans_are_read_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = halodb.open(tmp_path / "home", create=True)
    reg.add(generate_items(BATCH - 1, seed=1))
    reg.commit("a few", time="2024-09-01T00:00:00Z")
    reg.publish("n")
    reg.close()
    monkeypatch.setattr(materialize, "ITEM_BATCH", BATCH)
    monkeypatch.setattr(ItemReader, "_start", lambda self: pytest.fail("no worker for less than one batch"))
    assert _sync(tmp_path / "home", tmp_path / "c.duckdb", monkeypatch, worker=True).changes == BATCH - 1


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
def test_bad_item_block_read_by_the_worker_raises_the_same_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, no_worker_left: None
) -> None:
    victim = _item_cids(home)[2 * BATCH + 5]  # in the third batch: one the worker reads
    path = DirectoryStore(home / "blocks").path_of(halodb.CID.parse(victim))
    assert path.is_file()
    if fault == "corrupt":
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    else:
        path.unlink()
    errors = {}
    for worker in (True, False):
        cache = tmp_path / f"{worker}.duckdb"
        with pytest.raises((VerificationError, BlockNotFoundError)) as info:
            _sync(home, cache, monkeypatch, worker=worker)
        errors[worker] = (type(info.value), str(info.value))
        reg = halodb.open(home, cache=cache)
        assert reg.sql("SELECT count(*) FROM commits")[1] == [(0,)]  # nothing of the sync landed
        reg.close()
    assert errors[True] == errors[False]
    assert errors[True][0] is (VerificationError if fault == "corrupt" else BlockNotFoundError)
    assert victim in errors[True][1]


def test_worker_killed_mid_sync_the_parent_reads_the_rest(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_worker_left: None
) -> None:
    columns = ItemReader.columns
    killed = []

    def kill_then_columns(self: ItemReader, batch: list[str]) -> Any:
        if not killed and self._proc is not None and self._proc.pid is not None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.join()
            killed.append(True)
        return columns(self, batch)

    monkeypatch.setattr(ItemReader, "columns", kill_then_columns)
    result = _sync(home, tmp_path / "w.duckdb", monkeypatch, worker=True)
    assert killed == [True]
    _sync(home, tmp_path / "p.duckdb", monkeypatch, worker=False)
    assert result.changes == 340
    assert _comparable(tmp_path / "w.duckdb") == _comparable(tmp_path / "p.duckdb")


def test_items_the_cache_holds_already_put_the_worker_out_of_step(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_worker_left: None
) -> None:
    """A second name over the same blocks: the cache skips the items it holds (those of
    "first"), so the batches it asks for differ from the worker's; the parent stops the
    worker and reads them itself."""
    columns = ItemReader.columns
    answers: list[bool] = []

    def recording(self: ItemReader, batch: list[str]) -> Any:
        got = columns(self, batch)
        answers.append(got is not None)
        return got

    monkeypatch.setattr(ItemReader, "columns", recording)
    caches = {}
    for worker in (True, False):
        caches[worker] = tmp_path / f"{worker}.duckdb"
        assert _sync(home, caches[worker], monkeypatch, worker=worker, name="first").changes == 300
        assert _sync(home, caches[worker], monkeypatch, worker=worker, name="n").changes == 340
        if worker:  # "n": its one batch (40 new) is none of those read ahead
            assert len(answers) == 6 and answers[5] is False
    assert _comparable(caches[True]) == _comparable(caches[False])


def _sync_in_daemon(home: str, cache: str) -> None:
    reg = halodb.open(home, cache=cache)
    try:
        assert reg.sync("n").changes == 340
    finally:
        reg.close()


def test_sync_inside_a_daemonic_process_reads_in_process(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemonic process may not start children: the sync then reads everything itself."""
    monkeypatch.setenv(WORKER_ENV, "1")
    proc = multiprocessing.get_context("fork").Process(
        target=_sync_in_daemon, args=(str(home), str(tmp_path / "d.duckdb")), daemon=True
    )
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    _sync(home, tmp_path / "p.duckdb", monkeypatch, worker=False)
    assert _comparable(tmp_path / "d.duckdb") == _comparable(tmp_path / "p.duckdb")
