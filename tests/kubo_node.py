"""Real Kubo daemons for tests: temporary repos, ephemeral loopback ports, nothing sent outside.

Every node uses the ``test`` profile and is further closed off: empty Bootstrap,
``Routing.Type`` none, AutoConf off, MDNS off, AutoTLS off, telemetry off, swarm/API/gateway
on 127.0.0.1 only. It connects only to peers a test names. Kubo comes from
``tools/bin/ipfs`` (``scripts/install-kubo.sh``, run by ``make test``); when it is missing a
test fails under ``CI=true`` and skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .loopback import die_with_parent, stop_process
from .requirements import missing

ROOT = Path(__file__).resolve().parents[1]
IPFS = ROOT / "tools" / "bin" / "ipfs"


def ipfs_binary() -> Path:
    found = IPFS if IPFS.exists() else (Path(p) if (p := shutil.which("ipfs")) else None)
    if found is None:
        missing(f"Kubo is not installed ({IPFS}); run `make kubo` (scripts/install-kubo.sh) or `make test`")
    return found


class KuboNode:
    """One daemon; ``api`` is its ``kubo+http://`` store URL, ``gateway`` its HTTP gateway."""

    def __init__(self, repo: Path, *, no_fetch: bool = False, offline: bool = False) -> None:
        self.repo = repo
        self.no_fetch = no_fetch  #: the gateway answers only from local blocks (404 otherwise)
        #: ``ipfs daemon --offline``: no swarm at all; IPNS records live in the node's datastore
        self.offline = offline
        self.binary = ipfs_binary()
        self.env = {**os.environ, "IPFS_PATH": str(repo), "IPFS_TELEMETRY": "off"}
        self.process: subprocess.Popen[str] | None = None
        self.api = self.gateway = ""
        self.log: list[str] = []

    def ipfs(self, *args: str, input: bytes | None = None) -> bytes:
        return subprocess.run([str(self.binary), *args], env=self.env, input=input, check=True,
                              capture_output=True, timeout=120).stdout

    def init(self) -> None:
        self.ipfs("init", "--profile", "test", "--empty-repo")
        path = self.repo / "config"
        config = json.loads(path.read_text())
        config["Bootstrap"] = []
        config.setdefault("Routing", {})["Type"] = "none"
        config.setdefault("AutoConf", {})["Enabled"] = False
        config.setdefault("AutoTLS", {})["Enabled"] = False
        config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
        config.setdefault("Gateway", {})["NoFetch"] = self.no_fetch
        plugins = config.get("Plugins") or {}
        plugins["Plugins"] = {**(plugins.get("Plugins") or {}), "telemetry": {"Config": {"Mode": "off"}}}
        config["Plugins"] = plugins
        config["Addresses"].update({
            "API": "/ip4/127.0.0.1/tcp/0", "Gateway": "/ip4/127.0.0.1/tcp/0",
            "Swarm": ["/ip4/127.0.0.1/tcp/0"], "Announce": [], "AppendAnnounce": [],
        })
        path.write_text(json.dumps(config, indent=1))

    def start(self, timeout: float = 60.0) -> KuboNode:
        self.init()
        self.process = subprocess.Popen([str(self.binary), "daemon", *(["--offline"] if self.offline else [])], env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())
            if m := re.search(r"RPC API server listening on /ip4/([\d.]+)/tcp/(\d+)", line):
                self.api = f"kubo+http://{m.group(1)}:{m.group(2)}"
            if m := re.search(r"Gateway server listening on /ip4/([\d.]+)/tcp/(\d+)", line):
                self.gateway = f"http://{m.group(1)}:{m.group(2)}/"
            if "Daemon is ready" in line:
                break
            if time.monotonic() > deadline:
                break
        if not self.api or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("Kubo did not start:\n" + "\n".join(self.log))
        # keep reading what the daemon prints, so that a full pipe never blocks it
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
        return self

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line.rstrip())
            del self.log[:-200]

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.process = None
