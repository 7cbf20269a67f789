"""``halodb key …`` and ``halodb trust …``: signing keys, and whom a name's versions must be signed by.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(key, ["--help"]).exit_code, CliRunner().invoke(trust, ["--help"]).exit_code
(0, 0)
"""

from __future__ import annotations

from typing import Any

import click

from halodb.cli.commands import Context, emit_json, pass_ctx


@click.group()
def key() -> None:
    """Signing keys (Ed25519, under HOME/keys with mode 0600; never printed)."""


@key.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def key_create(ctx: Context, name: str, as_json: bool) -> None:
    """Make the signing key NAME; prints its public identity (a did:key) only."""
    from halodb.api.keys import create_key

    reg = ctx.registry(create=True)
    did = create_key(reg.home, name)
    if as_json:
        emit_json({"name": name, "did": did})
    else:
        click.echo(did)


@key.command("ls")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def key_ls(ctx: Context, as_json: bool) -> None:
    """The home's signing keys and their identities."""
    from halodb.api.keys import identity, key_names, load_key

    reg = ctx.registry()
    rows = [{"name": n, "did": identity(load_key(reg.home, n))} for n in key_names(reg.home)]
    if as_json:
        emit_json(rows)
    for row in [] if as_json else rows:
        click.echo(f"{row['name']}  {row['did']}")


@click.group()
def trust() -> None:
    """Trust policies: which keys must sign a name's head before sync, at, serve follow it."""


@trust.command("add")
@click.argument("name")
@click.argument("did")
@click.option("--threshold", type=click.IntRange(min=1), help="How many allowed keys must sign a head (default 1).")
@pass_ctx
def trust_add(ctx: Context, name: str, did: str, threshold: int | None) -> None:
    """Allow the key DID (did:key:z6Mk...) to sign NAME's versions."""
    reg = ctx.registry(create=True)
    canonical = reg.canonical_name(name)
    policy = reg.trust.add(canonical, did, threshold)
    click.echo(f"{canonical}: {len(policy.keys)} key(s), {policy.threshold} must sign")


@trust.command("rm")
@click.argument("name")
@click.argument("did", required=False)
@pass_ctx
def trust_rm(ctx: Context, name: str, did: str | None) -> None:
    """Stop trusting DID for NAME (without DID: drop NAME's policy)."""
    reg = ctx.registry()
    canonical = reg.canonical_name(name)
    policy = reg.trust.remove(canonical, did)
    click.echo(f"{canonical}: " + ("no trust policy" if policy is None
                                   else f"{len(policy.keys)} key(s), {policy.threshold} must sign"))


@trust.command("ls")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def trust_ls(ctx: Context, as_json: bool) -> None:
    """Every name with a trust policy: its keys, threshold and the last head verified."""
    reg = ctx.registry()
    rows: list[dict[str, Any]] = []
    for name, policy in reg.trust.policies().items():
        checkpoint = reg.trust.checkpoint(name)
        verified = checkpoint if checkpoint is not None and checkpoint.policy == policy.digest() else None
        rows.append({"name": name, "keys": sorted(policy.keys), "threshold": policy.threshold,
                     "verified_head": verified.head if verified else None,
                     "signed_by": list(verified.signers) if verified else [],
                     "keys_now": sorted(verified.keys) if verified else sorted(policy.keys)})
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}: {row['threshold']} of {len(row['keys'])} key(s) must sign; "
                   f"verified head {row['verified_head'] or '(none yet)'}")
        for did in row["keys"]:
            click.echo(f"  {did}")
