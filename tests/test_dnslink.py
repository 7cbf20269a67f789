"""DNSLink resolution against a real BIND 9 (tests/dns_server.py): entries, precedence, chains, faults."""

from __future__ import annotations

import json
from collections.abc import Iterator

from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest

from halodb.errors import InputError, InvalidNameError, NameNotFoundError, ResolverError
from halodb.ipld import CID, RAW
from halodb.naming import parse_ref
from halodb.naming.base import Resolution
from halodb.naming.dnsclient import ResolverConfig, parse_nameserver
from halodb.naming.dnslink import (
    MAX_DEPTH,
    DNSLinkResolver,
    Entry,
    Problem,
    dnslink_domain,
    parse_entry,
)

from .conftest import run_cli
from .dns_server import DnsServer, SilentUDPServer
from .loopback import QuietHandler, respond, serve

A, B, C = (CID.for_bytes(x.encode(), RAW) for x in ("commit a", "commit b", "commit c"))
IPNS_KEY = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"


def resolver(server: DnsServer, **kw: Any) -> DNSLinkResolver:
    return DNSLinkResolver(ResolverConfig.from_env({}, nameserver=server.nameserver, timeout=3), **kw)


# --- entries (no server) ---------------------------------------------------------------------
@pytest.mark.parametrize(("text", "code"), [
    ("dnslink=ipfs/bafkqaaa", "WRONG_START"),
    ("dnslink=", "WRONG_START"),
    ("dnslink=/", "NAMESPACE_MISSING"),
    ("dnslink=//bafkqaaa", "NAMESPACE_MISSING"),
    ("dnslink=/ipfs", "NO_IDENTIFIER"),
    ("dnslink=/ipfs/", "NO_IDENTIFIER"),
    ("dnslink=/ipfs/   ", "INVALID_CID"),  # a valid entry (identifier "   "), but no CID
    ("dnslink= /ipfs/bafkqaaa", "WRONG_START"),  # nothing is trimmed: the spec's t06
    (f"dnslink=/ipfs/{A} ", "INVALID_CID"),
    ("dnslink=/ipfs/bafkqaaa\u00e9", "INVALID_CHARACTER"),
    ("dnslink=//\x19", "INVALID_CHARACTER"),  # before NAMESPACE_MISSING: the spec's t10
    ("dnslink=/ipfs/not-a-cid", "INVALID_CID"),
    ("dnslink=/ipfs/bafkqaaa/some/path", "UNSUPPORTED_PATH"),
    ("dnslink=/ipns/bad_key!", "INVALID_IPNS_NAME"),
])
def test_malformed_entries_have_a_code_and_a_reason(text: str, code: str) -> None:
    p = parse_entry(text)
    assert isinstance(p, Problem) and p.code == code and p.reason


@pytest.mark.parametrize(("text", "entry"), [
    (f"dnslink=/ipfs/{A}", Entry("ipfs", str(A))),
    (f"dnslink=/ipfs/{A}/", Entry("ipfs", str(A))),
    ("dnslink=/ip fs/bafkqaaa", Entry("ip fs", "bafkqaaa")),
    ("dnslink=/testnamespace / AB?c=d ", Entry("testnamespace ", " AB?c=d ")),
    ("dnslink=/ipns/latest.orcestra-campaign.org", Entry("ipns", "latest.orcestra-campaign.org")),
    (f"dnslink=/ipns/{IPNS_KEY}", Entry("ipns", IPNS_KEY)),
    ("dnslink=/hyper/a/b", Entry("hyper", "a/b")),
])
def test_well_formed_entries(text: str, entry: Entry) -> None:
    assert parse_entry(text) == entry


@pytest.mark.parametrize("text", ["v=spf1 -all", "DNSLINK=/ipfs/x", "dnslink /ipfs/x", "", f"  dnslink=/ipfs/{A}"])
def test_other_txt_records_are_not_dnslink(text: str) -> None:
    assert parse_entry(text) is None


