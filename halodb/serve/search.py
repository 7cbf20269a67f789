"""Item search over a snapshot: checked :class:`~halodb.serve.params.SearchParams` to SQL, run
against one version of the history.

Every query reads the items valid in one commit (``i.from_seq <= seq < i.to_seq`` in the
snapshot's ``search_rows``, where a current row's ``to_seq`` is past every commit), so the
head and any past version are answered the same way; and every page is ordered totally (the
sort keys, then the dataset key, which is unique in a version), so paging with a token —
which names the commit and the offset — is stable even when the served name moves between
two pages.

>>> where, params = conditions(SearchParams(ids=["a"], q=[["sea"]]), collection="HALO")
>>> where
['i.collection = ?', 'list_contains(?, i.id)', '((contains(i.text, ?)))']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson

from halodb.errors import RequestError
from halodb.serve import cql2_sql, spatial
from halodb.serve.params import Fields, SearchParams
from halodb.serve.arrays import answers
from halodb.serve.deadlines import Deadline
from halodb.serve.snapshot import DEFAULT_ORDER, Snapshot, Version

__all__ = ["Hit", "Page", "conditions", "count", "decode_token", "encode_token", "run_search"]

#: the deepest offset a token may ask for: deeper pages need a narrower search
MAX_OFFSET = 10_000_000
#: a search matching at most this many items is ordered, counted and paged in one query
COUNTED_IN_PAGE = 2000
_PAGE_COLUMNS = ("i.key", "i.data_cid", "i.path", "i.item_cid", "i.item_row")
_IN_VERSION = "i.from_seq <= ? AND ? < i.to_seq"  # search_rows.to_seq of a current row is past every seq


@dataclass(frozen=True)
class Hit:
    """One item of a result page, with what the index says about its dataset."""

    key: str
    data_cid: str | None
    path: str | None
    item_cid: str
    item: dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of a search, answered from ``version``."""

    version: Version
    hits: list[Hit]
    matched: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.hits)
        return end if end < self.matched else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset > 0 else None


def encode_token(version: Version, offset: int) -> str:
    """The ``token`` of the page at ``offset`` of a search answered from ``version``."""
    return f"{version.cid}:{offset}"


def decode_token(snap: Snapshot, token: str) -> tuple[Version, int]:
    """The version and offset a token names; a 400 for one this snapshot did not make."""
    cid, _, offset = token.partition(":")
    version = snap.version(cid)
    if version is None or not offset.isdigit() or int(offset) > MAX_OFFSET:
        raise RequestError("token is not one this server made (take it from a next link)", parameter="token")
    return version, int(offset)


