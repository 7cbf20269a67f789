"""The helpers of a large sync (:mod:`halodb.sync.worker`), the column thread and the second
process: the cache they help fill is the one a sync without them fills — with items the
cache cannot hold among the batches, with a thread that raises, with a child that dies or
answers nonsense — the thread ends with the sync and the child with its parent.

Real threads and forked processes; the batches made small (``ITEM_BATCH``) so that a few
hundred items make many of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import halodb
import halodb.sync.worker as worker_module
from halodb.blockstore import MemoryStore
from halodb.cache import Cache
from halodb.api.syncing import worker_wanted
from halodb.cache import materialize
from halodb.errors import InputError
from halodb.index.index import Index
from halodb.ipld import DAG_CBOR
from halodb.ipld.codec import decode
from halodb.sync.items import read_inline_item_columns
from halodb.sync import sync
from halodb.sync.worker import ColumnThread, ItemWorker, SyncHelper

from .conftest import cid_for, make_item, run_cli
from .test_sync_full import KINDS, _dump, _head

WAIT = 60.0  # seconds: far more than any step takes


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materialize, "ITEM_BATCH", 16)


def synced(tmp_path: Path, name: str, kinds: list[str], worker: SyncHelper | None) -> tuple[Any, Path]:
    """A sync of a first version of ``kinds`` into a new cache file, with or without ``worker``.
    The item blocks the entries hold inline are dropped from the store (as ``gc`` drops them):
    a batch's items exist only in the leaves, so a batch the worker took and did not answer
    must be read from the blocks it was given."""
    store = MemoryStore()
    head = _head(store, kinds, True)
    inline = {cid for cid in store.iter_cids() if cid.codec == DAG_CBOR and _is_item(store.get(cid))}
    store.delete_many(inline)
    path = tmp_path / f"{name}.duckdb"
    cache = Cache(path)
    try:
        result = sync(store, Index(store), cache, "n", head, worker=worker)
    finally:
        cache.close()
        if worker is not None:
            worker.close()
    return result, path


def test_a_sync_with_a_worker_fills_the_cache_as_one_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # leaves of inline items (the first ~460 keys), the second batch with two blocks that are
    # not items (the child answers None: the parent says which and why); then a leaf with
    # linked items (its batches are never sent)
    kinds = ["item"] * 20 + ["not-an-item"] * 2 + ["item"] * 440 + (KINDS * 20)[:100]
    worker = ItemWorker.fork()
    answers: list[bool] = []
    receive = ItemWorker.receive

    def counting(self: ItemWorker) -> Any:
        got = receive(self)
        answers.append(got is not None)
        return got

    monkeypatch.setattr(ItemWorker, "receive", counting)
    helped, with_worker = synced(tmp_path, "with", kinds, worker)
    alone, without = synced(tmp_path, "without", kinds, None)
    assert answers.count(False) >= 1 and answers.count(True) >= 8, answers
    assert worker.batches == answers.count(True)
    assert (helped.changes, helped.skipped) == (alone.changes, alone.skipped)
    assert len(helped.skipped) == 2 + 2 * 20
    assert _dump(with_worker) == _dump(without)


def test_a_worker_that_dies_or_talks_nonsense_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = ["item"] * 300
    _, expected = synced(tmp_path, "alone", kinds, None)

    dying = ItemWorker.fork()
    receive = ItemWorker.receive

    def receive_then_die(self: ItemWorker) -> Any:
        got = receive(self)
        if self.batches == 2 and self.pid:
            os.kill(self.pid, signal.SIGKILL)  # killed while it computes the next batch
        return got

    monkeypatch.setattr(ItemWorker, "receive", receive_then_die)
    _, died = synced(tmp_path, "died", kinds, dying)
    assert dying.batches == 2 and not dying.alive
    monkeypatch.undo()
    monkeypatch.setattr(materialize, "ITEM_BATCH", 16)

    # a child whose answers are not columns (forked with the function patched): dropped at once
    monkeypatch.setattr(worker_module, "read_inline_item_columns", lambda cids, blocks: "nonsense")
    talking = ItemWorker.fork()
    monkeypatch.undo()
    monkeypatch.setattr(materialize, "ITEM_BATCH", 16)
    _, nonsense = synced(tmp_path, "nonsense", kinds, talking)
    assert talking.batches == 0 and not talking.alive
    assert _dump(died) == _dump(expected) == _dump(nonsense)


def test_a_sync_with_a_column_thread_fills_the_cache_as_one_without(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # as with the process: inline items, a batch with blocks that are not items (the thread
    # answers None: the main thread says which and why), then linked items (never started)
    kinds = ["item"] * 20 + ["not-an-item"] * 2 + ["item"] * 440 + (KINDS * 20)[:100]
    thread = ColumnThread()
    answers: list[bool] = []
    result = ColumnThread.result

    def counting(self: ColumnThread, future: Any) -> Any:
        got = result(self, future)
        answers.append(got is not None)
        return got

    monkeypatch.setattr(ColumnThread, "result", counting)
    helped, with_thread = synced(tmp_path, "with", kinds, thread)
    alone, without = synced(tmp_path, "without", kinds, None)
    assert answers.count(False) >= 1 and answers.count(True) >= 20, answers  # every inline batch, not every other
    assert thread.batches == answers.count(True) and not thread.alive
    assert (helped.changes, helped.skipped) == (alone.changes, alone.skipped)
    assert len(helped.skipped) == 2 + 2 * 20
    assert _dump(with_thread) == _dump(without)
    assert not [t for t in threading.enumerate() if t.name.startswith("halodb-sync-columns")]  # ended with the sync


def test_a_column_thread_that_raises_or_is_closed_changes_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = ["item"] * 300
    _, expected = synced(tmp_path, "alone", kinds, None)
    made = 0

    def failing_every_third(cids: list[str], blocks: list[bytes]) -> Any:
        nonlocal made
        made += 1
        if made % 3 == 0:
            raise RuntimeError("a batch the thread could not make")
        return read_inline_item_columns(cids, blocks)

    monkeypatch.setattr(worker_module, "read_inline_item_columns", failing_every_third)
    raising = ColumnThread()
    _, raised = synced(tmp_path, "raised", kinds, raising)
    assert made >= 6 and raising.batches == made - made // 3

    # closed while batches wait for it: the main thread reads them, from the blocks it gave
    closing = ColumnThread()
    submit = ColumnThread.submit

    def close_after_two(self: ColumnThread, cids: list[str], blocks: list[bytes]) -> Any:
        if closing.batches >= 2:
            self.close()
        return submit(self, cids, blocks)

    monkeypatch.setattr(ColumnThread, "submit", close_after_two)
    _, closed = synced(tmp_path, "closed", kinds, closing)
    assert 2 <= closing.batches < made and not closing.alive
    assert _dump(raised) == _dump(expected) == _dump(closed)


class Planted:
    """An answer that would run code when unpickled (creating ``path``) if classes were allowed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_a_child_answer_is_unpickled_as_columns_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    planted = tmp_path / "planted"
    monkeypatch.setattr(worker_module, "read_inline_item_columns", lambda cids, blocks: Planted(planted))
    worker = ItemWorker.fork()
    monkeypatch.undo()
    try:
        assert worker.send(["bafyx"], [b"\xa0"])
        assert worker.receive() is None and not worker.alive  # refused, the worker dropped
    finally:
        worker.close()
    assert not planted.exists()  # nothing ran