@pytest.mark.parametrize(("name", "domain"), [
    ("latest.orcestra-campaign.org", "latest.orcestra-campaign.org"),
    ("dnslink:Latest.Orcestra-Campaign.org.", "latest.orcestra-campaign.org"),
    ("ipns://latest.orcestra-campaign.org/some/path", "latest.orcestra-campaign.org"),
    ("/ipns/latest.orcestra-campaign.org", "latest.orcestra-campaign.org"),
    ("_dnslink.latest.orcestra-campaign.org", "latest.orcestra-campaign.org"),
])
def test_name_forms(name: str, domain: str) -> None:
    assert dnslink_domain(name) == domain


@pytest.mark.parametrize("name", ["latest", "dnslink:", "bad..name.org", "a_b!.org", "ipns://" + IPNS_KEY])
def test_not_a_domain(name: str) -> None:
    with pytest.raises(InvalidNameError):
        dnslink_domain(name)


def test_refs_carry_the_scheme() -> None:
    assert parse_ref("latest").scheme is None and not parse_ref("latest").maybe_dnslink
    r = parse_ref("latest.orcestra-campaign.org")
    assert (r.name, r.scheme, r.maybe_dnslink) == ("latest.orcestra-campaign.org", None, True)
    r = parse_ref("dnslink:latest.orcestra-campaign.org@2024-09-15")
    assert (r.name, r.scheme, r.when is not None) == ("latest.orcestra-campaign.org", "dnslink", True)
    r = parse_ref(f"ipns://{IPNS_KEY}")
    assert (r.name, r.scheme, r.maybe_dnslink) == (IPNS_KEY, "ipns", False)
    assert parse_ref("/ipns/latest.orcestra-campaign.org").scheme == "ipns"
    assert parse_ref(f"ipfs://{A}").cid == A and parse_ref(str(A)).cid == A
    with pytest.raises(InvalidNameError):
        parse_ref("dnslink:not a domain")


def test_resolver_settings_from_environment() -> None:
    cfg = ResolverConfig.from_env({"HALODB_NAMESERVER": "127.0.0.1:5353,[::1]:53", "HALODB_DNS_TIMEOUT": "1.5"})
    assert cfg.nameservers == (("127.0.0.1", 5353), ("::1", 53)) and cfg.timeout == 1.5
    assert ResolverConfig.from_env({"HALODB_NAMESERVER": "x:1"}, nameserver="127.0.0.2:9").nameservers == (("127.0.0.2", 9),)
    assert ResolverConfig.from_env({"HALODB_DOH": "https://dns.example/dns-query"}).doh == "https://dns.example/dns-query"
    for bad in ("127.0.0.1:0", "127.0.0.1:port", "[::1", ":53"):
        with pytest.raises(InputError):
            parse_nameserver(bad)
    with pytest.raises(InputError, match="HALODB_DNS_TIMEOUT"):
        ResolverConfig.from_env({"HALODB_DNS_TIMEOUT": "soon"})
    for seconds in ("nan", "inf", "-1", "0"):
        with pytest.raises(InputError, match="positive number of seconds"):
            ResolverConfig.from_env({"HALODB_DNS_TIMEOUT": seconds})


