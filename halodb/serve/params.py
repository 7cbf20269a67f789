"""The parameters of a search, from a GET query string or a POST body, checked.

Everything a client sends is hostile until checked here: each parameter is parsed into a
:class:`SearchParams` field or refused with :class:`~halodb.errors.RequestError` naming it
(the server answers 400 with that name). Item search (``/search``) and the items of one
collection (``/collections/{id}/items``) read the same parameters.

>>> p = from_query({"bbox": "0,-10,20,10", "datetime": "2024-08-01T00:00:00Z/..", "limit": "5"})
>>> p.bbox, p.interval[1], p.limit
([0.0, -10.0, 20.0, 10.0], None, 5)
>>> from_query({"limit": "1000000000"})
Traceback (most recent call last):
...
halodb.errors.RequestError: limit must be an integer from 1 to 10000 (larger ones up to 1000000 are served as 10000), not '1000000000'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import shapely

from halodb.errors import RequestError
from halodb.serve import cql2_sql, spatial
from halodb.serve.queryables import lookup

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Fields", "SearchParams", "Sort", "from_body", "from_query", "parse_datetime_interval"]

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
#: a limit up to this is served as MAX_LIMIT; a larger one is a client bug and a 400
CLAMPED_LIMIT = 1_000_000
#: bounds on list-valued parameters (ids, collections, fields, sortby, q terms)
MAX_LIST = 1_000
MAX_TOKEN_LENGTH = 200
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_:\-]+(\.[A-Za-z0-9_:\-]+)*$")
#: the top-level members of a STAC item: a `fields` entry must start with one of them
ITEM_MEMBERS = frozenset({"type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "properties",
                          "links", "assets", "collection"})
#: the parameters a search understands (GET); any other is refused, so a typo is not ignored
KNOWN = frozenset({"bbox", "intersects", "datetime", "ids", "collections", "limit", "token", "filter", "filter-lang",
                   "filter-crs", "sortby", "fields", "q", "as_of", "f"})


@dataclass(frozen=True)
class Sort:
    """One ``sortby`` key: a queryable's SQL and the direction."""

    field: str
    sql: str
    descending: bool


@dataclass(frozen=True)
class Fields:
    """The fields extension's choice: ``include`` paths (None: not given), ``exclude`` paths,
    and whether to start from the default set (``type``, ``stac_version``, ``id``, ``geometry``,
    ``bbox``, ``links``, ``assets``, ``collection`` and the item's times) instead of the
    whole item when nothing is included."""

    include: tuple[str, ...] | None
    exclude: tuple[str, ...]
    default: bool


@dataclass
class SearchParams:
    """A checked search: every field is already valid."""

    bbox: list[float] | None = None
    intersects: shapely.Geometry | None = None
    interval: tuple[datetime | None, datetime | None] | None = None
    ids: list[str] | None = None
    collections: list[str] | None = None
    limit: int = DEFAULT_LIMIT
    token: str | None = None
    filter: dict[str, Any] | None = None
    sortby: list[Sort] = field(default_factory=list)
    fields: Fields | None = None
    q: list[list[str]] | None = None
    #: the parameters as given (for next links), without the token
    echo: dict[str, Any] = field(default_factory=dict)


def from_query(query: Mapping[str, str], *, extra: frozenset[str] = frozenset()) -> SearchParams:
    """Parse GET parameters (``extra``: more names the route accepts, not parsed here)."""
    unknown = sorted(set(query) - KNOWN - extra)
    if unknown:
        raise RequestError(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(KNOWN))}",
                           parameter=unknown[0])
    p = SearchParams()
    if "bbox" in query:
        p.bbox = spatial.parse_bbox(query["bbox"], "bbox")
    if "intersects" in query:
        if "bbox" in query:
            raise RequestError("give bbox or intersects, not both", parameter="intersects")
        p.intersects = spatial.parse_geometry(_json(query["intersects"], "intersects"), "intersects")
    if "datetime" in query:
        p.interval = parse_datetime_interval(query["datetime"])
    if "ids" in query:
        p.ids = _names(query["ids"].split(","), "ids")
    if "collections" in query:
        p.collections = _names(query["collections"].split(","), "collections")
    if "limit" in query:
        p.limit = _limit(query["limit"])
    if "token" in query:
        p.token = _token(query["token"])
    if "filter" in query:
        lang = query.get("filter-lang", "cql2-text")
        p.filter = cql2_sql.parse_filter(query["filter"], lang)
    _filter_crs(query.get("filter-crs"))
    if "sortby" in query:
        p.sortby = _sortby([s.strip() for s in query["sortby"].split(",")])
    if "fields" in query:
        entries = [f.strip() for f in query["fields"].split(",") if f.strip()]
        include, exclude = _fields(entries)
        # GET: "" is the default set; only exclusions (-geometry) are everything but them
        p.fields = Fields(tuple(include) or None, tuple(exclude), default=not entries)
    if "q" in query:
        p.q = _free_text(query["q"])
    p.echo = {k: v for k, v in query.items() if k in KNOWN and k not in ("token", "f")}
    return p


