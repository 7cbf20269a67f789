"""Where a JSON text breaks HaloDB's bounds, for the errors of a parse that failed on them.

Python's ``json`` gives up on two kinds of input without saying where: nesting deeper than
its recursion limit (``RecursionError``, from about 1,000 levels) and integers of more
than 4,300 digits (``ValueError``). :func:`locate` scans the text once more, token by
token (only after such a failure), and returns the JSON path of the first object or array
nested deeper than :data:`~halodb.ipld.limits.MAX_NESTING`, or of the first integer
outside the 64-bit DAG-CBOR range, with its line and column.

>>> locate('{"a": [[1]]}', max_nesting=2)
Bound(path='a[0]', line=1, column=8, problem='nested deeper than 2 levels (objects and arrays)')
>>> locate('{"n": [1, 123456789012345678901234567890]}').path
'n[1]'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from halodb.ipld.limits import MAX_INT, MAX_NESTING, MIN_INT

__all__ = ["OUT_OF_RANGE", "Bound", "format_path", "locate"]

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[^\s{}\[\],:"]+')
_PLAIN_KEY = re.compile(r"[A-Za-z_][\w:-]*")
_INT_DIGITS = len(str(MAX_INT))  #: an integer literal with more digits is out of range
#: what is wrong with an integer outside the range
OUT_OF_RANGE = "outside the 64-bit range an item may hold (-2**64 to 2**64-1)"


@dataclass(frozen=True)
class Bound:
    """Where a JSON text breaks a bound: the JSON path, line and column (1-based), and what."""

    path: str
    line: int
    column: int
    problem: str


def format_path(loc: list[int | str] | tuple[int | str, ...]) -> str:
    """``['assets', 'data', 'href']`` -> ``assets.data.href``; ints become ``[i]``; the middle
    of a path longer than 12 parts is elided.

    >>> format_path(["properties", "a b", 0])
    'properties["a b"][0]'
    """
    if len(loc) > 12:
        tail = format_path(loc[-3:])
        return f"{format_path(loc[:6])}...{tail if tail.startswith('[') else '.' + tail}"
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def locate(text: str, *, max_nesting: int = MAX_NESTING, slack: int = 0) -> Bound | None:
    """The first place in ``text`` nested deeper than ``max_nesting`` (plus ``slack``: the
    levels above the items in the text, 2 for the items of a FeatureCollection) or holding
    an integer outside the 64-bit range; None when there is none (or the text is not JSON
    there)."""
    loc: list[int | str] = []
    kinds: list[str] = []  # "{" or "[" per open container
    want_key = False
    for m in _TOKEN.finditer(text):
        tok = m.group()
        first = tok[0]
        if first in "{[":
            if len(kinds) >= max_nesting + slack:
                line, col = _position(text, m.start())
                return Bound(format_path(loc), line, col, f"nested deeper than {max_nesting} levels (objects and arrays)")
            kinds.append(first)
            loc.append(0 if first == "[" else "")
            want_key = first == "{"
        elif first in "}]":
            if not kinds:
                return None
            kinds.pop()
            loc.pop()
            want_key = False
        elif first == ",":
            if kinds and kinds[-1] == "[":
                loc[-1] = int(loc[-1]) + 1
            want_key = bool(kinds) and kinds[-1] == "{"
        elif first == ":":
            want_key = False
        elif first == '"':
            if want_key:
                try:
                    loc[-1] = json.loads(tok)
                except ValueError:
                    return None
                want_key = False
        elif first == "-" or first.isdigit():
            digits = tok.lstrip("-")
            if digits.isdigit() and len(digits) >= _INT_DIGITS and (
                len(digits) > _INT_DIGITS or not MIN_INT <= int(tok) <= MAX_INT
            ):
                line, col = _position(text, m.start())
                return Bound(format_path(loc), line, col, f"an integer of {len(digits)} digits, {OUT_OF_RANGE}")
    return None
