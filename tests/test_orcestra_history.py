"""The real ORCESTRA tree history: every version a commit at its real date, and
`at <path> <date>` agrees with the history for every path and date."""

from __future__ import annotations

import bisect
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.campaign import TreeVersion, flatten_tree, load_tree_history

from .conftest import run_cli, shared_data


@pytest.fixture(scope="module")
def history() -> list[TreeVersion]:
    return list(load_tree_history(shared_data("orcestra", "tree-history.jsonl")))


@pytest.fixture(scope="module")
def imported(history: list[TreeVersion], tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("orcestra") / "home"
    reg = halodb.open(home, create=True)
    for v in history:
        reg.import_tree(v.tree, time=v.time, message=v.message)
    reg.publish("latest.orcestra-campaign.org")
    reg.sync("latest.orcestra-campaign.org")
    yield reg
    reg.close()


def expected_at(history: list[TreeVersion], flats: list[dict[str, str]], path: str, when: datetime) -> str | None:
    times = [v.time for v in history]
    i = bisect.bisect_right(times, when) - 1  # the last version whose date <= when
    return None if i < 0 else flats[i].get(path)


def probe_times(history: list[TreeVersion]) -> list[datetime]:
    """Every version date, a second before it, and the midpoint to the next one."""
    out = [history[0].time - timedelta(days=1)]
    for a, b in zip(history, history[1:] + [history[-1]]):
        out += [a.time - timedelta(seconds=1), a.time, a.time + (b.time - a.time) / 2]
    return out


def test_history_shape(history: list[TreeVersion]) -> None:
    assert len(history) == 156
    paths = set().union(*(flatten_tree(v.tree) for v in history))
    assert len(paths) >= 500
    assert all(a.time <= b.time for a, b in zip(history, history[1:]))


def test_every_path_every_date_from_the_dag(history: list[TreeVersion], imported: Any) -> None:
    """For every probe time, the version NAME@TIME resolves to, and every path in it."""
    flats = [flatten_tree(v.tree) for v in history]
    paths = sorted(set().union(*flats))
    checked = 0
    for when in probe_times(history):
        try:
            commit = imported.resolve(f"latest.orcestra-campaign.org@{when.isoformat()}")
        except halodb.NameNotFoundError:
            assert all(expected_at(history, flats, p, when) is None for p in paths)
            continue
        root = imported._root_of(commit)
        for path in paths:
            hit = imported.index.resolve(root, path)
            assert (hit[1].data if hit else None) == expected_at(history, flats, path, when), (path, when)
            checked += 1
    assert checked > 200_000
    rnd = random.Random(2)
    for _ in range(2000):  # and the one-call API on a sample
        path, when = rnd.choice(paths), rnd.choice(probe_times(history))
        assert imported.cid_at_dag(path, when, "latest.orcestra-campaign.org") == expected_at(history, flats, path, when)


def test_every_path_every_version_date_from_the_cache(history: list[TreeVersion], imported: Any) -> None:
    flats = [flatten_tree(v.tree) for v in history]
    with imported.session():
        check_items_at(history, flats, imported)


def check_items_at(history: list[TreeVersion], flats: list[dict[str, str]], imported: Any) -> None:
    for when in probe_times(history):
        _, rows = imported.sql("SELECT path, data_cid FROM items_at(?::TIMESTAMPTZ)", [when])
        got = {p: c for p, c in rows}
        times = [v.time for v in history]
        i = bisect.bisect_right(times, when) - 1
        assert got == (flats[i] if i >= 0 else {}), when


def test_cid_at_sample_agrees(history: list[TreeVersion], imported: Any) -> None:
    flats = [flatten_tree(v.tree) for v in history]
    paths = sorted(set().union(*flats))
    rnd = random.Random(1)
    times = probe_times(history)
    with imported.session():
        for _ in range(1000):  # every path at every version date is checked through items_at (the cache test above)
            path, when = rnd.choice(paths), rnd.choice(times)
            assert imported.cid_at(path, when, name="latest.orcestra-campaign.org") == expected_at(history, flats, path, when)


def test_cli_at_and_log(history: list[TreeVersion], imported: Any) -> None:
    home: Path = imported.home
    imported.close()
    flats = [flatten_tree(v.tree) for v in history]
    v = history[40]
    path = sorted(flats[40])[3]
    r = run_cli(home, "at", path, v.time.isoformat(), "--name", "latest.orcestra-campaign.org")
    assert r.code == 0, r.err
    assert r.out.strip() == flats[40][path]
    r = run_cli(home, "at", path, "2024-01-01T00:00Z", "--name", "latest.orcestra-campaign.org")
    assert r.code == 1 and r.out == ""
    r = run_cli(home, "log", "latest.orcestra-campaign.org", "-n", "3")
    assert r.code == 0 and len(r.out.strip().splitlines()) == 3
