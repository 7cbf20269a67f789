"""``python -m halodb`` runs the CLI."""

from halodb.cli.entry import main

main()
