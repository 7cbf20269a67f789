"""Signed heads and trust policies (issue 12, part 1): a head not signed as the reader's
policy asks is refused by sync, at and the registry's name resolution; the cache is left as
it was. Keys rotate through signed commits; a stolen retired key, a stranger's key, a
signature over other bytes and a replayed old head are each refused."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import halodb
from halodb.api.keys import create_key, load_key
from halodb.errors import RewindError, SchemaError, SigningKeyError, TrustError
from halodb.index.commit import commit_changes
from halodb.index.history import load_commit, write_commit
from halodb.index.model import Commit, Entry, KeyChanges
from halodb.index.signing import TrustPolicy, sign_commit, signed_bytes, valid_signers, verify_head
from halodb.ipld import CID, decode, encode, make_block
from halodb.util.times import parse_time

from halodb.api.watch import WatchPolicy

from .conftest import cid_for, make_item, run_cli_in_process
from .test_cache_helpers import dump
from .waiting import wait_until, watching


def version(reg: halodb.Registry, parent: CID | None, n: int, signer: str | None, *,
            keys: KeyChanges | None = None) -> CID:
    """A version on top of ``parent`` adding dataset ``f{n}``, signed by the home's key ``signer``."""
    [key] = reg.add([make_item(f"f{n}", cid_for(f"d{n}"))])
    entry = reg.staged().upserts[key]
    reg.reset_stage()
    return commit_changes(reg.store, reg.index, parent, {key: entry}, set(),
                          time=parse_time(f"2024-08-{10 + n:02d}"), author="tester", message=f"v{n}",
                          sign=[load_key(reg.home, signer)] if signer else [], keys=keys)


@pytest.fixture
def ids(registry: halodb.Registry) -> dict[str, str]:
    return {name: create_key(registry.home, name) for name in ("alice", "bob", "mallory")}


def move(reg: halodb.Registry, head: CID) -> None:
    reg.publish("camp", head, force=True)


def test_a_signed_head_syncs_and_its_signer_is_shown(registry: halodb.Registry, ids: dict[str, str],
                                                      home: Path) -> None:
    c1 = version(registry, None, 1, "alice")
    move(registry, c1)
    registry.trust.add("camp", ids["alice"])
    assert registry.sync("camp").head == c1
    assert registry.trust.checkpoint("camp") is not None
    r = run_cli_in_process(home, "log", "camp")
    assert f"signed by {ids['alice']}" in r.out, r.err
    r = run_cli_in_process(home, "status")
    assert f"signed by {ids['alice']} (trusted)" in r.out, r.err
    r = run_cli_in_process(home, "trust", "ls", "--json")
    assert '"verified_head": "' + str(c1) in r.out


@pytest.mark.parametrize("attack", ["stranger", "unsigned", "other_bytes", "retired_key", "replay"])
def test_an_untrusted_head_is_refused_and_nothing_changes(registry: halodb.Registry, ids: dict[str, str],
                                                          attack: str) -> None:
    registry.trust.add("camp", ids["alice"])
    c1 = version(registry, None, 1, "alice")
    # alice hands over to bob: c2, signed by alice, adds bob and retires alice
    c2 = version(registry, c1, 2, "alice", keys=KeyChanges(add=(ids["bob"],), retire=(ids["alice"],)))
    c3 = version(registry, c2, 3, "bob")
    move(registry, c3)
    registry.sync("camp")
    before = dump(registry.cache_path)
    checkpoint = registry.trust.checkpoint("camp")
    expected: type[Exception] = TrustError
    if attack == "stranger":
        bad = version(registry, c3, 4, "mallory")
    elif attack == "unsigned":
        bad = version(registry, c3, 4, None)
    elif attack == "other_bytes":  # bob's signature, moved onto a commit saying something else
        signed = load_commit(registry.store, version(registry, c3, 4, "bob"))
        bad = write_commit(registry.store, replace(signed, message="not what bob signed"))
    elif attack == "retired_key":  # alice's key, stolen after she retired it
        bad = version(registry, c3, 4, "alice")
    else:  # an old head bob signed, replayed
        expected, bad = RewindError, c2
    move(registry, bad)
    with pytest.raises(expected) as caught:
        registry.sync("camp")
    assert dump(registry.cache_path) == before
    assert registry.trust.checkpoint("camp") == checkpoint
    if expected is TrustError:
        assert isinstance(caught.value, TrustError)
        assert caught.value.allowed == [ids["bob"]]
        with pytest.raises(TrustError):
            registry.cid_at("halo/f1", "2030-01-01", name="camp")
        with pytest.raises(TrustError):
            registry.resolve("camp")
        r = run_cli_in_process(registry.home, "pins", "plan", "camp")  # pins follow resolves the same way
        assert r.code == 2 and "TrustError" not in r.err and str(bad) in r.err, r.err
    message = str(caught.value)
    assert str(bad) in message and len(message.splitlines()) == 1


