"""The STAC API ``filter``: CQL2 (text or JSON) parsed by the ``cql2`` package, checked
against the queryables, and written as one DuckDB boolean expression over ``i``/``v``.

Every value of the filter becomes a ``?`` parameter; the SQL text holds only the columns of
:data:`~halodb.serve.queryables.QUERYABLES` and operators from fixed tables here, so a filter
cannot inject SQL. Semantics (details in docs/internals/serve.md, "Filters and geometry"):

* a predicate on a NULL value (an item without ``title``, without geometry, ...) is unknown,
  as in SQL: the item is not selected, and ``NOT`` of it is not selected either;
* ``datetime`` compared with ``=``, ``<``, ... is the start of the item's time span
  (``i.t_start``); the ``t_*`` operators use the whole span ``[i.t_start, i.t_end]``;
* a ``DATE`` is the whole UTC day: ``datetime = DATE('2024-08-10')`` is any time that day;
* ``a_equals`` and the other array operators compare arrays as sets.

>>> tree = parse_filter("platform = 'HALO' AND datetime >= TIMESTAMP('2024-08-10T00:00:00Z')", "cql2-text")
>>> text, params = filter_sql(tree)
>>> text
'((i.platform = ?) AND (i.t_start >= ?))'
>>> params[0]
'HALO'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

import cql2
import shapely

from halodb.errors import RequestError
from halodb.serve import spatial
from halodb.serve.queryables import QUERYABLES, Queryable, lookup
from halodb.serve.spatial import Sql, sql

__all__ = ["CONFORMANCE", "MAX_DEPTH", "MAX_FILTER_BYTES", "MAX_NODES", "filter_sql", "parse_filter"]

_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
#: The conformance classes of the Filter extension this module implements.
CONFORMANCE: list[str] = [
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    _CQL2 + "cql2-text",
    _CQL2 + "cql2-json",
    _CQL2 + "basic-cql2",
    _CQL2 + "advanced-comparison-operators",
    _CQL2 + "case-insensitive-comparison",
    _CQL2 + "accent-insensitive-comparison",
    _CQL2 + "basic-spatial-functions",
    _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions",
    _CQL2 + "temporal-functions",
    _CQL2 + "array-functions",
    _CQL2 + "property-property",
]

#: The longest filter accepted (CQL2 text, or the JSON text of a GET cql2-json filter).
MAX_FILTER_BYTES = 64 * 1024
#: The deepest nesting of operators (and of parentheses in CQL2 text).
MAX_DEPTH = 64
#: The most operators, properties and literals in one filter (a geometry counts as one).
MAX_NODES = 1000
# JSON nesting and size of a filter as given, before cql2 reads it: generous bounds on top
# of the two above (a geometry literal nests its coordinates; it is checked on its own).
_MAX_JSON_DEPTH = 2 * MAX_DEPTH + 16
_MAX_JSON_VALUES = 4 * spatial.MAX_POSITIONS + 10 * MAX_NODES

LANGUAGES = ("cql2-text", "cql2-json")
_PARAMETER = "filter"


def _error(message: str, parameter: str = _PARAMETER) -> RequestError:
    return RequestError(f"{parameter}: {message}", parameter=parameter)


# --- parsing -----------------------------------------------------------------------------
def parse_filter(value: str | dict[str, Any], lang: str | None) -> dict[str, Any]:
    """The CQL2 JSON tree of a ``filter`` in ``lang`` (``cql2-text`` or ``cql2-json``; None:
    text for a string, JSON for an object), checked so that :func:`filter_sql` accepts it.

    Refused with :class:`~halodb.errors.RequestError` (``.parameter`` ``"filter"``, or
    ``"filter-lang"``): a syntax error, an unknown property or operator, a literal of the
    wrong type, a malformed geometry, and a filter over :data:`MAX_FILTER_BYTES`, nested
    deeper than :data:`MAX_DEPTH` or with more than :data:`MAX_NODES` nodes.

    >>> parse_filter({"op": "isNull", "args": [{"property": "title"}]}, None)
    {'op': 'isNull', 'args': [{'property': 'title'}]}
    >>> parse_filter("cloud_cover < 10", "cql2-text")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: filter: unknown property 'cloud_cover'; the queryables are: id, collection, ...
    """
    if lang is None:
        lang = "cql2-text" if isinstance(value, str) else "cql2-json"
    if lang not in LANGUAGES:
        raise _error(f"unknown filter language {lang!r}; supported: {', '.join(LANGUAGES)}", "filter-lang")
    if lang == "cql2-text":
        if not isinstance(value, str):
            raise _error("a cql2-text filter must be a string (give filter-lang cql2-json for a JSON object)")
        _check_size(value)
        _prescan_text(value)
        expr = _parse(cql2.parse_text, value, "cql2-text")
    else:
        if isinstance(value, str):
            _check_size(value)
            try:
                value = json.loads(value)
            except RecursionError:
                raise _error(f"the cql2-json filter nests deeper than {MAX_DEPTH} levels") from None
            except ValueError as exc:
                raise _error(f"the cql2-json filter is not JSON: {exc}") from None
        _check_json(value)
        _translate(value)  # as given: names what is wrong better than cql2's parse error
        expr = _parse(cql2.parse_json, json.dumps(value, allow_nan=False), "cql2-json")
    tree = expr.to_json()
    if not isinstance(tree, (dict, bool)):
        raise _error(f"the filter is not a predicate but {_describe_json(tree)}")
    _translate(tree)  # every check of filter_sql, now
    # a bare ``true``/``false`` is a valid filter; as a dict it is the same value ANDed with itself
    return tree if isinstance(tree, dict) else {"op": "and", "args": [tree, tree]}


def _parse(parser: Callable[[str], cql2.Expr], text: str, lang: str) -> cql2.Expr:
    try:
        return parser(text)
    except (cql2.ParseError, ValueError) as exc:
        raise _error(f"{lang} syntax error: {_one_line(str(exc))}") from None


def _one_line(message: str) -> str:
    """A pest error (``--> 1:26 | ... = expected Expr``) as one line."""
    where = re.search(r"-->\s*(\d+):(\d+)", message)
    expected = re.search(r"=\s*(.+?)\s*$", message)
    if where and expected:
        return f"{expected.group(1)} at line {where.group(1)}, column {where.group(2)}"
    return " ".join(message.split())


def _check_size(text: str) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILTER_BYTES:
        raise _error(f"the filter is longer than {MAX_FILTER_BYTES // 1024} KiB")


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<ident>"(?:[^"]|"")*"?)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_:.]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_WKT = frozenset({"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
                  "GEOMETRYCOLLECTION"})


def _prescan_text(text: str) -> None:
    """Bound what the (recursive) cql2-text parser would nest, before it runs.

    The parser recurses once per parenthesis and once per operator of a chain; a few
    thousand levels overflow the stack and kill the process. So parentheses may nest
    :data:`MAX_DEPTH` deep, and outside geometry literals (whose coordinates are flat) a
    filter may hold :data:`MAX_NODES` terms (words, numbers, strings, operators).

    >>> _prescan_text("(" * 65 + "a = 1" + ")" * 65)
    Traceback (most recent call last):
    ...
    halodb.errors.RequestError: filter: parentheses nest deeper than 64 levels
    """
    depth = 0
    geometry_depth: int | None = None  # the depth of the "(" that opened a WKT literal
    after_wkt = False
    terms = 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "ws" or kind == "comma":
            continue
        if kind == "open":
            depth += 1
            if depth > MAX_DEPTH:
                raise _error(f"parentheses nest deeper than {MAX_DEPTH} levels")
            if after_wkt and geometry_depth is None:
                geometry_depth = depth
            after_wkt = False
            continue
        if kind == "close":
            if geometry_depth is not None and depth == geometry_depth:
                geometry_depth = None
            depth -= 1
            continue
        in_geometry = geometry_depth is not None
        if kind == "word" and match.group().upper() in _WKT:
            after_wkt = True
        elif kind == "word" and match.group().upper() in ("Z", "EMPTY"):
            pass
        else:
            after_wkt = False
        if in_geometry and (kind in ("number", "word") or match.group() in "+-"):
            continue
        terms += 1
        if terms > MAX_NODES:
            raise _error(f"the filter has more than {MAX_NODES} terms")


def _walk_bounded(root: Any, children: Callable[[Any], Iterable[Any]], max_depth: int, max_count: int,
                  too_deep: str, too_many: str) -> Iterator[Any]:
    """Every node under ``root`` (iteratively: never a RecursionError), refusing a tree deeper
    than ``max_depth`` (``too_deep``) or larger than ``max_count`` nodes (``too_many``)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_count:
            raise _error(too_many)
        if depth > max_depth:
            raise _error(too_deep)
        yield node
        stack.extend((child, depth + 1) for child in children(node))


