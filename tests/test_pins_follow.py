"""``pins follow`` and ``pins status`` with real Kubo nodes on loopback and a real DNS server.

The field scenario: "ship" publishes; "dkrz" follows every version, "laptop" only the newest.
The ship publishes two versions while no other node can reach it; once it is reachable again
the followers converge, and ``pins status`` says so for both. Then the faults: a follower
killed mid-way resumes, a pin nobody can serve fails alone, a human's pin is never touched,
a name moved back is refused, and unwanted pins go only by policy.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import halodb
from halodb.api.registry import Registry
from halodb.api.watch import WatchEvent, WatchPolicy
from halodb.errors import BlockNotFoundError, MissingParentError, PinError, RewindError
from halodb.ipld import CID
from halodb.pins.follow import FollowPolicy, follow_once, follow_watch, state_path
from halodb.pins.node import KuboPinNode
from halodb.pins.status import pin_status

from .conftest import make_item, run_cli, run_cli_on_a_terminal
from .dns_server import DnsServer
from .kubo_node import KuboNode
from .waiting import wait_until


def swarm_address(node: KuboNode) -> str:
    info = json.loads(node.ipfs("id"))
    return str(next(a for a in info["Addresses"] if a.startswith("/ip4/127.0.0.1/tcp/")))


def connect(a: KuboNode, b: KuboNode) -> None:
    a.ipfs("swarm", "connect", swarm_address(b))


def disconnect(a: KuboNode, b: KuboNode) -> None:
    peer = json.loads(b.ipfs("id"))["ID"]
    a.ipfs("swarm", "disconnect", swarm_address(b))
    wait_until(lambda: peer not in a.ipfs("swarm", "peers").decode(), 10, f"{a.repo} to drop {peer}")


def add_data(node: KuboNode, folder: Path, texts: dict[str, str]) -> dict[str, str]:
    """Write each text as a file and add it to ``node`` (unpinned): {file name: CID}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    out = node.ipfs("add", "-r", "--pin=false", "--cid-version=1", "--raw-leaves", str(folder)).decode()
    found = {}
    for line in out.splitlines():
        _, cid, path = line.split(" ", 2)
        found[path.rpartition("/")[2]] = cid
    return {name: found[name] for name in texts}


def only_hash(node: KuboNode, text: str) -> str:
    """The CID ``text`` would have, added to no node."""
    return node.ipfs("add", "-Q", "--only-hash", "--cid-version=1", "--raw-leaves", input=text.encode()).decode().strip()


@dataclass
class Field:
    ship: KuboNode
    dkrz: KuboNode
    laptop: KuboNode
    dns: DnsServer
    tmp: Path
    versions: list[dict[str, str]] = field(default_factory=list)  #: per version: key -> data CID
    commits: list[CID] = field(default_factory=list)

    def follower(self, node: KuboNode, name: str) -> Registry:
        return halodb.open(self.tmp / f"home-{name}", store=node.api, create=True)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer) -> Iterator[Field]:
    ship = KuboNode(tmp_path_factory.mktemp("ship") / "repo").start()
    dkrz = KuboNode(tmp_path_factory.mktemp("dkrz") / "repo").start()
    laptop = KuboNode(tmp_path_factory.mktemp("laptop") / "repo").start()
    try:
        yield Field(ship, dkrz, laptop, dns_server, tmp_path_factory.mktemp("homes"))
    finally:
        for node in (laptop, dkrz, ship):
            node.stop()


