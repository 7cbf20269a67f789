"""On/off switches read from the environment (``HALODB_NATIVE``, ``HALODB_SYNC_WORKER``).

>>> import os
>>> os.environ["HALODB_EXAMPLE"] = "0"
>>> env_switch("HALODB_EXAMPLE", "an example")
False
>>> os.environ["HALODB_EXAMPLE"] = "yes"
>>> env_switch("HALODB_EXAMPLE", "an example")
Traceback (most recent call last):
...
halodb.errors.InputError: HALODB_EXAMPLE='yes': expected 1 (an example) or 0
>>> del os.environ["HALODB_EXAMPLE"]
"""

from __future__ import annotations

import os

from halodb.errors import InputError

__all__ = ["SWITCHES", "check_switches", "env_switch"]

#: every switch HaloDB reads, with what ``1`` means
SWITCHES = {
    "HALODB_NATIVE": "use the compiled hot loops when installed",
    "HALODB_SYNC_WORKER": "a helper thread or process for a large sync",
}


def env_switch(name: str, meaning: str) -> bool:
    """``$name``: ``1`` (the default, also when unset or empty) or ``0``; anything else is an
    :class:`InputError` saying what ``1`` means."""
    env = os.environ.get(name, "").strip() or "1"
    if env not in ("0", "1"):
        raise InputError(f"{name}={env!r}: expected 1 ({meaning}) or 0", source=name)
    return env == "1"


def check_switches() -> None:
    """:func:`env_switch` of every switch in :data:`SWITCHES`: an :class:`InputError` for
    the first with a bad value (the CLI checks them all before any command runs)."""
    for name, meaning in SWITCHES.items():
        env_switch(name, meaning)
