"""The ``halodb`` command: a thin layer over :mod:`halodb.api` and the demo.

The top of the house: it may import every package except :mod:`halodb.testing` (its
sibling), and only ``python -m halodb`` (``__main__``) imports it.

>>> from halodb.cli import main
>>> callable(main)
True
"""

from halodb.cli.commands import cli, main

__all__ = ["cli", "main"]
