"""Rollbacks are refused (issue 10, defect 2): a name moved back to an older commit, or to
another history, is neither published nor synced without ``--force`` / ``--allow-rewind``.

Local names through the API and the CLI, ``sync --watch``, and a DNSLink TXT record moved
back on a real BIND 9. The replay of an older signed IPNS record is in ``test_ipns.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import halodb
import halodb.api.registry
import halodb.index.history
from halodb.api.watch import WatchPolicy
from halodb.errors import NameConflictError, RewindError
from halodb.ipld import CID

from .conftest import cid_for, make_item, run_cli_in_process
from .test_cache_helpers import dump
from .waiting import wait_until, watching


def three_versions(reg: halodb.Registry) -> list[CID]:
    """c1 (f1, f2) -> c2 (f1 reprocessed) -> c3 (f2 withdrawn, f3 added), on the local head."""
    reg.add([make_item("f1", cid_for("a1")), make_item("f2", cid_for("b1"))])
    c1 = reg.commit("two flights", time="2024-08-12T00:00:00Z", author="tester")
    reg.add([make_item("f1", cid_for("a2"))])
    c2 = reg.commit("reprocess f1", time="2024-08-20T00:00:00Z", author="tester")
    reg.remove(["halo/f2"])
    reg.add([make_item("f3", cid_for("c1"))])
    c3 = reg.commit("withdraw f2, add f3", time="2024-09-01T00:00:00Z", author="tester")
    return [c1, c2, c3]


def branch_from_c1(reg: halodb.Registry, tmp_path: Path) -> CID:
    """A commit d2 whose parent is c1 but which is not on c1 -> c2 -> c3: another history,
    made in a second home (the same first version gives the same c1) and imported as a CAR."""
    other = halodb.open(tmp_path / "other", create=True)
    try:
        other.add([make_item("f1", cid_for("a1")), make_item("f2", cid_for("b1"))])
        b1 = other.commit("two flights", time="2024-08-12T00:00:00Z", author="tester")
        other.add([make_item("f9", cid_for("z9"))])
        d2 = other.commit("another history", time="2024-08-25T00:00:00Z", author="tester")
        other.export_car(d2, tmp_path / "branch.car")
    finally:
        other.close()
    assert reg.import_car(tmp_path / "branch.car") == [d2]
    assert next(iter(reg.log(d2))).commit.parents == (b1,)
    return d2


def keys(reg: halodb.Registry, name: str) -> list[str]:
    _, rows = reg.sql("SELECT key FROM items WHERE name = ? ORDER BY key", [name])
    return [r[0] for r in rows]


# --- publish ----------------------------------------------------------------------------------
def test_publishing_an_older_commit_is_refused_unless_forced(registry: halodb.Registry) -> None:
    c1, c2, c3 = three_versions(registry)
    assert registry.publish("latest", c1).cid == c1  # a first publish: as before
    assert registry.publish("latest", c3).cid == c3  # a descendant: as before
    assert registry.publish("latest", c3).cid == c3  # the same commit again
    with pytest.raises(RewindError) as info:
        registry.publish("latest", c2)
    err = info.value
    assert (err.name, err.current, err.head, err.behind, err.discarded) == ("latest", c3, c2, 1, 1)
    assert f"1 version behind the name's current target {c3}" in str(err) and "--force" in str(err)
    assert registry.names.resolve("latest").cid == c3  # the name did not move
    assert [r.cid for r in registry.names.history("latest")] == [c1, c3, c3]

    seen: list[RewindError] = []
    assert registry.publish("latest", c1, force=True, on_rewind=seen.append).cid == c1
    assert registry.names.resolve("latest").cid == c1
    assert [(e.current, e.head, e.behind, e.discarded) for e in seen] == [(c3, c1, 2, 2)]
    assert registry.publish("latest", c2).cid == c2  # forward again: no force needed


def test_publishing_another_history_is_refused_unless_forced(registry: halodb.Registry, tmp_path: Path) -> None:
    *_, c3 = three_versions(registry)
    registry.publish("latest", c3)
    d2 = branch_from_c1(registry, tmp_path)
    with pytest.raises(RewindError) as info:
        registry.publish("latest", d2)
    err = info.value
    assert (err.current, err.head, err.behind, err.discarded) == (c3, d2, None, 2)  # c3 and c2 would go
    assert "(diverged)" in str(err) and "discard 2 versions" in str(err)
    assert registry.names.resolve("latest").cid == c3
    assert registry.publish("latest", d2, force=True).cid == d2


def test_cli_publish_refuses_an_older_commit_and_force_says_what_it_discarded(home: Path) -> None:
    reg = halodb.open(home, create=True)
    c1, c2, c3 = three_versions(reg)
    reg.close()
    assert run_cli_in_process(home, "publish", "latest").code == 0
    r = run_cli_in_process(home, "publish", "latest", "--cid", str(c1))
    assert r.code == 2 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert f"2 versions behind the name's current target {c3}" in r.err and str(c1) in r.err
    assert run_cli_in_process(home, "resolve", "latest").out.split()[0] == str(c3)
    r = run_cli_in_process(home, "publish", "latest", "--cid", str(c1), "--force")
    assert r.code == 0, r.err
    assert r.out.strip() == f"latest -> {c1}"
    assert f"from {c3} to {c1}" in r.err and "discarding 2 versions" in r.err
    assert run_cli_in_process(home, "resolve", "latest").out.split()[0] == str(c1)
    r = run_cli_in_process(home, "publish", "latest", "--cid", str(c2))  # a descendant of c1: no --force needed
    assert r.code == 0 and r.err == "", r.err


# --- sync -------------------------------------------------------------------------------------
def test_sync_refuses_a_name_moved_back_and_leaves_the_cache_unchanged(registry: halodb.Registry, home: Path) -> None:
    c1, c2, c3 = three_versions(registry)
    registry.publish("latest", c3)
    assert registry.sync("latest").commits == 3
    registry.publish("latest", c1, force=True)
    before = dump(registry.cache_path)
    with pytest.raises(RewindError) as info:
        registry.sync("latest")
    err = info.value
    assert (err.name, err.synced, err.head, err.behind, err.discarded) == ("latest", c3, c1, 2, 2)
    assert dump(registry.cache_path) == before
    assert keys(registry, "latest") == ["halo/f1", "halo/f3"]

    # the command line: exit 2, one line naming both heads and how far back, cache unchanged
    r = run_cli_in_process(home, "sync", "latest")
    assert r.code == 2 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert f"refusing to sync latest to {c1}" in r.err and f"2 versions behind the synced head {c3}" in r.err
    assert "--allow-rewind" in r.err
    assert dump(registry.cache_path) == before

    # allowed: today's reset-and-replay, the cache rebuilt at c1
    r = run_cli_in_process(home, "sync", "latest", "--allow-rewind", "--json")
    assert r.code == 0, r.err
    assert '"reset": true' in r.out
    state = registry.cache.sync_state("latest")
    assert state is not None and state.head == str(c1)
    assert keys(registry, "latest") == ["halo/f1", "halo/f2"]
    _, rows = registry.sql("SELECT count(*) FROM name_commits WHERE name = 'latest'")
    assert rows == [(1,)]
    # forward from there is an ordinary incremental sync again
    registry.publish("latest", c2)
    r2 = registry.sync("latest")
    assert (r2.commits, r2.reset) == (1, False)


def test_sync_refuses_another_history(registry: halodb.Registry, tmp_path: Path) -> None:
    *_, c3 = three_versions(registry)
    registry.publish("latest", c3)
    registry.sync("latest")
    d2 = branch_from_c1(registry, tmp_path)
    registry.publish("latest", d2, force=True)
    before = dump(registry.cache_path)
    with pytest.raises(RewindError) as info:
        registry.sync("latest")
    err = info.value
    assert (err.synced, err.head, err.behind, err.discarded) == (c3, d2, None, 2)
    assert f"not on the synced history (diverged) of {c3}" in str(err) and "drop 2 versions" in str(err)
    assert dump(registry.cache_path) == before
    result = registry.sync("latest", allow_rewind=True)
    assert result.reset and result.commits == 2
    assert keys(registry, "latest") == ["halo/f1", "halo/f2", "halo/f9"]


def test_a_name_moving_forward_still_syncs_incrementally(registry: halodb.Registry) -> None:
    c1, _, c3 = three_versions(registry)
    registry.publish("latest", c1)
    registry.sync("latest")
    registry.publish("latest", c3)
    result = registry.sync("latest")
    assert (result.commits, result.reset) == (2, False)


# --- sync --watch -----------------------------------------------------------------------------
def test_watch_reports_a_rewound_name_as_a_failure_and_keeps_watching(registry: halodb.Registry) -> None:
    c1, c2, c3 = three_versions(registry)  # the local head is c3
    registry.publish("latest", c2)
    with watching(registry, "latest", WatchPolicy(floor=0.05, ceiling=0.2, default=0.05)) as events:
        wait_until(lambda: any(e.kind == "synced" and e.cid == str(c2) for e in events))
        registry.publish("latest", c1, force=True)
        wait_until(lambda: sum(e.kind == "failed" for e in events) >= 2)  # still watching: it tries again
        registry.publish("latest", c3)  # forward from the synced head c2
        wait_until(lambda: any(e.kind == "recovered" for e in events))
    failed = [e for e in events if e.kind == "failed"]
    assert all(e.detail.startswith("RewindError: ") for e in failed)
    assert f"1 version behind the synced head {c2}" in failed[0].detail
    assert not any(e.cid == str(c1) for e in events if e.kind in ("synced", "recovered"))
    recovered = next(e for e in events if e.kind == "recovered")
    assert recovered.cid == str(c3) and "1 commit(s)" in recovered.detail  # c2 -> c3: incremental
    state = registry.cache.sync_state("latest")
    assert state is not None and state.head == str(c3)
    _, rows = registry.sql("SELECT count(*) FROM name_commits WHERE name = 'latest'")
    assert rows == [(3,)]


# --- DNSLink on a real BIND 9 -----------------------------------------------------------------
def test_a_dnslink_record_moved_back_is_not_followed(home: Path, dns_server: Any) -> None:
    domain = "rewind.campaign.test"
    record, env = dns_server.fresh_dnslink(domain), dns_server.client_env
    reg = halodb.open(home, create=True)
    c1, c2, c3 = three_versions(reg)
    reg.close()
    r = run_cli_in_process(home, "publish", f"dnslink:{domain}", env=env)
    assert r.code == 0, r.err
    r = run_cli_in_process(home, "sync", f"dnslink:{domain}", env=env)
    assert r.code == 0, r.err
    cache = home / "cache.duckdb"
    before = dump(cache)

    # whoever controls the zone moves the record back to c2
    dns_server.set_txt(record, f"dnslink=/ipfs/{c2}")
    r = run_cli_in_process(home, "sync", f"dnslink:{domain}", env=env)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"refusing to sync {domain} to {c2}" in r.err and f"1 version behind the synced head {c3}" in r.err
    assert dump(cache) == before

    # publishing an older commit over RFC 2136 is refused too, and the record stays
    dns_server.set_txt(record, f"dnslink=/ipfs/{c3}")
    r = run_cli_in_process(home, "publish", f"dnslink:{domain}", "--cid", str(c1), env=env)
    assert r.code == 2 and f"2 versions behind the name's current target {c3}" in r.err, r.err
    assert dns_server.txt(record) == [f"dnslink=/ipfs/{c3}"]
    r = run_cli_in_process(home, "publish", f"dnslink:{domain}", "--cid", str(c1), "--force", env=env)
    assert r.code == 0 and "discarding 2 versions" in r.err, r.err
    assert dns_server.txt(record) == [f"dnslink=/ipfs/{c1}"]

    # following it on purpose rebuilds the cache at c1
    r = run_cli_in_process(home, "sync", f"dnslink:{domain}", "--allow-rewind", env=env)
    assert r.code == 0 and "rewound: full rebuild" in r.out, r.err
    r = run_cli_in_process(home, "sql", "SELECT name, head FROM sync_state", "--format", "csv")
    assert r.out.split() == ["name,head", f"{domain},{c1}"]


def test_a_dnslink_publish_is_a_compare_and_swap_of_what_it_checked(
    home: Path, dns_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another publisher moving the record between the descendant check and the update makes
    the publish fail (the update's prerequisite is the record the check read) instead of
    overwriting a record nobody checked."""
    domain = "race.campaign.test"
    record = f"_dnslink.{domain}"
    dns_server.delete(record)
    monkeypatch.setenv("HALODB_NAMESERVER", dns_server.nameserver)
    monkeypatch.setenv("HALODB_TSIG_KEY", dns_server.key_env)
    reg = halodb.open(home, create=True)
    try:
        c1, c2, c3 = three_versions(reg)
        reg.publish(f"dnslink:{domain}", c2)
        interloper = cid_for("someone else's commit")
        real_divergence = halodb.index.history.divergence

        def check_then_someone_moves_it(*args: Any, **kwargs: Any) -> Any:
            found = real_divergence(*args, **kwargs)
            dns_server.set_txt(record, f"dnslink=/ipfs/{interloper}")  # the other writer wins the race
            return found

        monkeypatch.setattr(halodb.api.registry, "divergence", check_then_someone_moves_it)
        with pytest.raises(NameConflictError, match=f"expected /ipfs/{c2}, it now points at /ipfs/{interloper}"):
            reg.publish(f"dnslink:{domain}", c3)
        assert dns_server.txt(record) == [f"dnslink=/ipfs/{interloper}"]
    finally:
        reg.close()
