"""Progress bars of the CLI's long steps, in real processes: on a pseudo-terminal (``pty``)
``add``, ``commit``, ``sync`` and ``import-car`` draw one on stderr (with
``HALODB_PROGRESS_AFTER=0``, so that a short run shows it too); with ``--json``, or when
stderr is not a terminal, nothing is printed."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import halodb
from halodb.demo.campaign import generate_items

from .conftest import run_cli

ENV = {**os.environ, "HALODB_AUTHOR": "tester", "HALODB_PROGRESS_AFTER": "0"}


def on_a_terminal(home: Path, *args: str, stdin: Path | None = None, env: dict[str, str] | None = None
                  ) -> tuple[int, str, str]:
    """Run ``halodb --home HOME ARGS`` with stderr on a pseudo-terminal; (exit code, stdout,
    what the terminal received)."""
    master, slave = pty.openpty()
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as inp:
        proc = subprocess.Popen([sys.executable, "-m", "halodb", "--home", str(home), *args], stdin=inp,
                                stdout=subprocess.PIPE, stderr=slave, env=env or ENV)
    os.close(slave)
    received = b""
    while True:  # until the child has exited and closed its end
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=300), out, received.decode(errors="replace")


@pytest.fixture
def ndjson(tmp_path: Path) -> Path:
    path = tmp_path / "items.ndjson"
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in generate_items(300, seed=5)))
    return path


def test_add_commit_and_sync_draw_a_bar_on_a_terminal(tmp_path: Path, ndjson: Path) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "init").code == 0
    code, out, tty = on_a_terminal(home, "add", "-", stdin=ndjson)
    assert (code, out.strip()) == (0, "staged 300 item(s)"), tty
    assert "adding" in tty and "300" in tty
    code, _, tty = on_a_terminal(home, "commit", "-m", "300", "--time", "2024-09-01T00:00:00Z")
    assert code == 0 and "committing" in tty, tty
    assert run_cli(home, "publish", "n").code == 0
    code, out, tty = on_a_terminal(home, "sync", "n")
    assert code == 0 and out.startswith("synced n"), tty
    assert "syncing n" in tty and "300" in tty


def test_import_car_draws_a_bar_on_a_terminal(tmp_path: Path) -> None:
    source = halodb.open(tmp_path / "source", create=True)
    source.add(generate_items(50, seed=6))
    head = source.commit("50", time="2024-09-01T00:00:00Z")
    source.export_car(head, tmp_path / "x.car")
    source.close()
    home = tmp_path / "home"
    assert run_cli(home, "init").code == 0
    code, out, tty = on_a_terminal(home, "import-car", str(tmp_path / "x.car"))
    assert code == 0 and out.strip() == str(head), tty
    assert "importing" in tty


def test_nothing_is_drawn_with_json_or_off_a_terminal_or_before_the_threshold(tmp_path: Path, ndjson: Path) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "init").code == 0
    code, out, tty = on_a_terminal(home, "add", "-", "--json", stdin=ndjson)
    assert code == 0 and tty == "" and '"staged"' in out
    code, out, tty = on_a_terminal(home, "commit", "-m", "300", "--json", "--time", "2024-09-01T00:00:00Z")
    assert code == 0 and tty == ""
    assert run_cli(home, "publish", "n").code == 0
    code, out, tty = on_a_terminal(home, "sync", "n", "--json", env={**ENV, "HALODB_CACHE": str(tmp_path / "a.duckdb")})
    assert code == 0 and tty == "" and '"changes": 300' in out
    # stderr not a terminal: silent
    r = run_cli(home, "sync", "n", env={"HALODB_PROGRESS_AFTER": "0", "HALODB_CACHE": str(tmp_path / "b.duckdb")})
    assert r.code == 0 and r.err == ""
    # a terminal, but the step ends before the (default, one second) threshold is reached:
    # the threshold is far away here, so nothing shows
    code, _, tty = on_a_terminal(home, "sync", "n", env={**ENV, "HALODB_PROGRESS_AFTER": "3600",
                                                          "HALODB_CACHE": str(tmp_path / "c.duckdb")})
    assert code == 0 and tty == ""


def test_a_bad_threshold_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_cli(home, "init").code == 0
    code, _, tty = on_a_terminal(home, "sync", "n", env={**ENV, "HALODB_PROGRESS_AFTER": "soon"})
    assert code == 2, tty
    assert "HALODB_PROGRESS_AFTER='soon'" in tty and len(tty.strip().splitlines()) == 1
