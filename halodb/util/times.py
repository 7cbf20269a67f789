"""Times as HaloDB stores and reads them: RFC 3339, UTC, timezone-aware, within
:data:`MIN_TIME` .. :data:`MAX_TIME` (the years 0001 to 9999 in UTC, what Python's
``datetime`` can hold).

>>> format_time(parse_time("2024-09-15T02:00+02:00"))
'2024-09-15T00:00:00Z'
>>> to_time("2024-09-15").isoformat()
'2024-09-15T00:00:00+00:00'
>>> to_time("yesterday", what="--at")
Traceback (most recent call last):
...
halodb.errors.InputError: --at: 'yesterday' is not an ISO 8601 date-time (e.g. 2024-09-15T00:00Z)
>>> to_time("0001-01-01T00:00:00+01:00", what="--at")
Traceback (most recent call last):
...
halodb.errors.InputError: --at: '0001-01-01T00:00:00+01:00' is outside the times HaloDB can hold (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z)
"""

from __future__ import annotations

from datetime import datetime, timezone

from halodb.errors import InputError

TimeLike = datetime | str | None

__all__ = ["MAX_TIME", "MIN_TIME", "TimeLike", "TimeRangeError", "format_time", "parse_time", "to_time"]

#: the earliest and the latest time HaloDB can hold (a time in another zone must fit in UTC)
MIN_TIME = datetime.min.replace(tzinfo=timezone.utc)
MAX_TIME = datetime.max.replace(tzinfo=timezone.utc)
_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"


class TimeRangeError(ValueError):
    """A well-formed time that falls outside :data:`MIN_TIME` .. :data:`MAX_TIME` once in UTC."""


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` (microseconds only when present; years always 4 digits):
    how commits store time.

    >>> format_time(MIN_TIME), format_time(parse_time("2024-09-15T00:00:00.5Z"))
    ('0001-01-01T00:00:00Z', '2024-09-15T00:00:00.500000Z')
    """
    if t.tzinfo is None:
        raise ValueError("commit times must be timezone-aware")
    t = _utc(t, t.isoformat())
    spec = "microseconds" if t.microsecond else "seconds"
    return t.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 time; naive times are taken as UTC. ``ValueError`` if it
    is not a time, :class:`TimeRangeError` (a ``ValueError``) if it is not one HaloDB can hold.

    >>> parse_time("9999-12-31T23:59:59-01:00")
    Traceback (most recent call last):
    ...
    halodb.util.times.TimeRangeError: '9999-12-31T23:59:59-01:00' is outside the times HaloDB can hold (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z)
    """
    t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return _utc(t, text)


def _utc(t: datetime, text: str) -> datetime:
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:
        raise TimeRangeError(f"{text!r} is outside the times HaloDB can hold ({_RANGE})") from None


def to_time(value: TimeLike, *, what: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime or ISO 8601 text (naive = UTC; None = now).

    Text that is not a time, or a time outside :data:`MIN_TIME` .. :data:`MAX_TIME`, raises
    :class:`~halodb.errors.InputError` naming ``what``.
    """
    if value is None:
        return datetime.now(timezone.utc)
    try:
        if isinstance(value, datetime):
            return _utc(value if value.tzinfo else value.replace(tzinfo=timezone.utc), value.isoformat())
        return parse_time(value)
    except TimeRangeError:
        shown = value.isoformat() if isinstance(value, datetime) else value
        raise InputError(f"{what}: {shown!r} is outside the times HaloDB can hold ({_RANGE})", source=what) from None
    except ValueError:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date-time (e.g. 2024-09-15T00:00Z)", source=what) from None
