"""HaloDB's compiled hot loops, when they are installed.

``halodb_native`` (Rust, ``native/`` in the source tree; ``make install`` builds it when
``cargo`` is there) does the per-item work of the largest jobs — reading, checking and
encoding the STAC items of ``halodb add``; cutting the leaves of the trees a commit builds;
making the cache's columns of the items a sync reads —
several times faster than Python. It is an accelerator, never a second authority: for any
input it is not sure of, it declines and the Python path decides (and names the error), and
``tests/test_native.py`` checks that whatever it returns, Python returns the same. HaloDB
works without it, slower.

``$HALODB_NATIVE``: ``1`` (the default, also when empty: use it when installed) or ``0``
(never: the Python path only, e.g. to compare); anything else is an
:class:`~halodb.errors.InputError`.

>>> native() is None or hasattr(native(), "prepare_item")
True
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

from halodb.util.switches import SWITCHES, env_switch

__all__ = ["native", "native_wanted"]


def native_wanted() -> bool:
    """``$HALODB_NATIVE`` read: whether to use the compiled module when it is installed.

    >>> native_wanted()
    True
    """
    return env_switch("HALODB_NATIVE", SWITCHES["HALODB_NATIVE"])


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
