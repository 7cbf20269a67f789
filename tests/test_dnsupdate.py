"""DNSLink publishing by RFC 2136 + TSIG against a real BIND 9: compare-and-swap, races, keys."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.rrset
import pytest

from halodb.errors import (
    InputError,
    NameConflictError,
    NameNotFoundError,
    NameUpdateError,
)
from halodb.ipld import CID, RAW
from halodb.naming.dnsclient import ResolverConfig
from halodb.naming.dnsupdate import DNSLinkNames
from halodb.naming.tsig import key_from_text, load_key

from .dns_server import DnsServer

CIDS = [CID.for_bytes(f"commit {i}".encode(), RAW) for i in range(8)]
A, B, C, D = CIDS[:4]


def names(server: DnsServer, **kw: Any) -> DNSLinkNames:
    kw.setdefault("keyfile", server.keyfile)
    return DNSLinkNames(ResolverConfig.from_env({}, nameserver=server.nameserver, timeout=3), **kw)


class PausingNames(DNSLinkNames):
    """Runs ``after_read`` once, right after publish read the current records: an interleaving writer."""

    def __init__(self, *args: Any, after_read: Callable[[], object], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.after_read: Callable[[], object] | None = after_read

    def _read(self, record: str, server: tuple[str, int]) -> dns.rrset.RRset | None:
        rrset = super()._read(record, server)
        if self.after_read is not None:
            hook, self.after_read = self.after_read, None
            hook()
        return rrset


def test_first_publish_then_resolve(dns_server: DnsServer) -> None:
    n = names(dns_server)
    with pytest.raises(NameNotFoundError):
        n.resolve("first.campaign.test")
    res = n.publish("first.campaign.test", A)
    assert res.cid == A and res.ttl == 60 and dns_server.nameserver in res.source
    assert dns_server.txt("_dnslink.first.campaign.test") == [f"dnslink=/ipfs/{A}"]
    got = n.resolve("dnslink:first.campaign.test")
    assert got.cid == A and got.ttl == 60


def test_compare_and_swap(dns_server: DnsServer) -> None:
    n = names(dns_server)
    n.publish("cas.campaign.test", A)
    assert n.publish("cas.campaign.test", B, expected=A).cid == B
    with pytest.raises(NameConflictError) as e:
        n.publish("cas.campaign.test", C, expected=A)
    assert e.value.current == f"/ipfs/{B}" and str(B) in str(e.value) and e.value.expected == A
    assert dns_server.txt("_dnslink.cas.campaign.test") == [f"dnslink=/ipfs/{B}"]


def test_expected_but_no_record_is_a_conflict(dns_server: DnsServer) -> None:
    with pytest.raises(NameConflictError, match="nothing") as e:
        names(dns_server).publish("never.campaign.test", A, expected=B)
    assert e.value.current is None
    assert dns_server.txt("_dnslink.never.campaign.test") == []


def test_other_txt_records_are_kept(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.keep.campaign.test", f"dnslink=/ipfs/{A}", "dnslink=/hyper/abc",
                       "verification=123", "dnslink=ipfs/malformed")
    names(dns_server).publish("keep.campaign.test", B, expected=A)
    assert dns_server.txt("_dnslink.keep.campaign.test") == sorted(
        [f"dnslink=/ipfs/{B}", "dnslink=/hyper/abc", "verification=123"])


def test_an_interleaving_writer_is_caught_by_the_server(dns_server: DnsServer) -> None:
    """publish reads, another writer moves the name, publish's update must fail its prerequisite."""
    other = names(dns_server)
    other.publish("inter.campaign.test", A)
    n = PausingNames(ResolverConfig.from_env({}, nameserver=dns_server.nameserver, timeout=3),
                     keyfile=dns_server.keyfile, after_read=lambda: other.publish("inter.campaign.test", C, expected=A))
    with pytest.raises(NameConflictError, match="while publishing") as e:
        n.publish("inter.campaign.test", B)  # expected=None: the value read is the prerequisite
    assert e.value.current == f"/ipfs/{C}"
    assert dns_server.txt("_dnslink.inter.campaign.test") == [f"dnslink=/ipfs/{C}"]


def test_an_interleaving_first_publish_is_caught(dns_server: DnsServer) -> None:
    other = names(dns_server)
    n = PausingNames(ResolverConfig.from_env({}, nameserver=dns_server.nameserver, timeout=3),
                     keyfile=dns_server.keyfile, after_read=lambda: other.publish("both-first.campaign.test", D))
    with pytest.raises(NameConflictError) as e:
        n.publish("both-first.campaign.test", A)
    assert e.value.current == f"/ipfs/{D}"


def _race(server: DnsServer, name: str, targets: list[CID], expected: CID | None, *, read_together: bool) -> list[Any]:
    """Publish each target from its own thread; with ``read_together`` all read before any writes."""
    barrier = threading.Barrier(len(targets))
    outcomes: list[Any] = [None] * len(targets)

    def run(i: int) -> None:
        cfg = ResolverConfig.from_env({}, nameserver=server.nameserver, timeout=5)
        if read_together:
            n: DNSLinkNames = PausingNames(cfg, keyfile=server.keyfile, after_read=lambda: barrier.wait(10))
        else:
            n = DNSLinkNames(cfg, keyfile=server.keyfile)
            barrier.wait(10)
        try:
            outcomes[i] = n.publish(name, targets[i], expected=expected)
        except NameConflictError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


