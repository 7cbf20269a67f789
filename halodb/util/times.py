"""Times as HaloDB stores and reads them: RFC 3339, UTC, timezone-aware.

>>> format_time(parse_time("2024-09-15T02:00+02:00"))
'2024-09-15T00:00:00Z'
>>> to_time("2024-09-15").isoformat()
'2024-09-15T00:00:00+00:00'
>>> to_time("yesterday", what="--at")
Traceback (most recent call last):
...
halodb.errors.InputError: --at: 'yesterday' is not an ISO 8601 date-time (e.g. 2024-09-15T00:00Z)
"""

from __future__ import annotations

from datetime import datetime, timezone

from halodb.errors import InputError

TimeLike = datetime | str | None

__all__ = ["TimeLike", "format_time", "parse_time", "to_time"]


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` (microseconds only when present): how commits store time."""
    if t.tzinfo is None:
        raise ValueError("commit times must be timezone-aware")
    t = t.astimezone(timezone.utc)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 time; naive times are taken as UTC (``ValueError`` if not a time)."""
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def to_time(value: TimeLike, *, what: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime or ISO 8601 text (naive = UTC; None = now).

    Text that is not a time raises :class:`~halodb.errors.InputError` naming ``what``.
    """
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    try:
        return parse_time(value)
    except ValueError:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date-time (e.g. 2024-09-15T00:00Z)", source=what) from None
