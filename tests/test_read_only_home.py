"""A home on a read-only file system (a campaign's shared home on a read-only mount, as HPC
centres serve data pools): the commands that only read it work, without SQLite's ``-shm``
file they cannot create, and one that would change it says so in one line.

The mount is real: a read-only bind mount of the test's folder, made inside a private mount
namespace (``unshare -m``, which needs root; the mount ends with the command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, run_cli
from .requirements import require

#: mounts FOLDER read-only over itself, then runs the halodb command given (in that namespace)
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'


def read_only(folder: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``halodb --home HOME ARGS`` with ``folder`` (holding the home) mounted read-only."""
    command = [sys.executable, "-m", "halodb", "--home", str(home), *args]
    return subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(folder), *command], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "HALODB_AUTHOR": "tester", "PYTHONPATH": str(ROOT)})


def test_a_home_on_a_read_only_mount_is_read_and_not_written(tmp_path: Path) -> None:
    require(shutil.which("unshare") is not None and os.geteuid() == 0,
            "a read-only mount for the test: unshare (util-linux) and root")
    folder = tmp_path / "shared"
    home = folder / "home"
    items = ROOT / "examples" / "items"
    for args in (["init"], ["add", str(items)], ["commit", "-m", "first", "--time", "2024-09-01T00:00:00Z"],
                 ["publish", "latest"], ["sync", "latest"]):
        assert run_cli(home, *args).code == 0, args
    key = next(f"{i['collection']}/{i['id']}" for i in map(json.loads, map(Path.read_text, sorted(items.glob("*.json")))))
    before = sorted(p.name for p in home.rglob("*"))
    mounted = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(folder), "true"], capture_output=True,
                             text=True, timeout=60)
    require(mounted.returncode == 0, f"a read-only bind mount in a mount namespace ({mounted.stderr.strip()[-200:]})")
    status = read_only(folder, home, "status")
    assert status.returncode == 0 and "name latest: synced" in status.stdout and "current" in status.stdout, status.stderr
    for args in (["log"], ["get", key, "--name", "latest"], ["sql", "SELECT count(*) AS n FROM items", "--json"],
                 ["at", key, "2024-09-02", "--name", "latest"], ["diff", "HEAD", "HEAD"]):
        r = read_only(folder, home, *args)
        assert r.returncode == 0, (args, r.stderr)
    assert json.loads(read_only(folder, home, "sql", "SELECT count(*) AS n FROM items", "--json").stdout) == [{"n": 2}]
    refused = read_only(folder, home, "add", str(items))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Read-only file system" in refused.stderr and str(home) in refused.stderr
    assert sorted(p.name for p in home.rglob("*")) == before  # (nothing was made: no -shm, no lock file)
