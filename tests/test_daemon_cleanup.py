"""The daemons tests start die with the test process, even when it is SIGKILLed (no stray
``ipfs daemon`` or ``named`` keeps ports and CPU after a killed run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .dns_server import named_binary
from .kubo_node import ROOT, ipfs_binary
from .waiting import wait_until

STARTER = """
import sys
from pathlib import Path
from tests.{module} import {cls}
daemon = {cls}(Path(sys.argv[1])).start()
print(daemon.process.pid, flush=True)
sys.stdin.read()  # until killed
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has died: only its parent has not reaped it
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(("module", "cls"), [("kubo_node", "KuboNode"), ("dns_server", "DnsServer")])
def test_a_daemon_dies_with_the_killed_test_process(module: str, cls: str) -> None:
    ipfs_binary() if module == "kubo_node" else named_binary()  # fail under CI, skip locally, when missing
    with tempfile.TemporaryDirectory() as tmp:
        starter = subprocess.Popen([sys.executable, "-c", STARTER.format(module=module, cls=cls), str(Path(tmp) / "d")],
                                   cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        daemon = 0
        try:
            assert starter.stdout is not None
            daemon = int(starter.stdout.readline())
            assert alive(daemon)
            starter.send_signal(signal.SIGKILL)
            starter.wait()
            wait_until(lambda: not alive(daemon), timeout=30, what=f"{cls} daemon {daemon} to exit")
        finally:
            if starter.poll() is None:
                starter.kill()
            if daemon and alive(daemon):  # the test failed: do not leave the daemon behind
                os.kill(daemon, signal.SIGKILL)
