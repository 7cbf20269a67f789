r"""Plain-text output: aligned tables and JSON-safe values for the CLI and the demo.

>>> print("\n".join(format_table(["key", "n"], [("halo/f1", 2)])))
key      n
-------  -
halo/f1  2
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: dates as ISO 8601, decimals as floats, bytes as hex, else str."""
    if isinstance(value, (datetime, date)):
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
        return v.isoformat()
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