def test_watch_reports_an_untrusted_head_as_a_failure_and_keeps_watching(
        registry: halodb.Registry, ids: dict[str, str]) -> None:
    registry.trust.add("camp", ids["alice"])
    c1 = version(registry, None, 1, "alice")
    forged = version(registry, c1, 2, "mallory")
    c3 = version(registry, c1, 3, "alice")
    move(registry, c1)
    with watching(registry, "camp", WatchPolicy(floor=0.05, ceiling=0.2, default=0.05)) as events:
        wait_until(lambda: any(e.kind in ("synced", "started") and e.cid == str(c1) for e in events))
        move(registry, forged)
        wait_until(lambda: sum(e.kind == "failed" for e in events) >= 2)
        move(registry, c3)  # the publisher's next version: descends from the trusted c1
        wait_until(lambda: any(e.kind == "recovered" for e in events))
    failed = [e for e in events if e.kind == "failed"]
    assert all(e.detail.startswith("TrustError: ") and ids["mallory"] in e.detail for e in failed)
    assert not any(e.cid == str(forged) for e in events if e.kind in ("synced", "recovered"))
    state = registry.cache.sync_state("camp")
    assert state is not None and state.head == str(c3)


def test_the_cli_refuses_an_untrusted_head_with_one_line(registry: halodb.Registry, ids: dict[str, str],
                                                         home: Path) -> None:
    c1 = version(registry, None, 1, "alice")
    move(registry, c1)
    r = run_cli_in_process(home, "trust", "add", "camp", ids["alice"])
    assert r.code == 0, r.err
    r = run_cli_in_process(home, "sync", "camp")
    assert r.code == 0, r.err
    move(registry, version(registry, c1, 2, "mallory"))
    for args in (("sync", "camp"), ("at", "halo/f1", "2030-01-01", "--name", "camp"), ("log", "camp")):
        r = run_cli_in_process(home, *args)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, (args, r.err)
        assert f"signed by {ids['mallory']}" in r.err and ids["alice"] in r.err, r.err
    # dropping the policy is the user's choice, and then the name is followed again
    assert run_cli_in_process(home, "trust", "rm", "camp").code == 0
    assert run_cli_in_process(home, "sync", "camp").code == 0


def test_at_answers_from_the_cache_only_for_a_verified_head(registry: halodb.Registry, ids: dict[str, str],
                                                            home: Path) -> None:
    """A policy added after the sync: the fast path of `halodb at` does not answer for a head
    the policy never verified; the registry verifies it (here: refuses it)."""
    c1 = version(registry, None, 1, "mallory")
    move(registry, c1)
    registry.sync("camp")
    r = run_cli_in_process(home, "at", "halo/f1", "2030-01-01", "--name", "camp")
    assert r.code == 0 and r.out.strip() == cid_for("d1"), r.err
    registry.trust.add("camp", ids["alice"])
    r = run_cli_in_process(home, "at", "halo/f1", "2030-01-01", "--name", "camp")
    assert r.code == 2 and "refusing camp" in r.err, r.err


def test_a_threshold_needs_that_many_allowed_signers(registry: halodb.Registry, ids: dict[str, str]) -> None:
    registry.trust.add("camp", ids["alice"])
    registry.trust.add("camp", ids["bob"], threshold=2)
    one = version(registry, None, 1, "alice")
    move(registry, one)
    with pytest.raises(TrustError, match="needs 2 of them"):
        registry.sync("camp")
    commit = load_commit(registry.store, one)
    both = write_commit(registry.store, sign_commit(commit, [load_key(registry.home, "bob")]))
    assert sorted(valid_signers(load_commit(registry.store, both))) == sorted([ids["alice"], ids["bob"]])
    move(registry, both)
    assert registry.sync("camp").head == both


def test_key_changes_in_a_commit_not_signed_by_an_allowed_key_do_not_count(
        registry: halodb.Registry, ids: dict[str, str]) -> None:
    c1 = version(registry, None, 1, "alice")
    sneaky = version(registry, c1, 2, "mallory", keys=KeyChanges(add=(ids["mallory"],)))
    c3 = version(registry, sneaky, 3, "mallory")
    policy = TrustPolicy(frozenset({ids["alice"]}))
    with pytest.raises(TrustError):
        verify_head(registry.store, "camp", c3, policy, None)