def _is_item(block: bytes) -> bool:
    value = decode(block)
    return isinstance(value, dict) and value.get("type") == "Feature" and len(block) < 2048  # (not "large")


#: forks a worker, says its PID, and is killed
ORPHANING = r"""
import os, signal
from halodb.sync.worker import ItemWorker
worker = ItemWorker.fork()
print(worker.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_ends_when_its_parent_is_gone() -> None:
    parent = subprocess.Popen([sys.executable, "-c", ORPHANING], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.wait(WAIT) == -signal.SIGKILL
    deadline = time.monotonic() + WAIT
    while _running(child):  # its requests ended with the parent: it exits
        assert time.monotonic() < deadline, f"the worker {child} outlived its parent"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by whoever adopted it) has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_no_worker_is_forked_beside_another_thread() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert ItemWorker.start() is None
    finally:
        stop.set()
        thread.join(WAIT)


#: a first sync of a home through the registry, with the threshold lowered: which helper made
#: how many batches, and the cache's rows
THROUGH_THE_REGISTRY = r"""
import hashlib, json, sys
import halodb, halodb.api.syncing as syncing, halodb.cache.materialize as materialize
from halodb.sync.worker import ColumnThread, ItemWorker
syncing.MIN_WORKER_ITEMS = 0
materialize.ITEM_BATCH = 16
made = []
for helper in (ColumnThread, ItemWorker):
    def closing(self, close=helper.close, kind=helper.__name__):
        if self.batches:
            made.append([kind, self.batches])
        close(self)
    helper.close = closing