@pytest.fixture
def dns_env(nodes: Field, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALODB_NAMESERVER", nodes.dns.nameserver)
    monkeypatch.setenv("HALODB_TSIG_KEY", nodes.dns.key_env)


def publish_version(ship: Registry, f: Field, name: str, when: str, texts: dict[str, str]) -> CID:
    """Add the datasets' data to the ship's node, stage their items, commit, publish the name."""
    data = add_data(f.ship, f.tmp / "data" / when[:10], texts)
    ship.add([make_item(key, cid, path=f"HALO/{key}.zarr") for key, cid in data.items()])
    commit = ship.commit(f"version of {when}", time=when)
    ship.publish(f"dnslink:{name}")
    f.versions.append({**(f.versions[-1] if f.versions else {}), **{f"halo/{k}": c for k, c in data.items()}})
    f.commits.append(commit)
    return commit


def test_the_field_scenario(nodes: Field, dns_env: None, tmp_path: Path) -> None:
    f = nodes
    name = "ship.campaign.test"
    connect(f.dkrz, f.ship)
    connect(f.laptop, f.ship)
    ship = halodb.open(tmp_path / "ship", store=f.ship.api, create=True)
    publish_version(ship, f, name, "2024-08-10T00:00:00Z", {f"d{i}": f"first data {i}" for i in range(6)})
    dkrz_reg, laptop_reg = f.follower(f.dkrz, "dkrz"), f.follower(f.laptop, "laptop")
    dkrz_node, laptop_node = KuboPinNode(f.dkrz.api, pin_timeout=3), KuboPinNode(f.laptop.api, pin_timeout=3)
    first = follow_once(dkrz_reg, name, dkrz_node)
    assert first.ok and len(first.pinned) == 6 and first.versions == 1

    # at sea: nobody reaches the ship while it publishes two versions
    disconnect(f.dkrz, f.ship)
    disconnect(f.laptop, f.ship)
    disconnect(f.ship, f.dkrz)
    disconnect(f.ship, f.laptop)
    publish_version(ship, f, name, "2024-08-20T00:00:00Z", {"d1": "reprocessed 1", "d6": "new 6"})
    publish_version(ship, f, name, "2024-09-01T00:00:00Z", {"d2": "reprocessed 2", "d7": "new 7"})
    policy = WatchPolicy(floor=0.2, ceiling=0.5, default=0.5)
    events: dict[str, list[WatchEvent]] = {"dkrz": [], "laptop": []}
    stop = threading.Event()
    threads = [
        threading.Thread(target=follow_watch, args=(dkrz_reg, name, dkrz_node, FollowPolicy()),
                         kwargs={"watch_policy": policy, "on_event": events["dkrz"].append, "stop": stop}),
        threading.Thread(target=follow_watch, args=(laptop_reg, name, laptop_node, FollowPolicy(current_only=True)),
                         kwargs={"watch_policy": policy, "on_event": events["laptop"].append, "stop": stop}),
    ]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: any(e.kind == "failed" for e in events["dkrz"]), 30, "dkrz to fail while the ship is away")
        assert all(e.kind == "failed" for e in events["dkrz"])
        reconnected = time.monotonic()
        connect(f.dkrz, f.ship)
        connect(f.laptop, f.ship)

        every = {CID.parse(c).multihash for v in f.versions for c in v.values()}
        newest = {CID.parse(c).multihash for c in f.versions[-1].values()}

        def converged() -> bool:
            try:  # dkrz's registry reads the index from dkrz's node: not there before its follower pins it
                report = pin_status(dkrz_reg, name, [dkrz_node, laptop_node])
            except (BlockNotFoundError, MissingParentError):  # the head's block, or an older commit's, not yet
                return False
            held = {node: {r.pin.parsed_cid.multihash for r in report.rows if r.states[node] == "pinned"}
                    for node in (f.dkrz.api, f.laptop.api)}
            return held[f.dkrz.api] >= every and held[f.laptop.api] >= newest

        wait_until(converged, 120, "dkrz and the laptop to converge")
        print(f"\nconverged {time.monotonic() - reconnected:.2f} s after the ship came back "
              f"({len(every)} data CIDs, 3 versions)")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert any(e.kind == "recovered" for e in events["dkrz"]), events["dkrz"]
    report = pin_status(dkrz_reg, name, [dkrz_node, laptop_node])
    assert report.head == str(f.commits[-1])
    by_node = {s.node: s.counts for s in report.nodes}
    # 10 data CIDs (6 + 2 + 2) and the head: all on dkrz; the laptop lacks the 2 the newest version replaced
    assert by_node[f.dkrz.api] == {"pinned": 11, "queued": 0, "missing": 0}
    assert by_node[f.laptop.api] == {"pinned": 9, "queued": 0, "missing": 2}
    dropped = {r.pin.cid for r in report.rows if r.states[f.laptop.api] == "missing"}
    assert dropped == {f.versions[0]["halo/d1"], f.versions[0]["halo/d2"]}
    follower = next(s.follower for s in report.nodes if s.node == f.laptop.api)
    assert follower is not None and follower["policy"]["current_only"] and follower["head"] == str(f.commits[-1])
    # the same through the CLI, for both nodes
    result = run_cli(tmp_path / "cli", "--store", f.dkrz.api, "pins", "status", name, "--node", f.dkrz.api,
                     "--node", f.laptop.api, env={"HALODB_NAMESERVER": f.dns.nameserver})
    assert result.code == 0, result.err
    assert f"node 1 {f.dkrz.api}: 11 pinned, 0 queued, 0 missing" in result.out
    assert f"node 2 {f.laptop.api}: 9 pinned, 0 queued, 2 missing; its follower is at {f.commits[-1]} (current only)" in result.out
    # who holds the first d1: dkrz only
    row = next(line for line in result.out.splitlines() if line.startswith(f.versions[0]["halo/d1"]))
    assert row.split()[-2:] == ["pinned", "missing"]
    for reg in (ship, dkrz_reg, laptop_reg):
        reg.close()


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KuboNode, KuboNode]]:
    """A publisher and a follower node of their own, connected, for one test."""
    a = KuboNode(tmp_path_factory.mktemp("pub") / "repo").start()
    b = KuboNode(tmp_path_factory.mktemp("fol") / "repo").start()
    try:
        connect(b, a)
        yield a, b
    finally:
        b.stop()
        a.stop()


