"""Writers of one home in several processes (issue 10, defects 1 and 10): real processes, no mocks.

* Every change of a home (``add``, ``rm``, ``commit``, ``publish``, ``import-tree``, scan
  staging, ``gc``) holds the home's lock (``HOME/.lock``): concurrent ``add``s lose no item,
  two ``add X; commit -m X`` loops lose no commit (and, holding the lock across the pair,
  never mix their items), and of two simultaneous ``commit``s exactly those that exit 0 are
  in the history.
* A writer that cannot get the lock within ``HALODB_LOCK_TIMEOUT`` exits 2 with one line
  naming the holder's PID and what it does.
* A stage whose item block is missing is not committed (exit 2, naming the CID and the key).

The concurrent commands run in worker processes started once per test (importing HaloDB
takes about a second; a command takes milliseconds): each worker runs the ``halodb``
commands it is sent exactly as ``python -m halodb`` would — a fresh registry each time,
output and exit code — and the test sends a round to every worker at once and collects
the answers. The waits have generous timeouts; nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.api.home import Home
from halodb.blockstore import SqliteStore
from halodb.errors import BlockNotFoundError, HomeLockedError, InputError

from .conftest import Result, cid_for, make_item, run_cli

#: a worker: reads a JSON list of commands a line, runs them in order, answers with a JSON
#: list of results a line. ``["cli", ARGS...]`` runs ``halodb ARGS`` (as ``python -m halodb``
#: does); ``["add-commit", HOME, FILE, MESSAGE]`` adds the item in FILE and commits it
#: through the API, holding the home's lock across the pair.
WORKER = r"""
import contextlib, io, json, sys, traceback
import halodb
from halodb.cli.commands import main

def cli(*args):
    sys.argv = ["halodb", *args]
    main()  # exits 2 on an error, like the command

def add_commit(home, file, message):
    with halodb.open(home) as reg, reg.locked("add and commit"):
        reg.add([json.loads(open(file).read())])
        print(reg.commit(message))

