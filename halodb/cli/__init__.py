"""The ``halodb`` command: a thin layer over :mod:`halodb.api` and the demo.

The top of the house: it may import every package except :mod:`halodb.testing` (its
sibling), and only ``python -m halodb`` (``__main__``) imports it. ``main`` is
:func:`halodb.cli.entry.main` (the most asked question answered before the command tree
loads); ``cli``, the click group, loads on first use.

>>> from halodb.cli import main
>>> callable(main)
True
"""

from typing import Any

from halodb.cli.entry import main

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    if name == "cli":
        from halodb.cli.commands import cli

        return cli
    raise AttributeError(f"module 'halodb.cli' has no attribute {name!r}")