@pytest.mark.parametrize("read_together", [True, False])
def test_racing_publishers_exactly_one_wins(dns_server: DnsServer, read_together: bool) -> None:
    for round_ in range(3):
        name = f"race-{int(read_together)}-{round_}.campaign.test"
        names(dns_server).publish(name, A)
        targets = [B, C, D, CIDS[4]]
        outcomes = _race(dns_server, name, targets, A, read_together=read_together)
        winners = [o for o in outcomes if not isinstance(o, NameConflictError)]
        losers = [o for o in outcomes if isinstance(o, NameConflictError)]
        assert len(winners) == 1 and len(losers) == len(targets) - 1, outcomes
        won = winners[0].cid
        assert all(l.current == f"/ipfs/{won}" and str(won) in str(l) for l in losers)
        assert dns_server.txt(f"_dnslink.{name}") == [f"dnslink=/ipfs/{won}"]


def test_racing_first_publishers(dns_server: DnsServer) -> None:
    outcomes = _race(dns_server, "race-first.campaign.test", [A, B, C], None, read_together=True)
    winners = [o for o in outcomes if not isinstance(o, NameConflictError)]
    assert len(winners) == 1
    won = winners[0].cid
    assert all(o.current == f"/ipfs/{won}" for o in outcomes if isinstance(o, NameConflictError))


def test_wrong_secret_is_refused_clearly(dns_server: DnsServer) -> None:
    names(dns_server).publish("keys.campaign.test", A)
    wrong = "hmac-sha256:halodb-test:" + "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZQ=="
    with pytest.raises(NameUpdateError) as e:
        names(dns_server, keyfile=None, env={"HALODB_TSIG_KEY": wrong}).publish("keys.campaign.test", B)
    assert "halodb-test" in str(e.value) and "BadSignature" in str(e.value) and e.value.server == dns_server.nameserver
    assert "c2VjcmV0" not in str(e.value)
    with pytest.raises(NameUpdateError, match="BadKey"):
        names(dns_server, keyfile=None, env={"HALODB_TSIG_KEY": "unknown-key:c2VjcmV0"}).publish("keys.campaign.test", B)
    with pytest.raises(NameUpdateError, match="REFUSED") as e2:
        names(dns_server, keyfile=None, env={"HALODB_TSIG_KEY": dns_server.other_key_env}).publish("keys.campaign.test", B)
    assert e2.value.rcode == "REFUSED"
    assert dns_server.txt("_dnslink.keys.campaign.test") == [f"dnslink=/ipfs/{A}"]


def test_key_from_environment(dns_server: DnsServer) -> None:
    n = names(dns_server, keyfile=None, env={"HALODB_TSIG_KEY": dns_server.key_env})
    assert n.publish("envkey.campaign.test", A).cid == A
    n = names(dns_server, keyfile=None, env={"HALODB_TSIG_KEYFILE": str(dns_server.keyfile)})
    assert n.publish("envkey.campaign.test", B, expected=A).cid == B


def test_missing_and_bad_keys(tmp_path: Path, dns_server: DnsServer) -> None:
    with pytest.raises(InputError, match="HALODB_TSIG_KEYFILE"):
        names(dns_server, keyfile=None, env={}).publish("nokey.campaign.test", A)
    with pytest.raises(InputError, match="cannot read"):
        load_key(tmp_path / "missing.key")
    cases = {
        "empty.key": ("# nothing here\n", "no key statement"),
        "noalg.key": ('key "k" { secret "c2VjcmV0"; };', "no algorithm"),
        "badalg.key": ('key "k" { algorithm hmac-md4; secret "c2VjcmV0"; };', "unsupported algorithm"),
        "bad64.key": ('key "k" { algorithm hmac-sha256; secret "not base64!"; };', "not base64"),
        "two.key": ('key "a" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n'
                    + 'key "b" { algorithm hmac-sha256; secret "c2VjcmV0"; };', "several keys"),
    }
    for fname, (text, msg) in cases.items():
        path = tmp_path / fname
        path.write_text(text)
        with pytest.raises(InputError, match=msg) as e:
            load_key(path)
        assert str(path) in str(e.value)
    assert load_key(tmp_path / "two.key", name="b").name.to_text() == "b."
    for text in ("justonepart", "a:b:c:d", "hmac-sha256::c2VjcmV0"):
        with pytest.raises(InputError, match="HALODB_TSIG_KEY"):
            key_from_text(text)


def test_bind_key_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text('// made by tsig-keygen\nkey "pub.example" {\n\talgorithm HMAC-SHA512; # strong\n'
                    '\tsecret "c2VjcmV0LWtleQ==";\n};\n')
    key = load_key(path)
    assert (key.name.to_text(), key.algorithm.to_text(), key.secret) == ("pub.example.", "hmac-sha512.", b"secret-key")


def test_zone_by_soa_or_explicit(dns_server: DnsServer) -> None:
    n = names(dns_server)
    assert n.zone_of("deep.sub.campaign.test").to_text() == "campaign.test."
    assert n.publish("deep.sub.campaign.test", A).cid == A
    wrong = names(dns_server, zone="broken.test")
    with pytest.raises(NameUpdateError) as e:
        wrong.publish("other.campaign.test", A)
    assert e.value.rcode in ("NOTZONE", "NOTAUTH", "REFUSED", "SERVFAIL")


def test_updates_go_to_the_primary_named_in_the_environment(dns_server: DnsServer) -> None:
    from .dns_server import SilentUDPServer

    silent = SilentUDPServer()
    try:
        env = {"HALODB_NAMESERVER": silent.nameserver, "HALODB_DNS_PRIMARY": dns_server.nameserver,
               "HALODB_DNS_TIMEOUT": "1"}
        n = DNSLinkNames(keyfile=dns_server.keyfile, zone="campaign.test.", env=env)
        n.publish("primary.campaign.test", B)  # the configured resolver never answers: not used
        assert dns_server.txt("_dnslink.primary.campaign.test") == [f"dnslink=/ipfs/{B}"]
    finally:
        silent.close()
