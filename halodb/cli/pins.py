"""``halodb pins …``: plan, export, import, follow and check the pins that keep a campaign alive.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(pins, ["--help"]).exit_code
0
>>> DURATION.convert("7d", None, None), DURATION.convert("90", None, None)
(604800.0, 90.0)
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from halodb.cli.commands import SECONDS, Context, emit_json, emit_report, pass_ctx
from halodb.util.textout import format_table

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class Duration(click.ParamType[float, Any]):
    """Seconds, or a number with a unit: 90, 90s, 30m, 12h, 7d, 2w."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value))
        if not found:
            self.fail(f"{value!r} is not a duration (e.g. 90, 90s, 30m, 12h, 7d, 2w).", param, ctx)
        return float(found[1]) * _UNITS[found[2]]


DURATION = Duration()


@click.group()
def pins() -> None:
    """Keep a campaign alive: the pins its index references, on Kubo nodes and pinning services."""


def _versions(f: Any) -> Any:
    f = click.option("--tag", "tags", multiple=True, metavar="T", help="Add T to every pin's meta.tags (repeatable).")(f)
    f = click.option("--current", "current_only", is_flag=True,
                     help="Only the newest version: its head and its datasets' data.")(f)
    return click.option("--all-versions", "all_versions", is_flag=True,
                        help="Every version's data (the default).")(f)


def _plan(ctx: Context, name: str, current_only: bool, all_versions: bool, tags: tuple[str, ...]) -> Any:
    from halodb.naming.refs import split_back
    from halodb.pins.plan import plan_pins

    if current_only and all_versions:
        raise click.UsageError("--current and --all-versions exclude each other")
    reg = ctx.registry()
    head = reg.resolve(name)
    base = split_back(name.strip())[0]  # the HEAD pins are labelled by the name, as written canonically
    label = base if base.upper().partition("@")[0] == "HEAD" else reg.canonical_name(base)
    return plan_pins(reg.store, reg.index, head, label=label, current_only=current_only, tags=tags)


@pins.command("plan")
@click.argument("name")
@_versions
@click.option("--json", "as_json", is_flag=True, help="The Pin objects as a JSON list.")
@pass_ctx
def pins_plan(ctx: Context, name: str, current_only: bool, all_versions: bool, tags: tuple[str, ...],
              as_json: bool) -> None:
    """Every CID NAME's index references (its heads, every dataset's data) as Pin objects.

    NAME is a name, NAME@TIME, a commit CID or HEAD.
    """
    plan = _plan(ctx, name, current_only, all_versions, tags)
    if as_json:
        emit_json([p.to_json() for p in plan.pins])
        return
    for line in format_table(["cid", "name", "path"], [(p.cid, p.name, p.meta.get("halodb:path", ""))
                                                      for p in plan.pins]):
        click.echo(line)
    click.echo(f"{len(plan.index)} head(s) and {len(plan.data)} data CID(s) of {plan.versions} version(s)", err=True)


@pins.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="The pin list file to write.")
@_versions
@pass_ctx
def pins_export(ctx: Context, name: str, output: str, current_only: bool, all_versions: bool,
                tags: tuple[str, ...]) -> None:
    """Write NAME's pins as a pinlist.yaml (ORCESTRA's form: HEAD entries chained by meta.prev)."""
    from halodb.errors import InputError
    from halodb.pins import check_pinlist, dump_pinlist
    from halodb.util.fs import atomic_file
    from halodb.util.oserrors import describe_os_error

    plan = _plan(ctx, name, current_only, all_versions, tags)
    check_pinlist(plan.pins, source=f"the plan of {name}")  # what HaloDB writes, it would read back
    try:
        with atomic_file(Path(output)) as f:
            f.write(dump_pinlist(plan.pins).encode())
    except OSError as exc:
        raise InputError(f"cannot write the pin list {output}: {describe_os_error(exc)}", source=output) from None
    click.echo(f"wrote {len(plan.pins)} pin(s) ({len(plan.index)} head(s), {len(plan.data)} data) to {output}")


@pins.command("import")
@click.argument("pinlist", type=click.Path(dir_okay=False))
@click.option("--allow-duplicate-names", is_flag=True,
              help="Accept two entries with one name (ORCESTRA's own list names three 'ORCESTRA HEAD v14').")
