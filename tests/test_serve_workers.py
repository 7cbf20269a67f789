"""``halodb serve --workers N``: more processes answer on the one socket, each from a snapshot
of its own; they move to a new version together, stop with the server, and a worker that dies
stops the server loudly.

A real home and the CLI server in a subprocess. Which process answers a connection is the
kernel's choice, so a test that needs one process to answer stops the others (SIGSTOP): a
stopped process accepts nothing, and every new connection goes to the one left running.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import halodb

from .serve_fixture import NAME, Catalog, ServerProcess, build_catalog, generate_items
from .waiting import wait_until


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return build_catalog(tmp_path_factory.mktemp("workers") / "home", 200, seed=5)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(n) for n in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def fresh_get(url: str, path: str, **params: str) -> httpx.Response:
    """One request on a new connection (so the kernel picks the process that accepts it)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        return client.get(path, params=params)


def answered_by_each(server: ServerProcess, check: object) -> None:
    """Run ``check()`` with only one process accepting, for each process in turn."""
    assert callable(check)
    pids = [server.process.pid, *children(server.process.pid)]
    for running in pids:
        stopped = [p for p in pids if p != running]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            check()
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)


@pytest.fixture()
def server(catalog: Catalog) -> Iterator[ServerProcess]:
    process = ServerProcess(catalog.home, NAME, "--workers", "3")
    try:
        yield process
    finally:
        process.stop()


def test_every_process_answers_the_same(catalog: Catalog, server: ServerProcess) -> None:
    assert len(children(server.process.pid)) == 2
    assert any("3 processes" in line for line in server.lines)
    expected = fresh_get(server.url, "/search", limit="25", collections="satellite").json()

    def check() -> None:
        for _ in range(5):
            response = fresh_get(server.url, "/search", limit="25", collections="satellite")
            assert response.status_code == 200
            assert response.headers["HaloDB-Commit"] == catalog.versions[-1][0]
            assert [f["id"] for f in response.json()["features"]] == [f["id"] for f in expected["features"]]

    answered_by_each(server, check)


def test_stopping_the_server_stops_its_workers(server: ServerProcess) -> None:
    workers = children(server.process.pid)
    server.stop()
    assert server.process.returncode is not None
    wait_until(lambda: not any(alive(pid) for pid in workers), timeout=30, what="the workers to exit")


def test_a_worker_that_dies_stops_the_server(server: ServerProcess) -> None:
    worker = children(server.process.pid)[0]
    os.kill(worker, signal.SIGKILL)
    server.process.wait(timeout=60)
    assert server.process.returncode == 2
    wait_until(lambda: any("exited with code -9" in line for line in server.lines), timeout=10,
               what="the server to say which worker died")
    errors = [line for line in server.lines if line.startswith("halodb: error:")]
    assert len(errors) == 1 and "worker" in errors[0], server.lines


def test_workers_follow_a_move_together(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path / "home", 60, seed=6)
    server = ServerProcess(catalog.home, NAME, "--workers", "2", "--watch", "--min-interval", "0.1", "--interval", "0.2")
    try:
        with halodb.open(catalog.home) as reg:
            reg.add(generate_items(10, seed=61, prefix="MOVED-"))
            new_head = str(reg.commit("fourth", author="tester"))
            reg.publish(NAME)
        wait_until(lambda: fresh_get(server.url, "/").headers["HaloDB-Commit"] == new_head, timeout=60,
                   what="the server to answer from the new head")

        def check() -> None:
            # every process swapped (a worker is told to swap once all have built); a paging
            # token of the new head is known to each
            wait_until(lambda: fresh_get(server.url, "/").headers["HaloDB-Commit"] == new_head, timeout=10,
                       what="this process to answer from the new head")
            page = fresh_get(server.url, "/search", limit="5", token=f"{new_head}:5")
            assert page.status_code == 200, page.text
            assert page.headers["HaloDB-Commit"] == new_head

        answered_by_each(server, check)
    finally:
        server.stop()
