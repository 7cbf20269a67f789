"""Shared fixtures: reference data, registries in temporary homes, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .requirements import require

if TYPE_CHECKING:  # imported where used, so collecting a test does not load them
    from halodb.api.registry import Registry

    from .dns_server import DnsServer
    from .kubo_node import KuboNode

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; fails (CI) or skips (locally) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    require(path.exists(), f"reference data missing: {path} (expected ../shared/data beside the checkout)")
    return path


def orcestra_history() -> list[Any]:
    """ORCESTRA's real tree history (``TreeVersion`` s, oldest first)."""
    from halodb.campaign import load_tree_history

    return list(load_tree_history(shared_data("orcestra", "tree-history.jsonl")))


def import_history(home: Path, history: list[Any], name: str, **open_args: Any) -> Any:
    """A registry in ``home`` (made, with ``open_args``) holding every version of ``history``
    at its date, ``name`` published at the newest; returns the head."""
    import halodb

    with halodb.open(home, create=True, **open_args) as reg:
        head = None
        for v in history:
            head = reg.import_tree(v.tree, time=v.time, message=v.message)
        reg.publish(name)
    return head


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    import halodb

    reg = halodb.open(home, create=True)
    yield reg
    reg.close()


def make_item(item_id: str, cid: str, *, collection: str = "halo", when: str = "2024-08-11T12:00:00Z",
              path: str | None = None, title: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"datetime": when, "title": title or item_id, "platform": "HALO",
                             "instruments": ["BAHAMAS"], "keywords": ["ORCESTRA"]}
    if path:
        props["halodb:path"] = path
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
        "geometry": {"type": "Point", "coordinates": [-23.0, 15.0]}, "bbox": [-23.0, 15.0, -23.0, 15.0],
        "properties": props, "links": [],
        "assets": {"data": {"href": f"ipfs://{cid}", "type": "application/vnd.zarr", "roles": ["data"]}},
    }


def cid_for(text: str) -> str:
    from halodb.ipld import CID, RAW

    return str(CID.for_bytes(text.encode(), RAW))


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli_on_a_terminal(home: Path, *args: str) -> Result:
    """Run ``python -m halodb --home HOME ARGS`` with stderr on a pseudo-terminal (what a progress
    bar needs to show) and stdout a pipe; ``err`` is what the terminal received."""
    import pty

    main, secondary = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "halodb", "--home", str(home), *args],
                                   stdout=subprocess.PIPE, stderr=secondary,
                                   env={**os.environ, "HALODB_AUTHOR": "tester"})
        os.close(secondary)
        out, _ = process.communicate(timeout=300)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the process's side is closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
    return Result(process.returncode, out.decode(errors="replace"), seen.decode(errors="replace"))


def copy_home(source: Path, target: Path) -> None:
    """Copy a registry home (its SQLite databases live, maybe open in this process) to ``target``.

    The copy runs in another process (``cp -a``): a copy made here would open and close the
    databases' files, and closing any descriptor of a file drops every POSIX lock this process
    holds on it — SQLite's too. Another process then takes itself for the database's only user
    and resets its shared memory under the connections still open here, whose next use (or
    the next connection) fails with "disk I/O error" (the flake of tests/test_data.py)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, timeout=120)


def run_cli(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m halodb --home HOME ARGS`` in a subprocess."""
    full_env = {**os.environ, "HALODB_AUTHOR": "tester", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "halodb", "--home", str(home), *args], input=stdin,
                       capture_output=True, text=True, env=full_env, timeout=300)
    return Result(p.returncode, p.stdout, p.stderr)


def run_cli_in_process(home: Path, *args: str, stdin: str | bytes | None = None,
                       env: Mapping[str, str | None] | None = None) -> Result:
    """``halodb --home HOME ARGS`` in this process, through :func:`halodb.cli.commands.main` as the
    entry point runs it: no interpreter to start, so about a second faster than :func:`run_cli`.
    ``env`` is set for the call (``None`` removes a variable) and restored after it. The exit code
    is the one ``python -m halodb`` would have: ``SystemExit``'s, and 1 after an uncaught exception,
    whose traceback goes to ``err`` as the interpreter would print it. For what is about the real
    process (signals, a pty, imports of a fresh interpreter, two processes racing) use :func:`run_cli`."""
    import traceback

    from click.testing import CliRunner

    from halodb.cli.commands import main

    with CliRunner().isolation(input=stdin, env={"HALODB_AUTHOR": "tester", **(env or {})}) as (out, err, _):
        code = 0
        try:
            main(["--home", str(home), *args])
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # as the interpreter does: the message on stderr, exit 1
                err.write(f"{exc.code}\n".encode())
                code = 1
        except BaseException:  # the real entry point would print it as a traceback
            err.write(traceback.format_exc().encode())
            code = 1
        return Result(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))


@pytest.fixture(scope="module")
def kubo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KuboNode]:
    """A real Kubo daemon for one test module (see tests/kubo_node.py)."""
    yield from _running_node(tmp_path_factory, "kubo", no_fetch=False)


@pytest.fixture(scope="module")
def kubo_local_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KuboNode]:
    """A Kubo daemon whose gateway answers only from local blocks (404 otherwise)."""
    yield from _running_node(tmp_path_factory, "kubo-local", no_fetch=True)


@pytest.fixture(scope="module")
def kubo_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KuboNode]:
    """A Kubo daemon started with ``--offline``: no swarm; IPNS records live in its datastore."""
    yield from _running_node(tmp_path_factory, "kubo-offline", no_fetch=True, offline=True)


def _running_node(factory: pytest.TempPathFactory, name: str, *, no_fetch: bool, offline: bool = False) -> Iterator[KuboNode]:
    from .kubo_node import KuboNode

    node = KuboNode(factory.mktemp(name) / "repo", no_fetch=no_fetch, offline=offline).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    """A real BIND 9 (``named``) for one test module (see tests/dns_server.py)."""
    from .dns_server import DnsServer

    server = DnsServer(tmp_path_factory.mktemp("named")).start()
    try:
        yield server
    finally:
        server.stop()
