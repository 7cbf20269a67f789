"""``python -m halodb`` runs the CLI."""

from halodb.cli import main

main()
