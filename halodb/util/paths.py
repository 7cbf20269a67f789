"""Path segments that come from outside (tree.yaml, UnixFS names, ``halodb:path``, asset hrefs).

A segment names one entry of a folder. It may not be empty, ``.`` or ``..`` (which would
climb out of the folder it is written into), hold ``/`` or NUL, or any control character
(which terminals and file systems treat specially).

>>> check_segment("HALO-20240811a.zarr", "tree.yaml")
'HALO-20240811a.zarr'
>>> check_segment("..", "tree.yaml: under 'products'")
Traceback (most recent call last):
...
halodb.errors.InputError: tree.yaml: under 'products': path segment '..' is not allowed (no '.', '..', empty names, '/', NUL or control characters)
"""

from __future__ import annotations

import re

from halodb.errors import InputError

__all__ = ["bad_segment", "check_segment"]


#: ``/`` and the control characters (C0, DEL, C1): one scan in C, not a generator per character
_FORBIDDEN = re.compile("[/\x00-\x1f\x7f-\x9f]")


def bad_segment(segment: str) -> bool:
    """Whether ``segment`` may not name an entry of a folder."""
    return segment in ("", ".", "..") or _FORBIDDEN.search(segment) is not None


def check_segment(segment: str, where: str) -> str:
    """``segment`` if it may name an entry of a folder, else :class:`InputError` naming it and ``where``."""
    if bad_segment(segment):
        raise InputError(
            f"{where}: path segment {segment!r} is not allowed (no '.', '..', empty names, '/', NUL or control characters)",
            source=where,
        )
    return segment
