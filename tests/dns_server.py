"""A real BIND 9 for tests: ``named -g`` on 127.0.0.1 with a free high port, in a temporary folder.

Zones it serves (authoritative only, recursion off, so it never sends a query anywhere):

* ``campaign.test.`` — primary; RFC 2136 updates allowed for the TSIG key ``halodb-test``
  (hmac-sha256). ``other-key`` is a valid key that may not update (REFUSED).
* ``broken.test.`` — a primary whose zone file does not load: every query SERVFAILs.

Any other name is REFUSED. BIND comes from the system (``scripts/install-dns.sh``, run by
``make test``); when ``named`` is missing a test fails under ``CI=true`` and skips otherwise.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from .loopback import die_with_parent, stop_process
from .requirements import missing

ZONE = "campaign.test."
BROKEN_ZONE = "broken.test."
KEY_NAME = "halodb-test"
OTHER_KEY_NAME = "other-key"
ALGORITHM = "hmac-sha256"


def named_binary() -> Path:
    found = shutil.which("named") or next((p for p in ("/usr/sbin/named", "/sbin/named") if os.path.exists(p)), None)
    if found is None:
        missing("BIND 9 is not installed (named not found); run `make dns` (scripts/install-dns.sh) or `make test`")
    return Path(found)


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (at the time of asking)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port on 127.0.0.1")


class SilentUDPServer:
    """A loopback UDP socket that reads queries and never answers: a nameserver that times out."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while True:
            try:
                self.sock.recvfrom(4096)
            except OSError:
                return
            self.received += 1

    def close(self) -> None:
        self.sock.close()