def test_only_signed_commits_carry_signatures(registry: halodb.Registry, ids: dict[str, str]) -> None:
    """Both are format 3 (history trees); format 1, unsigned and without history, stays
    readable (tests/test_vectors.py) and refuses signature fields."""
    plain = version(registry, None, 1, None)
    value = decode(registry.store.get(plain))
    assert value["version"] == 3 and "signatures" not in value
    with pytest.raises(SchemaError, match="need format version 2"):
        Commit.from_ipld({k: v for k, v in value.items() if k not in ("history", "height")}
                         | {"version": 1, "signatures": []}, cid=None)
    signed = version(registry, plain, 2, "alice")
    value = decode(registry.store.get(signed))
    assert value["version"] == 3 and value["signatures"][0]["key"] == ids["alice"]
    # the signed bytes are the block without its signatures, behind a domain prefix
    del value["signatures"]
    assert signed_bytes(load_commit(registry.store, signed)) == b"halodb-commit:" + encode(value)


@pytest.mark.parametrize("change, problem", [
    ({"version": 4}, "format version 4"),
    ({"version": 1, "signatures": []}, "need format version 2"),
    ({"signatures": [{"key": "did:key:z6Mk", "sig": b"short"}]}, "64 bytes"),
    ({"signatures": [{"key": "not-a-did", "sig": bytes(64)}]}, "not a did:key"),
    ({"signatures": [{"key": "did:key:z", "sig": bytes(64)}] * 17}, "at most 16"),
    ({"keys": {"add": "did:key:z"}}, "keys.add must be a list"),
    ({"keys": {"grant": []}}, "keys must be"),
])
def test_malformed_signature_fields_are_schema_errors(registry: halodb.Registry, change: dict[str, Any],
                                                      problem: str) -> None:
    signed = load_commit(registry.store, version(registry, None, 1, None))
    value = {**signed.to_ipld(), "version": 2, "signatures": [{"key": "did:key:z", "sig": bytes(64)}], **change}
    cid, _ = make_block(value)
    with pytest.raises(SchemaError, match=problem):
        Commit.from_ipld(value, cid=cid)


def test_a_key_file_others_may_read_is_refused(registry: halodb.Registry, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    alice = create_key(registry.home, "alice")
    path = registry.home / "keys" / "alice.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match="may be read by others"):
        load_key(registry.home, "alice")
    outside = tmp_path / "ci.pem"
    outside.write_bytes(path.read_bytes())
    outside.chmod(0o600)
    monkeypatch.setenv("HALODB_SIGNING_KEY_FILE", str(outside))
    registry.add([make_item("f1", cid_for("d1"))])
    head = registry.commit("from CI", sign=["ci"])
    assert valid_signers(load_commit(registry.store, head)) == [alice]  # the file's key, not a home key "ci"


def test_the_key_never_reaches_the_output(home: Path) -> None:
    r = run_cli_in_process(home, "key", "create", "alice")
    assert r.code == 0 and r.out.startswith("did:key:z6Mk") and "PRIVATE" not in r.out + r.err
    r = run_cli_in_process(home, "key", "ls")
    assert r.out.split() == ["alice", r.out.split()[1]] and "PRIVATE" not in r.out


# --- a real BIND 9: an attacker moves the DNSLink record to a commit a stranger signed ------------
def test_a_dnslink_record_moved_to_a_strangers_commit_is_refused(home: Path, dns_server: Any) -> None:
    domain = "signed.campaign.test"
    record, env = dns_server.fresh_dnslink(domain), dns_server.client_env
    reg = halodb.open(home, create=True)
    try:
        alice = create_key(home, "alice")
        create_key(home, "mallory")
        c1 = version(reg, None, 1, "alice")
        forged = version(reg, c1, 2, "mallory")
    finally:
        reg.close()
    assert run_cli_in_process(home, "publish", f"dnslink:{domain}", "--cid", str(c1), env=env).code == 0
    assert run_cli_in_process(home, "trust", "add", f"dnslink:{domain}", alice, env=env).code == 0
    r = run_cli_in_process(home, "sync", f"dnslink:{domain}", env=env)
    assert r.code == 0, r.err
    before = dump(home / "cache.duckdb")
    dns_server.set_txt(record, f"dnslink=/ipfs/{forged}")
    r = run_cli_in_process(home, "sync", f"dnslink:{domain}", env=env)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"refusing {domain} -> {forged}" in r.err and "mallory" not in r.err and alice in r.err
    assert dump(home / "cache.duckdb") == before
