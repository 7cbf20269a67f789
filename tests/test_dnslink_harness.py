"""The DNSLink specification's own test suite (``@dnslink/test``) against ``halodb resolve --links``.

The suite (pinned in scripts/dnslink-test, installed into tools/dnslink-test by
scripts/install-dnslink-test.sh, which ``make test`` runs) starts its own DNS server, with
the records of its 15 tests, and calls an executable once per lookup: here
tests/dnslink_adapter.py, which runs ``halodb resolve dnslink:DOMAIN --links --json
--nameserver 127.0.0.1:PORT``. The server is bound to 127.0.0.1 by
scripts/dnslink-test/loopback.cjs (the suite itself binds every interface), and HaloDB asks
only that address: nothing leaves the machine. Node.js and the suite are real parts: missing,
the tests fail under CI and skip locally.

All the suite's checks run, the optional log checks (``--enable=log``) included; none needs
the internet (the suite has no DNS-over-HTTPS test, its DoH port is unused).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .loopback import stop_process
from .requirements import missing

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tools" / "dnslink-test"
SUITE = HARNESS / "node_modules" / "@dnslink" / "test" / "bin" / "dnslink-test"
LOOPBACK = HARNESS / "loopback.cjs"
ADAPTER = Path(__file__).resolve().parent / "dnslink_adapter.py"

#: the suite's tests (pinned version 0.11.1) and how many checks each makes with --enable=log: a
#: test that HaloDB stops passing, or one the suite adds or drops, fails this module
EXPECTED_CHECKS = {
    "Enabled Flags": 1,
    "t01": 3, "t02": 3, "t03": 2, "t04": 4, "t05": 11, "t06": 4, "t07": 6, "t08": 4, "t09": 5,
    "t10": 6, "t11": 3, "t12": 3, "t13": 3, "t14": 11, "t15": 46,
}  # 115 in all: the links, the txtEntries HaloDB also prints, and every expected log entry

_TEST_RE = re.compile(r"^# (t\d+|Enabled Flags)\b")
_CHECK_RE = re.compile(r"^(not ok|ok) \d+ (.*)$")


def node_suite() -> list[str]:
    """The command that runs the suite, its server on loopback (fail under CI, skip locally, when missing)."""
    node = shutil.which("node")
    if node is None:
        missing("Node.js is not installed (node not found); the DNSLink test suite needs it: apt-get install nodejs npm")
    if not SUITE.exists() or not LOOPBACK.exists():
        missing("the DNSLink test suite is not installed: run `make dnslink-test` (scripts/install-dnslink-test.sh) "
                "or `make test`")
    return [node, "--require", str(LOOPBACK), str(SUITE)]


def run_suite(*options: str, socket: Path | None = None) -> tuple[int, str]:
    """Run the suite through the adapter (``socket``: through an adapter server); exit code and TAP output."""
    env = {k: v for k, v in os.environ.items() if k not in ("HALODB_DOH", "HALODB_NAMESERVER")}
    if socket is not None:
        env["DNSLINK_ADAPTER_SOCKET"] = str(socket)
    done = subprocess.run([*node_suite(), *options, "--", sys.executable, "-X", "utf8", str(ADAPTER)],
                          capture_output=True, text=True, cwd=HARNESS, env=env, timeout=900, check=False)
    return done.returncode, done.stdout + done.stderr


def checks(tap: str) -> dict[str, list[tuple[bool, str]]]:
    """The checks of a TAP output per test (``t01`` ...): (passed, message)."""
    found: dict[str, list[tuple[bool, str]]] = {}
    current = None
    for line in tap.splitlines():
        if (m := _TEST_RE.match(line)) is not None:
            current = m.group(1)
            found.setdefault(current, [])
        elif (m := _CHECK_RE.match(line)) is not None and current is not None:
            found[current].append((m.group(1) == "ok", m.group(2)))
    return found


@pytest.fixture(scope="module")
def adapter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The adapter's server: halodb's CLI imported once, forked per lookup (see tests/dnslink_adapter.py)."""
    path = tmp_path_factory.mktemp("adapter") / "halodb.sock"
    process = subprocess.Popen([sys.executable, "-X", "utf8", str(ADAPTER), "--serve", str(path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield path
    finally:
        stop_process(process, timeout=10)


def test_every_check_of_the_dnslink_suite_passes(adapter_server: Path) -> None:
    code, tap = run_suite("--enable=log", socket=adapter_server)
    found = checks(tap)
    failed = [(test, message) for test, results in found.items() for ok, message in results if not ok]
    assert not failed, "failing DNSLink checks:\n" + "\n".join(f"{t}: {m}" for t, m in failed) + "\n" + tap[-3000:]
    assert {test: len(results) for test, results in found.items()} == EXPECTED_CHECKS, tap[-3000:]
    assert "# skip" not in tap.lower() and code == 0, tap[-3000:]


def test_the_suite_through_the_halodb_executable() -> None:
    """A part of the suite through ``python -m halodb`` itself, one process a lookup: a fallback,
    a _dnslink record that holds no DNSLink (the domain itself is not used), malformed entries."""
    code, tap = run_suite("--enable=log", "--only=t01", "--only=t03", "--only=t06")
    found = checks(tap)
    assert {t: [ok for ok, _ in r] for t, r in found.items() if r} == {
        "Enabled Flags": [True], "t01": [True] * 3, "t03": [True] * 2, "t06": [True] * 4}, tap
    assert code == 0, tap


def test_the_suites_dns_server_listens_on_loopback_only() -> None:
    """The suite binds its UDP, TCP and DoH sockets on every interface; loopback.cjs keeps them on 127.0.0.1."""
    process = subprocess.Popen([*node_suite(), "--server-only"], stdout=subprocess.PIPE, text=True, cwd=HARNESS)
    try:
        assert process.stdout is not None
        text = ""
        while not text.rstrip().endswith("}"):
            line = process.stdout.readline()
            assert line, f"the suite's server exited: {text!r}"
            text += line
        ports = json.loads(text)
        assert set(ports) == {"udp", "tcp", "doh"}
        bound = {(proto, port): _local_addresses(proto, port) for proto, port in
                 (("udp", ports["udp"]), ("tcp", ports["tcp"]), ("tcp", ports["doh"]))}
        assert bound == {key: {"127.0.0.1"} for key in bound}
    finally:
        stop_process(process, timeout=10)


def _local_addresses(proto: str, port: int) -> set[str]:
    """The local addresses sockets of this machine have bound ``port`` on (/proc/net, IPv4 and IPv6)."""
    found: set[str] = set()
    for table in (proto, proto + "6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            address, _, hexport = line.split()[1].partition(":")
            if int(hexport, 16) == port:
                found.add(_address(address))
    return found


def _address(hexaddr: str) -> str:
    """A /proc/net address (little-endian hex) as text: ``0100007F`` -> ``127.0.0.1``."""
    if len(hexaddr) == 8:
        return ".".join(str(b) for b in bytes.fromhex(hexaddr)[::-1])
    import ipaddress

    words = [bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, 32, 8)]
    return str(ipaddress.IPv6Address(b"".join(words)))