@click.option("--json", "as_json", is_flag=True, help="The checked Pin objects as a JSON list.")
def pins_import(pinlist: str, allow_duplicate_names: bool, as_json: bool) -> None:
    """Read and check a pin list (Pin objects: cid, name, meta.prev, meta.tags); errors name the entry."""
    from halodb.pins import chains, load_pinlist

    pins_read = load_pinlist(pinlist, allow_duplicate_names=allow_duplicate_names)
    if as_json:
        emit_json([p.to_json() for p in pins_read])
        return
    found = chains(pins_read)
    longest = max(found, key=len) if found else []
    tags = sorted({t for p in pins_read for t in p.tags})
    click.echo(f"{pinlist}: {len(pins_read)} pin(s) in {len(found)} chain(s); tags: {', '.join(tags) or 'none'}")
    if longest:
        click.echo(f"  longest chain: {len(longest)} pin(s), {longest[0].name or longest[0].cid} .. "
                   f"{longest[-1].name or longest[-1].cid} (newest {longest[-1].cid})")


def _node(url: str, pin_timeout: float | None = None) -> Any:
    from halodb.pins.node import KuboPinNode

    return KuboPinNode(url, **({"pin_timeout": pin_timeout} if pin_timeout else {}))


@contextmanager
def _progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress callback drawing a bar on a terminal's stderr (nothing otherwise)."""
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total and enabled and sys.stderr.isatty():
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        if bar is not None:
            bar.update(done - bar.pos)
            if done >= total:
                bar.__exit__(None, None, None)
                bar = None

    try:
        yield progress
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@pins.command("follow")
@click.argument("name")
@click.option("--node", "node_url", required=True, metavar="URL", help="The Kubo node: kubo+http://HOST:PORT.")
@click.option("--all-versions", "all_versions", is_flag=True, help="Keep every version's data (the default).")
@click.option("--current", "current_only", is_flag=True, help="Keep only the newest version's data.")
@click.option("--watch", is_flag=True, help="Keep running: converge again whenever NAME moves.")
@click.option("--unpin-after", type=DURATION, metavar="DURATION",
              help="Unpin this follower's pins no version wants any more once unwanted this long "
                   "(e.g. 7d); default: never unpin.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True, help="Pins in flight at once.")
@click.option("--pin-timeout", type=SECONDS, default=600.0, show_default=True,
              help="Seconds one pin may take (the node fetching the data from its peers).")
@click.option("--allow-rewind", is_flag=True, help="Follow NAME even to a head that does not descend from the last one.")
@click.option("--min-interval", type=SECONDS, default=5.0, show_default=True, help="--watch: never poll more often (seconds).")
@click.option("--max-interval", type=SECONDS, default=3600.0, show_default=True, help="--watch: never poll less often (seconds).")
@click.option("--interval", type=SECONDS, default=60.0, show_default=True, help="--watch: the wait when NAME has no TTL.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (with --watch: one object per event).")
@pass_ctx
def pins_follow(ctx: Context, name: str, node_url: str, all_versions: bool, current_only: bool, watch: bool,
                unpin_after: float | None, concurrency: int, pin_timeout: float, allow_rewind: bool,
                min_interval: float, max_interval: float, interval: float, as_json: bool) -> None:
    """Make a Kubo node pin what NAME references; idempotent and resumable.

    Pins the head (the index of every version) and every version's data (--current: the
    newest's), only what the node lacks, reporting per-CID failures without stopping. Pins
    it makes are named "halodb[NAME] ..."; pins anyone else made are never touched. Nothing
    is unpinned unless --unpin-after. Exit 1 when some pin failed (the rest is pinned).
    """
    from halodb.pins.follow import FollowPolicy, FollowReport, follow_once, follow_watch

    if current_only and all_versions:
        raise click.UsageError("--current and --all-versions exclude each other")
    policy = FollowPolicy(current_only=current_only, unpin_after=unpin_after, concurrency=concurrency,
                          allow_rewind=allow_rewind)
    reg = ctx.registry()
    with _node(node_url, pin_timeout) as node, _progress_bar("pinning", not as_json) as progress:
        if not watch:
            emit_report(follow_once(reg, name, node, policy, progress=progress), as_json)
            return
        from halodb.api.watch import WatchEvent, WatchPolicy

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())

        def on_report(report: FollowReport) -> None:
            if as_json:
                click.echo(emit_line({"event": "report", **report.to_dict()}))
            else:
                for line in report.lines():
                    click.echo(line)
            sys.stdout.flush()

        def on_event(event: WatchEvent) -> None:
            if as_json:
                click.echo(emit_line({"event": event.kind, "name": event.name, "time": event.time,
                                      "cid": event.cid, "next_check_s": event.wait, "detail": event.detail}))
            else:
                click.echo(str(event))
            sys.stdout.flush()

        watch_policy = WatchPolicy(floor=min_interval, ceiling=max_interval, default=interval)
        try:
            follow_watch(reg, name, node, policy, watch_policy=watch_policy, on_event=on_event,
                         on_report=on_report, stop=stop, progress=progress)
        except KeyboardInterrupt:
            pass


