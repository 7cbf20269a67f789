"""Progress bars on stderr for the long CLI steps (``add``, ``commit``, ``sync``, ``import-car``).

A bar appears only when stderr is a terminal, the command is not quiet (``--json``), and the
step has run for ``$HALODB_PROGRESS_AFTER`` seconds (default 1) when it reports progress; a
short step prints nothing. ``tqdm`` draws it and is imported only then, so short commands
never load it.

>>> import io
>>> with Progress("syncing", stream=io.StringIO()) as bar:  # not a terminal: silent
...     bar.update(10)
>>> bar.shown
False
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, TextIO

from halodb.errors import InputError

__all__ = ["DEFAULT_AFTER", "Progress", "progress_after"]

#: seconds a step runs before its bar appears, unless ``$HALODB_PROGRESS_AFTER`` says otherwise
DEFAULT_AFTER = 1.0


def progress_after() -> float:
    """``$HALODB_PROGRESS_AFTER`` (seconds, 0 or more), else :data:`DEFAULT_AFTER`.

    >>> os.environ["HALODB_PROGRESS_AFTER"] = "0"; progress_after()
    0.0
    >>> del os.environ["HALODB_PROGRESS_AFTER"]; progress_after()
    1.0
    """
    env = os.environ.get("HALODB_PROGRESS_AFTER", "").strip()
    if not env:
        return DEFAULT_AFTER
    try:
        value = float(env)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"HALODB_PROGRESS_AFTER={env!r}: expected a number of seconds, 0 or more",
                         source="HALODB_PROGRESS_AFTER")
    return value


class Progress:
    """A bar for one step: ``update(done)`` with the count so far (``total`` if known)."""

    def __init__(self, what: str, *, total: int | None = None, unit: str = "item", quiet: bool = False,
                 stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and _is_terminal(self.stream)
        self.after = progress_after() if self.enabled else math.inf
        self.started = time.monotonic()
        self._bar: Any = None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, done: int, what: str | None = None) -> None:
        """Report ``done`` so far (and a new description, if given)."""
        if not self.enabled:
            return
        if what is not None:
            self.what = what
        if self._bar is None:
            if time.monotonic() - self.started < self.after:
                return
            from tqdm import tqdm

            # no monitor thread (it only tunes how often a bar redraws): a commit forks
            # children only from a process of one thread (Index.build_sorted ``parallel``)
            tqdm.monitor_interval = 0
            columns, rows = _size(self.stream)
            self._bar = tqdm(desc=self.what, total=self.total, unit=self.unit, unit_scale=self.total is None, file=self.stream,
                             ncols=columns, nrows=rows, leave=True, mininterval=0.2)
        elif what is not None:
            self._bar.set_description_str(what, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and lines (80 x 24 when it does not say: a new pseudo-terminal
    says 0 x 0, and tqdm hides every bar below a screen of 0 lines)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 80, 24
    return size.columns or 80, size.lines or 24


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
