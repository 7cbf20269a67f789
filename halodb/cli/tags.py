"""``halodb tag …``: immutable, optionally signed names for versions (``NAME@v1.0``).

>>> from click.testing import CliRunner
>>> CliRunner().invoke(tag, ["--help"]).exit_code
0
"""

from __future__ import annotations

from typing import Any

import click

from halodb.cli.commands import Context, emit_json, pass_ctx
from halodb.util.times import format_time


@click.group()
def tag() -> None:
    """Tags: immutable names for versions, kept in the DAG and resolvable as NAME@TAG."""


@tag.command("create")
@click.argument("name")
@click.argument("tag_name", metavar="TAG")
@click.option("--at", "at", metavar="TIME", help="Tag the version of NAME current at TIME.")
@click.option("--cid", "cid", metavar="CID", help="Tag the commit CID (on the local head's history).")
@click.option("-m", "--message", default="", help="The tag's message.")
@click.option("--sign", "sign", multiple=True, metavar="KEY", help="Sign the tag (and its commit) with the home's key KEY.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def tag_create(ctx: Context, name: str, tag_name: str, at: str | None, cid: str | None, message: str,
               sign: tuple[str, ...], as_json: bool) -> None:
    """Tag NAME's head (or its version at TIME, or the commit CID) as TAG; the tag is kept by a
    new commit on the local head (publish it for readers of NAME)."""
    reg = ctx.registry()
    local_before = reg.head
    tag_cid = reg.tag(name, tag_name, at=at, cid=cid, message=message, sign=sign)
    found = reg.tags("HEAD")[tag_name][1]
    if as_json:
        emit_json({"tag": tag_name, "cid": str(tag_cid), "target": str(found.target), "head": str(reg.head)})
        return
    click.echo(f"{tag_name} -> {found.target} (tag {tag_cid})")
    if name == "HEAD":
        click.echo(f"the tag is in the local head {reg.head}; `halodb publish NAME` makes NAME@{tag_name} "
                   "resolve for readers", err=True)
        return
    click.echo(f"the tag is in the local head {reg.head}; `halodb publish {name}` makes {name}@{tag_name} "
               f"resolve for readers (and `halodb tag ls {name}` list it)", err=True)
    name_head = reg.resolve(name)
    if name_head != local_before:
        # the tag lives in the local head's history: publishing it moves the name there too
        click.echo(f"note: {name} is at {name_head}, not at the local head before the tag ({local_before}): "
                   f"that publish also moves {name} to every commit of the local head since", err=True)


@tag.command("ls")
@click.argument("ref", default="HEAD")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def tag_ls(ctx: Context, ref: str, as_json: bool) -> None:
    """The tags version REF (default HEAD) carries: tag, target, time, tagger, signers."""
    from halodb.index.signing import tag_signers

    reg = ctx.registry()
    rows: list[dict[str, Any]] = []
    for name, (cid, found) in reg.tags(ref).items():
        rows.append({"tag": name, "cid": str(cid), "target": str(found.target), "time": format_time(found.time),
                     "tagger": found.tagger, "message": found.message, "signed_by": tag_signers(found)})
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['tag']}  {row['target']}  {row['time']}  {row['tagger']}  {row['message']}".rstrip())
        for did in row["signed_by"]:
            click.echo(f"    signed by {did}")
