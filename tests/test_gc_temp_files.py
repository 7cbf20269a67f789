"""#10.12 (part): ``gc`` removes the temporary files of killed writes, and only those.

The leftovers are made by real writers in subprocesses (a block put, a ``state.json`` rewrite,
a local-name publish) that are stopped just before their rename and then killed with
SIGKILL; the one fault injected is that stop (``os.replace`` blocks), because a real write
is over too fast to kill in the middle. While a writer is still alive, gc must leave its
file alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


import halodb
from halodb.api.gc import STALE_TEMP_AGE, collect_garbage
from halodb.api.home import Home
from halodb.ipld import CID

from .conftest import cid_for, make_item, run_cli

#: run before the writer's code: its rename blocks (printing the temporary file) until it is killed
_STOP_BEFORE_RENAME = """
import os, sys
def stopped(src, dst):
    print(src, flush=True)
    sys.stdin.read()
os.replace = stopped
"""


@contextmanager
def stopped_writer(code: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Run ``code`` in a subprocess until it is about to rename its temporary file; yields
    the process and that file, and kills the process (SIGKILL) on the way out."""
    proc = subprocess.Popen([sys.executable, "-c", _STOP_BEFORE_RENAME + textwrap.dedent(code)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until the writer stops (or dies)
        assert line, f"the writer died before its rename: {proc.communicate()[1]}"
        yield proc, Path(line)
    finally:
        proc.kill()
        proc.communicate()


def killed_writer(code: str) -> Path:
    """The temporary file a writer running ``code``, killed just before its rename, leaves."""
    with stopped_writer(code) as (proc, tmp):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and tmp.exists()
    return tmp


def _publish_a_version(home: Path, tmp_path: Path) -> CID:
    item = tmp_path / "a1.json"
    item.write_text(json.dumps(make_item("A1", cid_for("a1"))))
    assert run_cli(home, "init").code == 0
    assert run_cli(home, "add", str(item)).code == 0
    r = run_cli(home, "commit", "-m", "one", "--time", "2024-08-12T10:00:00Z")
    assert r.code == 0, r.err
    assert run_cli(home, "publish", "latest").code == 0
    return CID.parse(r.out.strip())


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (a lock file's: only that it exists, as each
    holder writes itself into it), but the block database's (SQLite's log and its index
    change with every reader: that the blocks are all there, a sync afterwards checks; and
    so do the stage database's) and
    the lock of its migration (a directory store's shard folder, here the killed writer's,
    makes the store try one)."""
    return {str(p.relative_to(root)): b"" if p.name == ".lock" else p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(("blocks.sqlite3", "stage.sqlite3", ".migrate.lock"))}


def test_gc_removes_temp_files_of_killed_block_writes_but_not_of_running_ones(home: Path, tmp_path: Path) -> None:
    head = _publish_a_version(home, tmp_path)
    write_a_block = f"""
        from halodb.blockstore import DirectoryStore
        DirectoryStore({str(home / "blocks")!r}).put(b"a block being written" * 1000, codec=0x55)
    """
    with stopped_writer(write_a_block) as (writer, tmp):
        before = _files(home)
        r = run_cli(home, "gc")
        assert r.code == 0, r.err
        assert _files(home) == before  # the running writer's file stays
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert tmp.exists() and tmp.parent.parent == home / "blocks"

    r = run_cli(home, "gc")
    assert r.code == 0, r.err
    del before[str(tmp.relative_to(home))]
    assert _files(home) == before  # that file is gone, and nothing else
    assert run_cli(home, "sync", "latest").code == 0
    assert run_cli(home, "log", "latest").out.split()[0] == str(head)


def _leave_home_temp_files(home: Path) -> tuple[list[Path], list[Path]]:
    """Temporary files of killed atomic writes in ``home``: (those gc must remove, those it must
    keep: a fresh one outside the home's lock, and files that only look alike)."""
    # state.json is rewritten when the first writer moves an old home's head and stage (kept in
    # state.json itself) into the stage database
    state = killed_writer(f"""
        import json
        from pathlib import Path
        from halodb.api.home import Home
        home = Home(Path({str(home)!r}))
        head, stage = home.head(), home.stage()
        home.state_file.write_text(json.dumps({{"version": 1, "head": str(head) if head else None, "staged": {{
            "upserts": {{k: {{"item": str(e.item), "data": e.data, "path": e.path}} for k, e in stage.upserts.items()}},
            "removals": sorted(stage.removals)}}}}))
        with home.locked("add"):
            pass
    """)
    with Home(home).locked("move the state"):  # what the killed writer did not finish, done
        pass
    publish = f"""
        from pathlib import Path
        from halodb.ipld import CID
        from halodb.naming.local import LocalNames
        names = LocalNames(Path({str(home / "names")!r}))
        names.publish("latest", names.resolve("latest").cid)
    """
    old_name, fresh_name = killed_writer(publish), killed_writer(publish)
    assert state.parent == home and old_name.parent == home / "names"
    scan = home / "scan-cache" / "v1" / "ab"
    scan.mkdir(parents=True)
    fd, old_scan = tempfile.mkstemp(dir=scan, prefix=".bafkreiab.json.", suffix=".tmp")  # as atomic_file names it
    os.close(fd)
    for path in (old_name, Path(old_scan)):
        stale = os.stat(path).st_mtime - STALE_TEMP_AGE - 60
        os.utime(path, (stale, stale))
    lookalikes = [home / "names" / ".notes.tmp", home / ".state.json.tmp", home / "names" / "latest.json.abcdefgh.tmp"]
    for path in lookalikes:
        path.write_text("not a temporary file of HaloDB")
        os.utime(path, (0, 0))
    return [state, old_name, Path(old_scan)], [fresh_name, *lookalikes]


def test_collect_garbage_removes_temp_files_of_killed_writes_in_the_home(home: Path, tmp_path: Path) -> None:
    head = _publish_a_version(home, tmp_path)
    removed, kept = _leave_home_temp_files(home)
    before = _files(home)
    with halodb.open(home) as reg, reg.locked("gc"):  # as Registry.gc calls it
        collect_garbage(reg.store, reg.index, [head], set(), home=reg.home)
    for path in removed:
        del before[str(path.relative_to(home))]
    assert _files(home) == before
    assert all(path.exists() for path in kept)


def test_halodb_gc_removes_temp_files_of_killed_writes_in_the_home(home: Path, tmp_path: Path) -> None:
    _publish_a_version(home, tmp_path)
    removed, kept = _leave_home_temp_files(home)
    before = _files(home)
    r = run_cli(home, "gc")
    assert r.code == 0, r.err
    for path in removed:
        del before[str(path.relative_to(home))]
    assert _files(home) == before
    assert all(path.exists() for path in kept)