def emit_line(value: Any) -> str:
    import json

    from halodb.util.textout import json_default

    return json.dumps(value, default=json_default, ensure_ascii=False)


@pins.command("status")
@click.argument("name")
@click.option("--node", "node_urls", multiple=True, required=True, metavar="URL",
              help="A Kubo node (kubo+http://HOST:PORT); repeat for several.")
@click.option("--missing", "only_missing", is_flag=True, help="List only the CIDs some node does not hold.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pins_status(ctx: Context, name: str, node_urls: tuple[str, ...], only_missing: bool, as_json: bool) -> None:
    """Per CID NAME references, per node: pinned, queued (its follower is on it) or missing."""
    from halodb.pins.status import pin_status

    nodes = [_node(url) for url in node_urls]
    try:
        report = pin_status(ctx.registry(), name, nodes)
    finally:
        for node in nodes:
            node.close()
    if as_json:
        emit_json(report.to_dict())
        return
    rows = [r for r in report.rows if not only_missing or len(r.holders) < len(nodes)]
    columns = ["cid", "name", *[f"node {n}" for n in range(1, len(nodes) + 1)]]
    for line in format_table(columns, [(r.pin.cid, r.pin.name, *r.states.values()) for r in rows]):
        click.echo(line)
    for n, summary in enumerate(report.nodes, 1):
        follower = summary.follower or {}
        following = (f"; its follower is at {follower.get('head')}"
                     f"{' (current only)' if (follower.get('policy') or {}).get('current_only') else ''}"
                     if follower else "; no follower of this name")
        click.echo(f"node {n} {summary.node}: {summary.counts['pinned']} pinned, {summary.counts['queued']} queued, "
                   f"{summary.counts['missing']} missing{following}")


@pins.command("push")
@click.argument("name", required=False)
@click.option("--service", "service_url", required=True, metavar="URL",
              help="The Pinning Service API endpoint (as Kubo takes it: /pins is appended).")
@click.option("--pinlist", type=click.Path(dir_okay=False), help="Push this pin list instead of NAME's plan.")
@click.option("--allow-duplicate-names", is_flag=True, help="--pinlist: accept two entries with one name.")
@click.option("--token-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="A file holding the service's access token [env HALODB_PINNING_SERVICE_TOKEN_FILE; or the "
                   "token itself in HALODB_PINNING_SERVICE_TOKEN]; never on the command line.")
@_versions
@click.option("--retries", type=click.IntRange(0, 20), default=4, show_default=True,
              help="Retries of an answer 429 or 5xx, with backoff, before a pin fails.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def pins_push(ctx: Context, name: str | None, service_url: str, pinlist: str | None, allow_duplicate_names: bool,
              token_file: str | None, current_only: bool, all_versions: bool, tags: tuple[str, ...], retries: int,
              as_json: bool) -> None:
    """Ask a pinning service to pin what NAME references (its head and every version's data;
    --current: the newest's), or a pin list; only what it does not hold yet, never removing.

    Works with any service that speaks the IPFS Pinning Service API (halodb serve --pinning too).
    Exit 1 when some pin was refused (the rest is pushed).
    """
    from halodb.pins import load_pinlist
    from halodb.pins.service import PinningServiceClient, PushOutcome, push
    from halodb.pins.tokens import SERVICE_TOKEN, read_token

    if (name is None) == (pinlist is None):
        raise click.UsageError("give NAME or --pinlist FILE (one of the two)")
    token = read_token(SERVICE_TOKEN, file=token_file)
    if pinlist is not None:
        wanted = load_pinlist(pinlist, allow_duplicate_names=allow_duplicate_names)
    else:
        assert name is not None
        plan = _plan(ctx, name, current_only, all_versions, tags)
        wanted = [plan.head_pin, *plan.data]  # the newest head holds every older one
    with PinningServiceClient(service_url, token, retries=retries) as client, \
            _progress_bar("pushing", not as_json) as progress:
        done = 0

        def step(_: PushOutcome) -> None:
            nonlocal done
            done += 1
            progress(done, len(wanted))

        report = push(wanted, client, progress=step)
    if as_json:
        emit_json({"service": service_url, "added": [o.pin.cid for o in report.added],
                   "already": [o.pin.cid for o in report.already],
                   "failed": {o.pin.cid: o.detail for o in report.failed}})
    else:
        click.echo(f"{service_url}: {len(report.added)} pin(s) added, {len(report.already)} held already, "
                   f"{len(report.failed)} refused")
        for outcome in report.failed:
            click.echo(f"  refused {outcome.pin.cid} ({outcome.pin.name}): {outcome.detail}")
    if report.failed:
        sys.exit(1)
