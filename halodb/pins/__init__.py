"""Pinning: the Pin objects HaloDB plans from an index, pin lists, and Kubo nodes that keep them.

Sits beside ``export`` and ``data``: it reads a registry (``api``) and talks to Kubo nodes
over their RPC API; ``serve`` (the Pinning Service API) and the CLI use it.
"""

from halodb.pins.model import STATUSES, Pin
from halodb.pins.pinlist import chains, check_pinlist, dump_pinlist, load_pinlist

__all__ = ["STATUSES", "Pin", "chains", "check_pinlist", "dump_pinlist", "load_pinlist"]