def from_body(body: Any) -> SearchParams:
    """Parse a POST ``/search`` JSON body."""
    if not isinstance(body, dict):
        raise RequestError("the search body must be a JSON object", parameter="body")
    allowed = KNOWN - {"f"} | {"conf", "context"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"unknown search field {unknown[0]!r}", parameter=unknown[0])
    p = SearchParams()
    if body.get("bbox") is not None:
        if not isinstance(body["bbox"], list):
            raise RequestError("bbox must be a list of 4 or 6 numbers in a POST body", parameter="bbox")
        p.bbox = spatial.parse_bbox(body["bbox"], "bbox")
    if body.get("intersects") is not None:
        p.intersects = spatial.parse_geometry(body["intersects"], "intersects")
    if p.bbox is not None and p.intersects is not None:
        raise RequestError("give bbox or intersects, not both", parameter="intersects")
    if body.get("datetime") is not None:
        p.interval = parse_datetime_interval(_string(body["datetime"], "datetime"))
    if body.get("ids") is not None:
        p.ids = _names(_string_or_list(body["ids"], "ids"), "ids")
    if body.get("collections") is not None:
        p.collections = _names(_string_or_list(body["collections"], "collections"), "collections")
    if body.get("limit") is not None:
        p.limit = _limit(body["limit"])
    if body.get("token") is not None:
        p.token = _token(_string(body["token"], "token"))
    if body.get("filter") is not None:
        lang = body.get("filter-lang") or ("cql2-json" if isinstance(body["filter"], dict) else "cql2-text")
        p.filter = cql2_sql.parse_filter(body["filter"], lang)
    _filter_crs(body.get("filter-crs"))
    if body.get("sortby") is not None:
        p.sortby = _sortby_body(body["sortby"])
    if "fields" in body:
        fields = body["fields"]
        if not isinstance(fields, dict) or set(fields) - {"include", "exclude"}:
            raise RequestError("fields must be an object with include and/or exclude lists", parameter="fields")
        include, _ = _fields(_string_list(fields.get("include") or [], "fields"))
        exclude, _ = _fields(_string_list(fields.get("exclude") or [], "fields"))
        # include absent: everything but the exclusions; include null or []: the default set
        p.fields = Fields(tuple(include) or None, tuple(exclude), default="include" in fields or not exclude)
    if body.get("q") is not None:
        q = body["q"]
        p.q = _free_text(q if isinstance(q, str) else ",".join(_string_list(q, "q")))
    p.echo = {k: v for k, v in body.items() if k != "token"}
    return p


def parse_datetime_interval(value: str) -> tuple[datetime | None, datetime | None]:
    """A STAC ``datetime``: one RFC 3339 instant, or ``start/end`` with ``..`` (or empty) for
    an open end. An instant is the interval [t, t].

    >>> parse_datetime_interval("2024-08-10T12:00:00Z")[0].isoformat()
    '2024-08-10T12:00:00+00:00'
    >>> parse_datetime_interval("../2024-09-01T00:00:00+02:00")[1].isoformat()
    '2024-08-31T22:00:00+00:00'
    """
    if len(value) > 100:
        raise RequestError("datetime is too long", parameter="datetime")
    if "/" not in value:
        instant = _instant(value)
        return instant, instant
    parts = value.split("/")
    if len(parts) != 2:
        raise RequestError(f"datetime {value!r} has more than one '/'", parameter="datetime")
    start = None if parts[0] in ("", "..") else _instant(parts[0])
    end = None if parts[1] in ("", "..") else _instant(parts[1])
    if start is None and end is None:
        raise RequestError(f"datetime {value!r} is open at both ends", parameter="datetime")
    if start is not None and end is not None and start > end:
        raise RequestError(f"datetime {value!r} ends before it starts", parameter="datetime")
    return start, end


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _instant(text: str) -> datetime:
    """An RFC 3339 date-time with a time zone (as STAC requires)."""
    if not _RFC3339.match(text):
        raise RequestError(f"datetime {text!r} is not an RFC 3339 date-time such as 2024-08-10T12:00:00Z",
                           parameter="datetime")
    normalized = re.sub(r"(\.\d{6})\d+", r"\1", text.upper().replace(" ", "T")).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(normalized).astimezone(timezone.utc)
    except ValueError as exc:
        raise RequestError(f"datetime {text!r} is not a valid date-time: {exc}", parameter="datetime") from None