class DnsServer:
    """One ``named`` process; ``nameserver`` is ``127.0.0.1:PORT``, ``keyfile`` a BIND key file."""

    def __init__(self, workdir: Path) -> None:
        self.dir = Path(workdir)
        self.binary = named_binary()
        self.port = 0
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.other_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.keyring = dns.tsigkeyring.from_text({KEY_NAME: (ALGORITHM, self.secret)})

    # --- addresses and keys ---------------------------------------------------------
    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def keyfile(self) -> Path:
        return self.dir / "halodb-test.key"

    @property
    def key_env(self) -> str:
        """The key in ``HALODB_TSIG_KEY`` form: ``algorithm:name:secret``."""
        return f"{ALGORITHM}:{KEY_NAME}:{self.secret}"

    @property
    def other_key_env(self) -> str:
        return f"{ALGORITHM}:{OTHER_KEY_NAME}:{self.other_secret}"

    @property
    def client_env(self) -> dict[str, str]:
        """What a HaloDB client needs to resolve and publish here: nameserver and TSIG key."""
        return {"HALODB_NAMESERVER": self.nameserver, "HALODB_TSIG_KEY": self.key_env}

    def fresh_dnslink(self, domain: str) -> str:
        """``_dnslink.DOMAIN``, emptied of what an earlier test left: the record to move."""
        record = f"_dnslink.{domain}"
        self.delete(record)
        return record

    # --- lifecycle --------------------------------------------------------------------
    def _write_config(self) -> Path:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        key = f'key "{KEY_NAME}" {{\n\talgorithm {ALGORITHM};\n\tsecret "{self.secret}";\n}};\n'
        self.keyfile.write_text(key)
        other = f'key "{OTHER_KEY_NAME}" {{ algorithm {ALGORITHM}; secret "{self.other_secret}"; }};\n'
        (d / "campaign.test.db").write_text(
            "$TTL 300\n"
            "@ IN SOA ns.campaign.test. hostmaster.campaign.test. 1 3600 600 86400 30\n"
            "@ IN NS ns\n"
            "ns IN A 127.0.0.1\n"
        )
        # a zone file that cannot load (no SOA, a bad record): named serves SERVFAIL for the zone
        (d / "broken.test.db").write_text("$TTL 300\n@ IN TXT \"no soa\"\nbad IN A not-an-address\n")
        conf = d / "named.conf"
        conf.write_text(
            f"options {{\n"
            f'\tdirectory "{d}";\n'
            f'\tpid-file "{d}/named.pid";\n'
            f'\tsession-keyfile "{d}/session.key";\n'
            f'\tmanaged-keys-directory "{d}";\n'
            f"\tlisten-on port {self.port} {{ 127.0.0.1; }};\n"
            f"\tlisten-on-v6 {{ none; }};\n"
            f"\trecursion no;\n"
            f"\tdnssec-validation no;\n"
            f"\tnotify no;\n"
            f"\tallow-query {{ any; }};\n"
            f"}};\n"
            f"controls {{ }};\n"
            f"{key}{other}"
            f'zone "{ZONE.rstrip(".")}" {{ type primary; file "campaign.test.db"; '
            f'allow-update {{ key "{KEY_NAME}"; }}; }};\n'
            f'zone "{BROKEN_ZONE.rstrip(".")}" {{ type primary; file "broken.test.db"; }};\n'
        )
        return conf

    def start(self, timeout: float = 30.0) -> DnsServer:
        last = ""
        for _ in range(3):  # the port may be taken between choosing and binding it
            self.port = free_port()
            conf = self._write_config()
            self.process = subprocess.Popen(
                [str(self.binary), "-g", "-4", "-n", "1", "-c", str(conf)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent,
            )
            if self._wait_running(timeout):
                return self
            last = "\n".join(self.log[-20:])
            self.stop()
        raise RuntimeError(f"named did not start:\n{last}")

    def _wait_running(self, timeout: float) -> bool:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.log.append(line.rstrip())
            if line.rstrip().endswith("running"):
                threading.Thread(target=self._drain, daemon=True).start()
                return self._answers(deadline)
            if "exiting (due to fatal error)" in line or "address in use" in line or time.monotonic() > deadline:
                return False
        return False

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())

    def _answers(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                r = dns.query.udp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", timeout=1, port=self.port)
                if r.rcode() == dns.rcode.NOERROR:
                    return True
            except (OSError, dns.exception.Timeout):
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        stop_process(self.process, timeout=15)
        self.process = None

    # --- setting records (RFC 2136 with the test key) -----------------------------------
    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(ZONE, keyring=self.keyring, keyname=dns.name.from_text(KEY_NAME),
                                       keyalgorithm=ALGORITHM)

    def _send(self, update: dns.update.UpdateMessage) -> None:
        r = dns.query.tcp(update, "127.0.0.1", timeout=5, port=self.port)
        if r.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(r.rcode())}")

    @staticmethod
    def _rel(name: str) -> dns.name.Name:
        full = dns.name.from_text(name if name.endswith(".") else f"{name}.")
        return full.relativize(dns.name.from_text(ZONE))

    def set_txt(self, name: str, *records: str | Sequence[str], ttl: int = 60) -> None:
        """Replace the TXT records at ``name`` (absolute: ``x.campaign.test``); a record given
        as a sequence is one TXT record of several strings."""
        u = self._update()
        rel = self._rel(name)
        u.delete(rel, "TXT")
        for rec in records:
            strings = [rec] if isinstance(rec, str) else list(rec)
            u.add(rel, ttl, "TXT", " ".join(_quote(s) for s in strings))
        self._send(u)

    def set_cname(self, name: str, target: str, *, ttl: int = 60) -> None:
        u = self._update()
        rel = self._rel(name)
        u.delete(rel)
        u.add(rel, ttl, "CNAME", target if target.endswith(".") else f"{target}.")
        self._send(u)

    def delete(self, name: str) -> None:
        u = self._update()
        u.delete(self._rel(name))
        self._send(u)

    def txt(self, name: str) -> list[str]:
        """The TXT records at ``name`` as the server holds them (strings of a record joined)."""
        q = dns.message.make_query(name if name.endswith(".") else f"{name}.", "TXT")
        r = dns.query.tcp(q, "127.0.0.1", timeout=5, port=self.port)
        out: list[str] = []
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                out.extend(b"".join(rd.strings).decode() for rd in rrset)
        return sorted(out)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
