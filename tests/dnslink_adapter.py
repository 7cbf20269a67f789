"""The executable the DNSLink test suite (``@dnslink/test``) calls, translated into ``halodb resolve``.

The suite runs ``ADAPTER DOMAIN OPTIONS`` once per lookup; OPTIONS is JSON naming the ports of
its own DNS server on 127.0.0.1 (``{"udp": 41234, "tcp": ..., "doh": ..., "flags": {"log": true}}``).
It reads one JSON object from stdout, and any exit code but 0 fails its check. The adapter runs
``halodb resolve dnslink:DOMAIN --links --json --nameserver 127.0.0.1:UDP`` and passes its JSON
on unchanged; an error the spec defines (``DNS_RCODE_<n>``, ``INVALID_DOMAIN``: exit 2 with
``{"error": ...}`` on stdout) is an answer to the suite, so then the adapter exits 0 too.

Two ways to run the command, the same ``halodb`` CLI code either way:

* by default ``python -m halodb resolve ...`` in a subprocess: the whole executable, ~1 s a
  lookup (most of it importing HaloDB);
* with ``DNSLINK_ADAPTER_SOCKET=PATH``, through a server started by
  ``dnslink_adapter.py --serve PATH``, which has imported :mod:`halodb.cli.commands` once and
  forks for each lookup a child that runs its ``main()`` with the lookup's argv - what
  ``python -m halodb`` runs, minus the interpreter start (the suite's ~50 lookups in seconds).

Example (tests/test_dnslink_harness.py runs it so)::

    dnslink-test --enable=log -- python -X utf8 tests/dnslink_adapter.py
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import traceback
from typing import Any

SOCKET_ENV = "DNSLINK_ADAPTER_SOCKET"


def resolve_args(domain: str, options: dict[str, Any]) -> list[str]:
    """The ``halodb`` arguments of one lookup of the suite.

    >>> resolve_args("t01.dnslink.example.com", {"udp": 5300})
    ['resolve', 'dnslink:t01.dnslink.example.com', '--links', '--json', '--nameserver', '127.0.0.1:5300']
    """
    port = options.get("udp")
    if not isinstance(port, int):
        raise SystemExit(f"dnslink_adapter: options {options!r} name no UDP port")
    return ["resolve", f"dnslink:{domain}", "--links", "--json", "--nameserver", f"127.0.0.1:{port}"]


def run_subprocess(args: list[str]) -> tuple[int, str, str]:
    """``python -m halodb ARGS``: exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("HALODB_DOH", "HALODB_NAMESERVER")}
    done = subprocess.run([sys.executable, "-X", "utf8", "-m", "halodb", *args], capture_output=True,
                          env=env, check=False)
    return done.returncode, done.stdout.decode("utf-8", "surrogateescape"), done.stderr.decode(errors="replace")


def run_via_server(path: str, args: list[str]) -> tuple[int, str, str]:
    """ARGS run by the server at ``path`` (see :func:`serve`)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        conn.sendall(json.dumps({"argv": args}).encode() + b"\n")
        reply = json.loads(conn.makefile("rb").read())
    return int(reply["code"]), str(reply["stdout"]), str(reply["stderr"])


def lookup(argv: list[str]) -> int:
    """One lookup of the suite: ``argv`` is ``[DOMAIN, OPTIONS]``."""
    args = resolve_args(argv[0], json.loads(argv[1]))
    path = os.environ.get(SOCKET_ENV)
    code, out, err = run_via_server(path, args) if path else run_subprocess(args)
    try:
        result = json.loads(out)
    except ValueError:
        result = None
    if not (code == 0 or (code == 2 and isinstance(result, dict) and "error" in result)):
        sys.stderr.write(f"halodb {' '.join(args)} exited {code}: {err}")
        return code or 1
    sys.stdout.write(out)
    return 0


def serve(path: str) -> None:
    """Answer lookups on the Unix socket ``path``: for each, a forked child runs the CLI's ``main()``
    with the argv it was sent; the reply is its exit code, stdout and stderr. Prints ``ready``
    once listening; runs until terminated."""
    # the imports a `python -m halodb resolve --links` pays each time, paid once
    import halodb.naming.dnslink  # noqa: F401  (imported by the command when it runs)
    from halodb.cli import commands

    for key in ("HALODB_DOH", "HALODB_NAMESERVER"):
        os.environ.pop(key, None)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            request = json.loads(conn.makefile("rb").readline())
            child = os.fork()
            if child == 0:  # never returns: the child must not go on serving
                try:
                    server.close()
                    code, out, err = _run_main(commands.main, [str(a) for a in request["argv"]])
                    conn.sendall(json.dumps({"code": code, "stdout": out, "stderr": err}).encode())
                finally:
                    os._exit(0)
            os.waitpid(child, 0)


def _run_main(main: Any, argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI entry point as ``halodb ARGV``, capturing what it prints and its exit code."""
    sys.argv = ["halodb", *argv]
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # a traceback, as `python -m halodb` would print it
        traceback.print_exc()
        code = 1
    return code, sys.stdout.getvalue(), sys.stderr.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--serve":
        serve(argv[1])
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: dnslink_adapter.py DOMAIN OPTIONS-JSON | --serve SOCKET\n")
        return 2
    return lookup(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
