"""``halodb sync --watch``: re-syncs when a name moves, backs off on failures, and leaves the
cache open to `halodb sql` from other processes meanwhile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import halodb
from halodb.api.watch import WatchPolicy

from .conftest import cid_for, make_item, run_cli
from .waiting import wait_until, watching

FAST = WatchPolicy(floor=0.05, ceiling=0.4, default=0.05)


def _commit(reg: halodb.Registry, tag: str, when: str) -> halodb.CID:
    reg.add([make_item(tag, cid_for(tag))])
    return reg.commit(tag, time=when)


def test_watch_resyncs_when_a_local_name_moves(registry: halodb.Registry) -> None:
    c1 = _commit(registry, "a", "2024-08-10T00:00:00Z")
    registry.publish("latest", c1)
    with watching(registry, "latest", FAST) as events:
        wait_until(lambda: any(e.kind == "synced" for e in events))
        c2 = _commit(registry, "b", "2024-08-11T00:00:00Z")
        registry.publish("latest", c2)
        wait_until(lambda: any(e.kind == "synced" and e.cid == str(c2) for e in events))
    assert [e.cid for e in events if e.kind == "synced"] == [str(c1), str(c2)]
    assert all(e.wait == FAST.default for e in events)  # local names have no TTL
    _, rows = registry.sql("SELECT key FROM items ORDER BY key")
    assert rows == [("halo/a",), ("halo/b",)]


def test_watch_backs_off_on_failures_and_recovers(registry: halodb.Registry) -> None:
    with watching(registry, "later", WatchPolicy(floor=0.05, ceiling=0.2, default=0.05)) as events:
        wait_until(lambda: sum(e.kind == "failed" for e in events) >= 4)
        registry.publish("later", _commit(registry, "x", "2024-08-10T00:00:00Z"))
        wait_until(lambda: any(e.kind == "recovered" for e in events))
    waits = [e.wait for e in events if e.kind == "failed"]
    assert waits[:4] == [0.05, 0.1, 0.2, 0.2]  # doubling, capped at the ceiling
    assert "unknown name 'later'" in events[0].detail
    recovered = next(e for e in events if e.kind == "recovered")
    assert "1 change(s)" in recovered.detail
    assert registry.cache.sync_state("later") is not None


def test_cli_watch_and_sql_from_another_process(home: Path) -> None:
    reg = halodb.open(home, create=True)
    reg.publish("latest", _commit(reg, "a", "2024-08-10T00:00:00Z"))
    env = {**os.environ, "HALODB_AUTHOR": "tester"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "halodb", "--home", str(home), "sync", "latest", "--watch", "--json",
         "--min-interval", "0.1", "--interval", "0.1", "--max-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(e["event"] == "synced" for e in lines))
        # the cache is not held open between polls: another process queries it
        for _ in range(3):
            r = run_cli(home, "sql", "SELECT count(*) AS n FROM items", "--format", "csv")
            assert r.code == 0, r.err
        c2 = _commit(reg, "b", "2024-08-11T00:00:00Z")
        reg.publish("latest", c2)
        wait_until(lambda: any(e["event"] == "synced" and e["cid"] == str(c2) for e in lines))
        r = run_cli(home, "sql", "SELECT count(*) AS n FROM items", "--format", "csv")
        assert r.out.split() == ["n", "2"]
        r = run_cli(home, "status", "--json")
        state = json.loads(r.out)["names"][0]
        assert state["synced_head"] == str(c2) and state["up_to_date"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reg.close()
    assert code == 0, proc.stderr.read() if proc.stderr else ""


def test_watch_follows_a_dnslink_name_published_to_a_real_dns_server(home: Path, dns_server: Any) -> None:
    domain = "watched.campaign.test"
    dns_server.delete(f"_dnslink.{domain}")
    env = {"HALODB_NAMESERVER": dns_server.nameserver, "HALODB_TSIG_KEY": dns_server.key_env}
    reg = halodb.open(home, create=True)
    c1 = _commit(reg, "a", "2024-08-10T00:00:00Z")
    assert run_cli(home, "publish", f"dnslink:{domain}", env=env).code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "halodb", "--home", str(home), "sync", f"dnslink:{domain}", "--watch", "--json",
         "--min-interval", "0.1", "--max-interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    lines: list[dict[str, Any]] = []

    def read_lines() -> None:
        for x in proc.stdout or []:
            lines.append(json.loads(x))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(e["event"] == "synced" and e["cid"] == str(c1) for e in lines))
        assert lines[0]["ttl"] == 60 and lines[0]["next_check_s"] == 0.3  # the TTL, capped by --max-interval
        c2 = _commit(reg, "b", "2024-08-11T00:00:00Z")
        r = run_cli(home, "publish", f"dnslink:{domain}", env=env)
        assert r.code == 0, r.err
        assert dns_server.txt(f"_dnslink.{domain}") == [f"dnslink=/ipfs/{c2}"]
        wait_until(lambda: any(e["event"] == "synced" and e["cid"] == str(c2) for e in lines))
        r = run_cli(home, "sql", "SELECT name, head FROM sync_state", "--format", "csv")
        assert r.out.split() == ["name,head", f"{domain},{c2}"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        reg.close()
    assert code == 0, proc.stderr.read() if proc.stderr else ""