def _json(text: str, parameter: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RequestError(f"{parameter} is not valid JSON: {exc}", parameter=parameter) from None


def _string(value: Any, parameter: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{parameter} must be a string", parameter=parameter)
    return value


def _string_list(value: Any, parameter: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"{parameter} must be a list of strings", parameter=parameter)
    return value


def _string_or_list(value: Any, parameter: str) -> list[str]:
    """A list of strings, or one comma-separated string (as some clients send in a POST)."""
    return value.split(",") if isinstance(value, str) else _string_list(value, parameter)


def _names(values: list[str], parameter: str) -> list[str]:
    names = [v.strip() for v in values if v.strip()]
    if not names:
        raise RequestError(f"{parameter} is empty", parameter=parameter)
    if len(names) > MAX_LIST:
        raise RequestError(f"{parameter} lists {len(names)} values; at most {MAX_LIST}", parameter=parameter)
    return names


def _limit(value: Any) -> int:
    """A page size: 1 to :data:`MAX_LIMIT`; up to :data:`CLAMPED_LIMIT` a larger one is served
    as :data:`MAX_LIMIT` (OGC API Features: a limit above the maximum is not an error), and
    anything beyond that, not a number, or below 1 is refused.

    >>> _limit("20"), _limit(100_000)
    (20, 10000)
    """
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"\d{1,7}", text) or not 1 <= int(text) <= CLAMPED_LIMIT:
        raise RequestError(f"limit must be an integer from 1 to {MAX_LIMIT} (larger ones up to {CLAMPED_LIMIT} "
                           f"are served as {MAX_LIMIT}), not {text[:40]!r}", parameter="limit")
    return min(int(text), MAX_LIMIT)


def _token(value: str) -> str:
    if len(value) > MAX_TOKEN_LENGTH or not re.fullmatch(r"[A-Za-z0-9:_-]+", value):
        raise RequestError("token is not one this server made (take it from a next link)", parameter="token")
    return value


def _filter_crs(value: Any) -> None:
    if value is not None and value not in ("http://www.opengis.net/def/crs/OGC/1.3/CRS84",):
        raise RequestError(f"filter-crs {str(value)[:80]!r} is not supported; only CRS84", parameter="filter-crs")


def _sortby(keys: list[str]) -> list[Sort]:
    sorts = []
    for key in keys:
        descending = key.startswith("-")
        sorts.append(_sort(key.lstrip("+-").strip(), descending))
    return _check_sorts(sorts)


def _sortby_body(value: Any) -> list[Sort]:
    if not isinstance(value, list):
        raise RequestError("sortby must be a list of {field, direction} objects", parameter="sortby")
    sorts = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str) \
                or entry.get("direction", "asc") not in ("asc", "desc"):
            raise RequestError("each sortby entry must be {\"field\": ..., \"direction\": \"asc\" or \"desc\"}",
                               parameter="sortby")
        sorts.append(_sort(entry["field"], entry.get("direction") == "desc"))
    return _check_sorts(sorts)


def _sort(name: str, descending: bool) -> Sort:
    queryable = lookup(name)
    if queryable is None or not queryable.sortable:
        raise RequestError(f"cannot sort by {name[:80]!r}: not a sortable queryable (see /queryables)",
                           parameter="sortby")
    return Sort(queryable.name, queryable.sql, descending)


def _check_sorts(sorts: list[Sort]) -> list[Sort]:
    if not sorts or len(sorts) > 16:
        raise RequestError("sortby must name 1 to 16 fields", parameter="sortby")
    return sorts


def _fields(entries: list[str]) -> tuple[list[str], list[str]]:
    """``entries`` (``a``, ``+a``, ``-b``) as (include, exclude) paths; unknown members are refused."""
    if len(entries) > MAX_LIST:
        raise RequestError(f"fields lists {len(entries)} entries; at most {MAX_LIST}", parameter="fields")
    include: list[str] = []
    exclude: list[str] = []
    for entry in entries:
        path = entry.lstrip("+-")
        if not _FIELD_PATH.match(path) or path.split(".")[0] not in ITEM_MEMBERS:
            raise RequestError(f"unknown field {path[:80]!r}: fields start with one of {', '.join(sorted(ITEM_MEMBERS))}",
                               parameter="fields")
        (exclude if entry.startswith("-") else include).append(path)
    return include, exclude


def _free_text(value: str) -> list[list[str]]:
    """``q`` (STAC API free-text, basic): comma-separated alternatives, any of which may match;
    within one, every space-separated word must occur (OGC API Records), a ``"quoted phrase"``
    as it is written. Matching is case-insensitive, over title, description and keywords.

    >>> _free_text('dropsonde, "sea surface" radar')
    [['dropsonde'], ['sea surface', 'radar']]
    """
    if len(value) > 1000:
        raise RequestError("q is longer than 1000 characters", parameter="q")
    alternatives = []
    for part in re.findall(r'(?:"[^"]*"|[^,"])+', value):
        words = [w.strip().lower() for quoted, bare in re.findall(r'"([^"]*)"|([^\s"]+)', part)
                 for w in (quoted, bare) if w.strip()]
        if words:
            alternatives.append(words[:32])
    if not alternatives:
        raise RequestError("q has no search term", parameter="q")
    return alternatives[:MAX_LIST]
