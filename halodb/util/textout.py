r"""Plain-text output: aligned tables and JSON-safe values for the CLI and the demo.

>>> print("\n".join(format_table(["key", "n"], [("halo/f1", 2)])))
key      n
-------  -
halo/f1  2
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any


def format_datetime(value: datetime) -> str:
    """ISO 8601; a UTC time ends in ``Z``, as HaloDB's text output and STAC write it.

    >>> from datetime import timezone
    >>> format_datetime(datetime(2024, 9, 1, 12, tzinfo=timezone.utc)), format_datetime(datetime(2024, 9, 1, 12))
    ('2024-09-01T12:00:00Z', '2024-09-01T12:00:00')
    """
    if value.tzinfo is not None and value.utcoffset() == timedelta(0):
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: dates as ISO 8601 (UTC with ``Z``), decimals as floats, bytes as
    hex, else str."""
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def format_value(v: Any) -> str:
    """One cell: NULL as empty, times as ISO 8601, lists and maps as JSON."""
    if v is None:
        return ""
    if isinstance(v, datetime):
        return format_datetime(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=json_default, ensure_ascii=False)
    return str(v)


def format_table(columns: list[str], rows: list[tuple[Any, ...]], max_width: int = 60) -> Iterator[str]:
    """Lines of a left-aligned table with a header rule; long cells are cut with an ellipsis."""
    cells = [[format_value(v) for v in row] for row in rows]
    cells = [[c if len(c) <= max_width else c[: max_width - 1] + "…" for c in row] for row in cells]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    yield "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
