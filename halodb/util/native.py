"""HaloDB's compiled hot loops, when they are installed.

``halodb_native`` (Rust, ``native/`` in the source tree; ``make install`` builds it when
``cargo`` is there) does the per-item work of the largest jobs — today: reading, checking
and encoding the STAC items of ``halodb add`` — several times faster than Python. It is an
accelerator, never a second authority: for any input it is not sure of, it declines and
the Python path decides (and names the error), and ``tests/test_native.py`` checks that
whatever it returns, Python returns the same. HaloDB works without it, slower.

``$HALODB_NATIVE``: ``1`` (the default, also when empty: use it when installed) or ``0``
(never: the Python path only, e.g. to compare); anything else is an :class:`InputError`.

>>> native() is None or hasattr(native(), "prepare_item")
True
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType

from halodb.errors import InputError

__all__ = ["native", "native_wanted"]


def native_wanted() -> bool:
    """``$HALODB_NATIVE`` read: whether to use the compiled module when it is installed.

    >>> native_wanted()
    True
    """
    env = os.environ.get("HALODB_NATIVE", "").strip() or "1"
    if env not in ("0", "1"):
        raise InputError(f"HALODB_NATIVE={env!r}: expected 1 (use the compiled hot loops when installed) or 0",
                         source="HALODB_NATIVE")
    return env == "1"


def native() -> ModuleType | None:
    """The ``halodb_native`` module, or None when it is not installed or ``$HALODB_NATIVE`` is ``0``."""
    return _module() if native_wanted() else None


@cache
def _module() -> ModuleType | None:
    try:
        import halodb_native
    except ImportError:
        return None
    return halodb_native
