"""The ``halodb`` command line: a thin layer over :mod:`halodb.api.registry`.

Exit codes: 0 success; 1 "no answer" (``at`` found no CID); 2 an error (the message on
stderr says what and where).

>>> from click.testing import CliRunner
>>> CliRunner().invoke(cli, ["--help"]).exit_code
0
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from halodb.errors import HaloDBError, RewindError
from halodb.util.textout import format_table, format_value, json_default
from halodb.util.version import VERSION

if TYPE_CHECKING:
    from datetime import datetime

    from halodb.api.registry import Registry

# Each command imports what it needs when it runs: `halodb --version` and `halodb at` do not
# pay for pyarrow, numpy, zarr, aiohttp or the codec's tables (tests/test_cli.py checks it).


class Context:
    def __init__(self, home: str | None, store: str | None, cache: str | None) -> None:
        self.home, self.store, self.cache = home, store, cache
        self._reg: Registry | None = None

    def registry(self, create: bool = False) -> Registry:
        if self._reg is None:
            import halodb.api.registry

            self._reg = halodb.api.registry.open(self.home, store=self.store, cache=self.cache, create=create)
        return self._reg

    def close(self) -> None:
        if self._reg is not None:
            self._reg.close()


pass_ctx = click.make_pass_decorator(Context)


class FiniteFloat(click.FloatRange):
    """A number option within a range and finite: click's FloatRange lets ``nan`` and ``inf`` through.

    >>> FiniteFloat(min=0).convert("1e400", None, None)
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: '1e400' is not a finite number.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


SECONDS = FiniteFloat(min=0, min_open=True)  #: a positive, finite number of seconds
MEGABYTES = FiniteFloat(min=0)  #: a finite number of MiB, 0 or more


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=json_default, ensure_ascii=False))


def emit_report(report: Any, as_json: bool) -> None:
    """Print a report (``to_dict()`` with ``--json``, else its ``lines()``); exit 1 unless ``report.ok``."""
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", envvar="HALODB_HOME", type=click.Path(file_okay=False), help="Registry home [env HALODB_HOME; default ~/.local/share/halodb].")
@click.option("--store", envvar="HALODB_STORE", help="Block-store URL [env HALODB_STORE; default: the local store in the home].")
@click.option("--cache", envvar="HALODB_CACHE", type=click.Path(dir_okay=False), help="DuckDB cache file [env HALODB_CACHE; default HOME/cache.duckdb].")
@click.version_option(VERSION, prog_name="halodb")
@click.pass_context
def cli(ctx: click.Context, home: str | None, store: str | None, cache: str | None) -> None:
    """HaloDB: a versioned registry of field-campaign datasets, stored on IPFS, queried with SQL."""
    from halodb.util.switches import check_switches

    check_switches()  # (a bad HALODB_NATIVE or HALODB_SYNC_WORKER: exit 2 whatever the command)
    obj = Context(home, store, cache)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