with halodb.open(sys.argv[1]) as reg:
    reg.sync("n")
    rows = reg.sql("SELECT * FROM item_versions ORDER BY key")[1]
print(json.dumps({"batches": made, "rows": hashlib.sha256(repr(rows).encode()).hexdigest(), "n": len(rows)}))
"""


@pytest.mark.parametrize(("native", "helper", "least"), [("1", "ColumnThread", 12), ("0", "ItemWorker", 4)])
def test_the_registry_starts_a_helper_for_a_first_sync(tmp_path: Path, native: str, helper: str, least: int) -> None:
    # with the compiled module a thread makes every batch (200 items: 13 of 16); without, a
    # forked child every other one
    home = tmp_path / "home"
    with halodb.open(home, create=True) as reg:
        reg.add([make_item(f"d{i}", cid_for(f"d{i}")) for i in range(200)])
        reg.commit("two hundred", time="2024-09-01T00:00:00Z")
        reg.publish("n")
    answers = {}
    for switch in ("1", "0"):  # HALODB_SYNC_WORKER
        for leftover in home.glob("cache.duckdb*"):
            leftover.unlink()
        out = subprocess.run([sys.executable, "-c", THROUGH_THE_REGISTRY, str(home)], capture_output=True, text=True,
                             timeout=WAIT, check=True,
                             env={**os.environ, "HALODB_SYNC_WORKER": switch, "HALODB_NATIVE": native}).stdout
        answers[switch] = json.loads(out)
    [[kind, batches]] = answers["1"]["batches"]
    assert kind == helper and batches >= least and answers["0"]["batches"] == []
    assert answers["1"]["rows"] == answers["0"]["rows"] and answers["1"]["n"] == 200
    for leftover in home.glob("cache.duckdb*"):
        leftover.unlink()
    bad = run_cli(home, "sync", "n", env={"HALODB_SYNC_WORKER": "yes"})
    assert bad.code == 2 and bad.err.count("\n") == 1 and "HALODB_SYNC_WORKER='yes'" in bad.err, bad.err
    assert not list(home.glob("cache.duckdb*"))  # refused before the cache was made


@pytest.mark.parametrize(("value", "wanted"), [("", True), (" 1 ", True), ("0", False), ("yes", None)])
def test_the_switch_reads_empty_as_unset_and_refuses_other_words(monkeypatch: pytest.MonkeyPatch, value: str,
                                                                 wanted: bool | None) -> None:
    monkeypatch.setenv("HALODB_SYNC_WORKER", value)
    if wanted is None:
        with pytest.raises(InputError, match="HALODB_SYNC_WORKER='yes'"):
            worker_wanted()
    else:
        assert worker_wanted() is wanted
