"""``python -m halodb`` runs the CLI."""

from halodb.cli.commands import main

main()