def _check_json(value: Any) -> None:
    """Bound a JSON filter's nesting and size, and refuse non-finite numbers."""
    def children(item: Any) -> Iterable[Any]:
        found: Iterable[Any] = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        return found

    for item in _walk_bounded(value, children, _MAX_JSON_DEPTH, _MAX_JSON_VALUES,
                              f"the cql2-json filter nests deeper than {MAX_DEPTH} levels",
                              f"the cql2-json filter holds more than {_MAX_JSON_VALUES} values"):
        if isinstance(item, float) and not math.isfinite(item):
            raise _error(f"the cql2-json filter holds the number {item}")


def _check_tree(tree: Any) -> None:
    """Bound the operator nesting and the node count of a parsed filter (an array literal's
    members are nodes too)."""
    def children(node: Any) -> Iterable[Any]:
        found: Iterable[Any] = ()
        if isinstance(node, dict) and "op" in node and isinstance(node.get("args"), list):
            found = node["args"]
        elif isinstance(node, list):
            found = node
        return found

    for _ in _walk_bounded(tree, children, MAX_DEPTH, MAX_NODES, f"the filter nests deeper than {MAX_DEPTH} levels",
                           f"the filter has more than {MAX_NODES} nodes"):
        pass


# --- typed values ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Value:
    """A scalar operand: its ``kind`` (string, number, boolean, timestamp, date), its SQL,
    and how to name it in a message."""

    kind: str
    sql: Sql
    name: str
    literal: bool = False
    day: date | None = None  # a date literal's day