@cli.command()
@pass_ctx
def init(ctx: Context) -> None:
    """Create a registry in the home folder (idempotent)."""
    reg = ctx.registry(create=True)
    click.echo(f"registry ready in {reg.home}")


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--collection", "-c", help="Collection of the items (overrides the item's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the staged keys as JSON.")
@pass_ctx
def add(ctx: Context, sources: tuple[str, ...], collection: str | None, as_json: bool) -> None:
    """Stage STAC items: JSON files, folders, or - for newline-delimited JSON on stdin."""
    from halodb import stac

    from halodb.util.progress import Progress

    reg = ctx.registry()
    with Progress("adding", quiet=as_json) as bar:
        keys = reg.add(stac.read_items(list(sources), sys.stdin, prepared=True), collection=collection,
                       progress=bar.update)
    if as_json:
        emit_json({"staged": keys})
    else:
        click.echo(f"staged {len(keys)} item(s)")
        if not keys:  # an empty folder or an empty stdin: most likely not what was meant
            where = ", ".join("standard input" if s == "-" else s for s in sources)
            click.echo(f"halodb: warning: no STAC items found in {where}", err=True)


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@pass_ctx
def rm(ctx: Context, keys: tuple[str, ...]) -> None:
    """Stage the removal of datasets by key (collection/item-id)."""
    removal = ctx.registry().remove(keys)  # (a key given twice is removed once)
    said = []
    if removal.removed:
        said.append(f"staged removal of {len(removal.removed)} dataset(s)")
    if removal.unstaged:
        said.append(f"unstaged {len(removal.unstaged)} added item(s) that no version holds")
    if removal.already:
        said.append(f"{len(removal.already)} already staged for removal")
    click.echo("; ".join(said))


@cli.command()
@pass_ctx
def reset(ctx: Context) -> None:
    """Empty the stage: forget every staged add and removal (the versions are untouched)."""
    reg = ctx.registry()
    with reg.locked("reset"):
        upserts, removals = reg.stage_counts()
        reg.reset_stage()
    click.echo(f"unstaged {upserts} item(s) and {removals} removal(s)")


@cli.command()
@click.option("-m", "--message", required=True, help="What this version changes.")
@click.option("--time", "when", help="Version time (ISO 8601; default now, UTC). May not go backwards.")
@click.option("--author", help="Author [env HALODB_AUTHOR; default user@host].")
@click.option("--sign", "sign", multiple=True, envvar="HALODB_SIGN", metavar="KEY",
              help="Sign with the home's key KEY (repeatable) [env HALODB_SIGN]; with $HALODB_SIGNING_KEY_FILE "
                   "the key is read from that file.")
@click.option("--add-key", multiple=True, metavar="DID", help="Allow this did:key to sign later versions (repeatable).")
@click.option("--retire-key", multiple=True, metavar="DID", help="Stop allowing this did:key to sign later versions.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def commit(ctx: Context, message: str, when: str | None, author: str | None, sign: tuple[str, ...],
           add_key: tuple[str, ...], retire_key: tuple[str, ...], as_json: bool) -> None:
    """Commit the staged changes as a new version; prints the commit CID."""
    from halodb.util.progress import Progress

    with Progress("committing", total=3, unit="step", quiet=as_json) as bar:
        cid = ctx.registry().commit(message, time=when, author=author, sign=sign, add_keys=add_key,
                                    retire_keys=retire_key, progress=lambda step, what: bar.update(step, f"committing: {what}"))
        bar.update(3)
    if as_json:
        emit_json({"commit": str(cid)})
    else:
        click.echo(str(cid))


@cli.command()
@click.argument("name")
@click.option("--cid", "target", help="Commit to publish (default: the local head).")
@click.option("--force", is_flag=True,
              help="Publish even a commit that does not descend from NAME's current target (a rollback, or "
                   "another history), discarding the versions it lacks; says on stderr what it discarded.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def publish(ctx: Context, name: str, target: str | None, force: bool, as_json: bool) -> None:
    """Point NAME at the head commit (or --cid).

    A commit that does not descend from NAME's current target is refused (exit 2, naming the
    current target and how many versions would be discarded) unless --force.
    """
    def discarded(refusal: RewindError) -> None:
        lost = (f"{refusal.discarded} version{'' if refusal.discarded == 1 else 's'}"
                if refusal.discarded is not None else "an unknown number of versions")
        how = (f"{refusal.behind} version{'' if refusal.behind == 1 else 's'} back" if refusal.behind is not None
               else "to another history")
        click.echo(f"halodb: warning: --force: {name} moved from {refusal.current} to {refusal.head} ({how}), "
                   f"discarding {lost}", err=True)

    res = ctx.registry().publish(name, target, force=force, on_rewind=discarded)
    # an IPNS key name (ipns://campaign) is the publisher's; readers need the key's IPNS name (ipns://k51…)
    key = res.source.split(" ", 1)[0][len("ipns:"):] if res.source.startswith("ipns:") else None
    readers = f"ipns://{key}" if key and f"ipns://{key}" != name else None
    if as_json:
        emit_json({"name": name, "cid": str(res.cid), **({"ipns": readers} if readers else {})})
    else:
        click.echo(f"{name} -> {res.cid}" + (f"  (readers resolve {readers})" if readers else ""))


@cli.command()
@click.argument("ref", default="HEAD")
@click.option("-n", "--limit", type=click.IntRange(min=0), help="Show at most this many versions.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def log(ctx: Context, ref: str, limit: int | None, as_json: bool) -> None:
    """History of a name (or CID, or HEAD): CID, time, author, message, +added ~changed -removed.

    A data CID only respelled (Qm… to the bafy… of the same multihash, nothing else changed)
    is not a change: it is counted apart, as "N respelled"."""
    from halodb.index.signing import valid_signers

    rows = []
    for e in ctx.registry().log(ref, limit=limit):
        signers = valid_signers(e.commit)
        if as_json:
            rows.append({
                "cid": str(e.cid), "time": e.commit.time, "author": e.commit.author, "message": e.commit.message,
                "added": e.added, "changed": e.changed, "removed": e.removed, "respelled": e.respelled,
                "datasets": e.count,
                "signed_by": signers,
            })
        else:
            respelled = f"; {e.respelled} respelled" if e.respelled else ""
            click.echo(
                f"{e.cid}  {e.commit.time:%Y-%m-%d %H:%M:%S}Z  {e.commit.author}  "
                f"+{e.added} ~{e.changed} -{e.removed}  ({e.count}{respelled})  {e.commit.message}"
            )
            for did in signers:
                click.echo(f"    signed by {did}")
    if as_json:
        emit_json(rows)


def _rebuilt(reset: bool, previous: str | None) -> str:
    if not reset:
        return ""
    return " (rewound: full rebuild)" if previous else " (rebuilt: the cache held another part of the index)"


def _sync(ctx: Context, name: str, as_json: bool, allow_rewind: bool, prefix: str | None = None) -> None:
    from halodb.util.progress import Progress

    with Progress(f"syncing {name}", quiet=as_json) as bar:
        r = ctx.registry().sync(name, allow_rewind=allow_rewind, prefix=prefix, progress=bar.update)
    for s in r.skipped:  # item blocks the cache could not materialize (issue 10, defect 4)
        click.echo(f"skipped {s.key} ({s.item_cid}{'' if s.current else ', an older version'}): {s.reason}", err=True)
    if as_json:
        emit_json({
            "name": r.name, "head": str(r.head), "previous": r.previous, "commits": r.commits,
            "changes": r.changes, "respelled": r.respelled, "reset": r.reset, "blocks_read": r.blocks_read,
            "scope": prefix,
            "skipped": [{"key": s.key, "item_cid": s.item_cid, "reason": s.reason, "commit": s.commit,
                         "current": s.current} for s in r.skipped],
        })
    elif r.up_to_date:
        click.echo(f"{name} is up to date at {r.head}")
    else:
        click.echo(
            f"synced {name}{'' if prefix is None else f' (keys {prefix}*)'} to {r.head}: {r.commits} version(s), "
            f"{r.changes} change(s){f' ({r.respelled} respelled)' if r.respelled else ''}, {r.blocks_read} block(s) "
            f"read{_rebuilt(r.reset, r.previous)}"
        )


@cli.command("sync")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --watch: one JSON object per event).")
@click.option("--watch", is_flag=True, help="Keep running: re-sync whenever NAME moves (polls as its TTL allows).")
@click.option("--min-interval", type=SECONDS, default=5.0, show_default=True, help="--watch: never poll more often (seconds).")
@click.option("--max-interval", type=SECONDS, default=3600.0, show_default=True, help="--watch: never poll less often (seconds).")
@click.option("--interval", type=SECONDS, default=60.0, show_default=True, help="--watch: the wait when NAME has no TTL (local names, IPNS through Kubo).")
@click.option("--cars", type=click.IntRange(min=0), envvar="HALODB_INITIAL_CARS", default=256, show_default=True,
              help="An initial sync over the network asks for up to this many subtree CARs (1: the whole index "
                   "as one CAR, fastest from a gateway that holds the blocks; 0: block by block) [env HALODB_INITIAL_CARS].")
@click.option("--allow-rewind", is_flag=True,
              help="Follow NAME even to a version that does not descend from the synced one (moved back, or "
                   "another history): the cache is rebuilt at it. Without it such a sync is refused (exit 2).")
@click.option("--collection", help="Materialize only this collection's datasets (with their whole history).")
@click.option("--prefix", help="Materialize only the datasets whose keys start with PREFIX (collection/id..., e.g. "
                                "orcestra/products/HALO/).")
@pass_ctx
def sync_cmd(ctx: Context, name: str, as_json: bool, watch: bool, min_interval: float, max_interval: float,
             interval: float, cars: int, allow_rewind: bool, collection: str | None, prefix: str | None) -> None:
    """Resolve NAME, fetch what is missing, and materialize it into the DuckDB cache.

    A version of NAME that does not descend from the one last synced (a rollback) is refused
    with the cache unchanged, unless --allow-rewind.

    With --watch it keeps doing so whenever NAME moves, logging each transition (started,
    synced, failed, recovered), backing off when the resolver fails or NAME moved back,
    until interrupted. Other processes can run `halodb sql` on the cache meanwhile.

    With --collection or --prefix only part of the index is materialized (a partial sync:
    only the subtrees holding it are fetched); asking for another part rebuilds the name.
    """
    from halodb.errors import InputError

    if collection is not None and prefix is not None:
        raise InputError("--collection and --prefix: give one (a collection C is the prefix C/)", source="--prefix")
    if collection is not None:
        if not collection or "/" in collection:
            raise InputError(f"--collection: {collection!r} is not a collection name (one word, no '/'; "
                             "for a part of a collection use --prefix COLLECTION/PATH/)", source="--collection")
        prefix = collection + "/"
    if prefix is not None and not prefix:
        raise InputError("--prefix: empty (leave it out to sync the whole index)", source="--prefix")
    ctx.registry().prefetch_spread = cars
    if not watch:
        _sync(ctx, name, as_json, allow_rewind, prefix)
        return
    import signal
    import threading

    from halodb.api.watch import WatchEvent, WatchPolicy
    from halodb.api.watch import watch as run_watch

    policy = WatchPolicy(floor=min_interval, ceiling=max_interval, default=interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def report(event: WatchEvent) -> None:
        if as_json:
            click.echo(json.dumps({"event": event.kind, "name": event.name, "time": event.time, "cid": event.cid,
                                   "ttl": event.ttl, "next_check_s": event.wait, "detail": event.detail},
                                  default=json_default))
        else:
            click.echo(str(event))
        sys.stdout.flush()

    try:
        run_watch(ctx.registry(), name, policy=policy, on_event=report, stop=stop, allow_rewind=allow_rewind,
                  prefix=prefix)
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("name")
@click.option("--nameserver", envvar="HALODB_NAMESERVER", help="DNS server HOST:PORT, comma-separated for several [env HALODB_NAMESERVER; default: the system's].")
@click.option("--timeout", type=SECONDS, envvar="HALODB_DNS_TIMEOUT", help="Seconds to wait for DNS [env HALODB_DNS_TIMEOUT; default 5].")
@click.option("--doh", envvar="HALODB_DOH", help="Ask this DNS-over-HTTPS URL instead of a nameserver [env HALODB_DOH].")
@click.option("--json", "as_json", is_flag=True, help="Also every link per namespace with its TTL, and the rejected entries with why.")
@click.option("--links", "spec_links", is_flag=True,
              help="The DNSLink spec's lookup of the domain NAME (dnslink:DOMAIN): every link per namespace exactly "
                   "as found, and the log (FALLBACK, INVALID_ENTRY); no CID is chosen. With --json, the reference "
                   "implementations' JSON ({\"links\", \"txtEntries\", \"log\"}, or {\"error\": {\"code\": \"DNS_RCODE_2\"...}} and exit 2).")
@pass_ctx
def resolve(ctx: Context, name: str, nameserver: str | None, timeout: float | None, doh: str | None, as_json: bool,
            spec_links: bool) -> None:
    """Resolve NAME to a CID: a DNSLink domain (dnslink:DOMAIN, ipns://DOMAIN), a local name, or a CID."""
    from halodb.naming.dnsclient import ResolverConfig

    dns = ResolverConfig.from_env(nameserver=nameserver, timeout=timeout, doh=doh)
    if spec_links:
        from halodb.naming.dnslink import DNSLinkResolver

        found = DNSLinkResolver(dns).links(name)
        if as_json:
            emit_json(found.to_json())
        elif found.failure is None:
            click.echo(f"record: {found.record} (ttl {found.ttl if found.ttl is not None else '-'})")
            for ns in sorted(found.links):
                for link in found.links[ns]:
                    click.echo(f"link:   /{ns}/{link.identifier}")
            for entry in found.log:
                click.echo(f"log:    {entry.code}" + (f" {entry.reason} {entry.entry!r}" if entry.entry is not None else ""))
        found.check()
        return
    out = ctx.registry().names.explain(name, dns=dns)
    if as_json:
        emit_json(out)
        return
    click.echo(out["cid"])
    click.echo(f"ttl:    {out['ttl'] if out['ttl'] is not None else '-'}")
    click.echo(f"chain:  {' -> '.join(out['chain']) or '-'}")
    click.echo(f"source: {out['source']}")
    for note in out.get("notes", []):
        click.echo(f"note:   {note}")
    if out.get("rejected"):
        click.echo(f"rejected: {len(out['rejected'])} malformed dnslink= entr{'y' if len(out['rejected']) == 1 else 'ies'} (see --json)")


@cli.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_ctx
def sql(ctx: Context, query: str, fmt: str, as_json: bool) -> None:
    """Run SQL on the cache: tables items, item_versions, commits, stac_items; macro items_at(TIMESTAMP)."""
    from halodb.api.location import where
    from halodb.errors import InputError

    cache = where(ctx.home, ctx.store, ctx.cache).cache
    if not cache.exists():  # a typo in --home, or nothing synced yet: not an empty answer
        raise InputError(f"no cache at {cache}: `halodb sync NAME` materializes a name there first "
                         "(or is --home / HALODB_HOME mistyped?)", source=str(cache))
    columns, rows = ctx.registry().sql(query)
    if as_json:
        fmt = "json"
    if fmt == "json":
        emit_json([dict(zip(columns, r)) for r in rows])
    elif fmt == "csv":
        buf = io.StringIO()
        # quoted as RFC 4180 says, lines ended by LF (as DuckDB's and SQLite's shells do): a
        # script that captures one value with $(...) gets no trailing CR
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([format_value(v) for v in r])
        click.echo(buf.getvalue(), nl=False)
    else:
        for line in format_table(columns, rows):
            click.echo(line)
        click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


@cli.command()
@click.argument("key_or_path")
@click.option("--at", "when", metavar="T", help="The version current at T (ISO 8601; default: the newest).")
@click.option("--name", help="Name whose history to ask (default: the local head).")
@click.option("--version", "commit", metavar="COMMIT", help="The version with this commit CID (instead of --at).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def show(ctx: Context, key_or_path: str, when: str | None, name: str | None, commit: str | None, as_json: bool) -> None:
    """Summarize a dataset as it was at a version: dimensions, coordinates with their ranges,
    variables with units, attributes, and which version and data CID it is.

    KEY_OR_PATH is a dataset key, its path in the campaign tree, a halodb:// URL, or
    ipfs://CID[/PATH] (bytes by their CID, outside any version).
    """
    from halodb.data import locate_dataset
    from halodb.data.locate import by_cid, is_cid_url, not_in_this_home
    from halodb.data.summary import render, summarize

    from halodb.errors import BlockNotFoundError

    reg = ctx.registry()
    try:
        if is_cid_url(key_or_path):
            data_cid, data_path = by_cid(key_or_path, versioned=(when, name, commit) != (None, None, None))
            summary = summarize(reg, None, data_cid=data_cid, data_path=data_path)
        else:
            summary = summarize(reg, locate_dataset(reg, key_or_path, at=when, name=name, version=commit))
    except BlockNotFoundError as exc:
        raise not_in_this_home(exc, reg, "--store https://GATEWAY/ or --store kubo+http://HOST:5001") from None
    if as_json:
        emit_json(summary)
    else:
        click.echo(render(summary))


@cli.command()
@click.argument("key_or_path")
@click.option("--at", "when", metavar="T", help="The version current at T (ISO 8601; default: now).")
@click.option("--name", help="Name whose history to prove from (default: the local head).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The proof CAR to write.")
@pass_ctx
def prove(ctx: Context, key_or_path: str, when: str | None, name: str | None, output: str) -> None:
    """Write a proof that KEY_OR_PATH had its data CID in the version current at T: a small CAR
    anyone can check offline with `halodb verify`."""
    from halodb.index.proof import verify_proof

    blocks = ctx.registry().prove(key_or_path, when, output, name or "HEAD")
    answer = verify_proof(output)
    click.echo(f"{output}: {blocks} blocks, {Path(output).stat().st_size} bytes; "
               f"{answer.key or key_or_path} -> {answer.data or '(no such dataset)'} in {answer.version}")


@cli.command()
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--trust", "policy_file", type=click.Path(dir_okay=False),
              help="A trust policy file ({\"keys\": [did:key...], \"threshold\": K}): the head must be signed by it.")
@click.option("--json", "as_json", is_flag=True)
def verify(proof: str, policy_file: str | None, as_json: bool) -> None:
    """Check a proof offline (no home, no network); print what it proves. Exit 2 if it does not."""
    from halodb.api.trust import load_policy_file
    from halodb.index.proof import verify_proof

    policy = load_policy_file(Path(policy_file))[1] if policy_file else None
    a = verify_proof(proof, policy)
    info = {"key_or_path": a.key_or_path, "at": a.at, "dataset": a.key, "data": a.data,
            "item": str(a.item) if a.item else None, "version": str(a.version), "version_time": a.time,
            "head": str(a.head), "signed_by": a.signers, "trusted": policy is not None, "blocks": a.blocks}
    if as_json:
        emit_json(info)
        return
    click.echo(f"{a.key or a.key_or_path} at {a.at:%Y-%m-%dT%H:%M:%SZ}: {a.data or '(no such dataset)'}")
    click.echo(f"version {a.version} ({a.time:%Y-%m-%dT%H:%M:%SZ}) of head {a.head}")
    click.echo("signed by " + (", ".join(a.signers) if a.signers else "nobody") + (" (trusted)" if policy else ""))


@cli.command()
@click.argument("key_or_path")
@click.option("--at", "when", metavar="T", help="The version current at T (ISO 8601; default: the newest).")
@click.option("--name", help="Name whose history to ask (default: the local head).")
@click.option("--version", "commit", metavar="REF", help="This version (a commit CID, HEAD~1, NAME~2...) instead of --at.")
@click.option("--json", "as_json", is_flag=True, help="Accepted for symmetry: get always prints JSON.")
@pass_ctx
def get(ctx: Context, key_or_path: str, when: str | None, name: str | None, commit: str | None,
        as_json: bool) -> None:
    """Print the STAC item of a dataset (by key or path) as it was at a version, as JSON.

    Read from the blocks (verified), not from the cache: no sync is needed.
    """
    if commit is not None and (when is not None or name is not None):
        raise click.UsageError("--version names the version itself: give it without --at and --name")
    ref = commit if commit is not None else (name or "HEAD") + (f"@{when}" if when is not None else "")
    _, _, item = ctx.registry().get(key_or_path, ref)
    emit_json(item)


@cli.command()
@click.argument("key_or_path")
@click.argument("when", required=False)
@click.option("--name", help="Name whose history to ask (default: the local head).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def at(ctx: Context, key_or_path: str, when: str | None, name: str | None, as_json: bool) -> None:
    """Print the data CID KEY_OR_PATH had at WHEN (ISO 8601, or a tag: v1.0); exit 1 if it had none.

    With doi:DOI instead, the data CID the DOI was minted for (the dataset's data in the
    first version that had the DOI; WHEN, if given, ends the history asked).

    With - instead, many questions in one process: each line of standard input is
    KEY_OR_PATH and WHEN (separated by a tab, or by the last space), and each answer is a
    line: the CID, or an empty line for none or for a blank line (with --json, a JSON object
    per question); exit 0 whether or not every question has an answer."""
    if key_or_path == "-":
        if when is not None:
            raise click.UsageError("with - the questions come from standard input: no WHEN argument")
        _at_many(ctx, name, as_json)
        return
    if key_or_path[:4].lower() == "doi:":
        _at_doi(ctx, key_or_path, when, name, as_json)
        return
    if when is None:
        raise click.UsageError("Missing argument 'WHEN'.")
    asked = key_or_path.strip("/") or key_or_path  # a path written /products/x.zarr/ is products/x.zarr
    cid = _answer_at(ctx, asked, when, name)
    _print_at(key_or_path, when, cid, as_json, None if cid is not None else _why_no_cid(ctx, asked, when, name))


def _answer_at(ctx: Context, key_or_path: str, when: str, name: str | None) -> str | None:
    """The data CID ``halodb at KEY_OR_PATH WHEN [--name NAME]`` answers (None: none); for
    ``doi:DOI``, the data it was minted for in the history up to WHEN."""
    from halodb.api.lookup import cid_at_in_home
    from halodb.util.times import to_time

    if key_or_path[:4].lower() == "doi:":
        minted = ctx.registry().resolve_doi(key_or_path[4:], (name or "HEAD") + (f"@{when}" if when else ""))
        return minted.data if minted is not None else None
    if when[:1].isalpha():  # a tag (v1.0): the version it names
        from halodb.index.model import is_tag_name

        if is_tag_name(when):
            from halodb.errors import InputError, NameNotFoundError

            reg = ctx.registry()
            try:
                version = reg.version(f"{name or 'HEAD'}@{when}")[1]
            except NameNotFoundError as exc:
                raise InputError(f"date: {when!r} is neither an ISO 8601 date-time (e.g. 2024-09-15T00:00Z) "
                                 f"nor a tag of {name or 'HEAD'} ({exc})", source="date") from None
            found = reg.index.resolve(reg.index.load_root(version.index), key_or_path)
            return None if found is None else found[1].data
    t = to_time(when, what="date")
    answered, cid = cid_at_in_home(ctx.home, ctx.store, ctx.cache, name, key_or_path, t) if name else (False, None)
    if not answered:  # not synced, or synced at another head: the registry asks the DAG
        cid = ctx.registry().cid_at(key_or_path, t, name=name)
    return cid


#: questions `at -` takes from one standard input (about 100 MB of lines)
MAX_AT_QUESTIONS = 1_000_000


def _at_many(ctx: Context, name: str | None, as_json: bool) -> None:
    """``halodb at -``: every question of standard input, the cache (or registry) opened once."""
    from halodb.api.lookup import cids_at_in_home
    from halodb.errors import InputError
    from halodb.index.model import is_tag_name
    from halodb.util.times import to_time

    lines: list[tuple[str, str] | None] = []  # per input line: (key, when), None for a blank one
    questions: list[tuple[str, datetime]] = []  # the lines with a time, for the cache
    for number, line in enumerate(sys.stdin, 1):
        if number > MAX_AT_QUESTIONS:
            raise InputError(f"stdin: more than {MAX_AT_QUESTIONS} questions; split them", source="stdin")
        line = line.strip()
        if not line:
            lines.append(None)
            continue
        key, sep, when = line.partition("\t") if "\t" in line else line.rpartition(" ")
        key, when = key.strip(), when.strip()
        if not sep and line[:4].lower() == "doi:":  # doi:DOI alone, as `halodb at doi:DOI` takes it
            lines.append((line, ""))
            continue
        key = key.strip("/") or key  # as `halodb at` takes a path: /products/x.zarr/ is products/x.zarr
        if not sep or not key or not when:
            raise InputError(f"stdin line {number}: expected KEY_OR_PATH and WHEN, got {line[:80]!r}", source="stdin")
        lines.append((key, when))
        if key[:4].lower() == "doi:" or (when[:1].isalpha() and is_tag_name(when)):
            continue  # answered one by one below, as `halodb at KEY WHEN` answers it
        questions.append((key, to_time(when, what=f"stdin line {number}: date")))
    answers = cids_at_in_home(ctx.home, ctx.store, ctx.cache, name, questions) if name else None
    if answers is None:  # not synced, or synced at another head: the registry asks the DAG
        reg = ctx.registry()
        answers = [reg.cid_at(key, t, name=name) for key, t in questions]
    timed = iter(answers)
    out: list[str] = []  # every answer before the first is printed: a bad line prints nothing
    for number, question in enumerate(lines, 1):
        if question is None:
            out.append("")
            continue
        key, when = question
        if key[:4].lower() == "doi:" or (when[:1].isalpha() and is_tag_name(when)):
            try:
                cid = _answer_at(ctx, key, when, name)
            except HaloDBError as exc:
                raise InputError(f"stdin line {number}: {_one_line(str(exc))}", source="stdin") from None
        else:
            cid = next(timed)
        out.append(json.dumps({"key_or_path": key, "when": when, "cid": cid}) if as_json else (cid or ""))
    if out:
        click.echo("\n".join(out))


def _print_at(key_or_path: str, when: str, cid: str | None, as_json: bool, why: str | None = None) -> None:
    if as_json:
        emit_json({"key_or_path": key_or_path, "when": when, "cid": cid, **({"why": why} if cid is None else {})})
    elif cid is not None:
        click.echo(cid)
    else:
        click.echo(f"{key_or_path} had no data CID at {when}" + (f": {why}" if why else ""), err=True)
    if cid is None:
        sys.exit(1)


def _why_no_cid(ctx: Context, key_or_path: str, when: str, name: str | None) -> str:
    """Why ``halodb at`` has no answer: no version that old, no such dataset in the version
    current then, or a dataset whose item names no data (asked only when there is no answer)."""
    from halodb.errors import NameNotFoundError
    from halodb.util.times import format_time

    reg = ctx.registry()
    ref = name or "HEAD"
    try:
        version, commit = reg.version(f"{ref}@{when}")
    except NameNotFoundError:
        return f"{ref} has no version at or before it"
    then = f"the version of {ref} current then ({version}, {format_time(commit.time)})"
    hit = reg.index.resolve(reg.index.load_root(commit.index), key_or_path)
    if hit is None:
        return f"no dataset with that key or path in {then}"
    return f"its item in {then} names no data (no ipfs:// asset)"


def _at_doi(ctx: Context, doi: str, when: str | None, name: str | None, as_json: bool) -> None:
    ref = (name or "HEAD") + (f"@{when}" if when is not None else "")
    found = ctx.registry().resolve_doi(doi[4:], ref)
    cid = found.data if found is not None else None
    if as_json:
        emit_json({"doi": doi[4:], "cid": cid, **({} if found is None else found.to_dict())})
    elif cid is not None:
        click.echo(cid)
    elif found is not None:
        click.echo(f"{doi}: dataset {found.key} had no data CID in version {found.commit}", err=True)
    else:
        click.echo(f"{doi}: no dataset of {ref} ever had this DOI", err=True)
    if cid is None:
        sys.exit(1)


@cli.command()
@click.argument("old")
@click.argument("new", default="HEAD")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def diff(ctx: Context, old: str, new: str, as_json: bool) -> None:
    """Changes between two versions (CIDs, names, NAME@DATETIME, HEAD).

    A data CID only respelled (Qm… to the bafy… of the same multihash, nothing else changed)
    is the same content: marked = and not counted as a change."""
    reg = ctx.registry()
    changes = [(c, reg.is_respelled(c)) for c in reg.diff(old, new)]
    if as_json:
        emit_json([
            {"key": c.key, "change": "respelled" if respelled else c.kind,
             "old": None if c.old is None else {"item": str(c.old.item), "data": c.old.data, "path": c.old.path},
             "new": None if c.new is None else {"item": str(c.new.item), "data": c.new.data, "path": c.new.path}}
            for c, respelled in changes
        ])
        return
    sign = {"added": "+", "changed": "~", "removed": "-"}
    for c, respelled in changes:
        detail = ""
        if c.kind == "changed" and c.old.data != c.new.data:
            detail = f"  {c.old.data} -> {c.new.data}"
        elif c.kind != "changed":
            detail = f"  {(c.new or c.old).data}"
        click.echo(f"{'=' if respelled else sign[c.kind]} {c.key}{detail}")
    respellings = sum(respelled for _, respelled in changes)
    click.echo(f"{len(changes) - respellings} change(s)" + (f", {respellings} respelled" if respellings else ""), err=True)


@cli.command("export-car")
@click.argument("ref")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--head-only", is_flag=True, help="Only the given version, not its history.")
@click.option("--json", "as_json", is_flag=True, help='{"root", "blocks", "path"} as JSON.')
@pass_ctx
def export_car(ctx: Context, ref: str, out: str, head_only: bool, as_json: bool) -> None:
    """Write a version (and its history) as a CARv1 file rooted at its commit."""
    root, count = ctx.registry().export_car(ref, out, history=not head_only)
    if as_json:
        emit_json({"root": str(root), "blocks": count, "path": out})
    else:
        click.echo(f"wrote {count} block(s) rooted at {root} to {out}")


@cli.command("import-car")
@click.argument("car", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help='{"roots", "imported"} as JSON (no progress bar).')
@pass_ctx
def import_car(ctx: Context, car: str, as_json: bool) -> None:
    """Verify a CAR file completely, then add its blocks to the store; prints its roots."""
    from halodb.util.progress import Progress

    written = 0

    def progress(done: int) -> None:
        nonlocal written
        written = done
        bar.update(done)

    with Progress("importing", unit="block", quiet=as_json) as bar:
        roots = ctx.registry().import_car(car, progress=progress)
    if as_json:
        emit_json({"roots": [str(r) for r in roots], "imported": written})
        return
    for r in roots:
        click.echo(str(r))


@cli.command("import-tree")
@click.argument("tree", type=click.Path(dir_okay=False))
@click.option("--time", "when", help="Version time (default now). Ignored for a history file.")
@click.option("-m", "--message", help="Commit message.")
@click.option("--collection", default="orcestra", show_default=True, help="Collection for the datasets.")
@pass_ctx
def import_tree(ctx: Context, tree: str, when: str | None, message: str | None, collection: str) -> None:
    """Commit a campaign tree.yaml as the new dataset set (a .jsonl history: every version)."""
    from halodb.campaign import load_tree, load_tree_history

    reg = ctx.registry()
    path = Path(tree)
    if path.suffix in (".jsonl", ".ndjson"):
        n, skipped, cid = reg.import_tree_history(load_tree_history(path), collection=collection)
        already = f" ({skipped} imported before, skipped)" if skipped else ""
        click.echo(f"imported {n} version(s){already}; head {cid}")
    else:
        cid = reg.import_tree(load_tree(path), time=when, message=message, collection=collection)
        click.echo(str(cid))


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def gc(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Delete local blocks no head reaches (local head, names, synced names, the stage; the
    index and, as far as they are local, the datasets' data), and temporary files of killed writes."""
    kept, deleted = ctx.registry().gc(dry_run=dry_run)
    if as_json:
        emit_json({"kept": kept, "deleted": deleted, "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"kept {kept} block(s), {verb} {deleted}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Local head, staged changes, and per synced name its head and whether the cache is current."""
    reg = ctx.registry()
    upserts, removals = reg.stage_counts()
    names: list[dict[str, Any]] = []
    for st in reg.queries.sync_states() if reg.cache_path.exists() else []:  # (read-only: a shared home too)
        try:
            current = str(reg.resolve(st.name))
        except HaloDBError:
            current = None
        checkpoint = reg.trust.checkpoint(st.name) if reg.trust.policy(st.name) is not None else None
        names.append({"name": st.name, "synced_head": st.head, "synced_at": st.synced_at,
                      "current_head": current, "up_to_date": current == st.head, "scope": st.scope,
                      "signed_by": list(checkpoint.signers) if checkpoint is not None and checkpoint.head == st.head
                      else None})
    info = {"home": str(reg.home), "head": str(reg.head) if reg.head else None,
            "staged": {"upserts": upserts, "removals": removals}, "names": names}
    if as_json:
        emit_json(info)
        return
    click.echo(f"home:   {info['home']}\nhead:   {info['head'] or '(no commits)'}")
    click.echo(f"staged: {upserts} upsert(s), {removals} removal(s)")
    for n in names:
        flag = "current" if n["up_to_date"] else f"behind (name now at {n['current_head']})"
        part = "" if n["scope"] is None else f" (only keys {n['scope']}*)"
        click.echo(f"name {n['name']}{part}: synced {n['synced_head']} at {n['synced_at']:%Y-%m-%d %H:%M:%S}Z — {flag}")
        if n["signed_by"]:
            click.echo(f"  signed by {', '.join(n['signed_by'])} (trusted)")


@cli.command()
@click.argument("folder")
@click.option("--max-coordinate-mb", type=MEGABYTES, default=128.0, show_default=True, help="Refuse to load more coordinate data (time, lat, lon) than this.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def check(ctx: Context, folder: str, max_coordinate_mb: float, as_json: bool) -> None:
    """Check a dataset (Zarr store or dataset_meta.yaml): what is missing or wrong, per attribute.

    FOLDER is a local folder (before upload) or a dataset on IPFS: CID, ipfs://CID/path or
    /ipfs/CID/path, read through the store (--store).
    Exit 0 when the dataset has no errors (warnings allowed), 1 when it has errors.
    """
    from halodb.scan.extract import check as check_dataset
    from halodb.filetree import LocalTree, Tree

    limit = int(max_coordinate_mb * 2**20)
    tree: Tree
    if Path(folder).is_dir():
        where = Path(folder).resolve()
        tree, path = LocalTree(where.parent), where.name
    elif Path(folder).exists():
        raise click.BadParameter(f"{folder} is a file: give a dataset folder", param_hint="FOLDER")
    else:
        from halodb.scan.roots import parse_root, resolve_root
        from halodb.unixfs import UnixFSTree

        if parse_root(folder).cid is None:
            raise click.BadParameter(f"{folder}: no such folder, and not a CID or ipfs://CID/path", param_hint="FOLDER")
        store = ctx.registry().store
        root = resolve_root(store, folder)
        tree, path = UnixFSTree(store, root.top), root.subpath
    report = check_dataset(tree, path, max_coordinate_bytes=limit)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(str(report))
        for key, value in report.found.items():
            click.echo(f"  found    {key}: {value if not isinstance(value, list) else ', '.join(map(str, value))}")
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("root")
@click.option("--prefix", help="Where ROOT sits in the campaign tree (default: the path of ipfs://CID/path, else the top).")
@click.option("--collection", "-c", help="Collection of every dataset (key COLLECTION/PATH); default: the key the path has, else its first folder.")
@click.option("--workers", type=click.IntRange(1, 256), default=8, show_default=True, help="Datasets read at once.")
@click.option("--retry-errors", is_flag=True, help="Read datasets again whose errors are cached.")
@click.option("--no-remove", is_flag=True, help="Keep datasets under the prefix that the tree no longer holds.")
@click.option("--max-coordinate-mb", type=MEGABYTES, default=128.0, show_default=True, help="Per dataset: refuse to load more coordinate data than this.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def scan(ctx: Context, root: str, prefix: str | None, collection: str | None, workers: int, retry_errors: bool,
         no_remove: bool, max_coordinate_mb: float, as_json: bool) -> None:
    """Find the datasets in a UnixFS tree (CID, ipfs://CID/path, or a name), describe and stage them.

    Results are cached by dataset CID: a re-scan reads only what changed. Datasets gone
    from the tree are staged for removal. Nothing is committed (`halodb commit` does).
    Exit 0 when every dataset was staged, 1 when some failed (the rest is staged).
    """
    reg = ctx.registry()
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total and sys.stderr.isatty():
            bar = click.progressbar(length=total, label="extracting", file=sys.stderr)
            bar.__enter__()
        if bar is not None:
            bar.update(done - bar.pos)

    try:
        report = reg.scan(root, prefix=prefix, collection=collection, workers=workers, progress=progress,
                          retry_errors=retry_errors, remove=not no_remove,
                          max_coordinate_bytes=int(max_coordinate_mb * 2**20))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    emit_report(report, as_json)


@cli.group()
def tree() -> None:
    """Campaign roots: build one from a tree.yaml in Kubo's MFS, or export the tree.yaml of one."""


def _kubo_url(ctx: Context) -> str:
    import os

    from halodb.errors import StoreURLError
    from halodb.naming.router import kubo_of

    url = kubo_of(ctx.store) or os.environ.get("HALODB_KUBO")
    if not url:
        raise StoreURLError("tree build needs a Kubo node: use --store kubo+http://HOST:PORT or set "
                            "HALODB_KUBO=kubo+http://HOST:PORT", url=ctx.store or "")
    return url


@tree.command("build")
@click.argument("tree_file", metavar="TREE.yaml", type=click.Path(exists=True, dir_okay=False))
@click.option("--pin", is_flag=True, help="Pin the root recursively (the node must hold every dataset).")
@click.option("--publish", "publish_name", metavar="NAME",
              help="Then point this DNSLink or IPNS name (dnslink:DOMAIN, ipns://KEY) at the root; implies --pin.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def tree_build(ctx: Context, tree_file: str, pin: bool, publish_name: str | None, as_json: bool) -> None:
    """Assemble TREE.yaml as one folder in the Kubo node's MFS; prints the root CID."""
    from halodb.campaign import load_tree
    from halodb.unixfs.mfs import build_tree

    mapping = load_tree(Path(tree_file))
    reg = ctx.registry() if publish_name else None
    if reg is not None and publish_name is not None:  # a bad name fails before anything is built
        reg.check_folder_name(publish_name)
    pin = pin or publish_name is not None  # a name never points at content nobody keeps
    root = build_tree(_kubo_url(ctx), mapping, pin=pin)
    if reg is not None and publish_name is not None:
        reg.publish_folder(publish_name, root)
    if as_json:
        emit_json({"root": str(root), "pinned": pin, "published": publish_name})
    else:
        click.echo(str(root))
        if publish_name:
            click.echo(f"published {publish_name} -> {root}", err=True)


@tree.command("export")
@click.argument("root")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@pass_ctx
def tree_export(ctx: Context, root: str, output: str | None) -> None:
    """Write the tree.yaml of a campaign root (CID, ipfs://CID/path or a name), down to its datasets."""
    import yaml

    from halodb.scan.roots import resolve_root
    from halodb.unixfs.mfs import export_tree

    reg = ctx.registry()
    found = resolve_root(reg.store, root, lambda name: reg.names.resolve(name).cid)
    text = yaml.safe_dump(export_tree(reg.store, found.cid), sort_keys=False, allow_unicode=True)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.group()
def export() -> None:
    """Write what the cache holds as files other tools read (a static STAC catalog, stac-geoparquet)."""


def _export_options(f: Any) -> Any:
    """The options every ``export`` command takes: which synced name, as of when, JSON output."""
    f = click.option("--json", "as_json", is_flag=True)(f)
    f = click.option("--at", "when", metavar="T",
                     help="Export the items as they were at T (ISO 8601; default: as synced).")(f)
    return click.option("--name", help="Synced name to export (default: the only synced one).")(f)


def _run_export(ctx: Context, kind: str, target: str, name: str | None, when: str | None, as_json: bool) -> None:
    """Pick the synced version, write it as ``kind`` (``stac`` or ``geoparquet``) to ``target``, report."""
    from halodb.export import export_geoparquet, export_static_stac, pick_source

    reg = ctx.registry()
    source = pick_source(reg, name, when)
    write = export_static_stac if kind == "stac" else export_geoparquet
    counts = write(reg, source, Path(target))
    if as_json:
        where = "folder" if kind == "stac" else "file"
        emit_json({where: target, "name": source.name, "commit": source.commit, **counts})
    else:
        click.echo(f"exported {counts['items']} item(s) in {counts['collections']} collection(s) of "
                   f"{source.describe()} to {target}")


@export.command("stac")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@_export_options
@pass_ctx
def export_stac(ctx: Context, folder: str, name: str | None, when: str | None, as_json: bool) -> None:
    """Write a self-contained static STAC catalog (relative links) of a synced name into DIR (new or empty)."""
    _run_export(ctx, "stac", folder, name, when, as_json)


@export.command("geoparquet")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False))
@_export_options
@pass_ctx
def export_geoparquet(ctx: Context, file: str, name: str | None, when: str | None, as_json: bool) -> None:
    """Write the items of a synced name as a new stac-geoparquet FILE (an existing FILE is refused)."""
    _run_export(ctx, "geoparquet", file, name, when, as_json)


@cli.command()
@click.argument("name", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; only this machine can connect unless you open it up (e.g. 0.0.0.0).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--watch", is_flag=True, help="Follow NAME: re-sync whenever it moves and answer from the new version.")
@click.option("--min-interval", type=SECONDS, default=5.0, show_default=True, help="--watch: never poll more often (seconds).")
@click.option("--max-interval", type=SECONDS, default=3600.0, show_default=True, help="--watch: never poll less often (seconds).")
@click.option("--interval", type=SECONDS, default=60.0, show_default=True, help="--watch: the wait when NAME has no TTL.")
@click.option("--gateway", default="https://ipfs.io", show_default=True, help="IPFS gateway the HTML pages link data to.")
@click.option("--deadline", type=SECONDS, default=10.0, show_default=True,
              help="Seconds a request's queries may run before they are stopped (503).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes answering requests, each with the whole history in memory: more use more cores "
                   "(and more memory) under many clients.")
@click.option("--pinning", is_flag=True,
              help="Also answer the IPFS Pinning Service API under /pins, pinning on the Kubo node --node; the "
                   "access token comes from HALODB_PINNING_TOKEN or --pinning-token-file, never the command line.")
@click.option("--node", "pinning_node", metavar="URL", envvar="HALODB_PINNING_NODE",
              help="--pinning: the Kubo node that pins (kubo+http://host:port) [env HALODB_PINNING_NODE].")
@click.option("--pinning-token-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="--pinning: a file holding the access token [env HALODB_PINNING_TOKEN_FILE].")
@click.option("--pinning-workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="--pinning: requests pinned at once.")
@click.option("--pin-timeout", type=SECONDS, default=600.0, show_default=True,
              help="--pinning: seconds one pin may take (fetching included) before its request fails.")
@pass_ctx
def serve(ctx: Context, name: str | None, host: str, port: int, watch: bool, min_interval: float, max_interval: float,
          interval: float, gateway: str, deadline: float, workers: int, pinning: bool, pinning_node: str | None,
          pinning_token_file: str | None, pinning_workers: int, pin_timeout: float) -> None:
    """Serve a synced name as a STAC API (with time travel and HTML pages) until interrupted.

    NAME defaults to the only synced name. Every endpoint also answers as of a date
    (?as_of=2024-09-15T00:00:00Z) or a version (/versions/COMMIT/...). With --watch the
    server syncs NAME whenever it moves and answers from the new version without dropping
    requests. With --pinning it is also an IPFS Pinning Service API (/pins) pinning on a Kubo
    node; with no name synced it serves that alone.
    """
    from halodb.api.watch import WatchEvent, WatchPolicy
    from halodb.serve import ServeConfig, ServeOptions, Snapshot
    from halodb.serve import serve as run_server
    from halodb.serve.pinning import PinningOptions, load_token

    pinning_options = None
    if pinning:
        if not pinning_node:
            raise click.UsageError("--pinning needs --node kubo+http://HOST:PORT (the Kubo node that pins)")
        pinning_options = PinningOptions(node=pinning_node, token=load_token(pinning_token_file),
                                         workers=pinning_workers, pin_timeout=pin_timeout)
    elif pinning_token_file or (pinning_node and click.get_current_context().get_parameter_source("pinning_node")
                                 == click.core.ParameterSource.COMMANDLINE):
        raise click.UsageError("--node and --pinning-token-file are options of --pinning")
    policy = WatchPolicy(floor=min_interval, ceiling=max_interval, default=interval)
    config = ServeConfig(host=host, port=port, watch=watch, policy=policy, workers=workers,
                         options=ServeOptions(deadline=deadline, gateway=gateway), pinning=pinning_options)

    def ready(url: str, snap: Snapshot | None) -> None:
        if snap is None:
            click.echo(f"serving the IPFS Pinning Service API (pinning on {pinning_node}) at {url}", err=True)
            click.echo(f"  endpoint: {url.rstrip('/')}   e.g. ipfs pin remote service add halodb {url.rstrip('/')} TOKEN",
                       err=True)
        else:
            processes = f", {workers} processes" if workers > 1 else ""
            click.echo(f"serving {snap.name} (commit {snap.head.cid}, {len(snap.versions)} version(s){processes}) at {url}",
                       err=True)
            click.echo(f"  STAC API: {url}   search: {url}search   browse: open {url} in a browser", err=True)
            if pinning_options is not None:
                click.echo(f"  Pinning Service API: endpoint {url.rstrip('/')} (/pins), pinning on {pinning_node}",
                           err=True)
        sys.stderr.flush()

    def report(event: WatchEvent) -> None:
        click.echo(str(event), err=True)
        sys.stderr.flush()

    import signal

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler
    # it found: this one makes that a clean exit 0 (as `sync --watch` ends), not 143
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_server(ctx.registry(), name, config, on_ready=ready, on_event=report)


@cli.command()
@click.option("--home", "demo_home", type=click.Path(file_okay=False), help="Where to build the demo (default: a new temporary folder).")
@pass_ctx
def demo(ctx: Context, demo_home: str | None) -> None:
    """Build an ORCESTRA-like campaign (300+ items, 20+ versions), sync it, and query it."""
    from halodb.demo.run import run_demo

    run_demo(Path(demo_home) if demo_home else None, echo=click.echo)


def _add_groups() -> None:
    """The command groups that live in modules of their own."""
    from halodb.cli.dois import doi
    from halodb.cli.pins import pins
    from halodb.cli.signing import key, trust
    from halodb.cli.tags import tag

    cli.add_command(doi)
    cli.add_command(pins)
    cli.add_command(key)
    cli.add_command(trust)
    cli.add_command(tag)


_add_groups()


def _one_line(text: str) -> str:
    """An error message as the one line the CLI prints (lines of a longer one joined by "; ")."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(args: list[str] | None = None) -> None:
    """Entry point: run the CLI on ``args`` (default ``sys.argv[1:]``), turning HaloDB errors and
    bad arguments into one line on stderr and exit code 2."""
    try:
        cli.main(args, prog_name="halodb", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # a bad option or argument: which command, and where its help is
        where = exc.ctx.command_path if exc.ctx is not None else "halodb"
        click.echo(f"halodb: error: {_one_line(exc.format_message())} (see `{where} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"halodb: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except HaloDBError as exc:
        click.echo(f"halodb: error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)