# --- resolution against named ---------------------------------------------------------------------
def test_well_formed_record_gives_cid_ttl_and_links(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.wf.campaign.test", f"dnslink=/ipfs/{A}", "google-site-verification=xyz", ttl=42)
    r = resolver(dns_server).resolve("wf.campaign.test")
    assert r.cid == A and r.ttl == 42 and r.chain == ("wf.campaign.test",)
    assert [(l.value, l.ttl, l.record) for l in r.links["ipfs"]] == [(f"/ipfs/{A}", 42, "_dnslink.wf.campaign.test")]
    assert r.rejected == () and r.notes == ()
    res = r.resolution()
    assert isinstance(res, Resolution) and res.cid == A and res.ttl == 42 and dns_server.nameserver in res.source


def test_strings_of_one_record_are_joined(dns_server: DnsServer) -> None:
    text = f"dnslink=/ipfs/{B}"
    dns_server.set_txt("_dnslink.split.campaign.test", (text[:12], text[12:30], text[30:]))
    assert resolver(dns_server).resolve("split.campaign.test").cid == B


def test_spaces_are_not_trimmed(dns_server: DnsServer) -> None:
    """As the spec says: a record with spaces before ``dnslink=`` is no entry, and spaces inside belong to
    the identifier, which then is no CID."""
    dns_server.set_txt("_dnslink.spaces.campaign.test", f"  dnslink=/ipfs/{A}", f"dnslink=/ipfs/{B} ",
                       f"dnslink=/ipfs/{C}")
    r = resolver(dns_server).resolve("spaces.campaign.test")
    assert r.cid == C and [l.value for l in r.links["ipfs"]] == [f"/ipfs/{C}"]
    assert [(x.entry, x.code) for x in r.rejected] == [(f"dnslink=/ipfs/{B} ", "INVALID_CID")]


def test_malformed_entries_are_reported_and_skipped(dns_server: DnsServer) -> None:
    bad = ["dnslink=ipfs/" + str(C), "dnslink=/ipfs/", "dnslink=/ipfs/not-a-cid", "dnslink=//x"]
    dns_server.set_txt("_dnslink.mixed.campaign.test", *bad, f"dnslink=/ipfs/{A}")
    r = resolver(dns_server).resolve("mixed.campaign.test")
    assert r.cid == A
    assert sorted((x.entry, x.code) for x in r.rejected) == sorted([
        (bad[0], "WRONG_START"), (bad[1], "NO_IDENTIFIER"), (bad[2], "INVALID_CID"), (bad[3], "NAMESPACE_MISSING")])
    assert all(x.reason and x.domain == "mixed.campaign.test" for x in r.rejected)


def test_only_malformed_entries_is_not_found_with_the_reasons(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.allbad.campaign.test", "dnslink=ipfs/x", "dnslink=/ipfs/")
    with pytest.raises(NameNotFoundError) as e:
        resolver(dns_server).resolve("allbad.campaign.test")
    assert "WRONG_START" in str(e.value) and "NO_IDENTIFIER" in str(e.value) and e.value.name == "allbad.campaign.test"


def test_unsupported_namespace_only(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.hyper.campaign.test", "dnslink=/hyper/abc")
    with pytest.raises(NameNotFoundError, match="/hyper/abc"):
        resolver(dns_server).resolve("hyper.campaign.test")


def test_dnslink_subdomain_takes_precedence_over_the_bare_domain(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.prec.campaign.test", f"dnslink=/ipfs/{A}")
    dns_server.set_txt("prec.campaign.test", f"dnslink=/ipfs/{B}")
    r = resolver(dns_server).resolve("prec.campaign.test")
    assert r.cid == A and [l.record for l in r.links["ipfs"]] == ["_dnslink.prec.campaign.test"]
    dns_server.delete("_dnslink.prec.campaign.test")
    r = resolver(dns_server).resolve("prec.campaign.test")
    assert r.cid == B and r.links["ipfs"][0].record == "prec.campaign.test"
    assert any("no _dnslink.prec.campaign.test (NXDOMAIN)" in n for n in r.notes)


def test_malformed_subdomain_entries_do_not_fall_back_to_the_bare_domain(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.fb.campaign.test", "dnslink=ipfs/broken")
    dns_server.set_txt("fb.campaign.test", f"dnslink=/ipfs/{C}")
    with pytest.raises(NameNotFoundError, match="WRONG_START") as e:
        resolver(dns_server).resolve("fb.campaign.test")
    assert str(C) not in str(e.value)


def test_subdomain_without_dnslink_hides_the_bare_domain(dns_server: DnsServer) -> None:
    """The spec: when _dnslink.D exists with TXT records but no DNSLink, D itself is not used (t03)."""
    dns_server.set_txt("_dnslink.hidden.campaign.test", "google-site-verification=xyz")
    dns_server.set_txt("hidden.campaign.test", f"dnslink=/ipfs/{C}")
    with pytest.raises(NameNotFoundError, match=r"no DNSLink TXT record at _dnslink.hidden.campaign.test") as e:
        resolver(dns_server).resolve("hidden.campaign.test")
    assert "is not asked" in str(e.value) and e.value.name == "hidden.campaign.test"
    links = resolver(dns_server).links("hidden.campaign.test")
    assert (links.record, links.links, links.log, links.failure) == ("_dnslink.hidden.campaign.test", {}, (), None)


def test_several_ipfs_links_lexicographic_choice_is_reported(dns_server: DnsServer) -> None:
    values = sorted([f"/ipfs/{A}", f"/ipfs/{B}", f"/ipfs/{C}"])
    dns_server.set_txt("_dnslink.many.campaign.test", *(f"dnslink={v}" for v in reversed(values)))
    results = {resolver(dns_server).resolve("many.campaign.test").cid for _ in range(5)}
    assert results == {CID.parse(values[0].removeprefix("/ipfs/"))}
    r = resolver(dns_server).resolve("many.campaign.test")
    assert [l.value for l in r.links["ipfs"]] == values
    assert len(r.notes) == 1 and "3 different /ipfs/ links" in r.notes[0]
    assert values[1] in r.notes[0] and values[2] in r.notes[0]


def test_ipfs_link_wins_over_ipns_link(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.both.campaign.test", "dnslink=/ipns/wf.campaign.test", f"dnslink=/ipfs/{B}")
    r = resolver(dns_server).resolve("both.campaign.test")
    assert r.cid == B and r.chain == ("both.campaign.test",)


def test_chains_are_followed_and_the_ttl_is_the_minimum(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.c1.campaign.test", "dnslink=/ipns/c2.campaign.test", ttl=300)
    dns_server.set_txt("_dnslink.c2.campaign.test", "dnslink=/ipns/C3.campaign.test.", ttl=20)
    dns_server.set_txt("c3.campaign.test", f"dnslink=/ipfs/{C}", ttl=90)
    r = resolver(dns_server).resolve("dnslink:c1.campaign.test")
    assert r.cid == C and r.chain == ("c1.campaign.test", "c2.campaign.test", "c3.campaign.test")
    assert r.ttl == 20
    assert [l.domain for l in r.links["ipns"]] == ["c1.campaign.test", "c2.campaign.test"]


def test_cname_delegation(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.target.campaign.test", f"dnslink=/ipfs/{A}", ttl=120)
    dns_server.set_cname("_dnslink.delegated.campaign.test", "_dnslink.target.campaign.test", ttl=15)
    r = resolver(dns_server).resolve("delegated.campaign.test")
    assert r.cid == A and r.ttl == 15


def test_loops_are_errors(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.loop1.campaign.test", "dnslink=/ipns/loop2.campaign.test")
    dns_server.set_txt("_dnslink.loop2.campaign.test", "dnslink=/ipns/loop1.campaign.test")
    dns_server.set_txt("_dnslink.self.campaign.test", "dnslink=/ipns/self.campaign.test")
    with pytest.raises(ResolverError, match="loop1.campaign.test -> loop2.campaign.test -> loop1.campaign.test") as e:
        resolver(dns_server).resolve("loop1.campaign.test")
    assert e.value.rcode == "LOOP"
    with pytest.raises(ResolverError, match="loop"):
        resolver(dns_server).resolve("self.campaign.test")


def test_depth_limit(dns_server: DnsServer) -> None:
    for i in range(MAX_DEPTH + 1):
        dns_server.set_txt(f"_dnslink.d{i}.campaign.test", f"dnslink=/ipns/d{i + 1}.campaign.test")
    dns_server.set_txt(f"_dnslink.d{MAX_DEPTH + 1}.campaign.test", f"dnslink=/ipfs/{A}")
    ok = resolver(dns_server).resolve("d2.campaign.test")  # 32 domains: d2 .. d33
    assert ok.cid == A and len(ok.chain) == MAX_DEPTH
    with pytest.raises(ResolverError, match=f"longer than {MAX_DEPTH}") as e:
        resolver(dns_server).resolve("d1.campaign.test")  # 33 domains
    assert e.value.rcode == "TOO_DEEP"


def test_nxdomain_is_not_found(dns_server: DnsServer) -> None:
    with pytest.raises(NameNotFoundError, match="NXDOMAIN") as e:
        resolver(dns_server).resolve("nothing-here.campaign.test")
    assert e.value.name == "nothing-here.campaign.test"


def test_chain_into_nxdomain_names_the_chain(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.dangling.campaign.test", "dnslink=/ipns/gone.campaign.test")
    with pytest.raises(NameNotFoundError, match="dangling.campaign.test -> gone.campaign.test"):
        resolver(dns_server).resolve("dangling.campaign.test")


def test_servfail_is_a_resolver_error_naming_server_and_domain(dns_server: DnsServer) -> None:
    with pytest.raises(ResolverError) as e:
        resolver(dns_server).resolve("latest.broken.test")
    assert e.value.rcode == "SERVFAIL" and e.value.nameserver == dns_server.nameserver
    assert "latest.broken.test" in str(e.value) and dns_server.nameserver in str(e.value)


def test_refused_is_a_resolver_error(dns_server: DnsServer) -> None:
    with pytest.raises(ResolverError, match="REFUSED") as e:
        resolver(dns_server).resolve("latest.not-served.example")
    assert e.value.rcode == "REFUSED"


def test_timeout_is_a_resolver_error() -> None:
    silent = SilentUDPServer()
    try:
        r = DNSLinkResolver(ResolverConfig.from_env({}, nameserver=silent.nameserver, timeout=0.3))
        with pytest.raises(ResolverError, match="timed out") as e:
            r.resolve("latest.campaign.test")
        assert e.value.rcode == "TIMEOUT" and e.value.nameserver == silent.nameserver
        assert silent.received >= 1
    finally:
        silent.close()


def test_ipns_key_needs_a_hook(dns_server: DnsServer) -> None:
    dns_server.set_txt("_dnslink.bykey.campaign.test", f"dnslink=/ipns/{IPNS_KEY}", ttl=50)
    with pytest.raises(ResolverError, match="no IPNS resolver"):
        resolver(dns_server).resolve("bykey.campaign.test")
    asked: list[str] = []

    def hook(key: str) -> Resolution:
        asked.append(key)
        return Resolution(name=key, cid=B, ttl=30, source="test")

    r = resolver(dns_server, ipns=hook).resolve("bykey.campaign.test")
    assert asked == [IPNS_KEY] and r.cid == B and r.ttl == 30
    assert r.chain == ("bykey.campaign.test", f"/ipns/{IPNS_KEY}")


# --- DNS over HTTPS: a loopback HTTP endpoint that forwards wire-format queries to named ----------
@pytest.fixture
def doh_url(dns_server: DnsServer) -> Iterator[str]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.path != "/dns-query" or self.headers["content-type"] != "application/dns-message":
                self.send_error(415)
                return
            wire = dns.query.udp(dns.message.from_wire(body), "127.0.0.1", port=dns_server.port, timeout=3).to_wire()
            respond(self, wire, "application/dns-message")

    with serve(Handler) as url:
        yield url + "dns-query"


def test_dns_over_https(dns_server: DnsServer, doh_url: str) -> None:
    dns_server.set_txt("_dnslink.doh.campaign.test", f"dnslink=/ipfs/{C}", ttl=33)
    r = DNSLinkResolver(ResolverConfig(doh=doh_url, timeout=3)).resolve("doh.campaign.test")
    assert r.cid == C and r.ttl == 33 and r.nameserver == doh_url
    with pytest.raises(ResolverError, match="SERVFAIL"):
        DNSLinkResolver(ResolverConfig(doh=doh_url, timeout=3)).resolve("x.broken.test")
    with pytest.raises(ResolverError, match=r"404|status"):
        DNSLinkResolver(ResolverConfig(doh=doh_url.replace("/dns-query", "/nope"), timeout=1)).resolve("doh.campaign.test")


# --- the CLI ------------------------------------------------------------------------------------
def test_cli_resolve(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.set_txt("_dnslink.cli.campaign.test", f"dnslink=/ipfs/{A}", "dnslink=/ipfs/", ttl=45)
    home = tmp_path / "home"
    r = run_cli(home, "resolve", "cli.campaign.test", "--nameserver", dns_server.nameserver)
    assert r.code == 0, r.err
    assert str(A) in r.out and "45" in r.out and "cli.campaign.test" in r.out
    r = run_cli(home, "resolve", "dnslink:cli.campaign.test", "--json", env={"HALODB_NAMESERVER": dns_server.nameserver})
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["cid"] == str(A) and data["ttl"] == 45 and data["chain"] == ["cli.campaign.test"]
    assert data["links"]["ipfs"][0]["value"] == f"/ipfs/{A}" and data["links"]["ipfs"][0]["ttl"] == 45
    assert [(x["entry"], x["code"]) for x in data["rejected"]] == [("dnslink=/ipfs/", "NO_IDENTIFIER")]
    assert data["rejected"][0]["reason"]


def test_a_dotted_name_neither_in_dns_nor_local_names_the_local_names(dns_server: DnsServer, tmp_path: Path) -> None:
    """A typo of a dotted local name goes to DNS; its NXDOMAIN also lists the local names."""
    home = tmp_path / "home"
    env = {"HALODB_NAMESERVER": dns_server.nameserver}
    assert run_cli(home, "init").code == 0
    from halodb.naming import LocalNames

    LocalNames(home / "names").publish("latest.campaign.test", A)
    r = run_cli(home, "at", "x/y", "2024-09-01", "--name", "lates.campaign.test", env=env)
    assert r.code == 2 and "NXDOMAIN" in r.err, r.err
    assert "nor is 'lates.campaign.test' a local name (local names: latest.campaign.test)" in r.err, r.err
    r = run_cli(home, "at", "x/y", "2024-09-01", "--name", "dnslink:lates.campaign.test", env=env)
    assert r.code == 2 and "NXDOMAIN" in r.err and "local name" not in r.err, r.err  # asked of DNS on purpose


def test_cli_resolve_errors_exit_2(dns_server: DnsServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run_cli(home, "resolve", "nothing.campaign.test", "--nameserver", dns_server.nameserver)
    assert r.code == 2 and "NXDOMAIN" in r.err
    r = run_cli(home, "resolve", "x.broken.test", "--nameserver", dns_server.nameserver)
    assert r.code == 2 and "SERVFAIL" in r.err and dns_server.nameserver in r.err
    r = run_cli(home, "resolve", "x.campaign.test", "--nameserver", "127.0.0.1:notaport")
    assert r.code == 2 and "notaport" in r.err


# --- the spec's lookup: `halodb resolve dnslink:D --links` -------------------------------------------
def test_cli_links_prints_every_link_verbatim(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.set_txt("_dnslink.spec.campaign.test", f"dnslink=/ipfs/{A}", "dnslink=/ipfs/ ", "dnslink=/hyper/ Ab/c?d ",
                       "dnslink= /ipfs/x", "dnslink=/\x7f", "v=spf1 -all", ttl=77)
    dns_server.set_txt("spec.campaign.test", f"dnslink=/ipfs/{B}")  # never asked: _dnslink.spec exists
    r = run_cli(tmp_path / "home", "resolve", "dnslink:spec.campaign.test", "--links", "--json",
                "--nameserver", dns_server.nameserver)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    out["log"].sort(key=json.dumps)  # in the order of the DNS answer, which BIND varies
    assert out == {
        "links": {"ipfs": [{"identifier": " ", "ttl": 77}, {"identifier": str(A), "ttl": 77}],
                  "hyper": [{"identifier": " Ab/c?d ", "ttl": 77}]},
        "txtEntries": [{"value": "/hyper/ Ab/c?d ", "ttl": 77}, {"value": "/ipfs/ ", "ttl": 77},
                       {"value": f"/ipfs/{A}", "ttl": 77}],
        "log": sorted([{"code": "INVALID_ENTRY", "entry": "dnslink= /ipfs/x", "reason": "WRONG_START"},
                       {"code": "INVALID_ENTRY", "entry": "dnslink=/\x7f", "reason": "INVALID_CHARACTER"}],
                      key=json.dumps),
    }
    text = run_cli(tmp_path / "home", "resolve", "_dnslink.Spec.Campaign.Test.", "--links",
                   "--nameserver", dns_server.nameserver)
    assert text.code == 0 and "record: _dnslink.Spec.Campaign.Test (ttl 77)" in text.out
    assert f"link:   /ipfs/{A}" in text.out and "log:    INVALID_ENTRY WRONG_START" in text.out


def test_cli_links_fallback_is_logged(dns_server: DnsServer, tmp_path: Path) -> None:
    dns_server.set_txt("bare.campaign.test", "dnslink=/testnamespace/ABCD", "txtentry=now", ttl=30)
    r = run_cli(tmp_path / "home", "resolve", "dnslink:bare.campaign.test", "--links", "--json",
                "--nameserver", dns_server.nameserver)
    assert r.code == 0, r.err
    assert json.loads(r.out)["links"] == {"testnamespace": [{"identifier": "ABCD", "ttl": 30}]}
    assert json.loads(r.out)["log"] == [{"code": "FALLBACK"}]


@pytest.mark.parametrize(("name", "code", "reason"), [
    ("nothing.campaign.test", "DNS_RCODE_3", None),
    ("x.broken.test", "DNS_RCODE_2", None),
    ("latest.not-served.example", "DNS_RCODE_5", None),
    ("a..campaign.test", "INVALID_DOMAIN", "EMPTY_PART"),
    ("x" * 64 + ".campaign.test", "INVALID_DOMAIN", "TOO_LONG"),
])
def test_cli_links_errors_are_json_and_exit_2(dns_server: DnsServer, tmp_path: Path, name: str, code: str,
                                              reason: str | None) -> None:
    r = run_cli(tmp_path / "home", "resolve", f"dnslink:{name}", "--links", "--json",
                "--nameserver", dns_server.nameserver)
    assert r.code == 2 and r.err.startswith("halodb: error: ") and r.err.count("\n") == 1, r.err
    error = json.loads(r.out)["error"]
    assert (error["code"], error.get("reason")) == (code, reason) and error["message"] in r.err


def test_domains_are_asked_as_written(dns_server: DnsServer) -> None:
    """The spec's lookup keeps the labels as they are (no IDNA, no lowercasing): what the server holds
    for those bytes is found; HaloDB's own names stay lowercased ASCII."""
    dns_server.set_txt("_dnslink.MiXed.campaign.test", "dnslink=/testnamespace/MIX")
    found = resolver(dns_server).links("dnslink:MiXed.campaign.test")
    assert found.record == "_dnslink.MiXed.campaign.test" and found.links["testnamespace"][0].identifier == "MIX"
    unicode = resolver(dns_server).links("bücher.campaign.test")  # asked as UTF-8 bytes: NXDOMAIN twice
    assert unicode.failure is not None and unicode.failure.code == "DNS_RCODE_3"
    assert "bücher.campaign.test" in str(unicode.failure.error)