def local_campaign(publisher: KuboNode, tmp_path: Path, texts: dict[str, str], *, unserved: dict[str, str] | None = None,
                   when: str = "2024-08-10T00:00:00Z") -> tuple[Registry, dict[str, str]]:
    """A registry on ``publisher``'s node with one version of the datasets in ``texts``, their
    data added to that node; and of those in ``unserved``, whose data no node holds yet."""
    reg = halodb.open(tmp_path / "pub-home", store=publisher.api, create=True)
    data = add_data(publisher, tmp_path / "pub-data" / when[:10], texts)
    data.update({k: only_hash(publisher, text) for k, text in (unserved or {}).items()})
    reg.add([make_item(k, data[k], path=f"HALO/{k}.zarr") for k in sorted(data)])
    reg.commit("v", time=when)
    return reg, data


def follower_registry(node: KuboNode, tmp_path: Path, head: CID, *, store: bool = True) -> Registry:
    """A follower's registry (on ``node``'s store, or with ``store=False`` the home's own)
    whose local name ``latest`` points at ``head``."""
    reg = halodb.open(tmp_path / "fol-home", store=node.api if store else None, create=True)
    reg.names.publish("latest", head)
    return reg


def ours(node: KuboNode) -> dict[str, str]:
    """The recursive pins on ``node`` with names: {cid: name}."""
    out = node.ipfs("pin", "ls", "--type=recursive", "--names", "--enc=json").decode()
    return {cid: info.get("Name", "") for cid, info in json.loads(out)["Keys"].items()}


