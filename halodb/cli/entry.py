"""The ``halodb`` entry point: the one question asked most often answered before the CLI loads.

``halodb [--home H] [--store S] [--cache C] at KEY_OR_PATH WHEN --name NAME`` on a name
whose blocks the home holds is a few block reads (or, when it lacks them, one indexed query
of a cache synced at the name's head); building click's command tree and importing every
command's module would cost more than the question (issue 15, part 5). So that exact form
is answered here from :func:`halodb.api.lookup.cid_at_in_home`, printing what the full
command prints; anything else — other options, a tag or ``doi:``, a bad date, an error, a
home that cannot answer — goes to the full CLI (:mod:`halodb.cli.commands`), which then
says or does what it always does.

>>> quick_at(["--version"]) is None
True
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "quick_at"]

_GLOBAL = {"--home": "HALODB_HOME", "--store": "HALODB_STORE", "--cache": "HALODB_CACHE"}


def main(args: list[str] | None = None) -> None:
    """Run ``halodb`` on ``args`` (default ``sys.argv[1:]``)."""
    code = quick_at(sys.argv[1:] if args is None else args)
    if code is not None:
        sys.exit(code)
    from halodb.cli.commands import main as full

    full(args)


def quick_at(argv: list[str]) -> int | None:
    """The exit code of ``halodb at`` answered from the cache, or None: let the CLI do it."""
    options: dict[str, str | None] = {flag: os.environ.get(env) or None for flag, env in _GLOBAL.items()}
    i = 0
    while i < len(argv) and argv[i] in _GLOBAL and i + 1 < len(argv):
        options[argv[i]] = argv[i + 1]
        i += 2
    rest = argv[i:]
    if len(rest) != 5 or rest[0] != "at" or rest[3] != "--name":
        return None
    if any(os.environ.get(switch, "").strip() not in ("", "0", "1") for switch in ("HALODB_NATIVE", "HALODB_SYNC_WORKER")):
        return None  # (the CLI says what is wrong with it)
    key, when, name = rest[1], rest[2], rest[4]
    if not key or key[0] == "-" or key[:4].lower() == "doi:" or not when[:1].isdigit() or not name or name[0] == "-":
        return None
    from halodb.errors import HaloDBError

    try:
        from halodb.api.lookup import cid_at_in_home
        from halodb.util.times import to_time

        answered, cid = cid_at_in_home(options["--home"], options["--store"], options["--cache"], name,
                                       key.strip("/") or key,
                                       to_time(when, what="date"))
    except HaloDBError:
        return None  # the CLI reports it as it does
    if not answered or cid is None:
        return None  # the CLI says why there is no answer
    print(cid)
    return 0