RUN = {"cli": cli, "add-commit": add_commit}
answer = sys.stdout
print("ready", file=answer, flush=True)
for line in sys.stdin:
    results = []
    for kind, *args in json.loads(line):
        out, err, code = io.StringIO(), io.StringIO(), 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                RUN[kind](*args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
        results.append([code, out.getvalue(), err.getvalue()])
    print(json.dumps(results), file=answer, flush=True)
"""

#: a child that holds the home's lock until its stdin closes
HOLDER = r"""
import sys
from pathlib import Path
from halodb.api.home import Home
with Home(Path(sys.argv[1])).locked("commit"):
    print("locked", flush=True)
    sys.stdin.read()
"""

WAIT = 120.0  # seconds: far more than any step takes
Command = list[str]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HALODB_STORE", "HALODB_CACHE", "HALODB_LOCK_TIMEOUT")}
    return {**env, "HALODB_AUTHOR": "tester"}


class Worker:
    """One worker process (see :data:`WORKER`)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=child_env())
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # the worker ended

    def answer(self) -> str:
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"worker {self.proc.pid} did not answer within {WAIT} s") from None
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"worker {self.proc.pid} ended: {self.proc.stderr.read()}")
        return line

    def send(self, commands: list[Command]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(commands) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def workers(n: int) -> Iterator[list[Worker]]:
    started = [Worker() for _ in range(n)]
    try:
        for w in started:
            assert w.answer() == "ready\n"
        yield started
    finally:
        for w in started:
            w.close()


def at_once(pool: list[Worker], *rounds: list[Command]) -> list[list[Result]]:
    """Send each worker its commands at the same moment; each worker's results."""
    for w, commands in zip(pool, rounds, strict=True):
        w.send(commands)
    return [[Result(*r) for r in json.loads(w.answer())] for w in pool]


def cli(home: Path, *args: str) -> Command:
    return ["cli", "--home", str(home), *args]


def item_file(folder: Path, item_id: str, *, large: bool = False) -> str:
    """An item as a file; ``large``: more than an index holds inline, so staged as a block of
    the store (a small one is staged with its bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{item_id}.json"
    path.write_text(json.dumps(make_item(item_id, cid_for(item_id), title="x" * 3000 if large else None)))
    return str(path)


def new_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    halodb.open(home, create=True).close()
    return home


def staged_keys(home: Path) -> set[str]:
    with halodb.open(home) as reg:
        return set(reg.staged().upserts)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def linear_history(home: Path) -> list[Any]:
    """The log of HEAD, checked to be one line of commits, each on the one after it."""
    with halodb.open(home) as reg:
        history = list(reg.log("HEAD"))
    for entry, parent in zip(history, [*history[1:], None]):
        assert entry.commit.parents == ((parent.cid,) if parent else ()), entry.commit.message
    return history


# --- (a) concurrent adds --------------------------------------------------------------------
def test_concurrent_adds_stage_every_item(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    items = tmp_path / "items"
    with workers(2) as pool:
        for i in range(10):
            (a,), (b,) = at_once(pool, [cli(home, "add", item_file(items, f"a{i}"))],
                                 [cli(home, "add", item_file(items, f"b{i}"))])
            assert (a.code, b.code) == (0, 0), (a.err, b.err)
    assert staged_keys(home) == {f"halo/{x}{i}" for x in "ab" for i in range(10)}


# --- (b) two add-and-commit loops ------------------------------------------------------------
LOOPS = {who: [f"{who}{i}" for i in range(6)] for who in ("p", "q")}


def test_two_add_commit_loops_lose_no_commit(tmp_path: Path) -> None:
    # Each command holds the lock, but the stage is shared between them: a loop's commit may
    # take the other loop's staged item too, and the other's commit then has nothing left.
    # What must hold: every commit that printed a CID is in one linear history, every other
    # commit said "nothing staged", and every item is committed exactly once.
    home = new_home(tmp_path)
    items = tmp_path / "items"
    with workers(2) as pool:
        runs = at_once(pool, *[[cmd for name in names for cmd in (cli(home, "add", item_file(items, name)),
                                                                   cli(home, "commit", "-m", name))]
                               for names in LOOPS.values()])
    adds = [r for run in runs for r in run[0::2]]
    commits = [r for run in runs for r in run[1::2]]
    assert all(r.code == 0 for r in adds), [r.err for r in adds]
    printed = {r.out.strip() for r in commits if r.code == 0}
    for r in commits:
        assert r.code == 0 or (r.code == 2 and "nothing staged" in one_line(r.err)), r
    history = linear_history(home)
    assert {str(e.cid) for e in history} == printed
    assert sum(e.added for e in history) == history[0].count == 12
    assert all((e.changed, e.removed) == (0, 0) and e.added >= 1 for e in history)
    assert staged_keys(home) == set()


def test_two_add_commit_loops_holding_the_lock_keep_every_commit_whole(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    items = tmp_path / "items"
    with workers(2) as pool:
        runs = at_once(pool, *[[["add-commit", str(home), item_file(items, name), name] for name in names]
                               for names in LOOPS.values()])
    assert all(r.code == 0 for run in runs for r in run), [(r.code, r.err[-300:]) for run in runs for r in run]
    printed = {r.out.strip() for run in runs for r in run}
    assert len(printed) == 12

    history = linear_history(home)
    assert {str(e.cid) for e in history} == printed  # every commit is in the log
    assert sorted(e.commit.message for e in history) == sorted(n for names in LOOPS.values() for n in names)
    with halodb.open(home) as reg:
        for entry, parent in zip(history, [*history[1:], None]):
            # each commit holds exactly its own item
            assert (entry.added, entry.changed, entry.removed) == (1, 0, 0), entry.commit.message
            key = f"halo/{entry.commit.message}"
            assert reg.get(key, entry.cid)[0] == key
            if parent is not None:
                with pytest.raises(halodb.UnknownKeyError):
                    reg.get(key, parent.cid)
    assert history[0].count == 12 and staged_keys(home) == set()


# --- (c) simultaneous commits ----------------------------------------------------------------
def test_of_simultaneous_commits_exactly_the_successful_are_in_a_linear_history(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    items = tmp_path / "items"
    winners: set[str] = set()
    with workers(2) as pool:
        for i in range(5):
            with halodb.open(home) as reg:
                reg.add([json.loads(Path(item_file(items, f"c{i}")).read_text())])
            (first,), (second,) = at_once(pool, [cli(home, "commit", "-m", f"round {i} first")],
                                          [cli(home, "commit", "-m", f"round {i} second")])
            ok = [r for r in (first, second) if r.code == 0]
            assert len(ok) == 1, (first, second)
            loser = second if ok[0] is first else first
            assert loser.code == 2 and "nothing staged" in one_line(loser.err), loser
            winners.add(ok[0].out.strip())
    history = linear_history(home)
    assert {str(e.cid) for e in history} == winners
    assert all((e.added, e.changed, e.removed) == (1, 0, 0) for e in history)


# --- (d) a held lock and its timeout ---------------------------------------------------------
def test_a_writer_gives_up_after_the_timeout_naming_the_holder(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    item = item_file(tmp_path / "items", "d1")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        r = run_cli(home, "add", item, env={"HALODB_LOCK_TIMEOUT": "1"})
        assert r.code == 2 and r.out == ""
        line = one_line(r.err)
        assert line.startswith("halodb: error: ") and f"locked by PID {holder.pid} (commit) since " in line, line
        assert "HALODB_LOCK_TIMEOUT" in line
        with halodb.open(home) as reg, pytest.raises(HomeLockedError) as caught, reg.locked("gc", timeout=0):
            pass
        assert (caught.value.pid, caught.value.what) == (holder.pid, "commit")
        assert staged_keys(home) == set()
    finally:
        holder.communicate(input="", timeout=WAIT)  # closing stdin releases the lock
    assert holder.returncode == 0
    assert run_cli(home, "add", item, env={"HALODB_LOCK_TIMEOUT": "1"}).code == 0
    assert staged_keys(home) == {"halo/d1"}
    assert (home / ".lock").read_text() == ""  # a released lock names nobody


#: holds the home's lock, forks a child (as a large commit does) that outlives it, and is killed
FORKING_HOLDER = r"""
import os, signal, sys, time
from pathlib import Path
from halodb.api.home import Home
with Home(Path(sys.argv[1])).locked("commit"):
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forked_child_does_not_keep_the_lock_of_a_killed_writer(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(home)], stdout=subprocess.PIPE, text=True,
                              env=child_env())
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    try:
        assert holder.wait(WAIT) == -9  # killed while holding the lock: no release
        os.kill(child, 0)  # the child still runs
        with Home(home).locked("add", timeout=WAIT / 4):  # and the lock is free all the same
            os.kill(child, 0)
    finally:
        os.kill(child, 9)


