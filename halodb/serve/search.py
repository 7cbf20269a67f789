"""Item search over a snapshot: checked :class:`~halodb.serve.params.SearchParams` to SQL, run
against one version of the history.

Every query reads the items valid in one commit (``i.from_seq <= seq < i.to_seq`` in the
snapshot's ``search_rows``), so the
head and any past version are answered the same way; and every page is ordered totally (the
sort keys, then the dataset key, which is unique in a version), so paging with a token —
which names the commit and the offset — is stable even when the served name moves between
two pages.

>>> where, params = conditions(SearchParams(ids=["a"], q=[["sea"]]), collection="HALO")
>>> where
['i.collection = ?', 'list_contains(?, i.id)', '((contains(i.text, ?)))']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import orjson

from halodb.errors import RequestError
from halodb.serve import cql2_sql, spatial
from halodb.serve.params import Fields, SearchParams
from halodb.serve.snapshot import Snapshot, Version

__all__ = ["Hit", "Page", "conditions", "count", "decode_token", "encode_token", "run_search"]

#: the deepest offset a token may ask for: deeper pages need a narrower search
MAX_OFFSET = 10_000_000
DEFAULT_ORDER = "i.t_start DESC NULLS LAST, i.collection NULLS FIRST, i.id"
_IN_VERSION = "i.from_seq <= ? AND (i.to_seq IS NULL OR ? < i.to_seq)"


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
    if p.collections is not None:
        add("list_contains(?, i.collection)", [p.collections])
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
    'SELECT count(*) FROM search_rows AS i WHERE i.from_seq <= ? AND (i.to_seq IS NULL OR ? < i.to_seq) AND i.platform = ?'
    """
    return f"SELECT {select} FROM search_rows AS i WHERE {' AND '.join([_IN_VERSION, *where])}{tail}"


def count(cur: duckdb.DuckDBPyConnection, version: Version, where: list[str], params: list[Any]) -> int:
    """How many items of ``version`` the conditions match."""
    rows = cur.execute(_query("count(*)", where), [version.seq, version.seq, *params]).fetchall()
    return int(rows[0][0])


def run_search(
    cur: duckdb.DuckDBPyConnection, version: Version, p: SearchParams, *, offset: int = 0,
    collection: str | None = None,
) -> Page:
    """One page of the items of ``version`` that ``p`` matches."""
    where, params = conditions(p, collection=collection)
    order = ", ".join(f"{s.sql} {'DESC' if s.descending else 'ASC'} NULLS LAST" for s in p.sortby)
    order = f"{order + ', ' if order else ''}{DEFAULT_ORDER}, i.key"
    rows = cur.execute(
        _query("i.key, i.data_cid, i.path, i.item_cid, i.item_row", where, f" ORDER BY {order} LIMIT ? OFFSET ?"),
        [version.seq, version.seq, *params, p.limit, offset],
    ).fetchall()
    # a page that is not full is the last one, so it tells how many matched: most searches
    # (a box, a day, a collection) are one such page and need no second scan to count
    matched = offset + len(rows) if 0 < len(rows) < p.limit or (offset == 0 and not rows) \
        else count(cur, version, where, params)
    # the JSON of the page's items only: sorting and paging never carry it
    texts = dict(cur.execute("SELECT rowid, item FROM items WHERE rowid IN (SELECT unnest(?::BIGINT[]))",
                             [[row[4] for row in rows]]).fetchall()) if rows else {}
    hits = [Hit(key, data_cid, path, item_cid, orjson.loads(texts[row])) for key, data_cid, path, item_cid, row in rows]
    return Page(version, hits, matched, offset, p.limit)


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