def test_a_follower_killed_mid_way_resumes(pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    """A pin nobody can serve (d06) stalls a one-at-a-time follower half-way: kill -9 it there.
    Once the data is served, the next run pins the rest, and only the rest."""
    publisher, follower = pair
    stalled_text = "dataset 6, not served yet"
    reg, data = local_campaign(publisher, tmp_path, {f"d{i:02d}": f"dataset {i}" for i in range(12) if i != 6},
                               unserved={"d06": stalled_text})
    assert reg.head is not None
    follower_registry(follower, tmp_path, reg.head, store=False).close()
    env = {**os.environ, "HALODB_AUTHOR": "tester"}
    # the follower's home has only the name: its store is the local one, the index comes from the node
    argv = [sys.executable, "-m", "halodb", "--home", str(tmp_path / "fol-home"),
            "pins", "follow", "latest", "--node", follower.api, "--concurrency", "1", "--pin-timeout", "120"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:  # d00 to d05 pinned, in key order; then d06 waits for a peer that has it
        wait_until(lambda: sum(n.startswith("halodb[latest] halo/") for n in ours(follower).values()) >= 6, 60,
                   "the follower to stall on d06")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    before = ours(follower)
    assert data["d06"] not in before and str(reg.head) in before
    assert {data[f"d{i:02d}"] for i in range(6)} <= set(before)
    publisher.ipfs("add", "--pin=false", "--cid-version=1", "--raw-leaves", input=stalled_text.encode())
    result = run_cli(tmp_path / "fol-home", "pins", "follow", "latest", "--node", follower.api, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    after = ours(follower)
    assert sorted(report["pinned"]) == sorted(set(after) - set(before)) == sorted(data[f"d{i:02d}"] for i in range(6, 12))
    assert report["already"] == 6 and report["failed"] == {}
    reg.close()


def test_a_pin_that_cannot_be_served_fails_alone(pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    publisher, follower = pair
    reg, data = local_campaign(publisher, tmp_path, {"a": "data a", "b": "data b"}, unserved={"ghost": "nobody's"})
    ghost = data.pop("ghost")
    assert reg.head is not None
    follower_registry(follower, tmp_path, reg.head).close()
    result = run_cli(tmp_path / "fol-home", "--store", follower.api, "pins", "follow", "latest", "--node",
                     follower.api, "--pin-timeout", "2")
    assert result.code == 1, result.err
    assert f"failed {ghost}: Kubo node {follower.api}" in result.out and "2 pinned now" in result.out
    assert set(data.values()) <= set(ours(follower)) and ghost not in ours(follower)
    # status: the ghost is queued (the follower still wants it), the rest pinned
    status = run_cli(tmp_path / "fol-home", "--store", follower.api, "pins", "status", "latest", "--node",
                     follower.api, "--json")
    rows = {p["cid"]: p["status"][follower.api] for p in json.loads(status.out)["pins"]}
    assert rows[ghost] == "queued" and rows[data["a"]] == "pinned"
    reg.close()


def test_pins_made_by_others_are_never_touched(pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    """A human's pin of a CID the plan wants is counted as held, and neither renamed nor removed;
    the follower's own pins that no version wants go only with --unpin-after, after the grace."""
    publisher, follower = pair
    reg, data = local_campaign(publisher, tmp_path, {"a": "a one", "b": "b one", "c": "c one"})
    follower.ipfs("pin", "add", "--name", "mine", data["a"])
    fol = follower_registry(follower, tmp_path, reg.head)  # type: ignore[arg-type]
    node = KuboPinNode(follower.api)
    first = follow_once(fol, "latest", node, FollowPolicy(current_only=True))
    assert (first.held, len(first.pinned)) == (1, 2)
    assert ours(follower)[data["a"]] == "mine"
    # a, b and c reprocessed: none of the first data is wanted any more by a --current follower
    new = add_data(publisher, tmp_path / "second", {k: f"{k} two" for k in "abc"})
    reg.add([make_item(k, c, path=f"HALO/{k}.zarr") for k, c in new.items()])
    fol.names.publish("latest", reg.commit("all reprocessed", time="2024-08-12T00:00:00Z"))
    kept = follow_once(fol, "latest", node, FollowPolicy(current_only=True))
    assert kept.unwanted == 2 and kept.unpinned == [] and {data["b"], data["c"]} <= set(ours(follower))
    grace = follow_once(fol, "latest", node, FollowPolicy(current_only=True, unpin_after=3600))
    assert grace.unwanted == 2 and grace.unpinned == []
    state = node.read_state(state_path("latest"))
    assert state is not None and set(state["unwanted"]) == {data["b"], data["c"]}
    gone = follow_once(fol, "latest", node, FollowPolicy(current_only=True, unpin_after=0))
    assert sorted(gone.unpinned) == sorted([data["b"], data["c"]])
    pinned = ours(follower)
    assert data["a"] in pinned and pinned[data["a"]] == "mine"  # the human's pin stays, named as it was
    assert data["b"] not in pinned and all(c in pinned for c in new.values())
    reg.close()
    fol.close()


def test_a_name_moved_back_is_refused(pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    publisher, follower = pair
    reg, _ = local_campaign(publisher, tmp_path, {"a": "a first"})
    old = reg.head
    assert old is not None
    new_data = add_data(publisher, tmp_path / "v2", {"a": "a second"})
    reg.add([make_item("a", new_data["a"], path="HALO/a.zarr")])
    new = reg.commit("a reprocessed", time="2024-08-12T00:00:00Z")
    fol = follower_registry(follower, tmp_path, new)
    node = KuboPinNode(follower.api)
    assert follow_once(fol, "latest", node).ok
    fol.names.publish("latest", old, expected=new)
    before = ours(follower)
    with pytest.raises(RewindError) as e:
        follow_once(fol, "latest", node)
    assert str(old) in str(e.value) and str(new) in str(e.value) and "--allow-rewind" in str(e.value)
    assert ours(follower) == before  # nothing pinned or unpinned
    result = run_cli(tmp_path / "fol-home", "--store", follower.api, "pins", "follow", "latest", "--node", follower.api)
    assert result.code == 2 and "does not descend" in result.err and result.err.count("\n") == 1
    moved = follow_once(fol, "latest", node, FollowPolicy(allow_rewind=True))
    assert moved.head == str(old) and str(old) in ours(follower) and str(new) not in ours(follower)
    reg.close()
    fol.close()


def test_a_node_that_is_not_there(tmp_path: Path, registry: Registry) -> None:
    registry.add([make_item("a", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")])
    registry.commit("v", time="2024-08-10T00:00:00Z")
    registry.publish("latest")
    with pytest.raises(PinError, match="cannot be reached") as e:
        follow_once(registry, "latest", KuboPinNode("kubo+http://127.0.0.1:9", timeout=2))
    assert e.value.node == "kubo+http://127.0.0.1:9"


def test_a_node_that_does_not_answer(tmp_path: Path, registry: Registry) -> None:
    """A node that accepts the connection and never answers: bounded by the node's timeout."""
    registry.add([make_item("a", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")])
    registry.commit("v", time="2024-08-10T00:00:00Z")
    registry.publish("latest")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"kubo+http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(PinError, match="did not answer in time") as e:
            follow_once(registry, "latest", KuboPinNode(url, timeout=1))
        assert time.monotonic() - started < 30 and e.value.node == url


def test_progress_shows_on_a_terminal_only(pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    """`pins follow` draws a progress bar on stderr when it is a terminal (a pty here), and
    prints none when it is not, or with --json."""
    publisher, follower = pair
    reg, data = local_campaign(publisher, tmp_path, {f"p{i}": f"progress {i}" for i in range(5)})
    assert reg.head is not None
    follower_registry(follower, tmp_path, reg.head, store=False).close()
    shown = run_cli_on_a_terminal(tmp_path / "fol-home", "pins", "follow", "latest", "--node", follower.api)
    assert shown.code == 0, shown.err
    assert "pinning" in shown.err and "100%" in shown.err and "5 pinned now" in shown.out
    unpin = [follower.ipfs("pin", "rm", cid) for cid in data.values()]
    assert len(unpin) == 5
    quiet = run_cli(tmp_path / "fol-home", "pins", "follow", "latest", "--node", follower.api)
    assert quiet.code == 0 and quiet.err == "" and "5 pinned now" in quiet.out
    reg.close()