def test_the_lock_is_reentrant_in_one_home_and_excludes_threads_and_other_homes(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    state, other = Home(home), Home(home)
    errors: list[BaseException] = []

    def try_from_a_thread() -> None:
        try:
            with state.locked("add", timeout=0.05):
                pass
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    with state.locked("import-tree"), state.locked("commit"):  # re-entrant: no deadlock
        thread = threading.Thread(target=try_from_a_thread)
        thread.start()
        thread.join(WAIT)
        with pytest.raises(HomeLockedError) as caught, other.locked("gc", timeout=0):
            pass
    assert len(errors) == 1 and isinstance(errors[0], HomeLockedError)
    assert "another thread of this process" in str(errors[0])
    exc = caught.value
    assert (exc.pid, exc.what, exc.timeout, exc.home) == (os.getpid(), "import-tree", 0, home)
    with other.locked("gc", timeout=0):  # released by the outermost exit
        pass


def test_a_bad_lock_timeout_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    monkeypatch.setenv("HALODB_LOCK_TIMEOUT", "soon")
    with halodb.open(home) as reg, pytest.raises(InputError, match="HALODB_LOCK_TIMEOUT"):
        reg.reset_stage()


# --- (e) a missing item block ----------------------------------------------------------------
def test_a_commit_whose_item_block_is_missing_is_refused(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    e1, e2 = (json.loads(Path(item_file(tmp_path / "items", n, large=True)).read_text()) for n in ("e1", "e2"))
    with halodb.open(home) as reg:
        reg.add([e1, e2])
        cid = reg.staged().upserts["halo/e1"].item
    with SqliteStore(home / "blocks") as store:
        store.delete(cid)
    state = (home / "state.json").read_bytes()
    blocks = sorted((home / "blocks").rglob("*"))

    r = run_cli(home, "commit", "-m", "broken")
    assert r.code == 2 and r.out == ""
    line = one_line(r.err)
    assert str(cid) in line and "halo/e1" in line and "halo/e2" not in line, line
    assert (home / "state.json").read_bytes() == state  # nothing committed, the stage kept
    assert sorted((home / "blocks").rglob("*")) == blocks  # no block written

    with halodb.open(home) as reg:
        with pytest.raises(BlockNotFoundError) as caught:
            reg.commit("broken again")
        assert caught.value.cid == cid and reg.head is None
        reg.add([e1])  # adding the item again repairs the stage
        reg.commit("whole")
        assert [e.commit.message for e in reg.log()] == ["whole"]


@pytest.mark.parametrize("how", ["onto a version, streamed", "onto a version, applied", "index format 2"])
def test_every_kind_of_commit_refuses_missing_item_blocks_and_counts_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A streamed commit of format 3 checks the blocks while it reads them (the test above: an
    initial commit), the others before; each names the same datasets and counts them all."""
    import halodb.api.registry as registry_module

    home = new_home(tmp_path)
    if how == "index format 2":
        monkeypatch.setenv("HALODB_INDEX_FORMAT", "2")
    monkeypatch.setattr(registry_module, "STREAM_COMMIT", 1 if how.endswith("streamed") else 10**9)
    first, *rest = (json.loads(Path(item_file(tmp_path / "items", f"m{n}", large=True)).read_text()) for n in range(14))
    with halodb.open(home) as reg:
        reg.add([first])
        head = reg.commit("first")
        reg.add(rest)
        gone = sorted((key, entry.item) for key, entry in reg.staged().upserts.items())[:12]
    with SqliteStore(home / "blocks") as store:
        store.delete_many([cid for _, cid in gone])
    with halodb.open(home) as reg:
        with pytest.raises(BlockNotFoundError, match=r"the item blocks of 12 staged dataset\(s\) are missing") as caught:
            reg.commit("broken")
        message = str(caught.value)
        assert all(f"{key} ({cid})" in message for key, cid in gone[:10]) and "and 2 more" in message
        assert str(gone[10][1]) not in message and caught.value.cid == gone[0][1]
        assert reg.head == head and len(reg.staged().upserts) == 13  # nothing committed, the stage kept
