"""Time travel in the cache against a Python model of the history: random histories
(Hypothesis) and the real ORCESTRA ``tree.yaml`` history."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halodb.cache import Cache, ChangeRecord, CommitRecord
from halodb.errors import CacheError

from .conftest import shared_data
from .test_cache_helpers import T0, Rec, cid, plan, stac

KEYS = ["a", "b", "c", "d", "e"]
PATHS = ["p/1", "p/2", "p/3"]
Version = tuple[str, str | None, str | None]  # item_cid, data_cid, path
State = dict[str, Version]


@dataclass
class Model:
    """The history as plain Python: times and the full state after each commit."""

    times: list[datetime]
    states: list[State]

    def at(self, ts: datetime) -> State:
        """State of the last commit whose time <= ts (empty before the first)."""
        current: State = {}
        for time, state in zip(self.times, self.states):
            if time <= ts:
                current = state
        return current

    def ever(self) -> set[str]:
        return {k for s in self.states for k in s}


def _record(key: str, rev: int, path: str | None, data: int | None) -> Rec:
    return Rec(key, cid(f"item:{key}:{rev}"), None if data is None else cid(f"data:{data}"), path, stac(key, rev))


change_st = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 3), st.sampled_from([*PATHS, None]), st.one_of(st.none(), st.integers(0, 3))),
)
commit_st = st.tuples(
    st.sampled_from([0, 0, 1, 60, 86400]),  # seconds after the previous commit; equal times happen
    st.dictionaries(st.sampled_from(KEYS), change_st, max_size=len(KEYS)),
)


def _build(raw: list[tuple[int, dict[str, Any]]], label: str) -> tuple[list[CommitRecord], Model]:
    commits: list[CommitRecord] = []
    times: list[datetime] = []
    states: list[State] = []
    state: State = {}
    time = T0
    for i, (delta, changes) in enumerate(raw):
        time = time + timedelta(seconds=delta)
        records: list[ChangeRecord] = []
        state = dict(state)
        for key, change in changes.items():
            if change is None:
                records.append(ChangeRecord(key, None))
                state.pop(key, None)
            else:
                r = _record(key, *change)
                records.append(ChangeRecord(key, r))
                state[key] = (r.item_cid, r.data_cid, r.path)
        parents = [commits[-1].cid] if commits else []
        commits.append(CommitRecord(cid(f"{label}:{i}"), parents, cid(f"{label}:index:{i}"), time, "h", f"{label} {i}", records))
        times.append(time)
        states.append(state)
    return commits, Model(times, states)


def _probes(model: Model) -> list[datetime]:
    out = [T0 - timedelta(days=1), model.times[-1] + timedelta(days=1)]
    for t in model.times:
        out += [t - timedelta(microseconds=1), t, t + timedelta(milliseconds=500)]
    return out


def _expected_cid_at(model: Model, x: str, ts: datetime) -> str | None | type[CacheError]:
    state = model.at(ts)
    if x in model.ever():
        return state[x][1] if x in state else None
    cids = {v[1] for v in state.values() if v[2] == x}
    if len(cids) > 1:
        return CacheError
    return cids.pop() if cids else None


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(commit_st, min_size=1, max_size=8),
    cuts=st.lists(st.booleans(), min_size=8, max_size=8),
    junk=st.one_of(st.none(), st.lists(commit_st, min_size=1, max_size=3)),
)
def test_items_at_and_cid_at_match_a_model_of_random_histories(
    raw: list[tuple[int, dict[str, Any]]], cuts: list[bool], junk: list[tuple[int, dict[str, Any]]] | None
) -> None:
    commits, model = _build(raw, "real")
    other, _ = _build([(0, {"a": (9, "p/1", 9), "z": (0, None, None)})], "other")
    with tempfile.TemporaryDirectory() as tmp, Cache(Path(tmp) / "c.duckdb") as cache, cache.session():
        cache.apply(plan("other", other, head=other[-1].cid, reset=False))
        other_before = cache.sql("SELECT * FROM item_versions WHERE name = 'other' ORDER BY ALL")
        if junk is not None:  # a history that is rewritten: the first real plan resets
            junk_commits, _ = _build(junk, "junk")
            cache.apply(plan("n", junk_commits, head=junk_commits[-1].cid, reset=False))
        # apply the real history in several plans, cut where `cuts` says
        plans: list[list[CommitRecord]] = [[]]
        for i, c in enumerate(commits):
            if i and cuts[i]:
                plans.append([])
            plans[-1].append(c)
        for i, group in enumerate(plans):
            cache.apply(plan("n", group, head=group[-1].cid, reset=junk is not None and i == 0))

        for i, ts in enumerate(_probes(model)):
            _, rows = cache.sql("SELECT key, item_cid, data_cid, path FROM items_at(?, 'n')", [ts])
            assert {r[0]: (r[1], r[2], r[3]) for r in rows} == model.at(ts), ts
            if i % 3 != 0:
                continue  # cid_at (~2 ms a call) at one probe in three is plenty
            for x in KEYS + PATHS:
                expected = _expected_cid_at(model, x, ts)
                if expected is CacheError:
                    with pytest.raises(CacheError):
                        cache.cid_at(x, ts, name="n")
                else:
                    assert cache.cid_at(x, ts, name="n") == expected, (x, ts)
        _, rows = cache.sql("SELECT key, item_cid, data_cid, path FROM items WHERE name = 'n'")
        assert {r[0]: (r[1], r[2], r[3]) for r in rows} == model.states[-1]
        state = cache.sync_state("n")
        assert state is not None
        assert (state.head, state.commits, state.items) == (commits[-1].cid, len(commits), len(model.states[-1]))
        assert cache.synced_commits("n") == {c.cid for c in commits}
        assert cache.sql("SELECT * FROM item_versions WHERE name = 'other' ORDER BY ALL") == other_before
        # versions of one key never overlap and are never open twice
        _, bad = cache.sql(
            """SELECT a.key FROM item_versions a JOIN item_versions b
               ON a.name = b.name AND a.key = b.key AND a.valid_from_commit <> b.valid_from_commit
               WHERE a.name = 'n' AND a.valid_from < coalesce(b.valid_to, 'infinity'::TIMESTAMPTZ)
                 AND b.valid_from < coalesce(a.valid_to, 'infinity'::TIMESTAMPTZ)
                 AND a.valid_from < coalesce(a.valid_to, 'infinity'::TIMESTAMPTZ)
                 AND b.valid_from < coalesce(b.valid_to, 'infinity'::TIMESTAMPTZ)"""
        )
        assert bad == []
        # no item block or commit is stored twice, and none is orphaned after a reset
        assert cache.sql("SELECT count(*) - count(DISTINCT item_cid) FROM stac_items")[1] == [(0,)]
        assert cache.sql("SELECT count(*) FROM stac_items WHERE item_cid NOT IN (SELECT item_cid FROM item_versions)")[1] == [(0,)]


# -- the real ORCESTRA history ---------------------------------------------------------------------
def _flatten(tree: dict[str, Any] | None, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (tree or {}).items():
        path = prefix + name
        if isinstance(value, dict):
            out.update(_flatten(value, path + "/"))
        elif isinstance(value, str):  # null = empty folder: not a dataset
            out[path] = value
    return out


def _key(path: str) -> str:
    return "ds-" + hashlib.sha1(path.encode()).hexdigest()[:12]


def _orcestra() -> tuple[list[CommitRecord], list[tuple[datetime, dict[str, str]]]]:
    lines = shared_data("orcestra", "tree-history.jsonl").read_text().splitlines()
    commits: list[CommitRecord] = []
    versions: list[tuple[datetime, dict[str, str]]] = []
    previous: dict[str, str] = {}
    for line in lines:
        entry = json.loads(line)
        when = datetime.fromisoformat(entry["date"]).astimezone(timezone.utc)
        tree = _flatten(entry["tree"])
        changes = [ChangeRecord(_key(p), None) for p in sorted(previous.keys() - tree.keys())]
        for path in sorted(tree):
            if previous.get(path) != tree[path]:
                item = {"id": path.rsplit("/", 1)[-1], "properties": {"datetime": entry["date"], "title": path}}
                changes.append(ChangeRecord(_key(path), Rec(_key(path), cid(f"{path}={tree[path]}"), tree[path], path, item)))
        parents = [commits[-1].cid] if commits else []
        commits.append(CommitRecord(entry["commit"], parents, cid("index:" + entry["commit"]), when, "orcestra", entry["message"], changes))
        versions.append((when, tree))
        previous = tree
    return commits, versions


def test_orcestra_tree_history_time_travel(tmp_path: Path) -> None:
    commits, versions = _orcestra()
    assert len(commits) == 156

    def tree_at(ts: datetime) -> dict[str, str]:
        current: dict[str, str] = {}
        for when, tree in versions:
            if when <= ts:
                current = tree
        return current

    with Cache(tmp_path / "c.duckdb") as cache, cache.session():
        for lo, hi in [(0, 40), (40, 41), (41, 120), (120, len(commits))]:
            cache.apply(plan("orcestra", commits[lo:hi], head=commits[hi - 1].cid, reset=False))
        probes = sorted({t for t, _ in versions} | {t + timedelta(seconds=s) for t, _ in versions for s in (-1, 1)})
        for ts in probes:
            _, rows = cache.sql("SELECT path, data_cid FROM items_at(?, 'orcestra')", [ts])
            assert dict(rows) == tree_at(ts), ts
        rng = random.Random(1)
        all_paths = sorted({p for _, tree in versions for p in tree})
        assert len(all_paths) == 536  # 537 leaf paths, one of them only ever an empty folder
        for _ in range(300):
            path = rng.choice(all_paths)
            ts = rng.choice(probes) + timedelta(hours=rng.uniform(-48, 48))
            assert cache.cid_at(path, ts, name="orcestra") == tree_at(ts).get(path), (path, ts)
            assert cache.cid_at(_key(path), ts) == tree_at(ts).get(path), (path, ts)
        state = cache.sync_state("orcestra")
        assert state is not None and (state.commits, state.items) == (156, len(versions[-1][1]))
