"""The one "skip locally, fail under CI" rule for real parts the tests need.

Some tests need a real part that is not a Python dependency: Kubo (``tools/bin/ipfs``, ``make kubo``),
BIND 9 (``named``, ``make dns``) or the reference data in ``../shared/data``. When one is missing,
a test run on a developer's machine skips with a message naming the part and how to get it;
under CI (``CI=true``, as GitHub Actions and most CI systems set it) the test FAILS instead,
so a broken CI setup can never pass by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    """True when ``CI`` says so (``true``, ``1`` or ``yes``, in any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str) -> NoReturn:
    """A real part is missing: fail under CI, skip otherwise. ``what`` names it and how to install it."""
    if under_ci():
        pytest.fail(f"{what} [CI: a missing part fails the test, it is never skipped]", pytrace=False)
    pytest.skip(what)


def require(condition: bool, what: str) -> None:
    """Go on when ``condition`` holds; else :func:`missing` (fail under CI, skip locally)."""
    if not condition:
        missing(what)
