"""The Python API against a plain-dict model: a Hypothesis state machine.

Random sequences of ``add``, ``rm``, ``commit``, ``publish``, ``sync``, ``cid_at``, ``diff``
and ``get`` at references run against a real registry (a fresh home per example: the local
directory store, local names, a DuckDB cache file) and against a model made of dicts:

* the stage: key -> ``(data cid, path)`` to upsert, or :data:`REMOVED`;
* the history: for each commit its CID, its time and its dataset map key -> ``(data cid, path)``;
* the name: the index of the commit it was last published at, and the one last synced.

Items are a pure function of ``(key, data cid, path)``, so two entries are equal exactly when
their model values are, and each key has paths of its own, so no two datasets ever claim one.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import halodb
from halodb.api.registry import Registry
from halodb.errors import NameNotFoundError, NothingToCommitError, TimeOrderError, UnknownKeyError
from halodb.index.history import load_commit
from halodb.ipld import CID
from halodb.util.times import format_time

from .conftest import cid_for, make_item

Value = tuple[str, str | None]  #: (data cid, path)
Datasets = dict[str, Value]

#: the dataset keys the machine plays with: (collection, item id)
KEYS: list[tuple[str, str]] = [("halo", "f1"), ("halo", "f2"), ("dropsondes", "s1"), ("halo", "HAMP/f3")]
KEY_NAMES = [f"{c}/{i}" for c, i in KEYS]
DATA = [cid_for(f"data-{n}") for n in range(3)]
PATH_VARIANTS: list[int | None] = [None, 1, 2]
UNKNOWN = "halo/never-added"
NAME = "latest"
START = datetime(2024, 8, 1, tzinfo=timezone.utc)
GAPS = [timedelta(seconds=1), timedelta(seconds=2, microseconds=500_000), timedelta(hours=6), timedelta(days=3)]

REMOVED = None  #: a staged removal in the model's stage

#: a batch of items to add: (key, data cid, path variant), each key once
BATCHES = st.lists(
    st.tuples(st.sampled_from(KEY_NAMES), st.sampled_from(DATA), st.sampled_from(PATH_VARIANTS)),
    min_size=1, max_size=3, unique_by=lambda t: t[0],
)


def path_for(key: str, variant: int | None) -> str | None:
    """Paths of their own per key: no two datasets can claim one."""
    if variant is None:
        return None
    return f"products/{key.replace('/', '_')}-v{variant}.zarr"


def item_for(key: str, data: str, path: str | None) -> dict[str, Any]:
    collection, item_id = key.split("/", 1)
    return make_item(item_id, data, collection=collection, path=path, title=f"{item_id} ({collection})")


def model_diff(old: Datasets, new: Datasets) -> list[tuple[str, str, Value | None, Value | None]]:
    out: list[tuple[str, str, Value | None, Value | None]] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append((key, "added" if a is None else "removed" if b is None else "changed", a, b))
    return out


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="halodb-model-"))
        self.reg: Registry = halodb.open(self.tmp / "home", create=True)
        # -- the model
        self.stage: dict[str, Value | None] = {}
        self.commits: list[tuple[CID, datetime, Datasets]] = []
        self.published: int | None = None  #: index in commits of the name's target
        self.synced: int | None = None  #: index in commits of the cache's head for the name

    def teardown(self) -> None:
        try:
            self.reg.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model's answers ------------------------------------------------------------------------
    @property
    def head_datasets(self) -> Datasets:
        return dict(self.commits[-1][2]) if self.commits else {}

    def applied(self) -> Datasets:
        """The datasets after committing the stage."""
        out = self.head_datasets
        for key, value in self.stage.items():
            if value is REMOVED:
                del out[key]
            else:
                out[key] = value
        return out

    def version_at(self, when: datetime, last: int) -> int | None:
        """Index of the newest commit among ``commits[0..last]`` with time <= when."""
        found = None
        for i in range(last + 1):
            if self.commits[i][1] <= when:
                found = i
        return found

    def data_at(self, key_or_path: str, when: datetime, last: int) -> str | None:
        i = self.version_at(when, last)
        if i is None:
            return None
        datasets = self.commits[i][2]
        if key_or_path in datasets:
            return datasets[key_or_path][0]
        for data, path in datasets.values():
            if path == key_or_path:
                return data
        return None

    def query_times(self) -> list[datetime]:
        """Every commit time, the instants between commits, and before the first and after the last."""
        times = [t for _, t, _ in self.commits]
        if not times:
            return [START]
        between = [a + (b - a) / 2 for a, b in zip(times, times[1:])]
        return [times[0] - timedelta(days=1), *times, *between, times[-1] + timedelta(days=1)]

    def registry_datasets(self, cid: CID) -> Datasets:
        root = self.reg.index.load_root(load_commit(self.reg.store, cid).index)
        return {key: (entry.data or "", entry.path) for key, entry in self.reg.index.entries(root)}

    # -- staging ------------------------------------------------------------------------------------
    @initialize(batch=BATCHES, publish=st.booleans())
    def first_version(self, batch: list[tuple[str, str, int | None]], publish: bool) -> None:
        """Most examples start from a commit (often published and synced): the rules then
        spend their steps on histories rather than on reaching one."""
        self.add(batch)
        self.commit(GAPS[-1])
        if publish:
            self.publish()
            self.sync()

    @rule(batch=BATCHES)
    def add(self, batch: list[tuple[str, str, int | None]]) -> None:
        items = [(key, data, path_for(key, variant)) for key, data, variant in batch]
        assert self.reg.add([item_for(*item) for item in items]) == [key for key, _, _ in items]
        for key, data, path in items:
            self.stage[key] = (data, path)

    @rule(data=st.data())
    def rm_known(self, data: st.DataObject) -> None:
        known = sorted(set(self.head_datasets) | {k for k, v in self.stage.items() if v is not REMOVED})
        if not known:
            return
        key = data.draw(st.sampled_from(known), label="key")
        assert self.reg.remove([key]).keys == [key]
        if key in self.stage and self.stage[key] is not REMOVED and key not in self.head_datasets:
            del self.stage[key]  # an add that was never committed is simply unstaged
            event("rm: an uncommitted add unstaged")
        else:
            self.stage[key] = REMOVED
            event("rm: removal staged")

    @rule(data=st.data())
    def rm_unknown(self, data: st.DataObject) -> None:
        known = set(self.head_datasets) | {k for k, v in self.stage.items() if v is not REMOVED}
        key = data.draw(st.sampled_from(sorted({UNKNOWN} | (set(KEY_NAMES) - known))), label="key")
        with pytest.raises(UnknownKeyError):
            self.reg.remove([key])

    # -- committing -------------------------------------------------------------------------------
    @rule(gap=st.sampled_from(GAPS))
    def commit(self, gap: timedelta) -> None:
        when = (self.commits[-1][1] if self.commits else START) + gap
        n = len(self.commits)
        if not self.stage:
            with pytest.raises(NothingToCommitError):
                self.reg.commit("nothing", time=when, author="model")
            event("commit: nothing staged")
            return
        datasets = self.applied()
        if self.commits and datasets == self.commits[-1][2]:  # staged, but what the head holds
            with pytest.raises(NothingToCommitError, match="changes nothing"):
                self.reg.commit("no change", time=when, author="model")
            event("commit: a stage that changes nothing")
            return  # (the stage stays, as it does in the registry)
        cid = self.reg.commit(f"commit {n}", time=when, author="model")
        self.commits.append((cid, when, datasets))
        self.stage = {}
        assert self.reg.head == cid
        assert self.registry_datasets(cid) == datasets
        for older in range(n):  # the new version against every earlier one, both ways
            self.check_diff(older, n)
            self.check_diff(n, older)
        event(f"commit: {min(len(self.commits), 4)}{'+' if len(self.commits) >= 4 else ''} commits")

    @rule(batch=BATCHES, gap=st.sampled_from(GAPS))
    def add_and_commit(self, batch: list[tuple[str, str, int | None]], gap: timedelta) -> None:
        """The usual workflow in one step, so that histories grow within the step budget."""
        self.add(batch)
        self.commit(gap)

    @precondition(lambda self: bool(self.commits))
    @rule()
    def commit_backwards(self) -> None:
        if not self.stage:
            return
        with pytest.raises(TimeOrderError):
            self.reg.commit("too early", time=self.commits[-1][1] - timedelta(seconds=1), author="model")

    # -- names and the cache -----------------------------------------------------------------------
    @rule()
    def publish(self) -> None:
        if not self.commits:
            with pytest.raises(NothingToCommitError):
                self.reg.publish(NAME)
            return
        resolution = self.reg.publish(NAME)
        assert resolution.cid == self.commits[-1][0]
        self.published = len(self.commits) - 1

    @rule()
    def sync(self) -> None:
        if self.published is None:
            with pytest.raises(NameNotFoundError):
                self.reg.sync(NAME)
            return
        result = self.reg.sync(NAME)
        assert result.head == self.commits[self.published][0]
        assert result.commits == self.published - (-1 if self.synced is None else self.synced)
        self.synced = self.published
        event("sync: up to date" if result.up_to_date else "sync: new commits")
        _, rows = self.reg.sql("SELECT key, data_cid, path FROM items WHERE name = ? ORDER BY key", [NAME])
        assert {k: (d, p) for k, d, p in rows} == self.commits[self.published][2]

    # -- reading ----------------------------------------------------------------------------------
    @rule(key=st.sampled_from(KEY_NAMES), variant=st.sampled_from(PATH_VARIANTS), by_path=st.booleans())
    def cid_at(self, key: str, variant: int | None, by_path: bool) -> None:
        """At every recorded time: the DAG from HEAD and from the name, and the cache."""
        what = path_for(key, variant) if by_path and variant is not None else key
        assert what is not None
        event("cid_at: " + ("cache" if self.synced is not None else "name" if self.published is not None else "DAG"))
        with self.reg.session():
            for when in self.query_times():
                if self.commits:
                    expected = self.data_at(what, when, len(self.commits) - 1)
                    assert self.reg.cid_at_dag(what, when, "HEAD") == expected, (what, when)
                if self.published is None:
                    continue
                expected = self.data_at(what, when, self.published)
                assert self.reg.cid_at_dag(what, when, NAME) == expected, (what, when)
                assert self.reg.cid_at(what, when, name=NAME) == expected, (what, when)
                if self.synced is not None:
                    synced = self.data_at(what, when, self.synced)
                    assert self.reg.cache.cid_at(what, when, NAME) == synced, (what, when)

    def check_diff(self, a: int, b: int) -> None:
        changes = self.reg.diff(str(self.commits[a][0]), str(self.commits[b][0]))
        got = [
            (c.key, c.kind, None if c.old is None else (c.old.data, c.old.path),
             None if c.new is None else (c.new.data, c.new.path))
            for c in changes
        ]
        assert got == model_diff(self.commits[a][2], self.commits[b][2]), (a, b)
        if any(kind == "changed" for _, kind, _, _ in got):
            event("diff: a changed dataset")

    @precondition(lambda self: bool(self.commits))
    @rule()
    def diff(self) -> None:
        """Between every two recorded commits, both ways (and each with itself)."""
        for a in range(len(self.commits)):
            for b in range(len(self.commits)):
                self.check_diff(a, b)

    @precondition(lambda self: bool(self.commits))
    @rule(data=st.data(), key=st.sampled_from(KEY_NAMES), how=st.sampled_from(["cid", "HEAD@", "NAME@", "HEAD"]))
    def at_and_get(self, data: st.DataObject, key: str, how: str) -> None:
        """``get`` at a reference: a commit CID, ``HEAD@time``, ``NAME@time`` or ``HEAD``."""
        last = len(self.commits) - 1
        when = data.draw(st.sampled_from(self.query_times()), label="when")
        if how == "cid":
            version = data.draw(st.integers(0, last), label="version")
            ref = str(self.commits[version][0])
        elif how == "HEAD":
            version, ref = last, "HEAD"
        else:
            if how == "NAME@":
                if self.published is None:
                    return
                last = self.published
            ref = f"{'HEAD' if how == 'HEAD@' else NAME}@{format_time(when)}"
            found = self.version_at(when, last)
            if found is None:  # older than the first version
                with pytest.raises(NameNotFoundError):
                    self.reg.resolve(ref)
                return
            version = found
            assert self.reg.resolve(ref) == self.commits[version][0]
        datasets = self.commits[version][2]
        if key not in datasets:
            with pytest.raises(UnknownKeyError):
                self.reg.get(key, ref)
            return
        found_key, entry, item = self.reg.get(key, ref)
        assert (found_key, (entry.data, entry.path)) == (key, datasets[key])
        assert item == item_for(key, *datasets[key])
        path = datasets[key][1]
        if path is not None:
            assert self.reg.get(path, ref)[0] == key

    # -- always ------------------------------------------------------------------------------------
    @invariant()
    def head_and_stage_match(self) -> None:
        assert self.reg.head == (self.commits[-1][0] if self.commits else None)
        stage = self.reg.staged()
        assert {k: (e.data, e.path) for k, e in stage.upserts.items()} == {
            k: v for k, v in self.stage.items() if v is not REMOVED
        }
        assert stage.removals == {k for k, v in self.stage.items() if v is REMOVED}


RegistryMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no "explain": it reruns under coverage, slowly
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRegistryModel = RegistryMachine.TestCase