def conditions(p: SearchParams, *, collection: str | None = None) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (over ``i`` and ``v``) of a search, with their parameters."""
    where: list[str] = []
    params: list[Any] = []

    def add(sql: str, values: list[Any]) -> None:
        where.append(sql)
        params.extend(values)

    if collection is not None:
        add("i.collection = ?", [collection])
    if p.collections is not None:  # IN, not list_contains: DuckDB pushes it into the scan
        add(f"i.collection IN ({', '.join('?' * len(p.collections))})" if p.collections else "false",
            list(p.collections))
    if p.ids is not None:
        add("list_contains(?, i.id)", [p.ids])
    if p.bbox is not None:
        add(*spatial.bbox_sql(p.bbox))
    if p.intersects is not None:
        add(*spatial.intersects_sql(p.intersects))
    if p.interval is not None:
        start, end = p.interval
        if start is not None:
            add("i.t_end >= ?", [start])
        if end is not None:
            add("i.t_start <= ?", [end])
    if p.filter is not None:
        add(*cql2_sql.filter_sql(p.filter))
    if p.q is not None:
        alternatives = ["(" + " AND ".join("contains(i.text, ?)" for _ in words) + ")" for words in p.q]
        add("(" + " OR ".join(alternatives) + ")", [w for words in p.q for w in words])
    return where, params


def _query(select: str, where: list[str], tail: str = "") -> str:
    """``SELECT select FROM search_rows AS i WHERE (in the version) AND where tail``.

    >>> _query("count(*)", ["i.platform = ?"])
    'SELECT count(*) FROM search_rows AS i WHERE i.from_seq <= ? AND ? < i.to_seq AND i.platform = ?'
    """
    return f"SELECT {select} FROM search_rows AS i WHERE {' AND '.join([_IN_VERSION, *where])}{tail}"


def count(cur: duckdb.DuckDBPyConnection, version: Version, where: list[str], params: list[Any]) -> int:
    """How many items of ``version`` the conditions match."""
    rows = cur.execute(_query("count(*)", where), [version.seq, version.seq, *params]).fetchall()
    return int(rows[0][0])


def run_search(
    snap: Snapshot, cur: duckdb.DuckDBPyConnection, version: Version, p: SearchParams, *, offset: int = 0,
    collection: str | None = None, deadline: Deadline | None = None,
) -> Page:
    """One page of the items of ``version`` that ``p`` matches (``cur`` is a cursor of ``snap``;
    ``deadline`` bounds the work done in Python, as the watchdog bounds the cursor's).

    A search that asks only for the core parameters (version, collections, ids, bbox,
    intersects, datetime, q; no filter or sortby) is answered by the snapshot's arrays
    (``arrays.py``) without SQL. In SQL, most searches match a few hundred items: one scan
    gathers up to :data:`COUNTED_IN_PAGE` of them, and one query orders that set, counts it
    and cuts the page. A broader search is paged by a top-N scan of the table and counted by
    a second.
    """
    if answers(p):  # the core of a search: arrays, no SQL (arrays.py)
        found, matched = snap.arrays.search(version.seq, p, offset, collection=collection, deadline=deadline)
        return Page(version, _hits(snap, found), matched, offset, p.limit)
    where, params = conditions(p, collection=collection)
    order = ", ".join(f"{s.sql} {'DESC' if s.descending else 'ASC'} NULLS LAST" for s in p.sortby)
    order = f"{order + ', ' if order else ''}{DEFAULT_ORDER}, i.key"
    args = [version.seq, version.seq, *params]
    # the gathered rows carry the page's columns and every sort key (all plain columns of i)
    columns = list(dict.fromkeys([*_PAGE_COLUMNS, "i.t_start", "i.collection", "i.id", *(s.sql for s in p.sortby)]))
    gathered = _query(", ".join(columns), where, f" LIMIT {COUNTED_IN_PAGE + 1}")
    rows = cur.execute(
        f"WITH i AS ({gathered}) SELECT {', '.join(_PAGE_COLUMNS)}, count(*) OVER () FROM i "
        f"ORDER BY {order} LIMIT ? OFFSET ?", [*args, p.limit, offset]).fetchall()
    if rows and rows[0][-1] <= COUNTED_IN_PAGE:
        matched = int(rows[0][-1])
    elif not rows and offset == 0:
        matched = 0
    else:  # more matches than one scan gathers, or a page past the end
        rows = cur.execute(_query(", ".join(_PAGE_COLUMNS), where, f" ORDER BY {order} LIMIT ? OFFSET ?"),
                           [*args, p.limit, offset]).fetchall()
        # a page that is not full is the last one, so it tells how many matched
        matched = offset + len(rows) if 0 < len(rows) < p.limit else count(cur, version, where, params)
    return Page(version, _hits(snap, rows), matched, offset, p.limit)


def _hits(snap: Snapshot, rows: Sequence[Sequence[Any]]) -> list[Hit]:
    """The hits of page rows ``(key, data_cid, path, item_cid, item_row, ...)``, with their items."""
    return [Hit(row[0], row[1], row[2], row[3], orjson.loads(snap.item_json(row[4]))) for row in rows]


#: what an item keeps whatever ``fields`` include: it stays an identifiable, linked feature
MINIMAL_FIELDS = ("type", "stac_version", "id", "links")
#: what a search returns of an item when ``fields`` is given empty (the fields extension's default)
DEFAULT_FIELDS = ("type", "stac_version", "stac_extensions", "id", "collection", "geometry", "bbox", "links", "assets",
                  "properties.datetime", "properties.start_datetime", "properties.end_datetime")


def select_fields(item: dict[str, Any], fields: Fields | None) -> dict[str, Any]:
    """The fields extension: the included paths (with :data:`MINIMAL_FIELDS`; or the default
    set; or the whole item), then without the excluded ones — except where an included path is
    the same or deeper, since inclusion wins (``-properties,+properties.platform`` keeps the
    platform of the properties alone).

    >>> item = {"type": "Feature", "id": "a", "links": [], "properties": {"title": "t", "platform": "HALO"}}
    >>> select_fields(item, Fields(("properties.title",), (), default=False))
    {'type': 'Feature', 'id': 'a', 'links': [], 'properties': {'title': 't'}}
    >>> select_fields(item, Fields(None, ("properties",), default=False))
    {'type': 'Feature', 'id': 'a', 'links': []}
    >>> select_fields(item, Fields(("properties.platform",), ("properties", "links"), default=False))
    {'type': 'Feature', 'id': 'a', 'properties': {'platform': 'HALO'}}
    """
    if fields is None:
        return item
    include = (MINIMAL_FIELDS + fields.include) if fields.include else (DEFAULT_FIELDS if fields.default else None)
    if include is not None:
        kept: dict[str, Any] = {}
        for path in include:
            _copy_path(item, kept, path.split("."))
        item = kept
    else:
        item = dict(item)
    for path in fields.exclude:
        if not any(i == path or i.startswith(path + ".") for i in fields.include or ()):
            _drop_path(item, path.split("."))
    return item


def _copy_path(source: dict[str, Any], target: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in source:
        return
    if len(parts) == 1 or not isinstance(source[head], dict):
        target[head] = source[head]
        return
    child = target.setdefault(head, {})
    if isinstance(child, dict):
        _copy_path(source[head], child, parts[1:])


def _drop_path(item: dict[str, Any], parts: list[str]) -> None:
    node: Any = item
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)
