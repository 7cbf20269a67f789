"""``halodb serve --watch``: when the name moves, the server syncs and answers from the new
version, without dropping a request, and a paging token taken before the move still pages
the version it came from.

A real home and name, the CLI server in a subprocess polling every 0.2 s, a second writer
(this process) committing and publishing a new version while a thread keeps searching.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import halodb

from .serve_fixture import NAME, Catalog, ServerProcess, build_catalog, generate_items, start_server
from .waiting import wait_until


@pytest.fixture()
def catalog(tmp_path: Path) -> Catalog:
    return build_catalog(tmp_path / "home", 300, seed=11)


@pytest.fixture()
def server(catalog: Catalog) -> Iterator[ServerProcess]:
    yield from start_server(catalog.home, NAME, "--watch", "--min-interval", "0.1", "--interval", "0.2")


def test_a_name_that_cannot_be_resolved_at_start_serves_the_cached_version(tmp_path: Path) -> None:
    catalog = build_catalog(tmp_path / "home", 30, seed=12)
    (catalog.home / "names" / f"{NAME}.json").unlink()  # the name is gone; the cache still holds it
    server = ServerProcess(catalog.home, NAME, "--watch", "--min-interval", "0.1", "--interval", "0.2")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/").headers["HaloDB-Commit"] == catalog.versions[-1][0]
        assert any(" failed " in line and "serving the version the cache holds" in line for line in server.lines)
    finally:
        server.stop()


def test_a_move_is_served_without_dropping_requests(catalog: Catalog, server: ServerProcess) -> None:
    old_head = catalog.versions[-1][0]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        first = http.get("/search", params={"limit": "50"})
        assert first.headers["HaloDB-Commit"] == old_head
        next_href = next(link["href"] for link in first.json()["links"] if link["rel"] == "next")
        before = {f["id"] for f in first.json()["features"]}

        failures: list[str] = []
        commits: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    response = client.get("/search", params={"limit": "20", "collections": "satellite"})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    commits.add(response.headers.get("HaloDB-Commit", "?"))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            with halodb.open(catalog.home) as reg:
                reg.add(generate_items(25, seed=99, prefix="MOVED-"))
                new_head = str(reg.commit("fourth", author="tester"))
                reg.publish(NAME)
            wait_until(lambda: http.get("/").headers["HaloDB-Commit"] == new_head, timeout=60,
                       what="the server to answer from the new head")
            wait_until(lambda: new_head in commits, timeout=30, what="the searching threads to see the new head")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not failures, failures[:3]
        assert commits == {old_head, new_head}

        # the new items are found; the token taken before the move still pages the old version
        moved = http.get("/search", params={"ids": "MOVED-SATE-00003,MOVED-HALO-00000", "limit": "10"}).json()
        assert moved["numberMatched"] == 2
        second = http.get(next_href)
        assert second.status_code == 200 and second.headers["HaloDB-Commit"] == old_head
        assert not before & {f["id"] for f in second.json()["features"]}
        assert all(not f["id"].startswith("MOVED-") for f in second.json()["features"])
        assert any("synced" in line for line in server.lines)
