"""``halodb doi …``: the public log of a history's DOIs, and DataCite metadata to mint one with.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(doi, ["--help"]).exit_code
0
"""

from __future__ import annotations

import click

from halodb.cli.commands import Context, emit_json, pass_ctx
from halodb.util.textout import format_table


@click.group()
def doi() -> None:
    """DOIs: which version and data each one names; DataCite metadata from a STAC item."""


@doi.command("ls")
@click.argument("name", default="HEAD")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def doi_ls(ctx: Context, name: str, as_json: bool) -> None:
    """Every DOI the history of NAME (a name, NAME@T, a commit CID or HEAD) ever held: the
    dataset, the version it was minted for (the first that had it), the data CID there, and
    whether that is still the dataset's data (current), no longer (superseded), or the DOI
    left the dataset (withdrawn)."""
    records = ctx.registry().dois(name)
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    rows = [(r.doi, r.key, f"v{r.version}", str(r.commit), f"{r.time:%Y-%m-%dT%H:%M:%SZ}", r.data or "-", r.state)
            for r in records]
    for line in format_table(["doi", "dataset", "version", "commit", "time", "data", "state"], rows, max_width=80):
        click.echo(line)
    click.echo(f"({len(records)} DOI{'s' if len(records) != 1 else ''})")


@doi.command("datacite")
@click.argument("key_or_path")
@click.option("--at", "when", metavar="T", help="The version current at T (ISO 8601; default: the newest).")
@click.option("--name", help="Name whose history to ask (default: the local head).")
@click.option("--version", "commit", metavar="REF", help="This version (a commit CID, HEAD~1, NAME~2...) instead of --at.")
@click.option("--publisher", metavar="TEXT", help="The DataCite publisher (default: from the item's contacts or providers).")
@pass_ctx
def doi_datacite(ctx: Context, key_or_path: str, when: str | None, name: str | None, commit: str | None,
                 publisher: str | None) -> None:
    """Print DataCite Metadata Schema 4.5 JSON for a dataset's STAC item at a version, checked
    against the DataCite schema. Mints nothing: give it to the campaign's DataCite account."""
    if commit is not None and when is not None:
        raise click.UsageError("--version names the version itself: give it without --at")
    history = name or ("HEAD" if commit is None else commit)
    ref = commit if commit is not None else history + (f"@{when}" if when is not None else "")
    emit_json(ctx.registry().datacite(key_or_path, ref, history=history, publisher=publisher))
