"""Fuzz: DNSLink TXT entries and domain names (``halodb.naming.dnslink``, ``halodb.naming.domains``).

A TXT record is bytes a DNS server chose; the resolver joins a record's strings and decodes
them as UTF-8 (undecodable bytes replaced) before :func:`parse_entry` reads them. Inputs: raw
bytes so decoded; valid entries with bytes flipped, cut and spliced; odd text (controls,
surrogates, right-to-left marks, whitespace of every kind). Claims: :func:`parse_entry` gives
an ``Entry``, a ``Problem`` or ``None`` and never raises; :func:`dnslink_domain` gives a
domain or an ``InvalidNameError``; a valid link reads back as written.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from halodb.errors import HaloDBError
from halodb.ipld import CID
from halodb.naming.dnslink import Entry, Problem, dnslink_domain, parse_entry

from .support import ODD_TEXT, bounded, cids, fuzz, mutated, outcome

DOMAINS = st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=2, max_size=4).map(".".join)
VALID_ENTRIES = st.one_of(
    cids().map(lambda c: f"dnslink=/ipfs/{c}"),
    DOMAINS.map(lambda d: f"dnslink=/ipns/{d}"),
    st.just("dnslink=/ipns/k51qzi5uqu5dh33489h32jlz1ss3r2es28v6gwcs9qlfd1u1z0cq2d0lgpuhp9"),
    st.just("dnslink=/foo/bar baz"),
)
ENTRIES = st.one_of(
    ODD_TEXT.map(lambda t: "dnslink=" + t),
    ODD_TEXT,
    mutated(VALID_ENTRIES.map(str.encode), max_edits=3).map(lambda b: b.decode("utf-8", "replace")),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "replace")),
    st.tuples(st.sampled_from([" ", "\t", "\u00a0", "\u2028", "\x00", ""]), VALID_ENTRIES,
              st.sampled_from([" ", "\t", "/", "//", "/x", "\x00", "\u00a0", ""])).map("".join),
)


@fuzz(150)
@given(ENTRIES)
@example("dnslink=/ipfs/\ud800")
@example("dnslink=/ipns/" + "a." * 200 + "org")
@example("dnslink=/ipfs/bafkqaaa/")
@example("dnslink= /ipfs/bafkqaaa")
@example("dnslink=/ipfs/" + "Q" * 10_000)
def test_any_txt_entry(text: str) -> None:
    result = bounded(len(text.encode("utf-8", "surrogatepass")), parse_entry, text)
    assert result is None or isinstance(result, (Entry, Problem)), result
    if isinstance(result, Problem):
        assert result.code and result.reason
    if isinstance(result, Entry) and result.namespace == "ipfs":
        CID.parse(result.identifier)


@fuzz(50)
@given(st.one_of(cids().map(lambda c: ("ipfs", str(c))), DOMAINS.map(lambda d: ("ipns", d))))
def test_a_valid_link_reads_back(link: tuple[str, str]) -> None:
    namespace, identifier = link
    assert parse_entry(f"dnslink=/{namespace}/{identifier}") == Entry(namespace, identifier)


@fuzz(100)
@given(st.one_of(ODD_TEXT, DOMAINS, DOMAINS.map(lambda d: f"dnslink:_dnslink.{d.upper()}."),
                 mutated(DOMAINS.map(str.encode), max_edits=2).map(lambda b: b.decode("latin-1"))))
@example("\ud800.org")
@example("ipns://")
def test_any_text_as_a_domain(name: str) -> None:
    result = outcome(dnslink_domain, name)
    assert isinstance(result, (str, HaloDBError)), result
    if isinstance(result, str):
        assert dnslink_domain(result) == result