@dataclass(frozen=True)
class _Span:
    """A temporal operand as a closed span [start, end] (an instant: start = end)."""

    start: Sql
    end: Sql
    name: str


_MINUS_INFINITY = Sql("'-infinity'::TIMESTAMPTZ")
_PLUS_INFINITY = Sql("'infinity'::TIMESTAMPTZ")

_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# The end of a span of a queryable of kind "interval" (its start is the queryable's SQL).
_SPAN_END = {"i.t_start": "i.t_end"}


def _parse_timestamp(text: Any) -> datetime:
    """An RFC 3339 timestamp with a time zone, in UTC (fractions beyond microseconds dropped)."""
    match = _TIMESTAMP.match(text) if isinstance(text, str) else None
    if match is None:
        raise _error(f"{_show(text)} is not an RFC 3339 timestamp (like '2024-08-10T12:00:00Z')")
    day, clock, fraction, zone = match.groups()
    fraction = (fraction or "")[:7]
    try:
        stamp = datetime.fromisoformat(f"{day}T{clock}{fraction}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError as exc:
        raise _error(f"{_show(text)} is not a valid timestamp: {exc}") from None
    return stamp.astimezone(timezone.utc)


def _parse_date(text: Any) -> date:
    if not isinstance(text, str) or not _DATE.match(text):
        raise _error(f"{_show(text)} is not a date (like '2024-08-10')")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise _error(f"{_show(text)} is not a valid date: {exc}") from None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _day_end(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.utc)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_json(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        if "property" in value:
            return f"property {_show(value['property'])}"
        if "op" in value:
            return f"{_show(value['op'])}(...)"
        for key in ("timestamp", "date", "interval", "bbox"):
            if key in value:
                return f"the {key} {_show(value[key])}"
        if "type" in value:
            return f"a {value['type']} geometry"
    return _show(value)


def _property(node: Any) -> Queryable | None:
    """The queryable a ``{"property": name}`` node names (None when the node is not one)."""
    if not (isinstance(node, dict) and "property" in node):
        return None
    name = node["property"]
    queryable = lookup(name) if isinstance(name, str) else None
    if queryable is None or set(node) != {"property"}:
        raise _error(f"unknown property {_show(name)}; the queryables are: {', '.join(QUERYABLES)}")
    return queryable


# --- the translator ----------------------------------------------------------------------
_COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_MIRRORED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TEMPORAL = {
    # Allen's relations on closed spans a = [a0, a1], b = [b0, b1] (CQL2 table 8)
    "t_after": "{a0} > {b1}",
    "t_before": "{a1} < {b0}",
    "t_contains": "({a0} < {b0} AND {a1} > {b1})",
    "t_disjoint": "({a0} > {b1} OR {a1} < {b0})",
    "t_during": "({a0} > {b0} AND {a1} < {b1})",
    "t_equals": "({a0} = {b0} AND {a1} = {b1})",
    "t_finishedby": "({a0} < {b0} AND {a1} = {b1})",
    "t_finishes": "({a0} > {b0} AND {a1} = {b1})",
    "t_intersects": "({a0} <= {b1} AND {a1} >= {b0})",
    "t_meets": "{a1} = {b0}",
    "t_metby": "{a0} = {b1}",
    "t_overlappedby": "({a0} > {b0} AND {a0} < {b1} AND {a1} > {b1})",
    "t_overlaps": "({a0} < {b0} AND {a1} > {b0} AND {a1} < {b1})",
    "t_startedby": "({a0} = {b0} AND {a1} > {b1})",
    "t_starts": "({a0} = {b0} AND {a1} < {b1})",
}
_ARRAYS = {
    "a_equals": "(list_has_all({a}, {b}) AND list_has_all({b}, {a}))",
    "a_contains": "list_has_all({a}, {b})",
    "a_containedby": "list_has_all({b}, {a})",
    "a_overlaps": "list_has_any({a}, {b})",
}
_SPATIAL = {f"s_{op}": op for op in spatial.SPATIAL_OPERATORS}
_STRING_FUNCTIONS = {"casei": "lower", "accenti": "strip_accents"}
_SUPPORTED = sorted({"and", "or", "not", *_COMPARISONS, "like", "between", "in", "isNull", *_STRING_FUNCTIONS,
                     *_TEMPORAL, *_ARRAYS, *_SPATIAL})


def filter_sql(expr: dict[str, Any]) -> tuple[str, list[Any]]:
    """The CQL2 JSON tree ``expr`` as one DuckDB boolean expression over ``i`` and ``v``,
    with its ``?`` parameters. The spatial operators call ``halodb_spatial``
    (:func:`halodb.serve.spatial.register`).

    >>> filter_sql({"op": "like", "args": [{"op": "casei", "args": [{"property": "title"}]}, "%flight_"]})
    ("(lower(i.title) LIKE ? ESCAPE '\\\\')", ['%flight_'])
    """
    result = _translate(expr)
    return result.text, list(result.params)


def _translate(expr: Any) -> Sql:
    _check_tree(expr)
    return _predicate(expr)


def _op(node: Any) -> tuple[str, list[Any]] | None:
    """``(operator in lower case, args)`` of an operator node, or None."""
    if isinstance(node, dict) and "op" in node:
        op, args = node["op"], node.get("args")
        if not isinstance(op, str) or not isinstance(args, list) or set(node) != {"op", "args"}:
            raise _error(f"malformed operator node {_show(node)}")
        return op.lower(), args
    return None


def _arity(op: str, args: list[Any], count: int) -> None:
    if len(args) != count:
        raise _error(f"{op} takes {count} argument{'s' if count > 1 else ''}, got {len(args)}")


def _predicate(node: Any) -> Sql:
    """A node that must be a boolean predicate."""
    if isinstance(node, bool):
        return Sql("true" if node else "false")
    parsed = _op(node)
    if parsed is None:
        _property(node)  # an unknown property is named as such
        raise _error(f"{_describe_json(node)} is not a predicate")
    op, args = parsed
    if op in ("and", "or"):
        if len(args) < 2:
            raise _error(f"{op} takes at least 2 arguments, got {len(args)}")
        parts = [_predicate(arg) for arg in args]
        return sql("(" + f" {op.upper()} ".join(["{}"] * len(parts)) + ")", *parts)
    if op == "not":
        _arity(op, args, 1)
        return sql("(NOT {})", _predicate(args[0]))
    if op in _COMPARISONS:
        _arity(op, args, 2)
        return _compare(op, _scalar(args[0]), _scalar(args[1]))
    if op == "between":
        if len(args) == 2 and isinstance(args[1], list) and len(args[1]) == 2:
            args = [args[0], *args[1]]  # the draft form [value, [low, high]] (stac-api-validator sends it)
        _arity(op, args, 3)
        value, low, high = (_scalar(arg) for arg in args)
        return sql("({} AND {})", _compare(">=", value, low), _compare("<=", value, high))
    if op == "in":
        return _in(args)
    if op == "like":
        return _like(args)
    if op == "isnull":
        _arity("isNull", args, 1)
        return sql("({} IS NULL)", _nullable(args[0]))
    if op in _TEMPORAL:
        _arity(op, args, 2)
        a, b = _span(args[0]), _span(args[1])
        template = _TEMPORAL[op].replace("{a0}", "{0}").replace("{a1}", "{1}").replace("{b0}", "{2}").replace("{b1}", "{3}")
        return _indexed(template, [a.start, a.end, b.start, b.end])
    if op in _ARRAYS:
        _arity(op, args, 2)
        first, second = _array(args[0]), _array(args[1])
        return _indexed(_ARRAYS[op].replace("{a}", "{0}").replace("{b}", "{1}"), [first, second])
    if op in _SPATIAL:
        _arity(op, args, 2)
        return _spatial(_SPATIAL[op], args[0], args[1])
    if op in _STRING_FUNCTIONS:
        raise _error(f"{op}(...) is a string, not a predicate: compare it (e.g. {op}(title) = {op}('x'))")
    if op in ("+", "-", "*", "/", "%", "^", "div"):
        raise _error(f"arithmetic ({op}) is not supported")
    raise _error(f"unsupported operator {_show(node['op'])}; supported: {', '.join(_SUPPORTED)}")


def _indexed(template: str, parts: Sequence[Sql]) -> Sql:
    """Like :func:`sql` with numbered ``{0}``, ``{1}``, ... that may repeat (each use
    repeats the part's parameters)."""
    order = [int(n) for n in re.findall(r"\{(\d+)\}", template)]
    return sql(re.sub(r"\{\d+\}", "{}", template), *(parts[n] for n in order))


# --- scalars ---------------------------------------------------------------------------
def _scalar(node: Any) -> _Value:
    """A string, number, boolean, timestamp or date operand."""
    queryable = _property(node)
    if queryable is not None:
        kind = "timestamp" if queryable.kind == "interval" else queryable.kind
        if kind == "array":
            raise _error(f"property {queryable.name!r} is an array: compare it with the a_* array operators")
        if kind == "geometry":
            raise _error(f"property {queryable.name!r} is a geometry: compare it with the s_* spatial operators")
        if kind not in ("string", "timestamp", "number", "boolean"):
            raise _error(f"property {queryable.name!r} cannot be compared")
        return _Value(kind, Sql(queryable.sql), f"property {queryable.name!r} (a {kind})")
    if isinstance(node, bool):
        return _Value("boolean", sql("{}", node), f"the boolean {json.dumps(node)}", literal=True)
    if isinstance(node, (int, float)):
        return _Value("number", sql("{}", float(node)), f"the number {node:g}", literal=True)
    if isinstance(node, str):
        return _Value("string", sql("{}", node), f"the string {_show(node)}", literal=True)
    if isinstance(node, dict) and set(node) == {"timestamp"}:
        return _Value("timestamp", sql("{}", _parse_timestamp(node["timestamp"])),
                      f"the timestamp {_show(node['timestamp'])}", literal=True)
    if isinstance(node, dict) and set(node) == {"date"}:
        day = _parse_date(node["date"])
        return _Value("date", Sql(""), f"the date {_show(node['date'])}", literal=True, day=day)
    parsed = _op(node)
    if parsed is not None and parsed[0] in _STRING_FUNCTIONS:
        op, args = parsed
        _arity(op, args, 1)
        inner = _scalar(args[0])
        if inner.kind != "string":
            raise _error(f"{op} takes a string, not {inner.name}")
        return _Value("string", sql(_STRING_FUNCTIONS[op] + "({})", inner.sql), f"{op}({inner.name})", inner.literal)
    if parsed is not None:
        return _Value("boolean", _predicate(node), f"the predicate {parsed[0]}(...)")
    raise _error(f"{_describe_json(node)} cannot be compared with =, <, >, LIKE, BETWEEN or IN")


def _compare(op: str, left: _Value, right: _Value) -> Sql:
    if left.kind == "date" and right.kind != "date":
        return _compare(_MIRRORED[op], right, left)
    if left.kind == "timestamp" and right.kind == "date":
        assert right.day is not None
        start, end = _day_start(right.day), _day_end(right.day)
        value = left.sql
        return {
            "=": lambda: sql("({} BETWEEN {} AND {})", value, start, end),
            "<>": lambda: sql("({} < {} OR {} > {})", value, start, value, end),
            "<": lambda: sql("({} < {})", value, start),
            "<=": lambda: sql("({} <= {})", value, end),
            ">": lambda: sql("({} > {})", value, end),
            ">=": lambda: sql("({} >= {})", value, start),
        }[op]()
    if left.kind == "date" and right.kind == "date":
        assert left.day is not None and right.day is not None
        return sql("({} " + _COMPARISONS[op] + " {})", left.day, right.day)
    if left.kind != right.kind:
        raise _error(f"cannot compare {left.name} with {right.name}")
    return sql("({} " + _COMPARISONS[op] + " {})", left.sql, right.sql)


def _in(args: list[Any]) -> Sql:
    _arity("in", args, 2)
    value, options = _scalar(args[0]), args[1]
    if not isinstance(options, list) or not options:
        raise _error(f"in needs a non-empty list of values, not {_describe_json(options)}")
    values = [_scalar(option) for option in options]
    if value.kind in ("timestamp", "date") or any(v.kind == "date" for v in values):
        return sql("(" + " OR ".join(["{}"] * len(values)) + ")", *(_compare("=", value, v) for v in values))
    for v in values:
        if v.kind != value.kind:
            raise _error(f"cannot compare {value.name} with {v.name}")
    return sql("({} IN (" + ", ".join(["{}"] * len(values)) + "))", value.sql, *(v.sql for v in values))


def _like(args: list[Any]) -> Sql:
    _arity("like", args, 2)
    value, pattern = _scalar(args[0]), _scalar(args[1])
    if value.kind != "string" or pattern.kind != "string":
        raise _error(f"like compares strings, not {value.name if value.kind != 'string' else pattern.name}")
    literal = _pattern_literal(args[1])
    if literal is None:
        raise _error("the pattern of like must be a string literal (or casei/accenti of one)")
    trailing = len(literal) - len(literal.rstrip("\\"))
    if trailing % 2:
        raise _error(f"the like pattern {_show(literal)} ends with the escape character \\")
    return sql("({} LIKE {} ESCAPE '\\')", value.sql, pattern.sql)


def _pattern_literal(node: Any) -> str | None:
    while True:
        if isinstance(node, str):
            return node
        parsed = _op(node)
        if parsed is None or parsed[0] not in _STRING_FUNCTIONS or len(parsed[1]) != 1:
            return None
        node = parsed[1][0]


def _nullable(node: Any) -> Sql:
    """The SQL of anything ``isNull`` may test: any property, or a scalar expression."""
    queryable = _property(node)
    if queryable is not None:
        return Sql(queryable.sql)
    return _scalar(node).sql


# --- temporal, arrays, spatial -----------------------------------------------------------
def _span(node: Any) -> _Span:
    queryable = _property(node)
    if queryable is not None:
        if queryable.kind == "interval":
            return _Span(Sql(queryable.sql), Sql(_SPAN_END[queryable.sql]), f"property {queryable.name!r}")
        if queryable.kind == "timestamp":
            return _Span(Sql(queryable.sql), Sql(queryable.sql), f"property {queryable.name!r}")
        raise _error(f"property {queryable.name!r} is not temporal (the t_* operators take datetime, "
                     "start_datetime, end_datetime, timestamps, dates and intervals)")
    if isinstance(node, dict) and set(node) == {"timestamp"}:
        stamp = _parse_timestamp(node["timestamp"])
        return _Span(sql("{}", stamp), sql("{}", stamp), f"the timestamp {_show(node['timestamp'])}")
    if isinstance(node, dict) and set(node) == {"date"}:
        day = _parse_date(node["date"])
        return _Span(sql("{}", _day_start(day)), sql("{}", _day_end(day)), f"the date {_show(node['date'])}")
    if isinstance(node, dict) and set(node) == {"interval"}:
        ends = node["interval"]
        if not isinstance(ends, list) or len(ends) != 2:
            raise _error(f"an interval needs a start and an end, not {_show(ends)}")
        start, start_value = _interval_end(ends[0], first=True)
        end, end_value = _interval_end(ends[1], first=False)
        if start_value is not None and end_value is not None and start_value > end_value:
            raise _error(f"the interval {_show(ends)} starts after it ends")
        return _Span(start, end, f"the interval {_show(ends)}")
    raise _error(f"{_describe_json(node)} is not a time (a t_* operator takes datetime, start_datetime, "
                 "end_datetime, timestamps, dates and intervals)")


def _interval_end(node: Any, *, first: bool) -> tuple[Sql, datetime | None]:
    """One end of an interval: ``".."`` (open), a timestamp or date (a date's start
    begins the interval, its end ends it), or a timestamp property."""
    if node == "..":
        return (_MINUS_INFINITY if first else _PLUS_INFINITY), None
    if isinstance(node, str):
        if _DATE.match(node):
            day = _parse_date(node)
            stamp = _day_start(day) if first else _day_end(day)
        else:
            stamp = _parse_timestamp(node)
        return sql("{}", stamp), stamp
    if isinstance(node, dict) and set(node) in ({"timestamp"}, {"date"}):
        return _interval_end(next(iter(node.values())), first=first)
    queryable = _property(node)
    if queryable is not None and queryable.kind in ("timestamp", "interval"):
        return Sql(queryable.sql if first or queryable.kind == "timestamp" else _SPAN_END[queryable.sql]), None
    raise _error(f"an interval end must be a timestamp, a date, '..' or a time property, not {_describe_json(node)}")


def _array(node: Any) -> Sql:
    queryable = _property(node)
    if queryable is not None:
        if queryable.kind != "array":
            raise _error(f"property {queryable.name!r} is not an array (the array properties are: "
                         f"{', '.join(q.name for q in QUERYABLES.values() if q.kind == 'array')})")
        return Sql(queryable.sql)
    if isinstance(node, list):
        if not all(isinstance(member, str) for member in node):
            raise _error(f"the array {_show(node)} must hold strings only")
        return sql("CAST({} AS VARCHAR[])", list(node))
    raise _error(f"{_describe_json(node)} is not an array (the a_* operators take array properties and arrays)")


def _geometry(node: Any) -> shapely.Geometry | None:
    """A geometry literal (GeoJSON or ``{"bbox": [...]}``) checked, or None for the
    ``geometry`` property."""
    queryable = _property(node)
    if queryable is not None:
        if queryable.kind != "geometry":
            raise _error(f"property {queryable.name!r} is not a geometry (the s_* operators take geometry)")
        return None
    if isinstance(node, dict) and set(node) == {"bbox"}:
        return spatial.bbox_geometry(spatial.parse_bbox(node["bbox"], _PARAMETER))
    if isinstance(node, dict) and "type" in node:
        return spatial.parse_geometry(node, _PARAMETER)
    raise _error(f"{_describe_json(node)} is not a geometry (the s_* operators take geometry, "
                 "GeoJSON/WKT geometries and BBOX)")


def _spatial(op: str, left_node: Any, right_node: Any) -> Sql:
    left, right = _geometry(left_node), _geometry(right_node)
    if left is None and right is None:
        return spatial.self_predicate_sql(op)
    if left is None:
        assert right is not None
        return spatial.predicate_sql(op, right)
    if right is None:
        return spatial.predicate_sql(spatial.CONVERSE.get(op, op), left)
    return Sql("true" if spatial.evaluate(op, left, right) else "false")
